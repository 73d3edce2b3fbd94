"""End to end: analyze() on the bundled clip, on synthetic clips with known truth and on real
clips; the JSON report; the CLI."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import ttsfast
from ttsfast.analyze import analyze
from ttsfast.demo import demo_clip_path
from ttsfast.errors import InputError, QualityError
from ttsfast.report import write_report

from conftest import real_clip_path

SEGMENTS = ("basal_inferoseptal", "mid_inferoseptal", "apical_inferoseptal",
            "basal_anterolateral", "mid_anterolateral", "apical_anterolateral")


@pytest.fixture(scope="module")
def demo_result():
    return analyze(demo_clip_path())


def test_report_has_the_documented_keys(demo_result):
    d = demo_result.to_dict()
    json.dumps(d, allow_nan=False)  # plain JSON, no NaN
    assert 0.0 <= d["p_tts"] <= 1.0 and d["label"] in ("TTS", "STEMI")
    assert {"name", "sha256", "trained_on"} <= d["model"].keys()
    c = d["cycle"]
    assert {"fps", "fps_source", "heart_rate_bpm", "beats"} <= c.keys()
    assert c["fps"] == pytest.approx(40.0) and c["fps_source"] == "dicom_frame_time"
    assert all({"ed", "es", "next_ed", "p_tts"} == set(b) for b in c["beats"])
    assert c["beats"][c["chosen_beat"]]["p_tts"] == pytest.approx(d["p_tts"], abs=1e-4)
    lm = d["landmarks"]
    assert lm["source"] == "auto" and 0 <= lm["confidence"] <= 1 and lm["coords"] == "original"
    for k in ("septal_annulus", "lateral_annulus", "apex"):
        assert len(lm[k]) == 2
    m = d["mechanics"]
    for wall in ("basal_inferoseptal", "basal_anterolateral"):
        assert set(m["peak_displacement_px"][wall]) == {"systolic", "diastolic"}
        assert set(m["peak_displacement_mm"][wall]) == {"systolic", "diastolic"}
        assert wall in m["excursion_px"] and wall in m["excursion_mm"]
    assert set(m["strain_peak_pct"]) == set(SEGMENTS)
    assert isinstance(m["gls_pct"], float)
    assert set(m["s_prime_cm_s"]) == {"septal", "lateral"} and set(m["e_prime_cm_s"]) == {"septal", "lateral"}
    for arm in ("spatial", "temporal"):
        s = d["saliency"][arm]
        assert abs(sum(s["regions"].values()) - 1) < 1e-6 and 0 <= s["systole_share"] <= 1
        assert len(s["time_curve"]) == 32
    assert isinstance(d["quality"]["warnings"], list)
    assert d["quality"]["frame_correlation"] > 0.9  # an ultrasound clip (noise gives ~0 and is refused)
    assert set(d["timings_ms"]) >= {"read", "preprocess", "flow", "cycle", "mechanics", "model", "saliency", "total"}


#: The patient parameters of the bundled demo clip: ttsfast.synth's tts preset, seed 3, as the
#: presets drew it (the presets have changed since), with the LV moved by
#: ``synth.fit_in_sector`` so that its myocardium stays inside the sector; passing these as
#: overrides regenerates the same motion, speckle and ground truth.
DEMO_PARAMS = {
    'depth_mm': 184.6066782214578,
    'half_angle_deg': 45.0,  # drawn 44.19; synth.fit_in_sector
    'apex_depth_mm': 44.0,  # drawn 36.57; synth.fit_in_sector
    'apex_x_mm': 3.9113913772442133,  # drawn 13.26; synth.fit_in_sector
    'tilt_deg': 15.771229033816336,
    'lv_length_mm': 81.73085660410729,
    'lv_halfwidth_mm': 21.28878646979669,
    'wall_mm': 8.044455022155061,
    'rv_scale': 1.2432875998534747,
    'la_length_mm': 49.172351035347596,
    'ivr_s': 0.07836865848099947,
    'a_dur_s': 0.1464247185076243,
    'rigid_mm': [-0.002975248515833233, -0.410061297197497],
    'noise': 0.638085976473185,
    'gain_db': -4.219003474234101,
    'dynamic_range_db': 44.90421066405178,
    'clutter_db': -7.570894024562241,
    'anisotropy_db': 10.040569564505127,
    'dropout': 0.7114940104370964,
    'texture_db': 5.312990853949093,
    'heart_rate_bpm': 45.142748105226694,
    'es_s': 0.4139463762730218,
    's_prime_target_cm_s': [7.451210340319366, 9.479611926070525],
    'e_prime_target_cm_s': [6.163498652790539, 7.371249523541389],
    'excursion_mm': None,
    'strain_target_pct': [[-10.902434272908629, -2.05023983906747, -0.06687053584670156], [-7.812641723228593, -0.07299379368767461, 0.003537512285350597]],
    'apical_share': [0.5426219995154775, 0.5147380097619163],
    'axial_strain_pct': None,
    'radial_mm': [[3.281304230254411, -2.01147914692741, -1.4869566201343236], [3.99401230014791, -1.1878898232100759, -2.3103224247965146]],
    'thickening': [[0.22608254700985703, 0.04633458770982481, -0.031733801315420515], [0.3228605018529249, 0.0048039423106174, -0.05]],
    't_sys_scale': [[0.9833110391654252, 0.9724189654387856, 1.0219542238087296], [0.9716012126551352, 1.007292954493907, 1.0021385162390721]],
    'sys_shape': [[3.0, 7.0], [1.6, 3.5]],
    'e_frac': [0.7067788882164419, 0.6931139665650544],
    'e_dur_s': None,
}


def test_demo_measures_match_the_synthetic_truth(demo_result, monkeypatch):
    """The bundled clip is ttsfast.synth's tts preset, seed 3 (parameters DEMO_PARAMS), 40 fps,
    126 frames (JPEG q85)."""
    from ttsfast.synth import PRESETS, generate

    # the preset as it was (overriding heart_rate_bpm would redraw the systolic timing)
    monkeypatch.setitem(PRESETS, "tts", lambda rng: dict(DEMO_PARAMS, preset="tts"))
    clip, gt = generate("tts", seed=3, fps=40, n_frames=126)
    truth = gt.true_measures(beat=0)
    d = demo_result.to_dict()
    m = d["mechanics"]
    assert d["cycle"]["beats"][0]["ed"] == pytest.approx(gt.ed_frames[0], abs=1)
    assert d["cycle"]["heart_rate_bpm"] == pytest.approx(gt.heart_rate_bpm, rel=0.03)
    # landmarks in original pixels (the clip's own pixels here): the right points (within 6 px);
    # the 3 px target is test_demo_landmarks_within_3_px
    for k in ("septal_annulus", "lateral_annulus", "apex"):
        assert np.hypot(*(np.array(d["landmarks"][k]) - gt.landmarks[k][gt.ed_frames[0]])) < 6.0, k
    # End to end the paper's measure is within 0.35 px, the error of the original study's
    # tracker on a speckle phantom; the 0.1 px target of the mechanics issue is not met yet
    # (tests/accuracy_targets.py; measured numbers in accuracy.json, see test_mechanics.py).
    for wall in ("basal_inferoseptal", "basal_anterolateral"):
        for ph in ("systolic", "diastolic"):
            got, want = m["peak_displacement_px"][wall][ph], truth["peak_displacement_px"][wall][ph]
            assert got == pytest.approx(want, abs=0.35), (wall, ph, got, want)
        # measured today: ~1.2 px on the lateral wall (the 0.5 px target: tests/accuracy_targets.py)
        assert m["excursion_px"][wall] == pytest.approx(truth["excursion_px"][wall], abs=1.5)


def test_demo_gls_matches_the_synthetic_truth(demo_result):
    """GLS within 1.5 strain points of the truth (measured: -5.0 against -3.9 %). Before the
    synth kept the LV inside the sector, the demo's lateral wall left the image in systole and
    the GLS was -7.6 against -3.9."""
    from ttsfast.synth import generate

    _, gt = generate("tts", seed=3, fps=40, n_frames=126, **DEMO_PARAMS)
    assert demo_result.to_dict()["mechanics"]["gls_pct"] == pytest.approx(gt.true_measures(beat=0)["gls_pct"], abs=1.5)


def test_demo_landmarks_within_3_px(demo_result):
    """The bundled clip's automatic landmarks (its septal annulus was 3.9 px off until the septal
    motion seed was taken along the mid-wall line instead of the cavity border)."""
    from ttsfast.synth import generate

    _, gt = generate("tts", seed=3, fps=40, n_frames=126, **DEMO_PARAMS)
    lm = demo_result.to_dict()["landmarks"]
    ed = gt.ed_frames[0]
    err = {k: float(np.hypot(*(np.array(lm[k]) - gt.landmarks[k][ed]))) for k in ("septal_annulus", "lateral_annulus", "apex")}
    print(f"\nbundled clip, automatic landmark errors px: { {k: round(v, 2) for k, v in err.items()} }")
    assert max(err.values()) < 3.0


def test_second_call_reloads_nothing_and_is_not_slower(demo_result):
    from ttsfast.model import runtime

    s1 = runtime.get_session()
    r2 = analyze(demo_clip_path())
    assert runtime.get_session() is s1
    assert r2.p_tts == pytest.approx(demo_result.p_tts, abs=1e-6)
    assert r2.timings_ms["model"] < 2000


def test_every_beat_is_scored_as_if_chosen(demo_result):
    """cycle.beats[i].p_tts (scored in one batch beside the chosen beat) is what analyze(beat=i)
    reports for that beat."""
    beats = demo_result.cycle["beats"]
    assert len(beats) >= 2
    other = analyze(demo_clip_path(), beat=1, saliency=False, keep_arrays=False)
    assert other.p_tts == pytest.approx(beats[1]["p_tts"], abs=1e-4)
    assert other.cycle["beats"][0]["p_tts"] == pytest.approx(demo_result.p_tts, abs=1e-4)
    only = analyze(demo_clip_path(), saliency=False, keep_arrays=False, score_all_beats=False)
    assert only.p_tts == pytest.approx(demo_result.p_tts, abs=1e-6)
    assert [b["p_tts"] for b in only.cycle["beats"]][1:] == [None] * (len(beats) - 1)


def test_demo_summary_shows_every_beat(demo_result):
    from ttsfast.demo import format_summary

    text = format_summary(demo_result)
    per_beat = " / ".join(f"{b['p_tts']:.2f}" for b in demo_result.cycle["beats"])
    assert f"{len(demo_result.cycle['beats'])} complete beat(s) (p(TTS) per beat {per_beat})" in text


def test_beat_disagreement_warning():
    from ttsfast.stages import _beat_agreement_warnings

    assert _beat_agreement_warnings([0.7], 0) == []
    assert _beat_agreement_warnings([0.62, 0.75, 0.8], 0) == []
    w = _beat_agreement_warnings([0.62, 0.41], 0)
    assert len(w) == 1 and w[0].code == "beats_disagree" and "0.41 to 0.62" in w[0].message  # labels differ
    assert len(_beat_agreement_warnings([0.95, 0.6], 1)) == 1  # same label, spread 0.35 > 0.3


def test_coordinates_on_request(demo_result):
    g = demo_result.to_dict(coords="grid")["landmarks"]
    o = demo_result.to_dict()["landmarks"]
    assert g["coords"] == "grid"
    # the synthetic sector is letterboxed onto the grid: original = offset + scale * grid
    back = demo_result.to_original(np.array(g["apex"]))
    assert np.allclose(back, o["apex"], atol=0.02)
    with pytest.raises(ValueError):
        demo_result.to_dict(coords="mm")


def test_caller_landmarks_are_used(demo_result):
    lm = {k: demo_result.to_dict()["landmarks"][k] for k in ("septal_annulus", "lateral_annulus", "apex")}
    r = analyze(demo_clip_path(), landmarks=lm, saliency=False)
    d = r.to_dict()
    assert d["landmarks"]["source"] == "caller"
    assert d["saliency"] == {}
    for k in lm:
        assert np.allclose(d["landmarks"][k], lm[k], atol=0.05)


def test_less_than_one_cycle_is_a_quality_error():
    with pytest.raises(QualityError, match="cycle|beat"):
        analyze(real_clip_path("tts_a4c_philips.mp4"))


def test_real_control_clip_heart_rate():
    r = analyze(real_clip_path("ctrl_a4c_ge_55hz.mp4"), fps=55)
    d = r.to_dict()
    assert d["cycle"]["fps_source"] == "caller"
    assert d["cycle"]["heart_rate_bpm"] == pytest.approx(91, rel=0.05)
    json.dumps(d, allow_nan=False)


def test_bad_arguments():
    with pytest.raises(InputError):
        analyze(demo_clip_path(), device="tpu")
    with pytest.raises(InputError):
        analyze(demo_clip_path(), saliency="maybe")
    with pytest.raises(InputError):
        analyze("/nonexistent/clip.dcm")
    with pytest.raises(InputError, match="tracker"):
        analyze(demo_clip_path(), tracker="optical")


def test_tracker_choice_is_used_and_reported(demo_result):
    """The default tracker is DIS; the study's LK on the same clip is available and reported."""
    assert demo_result.to_dict()["mechanics"]["method"] == "dis"
    r = analyze(demo_clip_path(), tracker="lk", saliency=False, score_all_beats=False)
    m = r.to_dict()["mechanics"]
    assert m["method"] == "lk"
    assert r.p_tts == pytest.approx(demo_result.p_tts, abs=1e-6)  # the model does not see the tracker
    assert m["gls_pct"] != pytest.approx(demo_result.to_dict()["mechanics"]["gls_pct"], abs=1e-3)


