"""Landmarks of the apical 4-chamber view on the first end-diastolic frame (septal and lateral
mitral annulus, LV apex), from the caller or found automatically, and the points along the two
LV walls (inferoseptal, anterolateral) from each annulus to the apex.

Coordinates are (x, y) pixels of the analysis grid unless said otherwise.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from .errors import InputError, QualityError

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
    warnings : list of str
    """

    septal_annulus: np.ndarray
    lateral_annulus: np.ndarray
    apex: np.ndarray
    source: str = "caller"
    confidence: float = 1.0
    mirrored: bool = False
    warnings: list[str] = field(default_factory=list)

    def as_array(self) -> np.ndarray:
        """``[3, 2]`` in the order of :data:`LANDMARK_NAMES`."""
        return np.stack([self.septal_annulus, self.lateral_annulus, self.apex]).astype(np.float64)

    def to_dict(self, to_original: Callable[[np.ndarray], np.ndarray] | None = None) -> dict[str, Any]:
        arr = self.as_array()
        if to_original is not None:
            arr = np.asarray(to_original(arr), dtype=np.float64)
        d: dict[str, Any] = {n: [round(float(a[0]), 2), round(float(a[1]), 2)] for n, a in zip(LANDMARK_NAMES, arr)}
        d.update(source=self.source, confidence=round(float(self.confidence), 3), mirrored=bool(self.mirrored),
                 coords="original" if to_original is not None else "grid", warnings=list(self.warnings))
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
    warnings : list of str

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
    warnings: list[str] = []
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
        warnings.append("the long axis is tilted more than 60 degrees from vertical")
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


def _bilinear_img(img: np.ndarray, xy: np.ndarray) -> np.ndarray:
    h, w = img.shape
    x = np.clip(xy[..., 0], 0, w - 1.001)
    y = np.clip(xy[..., 1], 0, h - 1.001)
    x0 = np.floor(x).astype(int)
    y0 = np.floor(y).astype(int)
    ax, ay = x - x0, y - y0
    return ((1 - ax) * (1 - ay) * img[y0, x0] + ax * (1 - ay) * img[y0, x0 + 1]
            + (1 - ax) * ay * img[y0 + 1, x0] + ax * ay * img[y0 + 1, x0 + 1])


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
        val = _bilinear_img(img, cand)
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


