"""Parameter distributions of the synthetic presets.

Each preset is a function ``rng -> dict`` drawing one patient: geometry, heart rate,
per-segment peak axial strain and timing, radial motion, diastolic filling, image
quality. Strain arrays are ``[side, level]`` with sides (inferoseptal, anterolateral) and
levels (basal, mid, apical), in % (negative = shortening).
"""
from __future__ import annotations

from typing import Callable

import numpy as np


def _tn(rng: np.random.Generator, mean: float, sd: float, lo: float, hi: float) -> float:
    """Normal draw clipped (by redraw, then clip) to [lo, hi]."""
    for _ in range(20):
        v = rng.normal(mean, sd)
        if lo <= v <= hi:
            return float(v)
    return float(np.clip(mean, lo, hi))


def _common(rng: np.random.Generator) -> dict:
    """Geometry, image quality and diastolic timing shared by all presets."""
    return {
        "depth_mm": _tn(rng, 175.0, 7.0, 160.0, 190.0),
        "half_angle_deg": _tn(rng, 43.0, 1.5, 38.0, 45.0),
        "apex_depth_mm": _tn(rng, 34.0, 4.0, 24.0, 44.0),
        "apex_x_mm": _tn(rng, 6.0, 4.0, -4.0, 16.0),
        "tilt_deg": _tn(rng, 15.0, 4.0, 5.0, 25.0),
        "lv_length_mm": _tn(rng, 86.0, 6.0, 74.0, 98.0),
        "lv_halfwidth_mm": _tn(rng, 20.0, 2.0, 16.0, 25.0),
        "wall_mm": _tn(rng, 9.0, 1.2, 7.0, 12.5),
        "rv_scale": _tn(rng, 1.0, 0.12, 0.75, 1.3),
        "la_length_mm": _tn(rng, 44.0, 5.0, 34.0, 56.0),
        "ivr_s": _tn(rng, 0.07, 0.012, 0.045, 0.10),
        "a_dur_s": _tn(rng, 0.13, 0.015, 0.09, 0.17),
        "rigid_mm": [float(rng.normal(0, 0.4)), float(rng.normal(0, 0.6))],
        # image quality
        "noise": _tn(rng, 1.0, 0.25, 0.4, 2.0),
        "gain_db": _tn(rng, 0.0, 2.5, -6.0, 6.0),
        "dynamic_range_db": _tn(rng, 50.0, 3.0, 42.0, 58.0),
        "clutter_db": _tn(rng, -14.0, 3.0, -22.0, -6.0),
        "anisotropy_db": _tn(rng, 8.0, 2.0, 3.0, 12.0),
        "dropout": _tn(rng, 0.5, 0.25, 0.0, 0.95),
        "texture_db": _tn(rng, 5.5, 1.0, 3.0, 8.0),
    }


def _systolic_timing(rng: np.random.Generator, hr: float) -> float:
    """End-systole after end-diastole (s): longer at slow heart rates (Bazett-like)."""
    period = 60.0 / hr
    return float(np.clip(0.37 * np.sqrt(period) + rng.normal(0, 0.015), 0.22, 0.48))


def _corr(rng: np.random.Generator, z: float, rho: float, shape: tuple = ()) -> np.ndarray:
    """Standard normal draws correlated ``rho`` with the patient factor ``z``."""
    return rho * z + np.sqrt(1.0 - rho * rho) * rng.normal(size=shape)


def _motion(rng: np.random.Generator, *, hr: tuple[float, float],
            s_prime: tuple[tuple[float, float], tuple[float, float]],
            e_prime: tuple[tuple[float, float], tuple[float, float]],
            strain: tuple[np.ndarray, np.ndarray], apical_share: tuple[float, float],
            radial: np.ndarray, thick: np.ndarray, tsys: np.ndarray,
            sys_shape: tuple[tuple[float, float], tuple[float, float]],
            e_frac: tuple[float, float], rho: float = 0.5) -> dict:
    """Draw heart rate, target annular velocities and segment strains, and timing.

    The annular excursion follows from the target S' and the systolic velocity shape
    (``excursion = S' * t_sys / k``), the E' duration from the target E'
    (``e_dur = excursion * e_frac * pi / (2 E')``); the strain targets are met by
    :func:`ttsfast.synth.motion.solve_deformation`. A patient factor correlates all
    targets (``rho``) as in real cohorts (a weak heart is weak everywhere)."""
    hr_bpm = _tn(rng, hr[0], hr[1], 36.0, 120.0)
    es = _systolic_timing(rng, hr_bpm)
    z = float(rng.normal())
    sp = np.array([max(m + sd * _corr(rng, z, rho), 0.35 * m) for m, sd in s_prime])  # cm/s
    ep = np.array([max(m + sd * _corr(rng, z, rho), 0.35 * m) for m, sd in e_prime])
    st_m, st_sd = strain
    st = st_m - np.abs(st_sd) * _corr(rng, z, rho, (2, 3))  # weaker heart: less negative
    st = np.minimum(st, 2.0)
    ts = np.clip(tsys + rng.normal(0, 0.02, (2, 3)), 0.8, 1.3)
    ef = np.clip(rng.normal(e_frac[0], e_frac[1], 2), 0.45, 0.92)
    rad = radial + rng.normal(0, 0.5, (2, 3))
    th = np.clip(thick + rng.normal(0, 0.04, (2, 3)), -0.05, 0.7)
    return {
        "heart_rate_bpm": hr_bpm,
        "es_s": es,
        "s_prime_target_cm_s": sp.tolist(),
        "e_prime_target_cm_s": ep.tolist(),
        "excursion_mm": None,  # derived: see derive_excursion
        "strain_target_pct": st.tolist(),
        "apical_share": np.clip(rng.normal(apical_share[0], apical_share[1], 2), 0.1, 0.9).tolist(),
        "axial_strain_pct": None,
        "radial_mm": rad.tolist(),
        "thickening": th.tolist(),
        "t_sys_scale": ts.tolist(),
        "sys_shape": [list(sh) for sh in sys_shape],
        "e_frac": ef.tolist(),
        "e_dur_s": None,  # derived: see derive_excursion
    }


