"""Myocardial motion: a smooth displacement field u(X, t) of the reference position X.

The field is built in the LV frame (s along the long axis from the endocardial apex, n
across it, positive toward the anterolateral wall):

* longitudinal: ``u_s(s, n, t) = D_side(s, t)``, the integral from the apex of the axial
  strain of each segment (basal, mid, apical of each wall), so the apex is nearly still and
  the annulus moves most; sides are blended smoothly across the cavity with
  ``0.5 (1 + tanh(n / blend))``; above the annulus the atria are stretched back to a still
  roof;
* radial: the endocardium moves inward by ``R_side(s, t)`` and the epicardium by
  ``R - H`` (H = wall thickening), linear in n inside the cavity, decaying outside the wall.

Every lengths is in mm (probe frame, x right, y down). Time functions give each segment
a systolic shortening (raised cosine from end-diastole), isovolumic relaxation, an early
(E') and a late (A') diastolic lengthening.
"""
from __future__ import annotations

from dataclasses import dataclass
import numpy as np
from numba import njit
from scipy.special import beta as _beta_fn
from scipy.special import betainc as _betainc
from scipy.special import erf as _erf_v

from .geometry import Geometry

SIDES = ("inferoseptal", "anterolateral")
LEVELS = ("basal", "mid", "apical")
SEGMENTS = tuple(f"{lv}_{sd}" for sd in SIDES for lv in LEVELS)


@dataclass
class Timing:
    """Cardiac timing of one clip (seconds).

    Attributes
    ----------
    period : float
        Cycle length 60/HR, s.
    t0 : float
        Time of the first end-diastole relative to clip frame 0, s (may be > 0).
    t_es : float
        End-systole after end-diastole, s.
    """

    period: float
    t0: float
    t_es: float


def systolic_shape_k(shape: tuple[float, float]) -> float:
    """Peak velocity of the systolic shortening in units of (amplitude / duration).

    The systolic velocity profile is ``x^a (1-x)^b`` on x = t/t_sys in [0, 1] (an early
    peak as on tissue Doppler); its peak is ``k * amplitude / t_sys``."""
    a, b = float(shape[0]), float(shape[1])
    x = a / (a + b)
    return float(x ** a * (1 - x) ** b / _beta_fn(a + 1, b + 1))


def diastolic_waves(t_sys: float, e_start: float, e_dur: float, a_dur: float,
                    period: float) -> tuple[float, float, float, float]:
    """Timing of the E' and A' waves of one segment within its cycle.

    Parameters are those of :func:`segment_time_curve` (s).

    Returns
    -------
    e0, e_dur, a0, a_dur : float
        Start and duration of the E' wave and of the A' wave, s after end-diastole. At fast
        heart rates, where the two would overlap, both are shortened so that A' starts where
        E' ends.
    """
    e0 = max(float(e_start), float(t_sys))
    e_dur, a_dur = float(e_dur), float(a_dur)
    a0 = period - a_dur
    if e0 + e_dur > a0:  # fast heart rate: E and A waves fuse; shrink both
        room = max(period - e0, 0.05)
        k = room / (e_dur + a_dur)
        e_dur, a_dur = e_dur * k, a_dur * k
        a0 = period - a_dur
    return e0, e_dur, a0, a_dur


