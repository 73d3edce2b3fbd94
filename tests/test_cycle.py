"""Cardiac cycle detection: analytic flow, real clips, synthetic clips with ground truth."""
from __future__ import annotations

import numpy as np
import pytest

from accuracy_targets import check_target, target_cases
from conftest import read_grey, real_clip_path
from ttsfast.cycle import CycleResult, detect_cycles, longitudinal_signal, resample_beat
from ttsfast.errors import InputError, QualityError
from ttsfast.flow import dense_flow


# ----------------------------------------------------------------------------- helpers

def _av_position(t: np.ndarray, period: float) -> np.ndarray:
    """Analytic AV-plane position toward the apex (px): fast systolic rise over 35 % of the beat,
    early-diastolic fall, diastasis, atrial kick. ED at phase 0 (minimum), ES at 0.35 (maximum)."""
    ph = np.mod(t / period, 1.0)
    pos = np.empty_like(ph)
    sys_ = ph < 0.35
    pos[sys_] = 0.5 - 0.5 * np.cos(np.pi * ph[sys_] / 0.35)
    e = (ph >= 0.35) & (ph < 0.6)
    pos[e] = 0.25 + 0.75 * (0.5 + 0.5 * np.cos(np.pi * (ph[e] - 0.35) / 0.25))
    d = (ph >= 0.6) & (ph < 0.8)
    pos[d] = 0.25
    a = ph >= 0.8
    pos[a] = 0.25 * (0.5 + 0.5 * np.cos(np.pi * (ph[a] - 0.8) / 0.2))
    return 12.0 * pos


def _flow_from_position(pos: np.ndarray, h: int = 40, w: int = 48, noise: float = 0.05, seed: int = 0):
    """Flow [T-1,h,w,2] of a block of tissue moving up (toward the apex) by pos(t) px, plus
    still background and white noise."""
    rng = np.random.default_rng(seed)
    vel = np.diff(pos)
    flow = rng.normal(0, noise, (vel.size, h, w, 2)).astype(np.float32)
    flow[:, 10:30, 12:36, 1] += -vel[:, None, None].astype(np.float32)
    return flow


def _truth_ed_es(period: float, n: int, phase0: float) -> tuple[np.ndarray, np.ndarray]:
    k = np.arange(-2, n / period + 2)
    ed = (k - phase0) * period
    es = ed + 0.35 * period
    return ed[(ed >= 0) & (ed <= n - 1)], es[(es >= 0) & (es <= n - 1)]


# ----------------------------------------------------------------------------- analytic

@pytest.mark.parametrize("period,phase0,fps", [(36.3, 0.1, 55.0), (28.9, 0.6, 40.0), (21.7, 0.33, 30.0)])
def test_period_and_ed_es_analytic(period, phase0, fps):
    n = 110
    t = np.arange(n) + phase0 * period
    flow = _flow_from_position(_av_position(t, period))
    res = detect_cycles(flow, fps=fps)
    assert isinstance(res, CycleResult)
    assert res.period_frames == pytest.approx(period, rel=0.03)
    assert res.heart_rate_bpm == pytest.approx(60 * fps / period, rel=0.03)
    ed_true, es_true = _truth_ed_es(period, n, phase0)
    assert len(res.beats) >= int(n / period) - 1
    for ed, es, ned in res.beats:
        assert np.min(np.abs(ed_true - ed)) <= 1.0
        assert np.min(np.abs(ed_true - ned)) <= 1.0
        assert np.min(np.abs(es_true - es)) <= 1.0
        assert 0.8 * period <= ned - ed <= 1.25 * period


def test_no_fps_gives_period_but_no_bpm():
    period = 30.0
    flow = _flow_from_position(_av_position(np.arange(100.0), period))
    res = detect_cycles(flow)
    assert res.heart_rate_bpm is None
    assert res.period_frames == pytest.approx(period, rel=0.03)
    assert any(w.code == "fps_unknown" for w in res.warnings)


def test_no_motion_raises():
    flow = np.zeros((60, 32, 32, 2), np.float32)
    with pytest.raises(QualityError, match="no motion"):
        detect_cycles(flow, fps=50)


def test_random_motion_is_not_periodic():
    rng = np.random.default_rng(3)
    flow = rng.normal(0, 0.5, (90, 24, 24, 2)).astype(np.float32)
    with pytest.raises(QualityError):
        detect_cycles(flow, fps=50)


def test_less_than_one_beat_raises():
    period = 40.0
    flow = _flow_from_position(_av_position(np.arange(25.0), period))
    with pytest.raises(QualityError, match="complete beat|too short|no complete|periodic"):
        detect_cycles(flow, fps=50)


