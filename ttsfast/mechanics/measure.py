"""The mechanics of one beat as a sequence of named steps: landmarks and wall points at ED,
tracking, annulus anchoring, beat closure, the beat's time base, and the measures."""
from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np

from ..constants import FRAMES_PER_BEAT
from ..errors import InputError
from ..flow import MIN_ROI_PX, TrackingPairs
from ..landmarks import Landmarks, landmarks_from_caller, long_axis, wall_points
from ..tracking import TrackResult
from ..warning_codes import ReportWarning
from .anchoring import anchor_annuli
from .closure import close_beat
from .measures import measure_beat
from .points import WALL_OF, TrackedPoints
from .result import Mechanics
from .timebase import BeatTimes, beat_time_base, check_beat, extend_back, resample_beat
from .trackers import METHODS, TrackOptions, track, tracking_box

#: Points per wall of :func:`measure_mechanics` (3k+1 puts the segment borders on points).
N_WALL = 31


def _check_inputs(frames: Any, flow: Any, beat: Any, method: str, n_resample: int, n_wall: int) -> tuple[int, int, int]:
    """The checks of :func:`measure_mechanics` on its arrays and sizes; the beat's frames."""
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
    return check_beat(beat, frames.shape[0])


def _landmarks(frames: np.ndarray, flow: np.ndarray, beat: tuple[int, int, int], landmarks: Any,
               mask: np.ndarray | None, to_grid: Callable | None, mirrored: bool | None) -> Landmarks:
    """The caller's landmarks (grid px) or, for None, those found on the ED frame."""
    if landmarks is None:
        from ..landmarks import detect_landmarks

        return detect_landmarks(frames, flow, beat, mask=mask, mirrored=mirrored)
    if isinstance(landmarks, Landmarks):
        return landmarks
    h, w = frames.shape[1:]
    return landmarks_from_caller(landmarks, (h, w), to_grid=to_grid, mirrored=mirrored)


def _points_at_ed(lm: Landmarks, shape: tuple[int, int], n_wall: int, wall_snap_px: float,
                  image: np.ndarray | None = None) -> TrackedPoints:
    """The landmarks and the ``n_wall`` points of each wall on the ED frame, inside its ``shape``
    ``(H, W)``; the ED frame ``image`` ``[H, W]`` is read only to snap the walls
    (``wall_snap_px`` > 0)."""
    h, w = shape
    pts = TrackedPoints.from_parts(
        lm.as_array(),
        wall_points(lm.septal_annulus, lm.apex, lm.lateral_annulus, n_wall, image=image, snap_px=wall_snap_px),
        wall_points(lm.lateral_annulus, lm.apex, lm.septal_annulus, n_wall, image=image, snap_px=wall_snap_px))
    pts.array[:, 0] = np.clip(pts.array[:, 0], 0, w - 1)
    pts.array[:, 1] = np.clip(pts.array[:, 1], 0, h - 1)
    return pts


def dis_roi(landmarks: Landmarks, shape: tuple[int, int], n_wall: int = N_WALL,
            wall_snap_px: float = 0.0) -> tuple[int, int, int, int] | None:
    """The box method ``"dis"`` computes its tracking flow in for these landmarks, known before
    the beat's frames: the one :func:`measure_mechanics` (same ``n_wall`` and ``wall_snap_px``)
    uses on a grid of ``shape`` ``(H, W)``.

    Returns
    -------
    (x0, y0, x1, y1) or None
        Grid px (x1, y1 exclusive), clipped to the grid; None when the points depend on the ED
        frame (``wall_snap_px`` > 0) or the box is too small for the tracker.
    """
    if wall_snap_px > 0:
        return None
    box = tracking_box(_points_at_ed(landmarks, shape, n_wall, 0.0).array, shape=shape)
    return box if min(box[2] - box[0], box[3] - box[1]) >= MIN_ROI_PX else None


