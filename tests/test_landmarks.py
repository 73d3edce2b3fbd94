"""Landmarks: the caller's landmarks (validation, geometry warnings, mirrored display), the
wall points, the automatic landmarks on synthetic clips against ground truth (accuracy targets:
tests/accuracy_targets.py) and on a real clip, and the Numba wall-walk kernels."""
from __future__ import annotations

import numpy as np
import pytest

from _synth_helpers import generate, synth_case
from accuracy_targets import check_target, target_cases
from conftest import real_clip_path
from ttsfast.errors import InputError
from ttsfast.landmarks import landmarks_from_caller, wall_points
from ttsfast.mechanics import measure_mechanics


# ----------------------------------------------------------------------------- caller's landmarks

def test_landmark_validation():
    shape = (256, 352)
    ok = dict(septal_annulus=(170, 170), lateral_annulus=(225, 180), apex=(195, 60))
    lm = landmarks_from_caller(ok, shape)
    assert lm.source == "caller" and not lm.mirrored
    mir = dict(septal_annulus=(180, 170), lateral_annulus=(125, 180), apex=(155, 60))
    assert landmarks_from_caller(mir, shape).mirrored
    with pytest.raises(InputError, match="outside"):
        landmarks_from_caller({**ok, "apex": (195, -5)}, shape)
    with pytest.raises(InputError, match="above"):
        landmarks_from_caller({**ok, "apex": (195, 230)}, shape)
    with pytest.raises(InputError, match="apart"):
        landmarks_from_caller({**ok, "lateral_annulus": (172, 171)}, shape)
    with pytest.raises(InputError, match="swapped"):  # LV on the right but septal outside
        landmarks_from_caller(dict(septal_annulus=(260, 170), lateral_annulus=(190, 180), apex=(225, 60)), shape)
    with pytest.raises(InputError, match="swapped"):
        landmarks_from_caller(ok, shape, mirrored=True)
    with pytest.raises(InputError, match="lack"):
        landmarks_from_caller({"apex": (1, 1)}, shape)
    # the caller's coordinates are original-image pixels, mapped with to_grid
    lm2 = landmarks_from_caller({k: (2 * x, 2 * y) for k, (x, y) in ok.items()}, shape, to_grid=lambda a: a / 2)
    np.testing.assert_allclose(lm2.apex, ok["apex"])


def test_wall_points_run_from_annulus_to_apex():
    p = wall_points(np.array([170.0, 170.0]), np.array([195.0, 60.0]), np.array([225.0, 180.0]), 31)
    assert p.shape == (31, 2)
    np.testing.assert_allclose(p[0], [170, 170])
    np.testing.assert_allclose(p[-1], [195, 60])
    d = np.hypot(*np.diff(p, axis=0).T)
    assert d.std() / d.mean() < 0.01  # equally spaced in arc length
    assert np.all(p[1:-1, 0] < 200)  # the septal wall stays on the septal side


# ----------------------------------------------------------------------------- measures, analytic

# ----------------------------------------------------------------------------- automatic landmarks, synthetic

AUTO_CASES = {"normal": ("normal", False), "tts": ("tts", False), "stemi_anterior": ("stemi_anterior", False),
              "normal-mirrored": ("normal", True)}


@pytest.fixture(scope="module")
def auto_landmarks(synth_cache):
    """``auto_landmarks(preset, mirrored)`` -> (landmarks, ground truth, error px per landmark)
    of the automatic landmarks on a synthetic clip's estimated flow, computed once per module."""
    from ttsfast.cycle import detect_cycles
    from ttsfast.landmarks import detect_landmarks

    done = {}

    def get(preset, mirrored):
        if (preset, mirrored) not in done:
            clip, gt, flow = synth_case(synth_cache, preset, mirrored=mirrored)
            cyc = detect_cycles(flow, fps=clip.fps, mask=gt.sector_mask)
            beat = cyc.beats[0]
            lm = detect_landmarks(clip.frames, flow, beat, mask=gt.sector_mask)
            err = {k: float(np.hypot(*(getattr(lm, k) - gt.landmarks[k][beat[0]]))) for k in gt.landmarks}
            done[preset, mirrored] = (lm, gt, err)
        return done[preset, mirrored]

    return get