@pytest.mark.parametrize("bad", [np.zeros((10, 8, 8)), np.zeros((10, 8, 8, 3)), "x", np.zeros((0, 8, 8, 2))])
def test_bad_flow_input(bad):
    with pytest.raises(InputError):
        detect_cycles(bad, fps=50)


def test_bad_fps():
    flow = _flow_from_position(_av_position(np.arange(80.0), 30.0))
    with pytest.raises(InputError):
        detect_cycles(flow, fps=-3)


def test_single_beat_mode():
    period = 31.0
    flow = _flow_from_position(_av_position(np.arange(32.0), period))
    res = detect_cycles(flow, single_beat=True, fps=None)
    (ed, es, ned), = res.beats
    assert (ed, ned) == (0, 31)
    assert abs(es - 0.35 * period) <= 1
    assert res.confidence > 0.8


def test_signal_axis_changes_sign():
    flow = _flow_from_position(_av_position(np.arange(50.0), 25.0))
    up = longitudinal_signal(flow)
    down = longitudinal_signal(flow, axis=np.array([0.0, 1.0]))
    np.testing.assert_allclose(up, -down, atol=1e-9)


def test_trimmed_signal_ignores_a_fast_minority():
    # 94 % of the tissue moves 1 px/frame toward the apex, 6 % (a leaflet) 6 px/frame away
    flow = np.zeros((3, 20, 50, 2), np.float32)
    flow[..., 1] = -1.0
    flow[:, :, :3, 1] = 6.0
    plain = longitudinal_signal(flow)
    trimmed = longitudinal_signal(flow, trim=0.1)
    assert np.all(plain < 0.9)  # pulled by the minority
    np.testing.assert_allclose(trimmed, 1.0, atol=1e-6)
    with pytest.raises(InputError, match="trim"):
        longitudinal_signal(flow, trim=0.5)


# ----------------------------------------------------------------------------- resampling

def test_resample_frames_linear():
    t = np.arange(40, dtype=np.float32)
    frames = np.broadcast_to(t[:, None, None], (40, 4, 5)).astype(np.float32)
    out = resample_beat(frames, 3, 34, 32)
    assert out.shape == (32, 4, 5)
    np.testing.assert_allclose(out[:, 0, 0], np.linspace(3, 34, 32), atol=1e-5)
    u8 = resample_beat(np.clip(frames * 5, 0, 255).astype(np.uint8), 3, 34, 32)
    assert u8.dtype == np.uint8 and u8.shape == (32, 4, 5)


def test_resample_flow_integrates_motion():
    flow = np.zeros((40, 6, 7, 2), np.float32)
    flow[..., 1] = -0.5  # 0.5 px/frame toward the apex
    out = resample_beat(flow, 2, 33, 32, kind="flow")
    assert out.shape == (31, 6, 7, 2)
    np.testing.assert_allclose(out[..., 1], -0.5 * 31 / 31, atol=1e-5)
    np.testing.assert_allclose(out[..., 1].sum(axis=0), -0.5 * 31, atol=1e-4)


def test_resample_bad_args():
    with pytest.raises(InputError):
        resample_beat(np.zeros((10, 3, 3)), 5, 12)
    with pytest.raises(InputError):
        resample_beat(np.zeros((10, 3, 3)), 5, 3)
    with pytest.raises(InputError):
        resample_beat(np.zeros((10, 3, 3)), 0, 5, kind="nope")


# ----------------------------------------------------------------------------- real clips

def test_real_ge_clip_91_bpm():
    frames = read_grey(real_clip_path("ctrl_a4c_ge_55hz.mp4"))
    res = detect_cycles(dense_flow(frames), fps=55.0)
    print(f"\nctrl_a4c_ge_55hz: {res.heart_rate_bpm:.1f} bpm (screen says 91), period {res.period_frames:.2f} "
          f"frames (expected 36.3), beats {res.beats}, confidence {res.confidence:.2f}")
    assert res.heart_rate_bpm == pytest.approx(91.0, rel=0.05)
    assert len(res.beats) >= 2
    for ed, es, ned in res.beats:
        assert 0.3 < (es - ed) / (ned - ed) < 0.7


def test_real_philips_clip_is_less_than_a_beat():
    frames = read_grey(real_clip_path("tts_a4c_philips.mp4"))
    flow = dense_flow(frames)
    with pytest.raises(QualityError, match="beat"):
        detect_cycles(flow, fps=40.0)
    with pytest.raises(QualityError):
        detect_cycles(flow)


def test_real_stemi_single_beat():
    frames = read_grey(real_clip_path("stemi_a4c_roi_cycle32.mp4"), size=(160, 128))
    res = detect_cycles(dense_flow(frames), single_beat=True)
    (ed, es, ned), = res.beats
    assert (ed, ned) == (0, 31)
    assert 8 <= es <= 22
    assert res.confidence > 0.5


