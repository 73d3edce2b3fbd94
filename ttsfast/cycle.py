"""Cardiac cycle detection from motion: end-diastole / end-systole frames, heart rate, and one
beat resampled to a fixed number of frames.

The signal is the longitudinal velocity of the moving tissue: the mean of ``-dy`` of the dense
flow over the pixels that move most (the apex is at the top of an apical view, so motion toward
the apex, i.e. systolic shortening of the AV plane, is positive). Periodicity comes from its
autocorrelation; end-diastole (ED) is the onset of the systolic motion toward the apex (the
minimum of the integrated longitudinal position), end-systole (ES) its end (the maximum).
No ECG is used.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
from numba import njit

from ._numerics import refine_extremum
from .constants import FRAMES_PER_BEAT
from .errors import InputError, QualityError
from .warning_codes import ReportWarning, warn, warning_dicts

__all__ = ["signal_weights", "project_signals", "cycles_from_signals", "CycleResult", "detect_cycles", "longitudinal_signal", "resample_beat", "beat_times"]


@dataclass
class CycleResult:
    """Cardiac cycles found in a clip.

    Attributes
    ----------
    beats : list of (int, int, int)
        Every complete beat as ``(ed, es, next_ed)`` frame indices (frames of the clip).
    heart_rate_bpm : float or None
        Heart rate in beats/min; None when ``fps`` is unknown.
    period_frames : float
        Cycle length in frames (autocorrelation, refined to sub-frame).
    fps : float or None
        Frame rate used for ``heart_rate_bpm``.
    confidence : float
        0..1, height of the autocorrelation peak at the period (1 for a perfectly periodic
        signal); for ``single_beat`` the closure of the beat.
    ed_frames, es_frames : np.ndarray
        int, every ED / ES found (also those of incomplete beats at the ends of the clip).
    signal : np.ndarray
        float ``[T]``: integrated longitudinal position of the moving tissue in px (toward the
        apex positive), drift removed; what ED/ES were read from.
    warnings : list of ReportWarning
    beat_times : list of (float, float, float)
        The same beats with sub-frame times (parabolic refinement of the extrema of
        ``signal``), in frames; pass them to :func:`ttsfast.mechanics.measure_mechanics`.
    """

    beats: list[tuple[int, int, int]]
    heart_rate_bpm: float | None
    period_frames: float
    fps: float | None
    confidence: float
    ed_frames: np.ndarray
    es_frames: np.ndarray
    signal: np.ndarray
    warnings: list[ReportWarning] = field(default_factory=list)
    beat_times: list[tuple[float, float, float]] = field(default_factory=list)

    @property
    def n_beats(self) -> int:
        return len(self.beats)

    def beat(self, index: int = 0) -> tuple[int, int, int]:
        """The ``index``-th complete beat ``(ed, es, next_ed)``; QualityError when absent."""
        if not self.beats:
            raise QualityError("no complete cardiac cycle in this clip; record at least one full beat")
        if not -len(self.beats) <= index < len(self.beats):
            raise InputError(f"beat index {index} out of range: the clip has {len(self.beats)} complete beat(s)")
        return self.beats[index]

    def to_dict(self) -> dict[str, Any]:
        return {
            "beats": [list(map(int, b)) for b in self.beats],
            "heart_rate_bpm": None if self.heart_rate_bpm is None else float(self.heart_rate_bpm),
            "period_frames": float(self.period_frames),
            "fps": self.fps,
            "confidence": float(self.confidence),
            "ed_frames": [int(x) for x in self.ed_frames],
            "es_frames": [int(x) for x in self.es_frames],
            "beat_times": [[round(float(x), 3) for x in b] for b in self.beat_times],
            "warnings": warning_dicts(self.warnings),
        }


def _check_flow(flow: np.ndarray) -> np.ndarray:
    if not isinstance(flow, np.ndarray) or flow.ndim != 4 or flow.shape[-1] != 2:
        raise InputError(
            "flow must be a float array [T-1,H,W,2] of (dx, dy) px/frame; got "
            f"{type(flow).__name__} {getattr(flow, 'shape', '')}"
        )
    if flow.shape[0] < 1 or flow.shape[1] < 2 or flow.shape[2] < 2:
        raise InputError(f"flow has too few frames or pixels: shape {flow.shape}")
    if not np.issubdtype(flow.dtype, np.floating):
        raise InputError(f"flow must be floating point, got {flow.dtype}")
    return flow


def longitudinal_signal(
    flow: np.ndarray, mask: np.ndarray | None = None, axis: np.ndarray | None = None,
    trim: float = 0.0,
) -> np.ndarray:
    """Mean longitudinal velocity of the moving tissue, per frame pair.

    Parameters
    ----------
    flow : np.ndarray
        float ``[T-1, H, W, 2]``, (dx, dy) px/frame from frame t to t+1.
    mask : np.ndarray, optional
        bool ``[H, W]``: the sector; pixels outside are ignored.
    axis : np.ndarray, optional
        ``[2]`` unit vector of the long axis pointing to the apex in image coordinates;
        default ``(0, -1)`` (apex at the top).
    trim : float
        Fraction in ``[0, 0.45]`` of the pixels dropped at EACH end of that frame pair's
        velocities before averaging (a trimmed mean). Fast thin structures that move against
        the walls (the mitral leaflets closing at end-diastole) then no longer pull the mean.

    Returns
    -------
    np.ndarray
        float64 ``[T-1]`` px/frame, positive toward the apex. Each pixel is weighted by its mean
        speed over the clip, so that still background and noise count little.
    """
    return _signals(flow, mask, axis, (float(trim),))[0]


def _signals(
    flow: np.ndarray, mask: np.ndarray | None, axis: np.ndarray | None, trims: tuple[float, ...]
) -> list[np.ndarray]:
    """:func:`longitudinal_signal` for several ``trims`` at the cost of one pixel selection."""
    flow = _check_flow(flow)
    f = np.ascontiguousarray(flow, dtype=np.float32)
    return project_signals(f, signal_weights(f, mask), axis, trims)


def signal_weights(flow: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Weight of each pixel in the longitudinal signal: its mean speed over the flow's frames,
    kept where it is in the upper half of the moving pixels (the myocardium and valves).

    Parameters
    ----------
    flow : np.ndarray
        float32 ``[T-1, H, W, 2]`` px/frame.
    mask : np.ndarray, optional
        bool ``[H, W]`` sector; pixels outside get weight 0.

    Returns
    -------
    np.ndarray
        float64 ``[H, W]`` px/frame (all 0 when nothing moves).
    """
    w = _mean_speed(flow)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != flow.shape[1:3]:
            raise InputError(f"mask shape {mask.shape} does not match the flow's {flow.shape[1:3]}")
        w = np.where(mask, w, 0.0)
    pos = w[w > 0]
    if pos.size:
        w = np.where(w >= np.quantile(pos, 0.5), w, 0.0)
    return w


