"""Displacement, strain and velocities (measure_mechanics): analytic flows, real clips, and
synthetic clips against ground truth (accuracy targets: tests/accuracy_targets.py; the study's
LK tracker measured beside); annulus anchoring and beat closure. Landmarks: test_landmarks.py;
point tracking: test_tracking.py."""
from __future__ import annotations

import functools

import numpy as np
import pytest

from _synth_helpers import PRESETS, synth_case
from accuracy_targets import check_target, target_cases
from conftest import read_grey, real_clip_path
from ttsfast.errors import InputError, QualityError
from ttsfast.flow import dense_flow
from ttsfast.landmarks import wall_points
from ttsfast.mechanics import SEGMENTS, measure_mechanics, segment_lengths, strain_curves

H, W = 96, 120


# ----------------------------------------------------------------------------- strain

def test_segment_lengths_and_uniform_strain():
    wall = np.stack([np.full(31, 50.0), np.linspace(120, 30, 31)], -1)  # vertical wall, apex on top
    apex = wall[-1]
    frames = []
    for s in (1.0, 0.9, 0.8, 0.9, 1.0):  # uniform longitudinal shortening toward the apex
        frames.append(apex + (wall - apex) * np.array([1.0, s]))
    walls = {"inferoseptal": np.stack(frames), "anterolateral": np.stack(frames)[:, :, :] + [40, 0]}
    lens = segment_lengths(walls["inferoseptal"], np.array([0, 10, 20, 30]))
    np.testing.assert_allclose(lens[0], [30, 30, 30])
    sc = strain_curves(walls)
    for name in SEGMENTS + ("gls",):
        np.testing.assert_allclose(sc[name], [0, -10, -20, -10, 0], atol=1e-9)




def _beat_flow(T=33, h=H, w=W, excursion=12.0, sys_frac=0.4):
    """A vertical LV whose walls shorten uniformly toward a fixed apex (y=10): flow_t(x,y) =
    -(y - 10) * r_t, so every point moves by the same fraction of its distance to the apex."""
    t = np.arange(T, dtype=float)
    ph = t / (T - 1)
    frac = np.where(ph < sys_frac, 0.5 - 0.5 * np.cos(np.pi * ph / sys_frac),
                    0.5 + 0.5 * np.cos(np.pi * (ph - sys_frac) / (1 - sys_frac)))
    L0 = 80.0
    s = 1 - excursion / L0 * frac  # length scale relative to ED
    yy = np.mgrid[0:h, 0:w][0].astype(np.float64)
    flow = np.empty((T - 1, h, w, 2), np.float32)
    for k in range(T - 1):
        flow[k, ..., 0] = 0
        flow[k, ..., 1] = (yy - 10) * (s[k + 1] / s[k] - 1)
    frames = np.zeros((T, h, w), np.uint8)
    return frames, flow, s


