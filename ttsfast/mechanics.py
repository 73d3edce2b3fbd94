"""Regional LV mechanics of one beat: the paper's peak longitudinal displacement of the basal
inferoseptal and basal anterolateral points, AV-plane excursion, segmental and global
longitudinal strain, and annular velocities S' and E'.

Input is the analysis-grid clip (frames, dense flow), one beat ``(ed, es, next_ed)`` from
:mod:`ttsfast.cycle`, and landmarks (:mod:`ttsfast.landmarks`). Points are tracked with
:mod:`ttsfast.tracking`.

Definitions
-----------
* Long axis: from the annulus midpoint to the apex (tracked landmarks); "longitudinal" is the
  projection on it, positive toward the apex.
* ``peak_displacement_px`` (the paper's measure): the beat's tracked positions are resampled to
  ``n_resample`` (32) frames between the sub-frame ED and next-ED times (cubic interpolation in
  time); each step between consecutive frames is projected on the long axis of its first frame;
  "systolic" is the largest |step| from ED to ES, "diastolic" the largest from ES to the next
  ED. In ORIGINAL-image pixels (through ``to_original``; grid px when it is None), also in grid
  px (``peak_displacement_grid_px``) and in mm (grid px times ``mm_per_px``) when calibrated.
* ``excursion``: largest longitudinal displacement of the annulus point from its ED position
  toward the apex (long axis fixed at ED), same units.
* Strain: Lagrangian, ``100 * (L(t) - L(ED)) / L(ED)`` of the length of each third of a wall
  (basal, mid, apical) along the tracked mid-wall points; GLS from the summed length of both
  walls. ``strain_peak_pct`` is the most negative value over the beat (post-systolic shortening
  included), ``strain_systolic_peak_pct`` the most negative from ED to ES.
* ``s_prime_cm_s`` / ``e_prime_cm_s``: peak longitudinal annulus velocity toward the apex in
  systole, and away from it in early diastole (first 60 % of ES -> next ED, so that the atrial
  A' wave is left out), from the frame-to-frame steps at the acquisition frame rate with a
  parabolic peak refinement; need ``mm_per_px`` and ``fps``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
from numba import njit

from ._numerics import refined_peak_value, rescale_to_uint8
from .errors import InputError, QualityError
from .warning_codes import ReportWarning, warn, warning_dicts
from .landmarks import Landmarks, landmarks_from_caller, long_axis, wall_points
from .flow import MIN_ROI_PX, tracking_flow
from .tracking import sample_flow, track_lk, track_points

__all__ = ["Mechanics", "measure_mechanics", "segment_lengths", "strain_curves", "tracking_box", "SEGMENTS", "WALLS",
           "METHODS", "anchor_annulus", "anchor_trusted", "similarity_carry"]

WALLS = ("inferoseptal", "anterolateral")
SEGMENTS = tuple(f"{lvl}_{w}" for w in WALLS for lvl in ("basal", "mid", "apical"))
BASAL = {"basal_inferoseptal": "septal_annulus", "basal_anterolateral": "lateral_annulus"}
VEL_NAMES = {"septal": "septal_annulus", "lateral": "lateral_annulus"}
#: Lucas-Kanade refinement of the flow track (method "flow+lk"): window px, pyramid levels.
#: Chosen on noisy synthetic clips against ground truth (windows 9-31 px, 0-2 levels tried):
#: a speckle-scale window follows the tissue where the 21 px flow window is pulled by the
#: endocardial border and the static near-field clutter.
LK_REFINE_WIN = 13
LK_REFINE_LEVELS = 1
#: Method "dis": the tracking flow is computed in the box of the ED points widened by this
#: many px on each side (outside it the points move on the Farneback flow). The points move
#: mostly inward from their ED positions (the annulus toward the apex, the walls toward the
#: cavity). On 24 synthetic clips, margins of 16 / 24 / 40 px gave the same errors within the
#: clip-to-clip scatter (worst segment strain, median 2.49 / 2.26 / 2.57 points, patches every
#: 3 px); a smaller box costs less (about 2.3 ms per frame pair on 2 cores at 16 px and patches
#: every 4 px).
DIS_ROI_MARGIN = 16
METHODS = ("dis", "flow", "flow+lk", "lk")
#: Beat-closure warning: an annulus whose track ends the beat at least ``DRIFT_WARN_MIN_PX`` grid
#: px and more than ``DRIFT_WARN_FRACTION`` of its excursion from where it started gets a
#: warning (the measures remove the closure error linearly, which is only an estimate). On
#: 48 synthetic clips (3 presets x seeds 0-15) the annulus closure is median 0.62 / max 3.24
#: px and no clip is warned; on the real clips the GE control clip's automatic landmarks warn
#: on its third beat (lateral annulus 8.9 px, 52 % of 17.3 px), the STEMI ROI clip's akinetic
#: lateral annulus (1.6 px, 42 % of 3.9 px); its other beats and the hand landmarks stay under
#: (0.09-0.25 of the excursion).
DRIFT_WARN_FRACTION = 0.25
DRIFT_WARN_MIN_PX = 1.0
#: Strain closure warning: a segment whose end points ended the beat farther from their start
#: than this many strain points of its ED length (:func:`segment_closure_pct`) is named in a
#: warning (the strain removes that closure linearly, a guess where it is large). On 48
#: synthetic clips the segments read median 2.0 / max 9.2 points and none is warned (their
#: strain error hardly follows it: correlation 0.16); on the real clips 14 of the 30 segments
#: of the GE control clip's 5 beat analyses (2 beats with hand, 3 with automatic landmarks) read
#: 10-24 points, where wall points in dropout end the beat 3-11 px off, and 2 of the 6 of the
#: STEMI ROI clip (10 points).
STRAIN_CLOSURE_WARN_PCT = 10.0
#: Annulus anchoring (the default, ``measure_mechanics(annulus_anchor=True)``; methods "dis",
#: "flow" and "flow+lk"): the slow part of each annulus track is taken from its own wall. The
#: flow at the annulus is that of a patch that also holds the mitral leaflet hinge and the
#: atrial wall below it, which move less than the hinge: on 24 noisy synthetic clips (seeds
#: 0-7) the DIS track of the annulus under-read the AV-plane excursion by 0.42 / 0.35 px
#: (septal / lateral, sd 0.32 / 0.34) while its velocities were unbiased (within 1.3 %). Wall
#: points 1..7 of 31 (``ANNULUS_ANCHOR_FRACTION``, the basal 7/30 of the wall, all tissue; the
#: same share of a wall of another ``n_wall``, at least 2 points: :func:`anchor_points`)
#: carry the annulus along with the weighted least-squares similarity (shift, rotation, scale)
#: that maps them from ED onto each frame, each point weighted by ``1 / (1 + (c / 1 px)^2)``
#: with ``c`` its beat-closure error (``ANNULUS_ANCHOR_CLOSURE_PX``), so that points lost in
#: dropout carry little; the difference between that prediction and the annulus's own track,
#: smoothed in time with a Gaussian of ``ANNULUS_ANCHOR_SMOOTH`` of the tracked span, is added
#: to the own track, so that the velocities keep the own track's speed and the displacement
#: loses most of its bias. Excursion bias after: -0.16 / -0.13 px (sd 0.27 / 0.30); on held-out
#: seeds 8-15 -0.25 / -0.31 -> -0.05 / -0.07 px; clips within 0.5 px 12 -> 19 and 14 -> 16 of
#: 24 (seeds 16-23: 14 -> 18); velocities and the other measures unchanged within the scatter. On the true flow the
#: excursion bias goes from -0.05 to -0.007 px: the basal wall is an unbiased carrier.
#: Smoothing over 0.1 / 0.15 / 0.3 of the span: 20 / 20 / 18 of 24 clips within 0.5 px;
#: unsmoothed (the similarity prediction alone) 14, with velocities within 10 % on 12 of 24
#: instead of 23 (the prediction is noisier step to step). Closure scales 0.5 / 2 px instead of
#: 1: the same within one clip (the synthetic walls close within ~1 px). The default since
#: 2026-12-03, with the guard below (``ANNULUS_ANCHOR_GUARD_PX``): unguarded, it made two real
#: annulus closures worse (below).
ANNULUS_ANCHOR_FRACTION = 7 / 30
ANNULUS_ANCHOR_SMOOTH = 0.2
ANNULUS_ANCHOR_CLOSURE_PX = 1.0  # px, scale of the carriers' closure weighting
#: Anchoring guard (:func:`anchor_trusted`): an annulus keeps its own track when its carriers
#: closed the beat (closure-weighted mean, px) more than ``ANNULUS_ANCHOR_GUARD_PX`` off, or more
#: than ``ANNULUS_ANCHOR_GUARD_MIN_PX`` and ``ANNULUS_ANCHOR_GUARD_RATIO`` times its own
#: closure: a wall the tracker lost cannot tell the annulus's slow motion. Over the 12
#: annulus-beat closures of the real clips (GE control clip: 2 beats with hand landmarks, 3 with
#: automatic ones; STEMI ROI clip) the DIS closure is median 2.08 / max 8.92 px on its own
#: track, 1.65 / 15.67 anchored unguarded (the third automatic beat's lateral annulus, already
#: warned at 8.9 px, went to 15.7 with carriers 9.7 px off; another lateral annulus went from
#: 1.22 to 4.20 with carriers 2.7 px off) and 1.40 / 8.92 guarded: no closure worse than its
#: own track's. On the synthetic clips the carriers close within 1.97 px (48 clips, seeds 0-15;
#: median 0.68) and the guard changes one clip of each held-out set (excursion within 0.5 px:
#: seeds 0-7 19 of 24 either way, 8-15 16 -> 15, 16-23 18 -> 17). Farneback's ("flow") real
#: closures go from 2.05 / 11.27 to 1.67 / 11.27 px, one worse (2.09 -> 3.16). The anchored DIS
#: excursions of the real beats are 0-9 % (septal) and 0-15 % (lateral, up to +1.6 px) larger
#: than the own tracks', more than the 2-3 % synthetic under-read; a real clip does not say
#: which is right (``annulus_anchor=False`` keeps the own tracks).
ANNULUS_ANCHOR_GUARD_PX = 3.0
ANNULUS_ANCHOR_GUARD_MIN_PX = 1.0
ANNULUS_ANCHOR_GUARD_RATIO = 2.0


def tracking_box(points: np.ndarray, margin: int = DIS_ROI_MARGIN,
                 shape: tuple[int, int] | None = None) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` px (x1, y1 exclusive): the box of ``points`` ``[N, 2]`` (x, y)
    widened by ``margin`` px on each side, where method ``"dis"`` computes its tracking flow;
    clipped to an image of ``shape`` ``(H, W)`` when given (:func:`ttsfast.flow.tracking_flow`
    clips it the same way)."""
    p = np.asarray(points, dtype=np.float64)
    x0, y0 = int(np.floor(p[:, 0].min())) - margin, int(np.floor(p[:, 1].min())) - margin
    x1, y1 = int(np.ceil(p[:, 0].max())) + margin + 1, int(np.ceil(p[:, 1].max())) + margin + 1
    if shape is not None:
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, int(shape[1])), min(y1, int(shape[0]))
    return x0, y0, x1, y1