@pytest.mark.parametrize("preset,mirrored", list(AUTO_CASES.values()))
def test_synth_auto_landmarks(preset, mirrored, auto_landmarks):
    """Guards; the 3 px target is test_synth_auto_landmarks_target."""
    lm, gt, err = auto_landmarks(preset, mirrored)
    assert lm.source == "auto"
    assert lm.mirrored == gt.mirrored
    assert max(err.values()) <= 10.0


@pytest.mark.parametrize("key,case", target_cases("auto_landmarks_px", AUTO_CASES))
def test_synth_auto_landmarks_target(key, case, auto_landmarks, accuracy_record):
    lm, gt, err = auto_landmarks(*AUTO_CASES[case])
    check_target(key, case, max(err.values()), accuracy_record, error_px=err, found_mirrored=lm.mirrored,
                 confidence=float(lm.confidence))


LANDMARK_CLIPS = [("normal", 0, False), ("normal", 1, True), ("tts", 0, False), ("tts", 1, True),
                  ("stemi_anterior", 0, False), ("stemi_anterior", 1, True)]


@pytest.fixture(scope="module")
def pipeline_landmark_errors():
    """Automatic landmarks through the real pipeline (preprocess -> dense_flow -> detect_cycles
    -> detect_landmarks) on six noisy synthetic clips, three of them mirrored; errors in
    ORIGINAL clip pixels against the truth on the ED frame used."""
    import ttsfast
    from ttsfast.cycle import detect_cycles
    from ttsfast.landmarks import LANDMARK_NAMES, detect_landmarks

    rows = []
    for preset, seed, mirrored in LANDMARK_CLIPS:
        clip, gt = generate(preset=preset, seed=seed, n_frames=130, mirrored=mirrored)
        prep = ttsfast.preprocess(clip)
        flow = ttsfast.dense_flow(prep.frames, mask=prep.mask)
        cyc = detect_cycles(flow, fps=prep.fps, mask=prep.mask)
        ed = cyc.beats[0][0]
        lm = detect_landmarks(prep.frames, flow, cyc.beats[0], mask=prep.mask)
        got = prep.to_original(lm.as_array())
        err = [float(np.hypot(*(got[i] - gt.landmarks[n][ed]))) for i, n in enumerate(LANDMARK_NAMES)]
        rows.append((preset, seed, mirrored, lm.mirrored == gt.mirrored, lm.confidence, err))
    return rows


def _clip_name(preset, seed, mirrored):
    return f"{preset}-{seed}" + ("-mirrored" if mirrored else "")


PIPELINE_CASES = [_clip_name(*c) for c in LANDMARK_CLIPS]


def test_synth_auto_landmarks_pipeline(pipeline_landmark_errors, accuracy_record):
    """Guards; the 3 px target per clip is test_synth_auto_landmarks_pipeline_target."""
    rows = pipeline_landmark_errors
    e = np.array([r[5] for r in rows])
    accuracy_record("auto_landmarks_pipeline_summary_px", "6 clips", {
        "median": np.median(e, 0).tolist(), "max": e.max(0).tolist()}, unit="px (septal, lateral, apex)")
    assert all(r[3] for r in rows)  # display (mirrored or not) found on every clip
    # measured with the septal seed on the septum's mid-wall line: median 1.2 / 3.4 / 1.7 px, max
    # 2.0 / 9.2 / 3.8 px (septal, lateral, apex); seeded on the cavity border (before): median
    # 0.8 / 3.4 / 1.6, max 2.0 / 9.2 / 3.8; with the septum's brightest pixel: 1.6 / 3.4 / 1.8
    assert np.all(np.median(e, axis=0) <= [3.0, 3.5, 3.0]) and e[:, [0, 2]].max() <= 5.0 and e.max() <= 12.0


@pytest.mark.parametrize("key,case", target_cases("auto_landmarks_pipeline_px", PIPELINE_CASES))
def test_synth_auto_landmarks_pipeline_target(key, case, pipeline_landmark_errors, accuracy_record):
    (row,) = [r for r in pipeline_landmark_errors if _clip_name(*r[:3]) == case]
    preset, seed, mir, ok, conf, err = row
    check_target(key, case, max(err), accuracy_record, error_px=dict(zip(("septal", "lateral", "apex"), err)),
                 confidence=float(conf))


