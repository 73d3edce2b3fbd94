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

    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        out.append(cv2.resize(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY), size, interpolation=cv2.INTER_AREA))
    cap.release()
    return np.stack(out)


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
