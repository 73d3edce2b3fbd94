"""The result of :func:`ttsfast.mechanics.measure_mechanics`: :class:`Mechanics`."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..landmarks import Landmarks
from ..warning_codes import ReportWarning, warning_dicts


@dataclass
class Mechanics:
    """Regional mechanics of one beat (see the module docstring for the definitions).

    Values that cannot be measured are None and ``warnings`` says why.

    Attributes
    ----------
    beat, beat_times : tuple
        (ed, es, next_ed) frames and their sub-frame times.
    landmarks : Landmarks
        Grid px, with source ("caller"/"auto"), confidence and mirrored.
    peak_displacement_px, peak_displacement_grid_px, peak_displacement_mm : dict
        {basal_inferoseptal, basal_anterolateral} -> {systolic, diastolic}: the paper's measure in
        original-image px, analysis-grid px and mm (None without calibration).
    excursion_px, excursion_mm : dict
        Same two points -> AV-plane excursion.
    strain_peak_pct, strain_systolic_peak_pct : dict
        Six segments -> peak strain % (whole beat / ED..ES); ``gls_pct`` the same for GLS.
    s_prime_cm_s, e_prime_cm_s : dict or None
        {septal, lateral} -> cm/s (None without fps and mm_per_px).
    curves : dict
        ``displacement_px`` (32 samples, original px, toward the apex), ``peak_step_index``,
        ``es_index``, ``strain_pct`` (32 samples), native-frame versions and their times.
    tracks : dict
        Landmark ``[n_resample, 2]`` and wall ``[n_resample, n_wall, 2]`` positions on the beat
        resampled to ``n_resample`` frames, grid px.
    drift_px : dict
        Beat-closure error (px, grid) of each landmark and the median of the wall points,
        before any correction.
    fb_error_px : float or None
        Median forward-backward error per step (with ``flow_backward``).
    method : str
        The tracker (``measure_mechanics(method=)``).
    annulus_anchored : dict
        ``septal_annulus`` / ``lateral_annulus`` -> whether that annulus track's slow part was
        taken from its basal wall (:func:`anchor_annulus`; False with ``annulus_anchor=False``,
        for the study's ``"lk"``, and where the guard :func:`anchor_trusted` kept the own track).
    strain_closure_pct : dict
        Six segments -> how far their end points ended the beat from their start, in strain
        points of the segment's length (:func:`segment_closure_pct`; a warning above
        ``STRAIN_CLOSURE_WARN_PCT``).
    """

    beat: tuple[int, int, int]
    landmarks: Landmarks
    peak_displacement_px: dict[str, dict[str, float | None]]
    peak_displacement_mm: dict[str, dict[str, float | None]] | None
    peak_displacement_grid_px: dict[str, dict[str, float | None]]
    excursion_px: dict[str, float | None]
    excursion_mm: dict[str, float | None] | None
    strain_peak_pct: dict[str, float | None]
    strain_systolic_peak_pct: dict[str, float | None]
    gls_pct: float | None
    s_prime_cm_s: dict[str, float | None] | None
    e_prime_cm_s: dict[str, float | None] | None
    beat_times: tuple[float, float, float]
    curves: dict[str, Any]
    tracks: dict[str, np.ndarray]
    drift_px: dict[str, float]
    fb_error_px: float | None
    method: str
    n_resample: int
    warnings: list[ReportWarning] = field(default_factory=list)
    to_original: Callable[[np.ndarray], np.ndarray] | None = None
    annulus_anchored: dict[str, bool] = field(default_factory=dict)
    strain_closure_pct: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dict; keys as in the study table (``mechanics.*``)."""

        from ..result import to_jsonable

        def rnd(v: Any) -> Any:
            return to_jsonable(v, digits=4)

        return {
            "beat": [int(x) for x in self.beat],
            "beat_times": [round(float(x), 3) for x in self.beat_times],
            "landmarks": self.landmarks.to_dict(self.to_original),
            "peak_displacement_px": rnd(self.peak_displacement_px),
            "peak_displacement_mm": rnd(self.peak_displacement_mm),
            "peak_displacement_grid_px": rnd(self.peak_displacement_grid_px),
            "excursion_px": rnd(self.excursion_px),
            "excursion_mm": rnd(self.excursion_mm),
            "strain_peak_pct": rnd(self.strain_peak_pct),
            "strain_systolic_peak_pct": rnd(self.strain_systolic_peak_pct),
            "gls_pct": rnd(self.gls_pct),
            "s_prime_cm_s": rnd(self.s_prime_cm_s),
            "e_prime_cm_s": rnd(self.e_prime_cm_s),
            "curves": rnd(self.curves),
            "drift_px": rnd(self.drift_px),
            "strain_closure_pct": rnd(self.strain_closure_pct),
            "fb_error_px": rnd(self.fb_error_px),
            "method": self.method,
            "annulus_anchored": dict(self.annulus_anchored),
            "n_resample": self.n_resample,
            "warnings": warning_dicts(self.warnings),
        }