def project_signals(flow: np.ndarray, w: np.ndarray, axis: np.ndarray | None,
                    trims: tuple[float, ...]) -> list[np.ndarray]:
    """The weighted mean velocity along ``axis`` per frame pair, for each trim (see
    :func:`longitudinal_signal`): float32 ``flow [T-1, H, W, 2]`` and weights ``w [H, W]``
    (:func:`signal_weights`, which may come from other frames of the same view) -> float64
    ``[T-1]`` px/frame per trim; zeros when ``w`` is all 0."""
    for tr in trims:
        if not (0.0 <= tr <= 0.45):
            raise InputError(f"trim must be in [0, 0.45], got {tr}")
    ax = np.array([0.0, -1.0]) if axis is None else np.asarray(axis, dtype=np.float64).reshape(2)
    ax = ax / max(np.linalg.norm(ax), 1e-12)
    wsum = w.sum()
    if not np.isfinite(wsum) or wsum <= 0:
        return [np.zeros(flow.shape[0]) for _ in trims]
    ys, xs = np.nonzero(w)
    sums = _projections(flow, ys, xs, w[ys, xs], float(ax[0]), float(ax[1]), np.asarray(trims, np.float64))
    return [sums[i] / wsum if tr == 0.0 else sums[i] for i, tr in enumerate(trims)]