def test_auto_landmarks_do_not_take_the_rv_for_the_lv(accuracy_record):
    """A clip (normal preset, seed 52, standard display) whose LV is open to the outside at the
    Otsu threshold (a gap in its lateral wall), so that the only enclosed, LV-shaped chamber
    there is the RV with the right atrium. Before the fix the landmarks were put on the RV
    (lateral annulus 90 px off, display called mirrored); the LV is found at a lower threshold,
    its top far nearer the transducer."""
    import ttsfast
    from ttsfast.cycle import detect_cycles
    from ttsfast.landmarks import LANDMARK_NAMES, detect_landmarks

    clip, gt = generate(preset="normal", seed=52, mirrored=False)
    prep = ttsfast.preprocess(clip)
    flow = ttsfast.dense_flow(prep.frames, mask=prep.mask)
    beat = detect_cycles(flow, fps=prep.fps, mask=prep.mask).beats[0]
    lm = detect_landmarks(prep.frames, flow, beat, mask=prep.mask)
    got = prep.to_original(lm.as_array())
    err = [float(np.hypot(*(got[i] - gt.landmarks[n][beat[0]]))) for i, n in enumerate(LANDMARK_NAMES)]
    accuracy_record("landmarks_rv_clip_px", "normal-52", max(err), limit=3.0, unit="px",
                    error_px=dict(zip(("septal", "lateral", "apex"), err)), found_mirrored=lm.mirrored)
    assert lm.mirrored is False
    assert max(err) <= 3.0  # measured 2.4 / 2.2 / 2.4 px (89.7 px on the lateral annulus before)


def test_synth_auto_landmarks_feed_measures(synth_cache):
    from ttsfast.cycle import detect_cycles

    clip, gt, flow = synth_case(synth_cache, "normal")
    cyc = detect_cycles(flow, fps=clip.fps, mask=gt.sector_mask)
    m = measure_mechanics(clip.frames, flow, cyc.beats[0], mask=gt.sector_mask, fps=clip.fps,
                          mm_per_px=clip.mm_per_px, beat_times=cyc.beat_times[0])
    d = m.to_dict()
    assert d["landmarks"]["source"] == "auto"
    assert all(d["peak_displacement_px"][s]["systolic"] > 0 for s in ("basal_inferoseptal", "basal_anterolateral"))


def test_real_ge_clip_full_pipeline_auto_landmarks():
    """read_clip(fps=55) -> preprocess -> dense_flow -> cycles -> automatic landmarks -> mechanics
    on the GE control clip: standard display found, AV-plane points close their beat."""
    import ttsfast
    from ttsfast.cycle import detect_cycles

    clip = ttsfast.read_clip(real_clip_path("ctrl_a4c_ge_55hz.mp4"), fps=55.0)
    prep = ttsfast.preprocess(clip)
    flow = ttsfast.dense_flow(prep.frames, mask=prep.mask)
    cyc = detect_cycles(flow, fps=prep.fps, mask=prep.mask)
    assert cyc.heart_rate_bpm == pytest.approx(91.0, rel=0.05)
    out = []
    for beat, times in list(zip(cyc.beats, cyc.beat_times))[:2]:
        drift = {}
        for method in ("dis", "flow"):
            m = measure_mechanics(prep.frames, flow, beat, fps=prep.fps, mm_per_px=prep.mm_per_px, mask=prep.mask,
                                  to_original=prep.to_original, to_grid=prep.to_grid, beat_times=times,
                                  drift_correction=False, method=method)
            lm = m.landmarks
            assert lm.source == "auto" and not lm.mirrored and lm.confidence >= 0.5
            assert lm.septal_annulus[0] < lm.lateral_annulus[0] and lm.apex[1] < lm.septal_annulus[1]
            drift[method] = max(m.drift_px["septal_annulus"], m.drift_px["lateral_annulus"])
            if method == "dis":
                out.append((beat, m.drift_px, m.peak_displacement_px, m.peak_displacement_grid_px, lm.confidence))
        # Farneback: measured 2.35 / 2.01 grid px (beats 0, 1); the default DIS tracker 3.30 / 3.13
        # (lateral annulus on beat 0, septal on beat 1), about a fifth of the ~15 grid px AV
        # excursion. Over all 12 annulus-beat closures measured on the two real clips (hand and
        # automatic landmarks; README) the two drift alike: median 2.08 (DIS) against 2.05 px,
        # max 8.9 against 11.3 px; so the default's bound is 4 px and Farneback's stays 3.
        assert drift["flow"] < 3.0 and drift["dis"] < 4.0
    for beat, drift, pk_o, pk_g, conf in out:
        print(f"\nctrl_a4c_ge_55hz beat {beat}: auto landmarks confidence {conf:.2f}; drift grid px "
              f"{ {k: round(v, 2) for k, v in drift.items()} }; peak displacement original px "
              f"{ {k: {p: round(x, 2) for p, x in v.items()} for k, v in pk_o.items()} }, grid px "
              f"{ {k: {p: round(x, 2) for p, x in v.items()} for k, v in pk_g.items()} }", end="")


