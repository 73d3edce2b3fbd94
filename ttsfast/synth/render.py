"""B-mode rendering: moving scatterers -> polar IQ grid -> PSF -> envelope -> log -> fan.

Each scatterer is a material point with a reference position X (mm, probe frame) and a
complex amplitude scaled by the echogenicity of its tissue class. At frame t it sits at
x = X + u(X, t); it is splatted bilinearly into a polar (range, angle) grid as the baseband
echo ``a exp(-2 i k r)`` (k = 2 pi / wavelength), so that relative axial motion changes the
interference (speckle decorrelates under strain, not under translation). The grid is
convolved with a separable Gaussian PSF (axial along range, lateral along angle: lateral
resolution worsens with depth as on a scanner), which is the envelope of a
Gaussian-modulated cosine pulse; the magnitude is the envelope. Thermal noise, a static
near-field clutter, beam dropout and depth gain are added, then the envelope is
log-compressed and scan-converted to the Cartesian canvas.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from numba import njit

from .geometry import CLASS_BLOOD, CLASS_DB, CLASS_MYOCARDIUM, CLASS_PAPILLARY, ClassMap, Geometry
from .motion import _apply_terms


@dataclass
class PolarGrid:
    """The polar acquisition grid.

    Attributes
    ----------
    dr : float
        Range step, mm.
    dth : float
        Angle step, radians.
    n_r, n_th : int
        Number of range samples and beam lines.
    th0 : float
        Angle of line 0 (radians, negative = viewer's left).
    """

    dr: float
    dth: float
    n_r: int
    n_th: int
    th0: float


def make_grid(depth_mm: float, half_angle: float, dr: float = 0.45, dth: float = 0.008) -> PolarGrid:
    """Polar grid covering the sector (plus two guard lines on each side)."""
    n_th = int(np.ceil(2 * half_angle / dth)) + 5
    th0 = -half_angle - 2 * dth
    n_r = int(np.ceil((depth_mm + 2.0) / dr)) + 1
    return PolarGrid(dr=dr, dth=dth, n_r=n_r, n_th=n_th, th0=th0)


@dataclass
class Scatterers:
    """Material scatterers: reference positions [N,2] mm, complex amplitudes [N]."""

    pos: np.ndarray
    amp: np.ndarray


def make_scatterers(rng: np.random.Generator, geo: Geometry, cmap: ClassMap,
                    density_per_mm2: float, texture_db: float = 3.0,
                    anisotropy_db: float = 8.0, blood_db: float | None = None,
                    papillary_db: float | None = None) -> Scatterers:
    """Draw scatterers uniformly over the (slightly enlarged) reference sector.

    Blood gets no scatterers (its echo is below the noise floor at the display's dynamic
    range; the noise fills the cavity). Amplitudes are circular complex Gaussian, scaled by
    the class echogenicity, a smooth random texture (``texture_db`` dB), the angle between
    beam and myocardial wall (``anisotropy_db`` dB from along-beam to face-on), and by
    ``1/sqrt(r)`` so that the mean echo does not grow with the polar cell size.
    ``blood_db``: when given, blood gets scatterers too, at this level (dB re myocardium;
    the faint "smoke" in the cavities of real clips); None (default): no blood echo.
    ``papillary_db``: level of the papillary muscles (class 7) where the map has them.
    """
    R = geo.depth + 8.0
    th_max = geo.half_angle + 0.06
    area = 0.5 * R * R * 2 * th_max
    n = int(density_per_mm2 * area)
    r = R * np.sqrt(rng.random(n))
    th = (rng.random(n) * 2 - 1) * th_max
    pos = np.stack([r * np.sin(th), r * np.cos(th)], axis=1)
    cls = cmap.sample(pos)
    if blood_db is None:
        keep = cls != CLASS_BLOOD
        pos, cls, r = pos[keep], cls[keep], r[keep]
    db = CLASS_DB[cls].astype(np.float64)
    if blood_db is not None:
        db[cls == CLASS_BLOOD] = float(blood_db)
    if papillary_db is not None:
        db[cls == CLASS_PAPILLARY] = float(papillary_db)
    # smooth texture: a few random low-frequency waves in the reference frame
    tex = np.zeros(pos.shape[0])
    n_waves = 12
    for _ in range(n_waves):
        k = rng.normal(0, 1, 2)
        k = k / np.linalg.norm(k) * rng.uniform(0.06, 0.4)
        tex += np.cos(pos @ k + rng.uniform(0, 2 * np.pi))
    db = db + texture_db * tex / np.sqrt(n_waves / 2.0)
    # anisotropy: myocardium echoes more where the beam hits the wall face-on (apex cap,
    # annulus) than where the beam runs along the wall (mid lateral wall)
    myo = cls == CLASS_MYOCARDIUM
    if myo.any():
        d = pos[myo] - geo.apex
        sl, nl = d @ geo.e_s, d @ geo.e_n
        sc = geo.apex_frac * geo.length
        gs = np.where(sl < sc, (sl - sc) / (sc * sc), 0.0)
        gn = nl / (geo.halfwidth * geo.halfwidth)
        nrm = gs[:, None] * geo.e_s + gn[:, None] * geo.e_n
        nrm /= np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-9)
        beam = pos[myo] / np.maximum(np.linalg.norm(pos[myo], axis=1, keepdims=True), 1e-9)
        face = np.abs(np.sum(nrm * beam, axis=1))
        db[myo] += anisotropy_db * (face - 0.35)
    # a few strong (specular-like) scatterers make the tissue sparkle as on a scanner
    db = db + np.where(rng.random(pos.shape[0]) < 0.015, 6.0, 0.0)
    mag = 10.0 ** (db / 20.0) * np.sqrt(60.0 / np.maximum(r, 5.0))
    amp = mag * (rng.normal(size=pos.shape[0]) + 1j * rng.normal(size=pos.shape[0])) / np.sqrt(2)
    return Scatterers(pos=np.ascontiguousarray(pos), amp=amp.astype(np.complex128))


@njit(cache=True, nogil=True, inline="always")
def _splat_one(x, y, a_re, a_im, two_k, dr, dth, th0, nr, nt, out_re, out_im):  # pragma: no cover
    """Add one scatterer at (x, y) mm with complex amplitude a to the polar grid [nr, nt]
    (bilinear in range and angle; the phase of the round trip to depth r)."""
    r = np.sqrt(x * x + y * y)
    th = np.arctan2(x, y)
    fr = r / dr
    ft = (th - th0) / dth
    if fr < 0.0 or ft < 0.0 or fr >= nr - 1 or ft >= nt - 1:
        return
    ir = int(fr)
    it = int(ft)
    wr = fr - ir
    wt = ft - it
    ph = -two_k * r
    c = np.cos(ph)
    s = np.sin(ph)
    are = a_re * c - a_im * s
    aim = a_re * s + a_im * c
    out_re[ir, it] += (1 - wr) * (1 - wt) * are
    out_im[ir, it] += (1 - wr) * (1 - wt) * aim
    out_re[ir, it + 1] += (1 - wr) * wt * are
    out_im[ir, it + 1] += (1 - wr) * wt * aim
    out_re[ir + 1, it] += wr * (1 - wt) * are
    out_im[ir + 1, it] += wr * (1 - wt) * aim
    out_re[ir + 1, it + 1] += wr * wt * are
    out_im[ir + 1, it + 1] += wr * wt * aim


@njit(cache=True, nogil=True)
def _splat_frame(pos, amp_re, amp_im, idx, terms, D, R, H, rx, ry, esx, esy, enx, eny,
                 two_k, dr, dth, th0, out_re, out_im):
    """Move each scatterer by the field and splat its baseband echo into the polar grid.

    ``idx``/``terms`` are the scatterers' precomputed static terms of the field
    (:func:`ttsfast.synth.motion.static_terms_many`), so the motion is exactly the one
    the ground truth uses."""
    nr = out_re.shape[0]
    nt = out_re.shape[1]
    for j in range(pos.shape[0]):
        ux, uy = _apply_terms(idx[j], terms[j, 0], terms[j, 1], terms[j, 2], terms[j, 3],
                              terms[j, 4], terms[j, 5], D, R, H, rx, ry, esx, esy, enx, eny)
        x = pos[j, 0] + ux
        y = pos[j, 1] + uy
        _splat_one(x, y, amp_re[j], amp_im[j], two_k, dr, dth, th0, nr, nt, out_re, out_im)


@njit(cache=True, nogil=True)
def _splat_points(xy, amp_re, amp_im, two_k, dr, dth, th0, out_re, out_im):
    """Splat scatterers already at their current positions ``xy`` [N, 2] mm."""
    nr = out_re.shape[0]
    nt = out_re.shape[1]
    for j in range(xy.shape[0]):
        _splat_one(xy[j, 0], xy[j, 1], amp_re[j], amp_im[j], two_k, dr, dth, th0, nr, nt, out_re, out_im)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def valve_opening(tau: np.ndarray, e_start: float, e_dur: float, a_dur: float,
                  period: float) -> np.ndarray:
    """Opening of the atrioventricular valves (0 closed .. 1 fully open) over the cycle:
    closed in systole and isovolumic relaxation, open in the E wave, half-closed in
    diastasis, open again with the atrial kick, closed at end-diastole."""
    tau = np.asarray(tau, dtype=np.float64)
    a0 = period - a_dur
    o = _smoothstep((tau - e_start) / 0.04)
    o = o * (1.0 - 0.55 * _smoothstep((tau - (e_start + e_dur)) / 0.08))
    o = np.maximum(o, _smoothstep((tau - a0) / 0.04) * (tau >= e_start))
    o = o * (1.0 - _smoothstep((tau - (period - 0.03)) / 0.03))
    return np.where(tau < e_start, 0.0, o)


@dataclass
class Leaflets:
    """Valve leaflets: scatterers in leaflet coordinates (along, across) mm, their
    complex amplitudes, and per leaflet the hinge (reference mm), closed and open
    directions. ``which[j]`` is the leaflet of scatterer j."""

    along: np.ndarray
    across: np.ndarray
    amp: np.ndarray
    which: np.ndarray
    hinge: np.ndarray
    closed_dir: np.ndarray
    open_dir: np.ndarray

    def positions(self, hinges_t: np.ndarray, opening: float) -> np.ndarray:
        """Scatterer positions [N, 2] mm given the current hinges [L, 2] and opening 0..1."""
        d = (1.0 - opening) * self.closed_dir + opening * self.open_dir
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        perp = np.stack([-d[:, 1], d[:, 0]], axis=1)
        w = self.which
        return hinges_t[w] + self.along[:, None] * d[w] + self.across[:, None] * perp[w]


def make_leaflets(rng: np.random.Generator, geo: Geometry, density_per_mm2: float,
                  level_db: float = -4.0) -> Leaflets:
    """Scatterers of the mitral and tricuspid leaflets (thin, ~1.5 mm), hinged at the
    annuli; open, they point toward the apex along their ventricle's walls."""
    legs = geo.polygons["mitral_leaflets"] + geo.polygons["tricuspid_leaflets"]
    hinge = np.array([lg[0] for lg in legs])
    tip = np.array([lg[1] for lg in legs])
    closed = tip - hinge
    length = np.linalg.norm(closed, axis=1)
    closed = closed / length[:, None]
    open_dir = -geo.e_s[None, :] + 0.25 * (closed - (closed @ geo.e_s)[:, None] * geo.e_s[None, :])
    open_dir /= np.linalg.norm(open_dir, axis=1, keepdims=True)
    al, ac, wh = [], [], []
    for i, ln in enumerate(length):
        n = max(8, int(density_per_mm2 * 2.0 * ln * 1.5))
        al.append(rng.uniform(0.0, ln, n))
        ac.append(rng.uniform(-0.75, 0.75, n))
        wh.append(np.full(n, i))
    al, ac, wh = np.concatenate(al), np.concatenate(ac), np.concatenate(wh)
    r = np.maximum(np.linalg.norm(hinge[wh], axis=1), 5.0)
    mag = 10 ** (level_db / 20.0) * np.sqrt(60.0 / r) * np.sqrt(2.0)  # thin: fewer scatterers
    amp = mag * (rng.normal(size=al.size) + 1j * rng.normal(size=al.size)) / np.sqrt(2)
    return Leaflets(along=al, across=ac, amp=amp, which=wh, hinge=hinge, closed_dir=closed,
                    open_dir=open_dir)


@njit(cache=True, nogil=True)
def _envelope_log(re, im, bank_re, bank_im, k, di, dj, noise_std, gain, clutter_re, clutter_im,
                  ref_db, dr_db, out):
    """|IQ * gain + clutter + noise| -> log compression to 0..255 (myocardium ~ 125).

    Thermal noise is read from a bank of white Gaussian fields (``bank_re/im`` [K, nr, nt])
    at field ``k`` circularly shifted by (``di``, ``dj``), scaled per range row by
    ``noise_std``: independent-looking noise every frame at a fraction of the cost."""
    scale = 255.0 / dr_db
    nr = re.shape[0]
    nt = re.shape[1]
    c10 = 10.0 / np.log(10.0)
    for i in range(nr):
        ii = i + di
        if ii >= nr:
            ii -= nr
        sd = noise_std[i]
        for j in range(nt):
            jj = j + dj
            if jj >= nt:
                jj -= nt
            a = (re[i, j] + clutter_re[i, j]) * gain[i, j] + bank_re[k, ii, jj] * sd
            b = (im[i, j] + clutter_im[i, j]) * gain[i, j] + bank_im[k, ii, jj] * sd
            p = a * a + b * b
            v = 125.0 + (c10 * np.log(p + 1e-30) - ref_db) * scale
            if v < 0.0:
                v = 0.0
            if v > 255.0:
                v = 255.0
            out[i, j] = v


def psf_bands(grid: PolarGrid, lateral_sigma_rad: float, min_lateral_mm: float,
              tol: float = 1.15) -> list[tuple[int, int, float]]:
    """Row bands of the polar grid with their lateral PSF width in beam lines.

    The beam is at least ``min_lateral_mm`` wide (the aperture: near the transducer the
    beam does not become a line), and ``lateral_sigma_rad`` wide in angle further down.

    Returns
    -------
    list of (row0, row1, sigma_lines)
    """
    r = np.maximum(np.arange(grid.n_r) * grid.dr, 0.5 * grid.dr)
    sig = np.maximum(lateral_sigma_rad, min_lateral_mm / r) / grid.dth
    sig = np.minimum(sig, grid.n_th / 4.0)
    bands = []
    i0 = 0
    for i in range(1, grid.n_r + 1):
        if i == grid.n_r or sig[i] < sig[i0] / tol:
            bands.append((i0, i, float(np.sqrt(sig[i0] * sig[i - 1]))))
            i0 = i
    return bands


def apply_psf(img: np.ndarray, bands: list[tuple[int, int, float]], sig_r: float) -> np.ndarray:
    """Separable Gaussian PSF on a polar float32 image [nr, nt] or [nr, nt, channels]:
    lateral (per depth band, along lines), then axial (along range). Returns a new
    float32 array."""
    out = np.empty_like(img)
    for a, b, sl in bands:
        out[a:b] = cv2.GaussianBlur(img[a:b], (0, 0), sigmaX=sl, sigmaY=1e-6,
                                    borderType=cv2.BORDER_REPLICATE)
    return cv2.sepFilter2D(out, -1, np.ones(1, np.float32), _gauss_kernel(sig_r),
                           borderType=cv2.BORDER_REPLICATE)


def _gauss_kernel(sigma: float) -> np.ndarray:
    h = max(1, int(np.ceil(3.0 * sigma)))
    x = np.arange(-h, h + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).astype(np.float32)


def scan_convert_maps(grid: PolarGrid, height: int, width: int, mm_per_px: float,
                      top_px: float, depth_mm: float, half_angle: float,
                      cx_px: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """cv2.remap maps from the Cartesian canvas into the polar grid, and the sector mask.

    ``cx_px``: column of the fan apex (default None: the canvas centre ``(width - 1) / 2``).

    Returns
    -------
    map_x, map_y : float32 [H, W]
        Column (line) and row (range sample) of the polar grid for each canvas pixel.
    mask : bool [H, W]
        Pixels inside the imaged sector.
    """
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    cx = (width - 1) / 2.0 if cx_px is None else float(cx_px)
    X = (xx - cx) * mm_per_px
    Y = (yy - top_px) * mm_per_px
    r = np.hypot(X, Y)
    th = np.arctan2(X, Y)
    mask = (r <= depth_mm) & (np.abs(th) <= half_angle) & (Y > 0)
    mx = ((th - grid.th0) / grid.dth).astype(np.float32)
    my = (r / grid.dr).astype(np.float32)
    mx[~mask] = -10
    my[~mask] = -10
    return mx, my, mask


def px_to_mm(xy_px: np.ndarray, width: int, mm_per_px: float, top_px: float,
             cx_px: float | None = None) -> np.ndarray:
    """Canvas pixel coordinates [...,2] (x, y) -> probe-frame mm (fan apex at column
    ``cx_px``, default the canvas centre)."""
    cx = (width - 1) / 2.0 if cx_px is None else float(cx_px)
    out = np.empty(np.shape(xy_px), dtype=np.float64)
    out[..., 0] = (xy_px[..., 0] - cx) * mm_per_px
    out[..., 1] = (xy_px[..., 1] - top_px) * mm_per_px
    return out


def mm_to_px(xy_mm: np.ndarray, width: int, mm_per_px: float, top_px: float,
             cx_px: float | None = None) -> np.ndarray:
    """Probe-frame mm [...,2] -> canvas pixel coordinates (x, y) (fan apex at column
    ``cx_px``, default the canvas centre)."""
    cx = (width - 1) / 2.0 if cx_px is None else float(cx_px)
    out = np.empty(np.shape(xy_mm), dtype=np.float64)
    out[..., 0] = xy_mm[..., 0] / mm_per_px + cx
    out[..., 1] = xy_mm[..., 1] / mm_per_px + top_px
    return out


def gain_map(rng: np.random.Generator, grid: PolarGrid, geo: Geometry, dropout: float,
             tgc_db: float = 2.0, tgc_points_db: list | None = None,
             dropout_sigma_mm: float = 12.0, dropout_sigma_rad: float = 0.05,
             dropout_pos: float | None = None) -> np.ndarray:
    """Static multiplicative gain on the polar grid: depth gain ripple, beam-to-beam gain,
    soft sector edges and a dropout patch on the anterolateral wall (where beams run along
    the wall).

    ``dropout`` in [0, 1] is the depth of the patch (0 = none, 1 = echo fully lost);
    ``dropout_sigma_mm`` / ``dropout_sigma_rad`` its extent along range and across beams
    (Gaussian SDs), ``dropout_pos`` its centre as a fraction of the wall from the annulus
    (None: drawn from ``rng`` in [0.35, 0.6]). ``tgc_points_db``: time-gain compensation
    as gains (dB) at equally spaced depths from the transducer to the sector's depth,
    interpolated smoothly (None: flat)."""
    r = np.arange(grid.n_r) * grid.dr
    th = grid.th0 + np.arange(grid.n_th) * grid.dth
    g_db = tgc_db * np.sin(2 * np.pi * r / geo.depth * rng.uniform(0.6, 1.4) + rng.uniform(0, 6.3))[:, None]
    beam = np.zeros(grid.n_th)
    for _ in range(3):
        beam += rng.normal(0, 0.8) * np.sin(th * rng.uniform(4, 14) + rng.uniform(0, 6.3))
    g_db = g_db + beam[None, :]
    edge = np.clip((geo.half_angle - np.abs(th)) / 0.04, 0.0, 1.0)
    g = 10 ** (g_db / 20.0) * edge[None, :]
    if tgc_points_db is not None:
        pts = np.asarray(tgc_points_db, dtype=np.float64)
        prof = np.interp(r, np.linspace(0.0, geo.depth, pts.size), pts)
        k = max(1, int(round(8.0 / grid.dr)))  # smooth over ~8 mm: a TGC slider bank
        prof = np.convolve(np.pad(prof, k, mode="edge"), np.ones(2 * k + 1) / (2 * k + 1), "same")[k:-k]
        g = g * (10 ** (prof / 20.0))[:, None]
    if dropout > 0:
        mw = geo.midwall["anterolateral"]
        frac = rng.uniform(0.35, 0.6) if dropout_pos is None else float(dropout_pos)
        p = mw[min(int(frac * len(mw)), len(mw) - 1)]
        rc, tc = np.hypot(p[0], p[1]), np.arctan2(p[0], p[1])
        blob = np.exp(-0.5 * ((r[:, None] - rc) / dropout_sigma_mm) ** 2
                      - 0.5 * ((th[None, :] - tc) / dropout_sigma_rad) ** 2)
        g = g * (1.0 - min(dropout, 1.0) * blob)
    return g.astype(np.float64)


def clutter_field(rng: np.random.Generator, grid: PolarGrid, near_mm: float, level_db: float,
                  sig_r: float, bands: list, band_mm: float | None = None,
                  band_db: float | None = None, band_width_mm: float = 8.0) -> tuple[np.ndarray, np.ndarray]:
    """Static near-field clutter (reverberation haze) as a complex IQ field on the grid,
    strongest at the top and fading by ``near_mm`` of depth; with ``band_mm`` and
    ``band_db``, also a reverberation band of that level centred at that depth (e.g. over
    the apex), ``band_width_mm`` wide (Gaussian SD)."""
    re = rng.normal(size=(grid.n_r, grid.n_th)).astype(np.float32)
    im = rng.normal(size=(grid.n_r, grid.n_th)).astype(np.float32)
    wide = [(a, b, 1.5 * sl) for a, b, sl in bands]
    re = apply_psf(re, wide, 2.0 * sig_r)
    im = apply_psf(im, wide, 2.0 * sig_r)
    r = np.arange(grid.n_r) * grid.dr
    prof = np.exp(-0.5 * (r / near_mm) ** 2) * 10 ** (level_db / 20.0)
    if band_mm is not None and band_db is not None:
        prof = prof + np.exp(-0.5 * ((r - band_mm) / band_width_mm) ** 2) * 10 ** (band_db / 20.0)
    norm = 1.0 / max(float(np.std(re)), 1e-9)
    return (re * norm * prof[:, None]).astype(np.float64), (im * norm * prof[:, None]).astype(np.float64)
