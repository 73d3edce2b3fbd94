"""Landmarks of the apical 4-chamber view on the first end-diastolic frame (septal and lateral
mitral annulus, LV apex), from the caller or found automatically, and the points along the two
LV walls (inferoseptal, anterolateral) from each annulus to the apex.

Coordinates are (x, y) pixels of the analysis grid unless said otherwise.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
from numba import njit

from ._numerics import bilinear_sample, bilinear_sample_one
from .errors import InputError, QualityError
from .warning_codes import ReportWarning, warn, warning_dicts

__all__ = [
    "LANDMARK_NAMES",
    "Landmarks",
    "landmarks_from_caller",
    "detect_landmarks",
    "validate_landmarks",
    "long_axis",
    "wall_points",
]

LANDMARK_NAMES = ("septal_annulus", "lateral_annulus", "apex")


@dataclass
class Landmarks:
    """Septal / lateral mitral annulus and LV apex on the ED frame, in grid px.

    Attributes
    ----------
    septal_annulus, lateral_annulus, apex : np.ndarray
        float64 ``[2]`` (x, y).
    source : str
        ``"caller"`` or ``"auto"``.
    confidence : float
        0..1 (1 for caller landmarks that passed validation).
    mirrored : bool
        True when the LV is on the viewer's left (septal annulus right of the lateral one).
    warnings : list of ReportWarning
    """

    septal_annulus: np.ndarray
    lateral_annulus: np.ndarray
    apex: np.ndarray
    source: str = "caller"
    confidence: float = 1.0
    mirrored: bool = False
    warnings: list[ReportWarning] = field(default_factory=list)

    def as_array(self) -> np.ndarray:
        """``[3, 2]`` in the order of :data:`LANDMARK_NAMES`."""
        return np.stack([self.septal_annulus, self.lateral_annulus, self.apex]).astype(np.float64)

    def to_dict(self, to_original: Callable[[np.ndarray], np.ndarray] | None = None) -> dict[str, Any]:
        arr = self.as_array()
        if to_original is not None:
            arr = np.asarray(to_original(arr), dtype=np.float64)
        d: dict[str, Any] = {n: [round(float(a[0]), 2), round(float(a[1]), 2)] for n, a in zip(LANDMARK_NAMES, arr)}
        d.update(source=self.source, confidence=round(float(self.confidence), 3), mirrored=bool(self.mirrored),
                 coords="original" if to_original is not None else "grid", warnings=warning_dicts(self.warnings))
        return d


def long_axis(septal: np.ndarray, lateral: np.ndarray, apex: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Annulus midpoint, unit long-axis vector toward the apex, and LV length (px)."""
    s, l, a = (np.asarray(v, dtype=np.float64) for v in (septal, lateral, apex))
    mid = 0.5 * (s + l)
    d = a - mid
    length = float(np.hypot(d[0], d[1]))
    if length < 1e-9:
        raise InputError("apex coincides with the annulus midpoint")
    return mid, d / length, length


#: Plausible geometry of an apical view: mitral annulus width / LV length (about 0.3-0.5 in
#: adults, 0.39-0.63 on the synthetic hearts), and apex-to-septal / apex-to-lateral annulus
#: distance (0.95-1.03 on the synthetic hearts). Beyond these the landmarks are probably wrong:
#: on 36 synthetic clips only the two gross misses (22 and 34 px) fell outside.
MAX_ANNULUS_TO_LENGTH = 0.7
MAX_WALL_LENGTH_RATIO = 1.15


def geometry_warnings(septal: np.ndarray, lateral: np.ndarray, apex: np.ndarray) -> list[ReportWarning]:
    """Warnings for landmarks whose geometry is unlike an apical view's (grid or original px,
    the ratios do not depend on the scale): an annulus wider than 0.7 LV lengths, or one wall
    more than 15 % longer than the other."""
    s, l, a = (np.asarray(v, dtype=np.float64) for v in (septal, lateral, apex))
    _, _, length = long_axis(s, l, a)
    width = float(np.hypot(*(s - l)))
    out: list[ReportWarning] = []
    if width > MAX_ANNULUS_TO_LENGTH * length:
        out.append(warn("annulus_wide", f"the annulus points are {width / max(length, 1e-9):.2f} LV lengths apart "
                        "(a mitral annulus is about a third to a half): check the landmarks"))
    ds, dl = float(np.hypot(*(s - a))), float(np.hypot(*(l - a)))
    r = max(ds, dl) / max(min(ds, dl), 1e-9)
    if r > MAX_WALL_LENGTH_RATIO:
        longer = "septal" if ds > dl else "lateral"
        out.append(warn("walls_unequal", f"the apex is {100 * (r - 1):.0f} % farther from the {longer} annulus "
                        "point than from the other: check the landmarks"))
    return out



def low_confidence_warning(conf: float) -> ReportWarning:
    """The ``landmarks_low_confidence`` warning of an automatic set below 0.5 (both detectors)."""
    return warn("landmarks_low_confidence", f"automatic landmarks have low confidence ({conf:.2f}); check them or "
                "pass landmarks=")

