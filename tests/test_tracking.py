"""Point tracking: the tracking kernel on analytic flows (track_points, correct_drift,
sample_flow, resample_tracks), LK (track_lk), the DIS tracking flow, and tracks on synthetic
clips against ground truth (with the original study's LK tracker beside)."""
from __future__ import annotations

import numpy as np
import pytest

from _synth_helpers import PRESETS, synth_case
from ttsfast.errors import InputError
from ttsfast.mechanics import measure_mechanics
from ttsfast.tracking import correct_drift, resample_tracks, sample_flow, track_lk, track_points

H, W = 96, 120

# ----------------------------------------------------------------------------- tracking kernel

def _affine_flow(T, a, b, h=H, w=W):
    """flow_t(x) = a + b @ (x - c) for every frame: a known velocity field."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    c = np.array([w / 2, h / 2])
    dx = a[0] + b[0, 0] * (xx - c[0]) + b[0, 1] * (yy - c[1])
    dy = a[1] + b[1, 0] * (xx - c[0]) + b[1, 1] * (yy - c[1])
    f = np.stack([dx, dy], -1).astype(np.float32)
    return np.broadcast_to(f, (T, h, w, 2)).copy(), c


def test_track_constant_flow_exact():
    flow, _ = _affine_flow(20, np.array([0.3, -0.45]), np.zeros((2, 2)))
    p0 = np.array([[30.2, 50.7], [60.0, 60.0]])
    r = track_points(flow, p0)
    assert r.points.shape == (21, 2, 2)
    np.testing.assert_allclose(r.points[-1], p0 + 20 * np.array([0.3, -0.45]), atol=1e-4)
    assert r.inside.all()


def test_track_linear_field_matches_euler_recursion():
    b = np.array([[0.01, -0.02], [0.015, -0.01]])
    flow, c = _affine_flow(15, np.array([0.1, 0.2]), b)
    p = np.array([[40.3, 33.9], [70.5, 51.25], [55.0, 20.0]])
    r = track_points(flow, p)
    for k in range(15):  # bilinear interpolation is exact on a linear field
        p = p + np.array([0.1, 0.2]) + (p - c) @ b.T
    np.testing.assert_allclose(r.points[-1], p, atol=1e-4)


def test_forward_backward_error_small_for_consistent_flow():
    flow, _ = _affine_flow(10, np.array([0.5, -0.25]), np.zeros((2, 2)))
    r = track_points(flow, np.array([[50.0, 40.0]]), flow_backward=-flow)
    assert r.fb_error.shape == (10, 1)
    assert r.fb_error.max() < 1e-5
    assert r.reliable.all()
    r2 = track_points(flow, np.array([[50.0, 40.0]]), flow_backward=np.zeros_like(flow))
    np.testing.assert_allclose(r2.fb_error, np.hypot(0.5, 0.25), atol=1e-5)
    assert not r2.reliable.any() and r2.warnings


def test_points_leaving_the_image_are_flagged():
    flow, _ = _affine_flow(30, np.array([3.0, 0.0]), np.zeros((2, 2)))
    r = track_points(flow, np.array([[100.0, 40.0], [10.0, 40.0]]))
    assert list(r.inside) == [False, True]


def test_drift_correction_closes_the_beat():
    t = np.linspace(0, 1, 33)
    true = np.stack([10 + 5 * np.sin(np.pi * t), 20 + 0 * t], -1)[:, None, :]
    drifted = true + t[:, None, None] * np.array([1.5, -0.8])
    corr, drift = correct_drift(drifted)
    np.testing.assert_allclose(drift[0], [1.5, -0.8], atol=1e-12)
    np.testing.assert_allclose(corr, true, atol=1e-12)


def test_track_bad_inputs():
    flow, _ = _affine_flow(5, np.zeros(2), np.zeros((2, 2)))
    with pytest.raises(InputError):
        track_points(flow, np.array([[200.0, 10.0]]))
    with pytest.raises(InputError):
        track_points(flow, np.array([[np.nan, 10.0]]))
    with pytest.raises(InputError):
        track_points(flow, np.zeros((3, 3)))
    with pytest.raises(InputError):
        track_points(flow[..., :1], np.array([[1.0, 1.0]]))
    with pytest.raises(InputError):
        track_points(flow, np.array([[1.0, 1.0]]), t0=3, t1=2)


def test_sample_flow_and_resample_tracks():
    flow, _ = _affine_flow(4, np.array([1.0, 2.0]), np.zeros((2, 2)))
    s = sample_flow(flow, np.full((4, 3, 2), 10.5))
    np.testing.assert_allclose(s[..., 0], 1.0, atol=1e-6)
    tr = np.arange(5, dtype=float)[:, None] * np.ones((5, 2))
    np.testing.assert_allclose(resample_tracks(tr, 9)[:, 0], np.linspace(0, 4, 9))


def test_lk_refinement_gates_on_the_flow_prediction():
    """flow+lk: LK refines a slightly wrong prediction, but a step that LK moves farther than
    max_correction_px from the prediction (or that fails the forward-backward check) keeps it."""
    import cv2
    rng = np.random.default_rng(1)
    base = cv2.GaussianBlur((rng.random((H + 40, W + 40)) * 255).astype(np.float32), (0, 0), 1.5)
    frames = np.stack([np.clip(cv2.warpAffine(base, np.float32([[1, 0, -0.5 * k], [0, 1, 0.3 * k]]),
                                              (W + 40, H + 40))[20:-20, 20:-20] * 2 - 128, 0, 255)
                       for k in range(6)]).astype(np.uint8)
    p0 = np.array([[60.0, 48.0], [40.0, 50.0]])
    truth = p0[None] + np.arange(6)[:, None, None] * np.array([-0.5, 0.3])
    near = truth + np.array([0.4, -0.3]) * (np.arange(6) > 0)[:, None, None]  # 0.5 px off the truth
    r = track_lk(frames, p0, init=near, win_size=13, max_level=1, fb_max_px=0.2)
    np.testing.assert_allclose(r.points, truth, atol=0.15)
    far = truth + np.array([3.0, 0.0]) * np.arange(6)[:, None, None]  # each step 3 px off
    r2 = track_lk(frames, p0, init=far, win_size=13, max_level=1, max_correction_px=1.0)
    np.testing.assert_allclose(r2.points, far, atol=1e-4)  # LK disagrees by > 1 px: prediction kept


def test_lk_tracks_a_translated_texture():
    import cv2
    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur((rng.random((H + 40, W + 40)) * 255).astype(np.float32), (0, 0), 1.5)
    frames = np.stack([np.clip(cv2.warpAffine(base, np.float32([[1, 0, -0.6 * k], [0, 1, 0.4 * k]]),
                                              (W + 40, H + 40))[20:-20, 20:-20] * 2 - 128, 0, 255)
                       for k in range(8)]).astype(np.uint8)
    r = track_lk(frames, np.array([[60.0, 48.0]]), win_size=31, max_level=2)
    np.testing.assert_allclose(r.points[-1, 0], [60 - 0.6 * 7, 48 + 0.4 * 7], atol=0.2)


# ----------------------------------------------------------------------------- synthetic clips

def _lk_study(frames, p0):
    """The original study's tracker: frame-to-frame pyramidal LK, 75 px window, 5 levels."""
    return track_lk(frames, p0, win_size=75, max_level=5).points


