"""The measures of one tracked beat: the paper's peak displacement, AV-plane excursion, segmental
strain and GLS, and the annular velocities S' and E' (definitions: :mod:`ttsfast.mechanics`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from .._numerics import refined_peak_value
from ..landmarks import LANDMARK_NAMES
from ..warning_codes import ReportWarning, warn
from .points import SEGMENTS, TrackedPoints
from .strain import strain_curves
from .closure import track_closure_warnings
from .timebase import BeatTimes

BASAL = {"basal_inferoseptal": "septal_annulus", "basal_anterolateral": "lateral_annulus"}
VEL_NAMES = {"septal": "septal_annulus", "lateral": "lateral_annulus"}


def _peak_value(v: np.ndarray, sel: np.ndarray) -> float | None:
    """Largest value of ``v`` over the samples ``sel``, refined by a parabola through the
    neighbouring samples (a peak between two frames is otherwise cut)."""
    idx = np.flatnonzero(sel)
    if idx.size == 0:
        return None
    return refined_peak_value(v, int(idx[np.argmax(v[idx])]))


def _peak_steps(
    pos32: np.ndarray, axis: np.ndarray, es32: int
) -> tuple[dict[str, float | None], dict[str, int | None], np.ndarray]:
    """Largest |longitudinal step| in systole (steps 1..es32) and diastole (es32+1..n-1)."""
    d = np.diff(pos32, axis=0)
    # step k+1 goes from sample k to k+1, projected on the long axis at sample k (or a fixed one)
    steps = np.einsum("ij,ij->i", d, axis[:-1]) if axis.ndim == 2 else d @ axis
    out: dict[str, float | None] = {}
    idx: dict[str, int | None] = {}
    for phase, lo, hi in (("systolic", 0, es32), ("diastolic", es32, steps.size)):
        seg = steps[lo:hi]
        if seg.size == 0:
            out[phase], idx[phase] = None, None
        else:
            j = int(np.argmax(np.abs(seg)))
            out[phase], idx[phase] = float(abs(seg[j])), lo + j + 1
    return out, idx, steps


def long_axes(p3: np.ndarray) -> np.ndarray:
    """Unit long axis (annulus midpoint -> apex) per frame of landmarks ``p3`` ``[K, 3, 2]``, [K, 2]."""
    d = p3[:, 2] - 0.5 * (p3[:, 0] + p3[:, 1])
    return d / np.maximum(np.hypot(d[:, 0], d[:, 1]), 1e-12)[:, None]


def _original(p3: np.ndarray, to_original: Callable[[np.ndarray], np.ndarray] | None) -> np.ndarray:
    return np.asarray(to_original(p3), dtype=np.float64) if to_original is not None else p3


@dataclass
class Displacement:
    """Peak displacement and excursion of the two basal points (:data:`BASAL`)."""

    peak_px: dict[str, dict[str, float | None]]
    peak_grid_px: dict[str, dict[str, float | None]]
    peak_mm: dict[str, dict[str, float | None]] | None
    peak_step_index: dict[str, dict[str, int | None]]
    excursion_px: dict[str, float | None]
    excursion_mm: dict[str, float | None] | None
    excursion_grid_px: dict[str, float]  # by landmark name
    curves_px: dict[str, list[float]]
    native_px: dict[str, list[float]]


def displacement(P32: TrackedPoints, Pb: TrackedPoints, es32: int, mm_per_px: float | None,
                 to_original: Callable[[np.ndarray], np.ndarray] | None) -> Displacement:
    """The paper's peak displacement on the resampled beat ``P32`` and the excursion on the native
    beat ``Pb`` (long axis fixed at ED), original px (``to_original``), grid px and mm."""
    P32_o, Pb_o = _original(P32.landmarks, to_original), _original(Pb.landmarks, to_original)
    ax32_g, ax32_o = long_axes(P32.landmarks), long_axes(P32_o)
    ax0_g, ax0_o = long_axes(Pb.landmarks[:1])[0], long_axes(Pb_o[:1])[0]
    out = Displacement({}, {}, {} if mm_per_px else None, {}, {}, {} if mm_per_px else None, {}, {}, {})
    for name, lname in BASAL.items():
        i = LANDMARK_NAMES.index(lname)
        out.peak_px[name], out.peak_step_index[name], _ = _peak_steps(P32_o[:, i], ax32_o, es32)
        out.peak_grid_px[name], _, _ = _peak_steps(P32.landmark(lname), ax32_g, es32)
        if out.peak_mm is not None:
            out.peak_mm[name] = {k: (None if v is None else v * mm_per_px) for k, v in out.peak_grid_px[name].items()}
        d_o = (Pb_o[:, i] - Pb_o[0, i]) @ ax0_o
        d_g = (Pb.landmark(lname) - Pb.landmark(lname)[0]) @ ax0_g
        out.excursion_px[name] = float(d_o.max())
        if out.excursion_mm is not None:
            out.excursion_mm[name] = float(d_g.max() * mm_per_px)
        out.curves_px[name] = ((P32_o[:, i] - P32_o[0, i]) @ ax0_o).tolist()
        out.native_px[name] = d_o.tolist()
        out.excursion_grid_px[lname] = float(d_g.max())
    return out


def strain_peaks(Pb: TrackedPoints, t_beat: np.ndarray, es: float
                 ) -> tuple[dict[str, np.ndarray], dict[str, float], dict[str, float], float]:
    """Strain curves of the native beat ``Pb`` (reference: the walls at ED), the peak (most
    negative) strain of each segment over the beat and from ED to ES (``t_beat <= es``), and
    peak GLS."""
    sc = strain_curves(Pb.walls)
    sys_mask = t_beat <= es + 1e-9
    strain_peak = {s: float(sc[s].min()) for s in SEGMENTS}
    strain_sys = {s: float(sc[s][sys_mask].min()) for s in SEGMENTS}
    return sc, strain_peak, strain_sys, float(sc["gls"].min())


def annular_velocities(raw: TrackedPoints, Pb: TrackedPoints, bt: BeatTimes, fps: float | None,
                       mm_per_px: float | None) -> tuple[dict | None, dict | None, list[ReportWarning]]:
    """S' and E' (cm/s) of each annulus from the frame-to-frame steps of the tracks ``raw``
    (frames ``bt.t_lo..``) on the ED long axis of ``Pb``, peaks refined by a parabola through 3
    samples; E' over the first 60 % of ES -> next ED. None without ``fps`` and ``mm_per_px``."""
    if fps is None or not mm_per_px:
        return None, None, [warn("velocities_not_measured", "S' and E' need both fps and mm_per_px: not measured")]
    ax0_g = long_axes(Pb.landmarks[:1])[0]
    s_prime, e_prime = {}, {}
    cm_per_s = mm_per_px * float(fps) / 10.0
    tf = bt.frame_times(raw.array.shape[0])
    v_t = 0.5 * (tf[1:] + tf[:-1])  # step midpoints
    e_end = bt.es + 0.6 * (bt.next_ed - bt.es)
    for vname, lname in VEL_NAMES.items():
        v = (np.diff(raw.landmark(lname), axis=0) @ ax0_g) * cm_per_s
        s_prime[vname] = _peak_value(v, (v_t > bt.ed) & (v_t < bt.es))
        e_prime[vname] = _peak_value(-v, (v_t > bt.es) & (v_t < e_end))
    warnings = [warn("fps_low", f"fps {fps:g} is low: peak velocities are underestimated")] if fps < 25 else []
    return s_prime, e_prime, warnings


