"""Shared fixtures: where ../shared/data lives, and whether its absence is a skip or a failure."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """The ``shared`` folder beside the repository (``TTSFAST_SHARED`` overrides it)."""
    env = os.environ.get("TTSFAST_SHARED")
    return Path(env) if env else REPO_ROOT.parent / "shared"


def require_shared() -> bool:
    return os.environ.get("TTSFAST_REQUIRE_SHARED", "") not in ("", "0")


def real_clip_path(name: str) -> Path:
    """Path of a real clip in ``shared/data/real``; skip (or fail under
    ``TTSFAST_REQUIRE_SHARED=1``) when it is absent."""
    p = shared_dir() / "data" / "real" / name
    if not p.is_file():
        msg = f"shared data not found: {p}"
        if require_shared():
            pytest.fail(msg + " (TTSFAST_REQUIRE_SHARED=1)")
        pytest.skip(msg)
    return p


def read_grey(path: Path, size: tuple[int, int] = (352, 256)):
    """Frames of a video as grey uint8 [T, h, w], area-resized to ``size`` (w, h) with OpenCV
    (an independent reader, so that stage tests do not depend on ttsfast.read_clip)."""
    import cv2
    import numpy as np

    return np.stack([cv2.resize(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY), size, interpolation=cv2.INTER_AREA)
                     for f in read_bgr(path)])


def read_bgr(path: Path) -> list:
    """Every frame of a video as OpenCV gives it: BGR uint8 ``[H, W, 3]``, as a capture card would."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
    return frames


def write_test_dicom(path, arr, *, pi: str = "MONOCHROME2", regions=None, tsyntax=None, **tags):
    """Write an uncompressed (multi-frame) ultrasound DICOM of ``arr`` uint8 [T,H,W(,3)] (None:
    no pixel data), with patient identifiers that a reader must not copy out, optional
    SequenceOfUltrasoundRegions items (dicts of tags) and any other tags. ``tsyntax`` replaces
    the transfer syntax UID (the data stay explicit VR little endian)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.3.1"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "US"
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "SECRET123"
    ds.PatientBirthDate = "19500101"
    ds.InstitutionName = "General Hospital"
    ds.StudyDate = "20200101"
    ds.Manufacturer = "TestVendor"
    ds.ManufacturerModelName = "Model X"
    if arr is not None:
        ds.set_pixel_data(arr, pi, 8)
        if arr.shape[0] >= 1 and "NumberOfFrames" not in ds:
            ds.NumberOfFrames = arr.shape[0]
    if regions is not None:
        seq = []
        for r in regions:
            item = Dataset()
            for k, v in r.items():
                setattr(item, k, v)
            seq.append(item)
        ds.SequenceOfUltrasoundRegions = Sequence(seq)
    for k, v in tags.items():
        setattr(ds, k, v)
    if tsyntax is not None:
        ds.file_meta.TransferSyntaxUID = tsyntax
    ds.save_as(path, enforce_file_format=True, implicit_vr=False, little_endian=True)
    return path


@pytest.fixture
def real_clip():
    """Fixture form of :func:`real_clip_path`: ``real_clip("ctrl_a4c_ge_55hz.mp4")``."""
    return real_clip_path


@pytest.fixture(autouse=True)
def _reports_follow_schema(monkeypatch):
    """Every report a test makes (``AnalysisResult.to_dict``) is validated against the shipped
    JSON Schema, so that no test can produce a report outside the contract unnoticed."""
    jsonschema = pytest.importorskip("jsonschema")
    from ttsfast.result import AnalysisResult
    from ttsfast.warning_codes import report_schema

    validator = jsonschema.Draft202012Validator(report_schema())
    original = AnalysisResult.to_dict

    def checked(self, *args, **kwargs):
        d = original(self, *args, **kwargs)
        errors = sorted(validator.iter_errors(d), key=lambda e: list(e.path))
        if errors:
            raise AssertionError("report does not follow ttsfast/data/report.schema.json: "
                                 + "; ".join(f"{'/'.join(map(str, e.path))}: {e.message[:200]}" for e in errors[:5]))
        return d

    monkeypatch.setattr(AnalysisResult, "to_dict", checked)


# ----------------------------------------------------------------------------- synthetic clips

@pytest.fixture(scope="module")
def synth_cache():
    """Per-module cache of synthetic clips and their flow (``_synth_helpers.synth_case``)."""
    return {}


# ----------------------------------------------------------------------------- accuracy record

_ACCURACY = pytest.StashKey[list]()


def artefacts_dir() -> Path:
    """Where test artefacts go: ``$TTSFAST_ARTEFACTS``, else ``<repo root>/build`` (git-ignored)."""
    env = os.environ.get("TTSFAST_ARTEFACTS")
    return Path(env) if env else REPO_ROOT / "build"


def _jsonable(v):
    import numpy as np

    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (np.generic, np.ndarray)):
        return _jsonable(v.tolist())
    return v


@pytest.fixture(scope="session")
def accuracy_record(pytestconfig):
    """``accuracy_record(key, case, value, limit=None, unit=None, met=None, **extra)``: keep a
    measured accuracy number (a float, or a dict of them) for ``accuracy.json``, written at the
    end of the session (see ``pytest_sessionfinish``). For a key of the targets table
    (tests/accuracy_targets.py) limit, unit and met default to the table's."""
    from datetime import datetime, timezone

    from accuracy_targets import TARGETS

    records = pytestconfig.stash.setdefault(_ACCURACY, [])

    def record(key, case, value, *, limit=None, unit=None, met=None, **extra):
        t = TARGETS.get(key)
        if t is not None:
            limit = t.limit if limit is None else limit
            unit = t.unit if unit is None else unit
        if met is None and limit is not None and not isinstance(value, dict):
            met = bool(value <= limit)
        rec = {"key": key, "case": str(case), "value": _jsonable(value), "limit": limit, "unit": unit,
               "met": None if met is None else bool(met),
               "test": os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" (", 1)[0],
               "recorded": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        rec.update({k: _jsonable(v) for k, v in extra.items()})
        records.append(rec)

    return record