def segment_time_curve(tau: np.ndarray, t_sys: float, shape: tuple[float, float],
                       e_start: float, e_frac: float, e_dur: float, a_dur: float,
                       period: float) -> np.ndarray:
    """Fraction of peak systolic deformation (0 at end-diastole, 1 at peak) over the cycle.

    Parameters
    ----------
    tau : ndarray
        Time since the last end-diastole, s, in [0, period).
    t_sys : float
        Duration of the systolic shortening of this segment, s.
    shape : (a, b)
        Exponents of the systolic velocity profile ``x^a (1-x)^b``.
    e_start : float
        Start of the early diastolic (E') lengthening, s (end-systole + isovolumic
        relaxation); must be >= ``t_sys``.
    e_frac : float
        Fraction of the deformation recovered in the E' wave.
    e_dur, a_dur : float
        Durations of the E' and A' waves, s (raised-cosine velocity).
    period : float
        Cycle length, s.

    Returns
    -------
    ndarray
        Same shape as ``tau``, values in [0, 1].
    """
    tau = np.asarray(tau, dtype=np.float64)
    e0, e_dur, a0, a_dur = diastolic_waves(t_sys, e_start, e_dur, a_dur, period)
    f = np.empty_like(tau)
    sys = tau < t_sys
    f[sys] = _betainc(shape[0] + 1.0, shape[1] + 1.0, tau[sys] / t_sys)
    hold = (tau >= t_sys) & (tau < e0)
    f[hold] = 1.0
    ew = (tau >= e0) & (tau < e0 + e_dur)
    f[ew] = 1.0 - e_frac * 0.5 * (1.0 - np.cos(np.pi * (tau[ew] - e0) / e_dur))
    dia = (tau >= e0 + e_dur) & (tau < a0)
    f[dia] = 1.0 - e_frac
    aw = tau >= a0
    f[aw] = (1.0 - e_frac) * (1.0 - 0.5 * (1.0 - np.cos(np.pi * (tau[aw] - a0) / a_dur)))
    return f


def _smooth_box(s: np.ndarray, a: float, b: float, sigma: float) -> np.ndarray:
    """Indicator of [a, b] smoothed by a Gaussian of width ``sigma`` (mm)."""
    r2 = np.sqrt(2.0) * sigma
    return 0.5 * (_erf_v((s - a) / r2) - _erf_v((s - b) / r2))


