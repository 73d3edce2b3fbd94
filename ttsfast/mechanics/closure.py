"""Beat closure: where the tracked points ended the beat against where they started, its linear
removal, and the warnings where it is large."""
from __future__ import annotations

import numpy as np

from ..landmarks import LANDMARK_NAMES
from ..warning_codes import ReportWarning, warn
from .points import LEVELS, WALLS, TrackedPoints
from .strain import segment_closure_pct
from .timebase import BeatTimes, positions_at

#: An annulus whose track ends the beat at least ``DRIFT_WARN_MIN_PX`` grid px and more than
#: ``DRIFT_WARN_FRACTION`` of its excursion from where it started is warned; see docs/mechanics_notes.md.
DRIFT_WARN_FRACTION = 0.25
DRIFT_WARN_MIN_PX = 1.0
#: A segment whose end points ended the beat farther than this many strain points of its ED
#: length from their start is warned (:func:`segment_closure_pct`); see docs/mechanics_notes.md.
STRAIN_CLOSURE_WARN_PCT = 10.0


def close_beat(raw: TrackedPoints, bt: BeatTimes, drift_correction: bool
               ) -> tuple[TrackedPoints, dict[str, float], dict[str, float], list[ReportWarning]]:
    """The beat-closure error of the tracks ``raw`` ``[K, M, 2]`` (frames ``bt.t_lo..``): where
    the points are at the next ED minus where they were at ED.

    Returns
    -------
    points : TrackedPoints
        ``raw`` less that error linearly in time from ED to the next ED (``drift_correction``),
        else ``raw``.
    drift_px : dict
        Each landmark's closure error and the median of the wall points', grid px.
    strain_closure_pct : dict
        Six segments -> :func:`segment_closure_pct`.
    warnings : list of ReportWarning
        ``strain_not_closed`` naming the segments above ``STRAIN_CLOSURE_WARN_PCT``.
    """
    p_ed, p_ned = (raw.with_array(p) for p in positions_at(np.array([bt.ed, bt.next_ed]), raw.array, bt.t_lo))
    drift_vec = raw.with_array(p_ned.array - p_ed.array)
    if drift_correction:
        ramp = np.clip((bt.frame_times(raw.array.shape[0]) - bt.ed) / (bt.next_ed - bt.ed), 0.0, 1.0)
        raw = raw.with_array(raw.array - ramp[:, None, None] * drift_vec.array[None])
    drift = {n: float(np.hypot(*drift_vec.landmark(n))) for n in LANDMARK_NAMES}
    drift["walls_median"] = float(np.median(np.hypot(*drift_vec.wall_points.T)))
    closure_pct: dict[str, float] = {}
    for wname in WALLS:
        for lvl, v in zip(LEVELS, segment_closure_pct(p_ed.wall(wname), drift_vec.wall(wname))):
            closure_pct[f"{lvl}_{wname}"] = float(v)
    warnings = []
    far = [f"{k} ({v:.0f})" for k, v in closure_pct.items() if v > STRAIN_CLOSURE_WARN_PCT]
    if far:
        warnings.append(warn("strain_not_closed", "the end points of " + ", ".join(far) + " ended the beat that many strain "
                        "points of the segment's length from where they started; the linear closure correction "
                        "is a guess there, so those strains may be off by up to that much"))
    return raw, drift, closure_pct, warnings


def track_closure_warnings(drift: dict[str, float], excursion_grid_px: dict[str, float]) -> list[ReportWarning]:
    """``track_not_closed`` for each annulus (``excursion_grid_px``: landmark name -> its excursion,
    grid px) whose closure error is at least ``DRIFT_WARN_MIN_PX`` and over
    ``DRIFT_WARN_FRACTION`` of its excursion."""
    warnings = []
    for lname, exc_g in excursion_grid_px.items():
        closure_frac = drift[lname] / max(exc_g, 1e-9)
        if drift[lname] >= DRIFT_WARN_MIN_PX and closure_frac > DRIFT_WARN_FRACTION:
            warnings.append(warn("track_not_closed", f"{lname}: its track ended the beat {drift[lname]:.1f} px from where it started "
                            f"({100 * closure_frac:.0f} % of its {exc_g:.1f} px excursion, grid px): "
                            "the tracker lost part of its motion; its displacement, excursion and velocities are "
                            "uncertain by about that much"))
    return warnings