def test_measures_on_analytic_shortening():
    frames, flow, s = _beat_flow()
    es = int(np.argmin(s))
    lm = dict(septal_annulus=(40.0, 90.0), lateral_annulus=(80.0, 90.0), apex=(60.0, 10.0))
    m = measure_mechanics(frames, flow, (0, es, 32), landmarks=lm, method="flow", fps=50.0, mm_per_px=0.5)
    # septal annulus at 80 px from the apex line moves 80*(1-s): the excursion is 12 px
    assert m.excursion_px["basal_inferoseptal"] == pytest.approx(12.0, abs=0.05)
    # the paper's measure: the 33-frame beat resampled to 32 frames, largest step per phase
    pos32 = np.interp(np.linspace(0, 32, 32), np.arange(33), 80 * s)
    st32 = np.abs(np.diff(pos32))
    es32 = round(es / 32 * 31)
    assert m.peak_displacement_px["basal_inferoseptal"]["systolic"] == pytest.approx(st32[:es32].max(), abs=0.02)
    assert m.peak_displacement_px["basal_inferoseptal"]["diastolic"] == pytest.approx(st32[es32:].max(), abs=0.02)
    assert m.peak_displacement_mm["basal_inferoseptal"]["systolic"] == pytest.approx(0.5 * st32[:es32].max(), abs=0.01)
    steps = np.abs(np.diff(80 * s))
    # exact strain of the curved walls under the vertical scaling (x kept, y -> 10 + (y-10) s)
    walls0 = {"inferoseptal": wall_points(np.array(lm["septal_annulus"]), np.array(lm["apex"]),
                                          np.array(lm["lateral_annulus"]), 31),
              "anterolateral": wall_points(np.array(lm["lateral_annulus"]), np.array(lm["apex"]),
                                           np.array(lm["septal_annulus"]), 31)}
    walls_t = {k: np.stack([np.stack([p[:, 0], 10 + (p[:, 1] - 10) * sk], -1) for sk in s])
               for k, p in walls0.items()}
    expect = strain_curves(walls_t)
    for seg in SEGMENTS:
        assert m.strain_peak_pct[seg] == pytest.approx(expect[seg].min(), abs=0.05)
    assert -16 < m.strain_peak_pct["basal_inferoseptal"] < -13  # near-vertical basal wall: ~ -15 %
    assert m.gls_pct == pytest.approx(expect["gls"].min(), abs=0.05)
    assert m.s_prime_cm_s["septal"] == pytest.approx(steps[:es].max() * 0.5 * 50 / 10, rel=0.01)
    d = m.to_dict()
    assert d["peak_displacement_px"]["basal_anterolateral"]["systolic"] is not None
    assert d["landmarks"]["source"] == "caller"
    assert len(d["curves"]["displacement_px"]["basal_inferoseptal"]) == 32


def test_flow_lk_on_textureless_float_frames_keeps_the_flow():
    """LK has nothing to lock on in blank frames: every step keeps the flow prediction, and
    non-uint8 frames are accepted (rescaled for LK)."""
    frames, flow, s = _beat_flow()
    lm = dict(septal_annulus=(40.0, 90.0), lateral_annulus=(80.0, 90.0), apex=(60.0, 10.0))
    a = measure_mechanics(frames, flow, (0, 13, 32), landmarks=lm, method="flow")
    b = measure_mechanics(frames.astype(np.float32), flow, (0, 13, 32), landmarks=lm, method="flow+lk")
    assert b.method == "flow+lk"
    for seg in SEGMENTS:
        assert b.strain_peak_pct[seg] == pytest.approx(a.strain_peak_pct[seg], abs=1e-3)  # float32 steps
    with pytest.raises(InputError):
        measure_mechanics(frames, flow, (0, 13, 32), landmarks=lm, method="flow+lk", lk_win_size=1)


def test_measures_in_original_pixels():
    frames, flow, s = _beat_flow()
    es = int(np.argmin(s))
    lm = dict(septal_annulus=(160.0, 360.0), lateral_annulus=(320.0, 360.0), apex=(240.0, 40.0))
    m = measure_mechanics(frames, flow, (0, es, 32), landmarks=lm, method="flow", to_grid=lambda a: np.asarray(a) / 4,
                          to_original=lambda a: np.asarray(a) * 4)
    assert m.excursion_px["basal_inferoseptal"] == pytest.approx(48.0, abs=0.2)
    assert m.peak_displacement_grid_px["basal_inferoseptal"]["systolic"] * 4 == pytest.approx(
        m.peak_displacement_px["basal_inferoseptal"]["systolic"], rel=1e-6)
    assert m.to_dict()["landmarks"]["apex"] == [240.0, 40.0]


def test_unmeasurable_values_are_none_with_warning():
    frames, flow, s = _beat_flow()
    lm = dict(septal_annulus=(40.0, 90.0), lateral_annulus=(80.0, 90.0), apex=(60.0, 10.0))
    m = measure_mechanics(frames, flow, (0, 13, 32), landmarks=lm, method="flow")
    assert m.s_prime_cm_s is None and m.e_prime_cm_s is None and m.peak_displacement_mm is None
    assert {"velocities_not_measured", "no_calibration"} <= {w.code for w in m.warnings}