@dataclass
class MotionModel:
    """Everything needed to evaluate u(X, t) at any time.

    Attributes
    ----------
    geo : Geometry
        Reference geometry.
    s0, ds : float
        First value and step (mm) of the s grid of the profiles.
    I_long : ndarray [2, 3, Ns]
        Integral from the apex of each segment's smoothed indicator (mm), per side.
    B_rad : ndarray [2, 3, Ns]
        Smooth radial profile of each segment (dimensionless, 0..1).
    atr : ndarray [2, Ns]
        Atrial taper (1 up to the annulus, 0 at the atrial roof).
    strain : ndarray [2, 3]
        Peak axial strain of each segment (fraction, negative = shortening).
    radial_mm : ndarray [2, 3]
        Peak inward endocardial displacement of each segment, mm (negative = outward).
    thick_mm : ndarray [2, 3]
        Peak wall thickening of each segment, mm.
    t_sys : ndarray [2, 3]
        Systolic duration of each segment, s.
    sys_shape : ndarray [2, 2]
        Systolic velocity profile exponents (a, b) per side.
    e_start : float
        Start of the E' wave after end-diastole, s.
    e_frac, e_dur : ndarray [2]
        Fraction recovered in the E' wave and its duration (s), per side.
    """

    geo: Geometry
    s0: float
    ds: float
    I_long: np.ndarray
    B_rad: np.ndarray
    atr: np.ndarray
    strain: np.ndarray
    radial_mm: np.ndarray
    thick_mm: np.ndarray
    t_sys: np.ndarray
    sys_shape: np.ndarray
    e_start: float
    e_frac: np.ndarray
    e_dur: np.ndarray
    a_dur: float
    timing: Timing
    blend_mm: float
    decay_mm: float
    rigid_mm: np.ndarray

    def curves(self, t: np.ndarray) -> np.ndarray:
        """Time curves [len(t), 2, 3] (0..1) of each segment at clip times ``t`` (s)."""
        t = np.atleast_1d(np.asarray(t, dtype=np.float64))
        tau = np.mod(t - self.timing.t0, self.timing.period)
        out = np.empty((t.size, 2, 3))
        for i in range(2):
            for k in range(3):
                out[:, i, k] = segment_time_curve(
                    tau, self.t_sys[i, k], self.sys_shape[i], self.e_start, self.e_frac[i],
                    self.e_dur[i], self.a_dur, self.timing.period)
        return out

    def a_wave_start(self, side: int) -> float:
        """Earliest start of the atrial (A') wave among the segments of wall ``side`` (0:
        inferoseptal, 1: anterolateral), s after end-diastole: the end of early diastole, where
        E' is measured."""
        return min(diastolic_waves(self.t_sys[side, k], self.e_start, self.e_dur[side], self.a_dur,
                                   self.timing.period)[2] for k in range(self.t_sys.shape[1]))

    def tables(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per-time profiles for :func:`displace_points`.

        Returns
        -------
        D, R, H : ndarray [T, 2, Ns]
            Longitudinal displacement along +s (mm), inward endocardial displacement (mm)
            and thickening (mm) at each s, per side.
        rigid : ndarray [T, 2]
            Rigid translation (mm) of the whole scene.
        """
        c = self.curves(t)  # [T,2,3]
        D = np.einsum("tik,ik,iks->tis", c, self.strain, self.I_long) * self.atr[None]
        R = np.einsum("tik,ik,iks->tis", c, self.radial_mm, self.B_rad)
        H = np.einsum("tik,ik,iks->tis", c, self.thick_mm, self.B_rad)
        tt = np.atleast_1d(np.asarray(t, dtype=np.float64))
        # slow respiratory-like drift: a sine over ~4 s
        rig = np.outer(np.sin(2 * np.pi * tt / 4.0), self.rigid_mm)
        return (np.ascontiguousarray(D), np.ascontiguousarray(R), np.ascontiguousarray(H),
                np.ascontiguousarray(rig))

    def kernel_args(self) -> tuple:
        """Constant arguments of the Numba kernels (geometry of the field)."""
        g = self.geo
        w = np.interp(self.s0 + self.ds * np.arange(self.I_long.shape[2]), g.s_grid, g.w_of_s)
        return (float(g.apex[0]), float(g.apex[1]), float(g.e_s[0]), float(g.e_s[1]),
                float(g.e_n[0]), float(g.e_n[1]), self.s0, self.ds,
                np.ascontiguousarray(w), float(g.wall), self.blend_mm, self.decay_mm)

    def displace(self, pts: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Current positions [T, N, 2] mm of reference points ``pts`` [N, 2] mm at times ``t``.

        Same field as the Numba kernels (the profiles are linear in the time curves, so
        they are interpolated at the points once and combined per time), vectorised over
        time: fast for few points and many times."""
        p = np.ascontiguousarray(pts, dtype=np.float64)
        prof = PointProfiles.of(self, p)
        c = self.curves(t)  # [T, 2, 3]
        tt = np.atleast_1d(np.asarray(t, dtype=np.float64))
        rig = np.outer(np.sin(2 * np.pi * tt / 4.0), self.rigid_mm)
        return prof.positions(c, self.strain, self.radial_mm, self.thick_mm, rig)


@dataclass
class PointProfiles:
    """The field's profiles interpolated at fixed reference points (for fast evaluation).

    Attributes
    ----------
    pts : ndarray [N, 2]
        Reference points, mm.
    Il, Br : ndarray [2, 3, N]
        Longitudinal integral (times the atrial taper) and radial profile of each segment
        at the points.
    terms : ndarray [N, 6]
        Static terms (fi, wl, cR, cH, cD, sg) of :func:`_static_terms`.
    e_s, e_n : ndarray [2]
    """

    pts: np.ndarray
    Il: np.ndarray
    Br: np.ndarray
    terms: np.ndarray
    e_s: np.ndarray
    e_n: np.ndarray

    @classmethod
    def of(cls, model: "MotionModel", pts: np.ndarray) -> "PointProfiles":
        return cls.build(model.geo, model.s0, model.ds, model.I_long, model.B_rad, model.atr,
                         model.blend_mm, model.decay_mm, pts)

    @classmethod
    def build(cls, geo: Geometry, s0: float, ds: float, I_long: np.ndarray, B_rad: np.ndarray,
              atr: np.ndarray, blend: float, decay: float, pts: np.ndarray) -> "PointProfiles":
        ns = I_long.shape[2]
        w = np.ascontiguousarray(np.interp(s0 + ds * np.arange(ns), geo.s_grid, geo.w_of_s))
        idx, terms = static_terms_many(pts, float(geo.apex[0]), float(geo.apex[1]),
                                       float(geo.e_s[0]), float(geo.e_s[1]), float(geo.e_n[0]),
                                       float(geo.e_n[1]), s0, ds, w, float(geo.wall), blend, decay)
        fi = terms[:, 0]
        IA = I_long * atr[:, None, :]

        def lerp(tab: np.ndarray) -> np.ndarray:
            return tab[..., idx] + (tab[..., idx + 1] - tab[..., idx]) * fi

        return cls(pts=pts, Il=lerp(IA), Br=lerp(B_rad), terms=terms, e_s=geo.e_s, e_n=geo.e_n)

    def positions(self, c: np.ndarray, axial: np.ndarray, radial: np.ndarray, thick: np.ndarray,
                  rig: np.ndarray) -> np.ndarray:
        """Positions [T, N, 2] mm for time curves ``c`` [T, 2, 3] and rigid shifts [T, 2]."""
        ct = np.ascontiguousarray(c.transpose(1, 0, 2))  # [2, T, 3]
        D = np.matmul(ct * axial[:, None, :], self.Il)  # [2, T, N]
        R = np.matmul(ct * radial[:, None, :], self.Br)
        H = np.matmul(ct * thick[:, None, :], self.Br)
        _, wl, cR, cH, cD, sg = self.terms.T
        dl = cD * (wl * D[1] + (1.0 - wl) * D[0])
        r = wl * R[1] + (1.0 - wl) * R[0]
        hh = wl * H[1] + (1.0 - wl) * H[0]
        un = -sg * (r * cR + hh * cH)
        return (self.pts[None] + dl[..., None] * self.e_s + un[..., None] * self.e_n
                + rig[:, None, :])


def build_motion(geo: Geometry, p: dict, t0: float) -> MotionModel:
    """Build the motion model from the geometry and the drawn parameters.

    Parameters
    ----------
    geo : Geometry
    p : dict
        Preset parameters: ``heart_rate_bpm``, ``strain`` [2,3] (%), ``radial_mm`` [2,3],
        ``thickening`` [2,3] (fraction of wall), ``t_sys_scale`` [2,3], ``es_s``,
        ``ivr_s``, ``e_frac`` [2], ``e_dur_s``, ``a_dur_s``, ``rigid_mm`` [2].
    t0 : float
        Time of the first end-diastole after clip start, s.
    """
    period = 60.0 / float(p["heart_rate_bpm"])
    s = np.arange(-60.0, geo.length + 120.0, 0.5)
    s0, ds = float(s[0]), 0.5
    I_long = np.zeros((2, 3, s.size))
    B_rad = np.zeros((2, 3, s.size))
    atr = np.ones((2, s.size))
    sig = 3.0
    for i, name in enumerate(SIDES):
        mw = geo.midwall[name]
        sw, _ = geo.to_lv(mw)
        arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(mw, axis=0), axis=1))])
        arc /= arc[-1]
        s_b1 = float(np.interp(1.0 / 3.0, arc, sw))
        s_b2 = float(np.interp(2.0 / 3.0, arc, sw))
        s_ann = float(sw[0])
        bounds = [(s_b1, s_ann + 40.0), (s_b2, s_b1), (-40.0, s_b2)]  # basal, mid, apical
        for k, (a, b) in enumerate(bounds):
            chi = _smooth_box(s, a, b, sig) * (s > 0)  # nothing below the apex
            chi_cut = np.where(s <= s_ann, chi, 0.0)
            integ = np.cumsum(chi_cut) * ds
            I_long[i, k] = integ
            rb = _smooth_box(s, a, b, 6.0)
            rb *= np.clip(s / 20.0, 0.0, 1.0) * np.clip(1.0 - (s - s_ann) / 12.0, 0.0, 1.0)
            B_rad[i, k] = rb
        la = float(p["la_length_mm"]) + 6.0
        atr[i] = np.clip(1.0 - (s - s_ann) / la, 0.0, 1.0)
    t_es = float(p["es_s"])
    ivr = float(p["ivr_s"])
    t_sys = np.minimum(t_es * np.asarray(p["t_sys_scale"], dtype=np.float64), t_es + ivr - 0.01)
    thick_mm = np.asarray(p["thickening"], dtype=np.float64) * geo.wall
    blend, decay = float(0.6 * geo.halfwidth), 30.0
    if p.get("axial_strain_pct") is not None:
        axial = np.asarray(p["axial_strain_pct"], dtype=np.float64) / 100.0
        radial = np.asarray(p["radial_mm"], dtype=np.float64)
    else:
        axial, radial = solve_deformation(geo, s, I_long, B_rad, atr, thick_mm, blend, decay, p)
    return MotionModel(
        geo=geo, s0=s0, ds=ds, I_long=I_long, B_rad=B_rad, atr=atr,
        strain=axial, radial_mm=radial, thick_mm=thick_mm,
        t_sys=t_sys, sys_shape=np.asarray(p["sys_shape"], dtype=np.float64),
        e_start=t_es + ivr, e_frac=np.asarray(p["e_frac"], dtype=np.float64),
        e_dur=np.asarray(p["e_dur_s"], dtype=np.float64), a_dur=float(p["a_dur_s"]),
        timing=Timing(period=period, t0=t0, t_es=t_es),
        blend_mm=blend, decay_mm=decay,
        rigid_mm=np.asarray(p.get("rigid_mm", [0.0, 0.0]), dtype=np.float64),
    )