def _lv_cavity(img: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """bool [H, W] LV cavity, and the other large cavities, on a smoothed ED frame: of the cavities enclosed by bright
    tissue (holes of the closed tissue mask), the one whose top is nearest the transducer (the
    LV apex is the highest cavity point of an apical view). Gaps in the walls (drop-out) are
    bridged by a morphological closing, larger until a cavity is enclosed."""
    import cv2

    vals = img[mask]
    if vals.size < 100:
        raise QualityError("the sector is too small to find the heart's landmarks")
    thr = _otsu(vals)
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
        best, best_top = 0, np.inf
        areas = [stats[i, cv2.CC_STAT_AREA] for i in range(1, n) if i not in outside]
        big_area = max(areas) if areas else 0
        for i in range(1, n):
            # chambers are the big holes; slivers of background between walls are not
            if i in outside or stats[i, cv2.CC_STAT_AREA] < max(min_area, 0.4 * big_area):
                continue
            top = stats[i, cv2.CC_STAT_TOP]
            if top < best_top:
                best, best_top = i, top
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


def _wall_profile(img: np.ndarray, start: np.ndarray, direction: np.ndarray, max_len: float) -> tuple[float, float]:
    """Walk from a cavity border point outward; return (distance to the mid-wall, wall thickness)
    in px: the bright band's middle, the band being where the intensity is above half its peak."""
    t = np.arange(0.0, max_len, 0.5)
    pts = start[None, :] + t[:, None] * direction[None, :]
    h, w = img.shape
    ok = (pts[:, 0] >= 0) & (pts[:, 0] <= w - 1) & (pts[:, 1] >= 0) & (pts[:, 1] <= h - 1)
    if ok.sum() < 4:
        return 0.0, 0.0
    v = _bilinear_img(img, pts[ok])
    tt = t[ok]
    k = int(np.argmax(v))
    half = 0.5 * (v[k] + v[0])
    lo = k
    while lo > 0 and v[lo - 1] > half:
        lo -= 1
    hi = k
    while hi < v.size - 1 and v[hi + 1] > half:
        hi += 1
    return 0.5 * (tt[lo] + tt[hi]), float(tt[hi] - tt[lo])


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
    peaks (the AV plane moves most; the atrial wall above it is pulled back less). The apex is
    the cavity top moved up by half the wall thickness (mid-wall, like the annulus points).
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

    from .tracking import track_points

    ed, es, _ = (int(x) for x in beat)
    h, w = frames.shape[1:]
    if mask is None:
        mask = frames.max(axis=0) > 0
    mask = np.asarray(mask, dtype=bool)
    img = cv2.GaussianBlur(frames[ed].astype(np.float32), (0, 0), 2.0)
    cav, others = _lv_cavity(img, mask)
    ys, xs = np.nonzero(cav)
    y_top = int(ys.min())
    warnings: list[str] = []
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
    for side, border, sgn in (("left", left, -1.0), ("right", right, 1.0)):
        pts = np.full((rows.size, 2), np.nan)
        for i in np.flatnonzero(valid)[::1]:
            d, t_w = _wall_profile(img, np.array([border[i], rows[i]], float), np.array([sgn, 0.0]), 25.0)
            if t_w > 0:
                pts[i] = (border[i] + sgn * d, rows[i])
                thick.append(t_w)
        mids[side] = pts
    wall_px = float(np.median(thick)) if thick else 8.0
    # systolic longitudinal excursion of the mid-wall points (up = toward the apex)
    exc = {}
    for side, pts in mids.items():
        okp = np.all(np.isfinite(pts), axis=1)
        e = np.full(rows.size, np.nan)
        if okp.sum() >= 5 and es > ed:
            q = pts[okp].copy()
            q[:, 0] = np.clip(q[:, 0], 0, w - 1)
            tr = track_points(flow, q, t0=ed, t1=es)
            e[okp] = -(tr.points[-1, :, 1] - tr.points[0, :, 1])
        exc[side] = e
    # the annulus: peak excursion on the lower half of each border (smoothed along the border)
    ann = {}
    prom = []
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
        prom.append(float(np.clip((es_[k] - np.median(es_[: max(lo, 1)])) / max(es_[k], 1e-6), 0, 1)))
        if not np.all(np.isfinite(ann[side])):
            raise QualityError(f"no {side} annulus found; pass landmarks=")
    # apex: top of the cavity, moved up by half the wall thickness along the provisional axis
    # endocardial apex: the cavity pixels farthest from the annulus midpoint
    mid = 0.5 * (ann["left"] + ann["right"])
    dist = np.hypot(xs - mid[0], ys - mid[1])
    far = dist >= dist.max() - 1.5
    apex_endo = np.array([xs[far].mean(), ys[far].mean()], dtype=float)
    u = apex_endo - mid
    u /= max(np.hypot(*u), 1e-9)
    apex_endo = apex_endo + 0.5 * u  # pixel centre -> cavity edge
    d_mid, t_ap = _wall_profile(img, apex_endo, u, 30.0)
    apex = apex_endo + (d_mid if t_ap > 0 else 0.5 * wall_px) * u
    # which border is septal. Cue 1: the RV, another large cavity level with the LV, lies beyond
    # the septum. Cue 2: the LV lies off the sector's axis toward its own side.
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
        mir = bool(auto_mirrored)
        if conf_mirror < 0.5:
            warnings.append(f"display orientation uncertain (score {score:+.2f}); pass mirrored= if the LV "
                            "is not on the viewer's right")
    else:
        mir = bool(mirrored)
        if bool(auto_mirrored) != mir and conf_mirror >= 0.5:
            warnings.append("the declared display disagrees with the image (the RV looks to be on the other side)")
    sep, lat = (ann["right"], ann["left"]) if mir else (ann["left"], ann["right"])
    try:
        _, more = validate_landmarks(sep, lat, apex, (h, w), mirrored=mir)
        warnings += more
    except InputError as exc:
        raise QualityError(f"automatic landmarks are implausible ({exc}); pass landmarks=") from None
    conf = float(np.clip(0.5 * min(prom) + 0.5 * conf_mirror, 0.0, 1.0))
    if mirrored is not None:
        conf = float(np.clip(0.5 * min(prom) + 0.5, 0.0, 1.0))
    if conf < 0.5:
        warnings.append(f"automatic landmarks have low confidence ({conf:.2f}); check them or pass landmarks=")
    return Landmarks(np.asarray(sep, float), np.asarray(lat, float), np.asarray(apex, float), source="auto",
                     confidence=conf, mirrored=mir, warnings=warnings)
