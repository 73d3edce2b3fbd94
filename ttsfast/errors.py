"""Errors the caller can cause. Every one is a subclass of :class:`TTSFastError`."""
from __future__ import annotations


class TTSFastError(Exception):
    """Base class of every error ttsfast raises on purpose."""


class InputError(TTSFastError, ValueError):
    """Unreadable, unsupported or malformed input (file, array, argument)."""


class QualityError(TTSFastError):
    """The input is readable but cannot be measured (e.g. less than one cardiac cycle)."""


class NotEchoError(InputError, QualityError):
    """The input is not an echo clip (figures, slides, a frozen image, noise): refused, not
    analysed. Both an :class:`InputError` and a :class:`QualityError`."""


class ModelError(TTSFastError):
    """A model file is missing, corrupt, or does not match its model card."""


__all__ = ["TTSFastError", "InputError", "QualityError", "NotEchoError", "ModelError"]