# ----------------------------------------------------------------------------- synthetic clips

def _synth():
    from ttsfast.synth import generate

    return generate


SYNTH_PRESETS = ["normal", "tts", "stemi_anterior"]


@pytest.fixture(scope="module")
def synth_cycles():
    """``synth_cycles(preset)`` -> (clip, ground truth, CycleResult) of a synthetic clip (seed 1),
    computed once per module."""
    done = {}

    def get(preset):
        if preset not in done:
            clip, gt = _synth()(preset=preset, seed=1)
            done[preset] = (clip, gt, detect_cycles(dense_flow(clip.frames), fps=clip.fps))
        return done[preset]

    return get


def _es_errors(clip, gt, res):
    """Whole-frame ES errors of the detected beats and sub-frame ES errors against the model's
    continuous ES times (frames)."""
    es_true = np.asarray(gt.es_frames, float)
    whole = [float(np.min(np.abs(es_true - es))) for _, es, _ in res.beats]
    tm = gt.model.timing
    ed_cont = (tm.t0 + tm.period * np.arange(-1, 8)) * clip.fps
    es_cont = ed_cont + tm.t_es * clip.fps
    sub = [float(np.min(np.abs(es_cont - times[1]))) for times in res.beat_times]
    return whole, sub


@pytest.mark.parametrize("preset", SYNTH_PRESETS)
def test_synth_ed_es_and_heart_rate(preset, synth_cycles, accuracy_record):
    """Guards; the ES target (within 1 frame) is test_synth_es_within_one_frame_target."""
    clip, gt, res = synth_cycles(preset)
    assert res.heart_rate_bpm == pytest.approx(gt.heart_rate_bpm, rel=0.03)
    assert res.beats
    ed_true = np.asarray(gt.ed_frames, float)
    es_true = np.asarray(gt.es_frames, float)
    for ed, es, ned in res.beats:
        assert np.min(np.abs(ed_true - ed)) <= 1
        assert np.min(np.abs(ed_true - ned)) <= 1
        assert np.min(np.abs(es_true - es)) <= 2
    # sub-frame end-diastoles against the model's continuous ED times (frames)
    tm = gt.model.timing
    ed_cont = (tm.t0 + tm.period * np.arange(-1, 8)) * clip.fps
    err = [np.min(np.abs(ed_cont - t)) for times in res.beat_times for t in (times[0], times[2])]
    _, err_es = _es_errors(clip, gt, res)
    accuracy_record("cycle_errors", preset, {"heart_rate_bpm": res.heart_rate_bpm,
                                             "true_heart_rate_bpm": gt.heart_rate_bpm,
                                             "sub_frame_ed_frames": [float(x) for x in err],
                                             "sub_frame_es_frames": err_es}, beats=res.beats)
    assert max(err) <= 1.0  # the issue: within one frame
    # sub-frame end-systoles against the continuous ES times: 48 clips (seeds 0-15) gave at most
    # 1.40 frames, 6 of 48 clips beyond 1 (the IVRT prior cannot know each heart's IVRT)
    assert max(err_es) <= 1.5


@pytest.mark.parametrize("key,case", target_cases("cycle_es_frames", SYNTH_PRESETS))
def test_synth_es_within_one_frame_target(key, case, synth_cycles, accuracy_record):
    """Every end-systole within 1 frame of the truth (whole-frame and sub-frame)."""
    whole, sub = _es_errors(*synth_cycles(case))
    check_target(key, case, max(whole + sub), accuracy_record, whole_frame=whole, sub_frame=sub)


@pytest.mark.parametrize("phase0", [0.0, 0.15, 0.85])
def test_slow_heart_rate_short_clip_uses_extrema(phase0):
    """72 frames at 50 frames/s and 50 bpm (period 60 frames): too short for autocorrelation, but
    a complete beat is there and must be found, with the period within 3 %."""
    period, fps, n = 60.0, 50.0, 72
    t = np.arange(n) + phase0 * period
    flow = _flow_from_position(_av_position(t, period), noise=0.05, seed=2)
    ed_true, es_true = _truth_ed_es(period, n, phase0)
    n_complete = int(np.sum(ed_true + period <= n - 1 + 1e-9))
    if n_complete == 0:
        with pytest.raises(QualityError):
            detect_cycles(flow, fps=fps)
        return
    res = detect_cycles(flow, fps=fps)
    assert res.heart_rate_bpm == pytest.approx(50.0, rel=0.03)
    for ed, es, ned in res.beats:
        assert np.min(np.abs(ed_true - ed)) <= 1.0
        assert np.min(np.abs(es_true - es)) <= 1.0