@njit(cache=True, nogil=True)
def _mean_speed(f: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    """Per-pixel mean over t of |flow| (one pass): float32 [T,H,W,2] -> float64 [H,W]."""
    n, h, w = f.shape[0], f.shape[1], f.shape[2]
    out = np.zeros((h, w))
    for t in range(n):
        for y in range(h):
            for x in range(w):
                out[y, x] += np.sqrt(f[t, y, x, 0] ** 2 + f[t, y, x, 1] ** 2)
    return out / n


@njit(cache=True, nogil=True)
def _projections(f: np.ndarray, ys: np.ndarray, xs: np.ndarray, wgt: np.ndarray, ax0: float, ax1: float,
                 trims: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    """Per frame pair, the projections ``v = flow . axis`` of the pixels (ys, xs) (row-major
    order, weights ``wgt``), read once for all ``trims``: for a trim of 0 the weighted sum of v
    (the caller divides it by the sum of all weights); otherwise the ``wgt``-weighted mean of the
    v between that frame's ``trim`` and ``1 - trim`` quantiles: -> float64 ``[len(trims), T]``."""
    n, m = f.shape[0], ys.size
    out = np.zeros((trims.size, n))
    vals = np.empty(m)
    for t in range(n):
        for j in range(m):
            vals[j] = f[t, ys[j], xs[j], 0] * ax0 + f[t, ys[j], xs[j], 1] * ax1
        for i in range(trims.size):
            if trims[i] == 0.0:
                acc = 0.0
                for j in range(m):
                    acc += wgt[j] * vals[j]
                out[i, t] = acc
                continue
            k = min(int(trims[i] * m), (m - 1) // 2)
            srt = np.partition(vals, (k, m - 1 - k))
            lo, hi = srt[k], srt[m - 1 - k]
            acc = 0.0
            wacc = 0.0
            for j in range(m):
                if lo <= vals[j] <= hi:
                    acc += wgt[j] * vals[j]
                    wacc += wgt[j]
            out[i, t] = acc / wacc if wacc > 0 else 0.0
    return out


def _autocorr(v: np.ndarray) -> np.ndarray:
    """Normalised (unbiased) autocorrelation r[k], k = 0..n-1."""
    n = v.size
    x = v - v.mean()
    full = np.correlate(x, x, mode="full")[n - 1:]
    counts = np.arange(n, 0, -1, dtype=np.float64)
    var = (x * x).mean()
    if var <= 0:
        return np.zeros(n)
    return full / counts / var


def _period(v: np.ndarray, pmin: float, pmax: float) -> tuple[float, float]:
    """Cycle length (frames, sub-frame) and autocorrelation peak height of velocity ``v``."""
    r = _autocorr(v)
    lo = max(2, int(np.floor(pmin)))
    hi = min(v.size - 2, int(np.ceil(pmax)))
    if hi <= lo:
        return float("nan"), 0.0
    cand = [k for k in range(lo, hi + 1) if r[k] >= r[k - 1] and r[k] >= r[k + 1]]
    if not cand:
        return float("nan"), 0.0
    best = max(cand, key=lambda k: r[k])
    # prefer the shortest lag whose peak is nearly as high (a multiple of the period also peaks)
    for k in sorted(cand):
        if k < best and r[k] >= 0.85 * r[best] and abs(best / k - round(best / k)) < 0.15 and round(best / k) >= 2:
            best = k
            break
    k = best
    return refine_extremum(r, k, maximum=True), float(np.clip(r[k], 0.0, 1.0))


#: Trimmed fraction at each end of the per-frame velocities for the sub-frame end-diastole (the
#: closing mitral leaflets would pull a plain mean late); see docs/cycle_notes.md.
ED_TRIM = 0.15

#: Time (s) from the onset of the early-diastolic (E') motion to its velocity reaching 15 % of the
#: systolic peak: end-systole = that crossing minus this rise minus the IVRT; see
#: docs/cycle_notes.md.
E_RISE_S = 0.015


def detect_cycles(
    flow: np.ndarray,
    *,
    fps: float | None = None,
    mask: np.ndarray | None = None,
    axis: np.ndarray | None = None,
    min_bpm: float = 30.0,
    max_bpm: float = 200.0,
    single_beat: bool | None = None,
    min_confidence: float = 0.3,
    ivrt_s: float = 0.07,
) -> CycleResult:
    """Find the cardiac cycles of a clip from its motion.

    Parameters
    ----------
    flow : np.ndarray
        float ``[T-1, H, W, 2]`` dense flow (dx, dy) px/frame, frame t -> t+1.
    fps : float, optional
        Acquisition frame rate (frames/s). Needed for ``heart_rate_bpm`` and used to bound the
        period search to ``[min_bpm, max_bpm]``; without it the period is searched between 8
        frames and two thirds of the clip.
    mask : np.ndarray, optional
        bool ``[H, W]`` sector mask.
    axis : np.ndarray, optional
        ``[2]`` unit long-axis vector toward the apex (default: image up).
    min_bpm, max_bpm : float
        Plausible heart-rate range.
    single_beat : bool or None
        True: the clip is exactly one beat (first and last frames are end-diastole, e.g. a beat
        already resampled to 32 frames): no periodicity search, ES is the extremum in between.
        None (default): a clip whose periodicity is not confirmed and whose motion looks like
        one beat (:func:`looks_like_one_beat`) is read as one beat, with a warning. False:
        never.
    min_confidence : float
        Autocorrelation peak below which the motion is not called periodic.
    ivrt_s : float
        Isovolumic relaxation time (s) used to place end-systole before the onset of the
        early-diastolic motion when ``fps`` is known (normal adult IVRT, 70 ms).

    Returns
    -------
    CycleResult

    Raises
    ------
    QualityError
        No motion, no periodic motion, or less than one complete beat in the clip.
    InputError
        Malformed flow or arguments.
    """
    flow = _check_flow(flow)
    if fps is not None:
        fps = float(fps)
        if not np.isfinite(fps) or fps <= 0:
            raise InputError(f"fps must be a positive number of frames/s, got {fps!r}")
    if not (0 < min_bpm < max_bpm):
        raise InputError(f"need 0 < min_bpm < max_bpm, got {min_bpm}, {max_bpm}")
    # the mean for the beats and end-systole (the leaflets opening mark the E' onset), the
    # trimmed mean for the sub-frame end-diastole (the leaflets closing would pull it late)
    v, v_ed = _signals(flow, mask, axis, (0.0, ED_TRIM))
    return cycles_from_signals(v, v_ed, fps=fps, min_bpm=min_bpm, max_bpm=max_bpm, single_beat=single_beat,
                               min_confidence=min_confidence, ivrt_s=ivrt_s)


def cycles_from_signals(v: np.ndarray, v_ed: np.ndarray, *, fps: float | None, min_bpm: float = 30.0,
                        max_bpm: float = 200.0, single_beat: bool | None = None, min_confidence: float = 0.3,
                        ivrt_s: float = 0.07) -> CycleResult:
    """:func:`detect_cycles` on its two signals, float64 ``[T-1]`` px/frame: the weighted mean
    (``v``) and the trimmed mean (``v_ed``, trim ``ED_TRIM``) longitudinal velocity
    (:func:`project_signals`); the other arguments as there. The live path calls it on a
    sliding window of the stream's signals."""
    if not np.all(np.isfinite(v)):
        raise QualityError("the flow contains NaN or infinite values; recompute it")
    if np.abs(v).max() < 1e-3:
        raise QualityError("no motion in the clip (mean tissue velocity < 0.001 px/frame): nothing to measure")
    args = (fps, min_bpm, max_bpm, min_confidence, ivrt_s)
    if single_beat is not None:
        return _cycles_from_signals(v, v_ed, *args, single_beat=bool(single_beat))
    # a clip of one beat, ED to ED (the study's format), is read as one; a clip in which the
    # motion's extrema find a beat inside the clip keeps that beat
    try:
        res = _cycles_from_signals(v, v_ed, *args, single_beat=False)
    except QualityError as exc:
        one, why = looks_like_one_beat(v)
        if not one:
            raise QualityError(f"{exc} (nor does its motion look like one beat: {why})") from None
    else:
        spans = len(res.beats) == 1 and res.beats[0][0] <= 2 and res.beats[0][2] >= v.size - 2
        if not spans or _periodicity(v, fps, min_bpm, max_bpm, min_confidence)[2]:
            return res
        one, why = looks_like_one_beat(v)
        if not one:
            return res
    res = _cycles_from_signals(v, v_ed, *args, single_beat=True)
    res.warnings.insert(0, warn("one_beat_read", f"read as one beat, end-diastole at the first and last frames ({why}); "
                        "pass single_beat=False if the clip is not one beat"))
    return res


def _periodicity(v: np.ndarray, fps: float | None, min_bpm: float, max_bpm: float,
                 min_confidence: float) -> tuple[float, float, bool, float, float]:
    """Autocorrelation period of the velocity ``v [T-1]`` within the plausible heart rates:
    ``(period_frames, peak, periodic, pmin, pmax)``; ``periodic`` when the peak reaches
    ``min_confidence`` (needs ~1.3 periods in the clip; without fps the period is searched
    between 8 frames and the clip)."""
    if fps is not None:
        pmin, pmax = 60.0 * fps / max_bpm, 60.0 * fps / min_bpm
    else:
        pmin, pmax = 8.0, np.inf
    pmax_ac = min(pmax, (v.size - 1) / 1.3)
    period_ac, conf = (float("nan"), 0.0) if pmax_ac < pmin else _period(v, pmin, pmax_ac)
    return period_ac, conf, bool(np.isfinite(period_ac) and conf >= min_confidence), pmin, pmax


class _BeatReading(NamedTuple):
    """The beats read from the extrema of the motion (:func:`_read_beats`)."""

    beats: list[tuple[int, int, int]]  #: complete beats ``(ed, es, next_ed)``, frames; empty when none passed
    lengths: list[float]  #: sub-frame length of each beat, frames
    times: list[tuple[float, float, float]]  #: sub-frame ``(ed, es, next_ed)`` of each beat, frames
    eds: list[int]  #: every end-diastole found, frames
    ess: list[int]  #: every end-systole found, frames
    p: np.ndarray  #: float ``[T]`` integrated position (px, toward the apex positive), drift removed
    vd: np.ndarray  #: float ``[T-1]`` velocity (px/frame), drift removed
    warnings: list[ReportWarning]  #: ``beat_rejected`` for each candidate beat turned down, in order


def _drift_free(v: np.ndarray, v_ed: np.ndarray, periodic: bool, period_ac: float
                ) -> tuple[np.ndarray, list[int], list[int], np.ndarray, np.ndarray]:
    """Drift removal: zero-mean velocity over whole periods (``periodic``) or between the first and
    last end-diastole, and the extrema of the result.

    Parameters
    ----------
    v, v_ed : np.ndarray
        float ``[T-1]`` mean and trimmed-mean longitudinal velocity, px/frame.
    periodic : bool
        Whether ``period_ac`` (frames) is the confirmed period.

    Returns
    -------
    vd : np.ndarray
        float ``[T-1]`` drift-free velocity, px/frame.
    eds, ess : list of int
        End-diastoles and end-systoles of ``vd`` (:func:`_ed_es`), frames.
    p, p_ed : np.ndarray
        float ``[T]`` integrated positions (px) of ``vd`` and of the drift-free ``v_ed``.
    """
    n_frames = v.size + 1
    if periodic:
        n_whole = int(np.floor(v.size / period_ac))
        span = slice(0, max(int(round(n_whole * period_ac)) if n_whole >= 1 else v.size, 1))
        vd = v - v[span].mean()
    else:
        vd, span = v.copy(), None
    eds, ess = _ed_es(vd, n_frames)
    if not periodic and len(eds) >= 2 and eds[-1] > eds[0]:
        span = slice(eds[0], eds[-1])
        vd = v - v[span].mean()
        eds, ess = _ed_es(vd, n_frames)
    p = np.concatenate([[0.0], np.cumsum(vd)])
    p_ed = np.concatenate([[0.0], np.cumsum(v_ed - (0.0 if span is None else v_ed[span].mean()))])
    return vd, eds, ess, p, p_ed


def _read_beats(v: np.ndarray, v_ed: np.ndarray, periodic: bool, period_ac: float, pmin: float, pmax: float,
                fps: float | None, ivrt_s: float) -> _BeatReading:
    """The complete beats between consecutive end-diastoles of the drift-free motion.

    A beat needs exactly one end-systole between its end-diastoles and a plausible length: within
    0.8-1.25 of the period ``period_ac`` (0.9-1.1 at the clip's ends) when ``periodic``, else
    within ``[pmin, pmax]`` frames, and a beat ending on the last frame must end with the atrial
    motion (:func:`_atrial_descent`; needs ``fps``). End-systole: :func:`_end_of_systole`, else
    the maximum of the position.

    Parameters
    ----------
    v, v_ed, periodic, period_ac :
        As for :func:`_drift_free`.
    pmin, pmax : float
        Plausible beat lengths, frames.
    fps : float or None
        Frame rate (frames/s); needed when not ``periodic``.
    ivrt_s : float
        Isovolumic relaxation time, s.

    Returns
    -------
    _BeatReading
        With its warnings (never appended elsewhere).
    """
    n_frames = v.size + 1
    vd, eds, ess, p, p_ed = _drift_free(v, v_ed, periodic, period_ac)
    beats: list[tuple[int, int, int]] = []
    lengths: list[float] = []
    times: list[tuple[float, float, float]] = []
    warnings: list[ReportWarning] = []
    for a, b in zip(eds[:-1], eds[1:]):
        inner = [e for e in ess if a < e < b]
        if len(inner) != 1:
            warnings.append(warn("beat_rejected", f"beat {a}->{b} rejected: {len(inner)} end-systoles between its "
                                 "end-diastoles"))
            continue
        es_f = _end_of_systole(vd, a, b, ivrt_frames=None if fps is None else ivrt_s * fps,
                               rise_frames=0.0 if fps is None else E_RISE_S * fps)
        if not (np.isfinite(es_f) and a < round(es_f) < b):
            es_f = refine_extremum(-p, inner[0], maximum=False)
        es = int(round(es_f))
        length = b - a
        edge = a == 0 or b == n_frames - 1
        if periodic:
            lo_f, hi_f = (0.9, 1.1) if edge else (0.8, 1.25)
            ok = lo_f * period_ac <= length <= hi_f * period_ac
        elif b == n_frames - 1 and not _atrial_descent(p, b, es, 0.15 * fps):
            # without a period to check it against, a still last frame may as well be
            # diastasis before the atrial kick: the beat's end is not in the clip
            warnings.append(warn("beat_rejected", f"beat {a}->{b} rejected: the clip ends in diastasis before the atrial "
                            "motion, so the next end-diastole is not in it and no period confirms it"))
            continue
        else:
            ok = pmin <= length <= pmax
        if not ok:
            warnings.append(warn("beat_rejected", f"beat {a}->{b} ({length} frames) rejected: outside the "
                                 "plausible period"))
            continue
        beats.append((int(a), int(es), int(b)))
        ed_a, ed_b = _ed_time(p_ed, a), _ed_time(p_ed, b)
        lengths.append(ed_b - ed_a)
        times.append((ed_a, es_f, ed_b))
    return _BeatReading(beats, lengths, times, eds, ess, p, vd, warnings)


def _single_beat_cycle(v: np.ndarray, fps: float | None, min_bpm: float, max_bpm: float) -> CycleResult:
    """:func:`detect_cycles` with ``single_beat=True``: the clip is one beat, end-diastole at its
    first and last frames, end-systole the maximum of the position between them.

    Parameters
    ----------
    v : np.ndarray
        float ``[T-1]`` mean longitudinal velocity, px/frame (toward the apex positive).
    fps : float or None
        Frame rate, frames/s.
    min_bpm, max_bpm : float
        Plausible heart rates; outside them the heart rate is not reported.

    Returns
    -------
    CycleResult
        Confidence: the closure of the beat (1 when the motion returns to its start).

    Raises
    ------
    QualityError
        No end-systole between the first and last frames.
    """
    n_frames = v.size + 1
    warnings: list[ReportWarning] = []
    p = np.concatenate([[0.0], np.cumsum(v)])
    closure = p[-1]
    # the beat must close (not remove_linear_drift: that ramp's arithmetic differs in the last bits)
    p = p - closure * np.arange(n_frames) / (n_frames - 1)
    es = int(np.argmax(p[1:-1]) + 1) if n_frames > 2 else 0
    amp = p.max() - p.min()
    conf = float(np.clip(1.0 - abs(closure) / max(amp, 1e-9), 0.0, 1.0))
    if n_frames < 4 or es <= 0 or es >= n_frames - 1:
        raise QualityError("single_beat: no end-systole found between the first and last frames")
    if conf < 0.5:
        warnings.append(warn("single_beat_not_closed", f"single_beat: the motion does not return to its start (closure {closure:.2f} px, "
                        f"{100 * (1 - conf):.0f} % of the excursion); the clip may not be one full beat"))
    period = float(n_frames - 1)
    hr = None if fps is None else 60.0 * fps / period
    if fps is None:
        warnings.append(warn("fps_unknown", "fps unknown: heart rate not measured"))
    elif not min_bpm <= hr <= max_bpm:
        warnings.append(warn("heart_rate_implausible", f"one beat of {n_frames - 1} frames at {fps:g} frames/s is {hr:.0f} bpm, outside "
                        f"{min_bpm:g}-{max_bpm:g}: the frame rate is probably not the acquisition rate "
                        "(pass fps=); heart rate not reported"))
        hr = None
    return CycleResult([(0, es, n_frames - 1)], hr, period, fps, conf,
                       np.array([0, n_frames - 1]), np.array([es]), p, warnings,
                       [(0.0, refine_extremum(-p, es, maximum=False), float(n_frames - 1))])


def _cycles_from_signals(v: np.ndarray, v_ed: np.ndarray, fps: float | None, min_bpm: float, max_bpm: float,
                         min_confidence: float, ivrt_s: float, *, single_beat: bool) -> CycleResult:
    """:func:`detect_cycles` on its longitudinal signals: ``v [T-1]`` the mean tissue velocity
    (px/frame, toward the apex positive) and ``v_ed`` the trimmed one used for the sub-frame
    end-diastoles; ``single_beat`` True reads the clip as one beat, False searches the beats."""
    if single_beat:
        return _single_beat_cycle(v, fps, min_bpm, max_bpm)
    n_frames = v.size + 1
    warnings: list[ReportWarning] = []
    period_ac, conf, periodic, pmin, pmax = _periodicity(v, fps, min_bpm, max_bpm, min_confidence)
    if fps is None:
        warnings.append(warn("fps_unknown", "fps unknown: period searched in frames only, heart rate not measured"))
    if not periodic:
        if n_frames - 1 < pmin:
            dur = f"{n_frames} frames" + ("" if fps is None else f" ({n_frames / fps:.2f} s at {fps:g} frames/s)")
            raise QualityError(
                f"the clip is too short for a cardiac cycle: {dur}, while even a beat at {max_bpm:g} bpm "
                f"lasts {pmin:.0f} frames; record at least one complete beat "
                "(or pass single_beat=True for a clip that is exactly one beat)"
            )
        if fps is None:
            raise QualityError(
                f"no periodic cardiac motion found (autocorrelation peak {conf:.2f}) and no fps to bound a "
                "single beat: record more than one beat, pass fps=, or single_beat=True for a clip that is one beat"
            )
        warnings.append(warn("periodicity_unconfirmed", "periodicity not confirmed by autocorrelation (less than ~1.3 beats or irregular "
                        "motion): beats read from the extrema of the motion alone"))
    got = _read_beats(v, v_ed, periodic, period_ac, pmin, pmax, fps, ivrt_s)
    warnings += got.warnings
    if not got.beats and periodic and fps is not None:
        # the autocorrelation may have locked on a fraction of the period (clips of 1-2 beats):
        # read the beats from the extrema of the motion, bounded by the plausible heart rates
        warnings.append(warn("period_mismatch", f"no beat matched the autocorrelation period ({period_ac:.1f} frames); "
                        "beats read from the extrema of the motion alone"))
        periodic = False
        got = _read_beats(v, v_ed, False, period_ac, pmin, pmax, fps, ivrt_s)
        warnings += got.warnings
    if not got.beats:
        raise QualityError(
            f"no complete cardiac cycle found ({n_frames} frames in the clip"
            + (f", period {period_ac:.1f} frames" if periodic else "") + "); record at least one full beat"
            + "".join(f"; {w.message}" for w in warnings if w.code == "beat_rejected")
        )
    beats, p = got.beats, got.p
    period = period_ac if periodic else float(np.mean(got.lengths))
    if not periodic:
        closure = [abs(p[b] - p[a]) / max(p[e] - min(p[a], p[b]), 1e-9) for a, e, b in beats]
        conf = float(np.clip(1.0 - np.mean(closure), 0.0, 1.0)) * 0.8
    hr = None if fps is None else 60.0 * fps / period
    if periodic and abs(np.mean(got.lengths) - period) > 0.15 * period:
        warnings.append(warn("beat_lengths_disagree", "beat lengths disagree with the autocorrelation period; "
                             "heart rate is uncertain"))
    return CycleResult(beats, hr, period, fps, conf, np.array(got.eds, dtype=int), np.array(got.ess, dtype=int), p,
                       warnings, got.times)


#: One-beat test (:func:`looks_like_one_beat`), in shares of the motion's range: how far the
#: clip's first and last frames may lie above its lowest (most basal) position. The last frame
#: must be past the atrial kick (diastasis lies 20-40 % of the range above end-diastole).
ONE_BEAT_START_SHARE = 0.25
ONE_BEAT_END_SHARE = 0.15
#: Where the beat's systolic peak may lie, as a share of its length.
ONE_BEAT_ES_RANGE = (0.2, 0.8)


def looks_like_one_beat(v: np.ndarray, min_amp_px: float = 0.5) -> tuple[bool, str]:
    """Whether a clip's longitudinal motion is one beat, end-diastole to end-diastole.

    The integrated motion ``p`` (toward the apex positive) of one beat starts and ends at its
    lowest, end-diastolic level and rises once, in systole, to a peak inside the beat. The test:
    a range of at least ``min_amp_px``; the first and last frames within
    :data:`ONE_BEAT_START_SHARE` and :data:`ONE_BEAT_END_SHARE` of the range above the minimum
    (and within the former of each other); the peak within :data:`ONE_BEAT_ES_RANGE` of the
    length; and no second rise to more than 60 % of the range after a fall below 30 %.

    Parameters
    ----------
    v : np.ndarray
        float ``[T-1]`` mean longitudinal velocity (px/frame) of the tissue, frame t -> t+1.
    min_amp_px : float
        Least range of the motion (px).

    Returns
    -------
    (bool, str)
        The verdict and a short reason (the closure in % of the range, or what failed).
    """
    p = np.concatenate([[0.0], np.cumsum(np.asarray(v, dtype=np.float64))])
    if p.size < 6:
        return False, f"only {p.size} frames"
    lo, hi = float(p.min()), float(p.max())
    amp = hi - lo
    if not np.isfinite(amp) or amp < min_amp_px:
        return False, f"motion range {amp:.2f} px"
    ends = (p[0] - lo) / amp, (p[-1] - lo) / amp
    closure = abs(p[-1] - p[0]) / amp
    if ends[0] > ONE_BEAT_START_SHARE or ends[1] > ONE_BEAT_END_SHARE or closure > ONE_BEAT_START_SHARE:
        return False, (f"the motion does not start and end at end-diastole (ends {100 * ends[0]:.0f} % and "
                       f"{100 * ends[1]:.0f} % of its range above its lowest point)")
    k = int(np.argmax(p))
    if not ONE_BEAT_ES_RANGE[0] <= k / (p.size - 1) <= ONE_BEAT_ES_RANGE[1]:
        return False, f"the systolic peak is at {100 * k / (p.size - 1):.0f} % of the clip"
    q = (p - lo) / amp
    after = q[k:]
    dip = np.flatnonzero(after < 0.3)
    before = q[:k + 1]
    dip_b = np.flatnonzero(before < 0.3)
    if (dip.size and after[dip[0]:].max() > 0.6) or (dip_b.size and before[:dip_b[-1] + 1].max() > 0.6):
        return False, "the motion rises twice (more than one systole)"
    return True, f"closes to {100 * closure:.0f} % of its range"


def _end_of_systole(vd: np.ndarray, ed: int, next_ed: int, frac: float = 0.05,
                    ivrt_frames: float | None = None, rise_frames: float = 0.0,
                    e_level: float = 0.15) -> float:
    """End-systole (sub-frame frame time) from the longitudinal velocity of one beat.

    After the systolic peak the motion toward the apex fades out, then the tissue stays still
    through isovolumic relaxation until the early-diastolic (E') motion away from the apex. The
    velocity fades so slowly that the end of ejection is not sharp in motion; ES is taken as the
    middle of that still phase: between where the velocity falls below ``frac`` of its systolic
    peak and where it first goes below ``-frac`` of it (E' onset); with ``ivrt_frames`` (the
    isovolumic relaxation time, known when fps is) it is E' onset minus IVRT, not earlier than
    the end of shortening. There the E' onset is read where the velocity crosses ``-e_level``
    of the systolic peak, ``rise_frames`` after the onset: a level well above the noise, whose
    crossing time does not depend on the sampling (walking the slope back to zero from the
    ``-frac`` crossing put E' onset ~7 ms early at 30 fps and ~7 ms late at 50 fps).
    Returns NaN when either edge is missing."""
    seg = vd[ed:next_ed]
    if seg.size < 4:
        return float("nan")
    k_pk = ed + int(np.argmax(seg))
    thr = frac * vd[k_pk]
    if thr <= 0:
        return float("nan")

    def crossing(k: int, level: float) -> float:
        # velocities sit at step midpoints (vd[k] at frame time k + 0.5); linear interpolation of
        # the crossing, returned as a frame time
        v0, v1 = vd[k - 1], vd[k]
        return (k - 0.5) + (v0 - level) / (v0 - v1) if v0 != v1 else k - 0.5

    start = end = None
    for k in range(k_pk + 1, next_ed):
        if start is None and vd[k] < thr:
            start = crossing(k, thr)
        if start is not None and vd[k] < -4 * thr:
            # the E' wave is under way: walk back to where it left the still phase (a noise
            # blip below -thr inside the still phase is not its onset)
            j = k
            while j - 1 > k_pk and vd[j - 1] < -thr:
                j -= 1
            end = crossing(j, -thr)
            # the threshold is crossed after the onset: follow the E' slope back to zero velocity
            jj = min(j + 1, vd.size - 1)
            slope = (vd[j - 1] - vd[jj]) / max(jj - (j - 1), 1)
            if slope > 0:
                end -= thr / slope
            break
    if start is None or end is None:
        return float("nan")
    if ivrt_frames is not None:
        # physiological prior: aortic closure precedes mitral opening (E' onset) by the
        # isovolumic relaxation time; never before the end of shortening
        level = -e_level * vd[k_pk]
        j = int(np.ceil(end + 0.5))
        while j < next_ed and vd[j] >= level:
            j += 1
        if j >= next_ed:
            return float("nan")
        while j - 1 > k_pk and vd[j - 1] < level:
            j -= 1
        return max(start, crossing(j, level) - rise_frames - ivrt_frames)
    return 0.5 * (start + end)


def _atrial_descent(p: np.ndarray, end: int, es: int, a_frames: float, rel: float = 0.1) -> bool:
    """Whether the integrated position ``p`` falls over the ``a_frames`` before frame ``end``
    by at least ``rel`` of the beat's swing (``p[es] - p[end]``): the atrial (A') motion away
    from the apex that ends diastole. Without it a still last frame may be mid-diastole."""
    k = max(2, int(round(a_frames)))
    lo = max(es, end - k)
    swing = p[es] - p[end]
    return bool(swing > 0 and p[lo:end].max() - p[end] >= rel * swing)


def _ed_time(p_ed: np.ndarray, i: int) -> float:
    """Sub-frame end-diastole near the integer end-diastole ``i``: the minimum of the trimmed-mean
    position ``p_ed`` among frames ``i-1 .. i+1``, refined by a parabola, within one frame of ``i``."""
    lo, hi = max(i - 1, 0), min(i + 2, p_ed.size)
    j = lo + int(np.argmin(p_ed[lo:hi]))
    return float(np.clip(refine_extremum(p_ed, j, maximum=False), i - 1.0, i + 1.0))


def _ed_es(vd: np.ndarray, n_frames: int, rel: float = 0.4) -> tuple[list[int], list[int]]:
    """End-diastoles (big minima) and end-systoles (big maxima) of the integrated longitudinal
    position, alternating, each swing at least ``rel`` of the total range (hysteresis)."""
    p = np.concatenate([[0.0], np.cumsum(vd)])
    delta = rel * (p.max() - p.min())
    mins: list[int] = []
    maxs: list[int] = []
    if delta <= 0:
        return mins, maxs
    # classic peak detection with hysteresis
    mn_i, mx_i = 0, 0
    looking_max = None  # undecided until the first swing
    for i in range(1, p.size):
        if p[i] > p[mx_i]:
            mx_i = i
        if p[i] < p[mn_i]:
            mn_i = i
        if looking_max is None:
            if p[i] - p[mn_i] > delta:
                mins.append(mn_i)
                looking_max, mx_i = True, i
            elif p[mx_i] - p[i] > delta:
                maxs.append(mx_i)
                looking_max, mn_i = False, i
        elif looking_max:
            if p[mx_i] - p[i] > delta:
                maxs.append(mx_i)
                looking_max, mn_i = False, i
        else:
            if p[i] - p[mn_i] > delta:
                mins.append(mn_i)
                looking_max, mx_i = True, i
    # the last, unconfirmed extremum
    if looking_max is True and mx_i > (mins[-1] if mins else -1):
        maxs.append(mx_i)
    elif looking_max is False and mn_i > (maxs[-1] if maxs else -1):
        mins.append(mn_i)
    # an extremum on the first/last frame is an ED only if the motion is at rest there (the clip
    # may start mid-systole or end mid-diastole, where the position is extreme only by truncation)
    vmax = np.abs(vd).max()
    if mins and mins[0] == 0 and abs(vd[0]) > 0.2 * vmax:
        mins = mins[1:]
    if mins and mins[-1] == n_frames - 1 and abs(vd[-1]) > 0.2 * vmax:
        mins = mins[:-1]
    return sorted(mins), sorted(maxs)


def beat_times(ed: int, next_ed: int, n: int = FRAMES_PER_BEAT) -> np.ndarray:
    """Fractional frame times of ``n`` samples spanning a beat, ed .. next_ed inclusive.

    Returns
    -------
    np.ndarray
        float64 ``[n]``.
    """
    if n < 2:
        raise InputError(f"n must be >= 2, got {n}")
    if not (0 <= ed < next_ed):
        raise InputError(f"need 0 <= ed < next_ed, got {ed}, {next_ed}")
    return np.linspace(float(ed), float(next_ed), int(n))


def resample_beat(
    array: np.ndarray, ed: int, next_ed: int, n: int = FRAMES_PER_BEAT, *, kind: str = "frames"
) -> np.ndarray:
    """Resample one beat of frames or of flow to ``n`` samples by linear interpolation in time.

    Parameters
    ----------
    array : np.ndarray
        ``kind='frames'``: ``[T, ...]`` (e.g. uint8 ``[T,H,W]``), sample t is frame t; the beat
        spans frames ed..next_ed inclusive and the output keeps the input dtype (rounded).
        ``kind='flow'``: float ``[T-1, H, W, 2]`` px/frame; the output is ``[n-1, H, W, 2]``,
        the flow between consecutive resampled frames, i.e. the input flow integrated over each
        new interval (so its unit is px per new frame; a uniform motion of v px/frame becomes
        v * (next_ed-ed)/(n-1)). This is the Eulerian approximation (no warping).
    ed, next_ed : int
        First and last frame of the beat.
    n : int
        Number of output frames (default 32, the model's input).

    Returns
    -------
    np.ndarray
    """
    t = beat_times(ed, next_ed, n)
    if kind == "frames":
        if next_ed > array.shape[0] - 1:
            raise InputError(f"beat {ed}->{next_ed} is beyond the {array.shape[0]} frames")
        if next_ed - ed == n - 1:  # already n frames: nothing to interpolate
            return array[ed:next_ed + 1].copy()
        i0 = np.clip(np.floor(t).astype(int), 0, array.shape[0] - 1)
        i1 = np.minimum(i0 + 1, array.shape[0] - 1)
        a = (t - i0).reshape((-1,) + (1,) * (array.ndim - 1)).astype(np.float32)
        out = array[i0].astype(np.float32) * (1 - a) + array[i1].astype(np.float32) * a
        if np.issubdtype(array.dtype, np.integer):
            info = np.iinfo(array.dtype)
            return np.clip(np.rint(out), info.min, info.max).astype(array.dtype)
        return out.astype(array.dtype)
    if kind == "flow":
        if next_ed > array.shape[0]:
            raise InputError(f"beat {ed}->{next_ed} needs flow up to {next_ed - 1}; it has {array.shape[0]} pairs")
        if next_ed - ed == n - 1:  # already n frames: the flow is unchanged
            return np.ascontiguousarray(array[ed:next_ed], dtype=np.float32)
        # The displacement over each new interval [t_k, t_k+1] is the integral of the
        # piecewise-constant input flow (pair j acts on [j, j+1]): a weighted sum of the 1-3
        # pairs it overlaps, i.e. the difference of the linearly interpolated cumulative flow.
        src = np.ascontiguousarray(array[ed:next_ed], dtype=np.float32)
        return _integrate_intervals(src.reshape(src.shape[0], -1), t - ed).reshape((n - 1,) + array.shape[1:])
    raise InputError(f"kind must be 'frames' or 'flow', got {kind!r}")


@njit(cache=True, nogil=True)
def _integrate_intervals(flow: np.ndarray, tt: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    """Integral of piecewise-constant rows ``flow[j]`` (acting on [j, j+1]) over each
    interval [tt[k], tt[k+1]]: float32 [J, P] -> [len(tt)-1, P]."""
    nj, npx = flow.shape
    out = np.zeros((tt.size - 1, npx), dtype=np.float32)
    for k in range(tt.size - 1):
        a, b = tt[k], tt[k + 1]
        j = max(0, int(np.floor(a)))
        while j < nj and j < b:
            w = np.float32(min(b, j + 1.0) - max(a, float(j)))
            if w > 0:
                for p in range(npx):
                    out[k, p] += w * flow[j, p]
            j += 1
    return out
