"""The :class:`Clip` type: a grey echo clip with its frame rate, calibration and metadata."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import InputError
from .warning_codes import ReportWarning, as_warning

#: Where a clip's frame rate came from, in order of trust.
FPS_SOURCES = (
    "dicom_frame_time",
    "dicom_frame_time_vector",
    "dicom_cine_rate",
    "caller",
    "container",
    "synthetic",
    "unknown",
)


@dataclass
class Clip:
    """A grey echocardiography clip.

    Attributes
    ----------
    frames : np.ndarray
        uint8 ``[T, H, W]``, C-contiguous, grey levels 0..255.
    fps : float or None
        Acquisition frame rate in frames/s, or None when unknown.
    fps_source : str
        One of :data:`FPS_SOURCES`: where ``fps`` came from.
    mm_per_px : float or None
        Isotropic pixel size in mm of ``frames`` (None when the clip carries no trustworthy
        calibration).
    metadata : dict
        Non-identifying metadata: ``source_kind``, ``vendor``, ``model``, ``n_frames``,
        ``original_size`` (H, W) and similar. Never patient identifiers.
    warnings : list of ReportWarning
        Things the reader noticed and the caller should know (e.g. a dropped calibration);
        plain strings given by a caller become ``source_note`` warnings.
    overlay_mask : np.ndarray or None
        bool ``[H, W]``: pixels that were coloured (not grey) in any frame of the source,
        i.e. likely overlays (ECG trace, markers, colour text); None when unknown.
    """

    frames: np.ndarray
    fps: float | None = None
    fps_source: str = "unknown"
    mm_per_px: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    warnings: list[ReportWarning] = field(default_factory=list)
    overlay_mask: np.ndarray | None = None

    def __post_init__(self) -> None:
        f = self.frames
        if not isinstance(f, np.ndarray) or f.dtype != np.uint8 or f.ndim != 3:
            raise InputError(
                "Clip.frames must be a uint8 array of shape [T,H,W]; got "
                f"{type(f).__name__} {getattr(f, 'dtype', '')} {getattr(f, 'shape', '')}"
            )
        if not f.flags.c_contiguous:
            self.frames = np.ascontiguousarray(f)
        self.warnings = [as_warning(w) for w in self.warnings]
        if self.overlay_mask is not None:
            om = self.overlay_mask
            if not isinstance(om, np.ndarray) or om.dtype != np.bool_ or om.shape != f.shape[1:]:
                raise InputError(
                    "Clip.overlay_mask must be a bool array of shape [H,W] matching the frames; got "
                    f"{type(om).__name__} {getattr(om, 'dtype', '')} {getattr(om, 'shape', '')}"
                )
        if self.fps is not None:
            fps = float(self.fps)
            if not np.isfinite(fps) or fps <= 0 or fps > 10000:
                raise InputError(f"fps must be a positive finite number of frames/s, got {self.fps!r}")
            self.fps = fps
        if self.fps_source not in FPS_SOURCES:
            raise InputError(f"fps_source must be one of {FPS_SOURCES}, got {self.fps_source!r}")
        if self.mm_per_px is not None:
            mm = float(self.mm_per_px)
            if not np.isfinite(mm) or mm <= 0 or mm > 100:
                raise InputError(f"mm_per_px must be a positive finite length in mm, got {self.mm_per_px!r}")
            self.mm_per_px = mm

    @property
    def n_frames(self) -> int:
        """Number of frames T."""
        return int(self.frames.shape[0])

    @property
    def shape(self) -> tuple[int, int]:
        """Frame size (H, W) in pixels."""
        return int(self.frames.shape[1]), int(self.frames.shape[2])

    @property
    def duration_s(self) -> float | None:
        """Duration in seconds (T / fps), None when fps is unknown."""
        return None if self.fps is None else self.n_frames / self.fps
