"""Point tracking through a beat by integrating dense optical flow (Numba kernels), with a
forward-backward consistency check, beat-closure drift correction, and optional pyramidal
Lucas-Kanade refinement (the original study's tracker: 75 px window, 5 levels).

Coordinates are (x, y) pixels of the flow's grid, origin at the top-left pixel centre.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numba import njit

from ._numerics import remove_linear_drift
from .constants import FRAMES_PER_BEAT
from .errors import InputError
from .warning_codes import ReportWarning, warn

__all__ = [
    "TrackResult",
    "track_points",
    "track_lk",
    "sample_flow",
    "correct_drift",
    "resample_tracks",
]


@njit(cache=True, nogil=True, inline="always")
def _bilinear(field, t, x, y):
    """Bilinear sample of field[t] ([T,H,W,2]) at (x, y), clamped to the border."""
    h = field.shape[1]
    w = field.shape[2]
    if x < 0.0:
        x = 0.0
    elif x > w - 1.0:
        x = w - 1.0
    if y < 0.0:
        y = 0.0
    elif y > h - 1.0:
        y = h - 1.0
    x0 = int(x)
    y0 = int(y)
    if x0 > w - 2:
        x0 = w - 2
    if y0 > h - 2:
        y0 = h - 2
    ax = x - x0
    ay = y - y0
    w00 = (1.0 - ax) * (1.0 - ay)
    w01 = ax * (1.0 - ay)
    w10 = (1.0 - ax) * ay
    w11 = ax * ay
    u = (w00 * field[t, y0, x0, 0] + w01 * field[t, y0, x0 + 1, 0]
         + w10 * field[t, y0 + 1, x0, 0] + w11 * field[t, y0 + 1, x0 + 1, 0])
    v = (w00 * field[t, y0, x0, 1] + w01 * field[t, y0, x0 + 1, 1]
         + w10 * field[t, y0 + 1, x0, 1] + w11 * field[t, y0 + 1, x0 + 1, 1])
    return u, v


@njit(cache=True, nogil=True)
def _integrate(flow, p0, t0, t1, out, inside):
    """out[k] = positions at frame t0+k, k = 0..t1-t0; flow[t] moves frame t -> t+1."""
    h = flow.shape[1]
    w = flow.shape[2]
    n = p0.shape[0]
    for i in range(n):
        x = p0[i, 0]
        y = p0[i, 1]
        out[0, i, 0] = x
        out[0, i, 1] = y
        ok = (0.0 <= x <= w - 1.0) and (0.0 <= y <= h - 1.0)
        for k in range(t1 - t0):
            u, v = _bilinear(flow, t0 + k, x, y)
            x += u
            y += v
            if not ((0.0 <= x <= w - 1.0) and (0.0 <= y <= h - 1.0)):
                ok = False
            out[k + 1, i, 0] = x
            out[k + 1, i, 1] = y
        inside[i] = ok


@njit(cache=True, nogil=True)
def _fb_error(bflow, tracks, t0, err):
    """err[k, i] = |p_k - (p_{k+1} + bflow[t0+k](p_{k+1}))|: forward-backward error per step."""
    nk = tracks.shape[0] - 1
    n = tracks.shape[1]
    for k in range(nk):
        for i in range(n):
            x1 = tracks[k + 1, i, 0]
            y1 = tracks[k + 1, i, 1]
            u, v = _bilinear(bflow, t0 + k, x1, y1)
            dx = x1 + u - tracks[k, i, 0]
            dy = y1 + v - tracks[k, i, 1]
            err[k, i] = np.sqrt(dx * dx + dy * dy)


@njit(cache=True, nogil=True)
def _sample(field, pts, out):
    """out[k, i] = field[k] sampled at pts[k, i]."""
    for k in range(pts.shape[0]):
        for i in range(pts.shape[1]):
            u, v = _bilinear(field, k, pts[k, i, 0], pts[k, i, 1])
            out[k, i, 0] = u
            out[k, i, 1] = v


@dataclass
class TrackResult:
    """Tracked positions of points.

    Attributes
    ----------
    points : np.ndarray
        float64 ``[K, N, 2]`` (x, y) grid px at frames ``t0 .. t0+K-1``.
    t0 : int
        Frame of ``points[0]``.
    inside : np.ndarray
        bool ``[N]``: the point stayed inside the image all along.
    fb_error : np.ndarray or None
        float64 ``[K-1, N]`` forward-backward error of each step in px (None without backward flow).
    drift : np.ndarray or None
        float64 ``[N, 2]``: position at the last frame minus the first (before any correction)
        when the span is one full beat, else None.
    drift_corrected : bool
    method : str
    warnings : list of ReportWarning
    """

    points: np.ndarray
    t0: int
    inside: np.ndarray
    fb_error: np.ndarray | None = None
    drift: np.ndarray | None = None
    drift_corrected: bool = False
    method: str = "flow"
    warnings: list[ReportWarning] = field(default_factory=list)

    @property
    def reliable(self) -> np.ndarray:
        """bool ``[N]``: inside the image and, when known, median forward-backward error < 0.5 px."""
        ok = self.inside.copy()
        if self.fb_error is not None and self.fb_error.size:
            ok &= np.median(self.fb_error, axis=0) < 0.5
        return ok


def _check_points(points0: np.ndarray, h: int, w: int) -> np.ndarray:
    p = np.asarray(points0, dtype=np.float64)
    if p.ndim == 1 and p.shape == (2,):
        p = p[None]
    if p.ndim != 2 or p.shape[1] != 2 or p.shape[0] < 1:
        raise InputError(f"points must be an array [N,2] of (x, y) pixels, got shape {p.shape}")
    if not np.all(np.isfinite(p)):
        raise InputError("points contain NaN or infinite coordinates")
    if np.any(p[:, 0] < 0) or np.any(p[:, 0] > w - 1) or np.any(p[:, 1] < 0) or np.any(p[:, 1] > h - 1):
        raise InputError(f"points must lie inside the {w}x{h} image (x in [0,{w - 1}], y in [0,{h - 1}])")
    return np.ascontiguousarray(p)


def _check_flow(flow: np.ndarray, name: str = "flow") -> np.ndarray:
    if not isinstance(flow, np.ndarray) or flow.ndim != 4 or flow.shape[-1] != 2 or flow.shape[0] < 1:
        raise InputError(f"{name} must be a float array [T-1,H,W,2], got {getattr(flow, 'shape', type(flow))}")
    if flow.dtype not in (np.float32, np.float64):
        flow = flow.astype(np.float32)
    if flow.shape[1] < 2 or flow.shape[2] < 2:
        raise InputError(f"{name} is too small: {flow.shape}")
    return np.ascontiguousarray(flow)


def correct_drift(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Beat-closure drift correction: remove the closure error linearly in time.

    Over one full beat (first and last frames both end-diastole) a point of the wall comes back
    where it started; what does not is tracking drift, assumed to build up linearly.

    Parameters
    ----------
    points : np.ndarray
        ``[K, N, 2]`` positions over one beat.

    Returns
    -------
    corrected : np.ndarray
        ``[K, N, 2]``.
    drift : np.ndarray
        ``[N, 2]`` closure error (last minus first) before correction.
    """
    return remove_linear_drift(points)