def _curves(disp: Displacement, es32: int, P32: TrackedPoints, strain_native: Mapping[str, np.ndarray],
            t_beat: np.ndarray) -> dict[str, Any]:
    """``Mechanics.curves``: displacement and strain over the resampled and the native beat."""
    return {
        "es_index": es32,
        "displacement_px": disp.curves_px,
        "peak_step_index": disp.peak_step_index,
        "displacement_native_px": disp.native_px,
        "strain_pct": {k: v.tolist() for k, v in strain_curves(P32.walls).items()},
        "strain_native_pct": {k: v.tolist() for k, v in strain_native.items()},
        "native_times": t_beat.tolist(),
    }


def measure_beat(raw: TrackedPoints, Pb: TrackedPoints, P32: TrackedPoints, t_beat: np.ndarray, es32: int,
                 bt: BeatTimes, drift: dict[str, float], *, fps: float | None, mm_per_px: float | None,
                 to_original: Callable[[np.ndarray], np.ndarray] | None, lv_len: float
                 ) -> tuple[dict[str, Any], list[ReportWarning]]:
    """All the measures of a closed beat: ``raw`` (tracked frames ``bt.t_lo..``), ``Pb`` (native
    frames at ``t_beat``), ``P32`` (resampled, ES at ``es32``); ``drift``: :func:`close_beat`'s.

    Returns
    -------
    fields : dict
        The :class:`Mechanics` fields of the measures and their curves.
    warnings : list of ReportWarning
        In order: unclosed annulus tracks, no calibration, short LV, velocities.
    """
    disp = displacement(P32, Pb, es32, mm_per_px, to_original)
    warnings = track_closure_warnings(drift, disp.excursion_grid_px)
    if disp.peak_mm is None:
        warnings.append(warn("no_calibration", "no calibration (mm_per_px): displacement and excursion in mm not "
                             "measured"))
    strain_native, strain_peak, strain_sys, gls = strain_peaks(Pb, t_beat, bt.es)
    if lv_len < 20:
        warnings.append(warn("lv_short", f"LV length is only {lv_len:.1f} px: strain is unreliable"))
    s_prime, e_prime, velocity_warnings = annular_velocities(raw, Pb, bt, fps, mm_per_px)
    fields = dict(
        peak_displacement_px=disp.peak_px, peak_displacement_mm=disp.peak_mm,
        peak_displacement_grid_px=disp.peak_grid_px, excursion_px=disp.excursion_px,
        excursion_mm=disp.excursion_mm, strain_peak_pct=strain_peak, strain_systolic_peak_pct=strain_sys,
        gls_pct=gls, s_prime_cm_s=s_prime, e_prime_cm_s=e_prime,
        curves=_curves(disp, es32, P32, strain_native, t_beat))
    return fields, warnings + velocity_warnings
