"""Regional LV mechanics of one beat: the paper's peak longitudinal displacement of the basal
inferoseptal and basal anterolateral points, AV-plane excursion, segmental and global
longitudinal strain, and annular velocities S' and E'.

Input is the analysis-grid clip (frames, dense flow), one beat ``(ed, es, next_ed)`` from
:mod:`ttsfast.cycle`, and landmarks (:mod:`ttsfast.landmarks`). Points are tracked with
:mod:`ttsfast.tracking`.

Modules: :mod:`.points` (the tracked points by name), :mod:`.trackers` (one function per
method), :mod:`.anchoring` (annulus anchoring), :mod:`.timebase` (sub-frame beat times,
resampling), :mod:`.closure` (beat closure), :mod:`.strain` and :mod:`.measures` (the measures),
:mod:`.result` (:class:`Mechanics`) and :mod:`.measure` (:func:`measure_mechanics`). Why the
constants have their values: ``docs/mechanics_notes.md``.

Definitions
-----------
* Long axis: from the annulus midpoint to the apex (tracked landmarks); "longitudinal" is the
  projection on it, positive toward the apex.
* ``peak_displacement_px`` (the paper's measure): the beat's tracked positions are resampled to
  ``n_resample`` (32) frames between the sub-frame ED and next-ED times (cubic interpolation in
  time); each step between consecutive frames is projected on the long axis of its first frame;
  "systolic" is the largest |step| from ED to ES, "diastolic" the largest from ES to the next
  ED. In ORIGINAL-image pixels (through ``to_original``; grid px when it is None), also in grid
  px (``peak_displacement_grid_px``) and in mm (grid px times ``mm_per_px``) when calibrated.
* ``excursion``: largest longitudinal displacement of the annulus point from its ED position
  toward the apex (long axis fixed at ED), same units.
* Strain: Lagrangian, ``100 * (L(t) - L(ED)) / L(ED)`` of the length of each third of a wall
  (basal, mid, apical) along the tracked mid-wall points; GLS from the summed length of both
  walls. ``strain_peak_pct`` is the most negative value over the beat (post-systolic shortening
  included), ``strain_systolic_peak_pct`` the most negative from ED to ES.
* ``s_prime_cm_s`` / ``e_prime_cm_s``: peak longitudinal annulus velocity toward the apex in
  systole, and away from it in early diastole (first 60 % of ES -> next ED, so that the atrial
  A' wave is left out), from the frame-to-frame steps at the acquisition frame rate with a
  parabolic peak refinement; need ``mm_per_px`` and ``fps``.
"""
from __future__ import annotations

from .anchoring import (ANNULUS_ANCHOR_CLOSURE_PX, ANNULUS_ANCHOR_FRACTION, ANNULUS_ANCHOR_GUARD_MIN_PX,
                        ANNULUS_ANCHOR_GUARD_PX, ANNULUS_ANCHOR_GUARD_RATIO, ANNULUS_ANCHOR_SMOOTH, anchor_annuli,
                        anchor_annulus, anchor_points, anchor_trusted, similarity_carry)
from .closure import DRIFT_WARN_FRACTION, DRIFT_WARN_MIN_PX, STRAIN_CLOSURE_WARN_PCT, close_beat
from .measure import measure_mechanics
from .measures import BASAL, VEL_NAMES
from .points import LEVELS, SEGMENTS, WALLS, TrackedPoints
from .result import Mechanics
from .strain import segment_bounds, segment_closure_pct, segment_lengths, strain_curves
from .trackers import (DIS_ROI_MARGIN, LK_REFINE_LEVELS, LK_REFINE_WIN, METHODS, TRACKERS, TrackOptions, track,
                       tracking_box)

__all__ = ["Mechanics", "measure_mechanics", "segment_lengths", "strain_curves", "tracking_box", "SEGMENTS", "WALLS",
           "METHODS", "anchor_annulus", "anchor_trusted", "similarity_carry"]
# also importable from here (not in __all__, as before): the constants and helpers of the submodules
_REEXPORTED = (ANNULUS_ANCHOR_CLOSURE_PX, ANNULUS_ANCHOR_FRACTION, ANNULUS_ANCHOR_GUARD_MIN_PX, ANNULUS_ANCHOR_GUARD_PX,
               ANNULUS_ANCHOR_GUARD_RATIO, ANNULUS_ANCHOR_SMOOTH, anchor_annuli, anchor_points, DRIFT_WARN_FRACTION,
               DRIFT_WARN_MIN_PX, STRAIN_CLOSURE_WARN_PCT, close_beat, BASAL, VEL_NAMES, LEVELS, TrackedPoints,
               segment_bounds, segment_closure_pct, DIS_ROI_MARGIN, LK_REFINE_LEVELS, LK_REFINE_WIN, TRACKERS,
               TrackOptions, track)
