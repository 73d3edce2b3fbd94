"""The point trackers of :func:`ttsfast.mechanics.measure_mechanics`, one function per method
behind :data:`TRACKERS` (the integrators themselves are in :mod:`ttsfast.tracking`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np

from .._numerics import rescale_to_uint8
from ..errors import InputError, QualityError
from ..flow import MIN_ROI_PX, TrackingPairs, tracking_flow
from ..tracking import TrackResult, track_lk, track_points

#: Lucas-Kanade refinement of the flow track (method "flow+lk"): window px, pyramid levels, a
#: speckle-scale window; see docs/mechanics_notes.md.
LK_REFINE_WIN = 13
LK_REFINE_LEVELS = 1
#: Method "dis": the tracking flow is computed in the box of the ED points widened by this many
#: px on each side; see docs/mechanics_notes.md.
DIS_ROI_MARGIN = 16
METHODS = ("dis", "flow", "flow+lk", "lk")


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


@dataclass(frozen=True)
class TrackOptions:
    """The tracker settings of :func:`measure_mechanics` (see its parameters)."""

    lk_win_size: int
    lk_max_level: int
    lk_fb_max_px: float | None = None
    threads: int | None = None
    flow_backward: np.ndarray | None = None
    dis_pairs: TrackingPairs | None = None  # method "dis": tracking-flow pairs computed ahead

    @classmethod
    def for_method(cls, method: str, lk_win_size: int | None, lk_max_level: int | None,
                   **kw) -> "TrackOptions":
        """The LK window and levels defaulted for ``method`` (75 px / 5 levels for the study's
        ``"lk"``, :data:`LK_REFINE_WIN` / :data:`LK_REFINE_LEVELS` otherwise) and checked."""
        if lk_win_size is None:
            lk_win_size = 75 if method == "lk" else LK_REFINE_WIN
        if lk_max_level is None:
            lk_max_level = 5 if method == "lk" else LK_REFINE_LEVELS
        if int(lk_win_size) < 3 or int(lk_max_level) < 0:
            raise InputError(f"lk_win_size must be >= 3 and lk_max_level >= 0, got {lk_win_size}, {lk_max_level}")
        return cls(int(lk_win_size), int(lk_max_level), **kw)


class Tracked(NamedTuple):
    """A tracker's result: the tracks from frame ``ed`` to ``t_hi``, the flow the points moved on
    and the index in it of the pair ``ed -> ed + 1``."""

    result: TrackResult
    flow: np.ndarray
    ed_pair: int


def _frames_8bit(frames: np.ndarray, ed: int, t_hi: int) -> np.ndarray:
    """LK needs 8-bit frames: non-uint8 frames with the beat ``ed..t_hi`` rescaled (0 elsewhere)."""
    if frames.dtype == np.uint8:
        return frames
    seg = np.asarray(frames[ed:t_hi + 1], dtype=np.float64)
    lo, hi = float(np.nanmin(seg)), float(np.nanmax(seg))
    out = np.zeros(frames.shape, np.uint8)
    out[ed:t_hi + 1] = rescale_to_uint8(np.nan_to_num(seg, nan=lo), lo, hi)
    return out


def track_dis(frames, flow, pts0, ed, t_hi, opt: TrackOptions) -> Tracked:
    """Method ``"dis"``: the tracking flow (DIS) over the beat's pairs, from one frame before ED
    (the sub-frame ED may lie before the integer one), in the box of the points; ``flow`` stays
    the caller's for the landmarks. The pairs of ``opt.dis_pairs`` computed in that box are
    taken as they are (the result is the same)."""
    h, w = frames.shape[1:]
    p_lo = max(ed - 1, 0)
    box = tracking_box(pts0, shape=(h, w))
    if min(box[2] - box[0], box[3] - box[1]) < MIN_ROI_PX:
        raise QualityError(f"the LV box {box} is under {MIN_ROI_PX} px on the {w}x{h} grid: too small for "
                           "the DIS tracker; use method='flow'")
    tflow = tracking_flow(frames, p_lo, t_hi, roi=box, reference=np.asarray(flow[p_lo:t_hi], np.float32),
                          threads=opt.threads, known=opt.dis_pairs)
    fbw = None if opt.flow_backward is None else np.ascontiguousarray(opt.flow_backward[p_lo:t_hi])
    tr = track_points(tflow, pts0, t0=ed - p_lo, t1=t_hi - p_lo, flow_backward=fbw)
    tr.t0, tr.method = ed, "dis"
    return Tracked(tr, tflow, ed - p_lo)


def track_flow(frames, flow, pts0, ed, t_hi, opt: TrackOptions) -> Tracked:
    """Method ``"flow"``: integrate ``flow`` itself."""
    return Tracked(track_points(flow, pts0, t0=ed, t1=t_hi, flow_backward=opt.flow_backward), flow, ed)


def track_flow_lk(frames, flow, pts0, ed, t_hi, opt: TrackOptions) -> Tracked:
    """Method ``"flow+lk"``: each step of the ``"flow"`` track refined by Lucas-Kanade."""
    tr = track_points(flow, pts0, t0=ed, t1=t_hi, flow_backward=opt.flow_backward)
    tr2 = track_lk(_frames_8bit(frames, ed, t_hi), pts0, t0=ed, t1=t_hi, init=tr.points, win_size=opt.lk_win_size,
                   max_level=opt.lk_max_level, fb_max_px=opt.lk_fb_max_px)
    tr2.fb_error = tr.fb_error
    return Tracked(tr2, flow, ed)


def track_lk_study(frames, flow, pts0, ed, t_hi, opt: TrackOptions) -> Tracked:
    """Method ``"lk"``: the original study, frame-to-frame Lucas-Kanade."""
    tr = track_lk(_frames_8bit(frames, ed, t_hi), pts0, t0=ed, t1=t_hi, win_size=opt.lk_win_size,
                  max_level=opt.lk_max_level)
    return Tracked(tr, flow, ed)


#: ``measure_mechanics(method=)`` -> tracker, in :data:`METHODS` order.
TRACKERS: dict[str, Callable[..., Tracked]] = {
    "dis": track_dis, "flow": track_flow, "flow+lk": track_flow_lk, "lk": track_lk_study,
}
assert tuple(TRACKERS) == METHODS


def track(method: str, frames: np.ndarray, flow: np.ndarray, pts0: np.ndarray, ed: int, t_hi: int,
          opt: TrackOptions) -> Tracked:
    """Track the points ``pts0`` ``[M, 2]`` from frame ``ed`` to ``t_hi`` with ``method``."""
    tracked = TRACKERS[method](frames, flow, pts0, ed, t_hi, opt)
    if not np.all(np.isfinite(tracked.result.points)):
        raise QualityError("tracking produced non-finite positions: the flow holds NaN or infinite values")
    return tracked