def test_measure_bad_inputs():
    frames, flow, s = _beat_flow()
    lm = dict(septal_annulus=(40.0, 90.0), lateral_annulus=(80.0, 90.0), apex=(60.0, 10.0))
    with pytest.raises(InputError):
        measure_mechanics(frames, flow, (0, 40, 32), landmarks=lm)
    with pytest.raises(InputError):
        measure_mechanics(frames, flow[:-1], (0, 13, 32), landmarks=lm)
    with pytest.raises(InputError):
        measure_mechanics(frames, flow, (0, 13, 32), landmarks=lm, method="magic")
    with pytest.raises(QualityError):
        measure_mechanics(frames, flow, (0, 1, 3), landmarks=lm)
    with pytest.raises(InputError):
        measure_mechanics(frames, flow, (0, 13, 32), landmarks={**lm, "apex": (60.0, 95.0)})


# ----------------------------------------------------------------------------- real clips

def test_real_ge_clip_drift_is_bounded():
    """Annulus points tracked over each beat of the GE control clip come back within a few px.
    Landmarks picked by hand on the 352x256 grid of the first ED frame."""
    from ttsfast.cycle import detect_cycles

    frames = read_grey(real_clip_path("ctrl_a4c_ge_55hz.mp4"))
    flow = dense_flow(frames)
    cyc = detect_cycles(flow, fps=55.0)
    lm = {"septal_annulus": (170, 150), "lateral_annulus": (216, 164), "apex": (184, 68)}
    drifts = []
    for beat, times in zip(cyc.beats, cyc.beat_times):
        m = measure_mechanics(frames, flow, beat, landmarks=lm, fps=55.0, beat_times=times, drift_correction=False)
        drifts.append([m.drift_px["septal_annulus"], m.drift_px["lateral_annulus"], m.drift_px["walls_median"]])
        exc = m.excursion_px
        assert 4 < exc["basal_inferoseptal"] < 30 and 4 < exc["basal_anterolateral"] < 30
    d = np.array(drifts)
    print(f"\nctrl_a4c_ge_55hz: drift per beat (septal, lateral, walls median) px: {np.round(d, 2).tolist()}")
    assert d.max() < 6.0  # about a third of the AV-plane excursion (~12 px); measured 1.5-3.6 px


def test_real_stemi_roi_one_cycle_closes():
    from ttsfast.cycle import detect_cycles

    frames = read_grey(real_clip_path("stemi_a4c_roi_cycle32.mp4"), size=(160, 128))
    flow = dense_flow(frames)
    cyc = detect_cycles(flow, single_beat=True)
    # septum on the left (x~52), lateral wall on the right, apex at the top of the cropped LV
    lm = {"septal_annulus": (52, 88), "lateral_annulus": (112, 90), "apex": (75, 8)}
    m = measure_mechanics(frames, flow, cyc.beats[0], landmarks=lm, drift_correction=False)
    print(f"\nstemi_a4c_roi_cycle32: beat {cyc.beats[0]}, drift px {m.drift_px}")
    assert m.drift_px["walls_median"] < 3.0


# ----------------------------------------------------------------------------- synthetic clips

def _true_flow(gt, n):
    return np.stack([np.nan_to_num(gt.true_flow(k)) for k in range(n)]).astype(np.float32)


def _measure_errors(m, tm):
    pk = max(abs(m.peak_displacement_px[s][ph] - tm["peak_displacement_px"][s][ph])
             for s in tm["peak_displacement_px"] for ph in ("systolic", "diastolic"))
    exc = max(abs(m.excursion_px[s] - tm["excursion_px"][s]) for s in tm["excursion_px"])
    strain = max(abs(m.strain_peak_pct[s] - tm["strain_peak_pct"][s]) for s in tm["strain_peak_pct"])
    gls = abs(m.gls_pct - tm["gls_pct"])
    vel = max(abs(getattr(m, q)[s] / tm[q][s] - 1) for q in ("s_prime_cm_s", "e_prime_cm_s")
              for s in ("septal", "lateral"))
    return pk, exc, strain, gls, vel


def _gt_beat(gt, fps, ed_time):
    P = gt.model.timing.period * fps
    return int(round((ed_time - gt.model.timing.t0 * fps) / P))


