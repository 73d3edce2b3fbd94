"""The real clips of ``../shared/data/real`` for the benchmarks, found the tests' way."""
from __future__ import annotations

import importlib.util
from pathlib import Path


def real_clip_path(name: str) -> Path:
    """tests/conftest.py's real_clip_path (skip, or fail under TTSFAST_REQUIRE_SHARED=1)."""
    spec = importlib.util.spec_from_file_location(
        "_ttsfast_tests_conftest", Path(__file__).resolve().parents[1] / "tests" / "conftest.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.real_clip_path(name)
