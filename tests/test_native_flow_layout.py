"""The native flow engine split over csrc/flow_*.cpp: the pair scheduler (common.hpp's guided
scheduling), the profile dict and the order of argument checks of dense_flow_farneback."""
from __future__ import annotations

import numpy as np
import pytest

from ttsfast._nativelib import native

ARGS = (0.5, 3, 21, 3, 5, 1.1, False)
STEPS = ["pyramid", "poly_exp", "update_matrices_init", "window_vertical", "window_horizontal",
         "solve", "update_matrices_iter", "flow_upsample", "output"]


def _clip(T=23, H=72, W=88, seed=3):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (H + 8, W + 8)).astype(np.float32)
    frames = np.stack([base[t % 5: t % 5 + H, (t // 5) % 4: (t // 5) % 4 + W] for t in range(T)])
    mask = np.zeros((H, W), bool)
    mask[6:H - 4, 10:W - 6] = True
    return np.ascontiguousarray(frames.astype(np.uint8)), mask


def test_thread_counts_and_segments_give_identical_flow():
    frames, mask = _clip()
    ref = native.dense_flow_farneback(frames, *ARGS, mask, 1, edge_margin=4)
    for threads in (2, 3, 5, 22, 64):
        out = native.dense_flow_farneback(frames, *ARGS, mask, threads, edge_margin=4)
        np.testing.assert_array_equal(out, ref)
    # every pair is computed alone: a sub-clip gives the same pairs
    sub = native.dense_flow_farneback(np.ascontiguousarray(frames[7:12]), *ARGS, mask, 2, edge_margin=4)
    np.testing.assert_array_equal(sub, ref[7:11])


def test_float_and_uint8_frames_agree():
    frames, mask = _clip(T=6)
    a = native.dense_flow_farneback(frames, *ARGS, mask, 2)
    b = native.dense_flow_farneback(frames.astype(np.float32), *ARGS, mask, 2)
    np.testing.assert_array_equal(a, b)


def test_profile_dict_keys():
    frames, mask = _clip(T=5)
    out, prof = native.dense_flow_farneback(frames, *ARGS, mask, 3, True)
    assert list(prof) == STEPS + ["threads", "levels_used", "computed_fraction"]
    assert prof["threads"] == 3 and prof["levels_used"] == 2
    assert 0 < prof["computed_fraction"] <= 1
    assert all(isinstance(prof[k], float) and prof[k] >= 0 for k in STEPS)
    np.testing.assert_array_equal(out, native.dense_flow_farneback(frames, *ARGS, mask, 1))


def test_checks_reported_in_order():
    frames, _ = _clip(T=3)
    bad = frames.astype(np.float32)
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="edge_margin"):  # parameters before the mask
        native.dense_flow_farneback(frames, *ARGS, np.zeros((2, 2), bool), 1, edge_margin=99)
    with pytest.raises(ValueError, match="mask must have shape"):  # mask before the float scan
        native.dense_flow_farneback(bad, *ARGS, np.zeros((2, 2), bool), 1)
    with pytest.raises(ValueError, match="finite intensities"):
        native.dense_flow_farneback(bad, *ARGS, None, 1)


def _disc_clip(T=12, H=160, W=224, seed=0):
    """Textured disc on black: without a mask the work is restricted to the content spans."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (H + 16, W + 16)).astype(np.float32)
    yy, xx = np.mgrid[0:H, 0:W]
    disc = np.hypot((yy - H / 2) / H, (xx - W / 2) / W) < 0.3
    frames = np.stack([np.where(disc, base[t % 4: t % 4 + H, (t * 3) % 7: (t * 3) % 7 + W], 0)
                       for t in range(T)])
    return np.ascontiguousarray(frames.astype(np.uint8))


@pytest.mark.parametrize("mask", [False, True])
def test_thread_segments_reuse_buffers_without_stale_data(mask):
    # A thread's second segment of pairs re-expands its first frame into a buffer last used
    # at another alignment offset; outside the spans it must read 0 as on a fresh buffer (it
    # read the previous frame's expansion, shifted: the flow then depended on which pairs
    # each thread took).  winsize=1 and many small levels give flows that sample there.
    frames = _disc_clip()
    m = None
    if mask:
        m = np.zeros(frames.shape[1:], bool)
        m[30:130, 40:190] = True
    args = (0.7, 32, 1, 1, 5, 1.1, False)
    ref = native.dense_flow_farneback(frames, *args, m, 1)
    for threads in (2, 2, 2, 3):
        np.testing.assert_array_equal(native.dense_flow_farneback(frames, *args, m, threads), ref)
    np.testing.assert_array_equal(
        native.dense_flow_farneback(np.ascontiguousarray(frames[5:9]), *args, m, 2), ref[5:8])
