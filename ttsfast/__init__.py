"""ttsfast: Takotsubo syndrome vs anterior STEMI on apical echo clips, fast, with evidence."""
from __future__ import annotations

from .clip import Clip
from .errors import InputError, ModelError, QualityError, TTSFastError

__version__ = "0.1.0"

__all__ = ["Clip", "TTSFastError", "InputError", "QualityError", "ModelError", "__version__"]
