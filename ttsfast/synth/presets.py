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
            e_frac: tuple[float, float], rho: float = 0.5,
            period_logsd: float | None = None, shape_logsd: float | None = None) -> dict:
    """Draw heart rate, target annular velocities and segment strains, and timing.

    The annular excursion follows from the target S' and the systolic velocity shape
    (``excursion = S' * t_sys / k``), the E' duration from the target E'
    (``e_dur = excursion * e_frac * pi / (2 E')``); the strain targets are met by
    :func:`ttsfast.synth.motion.solve_deformation`. A patient factor correlates all
    targets (``rho``) as in real cohorts (a weak heart is weak everywhere).

    ``period_logsd``: when given, the cycle length is log-normal (median ``60 / hr[0]``
    s, log-SD ``period_logsd``) instead of a normal heart rate, so that the per-beat
    measures (px per 1/32 beat) vary with the beat length as in real cohorts.
    ``shape_logsd``: when given, each side's systolic velocity-profile exponents are scaled
    by a per-patient log-normal factor (a sharper or broader S' wave for the same S').
    Both default to None: the draws of presets that do not use them are unchanged."""
    if period_logsd is None:
        hr_bpm = _tn(rng, hr[0], hr[1], 36.0, 120.0)
    else:
        hr_bpm = float(np.clip(hr[0] * np.exp(-period_logsd * rng.normal()), 36.0, 120.0))
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
    shape = [list(sh) for sh in sys_shape]
    if shape_logsd is not None:
        g = np.exp(shape_logsd * _corr(rng, float(rng.normal()), 0.6, (2,)))
        shape = [[float(a * gi), float(b * gi)] for (a, b), gi in zip(sys_shape, g)]
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
        "sys_shape": shape,
        "e_frac": ef.tolist(),
        "e_dur_s": None,  # derived: see derive_excursion
    }


#: Healthy peak strain (%) of the mid and apical segments, inward radial motion (mm) and
#: thickening (fraction of the wall) they have when not ischaemic / not stunned.
_HEALTHY_MID_APICAL = {"strain": np.array([-16.0, -17.0]), "radial": np.array([6.5, 4.0]),
                       "thick": np.array([0.4, 0.4])}


def _limit_excursion(p: dict, lo: float = 6.0, hi: float = 18.0) -> None:
    """Keep the AV-plane excursion that :func:`derive_excursion` will give within
    [``lo``, ``hi``] mm (physiological range) by sharpening or broadening each side's
    systolic velocity profile (in place); S' and the timing are kept."""
    from .motion import systolic_shape_k

    ts0 = np.asarray(p["t_sys_scale"], dtype=np.float64)[:, 0]
    t_peak = np.minimum(float(p["es_s"]) * ts0, float(p["es_s"]) + float(p["ivr_s"]) - 0.01)
    for i, (a, b) in enumerate(p["sys_shape"]):
        sp = float(p["s_prime_target_cm_s"][i]) * 10.0 * t_peak[i]
        k_lo, k_hi = sp / hi, sp / lo  # k must lie in [k_lo, k_hi]
        k = systolic_shape_k((a, b))
        if k_lo <= k <= k_hi:
            continue
        target = k_lo if k < k_lo else k_hi
        g_lo, g_hi = 0.2, 8.0
        for _ in range(40):  # k grows with the scale of the exponents
            g = np.sqrt(g_lo * g_hi)
            if systolic_shape_k((a * g, b * g)) < target:
                g_lo = g
            else:
                g_hi = g
        g = np.sqrt(g_lo * g_hi)
        p["sys_shape"][i] = [float(a * g), float(b * g)]


def _tts_severity(rng: np.random.Generator) -> np.ndarray:
    """Dysfunction (0 = normal, 1 = akinetic) of the mid and apical segments [2 sides, 2
    levels] of one TTS patient. Circumferential: both walls alike. The typical apical
    ballooning (~75 %) has akinetic mid and apical segments; the partial / apical-predominant
    forms (~25 %) keep much of the mid-wall function."""
    g = float(np.clip(rng.normal(0.8, 0.15), 0.35, 1.0))
    partial = rng.random() < 0.25
    mid = rng.uniform(0.1, 0.5) if partial else rng.uniform(0.5, 1.0)
    sev = np.empty((2, 2))
    sev[:, 1] = g + rng.normal(0, 0.07, 2)
    sev[:, 0] = g * mid + rng.normal(0, 0.1, 2)
    return np.clip(sev, 0.0, 1.0)


def _stemi_severity(rng: np.random.Generator) -> np.ndarray:
    """Dysfunction of the mid and apical segments [2 sides, 2 levels] of one anterior STEMI
    patient (LAD territory): the apex always, more on the septal side; the apical lateral
    segment as far as the LAD wraps around the apex; the mid septum with the proximal
    extent of the occlusion; the mid lateral wall only with large (diagonal / wrap-around)
    territories."""
    a = float(np.clip(rng.normal(0.8, 0.13), 0.4, 1.0))
    wrap = rng.uniform(0.5, 1.1)
    ext = rng.uniform(0.0, 1.0)
    sev = np.empty((2, 2))
    sev[0, 1] = a
    sev[1, 1] = a * wrap + rng.normal(0, 0.07)
    sev[0, 0] = 0.25 + 0.6 * ext + rng.normal(0, 0.1)
    sev[1, 0] = 0.7 * ext * wrap + rng.normal(0, 0.1)
    return np.clip(sev, 0.0, 1.0)


