"""Live scoring: a result for every heartbeat while the frames arrive.

:class:`LiveAnalyzer` takes frames one at a time (``push``) and returns a :class:`BeatResult`
for each beat completed so far. Nothing heavy runs on the caller's thread: a *frame worker*
puts each frame on the analysis grid, computes the flow of the new frame pairs (in small
chunks, so that each frame's pyramid is built about once; a chunk is cut short at the frame
likely to confirm the next beat), extends the longitudinal signal and reads the beats from a
sliding window of it, while a *DIS worker* searches the same chunk's tracking flow beside it
(once the landmarks are known); a *beat worker* measures, scores and explains each completed
beat. The stages are the ones :func:`ttsfast.analyze` runs
(:func:`~ttsfast.preprocess.preprocess` and its :class:`~ttsfast.preprocess.GridMapping`,
:func:`~ttsfast.dense_flow`, :func:`~ttsfast.cycle.cycles_from_signals`, and the stage
functions of :mod:`ttsfast.stages`); the report of a beat is assembled by the same code as
``analyze()``'s.

Faults (a gap in the frame times, frozen frames, the probe lifted, a cut to another view or
patient) end the beat in progress with a ``not_measured`` result saying why, and the stream
settles again on the frames that follow.
"""
from __future__ import annotations

import queue
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

import numpy as np
from numba import njit

from .clip import Clip
from .errors import InputError, QualityError, TTSFastError
from .warning_codes import ReportWarning, warn

#: A frame whose mean absolute difference to the previous one (grey levels, in the sector) is
#: below this is a repeat of it (a frozen or duplicated frame).
FROZEN_DIFF = 0.5
#: Below this Pearson correlation with the previous frame, in the settled sector, the view was
#: cut (another view or patient) or the image is noise: consecutive frames of the real test
#: clips read 0.86-0.98 there, other patients' clips of the same sector 0.08-0.53.
CUT_CORRELATION = 0.7
#: The same before a sector is settled, over the whole frame (its black background included).
CUT_CORRELATION_FRAME = 0.5
#: Below this mean grey level in the sector (before settling: below 3x this at the frame's 99th
#: percentile) the image is dark: the probe is off the chest.
DARK_LEVEL = 8.0
#: A beat holding more repeated frames than this share is not measured.
MAX_FROZEN_SHARE = 0.1
#: This many repeated frames in a row end the beat in progress (a frozen image).
FROZEN_RUN = 4
#: The tracking flow is computed ahead for at most this many seconds of pairs before the newest
#: frame: the longest beat the cycle stage reads (30 bpm: 2 s), its confirmation and margin.
AHEAD_S = 2.5
#: The frame worker keeps its flow in blocks of this many seconds of pairs (90 MB at 50 frames/s
#: on the 256 x 352 grid); a beat whose pairs lie in one block is handed as a view of it. Two or
#: three blocks are in use at a time (the window's flow before: 6 s, 216 MB).
FLOW_BLOCK_S = 2.5


@dataclass
class BeatResult:
    """The answer for one beat of a stream.

    Attributes
    ----------
    beat_index : int
        0, 1, ... in the order the beats completed.
    frames : (int, int)
        First and last frame numbers of the beat in the stream (end-diastole to end-diastole),
        counted from 0 at the first ``push``.
    status : str
        ``"complete"``, ``"partial"`` (landmark-dependent values withheld, as ``analyze()``) or
        ``"not_measured"`` (a fault; ``warnings`` says which).
    p_tts : float or None
        p(TTS) of the beat (None when not measured).
    latency_ms : float
        From the ``push()`` that completed the beat (its end-diastole confirmed) to its result.
    report : dict
        The keys of ``analyze()``'s report that apply to one beat, frame numbers in the stream.
    warnings : list of ReportWarning
    """

    beat_index: int
    frames: tuple[int, int]
    status: str
    p_tts: float | None
    latency_ms: float
    report: dict[str, Any] = field(default_factory=dict)
    warnings: list[ReportWarning] = field(default_factory=list)

    @property
    def label(self) -> str | None:
        return None if self.p_tts is None else ("TTS" if self.p_tts >= 0.5 else "STEMI")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: ``beat_index``, ``frames``, ``latency_ms``, ``status`` and the keys of
        ``analyze()``'s report that apply to one beat (``p_tts``, ``label``, ``model``,
        ``cycle``, ``landmarks``, ``mechanics``, ``saliency``, ``quality``, ``timings_ms``)."""
        from .result import to_jsonable
        from .warning_codes import SCHEMA_VERSION, warning_dicts

        d = {"schema_version": SCHEMA_VERSION, "beat_index": self.beat_index, "frames": list(self.frames),
             "latency_ms": round(self.latency_ms, 2), "status": self.status, "p_tts": self.p_tts,
             "label": self.label}
        d.update({k: v for k, v in self.report.items() if k not in d})
        d.setdefault("quality", {})["warnings"] = warning_dicts(self.warnings)
        return to_jsonable(d)


@dataclass
class _BeatJob:
    """What the beat worker needs for one beat: the window's grid frames and flow around it."""

    index: int
    first: int  # stream frame number of frames[0]
    frames: np.ndarray  # uint8 [n, h, w]
    flow: np.ndarray  # float32 [n-1, h, w, 2]
    cycle: Any  # CycleResult of the beat, window-relative
    t_push: float  # perf_counter of the push that completed the beat
    setting: "_Setting"
    fault: ReportWarning | None = None
    span: tuple[int, int] = (0, 0)
    dis_pairs: Any = None  # TrackingPairs of the beat computed ahead, keyed by pair index in frames


@dataclass
class _Setting:
    """What a stream settled on: the Prepared of the settling frames (its grid mapping, mask,
    scale, offset, fps, mm_per_px), the signal's pixel weights and the view's landmarks once found."""

    prep: Any
    weights: np.ndarray
    landmarks: Any = None  # LandmarkStage carried from beat to beat