def _case_and_beat(synth_cache, preset):
    """A cached synthetic case (clip, truth, estimated flow), its first detected beat, that
    beat's sub-frame times and the true landmarks on its end-diastolic frame."""
    from ttsfast.cycle import detect_cycles

    clip, gt, flow = synth_case(synth_cache, preset)
    cyc = detect_cycles(flow, fps=clip.fps, mask=gt.sector_mask)
    beat, times = cyc.beats[0], cyc.beat_times[0]
    return clip, gt, flow, beat, times, {k: gt.landmarks[k][beat[0]] for k in gt.landmarks}


@pytest.fixture(scope="module")
def true_flow_errors(synth_cache):
    """``true_flow_errors(preset)`` -> the measures' errors on the ground-truth flow (computed once
    per module): detected beat, errors with the detected beat times (_measure_errors) and the
    peak displacement error with the TRUE beat times."""
    @functools.cache
    def get(preset):
        clip, gt, flow, beat, times, lm = _case_and_beat(synth_cache, preset)
        tf = np.zeros_like(flow)
        n = min(beat[2] + 2, flow.shape[0])
        tf[:n] = _true_flow(gt, n)
        m = measure_mechanics(clip.frames, tf, beat, landmarks=lm, method="flow", fps=clip.fps,
                              mm_per_px=clip.mm_per_px, beat_times=times, drift_correction=False)
        tm = gt.true_measures(_gt_beat(gt, clip.fps, times[0]))
        errors = _measure_errors(m, tm)
        # the same with the TRUE beat times
        tmd = gt.model.timing
        k = _gt_beat(gt, clip.fps, times[0])
        true_times = tuple(float(x) * clip.fps for x in (tmd.t0 + k * tmd.period, tmd.t0 + k * tmd.period + tmd.t_es,
                                                         tmd.t0 + (k + 1) * tmd.period))
        m_t = measure_mechanics(clip.frames, tf, beat, landmarks=lm, method="flow", fps=clip.fps,
                                mm_per_px=clip.mm_per_px, beat_times=true_times, drift_correction=False)
        return beat, errors, _measure_errors(m_t, tm)[0]

    return get


_ERROR_NAMES = ("peak_displacement_px", "excursion_px", "segment_strain_pts", "gls_pts", "velocity_rel")


@pytest.mark.parametrize("preset", PRESETS)
def test_synth_measures_with_true_flow(preset, true_flow_errors, accuracy_record):
    """Our stage alone (cycle, tracking, resampling, measures) on the ground-truth flow:
    every accuracy target must hold (the peak displacement's 0.1 px:
    test_synth_measures_with_true_flow_target)."""
    beat, (pk, exc, strain, gls, vel), pk_t = true_flow_errors(preset)
    accuracy_record("true_flow_errors", preset, dict(zip(_ERROR_NAMES, (pk, exc, strain, gls, vel)),
                                                     peak_displacement_px_true_times=pk_t), beat=beat)
    assert exc <= 0.5 and strain <= 1.5 and gls <= 1.0 and vel <= 0.10
    # The same with the TRUE beat times: the paper's measure is then exact (measured <= 0.03 px),
    # so what is left above is the detected ED / next ED (0.3-0.9 frame off on the slow tts and
    # stemi presets), which shifts the 32-frame resampling grid under the largest step.
    assert pk_t <= 0.05


@pytest.mark.parametrize("key,case", target_cases("true_flow_peak_displacement_px", PRESETS))
def test_synth_measures_with_true_flow_target(key, case, true_flow_errors, accuracy_record):
    """Peak displacement within 0.1 px with the true flow and the detected beat times (where it
    is missed, the ED timing is, not the measure: see the true-times error in accuracy.json)."""
    beat, errors, pk_t = true_flow_errors(case)
    check_target(key, case, errors[0], accuracy_record, peak_displacement_px_true_times=pk_t)


