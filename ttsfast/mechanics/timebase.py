"""The beat's time base: sub-frame beat times, the span of frames tracked, positions at
fractional frame times, and the beat on its native frames or resampled to ``n_resample``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError, QualityError
from ..tracking import sample_flow
from .points import TrackedPoints


@dataclass(frozen=True)
class BeatTimes:
    """Sub-frame ``ed`` / ``es`` / ``next_ed`` frame times of the beat and the integer frames
    ``t_lo..t_hi`` its tracks cover (``t_lo`` one before the integer ED when ``ed`` lies
    before it)."""

    ed: float
    es: float
    next_ed: float
    t_lo: int
    t_hi: int

    def as_tuple(self) -> tuple[float, float, float]:
        return self.ed, self.es, self.next_ed

    def frame_times(self, n: int) -> np.ndarray:
        """float64 ``[n]``: the times of the ``n`` tracked frames from ``t_lo``."""
        return np.arange(self.t_lo, self.t_lo + n, dtype=np.float64)

    def native_times(self) -> np.ndarray:
        """The beat on its own frames: ED at its sub-frame time, the integer frames inside the
        beat, the next ED."""
        ed_f, ned_f = self.ed, self.next_ed
        inner = np.arange(int(np.floor(ed_f)) + 1, int(np.ceil(ned_f)), dtype=np.float64)
        return np.concatenate([[ed_f], inner[(inner > ed_f) & (inner < ned_f)], [ned_f]])

    def resampled(self, n_resample: int) -> tuple[np.ndarray, int]:
        """The ``n_resample`` times from ED to the next ED, and the index of ES among them (kept
        within 1..n_resample-2)."""
        ed_f, es_f, ned_f = self.as_tuple()
        t32 = np.linspace(ed_f, ned_f, n_resample)
        es32 = int(round((es_f - ed_f) / (ned_f - ed_f) * (n_resample - 1)))
        return t32, min(max(es32, 1), n_resample - 2)


def check_beat(beat: Any, n_frames: int) -> tuple[int, int, int]:
    try:
        ed, es, ned = (int(x) for x in beat)
    except (TypeError, ValueError):
        raise InputError(f"beat must be (ed, es, next_ed) frame indices, got {beat!r}") from None
    if not (0 <= ed < es < ned <= n_frames - 1):
        raise InputError(f"beat must satisfy 0 <= ed < es < next_ed <= {n_frames - 1}, got {(ed, es, ned)}")
    if ned - ed < 4:
        raise QualityError(f"beat {ed}->{ned} has fewer than 4 frames: not measurable")
    return ed, es, ned


def beat_time_base(beat_times: Any, beat: tuple[int, int, int], n_frames: int) -> BeatTimes:
    """:class:`BeatTimes` from the cycle stage's sub-frame ``beat_times`` (None: the integer
    ``beat``); the landmarks are on the integer ED frame."""
    ed, es, ned = beat
    if beat_times is None:
        ed_f, es_f, ned_f = float(ed), float(es), float(ned)
    else:
        try:
            ed_f, es_f, ned_f = (float(x) for x in beat_times)
        except (TypeError, ValueError):
            raise InputError(f"beat_times must be three frame times (ed, es, next_ed), got {beat_times!r}") from None
        if not (abs(ed_f - ed) <= 1 and abs(ned_f - ned) <= 1 and ed_f < es_f < ned_f
                and ed_f >= 0 and ned_f <= n_frames - 1):
            raise InputError(f"beat_times {beat_times} do not match beat {(ed, es, ned)}")
    t_lo = int(np.floor(ed_f))
    t_hi = min(int(np.ceil(ned_f)), n_frames - 1)
    return BeatTimes(ed_f, es_f, ned_f, t_lo, max(t_hi, ned))


def extend_back(points: np.ndarray, flow: np.ndarray, ed_pair: int) -> np.ndarray:
    """``points`` ``[K, M, 2]`` from frame ed with one step back to frame ed-1 in front: solves
    ``x + flow[ed-1](x) = p(ed)`` (``ed_pair``: index of the pair ed -> ed+1 in ``flow``)."""
    back = points[0].copy()
    for _ in range(4):
        back = points[0] - sample_flow(flow[ed_pair - 1:ed_pair], back[None])[0]
    return np.concatenate([back[None], points])


def positions_at(times: np.ndarray, arr: np.ndarray, t_lo: int) -> np.ndarray:
    """Positions at fractional frame times of tracks ``arr`` ``[K, ...]`` at frames ``t_lo..``:
    cubic (Catmull-Rom) interpolation in time, which keeps the peaks of fast motion that linear
    interpolation between frames flattens."""
    n = arr.shape[0]
    x = np.clip(np.asarray(times, dtype=np.float64) - t_lo, 0.0, n - 1.0)
    i1 = np.minimum(np.floor(x).astype(int), n - 2)
    u = (x - i1)[:, None, None]
    p0, p1 = arr[np.maximum(i1 - 1, 0)], arr[i1]
    p2, p3 = arr[i1 + 1], arr[np.minimum(i1 + 2, n - 1)]
    return 0.5 * (2 * p1 + (-p0 + p2) * u + (2 * p0 - 5 * p1 + 4 * p2 - p3) * u ** 2
                  + (-p0 + 3 * p1 - 3 * p2 + p3) * u ** 3)


def resample_beat(raw: TrackedPoints, bt: BeatTimes, n_resample: int
                  ) -> tuple[np.ndarray, TrackedPoints, TrackedPoints, int]:
    """The beat of the tracks ``raw`` (frames ``bt.t_lo..``) on its own frames (times, points) and
    resampled to ``n_resample`` frames between the sub-frame EDs (points, index of ES)."""
    t_beat = bt.native_times()
    Pb = raw.with_array(positions_at(t_beat, raw.array, bt.t_lo))
    t32, es32 = bt.resampled(n_resample)
    return t_beat, Pb, raw.with_array(positions_at(t32, raw.array, bt.t_lo)), es32
