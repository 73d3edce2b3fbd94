"""The report contract: ``schema_version``, the shipped JSON Schema and the coded warnings.

Every report any test makes is also validated by the autouse fixture in conftest.py; here the
demo's report.json on disk, a partial report, the schema's own strictness and the list of codes.
"""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import numpy as np
import pytest

import ttsfast
from ttsfast.warning_codes import SCHEMA_VERSION, STAGES, WARNING_CODES, ReportWarning, as_warning, report_schema, warn

jsonschema = pytest.importorskip("jsonschema")
REPO = Path(__file__).resolve().parents[1]


def _errors(d: dict) -> list[str]:
    v = jsonschema.Draft202012Validator(report_schema())
    return [f"{'/'.join(map(str, e.path))}: {e.message}" for e in v.iter_errors(d)]


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory) -> dict:
    """report.json as ``ttsfast demo -o DIR`` writes it."""
    from ttsfast.cli import main

    out = tmp_path_factory.mktemp("demo")
    assert main(["demo", "-o", str(out)]) == 0
    return json.loads(next(out.rglob("report.json")).read_text())


def test_the_schema_is_a_valid_draft_2020_12_schema():
    jsonschema.Draft202012Validator.check_schema(report_schema())


def test_the_demo_report_on_disk_follows_the_schema(demo_report):
    assert demo_report["schema_version"] == SCHEMA_VERSION
    assert _errors(demo_report) == []
    assert demo_report["status"] == "complete"


def test_a_partial_report_follows_the_schema():
    """Landmarks in the black corner outside the sector pass the caller checks but not the
    anatomy checks: a partial report, mechanics withheld and said so in a coded warning."""
    from ttsfast.synth import generate

    clip, _ = generate(preset="normal", seed=0, n_frames=90)
    to_original = ttsfast.preprocess(clip).to_original  # the corner of the analysis grid
    grid_pts = np.array([[290.0, 70.0], [330.0, 70.0], [310.0, 10.0]])
    corner = dict(zip(("septal_annulus", "lateral_annulus", "apex"), to_original(grid_pts).tolist()))
    d = ttsfast.analyze(clip, landmarks=corner, saliency=False, score_all_beats=False).to_dict()
    assert _errors(d) == []
    assert d["status"] == "partial" and d["mechanics"] is None and d["saliency"] == {}
    assert d["withheld"]["mechanics"]["code"] == "landmarks_untrusted"
    assert any(w["code"] == "mechanics_withheld" for w in d["quality"]["warnings"])


@pytest.mark.parametrize("mutate", [
    lambda d: d.pop("schema_version"),
    lambda d: d.update(status="done"),
    lambda d: d["quality"]["warnings"].append({"code": "no_such_code", "stage": "read", "message": "x"}),
    lambda d: d["quality"]["warnings"].append("a free-text warning"),
    lambda d: d["cycle"]["beats"][0].pop("next_ed"),
    lambda d: d.update(p_tts=1.5),
    lambda d: d.update(extra_key=1),
    lambda d: d["mechanics"]["peak_displacement_px"]["basal_inferoseptal"].update(systolic="3 px"),
])
def test_the_schema_rejects_a_broken_report(demo_report, mutate):
    d = copy.deepcopy(demo_report)
    mutate(d)
    assert _errors(d), "the schema accepted a report that breaks the contract"


def test_the_schema_lists_exactly_the_codes_and_stages():
    warning = report_schema()["$defs"]["warning"]["properties"]
    assert sorted(warning["code"]["enum"]) == sorted(WARNING_CODES)
    assert warning["stage"]["enum"] == list(STAGES)
    assert all(stage in STAGES for stage, _ in WARNING_CODES.values())


def test_every_code_is_raised_somewhere_and_every_raised_code_is_known():
    """Static: each ``warn("code", ...)`` in ttsfast/ names a known code, and no code is listed
    that nothing raises (``source_note`` comes from callers' free text)."""
    raised = set()
    for p in (REPO / "ttsfast").rglob("*.py"):
        raised |= set(re.findall(r'warn\(\s*"([a-z_]+)"', p.read_text()))
    assert raised <= set(WARNING_CODES), raised - set(WARNING_CODES)
    assert set(WARNING_CODES) - raised <= {"source_note"}, set(WARNING_CODES) - raised


def test_every_code_is_documented():
    doc = (REPO / "docs" / "report.md").read_text()
    missing = [c for c in WARNING_CODES if f"`{c}`" not in doc]
    assert not missing, missing
    assert f"schema_version` is `\"{SCHEMA_VERSION}\"" in doc or f"`{SCHEMA_VERSION}`" in doc


def test_warnings_in_a_report_are_coded_objects(demo_report):
    """The demo's report holds no free text: every warning, at every level, is an object."""
    def walk(x):
        if isinstance(x, dict):
            for k, v in x.items():
                if k == "warnings":
                    assert all(isinstance(w, dict) and set(w) == {"code", "stage", "message"} for w in v), v
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)
    walk(demo_report)


def test_report_warning_objects():
    w = warn("fps_unknown", "fps unknown: heart rate not measured")
    assert w == ReportWarning("fps_unknown", "cycle", "fps unknown: heart rate not measured")
    assert w.to_dict() == {"code": "fps_unknown", "stage": "cycle", "message": "fps unknown: heart rate not measured"}
    assert as_warning(w.to_dict()) == w
    with pytest.raises(ValueError):
        warn("made_up", "x")
    with pytest.raises(ValueError):
        ReportWarning("fps_unknown", "nowhere", "x")


def test_a_callers_clip_with_free_text_warnings_gets_source_notes():
    clip = ttsfast.Clip(np.zeros((4, 16, 16), np.uint8), fps=30, warnings=["my note"])
    assert clip.warnings == [ReportWarning("source_note", "read", "my note")]


def test_cohort_counts_warning_codes():
    from ttsfast.cohort import warning_counts

    recs = [{"quality": {"warnings": [warn("fps_unknown", "a").to_dict(), warn("fps_unknown", "b").to_dict()]}},
            {"quality": {"warnings": [warn("fps_low", "c").to_dict(), warn("fps_unknown", "d").to_dict()]}},
            {"quality": {"warnings": ["an old free-text warning"]}}]
    assert warning_counts(recs) == {"fps_unknown": 2, "fps_low": 1, "source_note": 1}