@pytest.fixture(scope="module")
def end_to_end_errors(synth_cache):
    """``end_to_end_errors(preset)`` -> ({method: _measure_errors}, {method: m.method}) on the
    estimated flow, end to end, for our trackers and the study's LK (computed once per module)."""
    @functools.cache
    def get(preset):
        clip, gt, flow, beat, times, lm = _case_and_beat(synth_cache, preset)
        tm = gt.true_measures(_gt_beat(gt, clip.fps, times[0]))
        res, used = {}, {}
        for method in ("dis", "flow", "flow+lk", "lk"):
            m = measure_mechanics(clip.frames, flow, beat, landmarks=lm, fps=clip.fps, mm_per_px=clip.mm_per_px,
                                  beat_times=times, method=method)
            used[method] = m.method
            res[method] = _measure_errors(m, tm)
        m = measure_mechanics(clip.frames, flow, beat, landmarks=lm, fps=clip.fps, mm_per_px=clip.mm_per_px,
                              beat_times=times, method="dis", annulus_anchor=False)
        res["dis-own"] = _measure_errors(m, tm)
        return res, used

    return get


@pytest.mark.parametrize("preset", PRESETS)
def test_synth_measures_end_to_end(preset, end_to_end_errors, accuracy_record):
    """Estimated flow end to end, with the study's LK tracker beside ours (guards; the targets:
    test_synth_measures_end_to_end_target)."""
    res, used = end_to_end_errors(preset)
    for method, want in used.items():
        assert want == method
    labels = {"dis": "ours (default: DIS, annulus anchored)", "flow": "ours on the model's Farneback flow",
              "flow+lk": "Farneback + LK 13px/1 refinement", "lk": "study LK 75px/5",
              "dis-own": "DIS, annulus's own track (no anchor)"}
    for method, errors in res.items():
        accuracy_record("end_to_end_errors", f"{preset}/{method}", dict(zip(_ERROR_NAMES, errors)),
                        tracker=labels[method])
    # without the annulus anchoring: no worse than the study on any measure, excursion within 1 px
    assert res["dis-own"][1] < 1.0 and all(a < b for a, b in zip(res["dis-own"], res["lk"]))
    pk, exc, strain, gls, vel = res["dis"]
    # hard: far better than the study's tracker on every measure, and the default tracker's
    # worst segment no worse than on the Farneback flow plus a margin for this one clip (on 24
    # clips its median / max was 2.2 / 6.0 points against 4.0 / 11.6)
    assert pk < res["lk"][0] and exc < 0.5 * res["lk"][1] and strain < 0.5 * res["lk"][2]
    assert strain < res["flow"][2] + 0.5
    # the speckle-scale LK refinement (opt-in) lowers the worst segmental strain error of the
    # Farneback track (24 clips: median 4.0 -> 2.5, max 11.6 -> 6.9)
    assert res["flow+lk"][2] < res["flow"][2]
    assert pk < 0.5 and exc < 1.0 and strain < 4.0 and gls < 1.0 and vel < 0.12


# the end-to-end targets, default tracker ("dis"): key -> index in _measure_errors
E2E_TARGETS = {"e2e_peak_displacement_px": 0, "e2e_excursion_px": 1, "e2e_segment_strain_pts": 2,
               "e2e_gls_pts": 3, "e2e_velocity_rel": 4}


@pytest.mark.parametrize("key,case", [p for key in E2E_TARGETS for p in target_cases(key, PRESETS)])
def test_synth_measures_end_to_end_target(key, case, end_to_end_errors, accuracy_record):
    """The targets end to end with the default tracker (limited by the flow where missed)."""
    res, _ = end_to_end_errors(case)
    check_target(key, case, res["dis"][E2E_TARGETS[key]], accuracy_record)


def test_nan_flow_and_no_motion_are_clear_errors():
    from ttsfast.landmarks import detect_landmarks

    frames, flow, s = _beat_flow()
    lm = dict(septal_annulus=(40.0, 90.0), lateral_annulus=(80.0, 90.0), apex=(60.0, 10.0))
    bad = flow.copy()
    bad[3] = np.nan
    with pytest.raises(QualityError):
        measure_mechanics(frames, bad, (0, 13, 32), landmarks=lm)
    # a still image with a bright ring (a "cavity") but no motion: no landmarks from motion
    yy, xx = np.mgrid[0:H, 0:W]
    r = np.hypot((xx - 60) / 25.0, (yy - 50) / 35.0)
    img = np.where((r > 0.8) & (r < 1.1), 200, 10).astype(np.uint8)
    still = np.repeat(img[None], 33, axis=0)
    with pytest.raises(QualityError):
        detect_landmarks(still, np.zeros_like(flow), (0, 13, 32))