def test_geometry_warnings_flag_implausible_landmarks():
    """An apical view's annulus is about a third to a half of the LV length wide and the apex
    is about as far from both annulus points (0.95-1.03 on the synthetic hearts). The two
    gross automatic misses of 36 synthetic clips broke these (annulus 0.75 / 0.85 LV lengths,
    walls 1.11 / 1.27); every other clip kept within them."""
    from ttsfast.landmarks import geometry_warnings, validate_landmarks

    sep, lat, apex = np.array([150.0, 200.0]), np.array([200.0, 200.0]), np.array([175.0, 100.0])
    assert geometry_warnings(sep, lat, apex) == []
    wide = geometry_warnings(np.array([120.0, 200.0]), np.array([200.0, 200.0]), np.array([160.0, 100.0]))
    assert len(wide) == 1 and wide[0].code == "annulus_wide" and "0.80 LV lengths" in wide[0].message
    skew = geometry_warnings(sep, np.array([200.0, 170.0]), apex)
    assert len(skew) == 1 and skew[0].code == "walls_unequal" and "farther from the septal" in skew[0].message
    # the caller's landmarks get the same warnings (not an error: unusual hearts exist)
    _, warns = validate_landmarks(np.array([120.0, 200.0]), lat, np.array([160.0, 100.0]), (256, 352))
    assert any(w.code == "annulus_wide" for w in warns)

def test_wall_walk_kernels_on_an_analytic_band():
    """The Numba walks across a wall: a bright band from x = 10 to 20 px (and a 2 px speckle gap
    inside it) seen from the cavity border at x = 4."""
    from ttsfast.landmarks import _band_widths, _wall_profiles

    x = np.arange(64, dtype=np.float32)
    row = np.where((x >= 10) & (x <= 20), 100.0, 10.0).astype(np.float32)
    row[14:16] = 10.0  # a speckle gap shorter than 3 px does not end the band
    img = np.tile(row, (32, 1))
    starts = np.array([[4.0, 8.0], [4.0, 20.0], [60.0, 8.0]])
    d, t = _wall_profiles(img, starts, 1.0, 0.0, 25.0)
    # the first bright part (10..13.5 px beyond x=4 -> 6..9.5) is the band above half its peak
    np.testing.assert_allclose(d[:2], 0.5 * (6.0 + 9.5), atol=0.5)
    np.testing.assert_allclose(t[:2], 3.5, atol=0.5)
    assert d[2] == 0.0 and t[2] == 0.0  # fewer than 4 steps inside the image
    bw = _band_widths(img, starts[:2], 1.0, 0.0, 50.0, 40.0)
    assert np.all(bw == 0.0)  # no tissue within the first 3 px of the border
    bw = _band_widths(img, np.array([[9.0, 8.0]]), 1.0, 0.0, 50.0, 40.0)
    np.testing.assert_allclose(bw, 11.5, atol=0.5)  # 9 -> 20.5, through the gap
