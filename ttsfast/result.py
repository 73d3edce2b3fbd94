"""The one result of :func:`ttsfast.analyze`: :class:`AnalysisResult`, and its JSON form."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .warning_codes import SCHEMA_VERSION, ReportWarning, warning_dicts

LANDMARK_NAMES = ("septal_annulus", "lateral_annulus", "apex")


@dataclass
class BeatArrays:
    """Arrays of the analysed beat, on the analysis grid, for figures and overlays.

    Attributes
    ----------
    frames : np.ndarray
        uint8 ``[N, h, w]``: the beat resampled to N frames (N = 32 by default).
    saliency : dict of str -> np.ndarray
        ``"spatial"`` and ``"temporal"``: float32 ``[N, h, w]`` in [0, 1].
    tracks : dict of str -> np.ndarray
        Landmark and wall-point trajectories, float ``[N, 2]`` or ``[N, P, 2]`` (x, y) grid px.
    es_index : int
        Index of end-systole within the N frames.
    """

    frames: np.ndarray
    saliency: dict[str, np.ndarray] = field(default_factory=dict)
    tracks: dict[str, np.ndarray] = field(default_factory=dict)
    es_index: int | None = None


@dataclass
class AnalysisResult:
    """Everything :func:`ttsfast.analyze` found for one clip.

    Coordinates are kept on the analysis grid; :meth:`to_dict` gives them in original-image
    pixels (default) or grid pixels. Values that could not be measured are None, and
    ``warnings`` says why.
    """

    p_tts: float | None
    label: str | None
    model: dict[str, Any]
    cycle: dict[str, Any]
    landmarks: dict[str, Any]
    mechanics: dict[str, Any]
    saliency: dict[str, Any]
    warnings: list[ReportWarning]
    timings_ms: dict[str, float]
    source: dict[str, Any]
    beat: BeatArrays | None = None
    to_original: Callable[[np.ndarray], np.ndarray] | None = None
    #: clip-quality measures besides the warnings, e.g. ``frame_correlation`` (median Pearson r
    #: of consecutive frames in the sector; > 0.9 for ultrasound, clips below 0.5 are refused)
    quality: dict[str, Any] = field(default_factory=dict)
    #: ``"complete"``, or ``"partial"`` when landmark-dependent values were withheld
    status: str = "complete"
    #: what was withheld -> ``{code, reason, hint}`` (``mechanics``, ``saliency_regions``)
    withheld: dict[str, dict[str, str]] = field(default_factory=dict)

    def landmarks_in(self, coords: str = "original") -> dict[str, Any]:
        """Landmarks as ``{name: [x, y]}`` plus ``source`` and ``confidence``, in
        ``"original"`` image pixels or ``"grid"`` pixels."""
        if coords not in ("original", "grid"):
            raise ValueError(f"coords must be 'original' or 'grid', got {coords!r}")
        out = dict(self.landmarks)
        for name in LANDMARK_NAMES:
            xy = out.get(name)
            if xy is None:
                continue
            arr = np.asarray(xy, dtype=np.float64)
            if coords == "original" and self.to_original is not None:
                arr = np.asarray(self.to_original(arr), dtype=np.float64)
            out[name] = [round(float(arr[0]), 2), round(float(arr[1]), 2)]
        out["coords"] = coords
        return out

    def to_dict(self, coords: str = "original") -> dict[str, Any]:
        """Plain-JSON dict (see the README for the keys). NaN becomes None."""
        d = {
            "schema_version": SCHEMA_VERSION,
            "status": self.status,
            "withheld": self.withheld,
            "p_tts": self.p_tts,
            "label": self.label,
            "model": self.model,
            "cycle": self.cycle,
            "landmarks": self.landmarks_in(coords),
            "mechanics": self.mechanics,
            "saliency": self.saliency,
            "quality": {"warnings": warning_dicts(self.warnings), **self.quality},
            "timings_ms": self.timings_ms,
            "source": self.source,
        }
        return to_jsonable(d)

    def to_json(self, coords: str = "original", indent: int | None = 2) -> str:
        """JSON text of :meth:`to_dict`."""
        return json.dumps(self.to_dict(coords), indent=indent, allow_nan=False)


def to_jsonable(x: Any, digits: int | None = None) -> Any:
    """Recursively convert numpy scalars/arrays and tuples to plain Python, non-finite floats
    to None, and round floats to ``digits`` decimals when given."""
    if isinstance(x, dict):
        return {str(k): to_jsonable(v, digits) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_jsonable(v, digits) for v in x]
    if isinstance(x, np.ndarray):
        return to_jsonable(x.tolist(), digits)
    if isinstance(x, (np.bool_, bool)):
        return bool(x)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        v = float(x)
        if not math.isfinite(v):
            return None
        return v if digits is None else round(v, digits)
    return x