# ----------------------------------------------------------------------------- annulus anchoring

def test_similarity_carry_follows_an_exact_similarity():
    from ttsfast.mechanics import similarity_carry

    rng = np.random.default_rng(3)
    ref = rng.uniform(0, 50, (7, 2))
    p0 = np.array([12.0, 70.0])
    ang = np.linspace(0, 0.3, 9)
    scale = np.linspace(1.0, 0.85, 9)
    shift = np.stack([np.linspace(0, 3, 9), np.linspace(0, -8, 9)], 1)

    def move(p, k):
        c, s = np.cos(ang[k]) * scale[k], np.sin(ang[k]) * scale[k]
        return np.stack([c * p[..., 0] - s * p[..., 1], s * p[..., 0] + c * p[..., 1]], -1) + shift[k]

    cur = np.stack([move(ref, k) for k in range(9)])
    got = similarity_carry(ref, cur, p0)
    want = np.stack([move(p0, k) for k in range(9)])
    assert np.abs(got - want).max() < 1e-9
    with pytest.raises(InputError):
        similarity_carry(np.zeros((3, 2)), np.zeros((2, 3, 2)), p0)
    # a carrier that went astray is ignored with weight 0, and pulls the point with weight 1
    bad = cur.copy()
    bad[:, 3] += np.array([5.0, -4.0])
    w = np.ones(7)
    w[3] = 0.0
    assert np.abs(similarity_carry(ref, bad, p0, weights=w) - want).max() < 1e-9
    assert np.abs(similarity_carry(ref, bad, p0) - want).max() > 0.5
    for w_bad in (np.zeros(7), -np.ones(7), np.ones(6)):
        with pytest.raises(InputError, match="weights"):
            similarity_carry(ref, cur, p0, weights=w_bad)


def test_anchor_annulus_removes_a_slow_lag_and_keeps_fast_motion():
    """A wall translating along y by a beat-shaped curve; the annulus's own track reads the
    motion 10 % short (a slow lag, 0.8 px at the peak) and carries a fast wiggle of its own:
    anchoring takes most of the lag out and leaves the wiggle (its velocity) alone."""
    from ttsfast.mechanics import anchor_annulus

    K = 41
    t = np.linspace(0, 1, K)
    disp = -8.0 * np.sin(np.pi * t) ** 2  # toward the apex (up) and back
    wall0 = np.stack([np.full(31, 40.0), np.linspace(90.0, 10.0, 31)], 1)
    wall = wall0[None] + np.stack([np.zeros(K), disp], 1)[:, None, :]
    own = wall[:, 0].copy()
    own[:, 1] = wall0[0, 1] + 0.9 * disp
    got = anchor_annulus(own, wall)
    exc = -(got[:, 1] - got[0, 1]).min()
    # the correction is smoothed over 0.2 of the span (8 frames here), which flattens this
    # narrow single-hump lag: at the peak 0.8 px short -> 0.33 px short, never past the truth
    assert 8.0 - 0.4 < exc <= 8.0 + 1e-9
    assert np.array_equal(got[0], own[0])  # ED stays the landmark
    assert np.abs(got[:, 0] - 40.0).max() < 1e-9  # nothing moves across
    wiggle = 0.3 * np.sin(2 * np.pi * 8 * t) * np.sin(np.pi * t)  # a fast motion of its own
    own_w = own.copy()
    own_w[:, 1] += wiggle
    got_w = anchor_annulus(own_w, wall)
    # a carrier lost on the way (it does not come back at the end of the beat) barely counts
    # when the closure frame is given
    lost = wall.copy()
    lost[:, 4, 0] += np.linspace(0.0, 6.0, K)
    got_lost = anchor_annulus(own, lost)
    got_weighted = anchor_annulus(own, lost, closure_index=K - 1)
    assert np.abs(got_weighted - got).max() < 0.15 < np.abs(got_lost - got).max()
    # the wiggle's velocity survives almost whole (the smoothed correction takes ~nothing of it)
    v = np.diff(got_w[:, 1] - got[:, 1])
    assert np.corrcoef(v, np.diff(wiggle))[0, 1] > 0.95
    assert np.abs(v).max() > 0.8 * np.abs(np.diff(wiggle)).max()


