"""Dense optical flow of an echo clip (Farneback polynomial expansion, native C++ kernel).

``dense_flow`` computes the flow from every frame to the next one. The native backend
reproduces OpenCV's ``cv2.calcOpticalFlowFarneback`` numerics (same parameters, same
meaning, mean difference ~1e-7 px) but works on the whole clip at once: the pyramid and
the polynomial expansion of each frame are computed once and shared by the two pairs the
frame belongs to, the kernels are vectorised and fused (the iterations run as one
wavefront over the rows), frame pairs run on several threads with the GIL released, and
work is skipped where the result is known to be 0: outside the sector ``mask`` when one is
given, and otherwise far (two windows plus the filter supports) from every non-zero pixel
of the clip, where OpenCV's flow is exactly 0 too (black background of echo frames).
``backend="opencv"`` runs OpenCV pair by pair with the same parameters, for comparison.

One departure from OpenCV, only with a ``mask``: the sector's edge is a bright-to-black step
that stays put while the tissue moves, and in the window sums of pixels near it, it pulls the
flow of the tissue beside it toward zero. The native backend therefore gives no weight to the
image structure within ``edge_margin`` px (per pyramid layer) of the mask's border
(normalised-convolution style certainty 0). See :data:`EDGE_MARGIN`.
"""
from __future__ import annotations

import math
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit

from ._numerics import rescale_to_uint8
from .errors import InputError

__all__ = ["dense_flow", "FlowBuffers", "tracking_flow", "tracking_pairs", "hold_pairs", "TrackingPairs",
           "DEFAULT_FLOW_PARAMS", "STUDY_FLOW_PARAMS", "TRACKING_FLOW_PARAMS", "EDGE_MARGIN", "MIN_ROI_PX"]

#: Parameters of the original study (OpenCV Farneback in the research code).
STUDY_FLOW_PARAMS: dict[str, Any] = dict(
    pyr_scale=0.5, levels=1, winsize=21, iterations=3, poly_n=5, poly_sigma=1.1, gaussian=False
)

#: Defaults of :func:`dense_flow`: the study's settings with a deeper pyramid (levels=3), chosen
#: by median end-point error in the myocardium of synthetic clips (docs/flow_notes.md).
DEFAULT_FLOW_PARAMS: dict[str, Any] = dict(
    pyr_scale=0.5, levels=3, winsize=21, iterations=3, poly_n=5, poly_sigma=1.1, gaussian=False
)

#: Default ``edge_margin`` of the native backend with a mask (px per pyramid layer): keeps the
#: static sector edge from pulling the wall's flow to zero (docs/flow_notes.md).
EDGE_MARGIN = 4

#: Defaults of :func:`tracking_flow`, the flow the mechanics track points on: OpenCV's DIS, 8 px
#: patches every 4 px, held within 0.5 px/frame of the Farneback flow (docs/flow_notes.md).
TRACKING_FLOW_PARAMS: dict[str, Any] = dict(patch_size=8, patch_stride=4, gd_iterations=25, max_deviation_px=0.5)

#: Smallest side (px) of the box :func:`tracking_flow` computes DIS in.
MIN_ROI_PX = 16

_MAX_SIDE = 8192


