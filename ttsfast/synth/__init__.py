"""Synthetic apical-4-chamber echo clips with known motion (ground truth for every stage).

>>> from ttsfast.synth import generate
>>> clip, gt = generate("tts", seed=3)           # doctest: +SKIP
>>> gt.true_measures()["peak_displacement_px"]   # doctest: +SKIP
"""
from __future__ import annotations

from .clipgen import draw_params, generate, to_rgb, true_measures_fast
from .groundtruth import GroundTruth
from .motion import SEGMENTS
from .presets import PRESETS
from .writers import write_dicom, write_video

__all__ = ["generate", "GroundTruth", "write_dicom", "write_video", "PRESETS", "SEGMENTS",
           "to_rgb", "draw_params", "true_measures_fast"]