def test_measure_mechanics_annulus_anchor_switch():
    """The default anchors both annuli; annulus_anchor=False leaves the own tracks; the walls
    are never changed."""
    frames, flow, s = _beat_flow()
    es = int(np.argmin(s))
    lm = dict(septal_annulus=(40.0, 90.0), lateral_annulus=(80.0, 90.0), apex=(60.0, 10.0))
    a = measure_mechanics(frames, flow, (0, es, 32), landmarks=lm, method="flow")
    b = measure_mechanics(frames, flow, (0, es, 32), landmarks=lm, method="flow", annulus_anchor=False)
    assert a.annulus_anchored == {"septal_annulus": True, "lateral_annulus": True}
    assert b.annulus_anchored == {"septal_annulus": False, "lateral_annulus": False}
    assert not any(w.code == "annulus_not_anchored" for w in a.warnings)
    assert np.array_equal(a.tracks["inferoseptal"], b.tracks["inferoseptal"])
    assert not np.array_equal(a.tracks["septal_annulus"], b.tracks["septal_annulus"])
    # the similarity of the basal wall under this (non-similar) vertical scaling moves the
    # annulus by a small amount only
    assert np.abs(a.tracks["septal_annulus"] - b.tracks["septal_annulus"]).max() < 0.5
    # the carriers are the basal share of the wall whatever its number of points (with 7 points,
    # 1..6 would be the whole wall: 11.59 px instead of 12)
    from ttsfast.mechanics import anchor_points

    assert [anchor_points(n) for n in (7, 31, 61)] == [(1, 2), (1, 7), (1, 14)]
    from ttsfast.mechanics import anchor_annulus

    w7 = b.tracks["inferoseptal"][:, ::5]  # a 7-point wall: anchor_annulus picks its own carriers
    ann = b.tracks["septal_annulus"]
    assert np.array_equal(anchor_annulus(ann, w7), anchor_annulus(ann, w7, points=(1, 2)))
    for n_wall in (7, 31):
        m = measure_mechanics(frames, flow, (0, es, 32), landmarks=lm, method="flow", n_wall=n_wall,
                              annulus_anchor=True)
        assert m.excursion_px["basal_inferoseptal"] == pytest.approx(12.0, abs=0.05)


def test_annulus_anchor_through_analyze_and_the_cli(tmp_path):
    """analyze(annulus_anchor=True) and --annulus-anchor reach the mechanics and the report says
    so; the model does not see it; the study's 'lk' is never anchored."""
    import json

    from ttsfast import analyze
    from ttsfast.cli import main
    from ttsfast.demo import demo_clip_path

    both = {"septal_annulus": True, "lateral_annulus": True}
    neither = {"septal_annulus": False, "lateral_annulus": False}
    a = analyze(demo_clip_path(), saliency=False, score_all_beats=False, annulus_anchor=False)
    b = analyze(demo_clip_path(), saliency=False, score_all_beats=False)  # the default anchors
    assert a.to_dict()["mechanics"]["annulus_anchored"] == neither
    assert b.to_dict()["mechanics"]["annulus_anchored"] == both
    assert b.p_tts == pytest.approx(a.p_tts, abs=1e-6)
    ea, eb = a.to_dict()["mechanics"]["excursion_px"], b.to_dict()["mechanics"]["excursion_px"]
    assert ea["basal_inferoseptal"] != eb["basal_inferoseptal"]
    assert a.to_dict()["mechanics"]["strain_peak_pct"] == b.to_dict()["mechanics"]["strain_peak_pct"]
    c = analyze(demo_clip_path(), saliency=False, score_all_beats=False, annulus_anchor=True, tracker="lk")
    assert c.to_dict()["mechanics"]["annulus_anchored"] == neither
    for flag, want in (([], both), (["--no-annulus-anchor"], neither)):
        out = tmp_path / ("own" if flag else "default")
        assert main(["analyze", str(demo_clip_path()), "-o", str(out), "--no-video", "--saliency", "none"] + flag) == 0
        rep = json.loads(next(out.rglob("report.json")).read_text())
        assert rep["mechanics"]["annulus_anchored"] == want