@njit(cache=True, nogil=True)
def _segment_lengths(points, bounds, out):
    """out[k, s] = polyline length of points[k, bounds[s]:bounds[s+1]+1]."""
    for k in range(points.shape[0]):
        for s in range(bounds.shape[0] - 1):
            acc = 0.0
            for i in range(bounds[s], bounds[s + 1]):
                dx = points[k, i + 1, 0] - points[k, i, 0]
                dy = points[k, i + 1, 1] - points[k, i, 1]
                acc += np.sqrt(dx * dx + dy * dy)
            out[k, s] = acc


def segment_lengths(points: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Polyline length of each segment of a tracked wall.

    Parameters
    ----------
    points : np.ndarray
        ``[K, N, 2]`` positions of the wall points over K frames.
    bounds : np.ndarray
        int ``[S+1]`` point indices of the segment borders (0 .. N-1).

    Returns
    -------
    np.ndarray
        float64 ``[K, S]`` px.
    """
    p = np.ascontiguousarray(points, dtype=np.float64)
    b = np.ascontiguousarray(bounds, dtype=np.int64)
    if p.ndim != 3 or p.shape[2] != 2 or b.ndim != 1 or b.size < 2 or b[0] < 0 or b[-1] > p.shape[1] - 1 \
            or np.any(np.diff(b) <= 0):
        raise InputError(f"bad points {p.shape} or segment bounds {b}")
    out = np.empty((p.shape[0], b.size - 1), dtype=np.float64)
    _segment_lengths(p, b, out)
    return out


def similarity_carry(ref: np.ndarray, cur: np.ndarray, p0: np.ndarray,
                     weights: np.ndarray | None = None) -> np.ndarray:
    """Carry a point with the least-squares similarity of a point set, frame by frame.

    Parameters
    ----------
    ref : np.ndarray
        ``[N, 2]`` (x, y) px of the carrier points in the reference frame (N >= 2).
    cur : np.ndarray
        ``[K, N, 2]`` the same points in K frames.
    p0 : np.ndarray
        ``[2]`` the carried point in the reference frame.
    weights : np.ndarray, optional
        ``[N]`` non-negative weight of each carrier point (default equal).

    Returns
    -------
    np.ndarray
        float64 ``[K, 2]``: ``p0`` mapped by the similarity (shift, rotation, uniform scale) that
        best maps ``ref`` onto ``cur[k]`` in weighted least squares.
    """
    ref = np.asarray(ref, dtype=np.float64)
    cur = np.asarray(cur, dtype=np.float64)
    w = np.ones(ref.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (ref.shape[0],) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise InputError(f"similarity_carry: weights must be {ref.shape[0]} non-negative numbers, not all 0")
    w = w / w.sum()
    mr = w @ ref
    mc = np.einsum("n,knc->kc", w, cur)  # [K, 2]
    zr = (ref[:, 0] - mr[0]) + 1j * (ref[:, 1] - mr[1])
    zc = (cur[..., 0] - mc[:, None, 0]) + 1j * (cur[..., 1] - mc[:, None, 1])
    den = float(np.sum(w * np.abs(zr) ** 2))
    if den <= 1e-12:
        raise InputError("similarity_carry: the reference points coincide")
    c = (zc @ (w * np.conj(zr))) / den  # [K] rotation and scale
    q = c * ((p0[0] - mr[0]) + 1j * (p0[1] - mr[1]))
    return np.stack([q.real + mc[:, 0], q.imag + mc[:, 1]], axis=1)


def _gaussian_in_time(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing of ``x`` ``[K, ...]`` along axis 0 (``sigma`` in samples, edges held)."""
    if sigma <= 0 or x.shape[0] < 2:
        return x.copy()
    r = int(np.ceil(3.0 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    xp = np.concatenate([np.repeat(x[:1], r, axis=0), x, np.repeat(x[-1:], r, axis=0)])
    out = np.zeros_like(x, dtype=np.float64)
    for j, kj in enumerate(k):
        out += kj * xp[j:j + x.shape[0]]
    return out


def anchor_points(n_wall: int) -> tuple[int, int]:
    """First and last wall index of the anchoring carriers for a wall of ``n_wall`` points: the
    basal ``ANNULUS_ANCHOR_FRACTION`` of the wall (1..7 of 31), at least two points."""
    if n_wall < 3:
        raise InputError(f"a wall needs >= 3 points for anchoring, got {n_wall}")
    return 1, max(2, int(round(ANNULUS_ANCHOR_FRACTION * (n_wall - 1))))


def _carrier_weights(car: np.ndarray, closure_index: int, closure_px: float) -> tuple[np.ndarray, np.ndarray]:
    """Beat-closure error ``c`` (px) of each carrier ``car`` ``[K, N, 2]`` and its weight
    ``1 / (1 + (c / closure_px)^2)``, both ``[N]``."""
    c = np.hypot(*(car[closure_index] - car[0]).T)
    return c, 1.0 / (1.0 + (c / closure_px) ** 2)


def anchor_trusted(annulus: np.ndarray, wall: np.ndarray, closure_index: int, *,
                   points: tuple[int, int] | None = None,
                   closure_px: float = ANNULUS_ANCHOR_CLOSURE_PX) -> tuple[bool, float, float]:
    """Whether the basal wall closed its beat well enough to carry the annulus (the guard of
    ``ANNULUS_ANCHOR_GUARD_PX``).

    Parameters
    ----------
    annulus, wall, points, closure_px
        As in :func:`anchor_annulus` (``[K, 2]`` own track, ``[K, N, 2]`` wall, px).
    closure_index : int
        Index of the next end-diastole in the tracks (1..K-1).

    Returns
    -------
    trusted : bool
        False when the carriers' closure-weighted mean closure exceeds ``ANNULUS_ANCHOR_GUARD_PX``,
        or exceeds ``ANNULUS_ANCHOR_GUARD_MIN_PX`` and ``ANNULUS_ANCHOR_GUARD_RATIO`` times the
        annulus's own.
    own_px, carriers_px : float
        The annulus's own closure and the carriers' weighted mean closure, px.
    """
    a = np.asarray(annulus, dtype=np.float64)
    wall = np.asarray(wall, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != 2 or wall.ndim != 3 or wall.shape[0] != a.shape[0] or wall.shape[2] != 2:
        raise InputError(f"anchor_trusted: annulus must be [K, 2] and wall [K, N, 2], got {a.shape} and {wall.shape}")
    if not 0 < int(closure_index) < a.shape[0]:
        raise InputError(f"anchor_trusted: closure_index must be in 1..{a.shape[0] - 1}, got {closure_index}")
    closure_index = int(closure_index)
    lo, hi = anchor_points(wall.shape[1]) if points is None else points
    c, w = _carrier_weights(wall[:, lo:hi + 1], closure_index, closure_px)
    own = float(np.hypot(*(a[closure_index] - a[0])))
    cw = float((w * c).sum() / w.sum())
    lost = cw > ANNULUS_ANCHOR_GUARD_PX or (cw > ANNULUS_ANCHOR_GUARD_MIN_PX and cw > ANNULUS_ANCHOR_GUARD_RATIO * own)
    return not lost, own, cw


def anchor_annulus(annulus: np.ndarray, wall: np.ndarray, *, points: tuple[int, int] | None = None,
                   smooth: float = ANNULUS_ANCHOR_SMOOTH, closure_index: int | None = None,
                   closure_px: float = ANNULUS_ANCHOR_CLOSURE_PX) -> np.ndarray:
    """An annulus track whose slow part follows its basal wall (see ``ANNULUS_ANCHOR_FRACTION``).

    Parameters
    ----------
    annulus : np.ndarray
        ``[K, 2]`` (x, y) px: the annulus's own track, frame 0 the reference (ED).
    wall : np.ndarray
        ``[K, N, 2]`` the tracked wall from that annulus (index 0) toward the apex.
    points : (int, int), optional
        First and last wall index of the carrier points (inclusive); default
        :func:`anchor_points` of the wall's number of points.
    smooth : float
        Gaussian sigma of the correction, as a fraction of the K-1 tracked steps.
    closure_index : int, optional
        Index of the next end-diastole in the tracks: each carrier point is then weighted by
        ``1 / (1 + (c / closure_px)^2)``, ``c`` its beat-closure error (px), so that points
        the tracker lost (in dropout, say) carry little. None: equal weights.
    closure_px : float
        Scale of that weighting, px.

    Returns
    -------
    np.ndarray
        float64 ``[K, 2]``: ``annulus`` plus the time-smoothed difference between the wall's
        similarity prediction of it and itself, less that difference at frame 0 (so that frame 0
        stays the annulus's own).
    """
    a = np.asarray(annulus, dtype=np.float64)
    lo, hi = anchor_points(wall.shape[1]) if points is None else points
    car = wall[:, lo:hi + 1]
    w = None if closure_index is None else _carrier_weights(car, closure_index, closure_px)[1]
    pred = similarity_carry(car[0], car, a[0], weights=w)
    corr = _gaussian_in_time(pred - a, smooth * (a.shape[0] - 1))
    return a + (corr - corr[:1])  # nothing moves at ED: the annulus stays where the landmark is


def _smooth_along_wall(p: np.ndarray) -> np.ndarray:
    """[1,2,1]/4 smoothing of the interior points along the wall (ends kept): lowers the
    length bias that independent tracking noise adds to a polyline."""
    q = p.copy()
    q[:, 1:-1] = 0.25 * p[:, :-2] + 0.5 * p[:, 1:-1] + 0.25 * p[:, 2:]
    return q


def segment_bounds(n_wall: int) -> np.ndarray:
    """int ``[4]``: wall point indices of the borders of the basal, mid and apical segments (thirds
    of the ``n_wall`` points, annulus at 0)."""
    return np.rint(np.linspace(0, n_wall - 1, 4)).astype(np.int64)


def segment_closure_pct(wall0: np.ndarray, closure: np.ndarray) -> np.ndarray:
    """How far a segment's end points ended the beat from their start, in strain points.

    Parameters
    ----------
    wall0 : np.ndarray
        ``[N, 2]`` the wall at ED (annulus first), px.
    closure : np.ndarray
        ``[N, 2]`` each point's position at the next ED minus at ED (before any correction), px.

    Returns
    -------
    np.ndarray
        float64 ``[3]`` (basal, mid, apical): 100 x the larger closure error of the segment's two
        end points / the segment's ED length.
    """
    b = segment_bounds(wall0.shape[0])
    c = np.hypot(closure[:, 0], closure[:, 1])
    lens = segment_lengths(np.asarray(wall0, dtype=np.float64)[None], b)[0]
    return np.array([100.0 * max(c[b[j]], c[b[j + 1]]) / max(lens[j], 1e-9) for j in range(3)])


def strain_curves(walls: Mapping[str, np.ndarray], *, smooth: bool = True) -> dict[str, np.ndarray]:
    """Lagrangian longitudinal strain (%) of the six segments and GLS.

    Parameters
    ----------
    walls : mapping
        ``{"inferoseptal": [K, N, 2], "anterolateral": [K, N, 2]}`` tracked points, annulus
        (index 0) to apex (index N-1); frame 0 is the reference (ED).

    Returns
    -------
    dict
        The six :data:`SEGMENTS` and ``"gls"`` -> float64 ``[K]`` %.
    """
    out: dict[str, np.ndarray] = {}
    total = None
    for wname in WALLS:
        p = np.asarray(walls[wname], dtype=np.float64)
        if smooth and p.shape[1] >= 5:
            p = _smooth_along_wall(p)
        bounds = segment_bounds(p.shape[1])
        lens = segment_lengths(p, bounds)
        for j, lvl in enumerate(("basal", "mid", "apical")):
            out[f"{lvl}_{wname}"] = 100.0 * (lens[:, j] - lens[0, j]) / lens[0, j]
        tot = lens.sum(axis=1)
        total = tot if total is None else total + tot
    out["gls"] = 100.0 * (total - total[0]) / total[0]
    return out


@dataclass
class Mechanics:
    """Regional mechanics of one beat (see the module docstring for the definitions).

    Values that cannot be measured are None and ``warnings`` says why.

    Attributes
    ----------
    beat, beat_times : tuple
        (ed, es, next_ed) frames and their sub-frame times.
    landmarks : Landmarks
        Grid px, with source ("caller"/"auto"), confidence and mirrored.
    peak_displacement_px, peak_displacement_grid_px, peak_displacement_mm : dict
        {basal_inferoseptal, basal_anterolateral} -> {systolic, diastolic}: the paper's measure in
        original-image px, analysis-grid px and mm (None without calibration).
    excursion_px, excursion_mm : dict
        Same two points -> AV-plane excursion.
    strain_peak_pct, strain_systolic_peak_pct : dict
        Six segments -> peak strain % (whole beat / ED..ES); ``gls_pct`` the same for GLS.
    s_prime_cm_s, e_prime_cm_s : dict or None
        {septal, lateral} -> cm/s (None without fps and mm_per_px).
    curves : dict
        ``displacement_px`` (32 samples, original px, toward the apex), ``peak_step_index``,
        ``es_index``, ``strain_pct`` (32 samples), native-frame versions and their times.
    tracks : dict
        Landmark ``[n_resample, 2]`` and wall ``[n_resample, n_wall, 2]`` positions on the beat
        resampled to ``n_resample`` frames, grid px.
    drift_px : dict
        Beat-closure error (px, grid) of each landmark and the median of the wall points,
        before any correction.
    fb_error_px : float or None
        Median forward-backward error per step (with ``flow_backward``).
    method : str
        The tracker (``measure_mechanics(method=)``).
    annulus_anchored : dict
        ``septal_annulus`` / ``lateral_annulus`` -> whether that annulus track's slow part was
        taken from its basal wall (:func:`anchor_annulus`; False with ``annulus_anchor=False``,
        for the study's ``"lk"``, and where the guard :func:`anchor_trusted` kept the own track).
    strain_closure_pct : dict
        Six segments -> how far their end points ended the beat from their start, in strain
        points of the segment's length (:func:`segment_closure_pct`; a warning above
        ``STRAIN_CLOSURE_WARN_PCT``).
    """

    beat: tuple[int, int, int]
    landmarks: Landmarks
    peak_displacement_px: dict[str, dict[str, float | None]]
    peak_displacement_mm: dict[str, dict[str, float | None]] | None
    peak_displacement_grid_px: dict[str, dict[str, float | None]]
    excursion_px: dict[str, float | None]
    excursion_mm: dict[str, float | None] | None
    strain_peak_pct: dict[str, float | None]
    strain_systolic_peak_pct: dict[str, float | None]
    gls_pct: float | None
    s_prime_cm_s: dict[str, float | None] | None
    e_prime_cm_s: dict[str, float | None] | None
    beat_times: tuple[float, float, float]
    curves: dict[str, Any]
    tracks: dict[str, np.ndarray]
    drift_px: dict[str, float]
    fb_error_px: float | None
    method: str
    n_resample: int
    warnings: list[ReportWarning] = field(default_factory=list)
    to_original: Callable[[np.ndarray], np.ndarray] | None = None
    annulus_anchored: dict[str, bool] = field(default_factory=dict)
    strain_closure_pct: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dict; keys as in the study table (``mechanics.*``)."""

        from .result import to_jsonable

        def rnd(v: Any) -> Any:
            return to_jsonable(v, digits=4)

        return {
            "beat": [int(x) for x in self.beat],
            "beat_times": [round(float(x), 3) for x in self.beat_times],
            "landmarks": self.landmarks.to_dict(self.to_original),
            "peak_displacement_px": rnd(self.peak_displacement_px),
            "peak_displacement_mm": rnd(self.peak_displacement_mm),
            "peak_displacement_grid_px": rnd(self.peak_displacement_grid_px),
            "excursion_px": rnd(self.excursion_px),
            "excursion_mm": rnd(self.excursion_mm),
            "strain_peak_pct": rnd(self.strain_peak_pct),
            "strain_systolic_peak_pct": rnd(self.strain_systolic_peak_pct),
            "gls_pct": rnd(self.gls_pct),
            "s_prime_cm_s": rnd(self.s_prime_cm_s),
            "e_prime_cm_s": rnd(self.e_prime_cm_s),
            "curves": rnd(self.curves),
            "drift_px": rnd(self.drift_px),
            "strain_closure_pct": rnd(self.strain_closure_pct),
            "fb_error_px": rnd(self.fb_error_px),
            "method": self.method,
            "annulus_anchored": dict(self.annulus_anchored),
            "n_resample": self.n_resample,
            "warnings": warning_dicts(self.warnings),
        }


def _check_beat(beat: Any, n_frames: int) -> tuple[int, int, int]:
    try:
        ed, es, ned = (int(x) for x in beat)
    except (TypeError, ValueError):
        raise InputError(f"beat must be (ed, es, next_ed) frame indices, got {beat!r}") from None
    if not (0 <= ed < es < ned <= n_frames - 1):
        raise InputError(f"beat must satisfy 0 <= ed < es < next_ed <= {n_frames - 1}, got {(ed, es, ned)}")
    if ned - ed < 4:
        raise QualityError(f"beat {ed}->{ned} has fewer than 4 frames: not measurable")
    return ed, es, ned


def _peak_value(v: np.ndarray, sel: np.ndarray) -> float | None:
    """Largest value of ``v`` over the samples ``sel``, refined by a parabola through the
    neighbouring samples (a peak between two frames is otherwise cut)."""
    idx = np.flatnonzero(sel)
    if idx.size == 0:
        return None
    return refined_peak_value(v, int(idx[np.argmax(v[idx])]))


def _peak_steps(
    pos32: np.ndarray, axis: np.ndarray, es32: int
) -> tuple[dict[str, float | None], dict[str, int | None], np.ndarray]:
    """Largest |longitudinal step| in systole (steps 1..es32) and diastole (es32+1..n-1)."""
    d = np.diff(pos32, axis=0)
    # step k+1 goes from sample k to k+1, projected on the long axis at sample k (or a fixed one)
    steps = np.einsum("ij,ij->i", d, axis[:-1]) if axis.ndim == 2 else d @ axis
    out: dict[str, float | None] = {}
    idx: dict[str, int | None] = {}
    for phase, lo, hi in (("systolic", 0, es32), ("diastolic", es32, steps.size)):
        seg = steps[lo:hi]
        if seg.size == 0:
            out[phase], idx[phase] = None, None
        else:
            j = int(np.argmax(np.abs(seg)))
            out[phase], idx[phase] = float(abs(seg[j])), lo + j + 1
    return out, idx, steps


def measure_mechanics(
    frames: np.ndarray,
    flow: np.ndarray,
    beat: tuple[int, int, int],
    *,
    landmarks: Landmarks | Mapping[str, Any] | None = None,
    fps: float | None = None,
    mm_per_px: float | None = None,
    to_original: Callable[[np.ndarray], np.ndarray] | None = None,
    to_grid: Callable[[np.ndarray], np.ndarray] | None = None,
    mask: np.ndarray | None = None,
    flow_backward: np.ndarray | None = None,
    method: str = "dis",
    n_resample: int = 32,
    n_wall: int = 31,
    wall_snap_px: float = 0.0,
    drift_correction: bool = True,
    annulus_anchor: bool = True,
    mirrored: bool | None = None,
    beat_times: tuple[float, float, float] | None = None,
    lk_win_size: int | None = None,
    lk_max_level: int | None = None,
    lk_fb_max_px: float | None = None,
    threads: int | None = None,
) -> Mechanics:
    """Track the landmarks and both LV walls through one beat and measure its mechanics.

    Parameters
    ----------
    frames : np.ndarray
        uint8 ``[T, H, W]`` analysis-grid frames.
    flow : np.ndarray
        float ``[T-1, H, W, 2]`` (dx, dy) px/frame, frame t -> t+1.
    beat : (int, int, int)
        ``(ed, es, next_ed)`` frame indices (from :func:`ttsfast.cycle.detect_cycles`).
    landmarks : Landmarks or mapping, optional
        A :class:`Landmarks` (grid px) or a mapping of ORIGINAL-image (x, y) pixels (mapped with
        ``to_grid`` and validated). None finds them automatically on the ED frame.
    fps : float, optional
        Acquisition frame rate; needed for S' and E'.
    mm_per_px : float, optional
        Grid pixel size in mm; needed for the mm measures and the velocities.
    to_original, to_grid : callable, optional
        ``Prepared.to_original`` / ``Prepared.to_grid`` for ``[..., 2]`` arrays; identity if None.
    flow_backward : np.ndarray, optional
        Backward flow ``[T-1,H,W,2]`` (t+1 -> t) for the forward-backward error.
    method : str
        How the points are tracked. ``"dis"`` (default): integrate the tracking flow of
        :func:`ttsfast.flow.tracking_flow` (OpenCV DIS, 8 px patches, held within 0.5 px per
        frame of ``flow``), computed over the beat in the box of the points (``DIS_ROI_MARGIN``
        px around them), about 2-3 ms per frame pair on 2 cores. ``"flow"``: integrate
        ``flow`` itself (the Farneback flow of the model). ``"flow+lk"``: each frame-to-frame
        step of the ``"flow"`` track refined by Lucas-Kanade with a small window on the speckle
        (13 px, 1 level), kept where it lies within 1 px of the flow prediction. ``"lk"``: the
        original study, frame-to-frame LK, 75 px, 5 levels.
        On 24 noisy synthetic clips (normal, tts, stemi_anterior x seeds 0-7, true landmarks,
        detected beat), median / max over clips of each clip's worst segmental strain error:
        ``"dis"`` 2.2 / 6.0 points, ``"flow"`` 4.0 / 11.6, ``"flow+lk"`` 2.5 / 6.9, ``"lk"``
        12.4 / 17.1; the other measures are in the README ("Accuracy").
    n_resample : int
        Frames per beat for the paper's measure (32).
    n_wall : int
        Points per wall (3k+1).
    drift_correction : bool
        Remove the beat-closure error linearly in time (the drift is reported either way).
    annulus_anchor : bool
        Methods ``"dis"``, ``"flow"`` and ``"flow+lk"``: take the slow part of each annulus
        track from its basal wall (:func:`anchor_annulus`; why and what it gains and costs:
        ``ANNULUS_ANCHOR_FRACTION``); default on, except for an annulus whose basal wall the
        tracker lost (:func:`anchor_trusted`, with a warning). The study's ``"lk"`` is left as
        the study ran it.
    beat_times : (float, float, float), optional
        Sub-frame (ed, es, next_ed) frame times (``CycleResult.beat_times``): the beat is then
        resampled between those times, as the study resampled its beat; default the integers.
    lk_win_size, lk_max_level : int, optional
        Window (px) and pyramid levels of the Lucas-Kanade tracker; default 13 px / 1 level for
        ``"flow+lk"`` (speckle-scale refinement) and 75 px / 5 levels for ``"lk"`` (the study).
    lk_fb_max_px : float, optional
        ``"flow+lk"`` only: keep a refined step only where LK tracked back lands within this
        distance (px) of its start (e.g. 0.15); None (default) skips that check.
    threads : int, optional
        ``"dis"`` only: OpenCV threads for the tracking flow (None: all cores).

    Returns
    -------
    Mechanics
    """
    if not isinstance(frames, np.ndarray) or frames.ndim != 3:
        raise InputError(f"frames must be an array [T,H,W], got {getattr(frames, 'shape', type(frames))}")
    if not isinstance(flow, np.ndarray) or flow.ndim != 4 or flow.shape[0] != frames.shape[0] - 1 \
            or flow.shape[1:3] != frames.shape[1:3]:
        raise InputError(f"flow must be [T-1,H,W,2] matching frames {frames.shape}, got {getattr(flow, 'shape', '')}")
    if method not in METHODS:
        raise InputError(f"method must be one of {', '.join(map(repr, METHODS))}, got {method!r}")
    if n_resample < 4:
        raise InputError(f"n_resample must be >= 4, got {n_resample}")
    if n_wall < 7:
        raise InputError(f"n_wall must be >= 7, got {n_wall}")
    ed, es, ned = _check_beat(beat, frames.shape[0])
    if lk_win_size is None:
        lk_win_size = 75 if method == "lk" else LK_REFINE_WIN
    if lk_max_level is None:
        lk_max_level = 5 if method == "lk" else LK_REFINE_LEVELS
    if int(lk_win_size) < 3 or int(lk_max_level) < 0:
        raise InputError(f"lk_win_size must be >= 3 and lk_max_level >= 0, got {lk_win_size}, {lk_max_level}")
    lk_win_size, lk_max_level = int(lk_win_size), int(lk_max_level)
    h, w = frames.shape[1:]
    warnings: list[ReportWarning] = []

    if landmarks is None:
        from .landmarks import detect_landmarks

        lm = detect_landmarks(frames, flow, (ed, es, ned), mask=mask, mirrored=mirrored)
    elif isinstance(landmarks, Landmarks):
        lm = landmarks
    else:
        lm = landmarks_from_caller(landmarks, (h, w), to_grid=to_grid, mirrored=mirrored)
    warnings += lm.warnings
    mid, axis_g, lv_len = long_axis(lm.septal_annulus, lm.lateral_annulus, lm.apex)

    walls0 = {
        "inferoseptal": wall_points(lm.septal_annulus, lm.apex, lm.lateral_annulus, n_wall,
                                    image=frames[ed], snap_px=wall_snap_px),
        "anterolateral": wall_points(lm.lateral_annulus, lm.apex, lm.septal_annulus, n_wall,
                                     image=frames[ed], snap_px=wall_snap_px),
    }
    pts0 = np.concatenate([lm.as_array(), walls0["inferoseptal"], walls0["anterolateral"]])
    pts0[:, 0] = np.clip(pts0[:, 0], 0, w - 1)
    pts0[:, 1] = np.clip(pts0[:, 1], 0, h - 1)

    # sub-frame beat times (from the cycle stage); the landmarks are on the integer ED frame
    if beat_times is None:
        ed_f, es_f, ned_f = float(ed), float(es), float(ned)
    else:
        try:
            ed_f, es_f, ned_f = (float(x) for x in beat_times)
        except (TypeError, ValueError):
            raise InputError(f"beat_times must be three frame times (ed, es, next_ed), got {beat_times!r}") from None
        if not (abs(ed_f - ed) <= 1 and abs(ned_f - ned) <= 1 and ed_f < es_f < ned_f
                and ed_f >= 0 and ned_f <= frames.shape[0] - 1):
            raise InputError(f"beat_times {beat_times} do not match beat {(ed, es, ned)}")
    t_lo = int(np.floor(ed_f))
    t_hi = min(int(np.ceil(ned_f)), frames.shape[0] - 1)
    t_hi = max(t_hi, ned)

    if method in ("flow+lk", "lk") and frames.dtype != np.uint8:  # LK needs 8-bit frames: rescale the beat
        seg = np.asarray(frames[ed:t_hi + 1], dtype=np.float64)
        lo, hi = float(np.nanmin(seg)), float(np.nanmax(seg))
        frames = np.zeros(frames.shape, np.uint8)
        frames[ed:t_hi + 1] = rescale_to_uint8(np.nan_to_num(seg, nan=lo), lo, hi)
    ed_flow = ed  # index of the pair ed -> ed+1 in `flow` (the "dis" branch replaces `flow`)
    if method == "lk":
        tr = track_lk(frames, pts0, t0=ed, t1=t_hi, win_size=lk_win_size, max_level=lk_max_level)
    elif method == "dis":
        # the tracking flow (DIS) over the beat's pairs, from one frame before ED (the sub-frame
        # ED may lie before the integer one), in the box of the points; `flow` stays the
        # caller's for the landmarks
        p_lo = max(ed - 1, 0)
        box = tracking_box(pts0, shape=(h, w))
        if min(box[2] - box[0], box[3] - box[1]) < MIN_ROI_PX:
            raise QualityError(f"the LV box {box} is under {MIN_ROI_PX} px on the {w}x{h} grid: too small for "
                               "the DIS tracker; use method='flow'")
        flow = tracking_flow(frames, p_lo, t_hi, roi=box, reference=np.asarray(flow[p_lo:t_hi], np.float32),
                             threads=threads)
        fbw = None if flow_backward is None else np.ascontiguousarray(flow_backward[p_lo:t_hi])
        tr = track_points(flow, pts0, t0=ed - p_lo, t1=t_hi - p_lo, flow_backward=fbw)
        tr.t0, tr.method = ed, "dis"
        ed_flow = ed - p_lo
    else:
        tr = track_points(flow, pts0, t0=ed, t1=t_hi, flow_backward=flow_backward)
        if method == "flow+lk":
            tr2 = track_lk(frames, pts0, t0=ed, t1=t_hi, init=tr.points, win_size=lk_win_size,
                           max_level=lk_max_level, fb_max_px=lk_fb_max_px)
            tr2.fb_error = tr.fb_error
            tr = tr2
    warnings += tr.warnings
    if not np.all(np.isfinite(tr.points)):
        raise QualityError("tracking produced non-finite positions: the flow holds NaN or infinite values")
    raw = tr.points  # [t_hi-ed+1, M, 2] at frames ed..t_hi
    anchored = {"septal_annulus": False, "lateral_annulus": False}
    if bool(annulus_anchor) and method != "lk":  # the study's tracker stays as it ran
        raw = raw.copy()
        for i, off, lname in ((0, 3, "septal_annulus"), (1, 3 + n_wall, "lateral_annulus")):
            wall_tr = raw[:, off:off + n_wall]  # the wall from this annulus toward the apex
            trusted, own_px, car_px = anchor_trusted(raw[:, i], wall_tr, ned - ed)
            if trusted:
                raw[:, i] = anchor_annulus(raw[:, i], wall_tr, closure_index=ned - ed)
                anchored[lname] = True
            else:
                warnings.append(warn("annulus_not_anchored", f"{lname}: not anchored to its basal wall, whose points closed the beat {car_px:.1f} px "
                                f"off (its own track {own_px:.1f} px): the tracker lost the wall there, so the annulus "
                                "keeps its own track (its excursion may read low)"))
    if t_lo < ed:  # one step back to frame ed-1: solve x + flow[ed-1](x) = p(ed)
        back = raw[0].copy()
        for _ in range(4):
            back = raw[0] - sample_flow(flow[ed_flow - 1:ed_flow], back[None])[0]
        raw = np.concatenate([back[None], raw])
    frames_t = np.arange(t_lo, t_lo + raw.shape[0], dtype=np.float64)

    def at(times: np.ndarray, arr: np.ndarray = raw) -> np.ndarray:
        """Positions at fractional frame times: cubic (Catmull-Rom) interpolation in time, which
        keeps the peaks of fast motion that linear interpolation between frames flattens."""
        n = arr.shape[0]
        x = np.clip(np.asarray(times, dtype=np.float64) - t_lo, 0.0, n - 1.0)
        i1 = np.minimum(np.floor(x).astype(int), n - 2)
        u = (x - i1)[:, None, None]
        p0, p1 = arr[np.maximum(i1 - 1, 0)], arr[i1]
        p2, p3 = arr[i1 + 1], arr[np.minimum(i1 + 2, n - 1)]
        return 0.5 * (2 * p1 + (-p0 + p2) * u + (2 * p0 - 5 * p1 + 4 * p2 - p3) * u ** 2
                      + (-p0 + 3 * p1 - 3 * p2 + p3) * u ** 3)

    # beat-closure drift: where the points are at the next ED minus where they were at ED
    p_ed, p_ned = at(np.array([ed_f, ned_f]))
    drift_vec = p_ned - p_ed
    if drift_correction:
        ramp = np.clip((frames_t - ed_f) / (ned_f - ed_f), 0.0, 1.0)
        raw = raw - ramp[:, None, None] * drift_vec[None]
    names3 = ("septal_annulus", "lateral_annulus", "apex")
    drift = {n: float(np.hypot(*drift_vec[i])) for i, n in enumerate(names3)}
    drift["walls_median"] = float(np.median(np.hypot(*drift_vec[3:].T)))
    closure_pct: dict[str, float] = {}
    for wi, wname in enumerate(WALLS):
        sl = slice(3 + wi * n_wall, 3 + (wi + 1) * n_wall)
        for lvl, v in zip(("basal", "mid", "apical"), segment_closure_pct(p_ed[sl], drift_vec[sl])):
            closure_pct[f"{lvl}_{wname}"] = float(v)
    far = [f"{k} ({v:.0f})" for k, v in closure_pct.items() if v > STRAIN_CLOSURE_WARN_PCT]
    if far:
        warnings.append(warn("strain_not_closed", "the end points of " + ", ".join(far) + " ended the beat that many strain "
                        "points of the segment's length from where they started; the linear closure correction "
                        "is a guess there, so those strains may be off by up to that much"))

    # the beat on its own frames (ED at sub-frame time, then the integer frames inside the beat)
    inner = np.arange(int(np.floor(ed_f)) + 1, int(np.ceil(ned_f)), dtype=np.float64)
    t_beat = np.concatenate([[ed_f], inner[(inner > ed_f) & (inner < ned_f)], [ned_f]])
    Pb = at(t_beat, raw)
    lmk = {n: Pb[:, i] for i, n in enumerate(names3)}
    walls = {"inferoseptal": Pb[:, 3:3 + n_wall], "anterolateral": Pb[:, 3 + n_wall:]}

    # --- the paper's peak displacement, on the beat resampled to n_resample frames
    t32 = np.linspace(ed_f, ned_f, n_resample)
    P32 = at(t32, raw)
    es32 = int(round((es_f - ed_f) / (ned_f - ed_f) * (n_resample - 1)))
    es32 = min(max(es32, 1), n_resample - 2)

    def axes(p3: np.ndarray) -> np.ndarray:
        """Unit long axis (annulus midpoint -> apex) per frame, [K, 2]."""
        d = p3[:, 2] - 0.5 * (p3[:, 0] + p3[:, 1])
        return d / np.maximum(np.hypot(d[:, 0], d[:, 1]), 1e-12)[:, None]

    P32_o = np.asarray(to_original(P32[:, :3]), dtype=np.float64) if to_original is not None else P32[:, :3]
    ax32_g, ax32_o = axes(P32[:, :3]), axes(P32_o)
    Pb_o = np.asarray(to_original(Pb[:, :3]), dtype=np.float64) if to_original is not None else Pb[:, :3]
    ax0_g, ax0_o = axes(Pb[:1, :3])[0], axes(Pb_o[:1])[0]
    pk_px: dict[str, dict[str, float | None]] = {}
    pk_grid: dict[str, dict[str, float | None]] = {}
    pk_mm: dict[str, dict[str, float | None]] | None = {} if mm_per_px else None
    pk_idx: dict[str, dict[str, int | None]] = {}
    exc_px: dict[str, float | None] = {}
    exc_mm: dict[str, float | None] | None = {} if mm_per_px else None
    disp_curves: dict[str, list[float]] = {}
    disp_native: dict[str, list[float]] = {}
    for name, lname in BASAL.items():
        i = names3.index(lname)
        pk_px[name], pk_idx[name], _ = _peak_steps(P32_o[:, i], ax32_o, es32)
        pk_grid[name], _, _ = _peak_steps(P32[:, i], ax32_g, es32)
        if pk_mm is not None:
            pk_mm[name] = {k: (None if v is None else v * mm_per_px) for k, v in pk_grid[name].items()}
        d_o = (Pb_o[:, i] - Pb_o[0, i]) @ ax0_o
        d_g = (Pb[:, i] - Pb[0, i]) @ ax0_g
        exc_px[name] = float(d_o.max())
        if exc_mm is not None:
            exc_mm[name] = float(d_g.max() * mm_per_px)
        disp_curves[name] = ((P32_o[:, i] - P32_o[0, i]) @ ax0_o).tolist()
        disp_native[name] = d_o.tolist()
        exc_g = float(d_g.max())
        closure_frac = drift[lname] / max(exc_g, 1e-9)
        if drift[lname] >= DRIFT_WARN_MIN_PX and closure_frac > DRIFT_WARN_FRACTION:
            warnings.append(warn("track_not_closed", f"{lname}: its track ended the beat {drift[lname]:.1f} px from where it started "
                            f"({100 * closure_frac:.0f} % of its {exc_g:.1f} px excursion, grid px): "
                            "the tracker lost part of its motion; its displacement, excursion and velocities are "
                            "uncertain by about that much"))
    if pk_mm is None:
        warnings.append(warn("no_calibration", "no calibration (mm_per_px): displacement and excursion in mm not "
                             "measured"))

    # --- strain (reference: the walls at ED)
    sc = strain_curves(walls)
    sys_mask = t_beat <= es_f + 1e-9
    strain_peak = {s: float(sc[s].min()) for s in SEGMENTS}
    strain_sys = {s: float(sc[s][sys_mask].min()) for s in SEGMENTS}
    gls = float(sc["gls"].min())
    if lv_len < 20:
        warnings.append(warn("lv_short", f"LV length is only {lv_len:.1f} px: strain is unreliable"))

    # --- annular velocities (fixed ED axis), peak refined by a parabola through 3 samples
    s_prime: dict[str, float | None] | None = None
    e_prime: dict[str, float | None] | None = None
    if fps is None or not mm_per_px:
        warnings.append(warn("velocities_not_measured", "S' and E' need both fps and mm_per_px: not measured"))
    else:
        s_prime, e_prime = {}, {}
        cm_per_s = mm_per_px * float(fps) / 10.0
        tf = frames_t
        v_t = 0.5 * (tf[1:] + tf[:-1])  # step midpoints
        e_end = es_f + 0.6 * (ned_f - es_f)
        for vname, lname in VEL_NAMES.items():
            i = names3.index(lname)
            v = (np.diff(raw[:, i], axis=0) @ ax0_g) * cm_per_s
            s_prime[vname] = _peak_value(v, (v_t > ed_f) & (v_t < es_f))
            ev = _peak_value(-v, (v_t > es_f) & (v_t < e_end))
            e_prime[vname] = ev
        if fps < 25:
            warnings.append(warn("fps_low", f"fps {fps:g} is low: peak velocities are underestimated"))

    fb = None if tr.fb_error is None else float(np.median(tr.fb_error))
    curves = {
        "es_index": es32,
        "displacement_px": disp_curves,
        "peak_step_index": pk_idx,
        "displacement_native_px": disp_native,
        "strain_pct": {k: v.tolist() for k, v in strain_curves(
            {"inferoseptal": P32[:, 3:3 + n_wall], "anterolateral": P32[:, 3 + n_wall:]}).items()},
        "strain_native_pct": {k: v.tolist() for k, v in sc.items()},
        "native_times": t_beat.tolist(),
    }
    tracks = {n: P32[:, i] for i, n in enumerate(names3)}
    tracks.update(inferoseptal=P32[:, 3:3 + n_wall], anterolateral=P32[:, 3 + n_wall:])
    return Mechanics(
        beat=(ed, es, ned), landmarks=lm, peak_displacement_px=pk_px, peak_displacement_mm=pk_mm,
        peak_displacement_grid_px=pk_grid, excursion_px=exc_px, excursion_mm=exc_mm,
        strain_peak_pct=strain_peak, strain_systolic_peak_pct=strain_sys, gls_pct=gls,
        s_prime_cm_s=s_prime, e_prime_cm_s=e_prime, beat_times=(ed_f, es_f, ned_f), curves=curves, tracks=tracks, drift_px=drift, fb_error_px=fb, method=tr.method,
        n_resample=n_resample, warnings=warnings, to_original=to_original,
        annulus_anchored=anchored, strain_closure_pct=closure_pct,
    )