@pytest.mark.parametrize("preset", PRESETS)
def test_synth_tracking_error(preset, synth_cache, accuracy_record):
    clip, gt, flow = synth_case(synth_cache, preset)
    truth = np.concatenate([gt.wall_points["inferoseptal"], gt.wall_points["anterolateral"],
                            np.stack([gt.landmarks[k] for k in ("septal_annulus", "lateral_annulus", "apex")], 1)], 1)
    from ttsfast.flow import tracking_flow
    from ttsfast.mechanics import tracking_box

    ours = track_points(flow, truth[0]).points
    dis = track_points(tracking_flow(clip.frames, roi=tracking_box(truth[0]), reference=flow), truth[0]).points
    e = np.linalg.norm(ours - truth, axis=-1)
    e_dis = np.linalg.norm(dis - truth, axis=-1)
    e_lk = np.linalg.norm(_lk_study(clip.frames, truth[0]) - truth, axis=-1)

    for tracker, x in (("farneback", e), ("dis_held_default", e_dis), ("study_lk_75px_5", e_lk)):
        accuracy_record("tracking_error_px", f"{preset}/{tracker}", float(x.mean()), unit="px",
                        median=float(np.median(x)), p95=float(np.percentile(x, 95)), max=float(x.max()),
                        n_frames=clip.n_frames, n_points=truth.shape[1])
    assert e.mean() <= 1.0 and e_dis.mean() <= 1.0
    assert e_dis.mean() < e_lk.mean() and e.mean() < e_lk.mean()


def test_dis_tracker_on_a_tiny_grid_is_a_clear_error():
    """The DIS tracker needs a 16 px box: a 14 px high grid is refused with a QualityError that
    names the way out, not an error about a box the caller never passed."""
    from ttsfast.errors import QualityError

    rng = np.random.default_rng(1)
    frames = rng.integers(0, 255, (20, 14, 40), dtype=np.uint8)
    flow = np.zeros((19, 14, 40, 2), np.float32)
    flow[..., 1] = 0.1
    lm = {"septal_annulus": (10.0, 12.0), "lateral_annulus": (30.0, 12.0), "apex": (20.0, 1.0)}
    with pytest.raises(QualityError, match="method='flow'"):
        measure_mechanics(frames, flow, (0, 7, 19), landmarks=lm)