def derive_excursion(p: dict) -> None:
    """Fill ``excursion_mm`` and ``e_dur_s`` (in place, where they are None) from the
    target S' and E', the systolic timing and velocity shape: excursion = S' t_sys / k,
    e_dur = excursion * e_frac * pi / (2 E')."""
    from .motion import systolic_shape_k

    ts = np.asarray(p["t_sys_scale"], dtype=np.float64)
    t_peak = np.minimum(float(p["es_s"]) * ts[:, 0], float(p["es_s"]) + float(p["ivr_s"]) - 0.01)
    k = np.array([systolic_shape_k(sh) for sh in p["sys_shape"]])
    sp = np.asarray(p["s_prime_target_cm_s"], dtype=np.float64)
    ep = np.asarray(p["e_prime_target_cm_s"], dtype=np.float64)
    if p.get("excursion_mm") is None:
        p["excursion_mm"] = (sp * 10.0 * t_peak / k).tolist()
    if p.get("e_dur_s") is None:
        exc = np.asarray(p["excursion_mm"], dtype=np.float64)
        ef = np.asarray(p["e_frac"], dtype=np.float64)
        p["e_dur_s"] = np.clip(exc * ef * np.pi / (2.0 * ep * 10.0), 0.06, 0.45).tolist()


def normal(rng: np.random.Generator) -> dict:
    """Healthy heart: uniform longitudinal shortening ~ -19 %, thickening ~ 40 %,
    S' ~ 8-10 cm/s, E' ~ 10-13 cm/s, heart rate ~ 65/min."""
    p = _common(rng)
    p.update(_motion(
        rng, hr=(65.0, 9.0),
        s_prime=((8.0, 1.2), (8.8, 1.4)), e_prime=((10.5, 1.8), (13.0, 2.2)),
        strain=(np.array([[-19.0, -19.5, -21.0], [-19.0, -19.5, -21.0]]), np.full((2, 3), 2.2)),
        apical_share=(0.45, 0.05),
        radial=np.array([[6.0, 6.5, 4.0], [7.0, 7.0, 4.0]]),
        thick=np.full((2, 3), 0.4), tsys=np.ones((2, 3)),
        sys_shape=((1.3, 2.5), (1.3, 2.5)), e_frac=(0.72, 0.05)))
    p["preset"] = "normal"
    return p


def tts(rng: np.random.Generator) -> dict:
    """Takotsubo (apical ballooning): akinetic mid and apical segments on both walls
    (their length stays ~ constant: the walls bulge outward as the base pulls the annulus
    toward the apex), reduced basal shortening and annular velocities (published TTS
    cohort values)."""
    p = _common(rng)
    p.update(_motion(
        rng, hr=(48.0, 7.0),
        s_prime=((5.45, 1.3), (6.3, 1.4)), e_prime=((5.5, 1.2), (6.1, 1.4)),
        strain=(np.array([[-8.5, -0.5, 0.0], [-8.6, -0.5, 0.0]]),
                np.array([[3.8, 0.8, 0.6], [4.2, 0.8, 0.6]])),
        apical_share=(0.5, 0.05),
        radial=np.array([[4.0, -2.0, -2.0], [4.5, -2.0, -2.0]]),
        thick=np.array([[0.3, 0.02, 0.0], [0.3, 0.02, 0.0]]), tsys=np.ones((2, 3)),
        sys_shape=((3.0, 7.0), (1.6, 3.5)), e_frac=(0.70, 0.05)))
    p["preset"] = "tts"
    return p


def stemi_anterior(rng: np.random.Generator) -> dict:
    """Anterior STEMI (LAD territory): hypokinetic apical segments and mid septum,
    reduced basal septum, preserved (relatively) basal anterolateral, post-systolic
    shortening in the ischaemic segments (published STEMI cohort values)."""
    p = _common(rng)
    p.update(_motion(
        rng, hr=(46.5, 7.0),
        s_prime=((7.15, 1.4), (7.4, 1.5)), e_prime=((6.3, 1.5), (7.7, 1.6)),
        strain=(np.array([[-9.9, -6.0, -3.0], [-10.4, -12.0, -4.0]]),
                np.array([[4.1, 2.0, 1.5], [4.1, 2.5, 1.5]])),
        apical_share=(0.4, 0.05),
        radial=np.array([[4.0, 1.0, -1.0], [5.5, 4.0, -1.0]]),
        thick=np.array([[0.25, 0.12, 0.05], [0.35, 0.3, 0.08]]),
        tsys=np.array([[1.0, 1.08, 1.12], [1.0, 1.0, 1.12]]),
        sys_shape=((1.6, 3.5), (1.6, 3.5)), e_frac=(0.70, 0.05)))
    p["preset"] = "stemi_anterior"
    return p


#: Preset name -> parameter sampler ``rng -> dict``.
PRESETS: dict[str, Callable[[np.random.Generator], dict]] = {
    "normal": normal,
    "tts": tts,
    "stemi_anterior": stemi_anterior,
}