def test_cli_tracker_choices_are_the_mechanics_methods():
    """The CLI lists its --tracker choices itself (so that starting it does not import the
    mechanics stage); they must stay the methods measure_mechanics accepts, default first."""
    import argparse

    from ttsfast.cli import build_parser
    from ttsfast.mechanics import METHODS

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for cmd in ("analyze", "cohort"):  # both pass them on to analyze()
        opt = next(a for a in sub.choices[cmd]._actions if "--tracker" in a.option_strings)
        assert tuple(opt.choices) == METHODS and opt.default == METHODS[0]
        args = sub.choices[cmd].parse_args(["x", "-o", "y", "--tracker", "flow", "--annulus-anchor"])
        from ttsfast.cli import _analyze_kwargs

        kw = _analyze_kwargs(args)
        assert kw["tracker"] == "flow" and kw["annulus_anchor"] is True
        assert _analyze_kwargs(sub.choices[cmd].parse_args(["x", "-o", "y"]))["annulus_anchor"] is True
        assert _analyze_kwargs(sub.choices[cmd].parse_args(["x", "-o", "y", "--no-annulus-anchor"]))["annulus_anchor"] is False


def test_write_report_is_complete_and_atomic(demo_result, tmp_path):
    out = write_report(demo_result, tmp_path / "r")
    names = {p.name for p in out.iterdir()}
    assert names == {"report.json", "saliency.png", "mechanics.png", "overlay.mp4"}
    assert json.loads((out / "report.json").read_text())["label"] == demo_result.label
    import cv2

    cap = cv2.VideoCapture(str(out / "overlay.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 32
    cap.release()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders left


def test_cli_analyze_and_failure_exit_code(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    cmd = [sys.executable, "-m", "ttsfast.cli", "analyze", str(demo_clip_path()), str(bad), "-o", str(tmp_path / "o"),
           "--no-video"]
    # run outside the source tree so that the installed package (with its native module) is used
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert p.returncode == 1, p.stderr
    assert "bad.mp4: FAILED InputError" in p.stderr and "Traceback" not in p.stderr
    rep = json.loads((tmp_path / "o" / "demo_tts" / "report.json").read_text())
    per_beat = "/".join(f"{b['p_tts']:.2f}" for b in rep["cycle"]["beats"])
    assert f"p(TTS)={rep['p_tts']:.2f} ({rep['label']}) [beats {per_beat}]" in p.stdout
    assert (tmp_path / "o" / "demo_tts" / "report.json").is_file()
    assert not (tmp_path / "o" / "bad").exists()


def test_cli_without_saliency_writes_the_rest(tmp_path):
    """`ttsfast analyze --saliency none` (no saliency computed) still writes the report, the
    mechanics figure and the video; only the saliency figure is left out (it failed before:
    'the result carries no beat arrays')."""
    import json

    from ttsfast.cli import main

    assert main(["analyze", str(demo_clip_path()), "-o", str(tmp_path), "--saliency", "none"]) == 0
    out = next(p.parent for p in tmp_path.rglob("report.json"))
    names = sorted(p.name for p in out.iterdir())
    assert names == ["mechanics.png", "overlay.mp4", "report.json"]
    assert json.loads((out / "report.json").read_text())["saliency"] in (None, {})
