"""The landmark anatomy checks (ttsfast.anatomy) and one-beat clips, against synthetic truth."""
from __future__ import annotations

import numpy as np
import pytest

import ttsfast
from ttsfast.anatomy import MIN_CONFIDENCE, check_landmarks, geometry_values, judge
from ttsfast.landmarks import LANDMARK_NAMES, Landmarks
from ttsfast.synth import generate


@pytest.fixture(scope="module")
def clips():
    """Classic and wide-variety synthetic clips: (prepared clip, true landmarks on the grid at
    the first true ED frame, that frame)."""
    out = []
    for preset, seed, variety in (("normal", 0, None), ("tts", 3, None), ("stemi_anterior", 1, "wide"),
                                  ("tts", 4, "wide")):
        clip, gt = generate(preset, seed, variety=variety)
        prep = ttsfast.preprocess(clip)
        ed = int(gt.ed_frames[0])
        true = prep.to_grid(np.array([gt.landmarks[n][ed] for n in LANDMARK_NAMES]))
        out.append((prep, true, ed, gt))
    return out


def _lm(p, source="caller", conf=1.0):
    return Landmarks(np.asarray(p[0], float), np.asarray(p[1], float), np.asarray(p[2], float),
                     source=source, confidence=conf)


def test_true_landmarks_pass(clips):
    """Measured 2026-12-06: the hard checks pass the true landmarks of 24/24 classic clips and
    129 of 130 wide-variety clips (refused: tts seed 7, an annulus point read as inside the
    cavity, off_border; docs/landmarks.md)."""
    for prep, true, ed, _ in clips:
        chk = check_landmarks(_lm(true), prep.frames[ed], prep.mask)
        assert chk.trusted, chk.failed


@pytest.mark.parametrize("how, code", [
    ("septal_on_lateral_wall", {"annulus_width", "axis_tilt", "wall_lengths"}),
    ("lateral_halfway_up_the_wall", {"axis_tilt", "wall_lengths"}),
    ("apex_at_annulus_level", {"axis_tilt", "annulus_width", "wall_lengths"}),
])
def test_broken_anatomy_is_refused(clips, how, code):
    for prep, true, ed, _ in clips:
        s, l, a = true
        if how == "septal_on_lateral_wall":
            p = (l + 0.15 * (a - l), l, a)
        elif how == "lateral_halfway_up_the_wall":
            p = (s, l + 0.5 * (a - l), a)
        else:
            p = (s, l, l + np.array([(l - s)[0] * 0.8, -0.05 * abs((l - s)[0])]))
        chk = check_landmarks(_lm(p), prep.frames[ed], prep.mask)
        assert not chk.trusted
        assert {f["code"] for f in chk.failed} & code, chk.failed


def test_confidence_falls_with_tilt_and_unequal_walls():
    base = {"width_ratio": 0.45, "axis_tilt_deg": 0.0, "wall_ratio": 1.0, "cavity_blood": 1.0,
            "between_blood": 1.0, "border_septal_annulus": 0.3, "border_lateral_annulus": 0.3,
            "border_apex": 0.2, "apex_overshoot_blood": 0.0}
    _, c0 = judge(base, 0.8)
    assert c0 == pytest.approx(0.8)
    confs = [judge({**base, "axis_tilt_deg": t}, 0.8)[1] for t in (0, 5, 10, 15)]
    assert all(b < a for a, b in zip(confs, confs[1:]))
    failed, c = judge({**base, "wall_ratio": 1.2}, 0.8)
    assert c == pytest.approx(0.8 * 0.2) and {f["code"] for f in failed} == {"low_confidence"}
    failed, _ = judge({**base, "wall_ratio": 1.2}, 0.8, min_confidence=None)  # caller: hard checks only
    assert not failed
    assert MIN_CONFIDENCE == 0.5


def test_geometry_values_are_scale_free(clips):
    prep, true, _, _ = clips[0]
    g1 = geometry_values(_lm(true))
    g2 = geometry_values(_lm(true * 2.5 + 7.0))
    for k in ("width_ratio", "axis_tilt_deg", "wall_ratio"):
        assert g1[k] == pytest.approx(g2[k], rel=1e-9, abs=1e-9)


def test_analyze_withholds_mechanics_for_untrusted_landmarks(clips):
    """Caller landmarks with the lateral annulus halfway up its wall pass validation but fail
    the anatomy: the report is partial, p(TTS) and the saliency are there, mechanics and the
    region shares are None, and the reason says how to supply landmarks."""
    prep, true, ed, gt = clips[0]
    clip, _ = generate("normal", 0)
    s, l, a = clip_landmarks = np.array([gt.landmarks[n][ed] for n in LANDMARK_NAMES])
    bad = {"septal_annulus": s.tolist(), "lateral_annulus": (l + 0.5 * (a - l)).tolist(), "apex": a.tolist()}
    res = ttsfast.analyze(clip, landmarks=bad)
    d = res.to_dict()
    assert d["status"] == "partial" and d["mechanics"] is None
    assert d["withheld"]["mechanics"]["code"] == "landmarks_untrusted"
    assert "landmarks=" in d["withheld"]["mechanics"]["hint"]
    assert d["landmarks"]["trusted"] is False and d["landmarks"]["checks_failed"]
    assert 0 <= d["p_tts"] <= 1 and res.beat.saliency["temporal"].max() > 0
    assert d["saliency"]["temporal"]["base_share"] is None
    assert d["saliency"]["temporal"]["systole_share"] is not None
    good = ttsfast.analyze(clip, landmarks={n: v.tolist() for n, v in zip(LANDMARK_NAMES, clip_landmarks)})
    assert good.status == "complete" and good.mechanics is not None


def test_one_beat_clip_without_a_flag(clips):
    """A synthetic clip cut from one ED to the next is read as one beat (ED at both ends) with
    a warning; the same beat cut short in diastasis (0.6 of a beat) is refused."""
    clip, gt = generate("tts", 3)
    ed0, ed1 = int(gt.ed_frames[0]), int(gt.ed_frames[1])
    one = clip.frames[ed0:ed1 + 1]
    res = ttsfast.analyze(one, fps=clip.fps, saliency=False)
    beats = res.cycle["beats"]
    assert [(b["ed"], b["next_ed"]) for b in beats] == [(0, one.shape[0] - 1)]
    # one beat's ES is the peak of the longitudinal position (the IVRT-based ES of longer clips
    # needs a real frame rate, which a resampled beat lacks): 4 frames (133 ms) after the true ES
    # on this clip, measured 2026-12-06
    assert 0 <= beats[0]["es"] - (int(gt.es_frames[0]) - ed0) <= 5
    assert any(w.code == "one_beat_read" for w in res.warnings)
    assert res.cycle["heart_rate_bpm"] == pytest.approx(gt.heart_rate_bpm, rel=0.05)
    part = clip.frames[ed0:ed0 + int(0.6 * (ed1 - ed0))]
    with pytest.raises(ttsfast.QualityError):
        ttsfast.analyze(part, fps=clip.fps, saliency=False)
