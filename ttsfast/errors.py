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


class MissingDependencyError(TTSFastError, ImportError):
    """A feature needs an optional dependency that is not installed (e.g. PyTorch, for training,
    the Grad-CAM hooks path, ``.pt`` checkpoints and export); the message names the extra."""


class ModelError(TTSFastError):
    """A model file is missing, corrupt, or does not match its model card."""


__all__ = ["TTSFastError", "InputError", "QualityError", "NotEchoError", "MissingDependencyError", "ModelError"]