def pytest_sessionfinish(session, exitstatus):
    """Write ``accuracy.json`` when anything was recorded: the date, the targets table and
    every value recorded. Values of earlier sessions for (key, case) pairs not measured in this
    one are kept (each record carries its own time), so that running the test files one by one
    fills one file. A directory that cannot be written is a warning, never an error."""
    import json
    import warnings
    from datetime import datetime, timezone

    records = session.config.stash.get(_ACCURACY, None)
    if not records:
        return
    out = artefacts_dir() / "accuracy.json"
    try:
        from accuracy_targets import TARGETS

        new = {(r["key"], r["case"]): r for r in records}
        kept = []
        try:
            old = json.loads(out.read_text())
            kept = [r for r in old.get("records", []) if (r.get("key"), r.get("case")) not in new]
        except (OSError, ValueError, AttributeError):
            pass
        doc = {
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "targets": {k: {"what": t.what, "limit": t.limit, "unit": t.unit, "unmet": sorted(t.unmet)}
                        for k, t in TARGETS.items()},
            "records": sorted(kept + list(new.values()), key=lambda r: (r["key"], r["case"])),
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps(doc, indent=1, allow_nan=True) + "\n")
        tmp.replace(out)
        session.config.stash[_ACCURACY_PATH] = f"accuracy numbers ({len(new)} recorded): {out}"
    except Exception as e:  # noqa: BLE001 - an artefact must never fail the session
        msg = f"accuracy.json not written to {out}: {type(e).__name__}: {e}"
        session.config.stash[_ACCURACY_PATH] = "WARNING " + msg
        warnings.warn(msg, stacklevel=1)


_ACCURACY_PATH = pytest.StashKey[str]()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    line = config.stash.get(_ACCURACY_PATH, None)
    if line:
        terminalreporter.write_line(line, yellow=line.startswith("WARNING"))