def test_beat_closure_warning_names_the_annulus():
    """An annulus whose track does not come back (a flow bias over the septal side: 0.2
    px/frame downward, 6.4 px over the beat) is warned by name; the clean flow is not."""
    frames, flow, s = _beat_flow()
    es = int(np.argmin(s))
    lm = dict(septal_annulus=(40.0, 90.0), lateral_annulus=(80.0, 90.0), apex=(60.0, 10.0))
    clean = measure_mechanics(frames, flow, (0, es, 32), landmarks=lm, method="flow")
    assert not any(w.code == "track_not_closed" for w in clean.warnings)
    biased = flow.copy()
    biased[:, :, :52, 1] += 0.2
    m = measure_mechanics(frames, biased, (0, es, 32), landmarks=lm, method="flow")
    hits = [w.message for w in m.warnings if w.code == "track_not_closed"]
    assert len(hits) == 1 and hits[0].startswith("septal_annulus:") and m.drift_px["septal_annulus"] > 5.0
    # its basal wall drifted with it, so the guard (anchor_trusted) kept the septal annulus's
    # own track and said so; the lateral one, on clean flow, is anchored
    assert m.annulus_anchored == {"septal_annulus": False, "lateral_annulus": True}
    (gw,) = [w.message for w in m.warnings if w.code == "annulus_not_anchored"]
    assert gw.startswith("septal_annulus:")
    own = measure_mechanics(frames, biased, (0, es, 32), landmarks=lm, method="flow", annulus_anchor=False)
    np.testing.assert_array_equal(m.tracks["septal_annulus"], own.tracks["septal_annulus"])
    # the septal segments' end points moved with it: their strain is flagged, the lateral not
    assert not any(w.code == "strain_not_closed" for w in clean.warnings)
    assert max(clean.strain_closure_pct.values()) < 1.0
    (sw,) = [w.message for w in m.warnings if w.code == "strain_not_closed"]
    assert "basal_inferoseptal" in sw and "anterolateral" not in sw
    assert m.strain_closure_pct["basal_inferoseptal"] > 10.0 > m.strain_closure_pct["basal_anterolateral"]
    assert set(m.to_dict()["strain_closure_pct"]) == set(SEGMENTS)


def test_anchor_trusted_guard_rule():
    """The guard: carriers closing the beat > 3 px off, or > 1 px and twice the annulus's own
    closure, are not trusted; carriers that close better than the annulus are; bad shapes are
    clear errors."""
    from ttsfast.mechanics import anchor_trusted

    K, N = 33, 31
    t = np.linspace(0.0, 1.0, K)
    wall = np.zeros((K, N, 2))
    wall[..., 1] = np.arange(N)[None, :] * -3.0 + 90.0
    ann = np.stack([np.full(K, 0.0), np.full(K, 90.0)], 1)

    def with_closure(arr, c):
        out = arr.copy()
        out[..., 0] += c * t.reshape((K,) + (1,) * (arr.ndim - 2))
        return out

    ok, own, cw = anchor_trusted(with_closure(ann, 2.0), with_closure(wall, 0.5), K - 1)
    assert ok and own == pytest.approx(2.0) and cw == pytest.approx(0.5)
    assert not anchor_trusted(with_closure(ann, 2.0), with_closure(wall, 3.5), K - 1)[0]  # > 3 px
    assert not anchor_trusted(with_closure(ann, 0.5), with_closure(wall, 1.5), K - 1)[0]  # > 1 px, 3x own
    assert anchor_trusted(with_closure(ann, 1.0), with_closure(wall, 1.5), K - 1)[0]  # 1.5x own
    assert anchor_trusted(with_closure(ann, 0.1), with_closure(wall, 0.9), K - 1)[0]  # under 1 px
    with pytest.raises(InputError):
        anchor_trusted(ann, wall, K)
    with pytest.raises(InputError):
        anchor_trusted(ann, wall[:-1], K - 2)