class LiveAnalyzer:
    """Score a stream beat by beat as its frames arrive.

    Parameters
    ----------
    fps : float
        The acquisition frame rate (frames/s).
    mm_per_px : float, optional
        Pixel size of the frames in mm (for displacement in mm and the velocities).
    landmarks : mapping, optional
        ``{"septal_annulus": (x, y), "lateral_annulus": (x, y), "apex": (x, y)}`` in frame
        pixels; found automatically on the first beat of each view when None.
    model, device, tracker, saliency, landmark_detector, grid, threads :
        As for :func:`ttsfast.analyze`.
    channels : str
        Order of a colour frame's channels: ``"bgr"`` (OpenCV) or ``"rgb"``.
    settle_s : float
        Seconds of frames the sector, the overlays, the crop and the signal's weights are settled
        on (default 2 s: at least one whole cycle of motion at 30 bpm and above, which the
        sector's outline is found from).
    window_s : float
        Seconds of grid frames, flow and signal kept (beats are read from this window).
    """

    def __init__(self, fps: float, *, mm_per_px: float | None = None, landmarks: Mapping[str, Any] | None = None,
                 model: Any = None, device: str = "auto", tracker: str = "dis", saliency: bool | str = True,
                 landmark_detector: str = "classic", grid: tuple[int, int] = (256, 352), threads: int | None = None,
                 channels: str = "bgr", settle_s: float = 2.0, window_s: float = 6.0):
        from .analyze import _check_options
        from .flow import _check_float, _resolve_threads
        from .preprocess import check_grid

        _check_options(device, landmark_detector, tracker, saliency)
        grid = check_grid(grid)
        if threads is not None:
            _resolve_threads(threads)
        settle_s, window_s = _check_float("settle_s", settle_s), _check_float("window_s", window_s)
        if not (0.2 <= settle_s <= 60.0 and 0.0 < window_s <= 600.0):
            raise InputError(f"settle_s must be within 0.2..60 s and window_s within 0..600 s, got {settle_s:g} and "
                             f"{window_s:g}")
        try:
            fps = float(fps)
        except (TypeError, ValueError) as exc:
            raise InputError(f"fps must be a number of frames/s, got {fps!r}") from exc
        if not np.isfinite(fps) or not 5.0 <= fps <= 1000.0:
            raise InputError(f"fps must be within 5..1000 frames/s, got {fps!r}")
        if channels not in ("bgr", "rgb"):
            raise InputError(f"channels must be 'bgr' or 'rgb', got {channels!r}")
        if mm_per_px is not None and not (np.isfinite(mm_per_px) and mm_per_px > 0):
            raise InputError(f"mm_per_px must be a positive number, got {mm_per_px!r}")
        self.fps = fps
        self.options = dict(mm_per_px=mm_per_px, landmarks=landmarks, model=model, device=device, tracker=tracker,
                            saliency=saliency, landmark_detector=landmark_detector, grid=grid,
                            threads=threads, bgr=channels == "bgr")
        self.settle_n = max(10, int(round(settle_s * fps)))
        self.window_n = max(3 * self.settle_n, int(round(window_s * fps)))
        self._frames_in: queue.Queue = queue.Queue()
        self._jobs: queue.Queue = queue.Queue()
        self._results: queue.Queue = queue.Queue()
        self._n_pushed = 0
        self._closed = False
        self._error: BaseException | None = None
        self.stats: dict[str, Any] = {"frames": 0, "beats": 0, "busy_s": 0.0, "push_ms": deque(maxlen=5000),
                                      "parts_s": {}, "ahead_pairs": 0, "ahead_handed": 0, "ahead_max": 0,
                                      "flow_pairs_beside": 0}
        self._dis_ahead = True  # compute the tracking flow as the frames arrive (False: at beat time)
        self._model_pool = ThreadPoolExecutor(1, thread_name_prefix="ttsfast-live-model")
        self._dis_pool = ThreadPoolExecutor(1, thread_name_prefix="ttsfast-live-dis")  # the search beside the flow
        self._frame_worker = threading.Thread(target=self._run_frames, name="ttsfast-live-frames", daemon=True)
        self._beat_worker = threading.Thread(target=self._run_beats, name="ttsfast-live-beats", daemon=True)
        self._frame_worker.start()
        self._beat_worker.start()

    # ------------------------------------------------------------------ caller's thread
    def push(self, frame: np.ndarray, t: float | None = None) -> list[BeatResult]:
        """Queue one frame (uint8 ``[H, W]`` or ``[H, W, 3]``, screen pixels, in order; ``t``
        its capture time in s, which lets a gap be seen) and return the beats finished since
        the last call. Never waits for the analysis."""
        t0 = time.perf_counter()
        if self._closed:
            raise InputError("push() after close()")
        if self._error is not None:
            raise self._error
        a = np.asarray(frame)
        if a.dtype != np.uint8 or a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)) \
                or min(a.shape[:2]) < 16:
            raise InputError(f"a frame must be uint8 [H, W] or [H, W, 3] of at least 16x16 px, got "
                             f"{a.dtype} {list(a.shape)}")
        self._frames_in.put((self._n_pushed, np.array(a, copy=True), t, t0))
        self._n_pushed += 1
        out = self._drain()
        self.stats["push_ms"].append((time.perf_counter() - t0) * 1e3)
        return out

    def close(self, timeout: float | None = None) -> list[BeatResult]:
        """No more frames: finish the beats still pending and return their results."""
        if not self._closed:
            self._closed = True
            self._frames_in.put(None)
        self._frame_worker.join(timeout)
        self._beat_worker.join(timeout)
        self._model_pool.shutdown(wait=False)
        self._dis_pool.shutdown(wait=False)
        if self._error is not None:
            raise self._error
        return self._drain()

    def __enter__(self) -> "LiveAnalyzer":
        return self

    def __exit__(self, *exc: Any) -> None:
        if not self._closed:
            try:
                self.close()
            except TTSFastError:
                pass

    def _drain(self) -> list[BeatResult]:
        out = []
        while True:
            try:
                out.append(self._results.get_nowait())
            except queue.Empty:
                return out

    # ------------------------------------------------------------------ frame worker
    def _run_frames(self) -> None:
        stream = _Stream(self)
        try:
            while True:
                item = self._frames_in.get()
                if item is None:
                    break
                t0 = time.perf_counter()
                stream.add(*item)
                self.stats["busy_s"] += time.perf_counter() - t0
                self.stats["frames"] += 1
            stream.finish()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            self._error = exc if isinstance(exc, TTSFastError) else QualityError(f"live frame worker failed: {exc!r}")
        finally:
            self._jobs.put(None)

    # ------------------------------------------------------------------ beat worker
    def _run_beats(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            t0 = time.perf_counter()
            try:
                res = _analyze_beat(job, self)
            except TTSFastError as exc:
                res = _not_measured(job, warn("beat_not_measured", f"the beat could not be analysed: {exc}"))
            except Exception as exc:  # noqa: BLE001 - one beat must not end the stream
                res = _not_measured(job, warn("beat_not_measured", f"the beat could not be analysed: {exc!r}"))
            self.stats["busy_s"] += time.perf_counter() - t0
            self.stats["beats"] += 1
            parts = self.stats["parts_s"]
            for k, v in (res.report.get("timings_ms") or {}).items():
                if k != "total":
                    parts["beat_" + k] = parts.get("beat_" + k, 0.0) + v / 1e3
            self._results.put(res)


class _Stream:
    """The frame worker's state: the settled view, the window of grid frames, flow and signal."""

    def __init__(self, owner: LiveAnalyzer):
        self.o = owner
        self.fps = owner.fps
        from .flow import FlowBuffers

        self.chunk = 8
        self.flow_buffers = FlowBuffers()  # the chunks' flow memory (laid out again for another view)
        self.late_buffers = FlowBuffers()  # the DIS worker's, for the pairs it takes after its search
        self.pace = _Pace()
        self.flow = _FlowWindow(max(2 * self.chunk, int(round(FLOW_BLOCK_S * self.fps))))
        self.reset()
        self.beat_index = 0

    def reset(self) -> None:
        """Forget the view (after a fault): settle again on the frames that follow."""
        self.pending: list[tuple[int, np.ndarray, float]] = []  # frames waiting to settle
        self.chroma: np.ndarray | None = None
        self.setting: _Setting | None = None
        self.grid_frames: deque = deque()
        self.first = 0  # stream number of grid_frames[0]
        self.flow.clear()
        self.v: deque = deque()
        self.v_ed: deque = deque()
        self.todo: list[tuple[int, np.ndarray, float]] = []  # grey frames whose grid and flow are pending
        self.push_t: dict[int, float] = {}
        self.frozen: set[int] = set()
        self.last_end = -1  # stream number of the last beat's end (next ED) sent
        self.last_t: float | None = None
        self.prev_grey: np.ndarray | None = None
        self.frozen_run = 0
        self.ahead = _TrackingAhead()
        self.flush_at: int | None = None  # frame that likely confirms the next beat's end

    # -- per frame
    def _tick(self, part: str, t0: float) -> float:
        """Add the time since ``t0`` to ``part`` of the frame worker's time (stats)."""
        t = time.perf_counter()
        parts = self.o.stats["parts_s"]
        parts[part] = parts.get(part, 0.0) + t - t0
        return t

    def add(self, n: int, frame: np.ndarray, t: float | None, t_push: float) -> None:
        t0 = time.perf_counter()
        grey = self._grey(frame)
        fault = self._fault(n, grey, t)
        t0 = self._tick("check", t0)
        self.last_t = t
        if fault is not None:
            self._interrupt(n, fault)
        self.prev_grey = grey
        self.push_t[n] = t_push
        if self.setting is None:
            self.pending.append((n, grey, t_push))
            if len(self.pending) >= self.o.settle_n:
                self._settle()
            return
        self.todo.append((n, grey, t_push))
        if len(self.todo) >= self.chunk or (self.flush_at is not None and n >= self.flush_at):
            self._advance()

    def _grey(self, frame: np.ndarray) -> np.ndarray:
        from ._nativelib import native
        from .io import CHROMA_THRESHOLD

        if frame.ndim == 2:
            return frame
        rgb = np.ascontiguousarray(frame[..., :3])
        grey = np.empty(rgb.shape[:2], np.uint8)
        chroma = np.zeros(rgb.shape[:2], np.uint8)
        native.colour_to_grey(rgb, grey, chroma, self.o.options["bgr"])
        if self.setting is None:
            c = chroma > CHROMA_THRESHOLD
            self.chroma = c if self.chroma is None or self.chroma.shape != c.shape else (self.chroma | c)
        return grey

    def _fault(self, n: int, grey: np.ndarray, t: float | None) -> ReportWarning | None:
        """A fault between the previous frame and this one, if any; repeated frames are noted."""
        prev = self.prev_grey
        if t is not None and self.last_t is not None and t - self.last_t > 1.5 / self.fps:
            return warn("stream_gap", f"{(t - self.last_t) * 1e3:.0f} ms between two frames at {self.fps:g} "
                        "frames/s: frames were dropped")
        if prev is None or prev.shape != grey.shape:
            return None if prev is None else warn("view_change", "the frame size changed")
        sector = None if self.setting is None else self.setting.prep.mask_original
        if sector is not None and sector.shape == grey.shape and sector[::4, ::4].any():
            # the settled sector, every 4th pixel each way: sums in one pass (exact integers)
            m, sa, sb, saa, sbb, sab, sad = (int(v) for v in _change_sums(prev, grey, sector, 4))
            cut, dark, diff = CUT_CORRELATION, sb < DARK_LEVEL * m, sad / m
            with np.errstate(invalid="ignore", divide="ignore"):  # Pearson's r of the exact sums
                r = np.float64(m * sab - sa * sb) / np.sqrt(np.float64(m * saa - sa * sa)
                                                            * np.float64(m * sbb - sb * sb))
        else:  # no sector yet: the lit pixels of either frame (not the black background)
            a, b = prev[::4, ::4].astype(np.float32), grey[::4, ::4].astype(np.float32)
            cut = CUT_CORRELATION_FRAME
            dark = float(np.percentile(b, 99)) < 3 * DARK_LEVEL
            lit = (a > DARK_LEVEL) | (b > DARK_LEVEL)
            if not dark and lit.sum() >= 16:
                a, b = a[lit], b[lit]
            diff = float(np.abs(a - b).mean())
            with np.errstate(invalid="ignore", divide="ignore"):
                r = np.corrcoef(a.ravel(), b.ravel())[0, 1]
        if dark:
            return warn("no_signal", "the image went dark (probe lifted?)")
        if diff < FROZEN_DIFF:
            self.frozen.add(n)
            self.frozen_run += 1
            if self.frozen_run == FROZEN_RUN:
                return warn("frozen_frames", f"{FROZEN_RUN} frames in a row repeat the one before: the image froze")
            return None
        self.frozen_run = 0
        if not np.isfinite(r) or r < cut:
            return warn("view_change", f"consecutive frames correlate at r = {r:.2f}: another view or clip, or "
                        "noise")
        return None

    def _interrupt(self, n: int, fault: ReportWarning) -> None:
        """End the beat in progress with a not-measured result and settle again."""
        start = max(self.last_end, self.first)
        if self.setting is not None and n - start >= 2:
            job = _BeatJob(self.beat_index, start, np.empty((0, 1, 1), np.uint8), np.empty((0, 1, 1, 2), np.float32),
                           None, time.perf_counter(), self.setting, fault, (start, n - 1))
            self.beat_index += 1
            self.o._jobs.put(job)
        self.reset()

    def _settle(self) -> None:
        from .cycle import signal_weights
        from .preprocess import check_continuity, preprocess

        ns = [p[0] for p in self.pending]
        frames = np.stack([p[1] for p in self.pending])
        clip = Clip(frames, fps=self.fps, fps_source="caller", mm_per_px=self.o.options["mm_per_px"],
                    overlay_mask=self.chroma)
        try:
            prep = preprocess(clip, grid=self.o.options["grid"])
            check_continuity(prep.frames, prep.mask)
        except TTSFastError:
            drop = len(self.pending) // 2  # not an echo yet: wait for more
            for k, _, _ in self.pending[:drop]:
                self.push_t.pop(k, None)
                self.frozen.discard(k)
            self.pending = self.pending[drop:]
            return
        self.first = ns[0]
        self.last_end = max(self.last_end, ns[0])
        search = self._search_ahead(prep, None, prep.frames)
        flow = self._flow(ns[0], prep.frames, prep.mask, search)
        self.setting = _Setting(prep, signal_weights(flow, prep.mask))
        self.grid_frames.extend(prep.frames)
        self._append_flow(flow)
        self._hold_ahead(search)
        self.pending = []

    def _advance(self) -> None:
        """Flow of the pending grid frames (with the last frame already in the window) and,
        beside it, their tracking flow; the signal, and the beats it completes."""
        if not self.todo:
            return
        t0 = time.perf_counter()
        setting = self.setting
        grid = setting.prep.mapping.apply(np.stack([g for _, g, _ in self.todo]))
        t0 = self._tick("grid", t0)
        search = self._search_ahead(setting.prep, setting.landmarks, grid)
        stack = np.concatenate([self.grid_frames[-1][None], grid])
        flow = self._flow(self.first + len(self.grid_frames) - 1, stack, setting.prep.mask, search)
        self.grid_frames.extend(grid)
        self.todo = []
        t0 = self._tick("flow", t0)
        self._append_flow(flow)
        t0 = self._tick("signal", t0)
        self._hold_ahead(search)  # before the beats are sent: each takes all its pairs
        t0 = self._tick("track_ahead", t0)
        self._trim()
        if self.flush_at is not None and self.first + len(self.grid_frames) > self.flush_at:
            self.flush_at = None  # reached: later chunks find the beat if this one does not
        self._detect(final=False)
        self._tick("beats", t0)

    def _flow(self, s: int, frames: np.ndarray, mask: np.ndarray, search: Any) -> np.ndarray:
        """:func:`~ttsfast.dense_flow` of ``frames`` (stream pairs ``s ..``) in the stream's kept
        working memory, written into the flow window (counted by :meth:`_append_flow`), with
        :meth:`_threads_beside` its pairs while a DIS ``search`` runs beside it, else on the
        ``threads`` asked."""
        from .flow import dense_flow

        n = len(frames) - 1
        out = self.flow.space(s, n, *frames.shape[1:])
        if search is None:
            return dense_flow(frames, mask=mask, threads=self.o.options["threads"], buffers=self.flow_buffers, out=out)
        chunk = self._is_chunk(n)
        m = self.pace.pairs_beside(n) if chunk else 0
        late = None if not m else self.o._dis_pool.submit(
            dense_flow, frames[n - m:], mask=mask, threads=1, buffers=self.late_buffers, out=out[n - m:])
        t0 = time.perf_counter()
        dense_flow(frames[:n - m + 1], mask=mask, threads=self._threads_beside(n), buffers=self.flow_buffers,
                   out=out[:n - m])
        if chunk:
            self.pace.note("flow", n - m, time.perf_counter() - t0)
        if late is not None:
            late.result()
            self.o.stats["flow_pairs_beside"] += m
        return out

    def _is_chunk(self, pairs: int) -> bool:
        """Whether ``pairs`` pairs are a chunk of the stream (the flow and the search run on a core
        each, and their pace is noted) rather than a settling window."""
        return pairs <= 2 * self.chunk

    def _threads_beside(self, pairs: int) -> int | None:
        """Threads for the Farneback flow and the DIS search of ``pairs`` pairs run side by side:
        a chunk's on one each (each on a core; two flow threads sharing them with the search took
        longer), a settling window's on the ``threads`` asked."""
        return 1 if self._is_chunk(pairs) else self.o.options["threads"]

    def _search_ahead(self, prep: Any, carried: Any, new: np.ndarray) -> Any:
        """Start the DIS search of the tracking flow (method "dis") of the pairs that the next
        beats will track on, up to the newest of the ``new`` grid frames (not in the window
        yet), on the DIS worker: from the frame before the last beat's end, in the box of the
        landmarks the beat worker will use (the caller's, or ``carried`` from the last beat)
        when those are known. The search needs only the frames, so it runs beside their
        Farneback flow; :meth:`_hold_ahead` holds it to that flow. A Future of the unheld
        :class:`~ttsfast.flow.TrackingPairs`, or None when there is nothing to search."""
        roi = self._upcoming_roi(prep, carried)
        self.ahead.set_roi(roi)
        n_old = len(self.grid_frames)
        last = self.first + n_old + len(new) - 1  # stream number of the newest frame
        lo = max(self.first, self.last_end - 2, last - int(AHEAD_S * self.fps))
        self.ahead.keep(lo)
        s = self.ahead.first_missing(lo, last)
        if roi is None or s is None:
            return None
        frames = [self.grid_frames[k] if k < n_old else new[k - n_old]
                  for k in range(s - self.first, last - self.first + 1)]
        return self.o._dis_pool.submit(_search_pairs, frames, roi, s, self.chunk, self._threads_beside(last - s),
                                       self.pace if self._is_chunk(last - s) else None)

    def _hold_ahead(self, search: Any) -> None:
        """Wait for the search started by :meth:`_search_ahead`, hold its pairs to the window's
        Farneback flow (:func:`~ttsfast.flow.hold_pairs`) and keep them. Whatever is not
        computed here (a failure included) the beat worker computes."""
        from .flow import hold_pairs

        if search is None:
            return
        try:
            raw = search.result()
            self.ahead.add(hold_pairs(raw, {s: self.flow.at(s) for s in raw.pairs}))
        except Exception:  # noqa: BLE001 - never ends the stream: the beat worker computes them
            self.ahead.set_roi(None)
            return
        stats = self.o.stats
        stats["ahead_pairs"] += len(raw.pairs)
        stats["ahead_max"] = max(stats["ahead_max"], len(self.ahead.pairs))

    def _upcoming_roi(self, prep: Any, carried: Any) -> tuple[int, int, int, int] | None:
        """The box the next beat's DIS tracking flow will be computed in (grid px) on the view
        of ``prep``, when its landmarks are known now: the caller's, or ``carried`` (the
        LandmarkStage of the last beat) while trusted (the beat worker then checks them on the
        beat's ED frame, and finds others if they fail: a box that is not the one used is
        ignored by the mechanics)."""
        from .landmarks import landmarks_from_caller
        from .mechanics.measure import dis_roi

        o = self.o.options
        if not self.o._dis_ahead or o["tracker"] != "dis":
            return None
        if o["landmarks"] is not None:
            if self.ahead.caller is None:  # once per view: find_landmarks maps them the same way
                try:
                    self.ahead.caller = landmarks_from_caller(o["landmarks"], prep.mask.shape, to_grid=prep.to_grid)
                except InputError:
                    self.ahead.caller = False
            lm = None if self.ahead.caller is False else self.ahead.caller
        else:
            lm = carried.landmarks if carried is not None and carried.trusted else None
        if lm is None:
            return None
        if lm is not self.ahead.lm:
            self.ahead.lm, self.ahead.lm_roi = lm, dis_roi(lm, prep.mask.shape)
        return self.ahead.lm_roi

    def _append_flow(self, flow: np.ndarray) -> None:
        from .cycle import ED_TRIM, project_signals

        v, v_ed = project_signals(flow, self.setting.weights, None, (0.0, ED_TRIM))
        self.flow.commit(len(flow))
        self.v.extend(v)
        self.v_ed.extend(v_ed)

    def _trim(self) -> None:
        while len(self.grid_frames) > self.o.window_n:
            self.grid_frames.popleft()
            self.v.popleft()
            self.v_ed.popleft()
            self.push_t.pop(self.first, None)
            self.frozen.discard(self.first)
            self.first += 1
        self.flow.drop_before(max(self.first, self.last_end - 2))  # no beat starts before it (_detect)

    def _detect(self, final: bool) -> None:
        """Read the beats of the window; send each new one whose next end-diastole is confirmed
        (or, at the end of the stream, every new one)."""
        from .cycle import cycles_from_signals

        if len(self.v) < max(8, int(0.6 * self.fps)):
            return
        try:
            cyc = cycles_from_signals(np.asarray(self.v), np.asarray(self.v_ed), fps=self.fps, single_beat=False)
        except QualityError:
            return
        last = self.first + len(self.grid_frames) - 1
        confirm = max(2, int(round(0.12 * self.fps)))
        for i, (a, es, b) in enumerate(cyc.beats):
            sa, sb = a + self.first, b + self.first
            if sa < self.last_end - 1 or (not final and last - sb < confirm):
                continue
            self._send(cyc, i, sa, sb, min(sb + confirm, last))
            self.last_end = sb
            # the chunk holding the frame that will likely confirm the next beat's end is cut
            # short there, so that its result does not wait for the rest of the chunk
            period = float(cyc.period_frames)
            self.flush_at = sb + int(round(period)) + confirm if np.isfinite(period) and period > 0 else None

    def _send(self, cyc: Any, i: int, sa: int, sb: int, done: int) -> None:
        """Queue beat ``i`` of the window's ``cyc`` (stream frames ``sa``..``sb``) for the beat
        worker; ``done`` is the frame whose push confirmed its end (latency counts from it)."""
        from .cycle import CycleResult

        lo = max(sa - self.first - 1, 0)  # a frame before ED: its sub-frame time may fall before it
        hi = min(sb - self.first + 3, len(self.grid_frames))  # the trackers read a frame past next ED
        frames = np.stack([self.grid_frames[k] for k in range(lo, hi)])
        flow = self.flow.span(self.first + lo, self.first + hi - 1)  # a view, not a copy
        a, es, b = cyc.beats[i]
        times = tuple(x - lo for x in cyc.beat_times[i]) if cyc.beat_times else None
        one = CycleResult([(a - lo, es - lo, b - lo)], cyc.heart_rate_bpm, cyc.period_frames, cyc.fps,
                          cyc.confidence, np.array([a - lo, b - lo]), np.array([es - lo]), cyc.signal[lo:hi],
                          list(cyc.warnings), [times] if times else [])
        frozen = sum(1 for k in range(sa + 1, sb + 1) if k in self.frozen)
        fault = None
        if frozen > MAX_FROZEN_SHARE * (sb - sa):
            fault = warn("frozen_frames", f"{frozen} of the beat's {sb - sa} frames repeat the one before")
        start = self.first + lo
        pairs = self.ahead.take(start, start + len(flow))
        self.o.stats["ahead_handed"] += 0 if pairs is None else len(pairs.pairs)
        job = _BeatJob(self.beat_index, start, frames, flow, one,
                       self.push_t.get(done, time.perf_counter()),
                       self.setting, fault, (sa, sb), pairs)
        self.beat_index += 1
        self.o._jobs.put(job)

    def finish(self) -> None:
        if self.setting is None:
            return
        self._advance()
        self._detect(final=True)
        self.ahead = _TrackingAhead()


class _FlowWindow:
    """The stream's flow, pair ``s`` (stream frame s -> s+1) from the first pair still needed
    on, in blocks of ``block`` pairs: new pairs are computed straight into the last block
    (``dense_flow(out=)``) and a beat's pairs are handed as a view of it, not copied (a beat at
    50 frames/s holds ~36 MB of flow at 256 x 352).

    A block is never written where it holds pairs, so views stay valid however long the beat
    worker keeps them. A new block takes over the pairs still needed when they are few (at most
    half a block), so that the next beats again lie in one block; a span across blocks is
    copied. A block let go is used again once no view of it is left (fresh memory costs a
    page fault per page as it is first written, ~90 ms per 36 MB on a virtual machine): views
    are handed out through a lease, an array over the block's memory that every view of it keeps
    alive, and a block whose lease has died is free."""

    def __init__(self, block: int) -> None:
        self.block = block
        self.segs: deque = deque()  # [first stream pair, lease float32 [cap, H, W, 2], pairs filled, memory]
        self.lo = 0  # first pair kept
        self.retired: list[tuple[np.ndarray, Any]] = []  # (memory, weak reference to its last lease)

    def __len__(self) -> int:
        return 0 if not self.segs else self.segs[-1][0] + self.segs[-1][2] - self.lo

    def _new_block(self, n: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
        """A lease on a block of ``n`` pairs or more of ``h`` x ``w`` (a free block let go
        before, else fresh memory), and the block's memory."""
        free = [m for m, ref in self.retired if ref() is None]
        self.retired = [(m, ref) for m, ref in self.retired if ref() is not None]
        mem = next((m for m in free if m.shape[0] >= n and m.shape[1:3] == (h, w)), None)
        if mem is None:
            mem = np.empty((n, h, w, 2), np.float32)
        return np.asarray(memoryview(mem)), mem  # every view of the lease keeps it alive

    def _retire(self, seg: list) -> None:
        """Let block ``seg`` go: free for another lease once no view of it is left."""
        if len(self.retired) < 2:  # at most two blocks kept aside (the others are freed with their views)
            self.retired.append((seg[3], weakref.ref(seg[1])))

    def space(self, s: int, k: int, h: int, w: int) -> np.ndarray:
        """Room for the pairs ``s .. s+k-1`` (``s`` the pair after the last one; or the first
        pair of an empty window), float32 ``[k, h, w, 2]`` to compute them into; they count once
        :meth:`commit` is called."""
        last = self.segs[-1] if self.segs else None
        if last is not None and (last[1].shape[1:3] != (h, w) or last[0] + last[2] != s):
            self.clear()  # another size, or not the next pair: start afresh
            last = None
        if last is None:
            self.lo = s
        elif last[2] + k <= last[1].shape[0]:
            return last[1][last[2]:last[2] + k]
        kept = 0 if last is None else s - max(self.lo, last[0])
        carry = last is not None and self.lo >= last[0] and kept <= self.block // 2
        lease, mem = self._new_block(max(self.block, k + (kept if carry else 0)), h, w)
        seg = [s, lease, 0, mem]
        if carry:
            seg[0], seg[2] = self.lo, kept
            lease[:kept] = last[1][self.lo - last[0]:last[2]]
            self.clear()
        self.segs.append(seg)
        return lease[seg[2]:seg[2] + k]

    def clear(self) -> None:
        """Let every pair go (the blocks are kept for the pairs to come)."""
        while self.segs:
            self._retire(self.segs.popleft())

    def commit(self, k: int) -> None:
        """The ``k`` pairs of the last :meth:`space` are computed."""
        self.segs[-1][2] += k

    def drop_before(self, s: int) -> None:
        """Pairs before ``s`` are no longer needed (blocks holding only such pairs are let go)."""
        self.lo = max(self.lo, s)
        while len(self.segs) > 1 and self.segs[0][0] + self.segs[0][2] <= self.lo:
            self._retire(self.segs.popleft())

    def span(self, a: int, b: int) -> np.ndarray:
        """Pairs ``a .. b-1``, float32 ``[b - a, H, W, 2]``: a view of one block when they lie in
        one (do not write to it), else a copy."""
        if a < self.lo or b > self.lo + len(self):
            raise IndexError(f"pairs {a}..{b - 1} are not kept ({self.lo}..{self.lo + len(self) - 1})")
        parts = []
        for first, lease, n, _ in self.segs:
            i, j = max(a, first), min(b, first + n)
            if i < j:
                parts.append(lease[i - first:j - first])
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def at(self, s: int) -> np.ndarray:
        """Pair ``s``, float32 ``[H, W, 2]`` (a view)."""
        return self.span(s, s + 1)[0]


class _TrackingAhead:
    """The frame worker's cache of the DIS tracking flow computed ahead: stream pair ``s``
    (frame s -> s+1) -> float32 ``[y1 - y0, x1 - x0, 2]``, in the box ``roi`` (grid px) only;
    and the landmarks the box was made from."""

    def __init__(self) -> None:
        self.roi: tuple[int, int, int, int] | None = None
        self.pairs: dict[int, np.ndarray] = {}
        self.lm: Any = None  # the Landmarks lm_roi is the box of
        self.lm_roi: tuple[int, int, int, int] | None = None
        self.caller: Any = None  # the caller's landmarks on this view's grid (False: invalid)

    def set_roi(self, roi: tuple[int, int, int, int] | None) -> None:
        """Another box (or none): the pairs of the old one are dropped (DIS depends on the box)."""
        if roi != self.roi:
            self.roi, self.pairs = roi, {}

    def keep(self, lo: int) -> None:
        """Drop the pairs before stream pair ``lo`` (their beats are done or past the window)."""
        for s in [s for s in self.pairs if s < lo]:
            del self.pairs[s]

    def first_missing(self, lo: int, last: int) -> int | None:
        """The first pair of ``lo .. last-1`` (``last``: the newest frame) not computed yet;
        None when all are."""
        return next((s for s in range(lo, last) if s not in self.pairs), None)

    def add(self, tp: Any) -> None:
        """Keep the pairs of ``tp`` (:class:`ttsfast.flow.TrackingPairs` in this box)."""
        self.pairs.update(tp.pairs)

    def take(self, lo: int, hi: int) -> Any:
        """The pairs ``lo .. hi-1`` as a :class:`ttsfast.flow.TrackingPairs` keyed from 0 (the
        pair ``lo -> lo + 1``), or None when there are none; the cache keeps them."""
        from .flow import TrackingPairs

        got = {s - lo: self.pairs[s] for s in range(lo, hi) if s in self.pairs}
        return TrackingPairs(self.roi, got) if got and self.roi is not None else None


@njit(cache=True, nogil=True)
def _change_sums(a: np.ndarray, b: np.ndarray, sector: np.ndarray, step: int) -> np.ndarray:  # pragma: no cover
    """Over the pixels ``[::step, ::step]`` of uint8 frames ``a`` and ``b`` [H, W] inside bool
    ``sector`` [H, W]: int64 ``[n, sum a, sum b, sum a^2, sum b^2, sum ab, sum |a - b|]``."""
    out = np.zeros(7, np.int64)
    for y in range(0, a.shape[0], step):
        for x in range(0, a.shape[1], step):
            if sector[y, x]:
                u, v = np.int64(a[y, x]), np.int64(b[y, x])
                out[0] += 1
                out[1] += u
                out[2] += v
                out[3] += u * u
                out[4] += v * v
                out[5] += u * v
                out[6] += abs(u - v)
    return out


def _search_pairs(frames: list[np.ndarray], roi: tuple[int, int, int, int], first: int, chunk: int,
                  threads: int | None, pace: _Pace | None = None) -> Any:
    """The DIS worker's task: :func:`~ttsfast.flow.tracking_pairs` of ``frames`` (stream pairs
    ``first ..``) in ``roi`` without a reference, ``chunk`` pairs at a time (bounded temporaries);
    its time is noted in ``pace`` when given."""
    from .flow import TrackingPairs, tracking_pairs

    t0 = time.perf_counter()
    got: dict[int, np.ndarray] = {}
    box = roi
    for a in range(0, len(frames) - 1, chunk):
        tp = tracking_pairs(frames[a:a + chunk + 1], roi, first=first + a, threads=threads)
        got.update(tp.pairs)
        box = tp.roi
    if pace is not None:
        pace.note("search", len(frames) - 1, time.perf_counter() - t0)
    return TrackingPairs(box, got)


class _Pace:
    """Running means (s per pair) of a chunk's Farneback flow on the frame worker and of its DIS
    search on the DIS worker, run side by side on a core each. The search is the shorter; so
    that both finish together, the DIS worker then computes the last :meth:`pairs_beside` of
    the chunk's Farneback pairs (a pair's flow depends only on its two frames: the same flow)."""

    def __init__(self) -> None:
        self.s_per_pair: dict[str, float] = {}

    def note(self, part: str, pairs: int, seconds: float) -> None:
        """``pairs`` pairs of ``part`` ("flow" or "search") took ``seconds``."""
        if pairs > 0:
            v, old = seconds / pairs, self.s_per_pair.get(part)
            self.s_per_pair[part] = v if old is None else 0.8 * old + 0.2 * v

    def pairs_beside(self, n: int) -> int:
        """Of a chunk's ``n`` pairs, how many Farneback pairs the DIS worker takes: with flow
        ``f`` and search ``d`` s per pair, ``m`` such that ``f (n - m) = d n + f m``, rounded
        and at most half (0 until both were measured)."""
        f, d = self.s_per_pair.get("flow"), self.s_per_pair.get("search")
        if f is None or d is None or f <= d:
            return 0
        return max(0, min(n // 2, int(round(n * (f - d) / (2 * f)))))


def _prep_view(job: _BeatJob) -> Any:
    """The settled Prepared with the beat's window frames in place of the settling frames."""
    import dataclasses

    return dataclasses.replace(job.setting.prep, frames=job.frames)


def _analyze_beat(job: _BeatJob, owner: LiveAnalyzer) -> BeatResult:
    """Landmarks (carried from beat to beat), mechanics, score and saliency of one beat: the
    stages of ``analyze()``, and its report assembly."""
    from .analyze import _assemble
    from .anatomy import check_landmarks
    from .stages import find_landmarks, mechanics_stage, model_stage, saliency_stage

    if job.fault is not None:
        return _not_measured(job, job.fault)
    o = owner.options
    prep = _prep_view(job)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()

    def score() -> Any:  # the model does not need the landmarks: it runs beside them and the mechanics
        t = time.perf_counter()
        out = model_stage(prep, job.flow, job.cycle, 0, model=o["model"], device=o["device"],
                          with_cam=o["saliency"] in (True, "cam"), score_all_beats=False)
        timings["model"] = (time.perf_counter() - t) * 1e3
        return out

    scoring = owner._model_pool.submit(score)
    beat = job.cycle.beats[0]
    carried = job.setting.landmarks
    lm_stage = None
    if o["landmarks"] is None and carried is not None and carried.trusted:
        check = check_landmarks(carried.landmarks, job.frames[beat[0]], prep.mask)
        if check.trusted:
            lm_stage = carried
    if lm_stage is None:
        lm_stage = find_landmarks(job.frames, job.flow, beat, prep.mask, o["landmarks"], prep.to_grid,
                                  detector=o["landmark_detector"])
        job.setting.landmarks = lm_stage
    timings["landmarks"] = (time.perf_counter() - t0) * 1e3
    t1 = time.perf_counter()
    mech = mechanics_stage(prep, job.flow, job.cycle, 0, lm_stage, tracker=o["tracker"], threads=o["threads"],
                           annulus_anchor=True, dis_pairs=job.dis_pairs)
    t2 = time.perf_counter()
    ms = scoring.result()
    t3 = time.perf_counter()
    sal = saliency_stage(ms, prep.mask, lm_stage, method=o["saliency"], model=o["model"])
    t4 = time.perf_counter()
    timings.update(mechanics=(t2 - t1) * 1e3, saliency=(t4 - t3) * 1e3, total=(t4 - t0) * 1e3)
    clip = Clip(job.frames[:2], fps=owner.fps, fps_source="caller", mm_per_px=o["mm_per_px"])
    res = _assemble(None, clip, prep, job.cycle, 0, lm_stage, mech, ms, sal,
                    timings={k: round(v, 2) for k, v in timings.items()}, quality={}, keep_arrays=False)
    report = _in_stream(res.to_dict(), job.first)
    latency = (time.perf_counter() - job.t_push) * 1e3
    return BeatResult(job.index, job.span, res.status, res.p_tts, latency, report, list(res.warnings))


def _in_stream(d: dict[str, Any], first: int) -> dict[str, Any]:
    """A beat's report with its frame numbers counted in the stream, without the whole-clip keys."""
    c = d["cycle"]
    b = c["beats"][0]
    cycle = {"ed": b["ed"] + first, "es": b["es"] + first, "next_ed": b["next_ed"] + first,
             "beat_times": [round(x + first, 3) for x in c["beat_times"][0]] if c["beat_times"] else None,
             "heart_rate_bpm": None if not c["beat_times"] else round(60.0 * c["fps"] / (c["beat_times"][0][2]
                                                                                   - c["beat_times"][0][0]), 2),
             "fps": c["fps"]}
    lm = dict(d["landmarks"])
    lm["frame"] = lm["frame"] + first
    mech = d["mechanics"]
    if mech is not None:
        mech = dict(mech, beat=[x + first for x in mech["beat"]], beat_times=[round(x + first, 3)
                                                                           for x in mech["beat_times"]])
    return {"withheld": d["withheld"], "model": d["model"], "cycle": cycle, "landmarks": lm, "mechanics": mech,
            "saliency": d["saliency"], "timings_ms": d["timings_ms"]}


def _not_measured(job: _BeatJob, why: ReportWarning) -> BeatResult:
    latency = (time.perf_counter() - job.t_push) * 1e3
    return BeatResult(job.index, job.span, "not_measured", None, latency,
                      {"withheld": {"beat": {"code": why.code, "reason": why.message}}}, [why])


def open_source(source: Any, fps: float | None) -> tuple[Any, float]:
    """An OpenCV ``VideoCapture`` of a file, camera index or URL, and its frame rate (``fps`` or
    the source's); InputError when it cannot be opened or says no rate."""
    import cv2

    cap = cv2.VideoCapture(int(source) if isinstance(source, int) or str(source).isdigit() else str(source))
    if not cap.isOpened():
        raise InputError(f"cannot open {source!r} as a video, camera or stream")
    rate = fps or float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    if not rate or not np.isfinite(rate):
        cap.release()
        raise InputError(f"{source!r} does not say its frame rate: pass fps=")
    return cap, float(rate)


def live(source: Any, fps: float | None = None, realtime: bool = False, **options: Any) -> Iterator[BeatResult]:
    """The beats of a file, a camera index or a stream URL (OpenCV ``VideoCapture``) as they
    complete. ``fps`` defaults to the source's; ``realtime`` paces a file at that rate;
    ``options`` go to :class:`LiveAnalyzer`."""
    cap, rate = open_source(source, fps)
    analyzer = LiveAnalyzer(rate, **options)
    try:
        for t, frame in read_frames(cap, rate, realtime):
            yield from analyzer.push(frame, t=t)
        yield from analyzer.close()
    finally:
        cap.release()
        if not analyzer._closed:
            analyzer.close()


def read_frames(cap: Any, rate: float, realtime: bool = False) -> Iterator[tuple[float, np.ndarray]]:
    """``(t, frame)`` of each frame a ``VideoCapture`` gives, ``t = n / rate`` s; with
    ``realtime`` each is given no earlier than its time after the first."""
    t_start = time.perf_counter()
    n = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            return
        if realtime:
            time.sleep(max(0.0, t_start + n / rate - time.perf_counter()))
        yield n / rate, frame
        n += 1


__all__ = ["LiveAnalyzer", "BeatResult", "live", "open_source", "read_frames"]