def validate_landmarks(
    septal: np.ndarray,
    lateral: np.ndarray,
    apex: np.ndarray,
    shape: tuple[int, int],
    *,
    mirrored: bool | None = None,
) -> tuple[bool, list[str]]:
    """Check that landmarks are inside the image and plausibly placed for an apical view.

    Parameters
    ----------
    septal, lateral, apex : array-like
        ``[2]`` (x, y) grid px.
    shape : (int, int)
        (H, W) of the grid.
    mirrored : bool, optional
        Declared display; None infers it from the septal/lateral order and checks that the LV
        lies on the side of the image it implies.

    Returns
    -------
    mirrored : bool
        The display implied by the landmarks.
    warnings : list of ReportWarning

    Raises
    ------
    InputError
        A landmark is outside the image or not finite, the apex is not above (toward the
        transducer of) both annulus points, the annulus points are too close, or the septal and
        lateral points are swapped for the declared (or evident) display.
    """
    h, w = shape
    pts = {}
    for name, v in zip(LANDMARK_NAMES, (septal, lateral, apex)):
        a = np.asarray(v, dtype=np.float64).reshape(-1)
        if a.shape != (2,) or not np.all(np.isfinite(a)):
            raise InputError(f"landmark {name} must be a finite (x, y) pair, got {v!r}")
        if not (0 <= a[0] <= w - 1 and 0 <= a[1] <= h - 1):
            raise InputError(f"landmark {name} = ({a[0]:.1f}, {a[1]:.1f}) lies outside the {w}x{h} image")
        pts[name] = a
    s, l, a = pts["septal_annulus"], pts["lateral_annulus"], pts["apex"]
    mid, u, length = long_axis(s, l, a)
    warnings: list[ReportWarning] = []
    width = float(np.hypot(*(s - l)))
    if length < 0.1 * h:
        raise InputError(f"apex is only {length:.1f} px from the annulus midpoint; check the landmarks")
    if width < 0.15 * length or width < 5:
        raise InputError(f"the two annulus points are only {width:.1f} px apart (LV length {length:.1f} px); "
                         "place them at the two sides of the mitral valve")
    if not (a[1] < s[1] and a[1] < l[1]):
        raise InputError("the apex must be above both annulus points (apex at the top of an apical view); "
                         f"got apex y={a[1]:.1f}, septal y={s[1]:.1f}, lateral y={l[1]:.1f}")
    if u[1] > -0.5:
        warnings.append(warn("axis_tilted", "the long axis is tilted more than 60 degrees from vertical"))
    warnings += geometry_warnings(s, l, a)
    implied = bool(s[0] > l[0])  # septal right of lateral: LV on the viewer's left
    if mirrored is not None and bool(mirrored) != implied:
        raise InputError(
            "septal and lateral annulus are swapped for the declared display "
            f"({'mirrored' if mirrored else 'standard'}: the septal annulus must be "
            f"{'right' if mirrored else 'left'} of the lateral one)"
        )
    if mirrored is None:
        # In an apical 4-chamber view the septum is nearer the image centre than the lateral wall.
        cx = 0.5 * (w - 1)
        if abs(s[0] - cx) > abs(l[0] - cx) + 0.1 * w:
            raise InputError(
                "the septal annulus is farther from the image centre than the lateral one: the two look "
                "swapped (or pass mirrored= to declare the display)"
            )
    return implied, warnings


def landmarks_from_caller(
    landmarks: Mapping[str, Any],
    shape: tuple[int, int],
    *,
    to_grid: Callable[[np.ndarray], np.ndarray] | None = None,
    mirrored: bool | None = None,
) -> Landmarks:
    """Landmarks given by the caller in ORIGINAL-image pixels, mapped to the grid and validated.

    Parameters
    ----------
    landmarks : mapping
        ``{"septal_annulus": (x, y), "lateral_annulus": (x, y), "apex": (x, y)}``.
    shape : (int, int)
        (H, W) of the grid.
    to_grid : callable, optional
        Maps ``[..., 2]`` original-image px to grid px (``Prepared.to_grid``); identity if None.
    """
    if not isinstance(landmarks, Mapping):
        raise InputError("landmarks must be a mapping {septal_annulus, lateral_annulus, apex} -> (x, y)")
    missing = [n for n in LANDMARK_NAMES if n not in landmarks]
    if missing:
        raise InputError(f"landmarks lack {missing}; give all of {list(LANDMARK_NAMES)} in original-image pixels")
    try:
        arr = np.array([np.asarray(landmarks[n], dtype=np.float64).reshape(2) for n in LANDMARK_NAMES])
    except (TypeError, ValueError) as exc:
        raise InputError(f"landmarks must be (x, y) number pairs: {exc}") from None
    if not np.all(np.isfinite(arr)):
        raise InputError("landmarks contain NaN or infinite coordinates")
    if to_grid is not None:
        arr = np.asarray(to_grid(arr), dtype=np.float64).reshape(3, 2)
    mir, warns = validate_landmarks(arr[0], arr[1], arr[2], shape, mirrored=mirrored)
    return Landmarks(arr[0], arr[1], arr[2], source="caller", confidence=1.0, mirrored=mir, warnings=warns)


# --------------------------------------------------------------------------- wall geometry


def _smooth_image(img: np.ndarray, sigma: float) -> np.ndarray:
    import cv2

    return cv2.GaussianBlur(img.astype(np.float32), (0, 0), sigma)


def _resample_polyline(p: np.ndarray, n: int) -> np.ndarray:
    seg = np.hypot(*np.diff(p, axis=0).T)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    t = np.linspace(0.0, s[-1], n)
    return np.stack([np.interp(t, s, p[:, 0]), np.interp(t, s, p[:, 1])], axis=1)


def _bullet(q: np.ndarray) -> np.ndarray:
    """Relative half-width of a bullet-shaped LV at fraction ``q`` of its length from the apex."""
    qc = 0.62
    r = np.clip((qc - q) / qc, -1.0, 1.0)
    ell = np.sqrt(np.clip(1.0 - r * r, 0.0, None))
    t = np.clip((q - qc) / (1 - qc), 0.0, None)
    return np.where(q < qc, ell, 1.0 - 0.14 * t * t)


