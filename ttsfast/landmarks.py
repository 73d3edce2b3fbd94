"""Landmarks of the apical 4-chamber view on the first end-diastolic frame (septal and lateral
mitral annulus, LV apex), from the caller or found automatically, and the points along the two
LV walls (inferoseptal, anterolateral) from each annulus to the apex.

Coordinates are (x, y) pixels of the analysis grid unless said otherwise.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, NamedTuple

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
    "LandmarkParams",
    "DEFAULT_LANDMARK_PARAMS",
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


#: Plausible geometry of an apical view: most annulus width / LV length, and most ratio of the
#: apex's distances to the two annulus points; beyond them the landmarks are probably wrong
#: (see docs/landmark_notes.md).
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


# --------------------------------------------------------------------------- automatic detection


@dataclass(frozen=True)
class LandmarkParams:
    """Tuning numbers of :func:`detect_landmarks` and its steps.

    Lengths are grid px (``_px``), wall thicknesses (``_walls``), or shares of a length, an area
    or a count (``_share``, ``_rows``); levels are shares of an intensity or motion range. The
    defaults are the detector's own (chosen on synthetic clips: docs/landmarks.md,
    docs/landmark_notes.md); pass another instance to ``detect_landmarks(params=)`` to try others.
    """

    # --- the cavity (_find_cavity, _elongated_cavity, _lv_cavity)
    ed_blur_sigma: float = 2.0  #: Gaussian blur (px) of the ED frame that every image step reads
    min_sector_px: int = 100  #: fewer sector pixels than this: no search
    otsu_bins: int = 128  #: histogram bins of the Otsu blood/tissue threshold
    threshold_factors: tuple[float, ...] = (1.0, 0.8, 0.6, 0.45, 0.35, 0.25)  #: Otsu multiples tried in turn
    hull_blob_share: float = 0.1  #: tissue blobs of at least this share of the largest one outline the heart
    hull_line_px: int = 2  #: thickness of that outline, drawn in to close faint far walls
    closing_sizes: tuple[int, ...] = (7, 11, 15, 21, 27)  #: closing kernels (px), larger until a cavity is enclosed
    min_chamber_share: float = 0.01  #: least chamber area, share of the sector
    chamber_area_share: float = 0.4  #: chambers: holes of at least this share of the largest hole
    top_tie_share: float = 0.1  #: tops within this share of the image height count as equally high
    other_cavity_share: float = 0.3  #: other cavities (RV, atria) of at least this share of the LV's area
    min_elongation: float = 2.0  #: an LV-shaped cavity: principal-axis ratio at least this
    cavity_share_range: tuple[float, float] = (0.03, 0.3)  #: ... and an area share of the sector within this
    min_elongation_px: int = 10  #: fewer region pixels: elongation 0
    # --- the walls (_trace_borders, _trace_walls)
    cap_rows_px: int = 3  #: the border trace starts at the mean x of the cavity's top rows (this many px)
    min_cavity_rows: int = 20  #: fewer cavity rows: no detection
    profile_step_px: float = 0.5  #: step of the walks across the wall
    wall_walk_px: float = 25.0  #: reach of the walk to the mid-wall (half-max band)
    min_walk_steps: int = 4  #: fewer walk steps inside the image: no wall at that row
    default_wall_px: float = 8.0  #: wall thickness when no row measured one
    min_wall_samples: int = 5  #: least rows with a measured width for a side's median width
    band_rows: tuple[float, float] = (0.2, 0.7)  #: cavity rows (shares from the top) where band widths are measured
    band_walk_px: float = 40.0  #: reach of the band-width walk
    band_gap_px: float = 3.0  #: the band must start within, and ends at a gap of, this many px
    tissue_mid_level: float = 0.5  #: band-width threshold: this share of the way from blood to tissue
    midwall_share: float = 0.5  #: mid-wall points lie this share of a wall thickness beyond the cavity border
    # --- the annulus from motion (_wall_excursions, _place_annulus)
    frames_past_es: int = 1  #: excursion tracked from ED to this many frames past ES
    min_track_points: int = 5  #: fewer mid-wall points on a side: no excursion there
    min_motion_rows: int = 10  #: fewer rows with an excursion on a side: no detection
    min_excursion_px: float = 0.5  #: least systolic excursion (px) along a border
    excursion_smooth_rows: int = 7  #: running mean (rows) of the excursion along the border
    annulus_from_share: float = 0.35  #: the annulus motion peak is searched below this share of the rows
    # --- the annulus on the image (_refine_annulus, _annulus_on_wall, _line_excursion_peak)
    wall_fit_rows: tuple[float, float] = (0.45, 0.12)  #: the wall line is fitted from/to these row shares above the seed
    wall_fit_degree: int = 1  #: degree of the wall line x = f(y)
    fit_mad_cut: float = 2.5  #: points beyond this many robust SDs are dropped from the fit
    fit_rounds: int = 3  #: rounds of the robust fit
    fit_mad_floor_px: float = 0.5  #: added to the fit's median residual (px)
    annulus_search_px: float = 6.0  #: least reach (px) of the wall-end search along the line
    annulus_search_walls: float = 1.5  #: reach of the wall-end search, wall thicknesses
    annulus_prior_walls: float = 0.7  #: SD of the Gaussian prior around the motion seed, wall thicknesses
    annulus_margin_px: float = 6.0  #: the intensity profile runs this far beyond the search
    annulus_step_px: float = 1.0  #: step of that profile
    annulus_band_px: float = 2.0  #: least half-width (px) of the band averaged across the line
    annulus_band_walls: float = 0.3  #: half-width of that band, wall thicknesses
    annulus_smooth: int = 3  #: running mean (samples) of the profile
    annulus_drop_lag: int = 2  #: the drop is read over +-this many samples
    annulus_drop_floor: float = 1.0  #: least intensity the relative drop is divided by
    hinge_walls: float = 0.3  #: the hinge lies this many wall thicknesses before the drop
    max_stray_walls: float = 1.2  #: a refinement farther than this from the motion seed is dropped
    septal_reach_walls: float = 1.6  #: septal band search reach, wall thicknesses (plus septal_reach_px)
    septal_reach_px: float = 6.0  #: septal band search reach, px added
    septal_band_level: float = 0.65  #: septal band: samples above this share of the row profile's range
    septal_band_half_px: float = 2.0  #: half-height (px) of the rows averaged for that profile
    septal_step_px: float = 0.5  #: step of that profile
    lateral_snap_walls: float = 0.4  #: lateral annulus: brightest pixel within this many wall thicknesses
    line_from_walls: float = 2.0  #: septal motion re-search from this many wall thicknesses apexward ...
    line_to_walls: float = 3.0  #: ... to this many basalward along the mid-wall line
    line_step_px: float = 1.0  #: step of that search
    line_min_samples: int = 8  #: fewer samples inside the sector: no re-search
    line_smooth: int = 5  #: running mean (samples) of its excursion
    # --- the display side (_display_side)
    fan_apex_share: float = 0.1  #: the fan's apex column: mean over this share of the sector's top rows
    off_axis_share: float = 0.05  #: LV centre this share of the sector width off its axis: full axis cue
    axis_cue_weight: float = 0.5  #: weight of the axis cue against the RV-side cue
    display_certain: float = 0.5  #: display score magnitude from which the image's side is trusted
    # --- the apex (_place_apex)
    apex_cap_level: float = 0.96  #: the cavity's cap: pixels at least this share of its top distance up
    apex_walk_from: float = 0.5  #: the edge walk starts at this share of the way to the cap
    apex_walk_beyond_walls: float = 2.0  #: ... and runs this many wall thicknesses past it
    apex_step_px: float = 0.5  #: step of the edge walk
    apex_band_half_px: float = 3.0  #: half-width (px) of the band averaged across the walk
    apex_edge_level: float = 0.8  #: the edge: this share of the way from blood to tissue ...
    apex_edge_run: int = 6  #: ... held over this many steps
    # --- the confidence (_score_confidence)
    conf_prominence_weight: float = 0.5  #: weight of the weaker annulus motion peak's prominence
    conf_display_weight: float = 0.5  #: weight of the display's certainty (1 when declared)
    conf_image_floor: float = 0.75  #: confidence factor when no wall end is seen on the image
    strong_edge: float = 0.3  #: relative drop at the wall end from which the image factor is 1
    weak_edge: float = 0.15  #: relative drop below which the annulus counts as placed from motion
    faint_cavity_factor: float = 0.7  #: confidence factor for a cavity not clearly LV-shaped
    geometry_factor: float = 0.5  #: confidence factor for a geometry unlike an apical view's
    low_confidence: float = 0.5  #: confidence below this: low-confidence warning


DEFAULT_LANDMARK_PARAMS = LandmarkParams()


def _otsu(values: np.ndarray, bins: int = 128) -> float:
    hist, edges = np.histogram(values, bins=bins)
    centres = 0.5 * (edges[1:] + edges[:-1])
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres)
    mu0 = m0 / np.maximum(w0, 1)
    mu1 = (m0[-1] - m0) / np.maximum(w1, 1)
    between = w0 * w1 * (mu0 - mu1) ** 2
    return float(centres[int(np.argmax(between))])


def _lv_cavity(img: np.ndarray, mask: np.ndarray, thr_factor: float = 1.0,
               params: LandmarkParams = DEFAULT_LANDMARK_PARAMS) -> tuple[np.ndarray, list[np.ndarray]]:
    """bool [H, W] LV cavity, and the other large cavities, on a smoothed ED frame: of the cavities enclosed by bright
    tissue (holes of the closed tissue mask), the one whose top is nearest the transducer (the
    LV apex is the highest cavity point of an apical view). Gaps in the walls (drop-out) are
    bridged by a morphological closing, larger until a cavity is enclosed."""
    import cv2

    p = params
    vals = img[mask]
    if vals.size < p.min_sector_px:
        raise QualityError("the sector is too small to find the heart's landmarks")
    thr = thr_factor * _otsu(vals, p.otsu_bins)
    tissue = ((img > thr) & mask).astype(np.uint8)
    h, w = img.shape
    min_area = p.min_chamber_share * mask.sum()
    # the heart's outline: convex hull of the large tissue blobs; drawn in, it closes chambers
    # whose far wall is too faint to be seen (e.g. the atria)
    n0, lab0, st0, _ = cv2.connectedComponentsWithStats(tissue, connectivity=8)
    big = [i for i in range(1, n0) if st0[i, cv2.CC_STAT_AREA] >= p.hull_blob_share * st0[1:, cv2.CC_STAT_AREA].max()]
    hull_line = np.zeros_like(tissue)
    if big:
        yx = np.argwhere(np.isin(lab0, big))
        hull = cv2.convexHull(yx[:, ::-1].astype(np.int32))
        cv2.polylines(hull_line, [hull], True, 1, p.hull_line_px)
    for k in p.closing_sizes:
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
                 if i not in outside and stats[i, cv2.CC_STAT_AREA] >= max(min_area, p.chamber_area_share * big_area)]
        best = 0
        if cands:
            # the highest top; of tops within 10 % of the image height of it (an RV squeezed up
            # along the sector edge can reach as high as the LV apex), the larger chamber
            top0 = min(stats[i, cv2.CC_STAT_TOP] for i in cands)
            near = [i for i in cands if stats[i, cv2.CC_STAT_TOP] <= top0 + p.top_tie_share * h]
            best = max(near, key=lambda i: stats[i, cv2.CC_STAT_AREA])
        if best:
            others = [lab == i for i in range(1, n) if i != best and i not in outside
                      and stats[i, cv2.CC_STAT_AREA] >= p.other_cavity_share * stats[best, cv2.CC_STAT_AREA]]
            cav = lab == best
            # undo the closing's erosion of the cavity
            cav = cv2.dilate(cav.astype(np.uint8), cv2.getStructuringElement(
                cv2.MORPH_ELLIPSE, (k // 2 | 1, k // 2 | 1))).astype(bool) & (tissue == 0)
            nn, lab2, st2, _ = cv2.connectedComponentsWithStats(cav.astype(np.uint8), connectivity=4)
            if nn > 1:
                cav = lab2 == 1 + int(np.argmax(st2[1:, cv2.CC_STAT_AREA]))
            return cav, others
    raise QualityError("no cardiac cavity enclosed by tissue in the end-diastolic frame; pass landmarks=")


def _elongation(region: np.ndarray, min_px: int = 10) -> float:
    """Ratio of the principal axes (sqrt of the eigenvalues' ratio) of a bool region."""
    ys, xs = np.nonzero(region)
    if xs.size < min_px:
        return 0.0
    ev = np.linalg.eigvalsh(np.cov(np.stack([xs, ys]).astype(float)))
    return float(np.sqrt(ev[1] / max(ev[0], 1e-9)))


def _elongated_cavity(img: np.ndarray, mask: np.ndarray, params: LandmarkParams = DEFAULT_LANDMARK_PARAMS
                      ) -> tuple[np.ndarray, list[np.ndarray], bool]:
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
    p = params
    best = None
    shaped: list[tuple[int, np.ndarray, list[np.ndarray]]] = []
    for fac in p.threshold_factors:
        try:
            cav, others = _lv_cavity(img, mask, fac, p)
        except QualityError:
            continue
        el = _elongation(cav, p.min_elongation_px)
        area = cav.sum() / max(int(mask.sum()), 1)
        if el >= p.min_elongation and p.cavity_share_range[0] <= area <= p.cavity_share_range[1]:
            if others and not shaped:
                return cav, others, True
            shaped.append((int(np.nonzero(cav)[0].min()), cav, others))
        if best is None or el > best[0]:
            best = (el, cav, others)
    if shaped:
        top = min(t for t, _, _ in shaped)
        _, cav, others = next(c for c in shaped if c[0] <= top + p.top_tie_share * img.shape[0])
        return cav, others, True
    if best is None:
        raise QualityError("no cardiac cavity enclosed by tissue in the end-diastolic frame; pass landmarks=")
    return best[1], best[2], False


@njit(cache=True, nogil=True)
def _wall_profiles(img, starts, dx, dy, max_len, step=0.5, min_steps=4):
    """Walk from each cavity border point ``starts[i]`` (x, y) outward along (dx, dy), in
    ``step`` px steps up to ``max_len``; return (distance to the mid-wall, wall thickness) in px
    per point: the bright band's middle, the band being where the intensity is above half its
    peak; (0, 0) when fewer than ``min_steps`` steps lie inside the image."""
    h, w = img.shape
    n_t = int(np.ceil(max_len / step))
    n = starts.shape[0]
    dist = np.zeros(n)
    thick = np.zeros(n)
    v = np.empty(n_t)
    tt = np.empty(n_t)
    for i in range(n):
        m = 0
        for j in range(n_t):
            t = j * step
            x = starts[i, 0] + t * dx
            y = starts[i, 1] + t * dy
            if 0 <= x <= w - 1 and 0 <= y <= h - 1:
                v[m] = bilinear_sample_one(img, x, y)
                tt[m] = t
                m += 1
        if m < min_steps:
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
def _band_widths(img, starts, dx, dy, thr, max_len, step=0.5, gap_px=3.0):
    """Width (px) of the tissue band met walking from each cavity border point outward, in
    ``step`` px steps: from the border to the last point above ``thr`` (tissue) before
    ``gap_px`` px in a row below it (blood or background beyond the wall); speckle gaps shorter
    than that do not end the band. 0 when none of the first ``gap_px`` px is tissue."""
    n_t = int(np.ceil(max_len / step))
    n_gap = int(gap_px / step + 0.5)
    out = np.zeros(starts.shape[0])
    for i in range(starts.shape[0]):
        first = False
        last = 0
        gap = 0
        for j in range(n_t):
            t = j * step
            above = bilinear_sample_one(img, starts[i, 0] + t * dx, starts[i, 1] + t * dy) > thr
            if j < n_gap and above:
                first = True
            if j == n_gap and not first:
                break
            if above:
                last, gap = j, 0
            else:
                gap += 1
                if gap >= n_gap and last > 0:
                    break
        if first:
            out[i] = last * step
    return out


def _fit_wall_line(pts: np.ndarray, y_eval: float, deg: int = 1, *, mad_cut: float = 2.5, rounds: int = 3,
                   mad_floor: float = 0.5) -> tuple[np.ndarray, np.ndarray] | None:
    """Robust polynomial ``x = f(y)`` (degree ``deg``) through wall points ``[N, 2]`` (outliers
    beyond ``mad_cut`` robust SDs, 1.4826 (MAD + ``mad_floor``), dropped, ``rounds`` rounds),
    evaluated at row ``y_eval``.

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
    for _ in range(rounds):
        if keep.sum() < need:
            return None
        c = np.polyfit(q[keep, 1], q[keep, 0], deg)
        r = np.abs(q[:, 0] - np.polyval(c, q[:, 1]))
        mad = float(np.median(r[keep])) + mad_floor
        keep = r <= mad_cut * 1.4826 * mad
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


def _band_centre(img: np.ndarray, p: np.ndarray, reach: float, frac: float = 0.65, *, step: float = 0.5,
                 half: float = 2.0) -> np.ndarray:
    """Centre of the bright tissue band through ``p`` along its image row (the basal walls of an
    apical view run roughly along the image columns, so the row crosses the wall).

    The row profile (mean of the rows within ``half`` px, every ``step`` px within ``reach`` px
    of ``p``) is thresholded at ``frac`` of the way from its minimum to its maximum; the run of
    samples above it that holds ``p`` (or the nearest one) is the wall band, and its middle is
    returned (same row as ``p``). The annulus landmarks lie on the mid-wall line, which the
    middle of the band finds; the brightest pixel sits on whichever edge holds the brightest
    speckle or the leaflet hinge. Used for the septal annulus (docs/landmark_notes.md).
    Returns ``p`` when no sample clears the threshold.
    """
    xs = np.arange(-reach, reach + 0.5 * step, step)
    prof = _band_profile(img, np.asarray(p, float), np.array([1.0, 0.0]), xs, half)
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


def _running_mean(x: np.ndarray, n: int) -> np.ndarray:
    """Centred running mean of ``x [N]`` over ``n`` (odd) samples, the ends padded with the edge
    values: float64 ``[N]``."""
    return np.convolve(np.pad(x, n // 2, mode="edge"), np.ones(n) / n, mode="valid")


def _annulus_on_wall(img: np.ndarray, origin: np.ndarray, tdir: np.ndarray, wall_px: float,
                     search: float, prior_sd: float,
                     params: LandmarkParams = DEFAULT_LANDMARK_PARAMS) -> tuple[float, float]:
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
    p = params
    reach = search + p.annulus_margin_px
    s = np.arange(-search - p.annulus_margin_px, reach + 0.5 * p.annulus_step_px, p.annulus_step_px)
    prof = _band_profile(img, origin, tdir, s, max(p.annulus_band_px, p.annulus_band_walls * wall_px))
    prof = np.convolve(np.pad(prof, p.annulus_smooth // 2, mode="edge"),
                       np.ones(p.annulus_smooth) / float(p.annulus_smooth), mode="valid")
    lag = p.annulus_drop_lag
    drop = np.full(s.size, -np.inf)
    drop[lag:-lag] = prof[:-2 * lag] - prof[2 * lag:]
    rel = drop / np.maximum(prof[np.clip(np.arange(s.size) - lag, 0, s.size - 1)], p.annulus_drop_floor)
    inside = np.abs(s) <= search
    score = np.where(inside, rel * np.exp(-0.5 * (s / prior_sd) ** 2), -np.inf)
    k = int(np.argmax(score))
    strength = float(np.clip(rel[k], 0.0, 1.0)) if np.isfinite(rel[k]) else 0.0
    return float(s[k] - p.hinge_walls * wall_px), strength


def _excursion(flow: np.ndarray, pts: np.ndarray, down: np.ndarray, ed: int, t_end: int) -> np.ndarray:
    """Largest displacement of each point against ``down`` (toward the apex) while tracked from
    frame ``ed`` to ``t_end``: ``[N]`` px, from ``pts`` ``[N, 2]`` (x, y) px and a unit vector."""
    from .tracking import track_points

    tr = track_points(flow, pts, t0=ed, t1=t_end)
    return -((tr.points - tr.points[0]) @ down).min(axis=0)


def _line_excursion_peak(flow: np.ndarray, origin: np.ndarray, tdir: np.ndarray, wall_px: float,
                         mask: np.ndarray, ed: int, t_end: int,
                         params: LandmarkParams = DEFAULT_LANDMARK_PARAMS) -> np.ndarray | None:
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
    params : LandmarkParams
        ``line_*`` set the sampling, the least sample count and the running mean.

    Returns
    -------
    np.ndarray or None
        ``(x, y)`` of the peak, or None with fewer than 8 samples inside the sector.
    """
    p = params
    h, w = mask.shape
    s = np.arange(-p.line_from_walls * wall_px, p.line_to_walls * wall_px + 0.5 * p.line_step_px, p.line_step_px)
    pts = origin[None, :] + s[:, None] * tdir[None, :]
    ok = (pts[:, 0] >= 0) & (pts[:, 0] <= w - 1) & (pts[:, 1] >= 0) & (pts[:, 1] <= h - 1)
    ok[ok] &= mask[np.round(pts[ok, 1]).astype(int), np.round(pts[ok, 0]).astype(int)]
    if ok.sum() < p.line_min_samples or t_end <= ed:
        return None
    exc = _excursion(flow, pts[ok], tdir, ed, t_end)
    exc = np.convolve(np.pad(exc, p.line_smooth // 2, mode="edge"), np.ones(p.line_smooth) / float(p.line_smooth),
                      mode="valid")
    return pts[ok][int(np.argmax(exc))].copy()


def _display_side(xs: np.ndarray, ys: np.ndarray, others: list[np.ndarray], mask: np.ndarray,
                  mirrored: bool | None, params: LandmarkParams = DEFAULT_LANDMARK_PARAMS
                  ) -> tuple[bool, float, list[ReportWarning]]:
    """Whether the display is mirrored (LV on the viewer's left, septum its right border).

    Cue 1: the RV, another large cavity level with the LV, lies beyond the septum. Cue 2: the
    LV lies off the sector's axis toward its own side.

    Parameters
    ----------
    xs, ys : np.ndarray
        int ``[N]``: the LV cavity's pixels (x, y).
    others : list of np.ndarray
        bool ``[H, W]``: the other large cavities.
    mask : np.ndarray
        bool ``[H, W]``: the sector.
    mirrored : bool or None
        The caller's declaration, which wins.
    params : LandmarkParams
        ``fan_apex_share``, ``off_axis_share``, ``axis_cue_weight``, ``display_certain``.

    Returns
    -------
    mirrored : bool
    confidence : float
        The image's confidence in its own verdict, 0..1.
    warnings : list of ReportWarning
        ``display_uncertain`` or ``display_disagrees``.
    """
    p = params
    lv_cx = float(xs.mean())
    votes = []
    y_lo, y_hi = float(ys.min()), float(ys.max())
    for o in others:
        oy, ox = np.nonzero(o)
        if y_lo < oy.mean() < y_hi:
            votes.append(1.0 if ox.mean() > lv_cx else -1.0)  # +1: RV on the right = mirrored
    my, mx = np.nonzero(mask)
    axis_x = float(mx[my <= my.min() + p.fan_apex_share * (my.max() - my.min())].mean())  # fan apex column
    off = (lv_cx - axis_x) / max(1.0, float(mx.max() - mx.min()))
    cue2 = float(np.clip(-off / p.off_axis_share, -1.0, 1.0))  # +1: LV left of the axis = mirrored
    score = (float(np.mean(votes)) if votes else 0.0) + p.axis_cue_weight * cue2
    auto_mirrored = score > 0
    conf_mirror = float(min(1.0, abs(score)))
    if mirrored is None:
        if conf_mirror < p.display_certain:
            return bool(auto_mirrored), conf_mirror, [warn(
                "display_uncertain", f"display orientation uncertain (score {score:+.2f}); pass "
                "mirrored= if the LV is not on the viewer's right")]
        return bool(auto_mirrored), conf_mirror, []
    if bool(auto_mirrored) != bool(mirrored) and conf_mirror >= p.display_certain:
        return bool(mirrored), conf_mirror, [warn("display_disagrees", "the declared display disagrees with the "
                                                  "image (the RV looks to be on the other side)")]
    return bool(mirrored), conf_mirror, []


class _Cavity(NamedTuple):
    """The LV cavity on the ED frame (:func:`_find_cavity`)."""

    img: np.ndarray  #: float32 [H, W] ED frame blurred by ``ed_blur_sigma`` (what every image step reads)
    region: np.ndarray  #: bool [H, W] the LV cavity
    others: list[np.ndarray]  #: bool [H, W] each: the other large cavities (RV, atria)
    shaped: bool  #: whether the cavity is LV-shaped (else the most elongated candidate)
    xs: np.ndarray  #: int [N] x of the cavity's pixels
    ys: np.ndarray  #: int [N] y of the cavity's pixels


class _Borders(NamedTuple):
    """The cavity's left and right borders, row by row (:func:`_trace_borders`)."""

    rows: np.ndarray  #: int [R] image rows from the cavity's top down
    left: np.ndarray  #: float [R] x (px) of the left border, NaN where the row has none
    right: np.ndarray  #: float [R] x (px) of the right border, NaN where the row has none
    valid: np.ndarray  #: bool [R] rows with a border

    def sides(self) -> tuple[tuple[str, np.ndarray, float], ...]:
        """``(side, border x [R], outward x-direction)`` for the left and right borders."""
        return ("left", self.left, -1.0), ("right", self.right, 1.0)


class _Walls(NamedTuple):
    """Mid-wall points and wall thickness along both borders (:func:`_trace_walls`)."""

    mids: dict[str, np.ndarray]  #: side -> float [R, 2] (x, y) mid-wall px per border row, NaN where none
    wall_px: float  #: median half-max band width over both sides, px
    narrow: float  #: the thinner side's median half-max band width, px
    wall_ref: float  #: mean of ``narrow`` and the blood/tissue band width, px (the apex's offset)
    blood: float  #: median blurred intensity in the cavity
    tissue: float  #: median blurred intensity of the sector above the Otsu threshold


class _Annulus(NamedTuple):
    """One annulus point (:func:`_place_annulus`)."""

    point: np.ndarray  #: float [2] (x, y) px
    strength: float  #: relative drop of the wall's band at the base, 0..1 (0: from motion only)
    prominence: float  #: 0..1 prominence of the excursion peak over the apical rows
    warnings: list[ReportWarning]  #: ``annulus_from_motion`` when the wall line was not found


def _find_cavity(frame: np.ndarray, mask: np.ndarray, p: LandmarkParams) -> _Cavity:
    """The LV cavity on the ED frame.

    Parameters
    ----------
    frame : np.ndarray
        uint8 ``[H, W]`` ED frame of the analysis grid.
    mask : np.ndarray
        bool ``[H, W]`` sector.
    p : LandmarkParams

    Returns
    -------
    _Cavity
    """
    import cv2

    img = cv2.GaussianBlur(frame.astype(np.float32), (0, 0), p.ed_blur_sigma)
    cav, others, shaped = _elongated_cavity(img, mask, p)
    ys, xs = np.nonzero(cav)
    return _Cavity(img, cav, others, shaped, xs, ys)


def _trace_borders(cav: _Cavity, p: LandmarkParams) -> _Borders:
    """The cavity's left and right borders row by row, following from the top down the run of
    cavity pixels that holds (or is nearest) the previous row's centre.

    Parameters
    ----------
    cav : _Cavity
    p : LandmarkParams
        ``cap_rows_px``, ``min_cavity_rows``.

    Returns
    -------
    _Borders
        Border x at pixel edges (run ends -+ 0.5 px).

    Raises
    ------
    QualityError
        Fewer than ``min_cavity_rows`` rows.
    """
    ys, xs, region = cav.ys, cav.xs, cav.region
    y_top = int(ys.min())
    rows = np.arange(y_top, int(ys.max()) + 1)
    left = np.full(rows.size, np.nan)
    right = np.full(rows.size, np.nan)
    cx = float(xs[ys <= y_top + p.cap_rows_px].mean())
    for i, y in enumerate(rows):
        run = np.flatnonzero(region[y])
        if run.size == 0:
            continue
        # split into runs, keep the one nearest the current centre
        cuts = np.flatnonzero(np.diff(run) > 1)
        segs = np.split(run, cuts + 1)
        seg = min(segs, key=lambda r: 0 if r[0] <= cx <= r[-1] else min(abs(r[0] - cx), abs(r[-1] - cx)))
        left[i], right[i] = seg[0] - 0.5, seg[-1] + 0.5
        cx = 0.5 * (left[i] + right[i])
    valid = np.isfinite(left)
    if valid.sum() < p.min_cavity_rows:
        raise QualityError("the LV cavity found is too small; pass landmarks=")
    return _Borders(rows, left, right, valid)


def _trace_walls(cav: _Cavity, mask: np.ndarray, b: _Borders, p: LandmarkParams) -> _Walls:
    """Mid-wall points along both borders (horizontal outward walk to the middle of the bright
    band) and the wall thickness.

    Two thickness estimates bracket the wall: "narrow", the thinner side's median half-max band
    width (half of the peak above the border value cuts the band short; the septum lies between
    two blood pools, the lateral wall's band often takes in the pericardium), and the band width
    at the level half-way between blood and tissue with speckle gaps bridged (takes in the blur
    of both edges). Their mean sets the apex's mid-wall offset, while the annulus search offsets
    the cavity border by half of "narrow", the width measured from that same border.

    Parameters
    ----------
    cav : _Cavity
    mask : np.ndarray
        bool ``[H, W]`` sector.
    b : _Borders
    p : LandmarkParams
        ``wall_walk_px``, ``band_*``, ``min_wall_samples``, ``default_wall_px``, ...

    Returns
    -------
    _Walls
    """
    img = cav.img
    iv_all = np.flatnonzero(b.valid)
    mids: dict[str, np.ndarray] = {}
    thick: list[float] = []
    thick_side: dict[str, list[float]] = {}
    for side, border, sgn in b.sides():
        pts = np.full((b.rows.size, 2), np.nan)
        d, t_w = _wall_profiles(img, np.stack([border[iv_all], b.rows[iv_all].astype(float)], axis=1), sgn, 0.0,
                                p.wall_walk_px, p.profile_step_px, p.min_walk_steps)
        for i, di, ti in zip(iv_all, d, t_w):
            if ti > 0:
                pts[i] = (border[i] + sgn * di, b.rows[i])
                thick.append(float(ti))
                thick_side.setdefault(side, []).append(float(ti))
        mids[side] = pts
    wall_px = float(np.median(thick)) if thick else p.default_wall_px
    thr_t = _otsu(img[mask], p.otsu_bins)
    blood = float(np.median(img[cav.region]))
    tissue_lvl = float(np.median(img[mask & (img > thr_t)]))
    thr = p.tissue_mid_level * (tissue_lvl + blood)
    bw = {}
    n_valid = b.valid.sum()
    for side, border, sgn in b.sides():
        iv = iv_all[int(p.band_rows[0] * n_valid):int(p.band_rows[1] * n_valid)]
        wv = _band_widths(img, np.stack([border[iv], b.rows[iv].astype(float)], axis=1), sgn, 0.0, thr,
                          p.band_walk_px, p.profile_step_px, p.band_gap_px)
        wv = [float(x) for x in wv if x > 0]
        if len(wv) >= p.min_wall_samples:
            bw[side] = float(np.median(wv))
    narrow = min((float(np.median(v)) for v in thick_side.values() if len(v) >= p.min_wall_samples), default=wall_px)
    wide = min(bw.values()) if bw else narrow
    return _Walls(mids, wall_px, narrow, 0.5 * (narrow + wide), blood, tissue_lvl)


def _wall_excursions(flow: np.ndarray, walls: _Walls, n_rows: int, width: int, ed: int, es: int, t_end: int,
                     p: LandmarkParams) -> dict[str, np.ndarray]:
    """Systolic longitudinal excursion of the mid-wall points (up = toward the apex): the largest
    upward displacement from ED to ``t_end`` (one frame past ES, so that a detected ES a frame
    early does not move the peak; not further: the leaflets open toward the apex after
    isovolumic relaxation and would draw the peak onto them).

    Parameters
    ----------
    flow : np.ndarray
        ``[T-1, H, W, 2]`` dense flow, px/frame.
    walls : _Walls
    n_rows : int
        Border rows R.
    width : int
        Image width W (px); the points are clipped into it.
    ed, es, t_end : int
        ED, ES and the last tracked frame.
    p : LandmarkParams
        ``min_track_points``.

    Returns
    -------
    dict
        side -> float ``[R]`` px, NaN where no mid-wall point.
    """
    exc = {}
    for side, pts in walls.mids.items():
        okp = np.all(np.isfinite(pts), axis=1)
        e = np.full(n_rows, np.nan)
        if okp.sum() >= p.min_track_points and es > ed:
            q = pts[okp].copy()
            q[:, 0] = np.clip(q[:, 0], 0, width - 1)
            e[okp] = _excursion(flow, q, np.array([0.0, 1.0]), ed, t_end)
        exc[side] = e
    return exc


def _refine_annulus(cav: _Cavity, flow: np.ndarray, mask: np.ndarray, b: _Borders, walls: _Walls, side: str,
                    septal: bool, k: int, seed: np.ndarray, ed: int, t_end: int,
                    p: LandmarkParams) -> tuple[np.ndarray, float, list[ReportWarning]]:
    """The annulus on the image, from the motion seed at border row ``k``: where the wall's bright
    band ends along the mid-wall line fitted above the leaflets' reach (the motion peak is flat
    over several px). The septal seed is first re-found along that line itself
    (:func:`_line_excursion_peak`); a refinement that strays more than ``max_stray_walls`` from
    the seed is dropped. Then septal: the middle of the wall's bright band (the septum lies
    between two blood pools, so its band is the wall); lateral: the brightest pixel near the
    hinge (the lateral band often takes in the pericardium, whose middle lies outside the wall).

    Parameters
    ----------
    cav, flow, mask, b, walls, side, septal, ed, t_end, p :
        As for :func:`_place_annulus`.
    k : int
        Border row index of the motion seed.
    seed : np.ndarray
        float ``[2]`` (x, y) px: the mid-wall point at row ``k`` (x NaN when none).

    Returns
    -------
    point : np.ndarray
        float ``[2]`` (x, y) px (the seed when not refined).
    strength : float
        Relative drop at the wall end, 0 when not refined.
    warnings : list of ReportWarning
        ``annulus_from_motion`` when no wall line was fitted.
    """
    rows, n_rows = b.rows, b.rows.size
    border = b.left if side == "left" else b.right
    sgn = -1.0 if side == "left" else 1.0
    sl = slice(max(0, k - int(p.wall_fit_rows[0] * n_rows)), max(1, k - int(p.wall_fit_rows[1] * n_rows)))
    fit = _fit_wall_line(np.stack([border[sl], rows[sl].astype(float)], axis=1), float(rows[k]), p.wall_fit_degree,
                         mad_cut=p.fit_mad_cut, rounds=p.fit_rounds, mad_floor=p.fit_mad_floor_px)
    if fit is None:
        return seed, 0.0, [warn("annulus_from_motion", f"{side} annulus placed from wall motion only (wall line "
                                "not found)")]
    p0, tdir = fit
    nrm = np.array([tdir[1], -tdir[0]]) * sgn * np.sign(tdir[1])  # outward, across the wall
    if nrm[0] * sgn < 0:
        nrm = -nrm
    half = p.midwall_share * walls.narrow * abs(tdir[1])  # horizontal width -> width across the wall
    origin = p0 + half * nrm  # mid-wall line, level with the motion estimate
    coarse = seed
    wall_px = walls.wall_px
    if septal:
        # the lateral seed keeps the border's peak (measured worse along the line)
        peak = _line_excursion_peak(flow, origin, tdir, wall_px, mask, ed, t_end, p)
        if peak is not None:
            origin = coarse = peak
    s_a, strength = _annulus_on_wall(cav.img, origin, tdir, wall_px,
                                     max(p.annulus_search_px, p.annulus_search_walls * wall_px),
                                     p.annulus_prior_walls * wall_px, p)
    cand = origin + s_a * tdir
    if np.all(np.isfinite(coarse)) and np.hypot(*(cand - coarse)) > p.max_stray_walls * wall_px:
        return coarse, 0.0, []  # the fitted line strays from the wall the motion found (irregular border)
    if septal:
        return _band_centre(cav.img, cand, p.septal_reach_walls * walls.narrow + p.septal_reach_px,
                            p.septal_band_level, step=p.septal_step_px, half=p.septal_band_half_px), strength, []
    return _snap_bright(cav.img, cand, p.lateral_snap_walls * walls.narrow), strength, []


def _place_annulus(cav: _Cavity, flow: np.ndarray, mask: np.ndarray, b: _Borders, walls: _Walls,
                   exc: np.ndarray, side: str, septal: bool, ed: int, t_end: int, p: LandmarkParams) -> _Annulus:
    """One annulus point: the peak of the systolic excursion ``exc`` (float ``[R]`` px, running
    mean over ``excursion_smooth_rows``) on the lower rows of the ``side`` border, refined on
    the image (:func:`_refine_annulus`).

    Parameters
    ----------
    cav : _Cavity
    flow : np.ndarray
        ``[T-1, H, W, 2]`` dense flow, px/frame.
    mask : np.ndarray
        bool ``[H, W]`` sector.
    b : _Borders
    walls : _Walls
    exc : np.ndarray
        float ``[R]`` px: the side's excursion per border row (NaN where none).
    side : str
        ``"left"`` or ``"right"``: the image border.
    septal : bool
        Whether that border is the septum.
    ed, t_end : int
        Frames tracked between.
    p : LandmarkParams

    Returns
    -------
    _Annulus

    Raises
    ------
    QualityError
        Too few rows with motion, too little motion, or no point found.
    """
    e = exc.copy()
    good = np.isfinite(e)
    if good.sum() < p.min_motion_rows:
        raise QualityError("no wall motion found along the LV cavity; pass landmarks=")
    e[~good] = np.interp(np.flatnonzero(~good), np.flatnonzero(good), e[good])
    if np.nanmax(e) < p.min_excursion_px:
        raise QualityError("no systolic wall motion along the LV cavity (< 0.5 px): landmarks cannot be "
                           "found from motion; pass landmarks=")
    smooth = _running_mean(e, p.excursion_smooth_rows)
    lo = int(p.annulus_from_share * b.rows.size)
    k = lo + int(np.argmax(smooth[lo:]))
    mid = walls.mids[side][k]
    seed = mid if np.all(np.isfinite(mid)) else np.array([np.nan, b.rows[k]])
    point, strength, warnings = _refine_annulus(cav, flow, mask, b, walls, side, septal, k, seed, ed, t_end, p)
    prom = float(np.clip((smooth[k] - np.median(smooth[: max(lo, 1)])) / max(smooth[k], 1e-6), 0, 1))
    if not np.all(np.isfinite(point)):
        raise QualityError(f"no {side} annulus found; pass landmarks=")
    return _Annulus(point, strength, prom, warnings)


def _place_apex(cav: _Cavity, left: np.ndarray, right: np.ndarray, walls: _Walls, p: LandmarkParams) -> np.ndarray:
    """The mid-wall LV apex.

    The endocardial apex is the top of the cavity seen from the mitral plane (its farthest pixels
    along the normal to the annulus line), across the axis in the middle of the cavity's cap
    (``apex_cap_level``), so that a broad, flat or cluttered apex does not pull the point to one
    corner. Then the edge itself: walking up the axis through the cap's middle from the middle
    of the cavity, the first place where the band-averaged intensity stays above
    ``apex_edge_level`` of the way from blood to tissue (apical trabeculae and near-field haze,
    between the two levels, end the thresholded cavity short of the compact myocardium). The
    mid-wall apex lies half a wall thickness (``wall_ref``) beyond it.

    Parameters
    ----------
    cav : _Cavity
    left, right : np.ndarray
        float ``[2]`` (x, y) px: the image-left and image-right annulus points.
    walls : _Walls
    p : LandmarkParams

    Returns
    -------
    np.ndarray
        float ``[2]`` (x, y) px.
    """
    xs, ys = cav.xs, cav.ys
    mid = 0.5 * (left + right)
    a_dir = right - left
    u = np.array([a_dir[1], -a_dir[0]]) / max(np.hypot(*a_dir), 1e-9)
    if u[1] > 0:
        u = -u
    proj = (xs - mid[0]) * u[0] + (ys - mid[1]) * u[1]
    across = (xs - mid[0]) * u[1] - (ys - mid[1]) * u[0]
    cap_ = proj >= p.apex_cap_level * proj.max()
    # + 0.5: from the top pixel's centre to its edge
    apex_endo = mid + (proj.max() + 0.5) * u + float(np.mean(across[cap_])) * np.array([u[1], -u[0]])
    ua = apex_endo - mid
    ln = float(np.hypot(*ua))
    ua /= max(ln, 1e-9)
    t = np.arange(p.apex_walk_from * ln, ln + p.apex_walk_beyond_walls * walls.wall_ref, p.apex_step_px)
    prof = _band_profile(cav.img, mid, ua, t, p.apex_band_half_px)
    above = prof > walls.blood + p.apex_edge_level * (walls.tissue - walls.blood)
    n = p.apex_edge_run
    run = np.convolve(above.astype(float), np.ones(n), mode="full")[n - 1:]  # this and the next n-1 samples
    hit = np.flatnonzero(run >= n)
    if hit.size:
        apex_endo = mid + float(t[hit[0]]) * ua
        u = ua
    return apex_endo + p.midwall_share * walls.wall_ref * u


def _score_confidence(prominence: float, strength: float, conf_display: float, declared: bool, shaped: bool,
                      odd_geometry: bool, p: LandmarkParams) -> tuple[float, list[ReportWarning]]:
    """Confidence of an automatic set, 0..1, and its warnings.

    The weaker annulus motion peak's prominence and the display's certainty (1 when declared),
    weighted; times a factor for the image cue (a wall whose bright band does not visibly end at
    the base leaves the annulus to the flat motion peak, uncertain by several px), and times
    ``faint_cavity_factor`` / ``geometry_factor`` for a cavity not LV-shaped / a geometry unlike
    an apical view's (the two gross misses of 36 synthetic clips, and no other clip).

    Parameters
    ----------
    prominence, strength : float
        The smaller of the two annulus points' prominences / wall-end strengths.
    conf_display : float
        The image's certainty of the display side, 0..1.
    declared, shaped, odd_geometry : bool
        Display declared by the caller; LV-shaped cavity; geometry warnings raised.
    p : LandmarkParams

    Returns
    -------
    (float, list of ReportWarning)
    """
    warnings: list[ReportWarning] = []
    conf = float(np.clip(p.conf_prominence_weight * prominence
                         + p.conf_display_weight * (1.0 if declared else conf_display), 0.0, 1.0))
    conf *= p.conf_image_floor + (1.0 - p.conf_image_floor) * min(1.0, strength / p.strong_edge)
    if strength < p.weak_edge:
        warnings.append(warn("annulus_from_motion", "the basal end of a wall was not found on the image; annulus "
                             "placed from wall motion only (uncertain by several px)"))
    if not shaped:
        conf *= p.faint_cavity_factor
    if odd_geometry:
        conf *= p.geometry_factor
    if conf < p.low_confidence:
        warnings.append(low_confidence_warning(conf))
    return conf, warnings


def detect_landmarks(
    frames: np.ndarray,
    flow: np.ndarray,
    beat: tuple[int, int, int],
    *,
    mask: np.ndarray | None = None,
    mirrored: bool | None = None,
    params: LandmarkParams | None = None,
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

    The steps, in order: :func:`_find_cavity`, :func:`_trace_borders`, :func:`_trace_walls`,
    :func:`_wall_excursions`, :func:`_display_side`, :func:`_place_annulus` (each side),
    :func:`_place_apex`, :func:`_score_confidence`; their tuning numbers are the fields of
    :class:`LandmarkParams` (the numbers above are its defaults).

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
    mirrored : bool, optional
        Declared display (LV on the viewer's left); None: read from the image.
    params : LandmarkParams, optional
        Tuning numbers; default :data:`DEFAULT_LANDMARK_PARAMS`.

    Returns
    -------
    Landmarks
        ``source="auto"``, with a confidence in 0..1 and warnings.

    Raises
    ------
    QualityError
        No cavity or no wall found: pass the landmarks by hand.
    """
    p = DEFAULT_LANDMARK_PARAMS if params is None else params
    ed, es, ned = (int(x) for x in beat)
    h, w = frames.shape[1:]
    if mask is None:
        mask = frames.max(axis=0) > 0
    mask = np.asarray(mask, dtype=bool)
    cav = _find_cavity(frames[ed], mask, p)
    warnings: list[ReportWarning] = []
    if not cav.shaped:
        warnings.append(warn("cavity_faint", "the LV cavity is not clearly separated from the other chambers "
                             "(faint walls)"))
    borders = _trace_borders(cav, p)
    walls = _trace_walls(cav, mask, borders, p)
    t_end = min(ned - 1, es + p.frames_past_es)  # >= es, since es < ned
    exc = _wall_excursions(flow, walls, borders.rows.size, w, ed, es, t_end, p)
    # which border is septal, decided first (the two annulus points are refined differently)
    mir, conf_display, more = _display_side(cav.xs, cav.ys, cav.others, mask, mirrored, p)
    warnings += more
    septal_side = "right" if mir else "left"
    ann = {}
    for side in ("left", "right"):
        ann[side] = _place_annulus(cav, flow, mask, borders, walls, exc[side], side, side == septal_side, ed, t_end, p)
        warnings += ann[side].warnings
    apex = _place_apex(cav, ann["left"].point, ann["right"].point, walls, p)
    sep, lat = (ann["right"].point, ann["left"].point) if mir else (ann["left"].point, ann["right"].point)
    try:
        _, more = validate_landmarks(sep, lat, apex, (h, w), mirrored=mir)
        warnings += more
    except InputError as exc:
        raise QualityError(f"automatic landmarks are implausible ({exc}); pass landmarks=") from None
    conf, more = _score_confidence(min(a.prominence for a in ann.values()), min(a.strength for a in ann.values()),
                                   conf_display, mirrored is not None, cav.shaped,
                                   bool(geometry_warnings(sep, lat, apex)), p)
    warnings += more
    return Landmarks(np.asarray(sep, float), np.asarray(lat, float), np.asarray(apex, float), source="auto",
                     confidence=conf, mirrored=mir, warnings=warnings)
