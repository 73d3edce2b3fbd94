"""Optional dependencies: imported where a feature needs them, with a typed error that names
the extra to install when they are missing."""
from __future__ import annotations

from types import ModuleType

from .errors import MissingDependencyError

#: What installs PyTorch for ttsfast.
TORCH_EXTRA = 'pip install "ttsfast[train]"  (PyTorch >=2.13,<2.15)'


def require_torch(purpose: str) -> ModuleType:
    """``torch``, or :class:`MissingDependencyError` saying that ``purpose`` needs it.

    Parameters
    ----------
    purpose : str
        What needs PyTorch, e.g. ``"saliency='gradcam'"``; named in the message.
    """
    try:
        import torch
    except ImportError as exc:
        raise MissingDependencyError(
            f"{purpose} needs PyTorch, which is not installed: {TORCH_EXTRA}. Inference (analyze() with the "
            "ONNX model and the CAM saliency) does not need it") from exc
    return torch