def _segment_axial_lengths(geo: Geometry, s: np.ndarray, I_long: np.ndarray) -> np.ndarray:
    """Axial length (mm) of each segment [2, 3]: the integral of its indicator."""
    return I_long[:, :, -1]


def _arc_strains(prof: "PointProfiles", n: int, axial: np.ndarray, radial: np.ndarray,
                 thick: np.ndarray) -> np.ndarray:
    """Mid-wall segment strains (%) [2, 3] at full systolic deformation; ``prof`` holds the
    profiles at the two walls' mid-wall points (n points each, inferoseptal first)."""
    cur = prof.positions(np.ones((1, 2, 3)), axial, radial, thick, np.zeros((1, 2)))[0]
    ref = prof.pts
    e = n - 1
    bnd = [(0, int(round(e / 3))), (int(round(e / 3)), int(round(2 * e / 3))), (int(round(2 * e / 3)), e)]
    lc = np.linalg.norm(np.diff(cur, axis=0), axis=1)
    lr = np.linalg.norm(np.diff(ref, axis=0), axis=1)
    res = np.empty((2, 3))
    for i in range(2):
        o = i * n
        for k, (a, b) in enumerate(bnd):
            res[i, k] = 100.0 * (lc[o + a:o + b].sum() / lr[o + a:o + b].sum() - 1.0)
    return res