def _close_beat(res: "TrackResult", drift_correction: bool) -> None:
    """For a track over one full beat: record the closure drift and, if asked, remove it."""
    corrected, drift = correct_drift(res.points)
    res.drift = drift
    if drift_correction:
        res.points = corrected
        res.drift_corrected = True


def track_points(
    flow: np.ndarray,
    points0: np.ndarray,
    *,
    t0: int = 0,
    t1: int | None = None,
    flow_backward: np.ndarray | None = None,
    full_beat: bool = False,
    drift_correction: bool = True,
) -> TrackResult:
    """Track points from frame ``t0`` to ``t1`` by integrating the dense flow.

    Each step samples the flow of frame t at the point's sub-pixel position (bilinear) and moves
    the point by it: the flow of frame t is defined at the pixels of frame t, so this is the
    Lagrangian path of the point.

    Parameters
    ----------
    flow : np.ndarray
        float ``[T-1, H, W, 2]`` (dx, dy) px/frame, frame t -> t+1.
    points0 : np.ndarray
        ``[N, 2]`` (x, y) positions at frame ``t0`` in px.
    t0, t1 : int
        First and last frame (default: the whole clip).
    flow_backward : np.ndarray, optional
        ``[T-1, H, W, 2]`` flow from frame t+1 back to t (index t): enables the
        forward-backward consistency error.
    full_beat : bool
        ``t0`` and ``t1`` are consecutive end-diastoles: the closure error is reported as
        ``drift`` and, if ``drift_correction``, removed linearly in time.
    drift_correction : bool

    Returns
    -------
    TrackResult
        ``points`` ``[t1-t0+1, N, 2]``.
    """
    flow = _check_flow(flow)
    tmax = flow.shape[0]
    t1 = tmax if t1 is None else int(t1)
    t0 = int(t0)
    if not (0 <= t0 < t1 <= tmax):
        raise InputError(f"need 0 <= t0 < t1 <= {tmax} (frames of the flow), got t0={t0}, t1={t1}")
    p0 = _check_points(points0, flow.shape[1], flow.shape[2])
    out = np.empty((t1 - t0 + 1, p0.shape[0], 2), dtype=np.float64)
    inside = np.empty(p0.shape[0], dtype=np.bool_)
    _integrate(flow, p0, t0, t1, out, inside)
    res = TrackResult(out, t0, inside)
    if flow_backward is not None:
        fb = _check_flow(flow_backward, "flow_backward")
        if fb.shape != flow.shape:
            raise InputError(f"flow_backward shape {fb.shape} differs from flow shape {flow.shape}")
        err = np.empty((t1 - t0, p0.shape[0]), dtype=np.float64)
        _fb_error(fb, out, t0, err)
        res.fb_error = err
        bad = np.median(err, axis=0) >= 0.5
        if bad.any():
            res.warnings.append(warn("tracking_fb_error", f"{int(bad.sum())} of {bad.size} points have "
                                     "forward-backward error >= 0.5 px"))
    if not inside.all():
        res.warnings.append(warn("tracking_left_image", f"{int((~inside).sum())} of {inside.size} points left "
                                 "the image"))
    if full_beat:
        _close_beat(res, drift_correction)
    return res


