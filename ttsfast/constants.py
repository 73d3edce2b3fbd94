"""Constants shared by several stages."""
from __future__ import annotations

#: Frames of one beat, end-diastole to the next, as the model sees it and as the paper's peak
#: displacement is measured (the study resampled every cycle to 32 frames).
FRAMES_PER_BEAT = 32

__all__ = ["FRAMES_PER_BEAT"]