def _apply_regional(p: dict, rng: np.random.Generator, sev: np.ndarray) -> None:
    """Set (in place) the mid and apical strain targets, radial-motion prior, thickening
    and systolic duration from the dysfunction ``sev`` [2, 2] (mid, apical): a linear blend
    of healthy and akinetic (strain ~0, outward bulge, no thickening, post-systolic
    shortening) behaviour, plus per-segment scatter."""
    h = _HEALTHY_MID_APICAL
    st = np.asarray(p["strain_target_pct"], dtype=np.float64)
    rad = np.asarray(p["radial_mm"], dtype=np.float64)
    th = np.asarray(p["thickening"], dtype=np.float64)
    ts = np.asarray(p["t_sys_scale"], dtype=np.float64)
    # remote (non-stunned, non-ischaemic) function follows the patient's basal function
    fit = np.clip(0.6 + 0.4 * st[:, :1] / -9.5, 0.5, 1.4)
    st[:, 1:] = np.minimum(h["strain"] * fit * (1.0 - sev) + rng.normal(0, 1.5, (2, 2)), 2.0)
    rad[:, 1:] = h["radial"] * (1.0 - sev) - 2.0 * sev + rng.normal(0, 0.5, (2, 2))
    th[:, 1:] = np.clip(h["thick"] * (1.0 - sev) + 0.01 * sev + rng.normal(0, 0.04, (2, 2)), -0.05, 0.7)
    ts[:, 1:] = np.clip(1.0 + 0.12 * sev + rng.normal(0, 0.02, (2, 2)), 0.8, 1.3)
    p.update(strain_target_pct=st.tolist(), radial_mm=rad.tolist(), thickening=th.tolist(),
             t_sys_scale=ts.tolist(), regional_dysfunction=sev.tolist())


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
    """Takotsubo (apical ballooning): hypokinetic to akinetic mid and apical segments on
    both walls (circumferential; partial / apical-predominant forms in ~25 %; where
    akinetic the wall length stays ~ constant and the walls bulge outward as the base pulls
    the annulus toward the apex), reduced basal shortening and annular velocities
    (published TTS cohort values). Overlaps anterior STEMI as real cohorts do."""
    p = _common(rng)
    p.update(_motion(
        rng, hr=(51.0, 7.0),
        s_prime=((5.75, 1.3), (6.6, 1.4)), e_prime=((5.45, 1.2), (6.3, 1.4)),
        strain=(np.array([[-8.5, -0.5, 0.0], [-8.6, -0.5, 0.0]]),
                np.array([[3.8, 0.8, 0.6], [4.2, 0.8, 0.6]])),
        apical_share=(0.45, 0.06),
        radial=np.array([[4.0, -2.0, -2.0], [5.0, -2.0, -2.0]]),
        thick=np.array([[0.3, 0.02, 0.0], [0.3, 0.02, 0.0]]), tsys=np.ones((2, 3)),
        sys_shape=((2.0, 4.4), (1.6, 3.5)), e_frac=(0.70, 0.05),
        period_logsd=0.25, shape_logsd=0.35))
    _apply_regional(p, rng, _tts_severity(rng))
    _limit_excursion(p)
    p["preset"] = "tts"
    return p


def stemi_anterior(rng: np.random.Generator) -> dict:
    """Anterior STEMI (LAD territory): hypokinetic to akinetic apex, mid septum with the
    extent of the occlusion, lateral apex as far as the LAD wraps around, relatively
    preserved basal and mid anterolateral wall, post-systolic shortening in the ischaemic
    segments (published STEMI cohort values). Overlaps TTS as real cohorts do."""
    p = _common(rng)
    p.update(_motion(
        rng, hr=(46.5, 7.0),
        s_prime=((7.15, 1.4), (7.4, 1.5)), e_prime=((6.3, 1.5), (7.7, 1.6)),
        strain=(np.array([[-9.9, -6.0, -3.0], [-10.4, -12.0, -4.0]]),
                np.array([[4.1, 2.0, 1.5], [4.1, 2.5, 1.5]])),
        apical_share=(0.45, 0.06),
        radial=np.array([[4.0, 1.0, -1.0], [5.0, 4.0, -1.0]]),
        thick=np.array([[0.3, 0.12, 0.05], [0.3, 0.3, 0.08]]), tsys=np.ones((2, 3)),
        sys_shape=((1.6, 3.5), (1.6, 3.5)), e_frac=(0.70, 0.05),
        period_logsd=0.25, shape_logsd=0.35))
    _apply_regional(p, rng, _stemi_severity(rng))
    _limit_excursion(p)
    p["preset"] = "stemi_anterior"
    return p


#: Preset name -> parameter sampler ``rng -> dict``.
PRESETS: dict[str, Callable[[np.random.Generator], dict]] = {
    "normal": normal,
    "tts": tts,
    "stemi_anterior": stemi_anterior,
}