def wall_points(
    annulus: np.ndarray,
    apex: np.ndarray,
    other_annulus: np.ndarray,
    n: int = 31,
    *,
    image: np.ndarray | None = None,
    snap_px: float = 0.0,
) -> np.ndarray:
    """Points along one LV wall from its annulus point (index 0) to the apex (index n-1).

    The wall follows a bullet-shaped LV in the long-axis frame (annulus midpoint to apex):
    elliptic over the apical 62 % of the length, widest there, then tapering slightly (by 14 %)
    to the annulus, the usual model of an apical-4-chamber LV; points are equally spaced in arc
    length. With ``image`` and ``snap_px > 0`` the interior points
    are moved along the wall normal (at most ``snap_px``) to the brightest tissue of the
    smoothed image, the offsets smoothed along the wall.

    Parameters
    ----------
    annulus, apex, other_annulus : array-like
        ``[2]`` grid px.
    n : int
        Number of points (3k+1 puts the segment borders on points).

    Returns
    -------
    np.ndarray
        float64 ``[n, 2]``.
    """
    mid, u, length = long_axis(annulus, other_annulus, apex)
    nrm = np.array([-u[1], u[0]])
    a = np.asarray(annulus, dtype=np.float64) - mid
    la, wa = float(a @ u), float(a @ nrm)
    span = length - la  # long-axis distance from this annulus point to the apex
    q = np.linspace(1.0, 0.0, 400) ** 1.5  # fraction of the way from the apex to the annulus
    l = length - q * span
    wv = wa * _bullet(q) / _bullet(np.array([1.0]))[0]
    curve = mid + l[:, None] * u + wv[:, None] * nrm
    pts = _resample_polyline(curve, n)
    if image is not None and snap_px > 0:
        img = _smooth_image(image, 1.5)
        tang = np.gradient(pts, axis=0)
        tang /= np.maximum(np.hypot(tang[:, 0], tang[:, 1]), 1e-9)[:, None]
        nn = np.stack([-tang[:, 1], tang[:, 0]], axis=1)
        offs = np.linspace(-snap_px, snap_px, int(4 * snap_px) + 1)
        cand = pts[:, None, :] + offs[None, :, None] * nn[:, None, :]
        val = bilinear_sample(img, cand)
        best = offs[np.argmax(val, axis=1)]
        best[0] = best[-1] = 0.0
        k = np.array([1, 2, 3, 2, 1], float)
        best = np.convolve(np.pad(best, 2, mode="edge"), k / k.sum(), mode="valid")
        best[0] = best[-1] = 0.0
        pts = _resample_polyline(pts + best[:, None] * nn, n)
    return pts


def _otsu(values: np.ndarray) -> float:
    hist, edges = np.histogram(values, bins=128)
    centres = 0.5 * (edges[1:] + edges[:-1])
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres)
    mu0 = m0 / np.maximum(w0, 1)
    mu1 = (m0[-1] - m0) / np.maximum(w1, 1)
    between = w0 * w1 * (mu0 - mu1) ** 2
    return float(centres[int(np.argmax(between))])


