"""Fuzz the flow binding and the Python API with random shapes, strides, dtypes, values
and parameters: every call returns a finite float32 [T-1,H,W,2] array or raises
ValueError / TTSFastError, never crashes or hangs."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ttsfast._nativelib import native
from ttsfast.errors import TTSFastError
from ttsfast.flow import dense_flow

DTYPES = [np.uint8, np.float32, np.float64, np.int16, np.uint16, np.int32, np.bool_, np.complex64]
ALLOWED = (ValueError, TTSFastError)


@st.composite
def arrays(draw):
    """A random array (possibly a strided or transposed view) with random values."""
    ndim = draw(st.sampled_from([1, 2, 3, 3, 3, 3, 4]))
    shape = tuple(draw(st.integers(0, 40)) if i else draw(st.integers(0, 5)) for i in range(ndim))
    dtype = draw(st.sampled_from(DTYPES))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    base_shape = tuple(2 * s + 1 for s in shape)
    kind = draw(st.sampled_from(["noise", "const", "special"]))
    if kind == "noise":
        base = rng.uniform(-300, 300, base_shape)
    elif kind == "const":
        base = np.full(base_shape, draw(st.sampled_from([0.0, 128.0, 255.0, -1.0])))
    else:
        base = rng.choice(np.array([0.0, 1.0, np.nan, np.inf, -np.inf, 1e30, -1e30, 255.0]),
                          size=base_shape)
    with np.errstate(invalid="ignore", over="ignore"):
        if np.issubdtype(dtype, np.integer):
            base = np.nan_to_num(base, nan=0, posinf=0, neginf=0)
            info = np.iinfo(dtype)
            base = np.clip(base, info.min, info.max)
        arr = base.astype(dtype)
    view = draw(st.sampled_from(["contig", "step", "transpose", "negative"]))
    sl = tuple(slice(0, s) for s in shape)
    if view == "step":
        sl = tuple(slice(0, 2 * s, 2) for s in shape)
    a = arr[sl]
    if view == "transpose" and a.ndim >= 2:
        a = np.swapaxes(a, -1, -2)
    elif view == "negative":
        a = a[..., ::-1]
    return a


def _check(out, frames):
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    t, h, w = frames.shape
    assert out.shape == (t - 1, h, w, 2)
    assert np.isfinite(out).all()


valid_params = st.fixed_dictionaries({
    "pyr_scale": st.floats(0.2, 0.9),
    "levels": st.integers(1, 5),
    "winsize": st.sampled_from([1, 3, 5, 9, 15, 21, 31]),
    "iterations": st.integers(1, 4),
    "poly_n": st.sampled_from([5, 7]),
    "poly_sigma": st.floats(0.5, 2.0),
    "gaussian": st.booleans(),
})

wild_params = st.fixed_dictionaries({
    "pyr_scale": st.sampled_from([0.5, 0.3, 0.8, 0.0, 1.0, -1.0, float("nan"), 0.99]),
    "levels": st.sampled_from([1, 2, 3, 0, -1, 40]),
    "winsize": st.sampled_from([1, 3, 5, 21, 2, 0, -5, 1001]),
    "iterations": st.sampled_from([1, 2, 3, 0, -1]),
    "poly_n": st.sampled_from([5, 7, 3, 6]),
    "poly_sigma": st.sampled_from([1.1, 1.5, 0.0, -1.0, 50.0, float("inf")]),
    "gaussian": st.booleans(),
})

params = st.one_of(valid_params, valid_params, wild_params)


@st.composite
def frames_any(draw):
    """Mostly well-formed clips (to check results), sometimes anything (to check errors)."""
    if draw(st.integers(0, 2)) == 0:
        return draw(arrays())
    t = draw(st.integers(2, 4))
    h = draw(st.integers(11, 70))
    w = draw(st.integers(11, 70))
    dtype = draw(st.sampled_from([np.uint8, np.float32, np.float64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    a = (rng.uniform(0, 255, (t, h, w * 2))).astype(dtype)
    if draw(st.booleans()):
        a[:, : h // 2] = 0  # a black region, as outside an echo sector
    return a[:, :, ::2] if draw(st.booleans()) else np.ascontiguousarray(a[:, :, :w])


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(frames=frames_any(), p=params, threads=st.sampled_from([0, 1, 2, 3, -1]),
       use_mask=st.sampled_from([None, "ok", "bad_shape", "bad_dtype"]))
def test_fuzz_native_binding(frames, p, threads, use_mask):
    mask = None
    if use_mask == "ok" and frames.ndim == 3:
        mask = np.ones(frames.shape[1:], bool)
    elif use_mask == "bad_shape":
        mask = np.ones((3, 4), bool)
    elif use_mask == "bad_dtype" and frames.ndim == 3:
        mask = np.ones(frames.shape[1:], np.float32)
    try:
        out = native.dense_flow_farneback(frames, p["pyr_scale"], p["levels"], p["winsize"],
                                          p["iterations"], p["poly_n"], p["poly_sigma"],
                                          p["gaussian"], mask, threads)
    except ALLOWED:
        return
    _check(out, frames)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(frames=frames_any(), p=params, threads=st.sampled_from([None, 1, 2, 0]),
       as_list=st.booleans())
def test_fuzz_python_api(frames, p, threads, as_list):
    inp = list(frames) if as_list and frames.ndim >= 1 else frames
    try:
        out = dense_flow(inp, **p, threads=threads)
    except ALLOWED:
        return
    _check(out, np.asarray(frames))


@pytest.mark.parametrize("shape", [(2, 11, 11), (2, 11, 200), (2, 200, 11), (3, 33, 47), (2, 64, 31)])
def test_small_and_odd_shapes_are_finite(shape):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, shape, dtype=np.uint8)
    for gaussian in (False, True):
        out = dense_flow(frames, gaussian=gaussian, winsize=31, levels=5)
        _check(out, frames)
