"""ttsfast: Takotsubo syndrome vs anterior STEMI on apical echo clips, fast, with evidence."""
from __future__ import annotations

from .clip import Clip
from .errors import InputError, MissingDependencyError, ModelError, NotEchoError, QualityError, TTSFastError
from .flow import dense_flow
from .io import read_clip
from .model import grad_cam, make_inputs, predict, predict_batch, region_shares
from .preprocess import Prepared, SectorGeometry, preprocess
from .cycle import CycleResult, detect_cycles, resample_beat
from .landmarks import Landmarks, detect_landmarks
from .mechanics import Mechanics, measure_mechanics
from .tracking import TrackResult, track_points
from .result import AnalysisResult
from .warning_codes import SCHEMA_VERSION, WARNING_CODES, ReportWarning, report_schema
# the function shadows its module's name on the package: ``ttsfast.analyze(...)`` is the entry
# point; ``from ttsfast.analyze import analyze`` keeps working (the import system uses sys.modules)
from .analyze import analyze
from .streaming import BeatResult, LiveAnalyzer, live
from .memory import reuse_freed_memory

__version__ = "0.1.0"

__all__ = ["Clip", "dense_flow", "read_clip", "preprocess", "Prepared", "SectorGeometry", "TTSFastError", "InputError", "QualityError", "NotEchoError", "MissingDependencyError", "ModelError", "__version__"]
__all__ += ["make_inputs", "predict", "predict_batch", "grad_cam", "region_shares"]
__all__ += ["CycleResult", "detect_cycles", "resample_beat", "Landmarks", "detect_landmarks", "Mechanics",
            "measure_mechanics", "TrackResult", "track_points"]
__all__ += ["LiveAnalyzer", "BeatResult", "live", "reuse_freed_memory"]
__all__ += ["analyze", "AnalysisResult", "SCHEMA_VERSION", "WARNING_CODES", "ReportWarning", "report_schema"]

#: Subpackages imported on first use (``ttsfast.synth.generate(...)`` after a bare
#: ``import ttsfast``), so that ``import ttsfast`` stays as light as the analysis needs.
_LAZY = ("synth", "cohort", "report", "stats", "demo", "cli", "anatomy")


def __getattr__(name: str):  # PEP 562
    if name in _LAZY:
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'ttsfast' has no attribute {name!r}")

