"""Turning one beat (grey frames + dense flow on the analysis grid) into the model's inputs.

:func:`make_inputs` is the single place where the model's input normalisation lives; the
training pipeline, the runtime and the exported model card all refer to it.

Normalisation (documented in the model card as ``input_spec``)
---------------------------------------------------------------
spatial arm
    grey levels resized to the model grid (area averaging), then standardised per clip over
    the pixels inside the sector mask (all frames together): ``(g - mean) / max(std, 1)``
    with ``g`` in 0..255 grey levels; 0 outside the mask; clipped to [-5, 5].
temporal arm
    flow (dx, dy) in analysis-grid px/frame, resized to the model grid (area averaging) and
    the vectors scaled by the resize factors (dx * W_model / w, dy * H_model / h), so they
    are model-grid px per frame step; divided by :data:`FLOW_SCALE`; 0 outside the mask;
    clipped to [-10, 10].
time
    if the beat has T_in != T frames, frames and flow are resampled linearly in time to T;
    flow vectors are then multiplied by (T_in - 1) / (T - 1) so that they stay
    displacements per frame step of the resampled beat.
"""
from __future__ import annotations

import numpy as np

from ..constants import FRAMES_PER_BEAT
from ..errors import InputError

#: Model input grid (frames per beat, rows, cols): half the 256x352 analysis grid.
MODEL_T, MODEL_H, MODEL_W = FRAMES_PER_BEAT, 128, 176
#: Flow divisor (model-grid px per frame step) so that typical flows are O(1).
FLOW_SCALE = 0.5

INPUT_SPEC = {
    "spatial": {"shape": ["B", 1, MODEL_T, MODEL_H, MODEL_W], "dtype": "float32",
                "normalisation": "grey 0..255 area-resized; (g - mean_in_mask) / max(std_in_mask, 1); 0 outside mask; clip [-5, 5]"},
    "temporal": {"shape": ["B", 2, MODEL_T, MODEL_H, MODEL_W], "dtype": "float32",
                 "normalisation": f"flow (dx, dy) area-resized, vectors scaled by resize factors (model-grid px/frame), / {FLOW_SCALE}; 0 outside mask; clip [-10, 10]"},
    "function": "ttsfast.model.inputs.make_inputs",
}


def _resample_time(x: np.ndarray, t_out: int) -> np.ndarray:
    """Linear resampling along axis 0 from ``len(x)`` samples to ``t_out`` (endpoints kept)."""
    t_in = x.shape[0]
    if t_in == t_out:
        return x
    pos = np.linspace(0.0, t_in - 1.0, t_out)
    i0 = np.clip(np.floor(pos).astype(np.int64), 0, t_in - 1)
    i1 = np.minimum(i0 + 1, t_in - 1)
    f = (pos - i0).astype(np.float32).reshape((-1,) + (1,) * (x.ndim - 1))
    return (x[i0] * (1.0 - f) + x[i1] * f).astype(np.float32)


def _resize_stack(x: np.ndarray, h: int, w: int) -> np.ndarray:
    """Resize float32 ``[N, h0, w0]`` planes to ``[N, h, w]`` (:func:`_resize_plane` each)."""
    out = np.empty((x.shape[0], h, w), np.float32)
    for i in range(x.shape[0]):
        _resize_plane(x[i], h, w, out[i])
    return out


def _resize_plane(x: np.ndarray, h: int, w: int, out: np.ndarray) -> None:
    """One plane ``[h0, w0]`` as float32 into ``out`` ``[h, w]``: area averaging when shrinking,
    bilinear when enlarging, a copy at the same size."""
    import cv2

    h0, w0 = x.shape
    if (h0, w0) == (h, w):
        out[...] = x
        return
    interp = cv2.INTER_AREA if (h <= h0 and w <= w0) else cv2.INTER_LINEAR
    cv2.resize(np.ascontiguousarray(x, dtype=np.float32), (w, h), dst=out, interpolation=interp)


def _finite_flow(x: np.ndarray) -> np.ndarray:
    """``x`` as float32 (contiguous); InputError when any value is NaN or infinite there."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        raise InputError("flow_beat contains NaN or infinite values; recompute the flow")
    return x


def _resize_planes(fr: np.ndarray, fl: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grey ``fr [T, h0, w0]`` and flow ``fl [T or T-1, h0, w0, 2]`` resized to ``[T, h, w]`` each
    (grey, dx, dy), plane by plane (the last flow step repeated when there are T-1): the values of
    :func:`_resize_stack` on the whole stacks, without their full-size float copies. InputError
    for a non-finite flow value (:func:`_finite_flow`)."""
    t_in = fr.shape[0]
    g, dx, dy = (np.empty((t_in, h, w), np.float32) for _ in range(3))
    for i in range(t_in):
        _resize_plane(fr[i], h, w, g[i])
        if i < fl.shape[0]:
            _resize_plane(_finite_flow(fl[i, ..., 0]), h, w, dx[i])
            _resize_plane(_finite_flow(fl[i, ..., 1]), h, w, dy[i])
        else:
            dx[i], dy[i] = dx[i - 1], dy[i - 1]
    return g, dx, dy


