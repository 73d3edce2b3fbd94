"""ttsfast: Takotsubo syndrome vs anterior STEMI on apical echo clips, fast, with evidence."""
from __future__ import annotations

from .clip import Clip
from .errors import InputError, ModelError, QualityError, TTSFastError
from .flow import dense_flow
from .io import read_clip
from .model import grad_cam, make_inputs, predict, predict_batch, region_shares
from .preprocess import Prepared, SectorGeometry, preprocess
from .cycle import CycleResult, detect_cycles, resample_beat
from .landmarks import Landmarks, detect_landmarks
from .mechanics import Mechanics, measure_mechanics
from .tracking import TrackResult, track_points

__version__ = "0.1.0"

__all__ = ["Clip", "dense_flow", "read_clip", "preprocess", "Prepared", "SectorGeometry", "TTSFastError", "InputError", "QualityError", "ModelError", "__version__"]
__all__ += ["make_inputs", "predict", "predict_batch", "grad_cam", "region_shares"]
__all__ += ["CycleResult", "detect_cycles", "resample_beat", "Landmarks", "detect_landmarks", "Mechanics",
            "measure_mechanics", "TrackResult", "track_points"]