def _lv_cavity(img: np.ndarray, mask: np.ndarray, thr_factor: float = 1.0) -> tuple[np.ndarray, list[np.ndarray]]:
    """bool [H, W] LV cavity, and the other large cavities, on a smoothed ED frame: of the cavities enclosed by bright
    tissue (holes of the closed tissue mask), the one whose top is nearest the transducer (the
    LV apex is the highest cavity point of an apical view). Gaps in the walls (drop-out) are
    bridged by a morphological closing, larger until a cavity is enclosed."""
    import cv2

    vals = img[mask]
    if vals.size < 100:
        raise QualityError("the sector is too small to find the heart's landmarks")
    thr = thr_factor * _otsu(vals)
    tissue = ((img > thr) & mask).astype(np.uint8)
    h, w = img.shape
    min_area = 0.01 * mask.sum()
    # the heart's outline: convex hull of the large tissue blobs; drawn in, it closes chambers
    # whose far wall is too faint to be seen (e.g. the atria)
    n0, lab0, st0, _ = cv2.connectedComponentsWithStats(tissue, connectivity=8)
    big = [i for i in range(1, n0) if st0[i, cv2.CC_STAT_AREA] >= 0.1 * st0[1:, cv2.CC_STAT_AREA].max()]
    hull_line = np.zeros_like(tissue)
    if big:
        yx = np.argwhere(np.isin(lab0, big))
        hull = cv2.convexHull(yx[:, ::-1].astype(np.int32))
        cv2.polylines(hull_line, [hull], True, 1, 2)
    for k in (7, 11, 15, 21, 27):
        closed = cv2.morphologyEx(tissue, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
        closed = closed | hull_line
        free = (closed == 0).astype(np.uint8)
        n, lab, stats, _ = cv2.connectedComponentsWithStats(free, connectivity=4)
        # the exterior: every free region touching the image border or outside the sector
        outside = set(np.unique(lab[~mask]).tolist()) | set(np.unique(
            np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]])).tolist())
        areas = [stats[i, cv2.CC_STAT_AREA] for i in range(1, n) if i not in outside]
        big_area = max(areas) if areas else 0
        # chambers are the big holes; slivers of background between walls are not
        cands = [i for i in range(1, n)
                 if i not in outside and stats[i, cv2.CC_STAT_AREA] >= max(min_area, 0.4 * big_area)]
        best = 0
        if cands:
            # the highest top; of tops within 10 % of the image height of it (an RV squeezed up
            # along the sector edge can reach as high as the LV apex), the larger chamber
            top0 = min(stats[i, cv2.CC_STAT_TOP] for i in cands)
            near = [i for i in cands if stats[i, cv2.CC_STAT_TOP] <= top0 + 0.1 * h]
            best = max(near, key=lambda i: stats[i, cv2.CC_STAT_AREA])
        if best:
            others = [lab == i for i in range(1, n)
                      if i != best and i not in outside and stats[i, cv2.CC_STAT_AREA] >= 0.3 * stats[best, cv2.CC_STAT_AREA]]
            cav = lab == best
            # undo the closing's erosion of the cavity
            cav = cv2.dilate(cav.astype(np.uint8), cv2.getStructuringElement(
                cv2.MORPH_ELLIPSE, (k // 2 | 1, k // 2 | 1))).astype(bool) & (tissue == 0)
            nn, lab2, st2, _ = cv2.connectedComponentsWithStats(cav.astype(np.uint8), connectivity=4)
            if nn > 1:
                cav = lab2 == 1 + int(np.argmax(st2[1:, cv2.CC_STAT_AREA]))
            return cav, others
    raise QualityError("no cardiac cavity enclosed by tissue in the end-diastolic frame; pass landmarks=")


def _elongation(region: np.ndarray) -> float:
    """Ratio of the principal axes (sqrt of the eigenvalues' ratio) of a bool region."""
    ys, xs = np.nonzero(region)
    if xs.size < 10:
        return 0.0
    ev = np.linalg.eigvalsh(np.cov(np.stack([xs, ys]).astype(float)))
    return float(np.sqrt(ev[1] / max(ev[0], 1e-9)))


def _elongated_cavity(img: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, list[np.ndarray], bool]:
    """The LV cavity found with the Otsu tissue threshold, or lower ones when the cavity found
    is not LV-shaped: a faint septum or atrioventricular junction lets the blood pools merge
    into a round region spanning several chambers, while an LV in an apical view is about twice
    as long as it is wide. Returns (cavity, other cavities, whether an LV-shaped one was found);
    without one, the most elongated candidate.

    An LV-shaped cavity found with no other chamber enclosed beside it may be the RV (with the
    right atrium): when the LV's lateral wall or the mitral plane has a gap at that threshold,
    the LV stays open to the outside and the only enclosed chamber is the RV. Then the lower
    thresholds are tried too, and an LV-shaped cavity whose top lies more than 10 % of the
    image height nearer the transducer wins (the LV apex is the highest cavity point of an
    apical view)."""
    best = None
    shaped: list[tuple[int, np.ndarray, list[np.ndarray]]] = []
    for fac in (1.0, 0.8, 0.6, 0.45, 0.35, 0.25):
        try:
            cav, others = _lv_cavity(img, mask, fac)
        except QualityError:
            continue
        el = _elongation(cav)
        area = cav.sum() / max(int(mask.sum()), 1)
        if el >= 2.0 and 0.03 <= area <= 0.3:
            if others and not shaped:
                return cav, others, True
            shaped.append((int(np.nonzero(cav)[0].min()), cav, others))
        if best is None or el > best[0]:
            best = (el, cav, others)
    if shaped:
        top = min(t for t, _, _ in shaped)
        _, cav, others = next(c for c in shaped if c[0] <= top + 0.1 * img.shape[0])
        return cav, others, True
    if best is None:
        raise QualityError("no cardiac cavity enclosed by tissue in the end-diastolic frame; pass landmarks=")
    return best[1], best[2], False


@njit(cache=True, nogil=True)
def _wall_profiles(img, starts, dx, dy, max_len):
    """Walk from each cavity border point ``starts[i]`` (x, y) outward along (dx, dy), in
    0.5 px steps up to ``max_len``; return (distance to the mid-wall, wall thickness) in px per
    point: the bright band's middle, the band being where the intensity is above half its
    peak; (0, 0) when fewer than 4 steps lie inside the image."""
    h, w = img.shape
    n_t = int(np.ceil(max_len / 0.5))
    n = starts.shape[0]
    dist = np.zeros(n)
    thick = np.zeros(n)
    v = np.empty(n_t)
    tt = np.empty(n_t)
    for i in range(n):
        m = 0
        for j in range(n_t):
            t = j * 0.5
            x = starts[i, 0] + t * dx
            y = starts[i, 1] + t * dy
            if 0 <= x <= w - 1 and 0 <= y <= h - 1:
                v[m] = bilinear_sample_one(img, x, y)
                tt[m] = t
                m += 1
        if m < 4:
            continue
        k = 0
        for j in range(1, m):
            if v[j] > v[k]:
                k = j
        half = 0.5 * (v[k] + v[0])
        lo = k
        while lo > 0 and v[lo - 1] > half:
            lo -= 1
        hi = k
        while hi < m - 1 and v[hi + 1] > half:
            hi += 1
        dist[i] = 0.5 * (tt[lo] + tt[hi])
        thick[i] = tt[hi] - tt[lo]
    return dist, thick


@njit(cache=True, nogil=True)
def _band_widths(img, starts, dx, dy, thr, max_len):
    """Width (px) of the tissue band met walking from each cavity border point outward: from
    the border to the last point above ``thr`` (tissue) before 3 px in a row below it (blood or
    background beyond the wall); speckle gaps shorter than that do not end the band. 0 when
    none of the first 3 px is tissue."""
    n_t = int(np.ceil(max_len / 0.5))
    out = np.zeros(starts.shape[0])
    for i in range(starts.shape[0]):
        first = False
        last = 0
        gap = 0
        for j in range(n_t):
            t = j * 0.5
            above = bilinear_sample_one(img, starts[i, 0] + t * dx, starts[i, 1] + t * dy) > thr
            if j < 6 and above:
                first = True
            if j == 6 and not first:
                break
            if above:
                last, gap = j, 0
            else:
                gap += 1
                if gap >= 6 and last > 0:
                    break
        if first:
            out[i] = last * 0.5
    return out


def _fit_wall_line(pts: np.ndarray, y_eval: float, deg: int = 1) -> tuple[np.ndarray, np.ndarray] | None:
    """Robust polynomial ``x = f(y)`` (degree ``deg``) through wall points ``[N, 2]`` (outliers
    beyond 2.5 MAD dropped, three rounds), evaluated at row ``y_eval``.

    Returns
    -------
    (point, direction) or None
        The curve's point at ``y_eval`` and its unit tangent there, pointing down (toward the
        base); None with too few points.
    """
    q = pts[np.all(np.isfinite(pts), axis=1)]
    need = 4 * (deg + 1)
    if q.shape[0] < need:
        return None
    keep = np.ones(q.shape[0], bool)
    c = None
    for _ in range(3):
        if keep.sum() < need:
            return None
        c = np.polyfit(q[keep, 1], q[keep, 0], deg)
        r = np.abs(q[:, 0] - np.polyval(c, q[:, 1]))
        mad = float(np.median(r[keep])) + 0.5
        keep = r <= 2.5 * 1.4826 * mad
    slope = float(np.polyval(np.polyder(c), y_eval))
    d = np.array([slope, 1.0]) / np.hypot(slope, 1.0)
    return np.array([float(np.polyval(c, y_eval)), float(y_eval)]), d


def _band_profile(img: np.ndarray, origin: np.ndarray, tdir: np.ndarray, s: np.ndarray,
                  half: float) -> np.ndarray:
    """Mean intensity of a band ``2 half`` px wide across the line ``origin + s tdir``, at each s."""
    nrm = np.array([-tdir[1], tdir[0]])
    off = np.linspace(-half, half, max(3, int(2 * half) + 1))
    pts = origin[None, None, :] + s[:, None, None] * tdir[None, None, :] + off[None, :, None] * nrm[None, None, :]
    return bilinear_sample(img, pts).mean(axis=1)


def _band_centre(img: np.ndarray, p: np.ndarray, reach: float, frac: float = 0.65) -> np.ndarray:
    """Centre of the bright tissue band through ``p`` along its image row (the basal walls of an
    apical view run roughly along the image columns, so the row crosses the wall).

    The row profile (mean of 5 rows, every 0.5 px within ``reach`` px of ``p``) is thresholded at
    ``frac`` of the way from its minimum to its maximum; the run of samples above it that holds
    ``p`` (or the nearest one) is the wall band, and its middle is returned (same row as ``p``).
    The annulus landmarks lie on the mid-wall line, which the middle of the band finds; the
    brightest pixel sits on whichever edge holds the brightest speckle or the leaflet hinge.
    Used for the septal annulus: on 54 synthetic clips (seeds 0-17) the clips with a landmark
    more than 3 px off went from 38 to 32. Returns ``p`` when no sample clears the threshold.
    """
    xs = np.arange(-reach, reach + 0.25, 0.5)
    prof = _band_profile(img, np.asarray(p, float), np.array([1.0, 0.0]), xs, 2.0)
    lo, hi = float(prof.min()), float(prof.max())
    on = prof >= lo + frac * (hi - lo)
    idx = np.flatnonzero(on)
    if idx.size == 0 or hi <= lo:
        return np.asarray(p, float)
    c = int(np.argmin(np.abs(xs)))
    if not on[c]:
        c = int(idx[np.argmin(np.abs(idx - c))])
    a = c
    while a > 0 and on[a - 1]:
        a -= 1
    b = c
    while b < on.size - 1 and on[b + 1]:
        b += 1
    return np.array([float(p[0]) + 0.5 * (xs[a] + xs[b]), float(p[1])])


def _snap_bright(img: np.ndarray, p: np.ndarray, radius: float) -> np.ndarray:
    """The brightest pixel of ``img`` within ``radius`` px of ``p`` (the fibrous annulus is the
    most echogenic tissue at the hinge), or ``p`` when the disc leaves the image."""
    h, w = img.shape
    r = int(np.ceil(radius))
    x0, y0 = int(round(p[0])), int(round(p[1]))
    if x0 - r < 0 or y0 - r < 0 or x0 + r >= w or y0 + r >= h:
        return p
    yy, xx = np.mgrid[y0 - r:y0 + r + 1, x0 - r:x0 + r + 1]
    v = np.where(np.hypot(xx - p[0], yy - p[1]) <= radius, img[yy, xx], -np.inf)
    i = np.unravel_index(int(np.argmax(v)), v.shape)
    return np.array([float(xx[i]), float(yy[i])])


def _annulus_on_wall(img: np.ndarray, origin: np.ndarray, tdir: np.ndarray, wall_px: float,
                     search: float, prior_sd: float) -> tuple[float, float]:
    """Where the wall's bright band ends at the base, along the mid-wall line.

    The mitral annulus is the fibrous hinge at the basal end of the ventricular wall: below it
    the thick, bright myocardium gives way to the thin atrial wall or the atrial cavity. The
    band-averaged intensity along the mid-wall line drops there; the hinge itself is the last
    bright tissue, about 0.3 wall thicknesses before the drop (the half-width of the fibrous
    ring). The drop nearest the motion estimate (``s = 0``; Gaussian prior ``prior_sd`` px)
    is chosen among those within ``search`` px.

    Returns
    -------
    s_annulus : float
        Position of the annulus along the line, px from ``origin`` (positive toward the base).
    strength : float
        Relative intensity drop (0..1) at the chosen edge; small when no wall end is seen.
    """
    s = np.arange(-search - 6.0, search + 6.0 + 0.5, 1.0)
    prof = _band_profile(img, origin, tdir, s, max(2.0, 0.3 * wall_px))
    prof = np.convolve(np.pad(prof, 1, mode="edge"), np.ones(3) / 3.0, mode="valid")
    lag = 2
    drop = np.full(s.size, -np.inf)
    drop[lag:-lag] = prof[:-2 * lag] - prof[2 * lag:]
    rel = drop / np.maximum(prof[np.clip(np.arange(s.size) - lag, 0, s.size - 1)], 1.0)
    inside = np.abs(s) <= search
    score = np.where(inside, rel * np.exp(-0.5 * (s / prior_sd) ** 2), -np.inf)
    k = int(np.argmax(score))
    strength = float(np.clip(rel[k], 0.0, 1.0)) if np.isfinite(rel[k]) else 0.0
    return float(s[k] - 0.3 * wall_px), strength


def _excursion(flow: np.ndarray, pts: np.ndarray, down: np.ndarray, ed: int, t_end: int) -> np.ndarray:
    """Largest displacement of each point against ``down`` (toward the apex) while tracked from
    frame ``ed`` to ``t_end``: ``[N]`` px, from ``pts`` ``[N, 2]`` (x, y) px and a unit vector."""
    from .tracking import track_points

    tr = track_points(flow, pts, t0=ed, t1=t_end)
    return -((tr.points - tr.points[0]) @ down).min(axis=0)


def _line_excursion_peak(flow: np.ndarray, origin: np.ndarray, tdir: np.ndarray, wall_px: float,
                         mask: np.ndarray, ed: int, t_end: int) -> np.ndarray | None:
    """Point of largest systolic excursion toward the apex along a wall's mid-wall line.

    The line ``origin + s tdir`` (``tdir`` toward the base) is sampled every px from 2 wall
    thicknesses apexward to 3 basalward of ``origin``, so that it runs on down through the
    hinge into the atrial wall; the samples are tracked from ED to ``t_end`` and the excursion
    toward the apex (5-px running mean) peaks at the hinge, where the AV plane moves most.
    Unlike the cavity border, whose basal rows often follow the anterior mitral leaflet or end
    where the leaflets close the cavity, the line stays on the wall.

    Parameters
    ----------
    flow : np.ndarray
        ``[T-1, H, W, 2]`` dense flow, px/frame.
    origin, tdir : np.ndarray
        ``(x, y)`` px on the mid-wall line, and its unit direction toward the base.
    wall_px : float
        Wall thickness, px.
    mask : np.ndarray
        bool ``[H, W]`` sector mask; samples outside it are left out.
    ed, t_end : int
        Frames to track between (ED and one frame past ES).

    Returns
    -------
    np.ndarray or None
        ``(x, y)`` of the peak, or None with fewer than 8 samples inside the sector.
    """
    h, w = mask.shape
    s = np.arange(-2.0 * wall_px, 3.0 * wall_px + 0.5, 1.0)
    pts = origin[None, :] + s[:, None] * tdir[None, :]
    ok = (pts[:, 0] >= 0) & (pts[:, 0] <= w - 1) & (pts[:, 1] >= 0) & (pts[:, 1] <= h - 1)
    ok[ok] &= mask[np.round(pts[ok, 1]).astype(int), np.round(pts[ok, 0]).astype(int)]
    if ok.sum() < 8 or t_end <= ed:
        return None
    exc = _excursion(flow, pts[ok], tdir, ed, t_end)
    exc = np.convolve(np.pad(exc, 2, mode="edge"), np.ones(5) / 5.0, mode="valid")
    return pts[ok][int(np.argmax(exc))].copy()


def _display_side(xs: np.ndarray, ys: np.ndarray, others: list[np.ndarray], mask: np.ndarray,
                  mirrored: bool | None, warnings: list[ReportWarning]) -> tuple[bool, float]:
    """Whether the display is mirrored (LV on the viewer's left, septum its right border), and
    the image's confidence in that (0..1); ``xs, ys`` the LV cavity's pixels, ``others`` the
    other large cavities (bool ``[H, W]``), ``mask`` the sector. ``mirrored`` (the caller's
    declaration) wins; disagreements and an uncertain image are appended to ``warnings``.

    Cue 1: the RV, another large cavity level with the LV, lies beyond the septum. Cue 2: the
    LV lies off the sector's axis toward its own side.
    """
    lv_cx = float(xs.mean())
    votes = []
    y_lo, y_hi = float(ys.min()), float(ys.max())
    for o in others:
        oy, ox = np.nonzero(o)
        if y_lo < oy.mean() < y_hi:
            votes.append(1.0 if ox.mean() > lv_cx else -1.0)  # +1: RV on the right = mirrored
    my, mx = np.nonzero(mask)
    axis_x = float(mx[my <= my.min() + 0.1 * (my.max() - my.min())].mean())  # fan apex column
    off = (lv_cx - axis_x) / max(1.0, float(mx.max() - mx.min()))
    cue2 = float(np.clip(-off / 0.05, -1.0, 1.0))  # +1: LV left of the axis = mirrored
    score = (float(np.mean(votes)) if votes else 0.0) + 0.5 * cue2
    auto_mirrored = score > 0
    conf_mirror = float(min(1.0, abs(score)))
    if mirrored is None:
        if conf_mirror < 0.5:
            warnings.append(warn("display_uncertain", f"display orientation uncertain (score {score:+.2f}); pass "
                                 "mirrored= if the LV is not on the viewer's right"))
        return bool(auto_mirrored), conf_mirror
    if bool(auto_mirrored) != bool(mirrored) and conf_mirror >= 0.5:
        warnings.append(warn("display_disagrees", "the declared display disagrees with the image (the RV looks "
                             "to be on the other side)"))
    return bool(mirrored), conf_mirror


def detect_landmarks(
    frames: np.ndarray,
    flow: np.ndarray,
    beat: tuple[int, int, int],
    *,
    mask: np.ndarray | None = None,
    mirrored: bool | None = None,
) -> Landmarks:
    """Find the septal and lateral mitral annulus and the LV apex on the ED frame.

    Method: the LV cavity is the dark (blood) region whose top is nearest the transducer (the
    LV apex is the highest cavity point of an apical view); its left and right borders are
    followed down from the apex; along each, points on the middle of the wall are tracked from
    ED to ES with the dense flow, and the annulus is where the systolic longitudinal excursion
    peaks (the AV plane moves most; the atrial wall above it is pulled back less). That peak is
    flat over several px, so it only seeds the image search: the mid-wall line (the cavity
    border fitted above the leaflets' reach, moved out by half the wall thickness) is followed
    (on the septum the seed is first moved to the excursion peak along that line itself, which
    runs on through the hinge into the atrial septum: the basal cavity border often follows the
    anterior mitral leaflet or stops where the leaflets close the cavity)
    to where the wall's bright band ends at the base; the annulus (mid-wall hinge) is the last
    bright tissue, 0.3 wall thicknesses before that drop; the septal one is then moved along its
    image row to the middle of the septum's bright band (the mid-wall line), the lateral one
    snapped to the brightest pixel within 0.4 wall thicknesses (the lateral band often takes in
    the pericardium, whose middle lies outside the wall).
    A refinement that strays more than 1.2 wall thicknesses from the motion estimate is
    dropped (motion estimate kept, lower confidence). The apex: along the axis from the
    annulus midpoint through the middle of the cavity's cap (the top of the cavity seen from
    the mitral plane), the endocardial edge where the intensity rises to 80 % of the tissue
    level, moved out by half the wall thickness (mid-wall, like the annulus points). The cavity
    is the one found with the Otsu tissue threshold, or a lower one when that cavity is not
    LV-shaped (faint septum: the blood pools of several chambers merged).
    The display is standard (LV on the right) when the septal wall, the one with a cavity (the
    RV) beyond it, is the left border; ``mirrored`` overrides that.

    Parameters
    ----------
    frames : np.ndarray
        uint8 ``[T, H, W]`` analysis grid.
    flow : np.ndarray
        ``[T-1, H, W, 2]`` dense flow.
    beat : (int, int, int)
        (ed, es, next_ed).
    mask : np.ndarray, optional
        bool ``[H, W]`` sector mask (default: pixels that are ever non-zero).

    Returns
    -------
    Landmarks
        ``source="auto"``, with a confidence in 0..1 and warnings.

    Raises
    ------
    QualityError
        No cavity or no wall found: pass the landmarks by hand.
    """
    import cv2

    ed, es, ned = (int(x) for x in beat)
    h, w = frames.shape[1:]
    if mask is None:
        mask = frames.max(axis=0) > 0
    mask = np.asarray(mask, dtype=bool)
    img = cv2.GaussianBlur(frames[ed].astype(np.float32), (0, 0), 2.0)
    cav, others, cav_ok = _elongated_cavity(img, mask)
    ys, xs = np.nonzero(cav)
    y_top = int(ys.min())
    warnings: list[ReportWarning] = []
    if not cav_ok:
        warnings.append(warn("cavity_faint", "the LV cavity is not clearly separated from the other chambers "
                             "(faint walls)"))
    # cavity borders row by row, following the run that holds the cavity's axis
    rows = np.arange(y_top, int(ys.max()) + 1)
    left = np.full(rows.size, np.nan)
    right = np.full(rows.size, np.nan)
    cx = float(xs[ys <= y_top + 3].mean())
    for i, y in enumerate(rows):
        run = np.flatnonzero(cav[y])
        if run.size == 0:
            continue
        # split into runs, keep the one nearest the current centre
        cuts = np.flatnonzero(np.diff(run) > 1)
        segs = np.split(run, cuts + 1)
        seg = min(segs, key=lambda r: 0 if r[0] <= cx <= r[-1] else min(abs(r[0] - cx), abs(r[-1] - cx)))
        left[i], right[i] = seg[0] - 0.5, seg[-1] + 0.5
        cx = 0.5 * (left[i] + right[i])
    valid = np.isfinite(left)
    if valid.sum() < 20:
        raise QualityError("the LV cavity found is too small; pass landmarks=")
    # mid-wall points on both borders (horizontal outward walk), and wall thickness
    mids = {}
    thick = []
    thick_side: dict[str, list[float]] = {}
    for side, border, sgn in (("left", left, -1.0), ("right", right, 1.0)):
        pts = np.full((rows.size, 2), np.nan)
        iv = np.flatnonzero(valid)
        d, t_w = _wall_profiles(img, np.stack([border[iv], rows[iv].astype(float)], axis=1), sgn, 0.0, 25.0)
        for i, di, ti in zip(iv, d, t_w):
            if ti > 0:
                pts[i] = (border[i] + sgn * di, rows[i])
                thick.append(float(ti))
                thick_side.setdefault(side, []).append(float(ti))
        mids[side] = pts
    wall_px = float(np.median(thick)) if thick else 8.0
    # wall thickness. "narrow": the thinner side's median half-max band width (the septum lies
    # between two blood pools, the lateral wall's band often takes in the pericardium); "wide":
    # the band width at the level half-way between blood and tissue with speckle gaps bridged
    thr_t = _otsu(img[mask])
    blood = float(np.median(img[cav]))
    tissue_lvl = float(np.median(img[mask & (img > thr_t)]))
    thr = 0.5 * (tissue_lvl + blood)
    bw = {}
    for side, border, sgn in (("left", left, -1.0), ("right", right, 1.0)):
        iv = np.flatnonzero(valid)[int(0.2 * valid.sum()):int(0.7 * valid.sum())]
        wv = _band_widths(img, np.stack([border[iv], rows[iv].astype(float)], axis=1), sgn, 0.0, thr, 40.0)
        wv = [float(x) for x in wv if x > 0]
        if len(wv) >= 5:
            bw[side] = float(np.median(wv))
    narrow = min((float(np.median(v)) for v in thick_side.values() if len(v) >= 5), default=wall_px)
    wide = min(bw.values()) if bw else narrow
    # the two estimates bracket the wall (half of the peak above the border value cuts the
    # band short; the blood/tissue mid level with speckle gaps bridged takes in the blur of
    # both edges); their mean sets the apex's mid-wall offset, while the annulus search offsets
    # the cavity border by half of "narrow", the width measured from that same border
    wall_ref = 0.5 * (narrow + wide)
    # systolic longitudinal excursion of the mid-wall points (up = toward the apex): the largest
    # upward displacement from ED to one frame past ES, so that a detected ES a frame early does
    # not move the peak (not further: the leaflets open toward the apex after isovolumic
    # relaxation and would draw the peak onto them)
    exc = {}
    t_end = min(ned - 1, es + 1)  # >= es, since es < ned
    for side, pts in mids.items():
        okp = np.all(np.isfinite(pts), axis=1)
        e = np.full(rows.size, np.nan)
        if okp.sum() >= 5 and es > ed:
            q = pts[okp].copy()
            q[:, 0] = np.clip(q[:, 0], 0, w - 1)
            e[okp] = _excursion(flow, q, np.array([0.0, 1.0]), ed, t_end)
        exc[side] = e
    # which border is septal, decided first (the two annulus points are refined differently)
    mir, conf_mirror = _display_side(xs, ys, others, mask, mirrored, warnings)
    septal_side = "right" if mir else "left"
    # the annulus: peak excursion on the lower half of each border (smoothed along the border)
    ann = {}
    prom = []
    strengths: list[float] = []
    n_rows = rows.size
    for side in ("left", "right"):
        e = exc[side].copy()
        good = np.isfinite(e)
        if good.sum() < 10:
            raise QualityError("no wall motion found along the LV cavity; pass landmarks=")
        e[~good] = np.interp(np.flatnonzero(~good), np.flatnonzero(good), e[good])
        if np.nanmax(e) < 0.5:
            raise QualityError("no systolic wall motion along the LV cavity (< 0.5 px): landmarks cannot be "
                               "found from motion; pass landmarks=")
        es_ = np.convolve(np.pad(e, 3, mode="edge"), np.ones(7) / 7, mode="valid")
        lo = int(0.35 * n_rows)
        k = lo + int(np.argmax(es_[lo:]))
        ann[side] = mids[side][k] if np.all(np.isfinite(mids[side][k])) else np.array([np.nan, rows[k]])
        # refine on the image: where the wall's bright band ends, along the mid-wall line fitted
        # above the leaflets' reach (the motion peak is flat over several px)
        border = left if side == "left" else right
        sgn = -1.0 if side == "left" else 1.0
        sl = slice(max(0, k - int(0.45 * n_rows)), max(1, k - int(0.12 * n_rows)))
        bpts = np.stack([border[sl], rows[sl].astype(float)], axis=1)
        fit = _fit_wall_line(bpts, float(rows[k]), 1)
        if fit is not None:
            p0, tdir = fit
            nrm = np.array([tdir[1], -tdir[0]]) * sgn * np.sign(tdir[1])  # outward, across the wall
            if nrm[0] * sgn < 0:
                nrm = -nrm
            half = 0.5 * narrow * abs(tdir[1])  # horizontal width -> width across the wall
            origin = p0 + half * nrm  # mid-wall line, level with the motion estimate
            coarse = ann[side]
            if side == septal_side:
                # the septal motion seed, re-found along the mid-wall line itself (see
                # _line_excursion_peak); the lateral one keeps the border's peak (measured worse)
                peak = _line_excursion_peak(flow, origin, tdir, wall_px, mask, ed, t_end)
                if peak is not None:
                    origin = coarse = peak
            s_a, strength = _annulus_on_wall(img, origin, tdir, wall_px, max(6.0, 1.5 * wall_px), 0.7 * wall_px)
            cand = origin + s_a * tdir
            if np.all(np.isfinite(coarse)) and np.hypot(*(cand - coarse)) > 1.2 * wall_px:
                # the fitted wall line strays from the wall the motion found (irregular border):
                # keep the motion estimate
                ann[side] = coarse
                strengths.append(0.0)
            else:
                # septal: the middle of the wall's bright band (the septum lies between two blood
                # pools, so its band is the wall); lateral: the brightest pixel near the hinge (the
                # lateral band often takes in the pericardium, whose middle lies outside the wall)
                ann[side] = (_band_centre(img, cand, 1.6 * narrow + 6.0) if side == septal_side
                             else _snap_bright(img, cand, 0.4 * narrow))
                strengths.append(strength)
        else:
            strengths.append(0.0)
            warnings.append(warn("annulus_from_motion", f"{side} annulus placed from wall motion only (wall line "
                                 "not found)"))
        prom.append(float(np.clip((es_[k] - np.median(es_[: max(lo, 1)])) / max(es_[k], 1e-6), 0, 1)))
        if not np.all(np.isfinite(ann[side])):
            raise QualityError(f"no {side} annulus found; pass landmarks=")
    # apex: the endocardial apex is the top of the cavity seen from the mitral plane (its
    # farthest pixels along the normal to the annulus line); the mid-wall apex lies half a wall
    # thickness beyond it
    mid = 0.5 * (ann["left"] + ann["right"])
    a_dir = ann["right"] - ann["left"]
    u = np.array([a_dir[1], -a_dir[0]]) / max(np.hypot(*a_dir), 1e-9)
    if u[1] > 0:
        u = -u
    proj = (xs - mid[0]) * u[0] + (ys - mid[1]) * u[1]
    across = (xs - mid[0]) * u[1] - (ys - mid[1]) * u[0]
    # across the axis: the middle of the cavity's cap (its top 4 % of the length), so that a
    # broad, flat or cluttered apex does not pull the point to one corner
    cap_ = proj >= 0.96 * proj.max()
    apex_endo = mid + (proj.max() + 0.5) * u + float(np.mean(across[cap_])) * np.array([u[1], -u[0]])
    # the endocardial edge itself: walking up the axis through the cap's middle from the middle
    # of the cavity, the first place where the band-averaged intensity stays (3 px) above 80 %
    # of the way from blood to tissue: apical trabeculae and near-field haze, between the two
    # levels, end the cavity found by thresholding short of the compact myocardium
    ua = apex_endo - mid
    ln = float(np.hypot(*ua))
    ua /= max(ln, 1e-9)
    t = np.arange(0.5 * ln, ln + 2.0 * wall_ref, 0.5)
    prof = _band_profile(img, mid, ua, t, 3.0)
    above = prof > blood + 0.8 * (tissue_lvl - blood)
    run = np.convolve(above.astype(float), np.ones(6), mode="full")[5:]  # this and the next 2.5 px
    hit = np.flatnonzero(run >= 6)
    if hit.size:
        apex_endo = mid + float(t[hit[0]]) * ua
        u = ua
    apex = apex_endo + 0.5 * wall_ref * u
    sep, lat = (ann["right"], ann["left"]) if mir else (ann["left"], ann["right"])
    try:
        _, more = validate_landmarks(sep, lat, apex, (h, w), mirrored=mir)
        warnings += more
    except InputError as exc:
        raise QualityError(f"automatic landmarks are implausible ({exc}); pass landmarks=") from None
    conf = float(np.clip(0.5 * min(prom) + 0.5 * conf_mirror, 0.0, 1.0))
    if mirrored is not None:
        conf = float(np.clip(0.5 * min(prom) + 0.5, 0.0, 1.0))
    # the image cue: a wall whose bright band does not visibly end at the base (relative drop
    # < 0.3) leaves the annulus to the flat motion peak, uncertain by several px
    conf *= 0.75 + 0.25 * min(1.0, min(strengths) / 0.3)
    if min(strengths) < 0.15:
        warnings.append(warn("annulus_from_motion", "the basal end of a wall was not found on the image; annulus "
                             "placed from wall motion only (uncertain by several px)"))
    if not cav_ok:
        conf *= 0.7
    if geometry_warnings(sep, lat, apex):
        conf *= 0.5  # the two gross misses of 36 synthetic clips, and no other clip
    if conf < 0.5:
        warnings.append(low_confidence_warning(conf))
    return Landmarks(np.asarray(sep, float), np.asarray(lat, float), np.asarray(apex, float), source="auto",
                     confidence=conf, mirrored=mir, warnings=warnings)