def _check_int(name: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise InputError(f"{name} must be an integer in {lo}..{hi}, got {value!r}")
    v = int(value)
    if not lo <= v <= hi:
        raise InputError(f"{name} must be an integer in {lo}..{hi}, got {v}")
    return v


def _check_float(name: str, value: Any) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InputError(f"{name} must be a real number, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise InputError(f"{name} must be finite, got {v}")
    return v


def _as_frames(frames: Any) -> np.ndarray:
    """Validate and return frames as a C-contiguous uint8 or float32 array [T,H,W]."""
    if isinstance(frames, (list, tuple)):
        if len(frames) < 2:
            raise InputError(f"need at least 2 frames, got {len(frames)}")
        arrs = [np.asarray(f) for f in frames]
        shapes = {a.shape for a in arrs}
        if len(shapes) != 1:
            raise InputError(f"all frames must have the same shape [H,W], got {sorted(shapes)}")
        dtypes = {a.dtype for a in arrs}
        if len(dtypes) != 1:
            raise InputError(f"all frames must have the same dtype, got {sorted(map(str, dtypes))}")
        if arrs[0].ndim != 2:
            raise InputError(f"each frame must be a 2-D grey image [H,W], got shape {arrs[0].shape}")
        frames = np.stack(arrs)
    if not isinstance(frames, np.ndarray):
        raise InputError(f"frames must be a numpy array [T,H,W] or a list of [H,W] frames, "
                         f"got {type(frames).__name__}")
    if frames.ndim != 3:
        raise InputError(f"frames must have shape [T,H,W] (grey), got shape {frames.shape}; "
                         "convert colour frames to grey first")
    t, h, w = frames.shape
    if t < 2:
        raise InputError(f"need at least 2 frames to compute flow, got T={t}")
    if h > _MAX_SIDE or w > _MAX_SIDE:
        raise InputError(f"frames of {h}x{w} px are too large (at most {_MAX_SIDE} px a side)")
    dt = frames.dtype
    if dt == np.uint8:
        out = np.ascontiguousarray(frames)
    elif dt in (np.float32, np.float64):
        out = np.ascontiguousarray(frames, dtype=np.float32)
        if not np.isfinite(out).all():
            raise InputError("frames contain NaN or infinite values")
        if out.size and float(np.abs(out).max()) > 65536.0:
            raise InputError("float frames must be intensities within [-65536, 65536]")
    else:
        raise InputError(f"frames must be uint8 or float32/float64 grey intensities, got dtype {dt}")
    return out


def _as_mask(mask: Any, h: int, w: int) -> np.ndarray | None:
    if mask is None:
        return None
    if not isinstance(mask, np.ndarray):
        raise InputError(f"mask must be a numpy bool array [H,W] or None, got {type(mask).__name__}")
    if mask.dtype != np.bool_:
        raise InputError(f"mask must be a bool array, got dtype {mask.dtype}")
    if mask.shape != (h, w):
        raise InputError(f"mask must have shape [H,W] = {(h, w)}, got {mask.shape}")
    return np.ascontiguousarray(mask)


def _resolve_threads(threads: Any) -> int:
    if threads is None:
        return max(1, os.cpu_count() or 1)
    return _check_int("threads", threads, 1, 1024)


class FlowBuffers:
    """Working memory of :func:`dense_flow` (native backend) kept from one call to the next.

    A stream computes its flow a few frames at a time; each call would otherwise lay out its
    per-thread buffers (tens of MB at 256x352) in fresh memory, which the kernel must zero page
    by page. Passed as ``buffers=`` to calls on frames of one size, with one mask and the same
    parameters, the buffers are laid out once and reused; the flow is the same as without.
    A call with another size, mask or parameters lays them out again. One call at a time uses
    them (a call that finds them in use works in fresh memory). Freed with the object.
    """

    def __init__(self) -> None:
        from ._nativelib import native

        self._native = native.FlowBuffers()


def dense_flow(
    frames: np.ndarray | Sequence[np.ndarray],
    *,
    pyr_scale: float = DEFAULT_FLOW_PARAMS["pyr_scale"],
    levels: int = DEFAULT_FLOW_PARAMS["levels"],
    winsize: int = DEFAULT_FLOW_PARAMS["winsize"],
    iterations: int = DEFAULT_FLOW_PARAMS["iterations"],
    poly_n: int = DEFAULT_FLOW_PARAMS["poly_n"],
    poly_sigma: float = DEFAULT_FLOW_PARAMS["poly_sigma"],
    gaussian: bool = DEFAULT_FLOW_PARAMS["gaussian"],
    mask: np.ndarray | None = None,
    threads: int | None = None,
    backend: str = "native",
    edge_margin: int | None = None,
    buffers: FlowBuffers | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Dense optical flow from each frame to the next (Farneback).

    Parameters
    ----------
    frames : ndarray, uint8 or float32/float64, shape [T, H, W]; or a list of T [H, W] frames
        Grey frames, T >= 2; H and W at least 2*poly_n+1 px. Float frames must be finite.
    pyr_scale : float in (0, 1)
        Scale between pyramid layers (0.5: each layer half the size of the previous one).
    levels : int >= 1
        OpenCV's ``levels`` with OpenCV's exact behaviour (the same value gives the same
        flow as ``cv2.calcOpticalFlowFarneback``). Note that OpenCV's implementation builds
        ``levels`` layers *beyond* the original image (``levels=1`` uses the original and a
        half-size layer); layers smaller than 32 px are dropped.
    winsize : odd int >= 1
        Averaging window (px) of the flow solve.
    iterations : int >= 1
        Iterations at each pyramid layer.
    poly_n : 5 or 7
        Neighbourhood (px) of the polynomial expansion.
    poly_sigma : float in (0, 10]
        Gaussian sigma of the polynomial expansion (1.1 for poly_n=5, 1.5 for 7).
    gaussian : bool
        Gaussian instead of box window (OpenCV's OPTFLOW_FARNEBACK_GAUSSIAN).
    mask : bool ndarray [H, W] or None
        Sector mask: the native backend skips work away from it; flow outside it is 0.
    threads : int or None
        Worker threads (None: all cores). ``backend="opencv"`` sets cv2.setNumThreads.
    backend : "native" or "opencv"
    edge_margin : int in 0..64, optional
        With a ``mask``: image structure within this many px (on each pyramid layer) of the
        mask's border gets no weight in the flow solve, so that the static sector edge does
        not hold back the tissue beside it. None: :data:`EDGE_MARGIN` for the native backend,
        0 for OpenCV (which cannot do otherwise); 0 reproduces OpenCV exactly. No effect
        without a mask (the image border keeps OpenCV's own handling).
    buffers : FlowBuffers, optional
        Working memory to use and keep for the next call (native backend; a stream's
        chunks): the same flow, without laying out fresh memory each call.
    out : float32 ndarray [T-1, H, W, 2], optional
        C-contiguous, writeable array (not overlapping ``frames``) to write the flow into,
        e.g. a slice of a larger store; it is returned. Every element is written.

    Returns
    -------
    flow : float32 ndarray [T-1, H, W, 2]
        (dx, dy) in px/frame: pixel (x, y) of frame t moves to (x+dx, y+dy) in frame t+1
        (``out`` when given).

    Raises
    ------
    InputError
        Malformed frames, mask or parameters.
    """
    arr = _as_frames(frames)
    _, h, w = arr.shape
    ps = _check_float("pyr_scale", pyr_scale)
    if not 0.0 < ps < 1.0:
        raise InputError(f"pyr_scale must be in (0, 1), got {ps}")
    lv = _check_int("levels", levels, 1, 32)
    ws = _check_int("winsize", winsize, 1, 255)
    if ws % 2 == 0:
        raise InputError(f"winsize must be odd (OpenCV treats an even winsize w as w+1 with a "
                         f"mismatched normalisation), got {ws}")
    it = _check_int("iterations", iterations, 1, 1000)
    pn = _check_int("poly_n", poly_n, 5, 7)
    if pn not in (5, 7):
        raise InputError(f"poly_n must be 5 or 7, got {pn}")
    sg = _check_float("poly_sigma", poly_sigma)
    if not 0.0 < sg <= 10.0:
        raise InputError(f"poly_sigma must be in (0, 10], got {sg}")
    if not isinstance(gaussian, (bool, np.bool_)):
        raise InputError(f"gaussian must be a bool, got {gaussian!r}")
    if h < 2 * pn + 1 or w < 2 * pn + 1:
        raise InputError(f"frames of {h}x{w} px are smaller than the polynomial filter "
                         f"({2 * pn + 1} px for poly_n={pn})")
    m = _as_mask(mask, h, w)
    nt = _resolve_threads(threads)
    em = (EDGE_MARGIN if backend == "native" else 0) if edge_margin is None else _check_int(
        "edge_margin", edge_margin, 0, 64)
    if buffers is not None and not isinstance(buffers, FlowBuffers):
        raise InputError(f"buffers must be a ttsfast.flow.FlowBuffers or None, got {type(buffers).__name__}")
    if out is not None:
        _check_out(out, arr)
    if backend == "native":
        from ._nativelib import native

        try:
            return native.dense_flow_farneback(arr, ps, lv, ws, it, pn, sg, bool(gaussian), m, nt,
                                               edge_margin=em,
                                               buffers=None if buffers is None else buffers._native, out=out)
        except ValueError as exc:  # validation in C++ (should be caught above already)
            raise InputError(str(exc)) from exc
    if backend == "opencv":
        if em:
            raise InputError("edge_margin > 0 needs the native backend (OpenCV weighs every pixel); "
                             "pass edge_margin=0 or None with backend='opencv'")
        res = _opencv_flow(arr, ps, lv, ws, it, pn, sg, bool(gaussian), m, nt)
        if out is None:
            return res
        out[...] = res
        return out
    raise InputError(f"backend must be 'native' or 'opencv', got {backend!r}")


def _check_out(out: Any, frames: np.ndarray) -> None:
    """InputError unless ``out`` can take :func:`dense_flow`'s result of ``frames`` ``[T, H, W]``."""
    t, h, w = frames.shape
    if not isinstance(out, np.ndarray) or out.dtype != np.float32 or out.shape != (t - 1, h, w, 2) \
            or not out.flags.c_contiguous or not out.flags.writeable:
        raise InputError(f"out must be a writeable C-contiguous float32 array {(t - 1, h, w, 2)}, got "
                         f"{getattr(out, 'dtype', type(out).__name__)} {getattr(out, 'shape', '')}")
    if np.may_share_memory(out, frames):
        raise InputError("out must not overlap the frames")


class _OpenCVThreads:
    """``with _OpenCVThreads(n):`` runs its block with ``cv2.setNumThreads(n)`` and restores the
    count the process had before. OpenCV's count is process-wide: calls that overlap on several
    threads (a live stream's workers) share one save, made by the first to enter and restored
    by the last to leave (while they overlap, the last count set holds), so that they cannot
    restore each other's values and leave the process changed."""

    _lock = threading.Lock()
    _inside = 0
    _saved = 0

    def __init__(self, n: int):
        self.n = int(n)

    def __enter__(self) -> "_OpenCVThreads":
        import cv2

        cls = type(self)
        with cls._lock:
            if cls._inside == 0:
                cls._saved = cv2.getNumThreads()
            cls._inside += 1
            cv2.setNumThreads(self.n)
        return self

    def __exit__(self, *exc: Any) -> None:
        import cv2

        cls = type(self)
        with cls._lock:
            cls._inside -= 1
            if cls._inside == 0:
                cv2.setNumThreads(cls._saved)


def _opencv_flow(arr: np.ndarray, ps: float, lv: int, ws: int, it: int, pn: int, sg: float,
                 gaussian: bool, mask: np.ndarray | None, threads: int) -> np.ndarray:
    """cv2.calcOpticalFlowFarneback pair by pair with the same parameters."""
    import cv2

    flags = cv2.OPTFLOW_FARNEBACK_GAUSSIAN if gaussian else 0
    t, h, w = arr.shape
    out = np.empty((t - 1, h, w, 2), np.float32)
    with _OpenCVThreads(threads):
        for i in range(t - 1):
            out[i] = cv2.calcOpticalFlowFarneback(arr[i], arr[i + 1], None, ps, lv, ws, it, pn, sg, flags)
    if mask is not None:
        out[:, ~mask] = 0.0
    return out


def _as_uint8(arr: np.ndarray) -> np.ndarray:
    """uint8 frames as they are; float frames linearly rescaled to 0..255 over the clip."""
    if arr.dtype == np.uint8:
        return arr
    return rescale_to_uint8(arr, float(arr.min()), float(arr.max()))


@dataclass(frozen=True)
class TrackingPairs:
    """Pairs of :func:`tracking_flow` computed ahead (e.g. as a stream's frames arrive), each
    kept inside its box only (outside it, the flow is the reference's or 0).

    Attributes
    ----------
    roi : (int, int, int, int)
        The box ``(x0, y0, x1, y1)`` px (x1, y1 exclusive), clipped to the frames as
        :func:`tracking_flow` clips it.
    pairs : mapping of int -> ndarray
        Pair ``t`` (frame t -> t+1 of the frames they are handed with) -> float32
        ``[y1 - y0, x1 - x0, 2]`` (dx, dy) px/frame: :func:`tracking_flow`'s result in ``roi``.
    """

    roi: tuple[int, int, int, int]
    pairs: Mapping[int, np.ndarray]


def _clip_roi(roi: Any, w: int, h: int) -> tuple[int, int, int, int]:
    """``roi`` (x0, y0, x1, y1) px, or the whole ``w`` x ``h`` frame for None, rounded and
    clipped to the frame; InputError when less than :data:`MIN_ROI_PX` a side is left."""
    if roi is None:
        x0, y0, x1, y1 = 0, 0, w, h
    else:
        try:
            x0, y0, x1, y1 = (int(round(float(v))) for v in roi)
        except (TypeError, ValueError):
            raise InputError(f"roi must be (x0, y0, x1, y1) px, got {roi!r}") from None
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 - x0 < MIN_ROI_PX or y1 - y0 < MIN_ROI_PX:
        raise InputError(f"roi {roi} leaves less than {MIN_ROI_PX}x{MIN_ROI_PX} px of the {w}x{h} frames")
    return x0, y0, x1, y1


def _known_pairs(known: TrackingPairs | None, box: tuple[int, int, int, int], t0: int,
                 t1: int) -> dict[int, np.ndarray]:
    """The pairs ``t0 .. t1-1`` of ``known`` when it was computed in ``box`` (none otherwise:
    DIS depends on the box), checked to be float32 ``[y1 - y0, x1 - x0, 2]``."""
    if known is None or tuple(int(v) for v in known.roi) != box:
        return {}
    x0, y0, x1, y1 = box
    pairs = {t: known.pairs[t] for t in range(t0, t1) if t in known.pairs}
    for t, a in pairs.items():
        if not isinstance(a, np.ndarray) or a.dtype != np.float32 or a.shape != (y1 - y0, x1 - x0, 2):
            raise InputError(f"known pair {t} must be float32 {(y1 - y0, x1 - x0, 2)} (the box {box}), got "
                             f"{getattr(a, 'dtype', type(a).__name__)} {getattr(a, 'shape', '')}")
    return pairs


def _new_dis(patch_size: int, patch_stride: int, gd_iterations: int) -> Any:
    """OpenCV DIS with the tracking settings (finest scale 0, no variational refinement)."""
    import cv2

    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    dis.setFinestScale(0)
    dis.setPatchSize(patch_size)
    dis.setPatchStride(patch_stride)
    dis.setGradientDescentIterations(gd_iterations)
    dis.setVariationalRefinementIterations(0)
    return dis


def _dis_pair(dis: Any, prev: np.ndarray, nxt: np.ndarray, box: np.ndarray, gate: float | None) -> None:
    """DIS from ``prev`` to ``nxt`` (uint8 ``[h, w]`` crops) written into ``box`` (float32
    ``[h, w, 2]``): everywhere without a ``gate``, else where it lies within ``gate`` px of what
    ``box`` holds (the reference)."""
    d = dis.calc(np.ascontiguousarray(prev), np.ascontiguousarray(nxt), None)
    if gate is None:
        box[...] = d
        return
    _hold(box, d, gate)


def _check_gate(max_deviation_px: Any) -> float:
    """The DIS gate ``max_deviation_px`` (px per frame) as a float > 0, else InputError."""
    gate = _check_float("max_deviation_px", max_deviation_px)
    if gate <= 0:
        raise InputError(f"max_deviation_px must be > 0, got {gate}")
    return gate


#: Relative margin around the gate within which :func:`_hold` decides with ``np.hypot`` itself:
#: wider than any libm's or SIMD loop's error in float32 ``hypot`` (a few units in the last place).
_GATE_MARGIN = 1e-6


def _hold(box: np.ndarray, d: np.ndarray, gate: float) -> None:
    """Write the DIS flow ``d`` into ``box`` (float32 ``[h, w, 2]``, holding the reference)
    where it lies within ``gate`` px of the reference; the reference stays elsewhere.

    The rule is ``np.hypot(d - box) <= gate`` per pixel, the difference and ``hypot`` in float32
    (NaN in the reference: keep the reference). :func:`_hold_clear` decides it in one pass from
    the exact squared length wherever that lies clearly inside or outside the gate; the few
    pixels within :data:`_GATE_MARGIN` of it (and NaN or infinite ones) are decided by the rule
    itself, so the result is the rule's, bit for bit."""
    d = np.ascontiguousarray(d, dtype=np.float32)
    unsure = np.empty(box.shape[:2], np.bool_)
    lo, hi = gate * (1.0 - _GATE_MARGIN), gate * (1.0 + _GATE_MARGIN)
    if _hold_clear(box, d, lo * lo, hi * hi, unsure):
        ys, xs = np.nonzero(unsure)
        diff = d[ys, xs] - box[ys, xs]
        near = np.hypot(diff[:, 0], diff[:, 1]) <= gate
        box[ys[near], xs[near]] = d[ys[near], xs[near]]


@njit(cache=True, nogil=True)
def _hold_clear(box: np.ndarray, d: np.ndarray, lo2: float, hi2: float,
                unsure: np.ndarray) -> int:  # pragma: no cover - compiled
    """One pass of :func:`_hold` over float32 ``box`` and ``d`` ``[h, w, 2]``: the difference
    ``e = d - box`` in float32, its squared length exactly (float64 products of float32 values);
    ``d`` is written where that is ``<= lo2``, the reference kept where ``>= hi2``, and ``unsure``
    (bool ``[h, w]``) marks the rest, left untouched. Returns how many are unsure."""
    n = 0
    for y in range(box.shape[0]):
        for x in range(box.shape[1]):
            e0 = d[y, x, 0] - box[y, x, 0]
            e1 = d[y, x, 1] - box[y, x, 1]
            s = np.float64(e0) * np.float64(e0) + np.float64(e1) * np.float64(e1)
            if s <= lo2:
                box[y, x, 0] = d[y, x, 0]
                box[y, x, 1] = d[y, x, 1]
                unsure[y, x] = False
            elif s >= hi2:
                unsure[y, x] = False
            else:  # within a hair of the gate, or NaN
                unsure[y, x] = True
                n += 1
    return n


def tracking_flow(
    frames: np.ndarray | Sequence[np.ndarray],
    t0: int = 0,
    t1: int | None = None,
    *,
    roi: tuple[int, int, int, int] | None = None,
    patch_size: int = TRACKING_FLOW_PARAMS["patch_size"],
    patch_stride: int = TRACKING_FLOW_PARAMS["patch_stride"],
    gd_iterations: int = TRACKING_FLOW_PARAMS["gd_iterations"],
    reference: np.ndarray | None = None,
    max_deviation_px: float = TRACKING_FLOW_PARAMS["max_deviation_px"],
    threads: int | None = None,
    known: TrackingPairs | None = None,
) -> np.ndarray:
    """Dense flow for point tracking: OpenCV DIS (dense inverse search) from frame t to t+1,
    optionally held to a reference flow.

    The model's temporal arm is trained on :func:`dense_flow`; the mechanics stage tracks its
    points on this flow instead, which follows the myocardium more closely (see
    :data:`TRACKING_FLOW_PARAMS`). It is computed only for the frame pairs ``t0 .. t1-1`` and,
    with ``roi``, only inside that box (zero elsewhere), so that a beat's LV costs a fraction of
    the clip. Each pair depends only on its two frames, the box and its reference (DIS starts
    from no flow), so pairs computed ahead can be handed in ``known``.

    Parameters
    ----------
    frames : ndarray, uint8 or float, shape [T, H, W]; or a list of T [H, W] frames
        Grey frames (float frames are rescaled to 0..255 over the clip).
    t0, t1 : int
        First pair ``t0 -> t0+1`` and end (exclusive) of the pairs; default all ``T-1``.
    roi : (x0, y0, x1, y1), optional
        Box in px (x1, y1 exclusive), at least :data:`MIN_ROI_PX` a side after clipping to the
        image.
    patch_size, patch_stride : int
        DIS patch side and spacing, px (patch_size 4..64, stride 1..patch_size).
    gd_iterations : int
        Gradient-descent iterations per patch (1..500).
    reference : float ndarray [t1 - t0, H, W, 2], optional
        Another flow of the same pairs (the clip's :func:`dense_flow`): where the DIS flow of a
        pixel differs from it by more than ``max_deviation_px``, the reference is kept (outside
        ``roi`` too). DIS's small patches are what follows the tissue, and also what can lock
        onto a valve leaflet or compression noise on a real clip; the gate keeps those steps
        from accumulating into drift.
    max_deviation_px : float
        Gate of ``reference`` in px per frame (> 0).
    threads : int or None
        OpenCV threads (None: all cores).
    known : TrackingPairs, optional
        Pairs already computed by this function (:func:`tracking_pairs`) on the same uint8
        frames, reference and parameters, keyed by pair index in ``frames``: those of
        ``t0 .. t1-1`` are taken as they are when ``known.roi`` is this call's box (clipped),
        the others computed; the result is the same as computing them all. Ignored for
        another box.

    Returns
    -------
    flow : float32 ndarray [t1 - t0, H, W, 2]
        (dx, dy) px/frame; index k is the pair ``t0+k -> t0+k+1``; 0 outside ``roi`` (the
        reference there, when given).

    Raises
    ------
    InputError
        Malformed frames, frame range, box, known pairs or parameters.
    """
    arr = _as_frames(frames)
    n, h, w = arr.shape
    t0 = _check_int("t0", t0, 0, n - 2)
    t1 = n - 1 if t1 is None else _check_int("t1", t1, t0 + 1, n - 1)
    ps = _check_int("patch_size", patch_size, 4, 64)
    st = _check_int("patch_stride", patch_stride, 1, ps)
    gd = _check_int("gd_iterations", gd_iterations, 1, 500)
    nt = _resolve_threads(threads)
    x0, y0, x1, y1 = _clip_roi(roi, w, h)
    gate = None
    if reference is not None:
        if not isinstance(reference, np.ndarray) or reference.shape != (t1 - t0, h, w, 2):
            raise InputError(f"reference must be a flow array {(t1 - t0, h, w, 2)}, got "
                             f"{getattr(reference, 'shape', type(reference).__name__)}")
        gate = _check_gate(max_deviation_px)
    done = _known_pairs(known, (x0, y0, x1, y1), t0, t1)
    img = _as_uint8(arr)
    dis = _new_dis(ps, st, gd)
    if reference is None:
        out = np.zeros((t1 - t0, h, w, 2), np.float32)
    else:  # the reference everywhere, DIS where it stays within the gate of it
        out = np.array(reference, dtype=np.float32, copy=True)
    with _OpenCVThreads(nt):
        for t in range(t0, t1):
            box = out[t - t0, y0:y1, x0:x1]
            if t in done:
                box[...] = done[t]
            else:
                _dis_pair(dis, img[t, y0:y1, x0:x1], img[t + 1, y0:y1, x0:x1], box, gate)
    return out


def tracking_pairs(frames: np.ndarray | Sequence[np.ndarray], roi: tuple[int, int, int, int], *,
                   reference: np.ndarray | Sequence[np.ndarray] | None = None, first: int = 0,
                   threads: int | None = None) -> TrackingPairs:
    """:func:`tracking_flow` of every pair of ``frames`` (default parameters), kept inside
    ``roi`` only: to compute pairs ahead and hand them to a later call as ``known``.

    Parameters
    ----------
    frames : uint8 ndarray [T, H, W], or a sequence of T uint8 [H, W] frames
        Grey frames (uint8: float frames are rescaled over the call's clip, so pairs computed on
        a part of a clip would not be the whole clip's); only the box of each is copied.
    roi : (x0, y0, x1, y1)
        Box in px, as for :func:`tracking_flow`.
    reference : float ndarray [T - 1, H, W, 2], or a sequence of T - 1 [H, W, 2], optional
        The reference flow of the pairs, as for :func:`tracking_flow`.
    first : int
        Key of the pair ``frames[0] -> frames[1]`` (e.g. its frame number in a stream).
    threads : int or None
        OpenCV threads (None: all cores).

    Returns
    -------
    TrackingPairs
        ``roi`` clipped, and pair ``first + k`` -> float32 ``[y1 - y0, x1 - x0, 2]`` (a copy).
    """
    seq = [np.asarray(f) for f in frames]
    n = len(seq)
    shape = seq[0].shape if n else None
    if n < 2 or len(shape) != 2 or any(f.shape != shape or f.dtype != np.uint8 for f in seq):
        raise InputError("tracking_pairs needs 2 or more uint8 [H, W] frames of one size, got "
                         f"{n} frame(s) of {sorted({(f.shape, str(f.dtype)) for f in seq})}")
    h, w = shape
    refs = None if reference is None else [np.asarray(r) for r in reference]
    if refs is not None and (len(refs) != n - 1 or any(r.shape != (h, w, 2) for r in refs)):
        raise InputError(f"reference must be {n - 1} flow fields [{h}, {w}, 2], got "
                         f"{sorted({r.shape for r in refs})} x {len(refs)}")
    box = _clip_roi(roi, w, h)
    x0, y0, x1, y1 = box
    # DIS sees only the box's pixels either way: computed on the crops, without whole-frame copies
    crops = np.stack([f[y0:y1, x0:x1] for f in seq])
    ref = None if refs is None else np.stack([r[y0:y1, x0:x1] for r in refs]).astype(np.float32, copy=False)
    out = tracking_flow(crops, reference=ref, threads=threads)
    return TrackingPairs(box, {first + k: out[k].copy() for k in range(out.shape[0])})


def hold_pairs(pairs: TrackingPairs, reference: Mapping[int, np.ndarray],
               max_deviation_px: float = TRACKING_FLOW_PARAMS["max_deviation_px"]) -> TrackingPairs:
    """Hold pairs computed without a reference (:func:`tracking_pairs` with ``reference=None``)
    to their reference flow, as :func:`tracking_flow` does: the DIS flow where it lies within
    ``max_deviation_px`` of the reference, the reference elsewhere. ``hold_pairs(tracking_pairs(
    frames, roi, first=a), ref)`` equals ``tracking_pairs(frames, roi, reference=..., first=a)``
    exactly, so the DIS search can run before the reference flow is known (beside it).

    Parameters
    ----------
    pairs : TrackingPairs
        Unheld pairs, keyed by pair number.
    reference : mapping of int -> float ndarray [H, W, 2]
        The whole-frame reference flow of each pair of ``pairs`` (e.g. :func:`dense_flow`'s),
        keyed the same way.
    max_deviation_px : float
        The gate, px per frame (> 0).

    Returns
    -------
    TrackingPairs
        The same box and keys; float32 ``[y1 - y0, x1 - x0, 2]`` (new arrays).
    """
    gate = _check_gate(max_deviation_px)
    x0, y0, x1, y1 = pairs.roi
    out = {}
    for s, d in pairs.pairs.items():
        if s not in reference:
            raise InputError(f"no reference flow for pair {s}")
        r = np.asarray(reference[s])
        if r.ndim != 3 or r.shape[2] != 2 or r.shape[0] < y1 or r.shape[1] < x1:
            raise InputError(f"the reference of pair {s} must be a flow field [H, W, 2] holding the box "
                             f"{pairs.roi}, got {r.shape}")
        box = r[y0:y1, x0:x1].astype(np.float32, copy=True)
        _hold(box, d, gate)
        out[s] = box
    return TrackingPairs(pairs.roi, out)