def _resample_and_resize(fr: np.ndarray, fl: np.ndarray, t: int, h: int,
                         w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grey and flow of a beat of ``T_in != t`` frames resampled linearly to ``t`` (flow vectors
    rescaled to the new frame step) and resized to ``[t, h, w]`` each (grey, dx, dy); InputError
    for a non-finite flow value (:func:`_finite_flow`)."""
    t_in = fr.shape[0]
    fl = _finite_flow(fl)
    if fl.shape[0] == t_in - 1:
        fl = np.concatenate([fl, fl[-1:]], axis=0)
    g = _resample_time(fr.astype(np.float32), t)
    f = _resample_time(fl, t) * np.float32((t_in - 1) / (t - 1))
    return (_resize_stack(g, h, w), _resize_stack(np.ascontiguousarray(f[..., 0]), h, w),
            _resize_stack(np.ascontiguousarray(f[..., 1]), h, w))


def make_inputs(frames_beat: np.ndarray, flow_beat: np.ndarray, mask: np.ndarray | None = None,
                t: int = MODEL_T, h: int = MODEL_H, w: int = MODEL_W) -> tuple[np.ndarray, np.ndarray]:
    """Model inputs for one beat.

    Parameters
    ----------
    frames_beat : np.ndarray
        uint8 ``[T_in, h0, w0]`` grey frames of one beat on the analysis grid (usually
        T_in = 32, 256x352).
    flow_beat : np.ndarray
        float32 ``[T_in, h0, w0, 2]`` or ``[T_in - 1, h0, w0, 2]``: dense flow (dx, dy) in
        analysis-grid px per frame step of that beat. With ``T_in - 1`` steps the last step
        is repeated so that each frame has one flow field.
    mask : np.ndarray or None
        bool/uint8 ``[h0, w0]`` sector mask (nonzero = inside), or None for the whole frame.
    t, h, w : int
        Model grid (default 32 x 128 x 176).

    Returns
    -------
    spatial : np.ndarray
        float32 ``[1, 1, t, h, w]``.
    temporal : np.ndarray
        float32 ``[1, 2, t, h, w]`` (channel 0 = dx, 1 = dy).

    Raises
    ------
    InputError
        Wrong dtypes/shapes, non-finite flow, or an empty mask.
    """
    fr = np.asarray(frames_beat)
    fl = np.asarray(flow_beat)
    if fr.ndim != 3 or fr.dtype != np.uint8:
        raise InputError(f"frames_beat must be uint8 [T,h,w]; got {fr.dtype} {fr.shape}")
    t_in, h0, w0 = fr.shape
    if t_in < 2 or h0 < 2 or w0 < 2:
        raise InputError(f"frames_beat is too small: {fr.shape}; need at least 2 frames of 2x2 pixels")
    if fl.ndim != 4 or fl.shape[1:] != (h0, w0, 2) or fl.shape[0] not in (t_in, t_in - 1):
        raise InputError(f"flow_beat must be [T,h,w,2] or [T-1,h,w,2] matching frames {fr.shape}; got {fl.shape}")
    if mask is None:
        m = np.ones((h0, w0), np.float32)
    else:
        mk = np.asarray(mask)
        if mk.shape != (h0, w0):
            raise InputError(f"mask must be [h,w] = {(h0, w0)}; got {mk.shape}")
        m = (mk != 0).astype(np.float32)
        if m.sum() < 1:
            raise InputError("mask is empty; there is no sector to analyse")

    mm = _resize_stack(m[None], h, w)[0] > 0.5
    if not mm.any():
        raise InputError("mask is empty at the model resolution; the sector is too small")
    if t_in == t:  # no resampling in time: plane by plane, without beat-sized temporaries
        g, dx, dy = _resize_planes(fr, fl, h, w)
    else:
        g, dx, dy = _resample_and_resize(fr, fl, t, h, w)
    sx, sy = w / w0, h / h0
    dx *= np.float32(sx)
    dy *= np.float32(sy)

    vals = g[:, mm]
    mean = float(vals.mean())
    std = max(float(vals.std()), 1.0)
    g = np.clip((g - mean) / std, -5.0, 5.0) * mm
    temporal = np.clip(np.stack([dx, dy]) / FLOW_SCALE, -10.0, 10.0) * mm
    return (g[None, None].astype(np.float32), temporal[None].astype(np.float32))


__all__ = ["MODEL_T", "MODEL_H", "MODEL_W", "FLOW_SCALE", "INPUT_SPEC", "make_inputs", "beat_inputs"]


def beat_inputs(frames: np.ndarray, flow: np.ndarray, mask: np.ndarray | None, ed: int, next_ed: int,
                n: int = MODEL_T) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One beat of a clip, ``ed`` to ``next_ed`` (frame indices), resampled to ``n`` frames and
    made into model inputs (:func:`make_inputs`, default model grid).

    ``frames`` uint8 ``[T, H, W]`` and ``flow`` ``[T-1, H, W, 2]`` on the analysis grid, ``mask``
    ``[H, W]``. Returns ``(frames_beat [n, H, W], flow_beat [n, H, W, 2], spatial
    [1,1,MODEL_T,h,w], temporal [1,2,MODEL_T,h,w])``.
    """
    from ..cycle import resample_beat

    frames_beat = resample_beat(frames, ed, next_ed, n, kind="frames")
    flow_beat = resample_beat(flow, ed, next_ed, n, kind="flow")
    spatial, temporal = make_inputs(frames_beat, flow_beat, mask)
    return frames_beat, flow_beat, spatial, temporal
