"""Import of the compiled extension with a clear error when the build is missing."""
from __future__ import annotations

from .errors import TTSFastError

try:
    from . import _native as native  # type: ignore[attr-defined]
except ImportError as exc:  # pragma: no cover - only on a broken install
    raise TTSFastError(
        "the native extension ttsfast._native is not built; reinstall with "
        "`pip install .` (it needs a C++17 compiler and CMake)"
    ) from exc

__all__ = ["native"]