def solve_deformation(geo: Geometry, s: np.ndarray, I_long: np.ndarray, B_rad: np.ndarray,
                      atr: np.ndarray, thick: np.ndarray, blend: float, decay: float,
                      p: dict) -> tuple[np.ndarray, np.ndarray]:
    """Axial strains and radial motion that give the drawn targets.

    Targets (per side): ``excursion_mm`` (annulus displacement toward the apex at peak),
    ``strain_target_pct`` [2, 3] (mid-wall segment strain at peak), ``apical_share``
    (part of the non-basal axial shortening carried by the apical segment). Unknowns: the
    basal axial strain and the radial motion of the mid and apical segments (a bulge
    outward where the wall must not shorten: apical ballooning), regularised toward the
    prior ``radial_mm``. Solved by least squares (a few ms).

    Returns
    -------
    axial : ndarray [2, 3]
        Axial strain (fraction) of each segment.
    radial : ndarray [2, 3]
        Peak inward endocardial displacement, mm.
    """
    from scipy.optimize import least_squares

    s0, ds = float(s[0]), float(s[1] - s[0])
    pts = np.ascontiguousarray(np.concatenate([geo.midwall[n] for n in SIDES], axis=0))
    n_wall = geo.midwall[SIDES[0]].shape[0]
    prof = PointProfiles.build(geo, s0, ds, I_long, B_rad, atr, blend, decay, pts)
    Lk = _segment_axial_lengths(geo, s, I_long)
    exc = np.asarray(p["excursion_mm"], dtype=np.float64)
    target = np.asarray(p["strain_target_pct"], dtype=np.float64)
    share = np.asarray(p["apical_share"], dtype=np.float64)
    prior = np.asarray(p["radial_mm"], dtype=np.float64)

    def unpack(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        axial = np.zeros((2, 3))
        radial = prior.copy()
        for i in range(2):
            axial[i, 0] = x[i] / 100.0
            rem = max(exc[i] + axial[i, 0] * Lk[i, 0], 0.0)
            axial[i, 1] = -rem * (1.0 - share[i]) / Lk[i, 1]
            axial[i, 2] = -rem * share[i] / Lk[i, 2]
            radial[i, 1] = x[2 + 2 * i]
            radial[i, 2] = x[3 + 2 * i]
        return axial, radial

    def resid(x: np.ndarray) -> np.ndarray:
        axial, radial = unpack(x)
        arc = _arc_strains(prof, n_wall, axial, radial, thick)
        reg = 0.05 * (np.array([radial[0, 1], radial[0, 2], radial[1, 1], radial[1, 2]])
                      - prior[:, 1:].ravel())
        return np.concatenate([(arc - target).ravel(), reg])

    x0 = np.array([target[0, 0], target[1, 0], prior[0, 1], prior[0, 2], prior[1, 1], prior[1, 2]])
    lo = np.array([-40.0, -40.0, -25.0, -25.0, -25.0, -25.0])
    hi = np.array([5.0, 5.0, 15.0, 15.0, 15.0, 15.0])
    sol = least_squares(resid, np.clip(x0, lo + 1e-6, hi - 1e-6), bounds=(lo, hi),
                        xtol=1e-6, ftol=1e-6, max_nfev=200)
    return unpack(sol.x)


@njit(cache=True, nogil=True, inline="always")
def _interp_tab(tab, fi, i0):
    return tab[i0] + (tab[i0 + 1] - tab[i0]) * fi


@njit(cache=True, nogil=True)
def _static_terms(x, y, ax, ay, esx, esy, enx, eny, s0, ds, wtab, wall, blend, decay):
    """Time-independent part of u at reference point (x, y) mm.

    Returns (i0, fi, wl, cR, cH, cD, sg): table cell and fraction along s, weight of the
    anterolateral side, coefficients of R and H in the radial displacement, factor of the
    longitudinal displacement, and the sign of n."""
    dx = x - ax
    dy = y - ay
    s = dx * esx + dy * esy
    n = dx * enx + dy * eny
    ns = wtab.shape[0]
    f = (s - s0) / ds
    if f < 0.0:
        f = 0.0
    if f > ns - 1.001:
        f = ns - 1.001
    i0 = int(f)
    fi = f - i0
    wl = 0.5 * (1.0 + np.tanh(n / blend))
    w = _interp_tab(wtab, fi, i0)
    an = abs(n)
    weff = w if w > 4.0 else 4.0
    if an <= weff:
        cR = an / weff
        cH = 0.0
    elif an <= weff + wall:
        cR = 1.0
        cH = -(an - weff) / wall
    else:
        e = np.exp(-(an - weff - wall) / decay)
        cR = e
        cH = -e
    # longitudinal motion fades far outside the heart (the RV side reaches further)
    reach = weff + wall + (45.0 if n < 0.0 else 8.0)
    cD = 1.0
    if an > reach:
        cD = np.exp(-(an - reach) / decay)
    sg = 1.0 if n > 0.0 else (-1.0 if n < 0.0 else 0.0)
    return i0, fi, wl, cR, cH, cD, sg


@njit(cache=True, nogil=True)
def _apply_terms(i0, fi, wl, cR, cH, cD, sg, D, R, H, rx, ry, esx, esy, enx, eny):
    """Displacement (ux, uy) mm from the static terms and one time's profiles."""
    dl = cD * (wl * _interp_tab(D[1], fi, i0) + (1.0 - wl) * _interp_tab(D[0], fi, i0))
    r = wl * _interp_tab(R[1], fi, i0) + (1.0 - wl) * _interp_tab(R[0], fi, i0)
    hh = wl * _interp_tab(H[1], fi, i0) + (1.0 - wl) * _interp_tab(H[0], fi, i0)
    un = -sg * (r * cR + hh * cH)
    return dl * esx + un * enx + rx, dl * esy + un * eny + ry


@njit(cache=True, nogil=True)
def _disp_one(x, y, D, R, H, rx, ry, ax, ay, esx, esy, enx, eny, s0, ds, wtab, wall, blend, decay):
    """Displacement (ux, uy) mm of the reference point (x, y) mm."""
    i0, fi, wl, cR, cH, cD, sg = _static_terms(x, y, ax, ay, esx, esy, enx, eny, s0, ds, wtab,
                                               wall, blend, decay)
    return _apply_terms(i0, fi, wl, cR, cH, cD, sg, D, R, H, rx, ry, esx, esy, enx, eny)


@njit(cache=True, nogil=True)
def static_terms_many(pts, ax, ay, esx, esy, enx, eny, s0, ds, wtab, wall, blend, decay):
    """:func:`_static_terms` of many points: (i0 int64 [N], terms float64 [N, 6])."""
    n = pts.shape[0]
    idx = np.empty(n, dtype=np.int64)
    terms = np.empty((n, 6))
    for j in range(n):
        i0, fi, wl, cR, cH, cD, sg = _static_terms(pts[j, 0], pts[j, 1], ax, ay, esx, esy, enx,
                                                   eny, s0, ds, wtab, wall, blend, decay)
        idx[j] = i0
        terms[j, 0] = fi
        terms[j, 1] = wl
        terms[j, 2] = cR
        terms[j, 3] = cH
        terms[j, 4] = cD
        terms[j, 5] = sg
    return idx, terms


@njit(cache=True, nogil=True)
def _displace_many(pts, D, R, H, rx, ry, ax, ay, esx, esy, enx, eny, s0, ds, wtab, wall,
                   blend, decay, out):
    for j in range(pts.shape[0]):
        ux, uy = _disp_one(pts[j, 0], pts[j, 1], D, R, H, rx, ry, ax, ay, esx, esy, enx, eny,
                           s0, ds, wtab, wall, blend, decay)
        out[j, 0] = pts[j, 0] + ux
        out[j, 1] = pts[j, 1] + uy


@njit(cache=True, nogil=True)
def _invert_many(pts, D, R, H, rx, ry, ax, ay, esx, esy, enx, eny, s0, ds, wtab, wall,
                 blend, decay, n_iter, out):
    """Reference positions X of current points x: solve x = X + u(X) by fixed point."""
    for j in range(pts.shape[0]):
        x = pts[j, 0]
        y = pts[j, 1]
        X = x
        Y = y
        for _ in range(n_iter):
            ux, uy = _disp_one(X, Y, D, R, H, rx, ry, ax, ay, esx, esy, enx, eny, s0, ds,
                               wtab, wall, blend, decay)
            X = x - ux
            Y = y - uy
        out[j, 0] = X
        out[j, 1] = Y
