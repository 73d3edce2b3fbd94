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


@pytest.fixture
def real_clip():
    """Fixture form of :func:`real_clip_path`: ``real_clip("ctrl_a4c_ge_55hz.mp4")``."""
    return real_clip_path