def sample_flow(flow: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Bilinear sample of ``flow[k]`` at ``points[k]``.

    Parameters
    ----------
    flow : np.ndarray
        ``[K, H, W, 2]``.
    points : np.ndarray
        ``[K, N, 2]``.

    Returns
    -------
    np.ndarray
        float64 ``[K, N, 2]``.
    """
    flow = _check_flow(flow)
    pts = np.ascontiguousarray(points, dtype=np.float64)
    if pts.ndim != 3 or pts.shape[0] != flow.shape[0] or pts.shape[2] != 2:
        raise InputError(f"points must be [K,N,2] with K = {flow.shape[0]}, got {pts.shape}")
    out = np.empty_like(pts)
    _sample(flow, pts, out)
    return out


def track_lk(
    frames: np.ndarray,
    points0: np.ndarray,
    *,
    t0: int = 0,
    t1: int | None = None,
    win_size: int = 75,
    max_level: int = 5,
    init: np.ndarray | None = None,
    full_beat: bool = False,
    drift_correction: bool = False,
    max_correction_px: float = 1.0,
    fb_max_px: float | None = None,
) -> TrackResult:
    """Frame-to-frame pyramidal Lucas-Kanade tracking (``cv2.calcOpticalFlowPyrLK``).

    With ``init=None`` this is the original study's tracker (75 px window, 5 levels, each frame
    from the previous LK estimate). With ``init`` (``[K, N, 2]`` positions, e.g. from
    :func:`track_points`) each step starts from the flow prediction
    (``OPTFLOW_USE_INITIAL_FLOW``) and LK refines it; a step whose LK status fails keeps the
    prediction.

    Parameters
    ----------
    frames : np.ndarray
        uint8 ``[T, H, W]``.
    points0 : np.ndarray
        ``[N, 2]`` (x, y) at frame ``t0``.
    win_size, max_level : int
        LK window (px) and pyramid levels.
    max_correction_px : float
        With ``init``: a step's LK result is used only where it lies within this distance of
        the flow prediction (else the prediction is kept).
    fb_max_px : float, optional
        With ``init``: also track each refined step back (LK from frame t+1 to t) and keep the
        refinement only where it returns within this distance of its start (forward-backward
        check); None skips the check.

    Returns
    -------
    TrackResult
        ``method`` is ``"lk"`` or ``"flow+lk"``.
    """
    import cv2

    if not isinstance(frames, np.ndarray) or frames.ndim != 3 or frames.dtype != np.uint8:
        raise InputError(f"frames must be uint8 [T,H,W], got {getattr(frames, 'dtype', '')} {getattr(frames, 'shape', '')}")
    t_last = frames.shape[0] - 1
    t1 = t_last if t1 is None else int(t1)
    if not (0 <= t0 < t1 <= t_last):
        raise InputError(f"need 0 <= t0 < t1 <= {t_last}, got t0={t0}, t1={t1}")
    p0 = _check_points(points0, frames.shape[1], frames.shape[2])
    k = t1 - t0 + 1
    out = np.empty((k, p0.shape[0], 2), dtype=np.float64)
    out[0] = p0
    inside = np.ones(p0.shape[0], dtype=bool)
    crit = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01)
    n_fail = 0
    for j in range(1, k):
        prev = out[j - 1].astype(np.float32).reshape(-1, 1, 2)
        if init is not None:
            guess = (out[j - 1] + (init[j] - init[j - 1])).astype(np.float32).reshape(-1, 1, 2)
            nxt, st, _ = cv2.calcOpticalFlowPyrLK(frames[t0 + j - 1], frames[t0 + j], prev, guess.copy(),
                                                  winSize=(win_size, win_size), maxLevel=max_level,
                                                  criteria=crit, flags=cv2.OPTFLOW_USE_INITIAL_FLOW)
            nxt = nxt.reshape(-1, 2).astype(np.float64)
            st = st.reshape(-1).astype(bool)
            g = guess.reshape(-1, 2).astype(np.float64)
            # trust LK only where it agrees with the flow prediction within max_correction_px
            ok = st & (np.linalg.norm(nxt - g, axis=1) < max_correction_px)
            if fb_max_px is not None and ok.any():
                back, st_b, _ = cv2.calcOpticalFlowPyrLK(frames[t0 + j], frames[t0 + j - 1],
                                                         nxt.astype(np.float32).reshape(-1, 1, 2), prev.copy(),
                                                         winSize=(win_size, win_size), maxLevel=max_level,
                                                         criteria=crit, flags=cv2.OPTFLOW_USE_INITIAL_FLOW)
                fb = np.linalg.norm(back.reshape(-1, 2).astype(np.float64) - out[j - 1], axis=1)
                ok &= st_b.reshape(-1).astype(bool) & (fb < fb_max_px)
            out[j] = np.where(ok[:, None], nxt, g)
        else:
            nxt, st, _ = cv2.calcOpticalFlowPyrLK(frames[t0 + j - 1], frames[t0 + j], prev, None,
                                                  winSize=(win_size, win_size), maxLevel=max_level, criteria=crit)
            nxt = nxt.reshape(-1, 2).astype(np.float64)
            st = st.reshape(-1).astype(bool)
            out[j] = np.where(st[:, None], nxt, out[j - 1])
            n_fail += int((~st).sum())
        h, w = frames.shape[1:]
        inside &= (out[j, :, 0] >= 0) & (out[j, :, 0] <= w - 1) & (out[j, :, 1] >= 0) & (out[j, :, 1] <= h - 1)
    res = TrackResult(out, t0, inside, method="lk" if init is None else "flow+lk")
    if n_fail:
        res.warnings.append(warn("tracking_lk_lost", f"LK lost {n_fail} point-steps (kept the previous position)"))
    if full_beat:
        _close_beat(res, drift_correction)
    return res


def resample_tracks(points: np.ndarray, n: int = FRAMES_PER_BEAT) -> np.ndarray:
    """Resample tracked positions of one beat (``[K, ...]`` over ED..next ED) to ``n`` samples
    by linear interpolation in time (like resampling the beat's frames to ``n``).

    Returns
    -------
    np.ndarray
        float64 ``[n, ...]``.
    """
    p = np.asarray(points, dtype=np.float64)
    k = p.shape[0]
    if k < 2 or n < 2:
        raise InputError(f"need at least 2 positions and n >= 2, got {k}, {n}")
    t = np.linspace(0.0, k - 1.0, n)
    i0 = np.minimum(np.floor(t).astype(int), k - 2)
    a = (t - i0).reshape((-1,) + (1,) * (p.ndim - 1))
    return p[i0] * (1 - a) + p[i0 + 1] * a