def _track_beat(method: str, frames: np.ndarray, flow: np.ndarray, pts0: TrackedPoints, beat: tuple[int, int],
                bt: BeatTimes, opts: TrackOptions, anchor: bool
                ) -> tuple[TrackResult, TrackedPoints, dict[str, bool], list[ReportWarning]]:
    """Track ``pts0`` from the integer ED ``beat[0]`` to ``bt.t_hi``, anchor the annuli to their
    walls (``anchor``; closure at the next ED ``beat[1]``), then step back to ``bt.t_lo``."""
    ed, ned = beat
    tracked = track(method, frames, flow, pts0.array, ed, bt.t_hi, opts)
    warnings = list(tracked.result.warnings)
    raw = pts0.with_array(tracked.result.points)
    anchored = dict.fromkeys(WALL_OF, False)
    if anchor:
        raw, anchored, anchor_warnings = anchor_annuli(raw, ned - ed)
        warnings += anchor_warnings
    if bt.t_lo < ed:
        raw = raw.with_array(extend_back(raw.array, tracked.flow, tracked.ed_pair))
    return tracked.result, raw, anchored, warnings


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
    n_resample: int = FRAMES_PER_BEAT,
    n_wall: int = N_WALL,
    wall_snap_px: float = 0.0,
    drift_correction: bool = True,
    annulus_anchor: bool = True,
    mirrored: bool | None = None,
    beat_times: tuple[float, float, float] | None = None,
    lk_win_size: int | None = None,
    lk_max_level: int | None = None,
    lk_fb_max_px: float | None = None,
    threads: int | None = None,
    dis_pairs: TrackingPairs | None = None,
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
    dis_pairs : TrackingPairs, optional
        ``"dis"`` only: pairs of the tracking flow already computed
        (:func:`ttsfast.flow.tracking_pairs` on these ``frames`` and ``flow``, keyed by pair
        index in ``frames``), e.g. as a stream's frames arrived; used where their box is the
        points' (:func:`dis_roi`), the others computed. The result is the same.

    Returns
    -------
    Mechanics
    """
    ed, es, ned = _check_inputs(frames, flow, beat, method, n_resample, n_wall)
    opts = TrackOptions.for_method(method, lk_win_size, lk_max_level, lk_fb_max_px=lk_fb_max_px,
                                   threads=threads, flow_backward=flow_backward, dis_pairs=dis_pairs)
    lm = _landmarks(frames, flow, (ed, es, ned), landmarks, mask, to_grid, mirrored)
    lv_len = long_axis(lm.septal_annulus, lm.lateral_annulus, lm.apex)[2]
    pts0 = _points_at_ed(lm, frames.shape[1:], n_wall, wall_snap_px, frames[ed])
    bt = beat_time_base(beat_times, (ed, es, ned), frames.shape[0])
    tr, raw, anchored, track_warnings = _track_beat(  # the study's "lk" is not anchored
        method, frames, flow, pts0, (ed, ned), bt, opts, bool(annulus_anchor) and method != "lk")
    raw, drift, closure_pct, closure_warnings = close_beat(raw, bt, drift_correction)
    t_beat, Pb, P32, es32 = resample_beat(raw, bt, n_resample)
    measures, measure_warnings = measure_beat(raw, Pb, P32, t_beat, es32, bt, drift, fps=fps, mm_per_px=mm_per_px,
                                              to_original=to_original, lv_len=lv_len)
    return Mechanics(
        beat=(ed, es, ned), landmarks=lm, beat_times=bt.as_tuple(), **measures, tracks=P32.named(),
        drift_px=drift, fb_error_px=None if tr.fb_error is None else float(np.median(tr.fb_error)),
        method=tr.method, n_resample=n_resample, to_original=to_original,
        warnings=[*lm.warnings, *track_warnings, *closure_warnings, *measure_warnings],
        annulus_anchored=anchored, strain_closure_pct=closure_pct,
    )
