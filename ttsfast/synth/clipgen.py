"""``generate()``: one synthetic apical-4-chamber clip and its ground truth."""
from __future__ import annotations

import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np

from ..clip import Clip
from ..errors import InputError
from ..warning_codes import warn
from .geometry import build_geometry, class_map
from .groundtruth import GroundTruth, ScanGeometry, build_groundtruth, measures_from_model
from .motion import build_motion, static_terms_many
from .overlays import draw_overlays
from .presets import PRESETS, derive_excursion
from .render import (
    Leaflets,
    _envelope_log,
    _splat_frame,
    _splat_points,
    apply_psf,
    clutter_field,
    psf_bands,
    gain_map,
    make_grid,
    make_leaflets,
    make_scatterers,
    scan_convert_maps,
    valve_opening,
)

#: Clip settings that are not drawn by a preset, with their defaults.
CLIP_DEFAULTS = {
    "n_frames": None,  # None: enough for three full beats after the first end-diastole
    "fps": 50.0,
    "height": 256,
    "width": 352,
    "mm_per_px": 0.9,
    "top_px": 8.0,
    "mirrored": False,
    "overlays": False,
    "start_phase": None,  # fraction of a cycle before the first end-diastole; None = drawn
    "density_per_mm2": 2.0,
    "wavelength_mm": 0.7,
    "axial_sigma_mm": 0.7,
    "lateral_sigma_rad": 0.016,
    "min_lateral_mm": 1.1,
    "threads": 2,
    # keep the LV myocardium this far (mm) inside the sector over the whole cycle, as a
    # sonographer frames an apical view (None: leave the drawn position alone)
    "sector_margin_mm": 3.0,
    # opt-in variety of looks, framings and hearts (see ttsfast.synth.variety); None: the
    # presets' own look. The settings below are what it draws; their defaults change nothing.
    "variety": None,
    "cx_px": None,  # column of the fan apex (None: canvas centre)
    "render_scale": 1,  # render this many times finer, then area-average down
    "lv_apex_frac": 0.62,  # apical cap shape (smaller: rounder apex)
    "tgc_points_db": None,  # time-gain compensation, dB at equal depths
    "clutter_near_mm": None,  # near-field haze extent (None: from the apex depth)
    "reverb_db": None,  # reverberation band level (None: none)
    "reverb_mm": None,  # its depth
    "dropout_sigma_mm": 12.0,
    "dropout_sigma_rad": 0.05,
    "dropout_pos": None,  # dropout centre along the lateral wall (None: drawn)
    "leaflet_db": -4.0,
    "blood_db": None,  # faint blood echo (None: none)
    "papillary": None,  # [[side, s_frac, length_mm, width_mm], ...]
    "papillary_db": None,
    "variety_info": None,
}

#: Override aliases accepted by :func:`generate`.
_ALIASES = {"hr": "heart_rate_bpm", "heart_rate": "heart_rate_bpm", "n": "n_frames"}


def _rngs(preset: str, seed: int) -> list[np.random.Generator]:
    ss = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, zlib.crc32(preset.encode())])
    return [np.random.default_rng(s) for s in ss.spawn(4)]


def draw_params(preset: str = "normal", seed: int = 0, **overrides) -> dict:
    """Draw the parameters of one synthetic patient (no rendering).

    Parameters
    ----------
    preset : str
        One of :data:`PRESETS`.
    seed : int
        Random seed; the same (preset, seed) always gives the same patient.
    **overrides
        Any preset parameter (e.g. ``heart_rate_bpm``, ``strain``) or clip setting
        (:data:`CLIP_DEFAULTS`).
    """
    if preset not in PRESETS:
        raise InputError(f"unknown synthetic preset {preset!r}; choose one of {sorted(PRESETS)}")
    try:
        seed = int(seed)
    except (TypeError, ValueError):
        raise InputError(f"seed must be an integer, got {seed!r}") from None
    from .variety import apply_variety, check_variety, finish_variety, variety_rng

    variety = check_variety(overrides.get("variety"))
    p = PRESETS[preset](_rngs(preset, seed)[0])
    p.update(CLIP_DEFAULTS)
    if variety is not None:
        apply_variety(p, variety_rng(preset, seed, variety))
    for k, v in overrides.items():
        k = _ALIASES.get(k, k)
        if k not in p:
            raise InputError(f"unknown synth override {k!r}; known: {sorted(p)}")
        if k == "variety":
            p[k] = variety
        elif v is not None or k in ("start_phase", "sector_margin_mm"):
            p[k] = v
    if "heart_rate_bpm" in overrides or "hr" in overrides or "heart_rate" in overrides:
        from .presets import _systolic_timing

        p["es_s"] = _systolic_timing(np.random.default_rng(seed), float(p["heart_rate_bpm"]))
    _validate(p)
    derive_excursion(p)
    p["seed"] = seed
    if p["sector_margin_mm"] is not None and not ({"apex_x_mm", "apex_depth_mm"} & set(overrides)):
        fit_in_sector(p, seed, float(p["sector_margin_mm"]),
                      order="depth_first" if variety is not None else "angle_first")
    if variety is not None:
        finish_variety(p, seed, {_ALIASES.get(k, k) for k, v in overrides.items() if v is not None})
    return p


def sector_margins(p: dict, seed: int, n_times: int = 48) -> tuple[float, float]:
    """Smallest distance (mm) of the LV epicardium to the left and the right sector edge over
    one cardiac cycle.

    The mid-wall points of both walls are moved by the motion model over one period; the
    epicardium is taken half a wall thickness outside them.

    Returns
    -------
    (left, right) : tuple of float
        mm; negative where the myocardium leaves the sector (the image then holds no echo of
        it and no tracker can follow it).
    """
    return _margins(*model_for(p, seed), n_times)


def _margins(geo, model, n_times: int = 48) -> tuple[float, float]:
    """:func:`sector_margins` of an already built geometry and motion model."""
    t = model.timing.t0 + np.linspace(0.0, model.timing.period, n_times)
    pts = np.concatenate([geo.midwall["inferoseptal"], geo.midwall["anterolateral"]])
    cur = model.displace(pts, t)  # [T, N, 2] mm, x lateral, y depth
    r = np.hypot(cur[..., 0], cur[..., 1])
    phi = np.arctan2(cur[..., 0], cur[..., 1])
    left = float(np.min((geo.half_angle + phi) * r)) - 0.5 * geo.wall
    right = float(np.min((geo.half_angle - phi) * r)) - 0.5 * geo.wall
    return left, right


def fit_in_sector(p: dict, seed: int, margin_mm: float = 3.0, max_iter: int = 10,
                  order: str = "angle_first") -> None:
    """Frame the drawn heart so that the LV myocardium stays ``margin_mm`` inside the sector.

    As a sonographer would, in this order and only as far as needed: widen the sector (half
    angle up to 45 degrees), move the probe up the chest (apex deeper, up to 44 mm, the range
    the presets draw from), then slide it sideways (``apex_x_mm``, the smallest shift that
    frees the crowded side). ``p`` is changed in place; a heart that already fits is left
    exactly as drawn. ``order="depth_first"`` (the variety's narrow sectors) moves the
    probe up the chest first (apex down to 60 mm), and widens the sector only then.
    """
    for _ in range(max_iter + (6 if order == "depth_first" else 0)):
        left, right = sector_margins(p, seed)
        short = margin_mm - min(left, right)
        if short <= 0:
            return
        r_worst = 60.0  # mm: typical depth of the crowded mid/apical wall
        if order == "depth_first" and float(p["apex_depth_mm"]) < 60.0 and left + right >= 2.0 * margin_mm + 0.5:
            p["apex_depth_mm"] = float(min(60.0, float(p["apex_depth_mm"]) + 2.0 * (short + 0.1)))
        elif float(p["half_angle_deg"]) < 45.0:
            p["half_angle_deg"] = float(min(45.0, float(p["half_angle_deg"]) + np.degrees((short + 0.1) / r_worst)))
        elif float(p["apex_depth_mm"]) < 44.0:
            p["apex_depth_mm"] = float(min(44.0, float(p["apex_depth_mm"]) + 2.0 * (short + 0.1)))
        elif left + right < 2.0 * margin_mm + 0.5:  # too wide for the sector even so: centre it
            p["apex_x_mm"] = float(p["apex_x_mm"]) + 0.5 * (right - left)
            p["apex_depth_mm"] = float(min(60.0, float(p["apex_depth_mm"]) + 1.0))
        elif right < margin_mm:
            p["apex_x_mm"] = float(p["apex_x_mm"]) - (margin_mm - right + 0.1)
        else:
            p["apex_x_mm"] = float(p["apex_x_mm"]) + (margin_mm - left + 0.1)


def _validate(p: dict) -> None:
    def num(k: str, lo: float, hi: float) -> None:
        try:
            v = float(p[k])
        except (TypeError, ValueError):
            raise InputError(f"{k} must be a number, got {p[k]!r}") from None
        if not np.isfinite(v) or not lo <= v <= hi:
            raise InputError(f"{k}={p[k]!r} out of range [{lo}, {hi}]")

    if p["n_frames"] is not None:
        num("n_frames", 2, 10000)
    num("fps", 5, 1000)
    num("heart_rate_bpm", 20, 250)
    num("height", 64, 2048)
    num("width", 64, 2048)
    num("mm_per_px", 0.1, 5.0)
    num("noise", 0.0, 100.0)
    num("density_per_mm2", 0.1, 50.0)
    if p["start_phase"] is not None:
        num("start_phase", 0.0, 1.0)
    if p["heart_rate_bpm"] > 0 and p["es_s"] >= 0.9 * 60.0 / p["heart_rate_bpm"]:
        p["es_s"] = 0.45 * 60.0 / p["heart_rate_bpm"]
    if float(p["height"]) * float(p["mm_per_px"]) < 0.5 * float(p["depth_mm"]):
        raise InputError("the canvas is too small for the sector: raise height or mm_per_px")


def model_for(p: dict, seed: int):
    """Geometry and motion model of drawn parameters ``p`` (fast; no rendering)."""
    geo = build_geometry(p)
    period = 60.0 / float(p["heart_rate_bpm"])
    rng = _rngs(str(p.get("preset", "normal")), seed)[1]
    phase = p.get("start_phase")
    if phase is None:
        phase = float(rng.uniform(0.0, 0.3))
    t0 = float(phase) * period
    return geo, build_motion(geo, p, t0)


def true_measures_fast(preset: str = "normal", seed: int = 0, beat: int = 0, **overrides) -> dict:
    """:meth:`GroundTruth.true_measures` of ``generate(preset, seed, **overrides)`` without
    rendering (milliseconds per patient): for cohorts."""
    p = draw_params(preset, seed, **overrides)
    _, model = model_for(p, p["seed"])
    return measures_from_model(model, beat, float(p["mm_per_px"]))


@dataclass
class _Scene:
    """Everything that moves in the image: material scatterers with their per-frame motion
    tables, and the valve leaflets with their per-frame hinges and opening.

    Attributes
    ----------
    pos : ndarray float64 [N, 2]
        Reference scatterer positions, probe-frame mm (C-contiguous).
    amp_re, amp_im : ndarray float32 [N]
        Real and imaginary parts of the scatterer amplitudes (linear, 0 dB = myocardium).
    idx : ndarray int64 [N]
        Long-axis table index of each scatterer (see :func:`static_terms_many`).
    terms : ndarray float64 [N, 6]
        Static motion terms of each scatterer.
    D, R, Hh : ndarray [T, 2, Ns]
        Longitudinal displacement, inward displacement and thickening tables, mm.
    rig : ndarray [T, 2]
        Rigid translation of the scene per frame, mm.
    e_s, e_n : tuple of float
        Long-axis and across-axis unit vectors (x, y) of the LV.
    leaf : Leaflets
        Valve leaflet scatterers.
    hinges : ndarray [T, L, 2]
        Leaflet hinge positions per frame, probe-frame mm.
    opening : ndarray [T]
        Valve opening per frame, 0 (closed) .. 1 (open).
    leaf_re, leaf_im : ndarray [M]
        Real and imaginary parts of the leaflet scatterer amplitudes.
    """

    pos: np.ndarray
    amp_re: np.ndarray
    amp_im: np.ndarray
    idx: np.ndarray
    terms: np.ndarray
    D: np.ndarray
    R: np.ndarray
    Hh: np.ndarray
    rig: np.ndarray
    e_s: tuple[float, float]
    e_n: tuple[float, float]
    leaf: Leaflets
    hinges: np.ndarray
    opening: np.ndarray
    leaf_re: np.ndarray
    leaf_im: np.ndarray


@dataclass
class _Echo:
    """Imaging chain settings from the IQ field to the log-compressed polar image.

    Attributes
    ----------
    two_k : float
        Round-trip wave number 4 pi / wavelength, rad/mm.
    sig_r : float
        Axial PSF sigma in range samples.
    bands : list of (int, int, float)
        Row bands of the polar grid with their lateral PSF sigma in beam lines.
    ref_db : float
        Reference level (dB) mapped to full grey: myocardium echo power less the gain.
    dr_db : float
        Displayed dynamic range, dB.
    gmap : ndarray [n_r, n_th]
        Amplitude gain map (TGC, dropout, PSF-width compensation).
    c_re, c_im : ndarray [n_r, n_th]
        Static near-field clutter field (real, imaginary).
    noise_std : ndarray float64 [n_r]
        Thermal noise standard deviation per range row.
    bank_re, bank_im : ndarray float32 [n_bank, n_r, n_th]
        Bank of unit Gaussian noise fields.
    noise_k, noise_di, noise_dj : ndarray int [T]
        Per frame: the bank field used and its circular row / column shift.
    """

    two_k: float
    sig_r: float
    bands: list
    ref_db: float
    dr_db: float
    gmap: np.ndarray
    c_re: np.ndarray
    c_im: np.ndarray
    noise_std: np.ndarray
    bank_re: np.ndarray
    bank_im: np.ndarray
    noise_k: np.ndarray
    noise_di: np.ndarray
    noise_dj: np.ndarray


@dataclass
class _ScanMaps:
    """Scan conversion from the polar grid to the output canvas.

    Attributes
    ----------
    mx, my : ndarray float32 [Hr, Wr]
        ``cv2.remap`` maps of the (possibly supersampled) render canvas into the polar grid.
    mask : ndarray [H, W]
        Sector mask of the output canvas (1 inside).
    mask_r : ndarray [Hr, Wr] or None
        Sector mask of the supersampled render canvas (None when ``k_ss == 1``).
    k_ss : int
        Supersampling factor (1: render directly at the output size).
    height, width : int
        Output canvas size, px.
    """

    mx: np.ndarray
    my: np.ndarray
    mask: np.ndarray
    mask_r: np.ndarray | None
    k_ss: int
    height: int
    width: int


def _frame_count(p: dict, model, fps: float) -> int:
    """Number of frames of the clip; fills ``p["n_frames"]`` when it is None with enough
    frames (at ``fps`` frames/s) for three full beats after the first end-diastole."""
    if p["n_frames"] is None:
        p["n_frames"] = int(np.ceil((model.timing.t0 + 3 * model.timing.period) * fps)) + 2
    return int(p["n_frames"])


def _make_scene(p: dict, rng: np.random.Generator, geo, cmap, model,
                times: np.ndarray) -> _Scene:
    """Draw the scatterers and leaflets (from ``rng``, in that order) and tabulate their
    motion at ``times`` (s, [T])."""
    scat = make_scatterers(rng, geo, cmap, float(p["density_per_mm2"]), float(p["texture_db"]),
                           float(p["anisotropy_db"]), blood_db=p["blood_db"],
                           papillary_db=p["papillary_db"])
    D, R, Hh, rig = model.tables(times)
    ka = model.kernel_args()
    idx, terms = static_terms_many(scat.pos, *ka[:4], *ka[4:])
    leaf = make_leaflets(rng, geo, float(p["density_per_mm2"]), level_db=float(p["leaflet_db"]))
    tau = np.mod(times - model.timing.t0, model.timing.period)
    opening = valve_opening(tau, model.e_start, float(np.mean(model.e_dur)), model.a_dur,
                            model.timing.period)
    return _Scene(
        pos=np.ascontiguousarray(scat.pos),
        amp_re=np.ascontiguousarray(scat.amp.real.astype(np.float32)),
        amp_im=np.ascontiguousarray(scat.amp.imag.astype(np.float32)),
        idx=idx, terms=terms, D=D, R=R, Hh=Hh, rig=rig, e_s=(ka[2], ka[3]), e_n=(ka[4], ka[5]),
        leaf=leaf, hinges=model.displace(leaf.hinge, times), opening=opening,
        leaf_re=np.ascontiguousarray(leaf.amp.real), leaf_im=np.ascontiguousarray(leaf.amp.imag),
    )


def _psf_and_level(p: dict, grid) -> tuple[float, float, list, float, float]:
    """Point-spread function of the scanner and the display reference level.

    Returns
    -------
    sig_r, sig_t : float
        Axial (range samples) and nominal lateral (beam lines) PSF sigma.
    bands : list of (int, int, float)
        Row bands with their lateral PSF sigma (beam lines), see :func:`psf_bands`.
    e_myo : float
        Expected echo power of myocardium (0 dB) on the grid after the PSF (linear).
    ref_db : float
        Reference level, dB: ``10 log10(e_myo)`` less ``gain_db``.
    """
    sig_r = float(p["axial_sigma_mm"]) / grid.dr
    sig_t = float(p["lateral_sigma_rad"]) / grid.dth
    bands = psf_bands(grid, float(p["lateral_sigma_rad"]), float(p["min_lateral_mm"]), tol=1.35)
    # expected echo power of myocardium (0 dB) on the grid after the PSF
    e_myo = float(p["density_per_mm2"]) * grid.dr * grid.dth * 60.0 / (4 * np.pi * sig_r * sig_t)
    ref_db = 10 * np.log10(e_myo) - float(p["gain_db"])
    return sig_r, sig_t, bands, e_myo, ref_db


def _gain_and_clutter(p: dict, rng: np.random.Generator, grid, geo, bands: list, sig_r: float,
                      sig_t: float, e_myo: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gain map (TGC and dropout, drawn first from ``rng``) and near-field clutter (drawn
    next), both on the polar grid [n_r, n_th].

    Returns
    -------
    gmap : ndarray [n_r, n_th]
        Amplitude gain, compensated so the mean echo level does not depend on the
        depth-dependent lateral PSF width.
    c_re, c_im : ndarray [n_r, n_th]
        Clutter IQ field scaled to the myocardium echo amplitude ``sqrt(e_myo)``.
    """
    gmap = gain_map(rng, grid, geo, float(p["dropout"]), tgc_points_db=p["tgc_points_db"],
                    dropout_sigma_mm=float(p["dropout_sigma_mm"]),
                    dropout_sigma_rad=float(p["dropout_sigma_rad"]), dropout_pos=p["dropout_pos"])
    # keep the mean echo level independent of the (depth-dependent) lateral PSF width
    sig_row = np.empty(grid.n_r)
    for a, b, sl in bands:
        sig_row[a:b] = sl
    gmap *= np.sqrt(sig_row / sig_t)[:, None]
    near_mm = 0.35 * geo.apex[1] + 14.0 if p["clutter_near_mm"] is None else float(p["clutter_near_mm"])
    c_re, c_im = clutter_field(rng, grid, near_mm=near_mm,
                               level_db=float(p["clutter_db"]), sig_r=sig_r, bands=bands,
                               band_mm=p["reverb_mm"], band_db=p["reverb_db"])
    c_re *= np.sqrt(e_myo)
    c_im *= np.sqrt(e_myo)
    return gmap, c_re, c_im


def _noise_bank(p: dict, rng: np.random.Generator, grid, geo, e_myo: float, n_frames: int,
                n_bank: int = 4) -> tuple[np.ndarray, ...]:
    """Thermal noise: its level per range row and a bank of fields drawn from ``rng``.

    Returns
    -------
    noise_std : ndarray float64 [n_r]
        Noise standard deviation per row (33 dB below myocardium times ``noise``, rising
        with depth).
    bank_re, bank_im : ndarray float32 [n_bank, n_r, n_th]
        Unit Gaussian noise fields.
    noise_k, noise_di, noise_dj : ndarray int [n_frames]
        Per frame: the bank field used and its row / column shift.
    """
    r_axis = np.arange(grid.n_r) * grid.dr
    noise_std = (np.sqrt(e_myo / 2) * 10 ** (-33.0 / 20.0) * float(p["noise"])
                 * (0.6 + 0.8 * r_axis / geo.depth)).astype(np.float64)
    bank_re = rng.standard_normal((n_bank, grid.n_r, grid.n_th), dtype=np.float32)
    bank_im = rng.standard_normal((n_bank, grid.n_r, grid.n_th), dtype=np.float32)
    noise_k = rng.integers(0, n_bank, size=n_frames)
    noise_di = rng.integers(0, grid.n_r, size=n_frames)
    noise_dj = rng.integers(0, grid.n_th, size=n_frames)
    return noise_std, bank_re, bank_im, noise_k, noise_di, noise_dj


def _make_echo(p: dict, rngs: list[np.random.Generator], rq: np.random.Generator, grid, geo,
               n_frames: int) -> _Echo:
    """The imaging chain of drawn parameters ``p``: PSF, levels, gain and clutter (drawn
    from ``rq``) and the noise bank (drawn from ``rngs[3]``)."""
    sig_r, sig_t, bands, e_myo, ref_db = _psf_and_level(p, grid)
    gmap, c_re, c_im = _gain_and_clutter(p, rq, grid, geo, bands, sig_r, sig_t, e_myo)
    noise = _noise_bank(p, rngs[3], grid, geo, e_myo, n_frames)
    return _Echo(4 * np.pi / float(p["wavelength_mm"]), sig_r, bands, ref_db,
                 float(p["dynamic_range_db"]), gmap, c_re, c_im, *noise)


def _make_scan_maps(p: dict, grid, geo) -> _ScanMaps:
    """Scan-conversion maps of the output canvas (``height`` x ``width`` px at ``mm_per_px``
    mm/px, transducer ``top_px`` below the top, apex column ``cx_px``), supersampled by
    ``render_scale`` when above 1: the pixel centres of both grids coincide."""
    H, W = int(p["height"]), int(p["width"])
    mmpp, top = float(p["mm_per_px"]), float(p["top_px"])
    cx = p["cx_px"]
    k_ss = max(1, int(p["render_scale"]))
    if k_ss == 1:
        mx, my, mask = scan_convert_maps(grid, H, W, mmpp, top, geo.depth, geo.half_angle, cx)
        return _ScanMaps(mx, my, mask, None, 1, H, W)
    # render finer, area-average down: the pixel centres of both grids coincide
    Hr, Wr = H * k_ss, W * k_ss
    cxr = None if cx is None else k_ss * (float(cx) + 0.5) - 0.5
    mx, my, mask_r = scan_convert_maps(grid, Hr, Wr, mmpp / k_ss, k_ss * (top + 0.5) - 0.5,
                                       geo.depth, geo.half_angle, cxr)
    _, _, mask = scan_convert_maps(grid, H, W, mmpp, top, geo.depth, geo.half_angle, cx)
    return _ScanMaps(mx, my, mask, mask_r, k_ss, H, W)


def _render_frame(t: int, grid, sc: _Scene, ec: _Echo, sm: _ScanMaps, frames: np.ndarray) -> None:
    """Render frame ``t`` into ``frames[t]`` (uint8 [H, W]): splat the scatterers and
    leaflets into an IQ field, apply the PSF, envelope-detect with noise, gain and clutter,
    log-compress, scan-convert (and area-average down when supersampled)."""
    iq = np.zeros((grid.n_r, grid.n_th, 2), dtype=np.float32)
    re, im = iq[..., 0], iq[..., 1]
    _splat_frame(sc.pos, sc.amp_re, sc.amp_im, sc.idx, sc.terms, sc.D[t], sc.R[t], sc.Hh[t],
                 sc.rig[t, 0], sc.rig[t, 1], *sc.e_s, *sc.e_n, ec.two_k, grid.dr, grid.dth,
                 grid.th0, re, im)
    xy = np.ascontiguousarray(sc.leaf.positions(sc.hinges[t], float(sc.opening[t])))
    _splat_points(xy, sc.leaf_re, sc.leaf_im, ec.two_k, grid.dr, grid.dth, grid.th0, re, im)
    iq = apply_psf(iq, ec.bands, ec.sig_r)
    re, im = iq[..., 0], iq[..., 1]
    pol = np.empty((grid.n_r, grid.n_th), dtype=np.uint8)
    _envelope_log(re, im, ec.bank_re, ec.bank_im, int(ec.noise_k[t]), int(ec.noise_di[t]),
                  int(ec.noise_dj[t]), ec.noise_std, ec.gmap, ec.c_re, ec.c_im, ec.ref_db,
                  ec.dr_db, pol)
    if sm.k_ss == 1:
        frames[t] = cv2.remap(pol, sm.mx, sm.my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                              borderValue=0) * sm.mask
    else:
        fine = cv2.remap(pol, sm.mx, sm.my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                         borderValue=0) * sm.mask_r
        frames[t] = cv2.resize(fine, (sm.width, sm.height), interpolation=cv2.INTER_AREA) * sm.mask


def _render_frames(grid, sc: _Scene, ec: _Echo, sm: _ScanMaps, n_frames: int,
                   threads: int) -> np.ndarray:
    """All frames, uint8 [T, H, W], rendered on ``threads`` threads (serially for one
    thread or fewer than four frames)."""
    frames = np.zeros((n_frames, sm.height, sm.width), dtype=np.uint8)

    def render(t: int) -> None:
        _render_frame(t, grid, sc, ec, sm, frames)

    if threads == 1 or n_frames < 4:
        for t in range(n_frames):
            render(t)
    else:
        with ThreadPoolExecutor(threads) as ex:
            list(ex.map(render, range(n_frames)))
    return frames


def _assemble(preset: str, p: dict, geo, model, cmap, frames: np.ndarray, mask: np.ndarray,
              times: np.ndarray) -> tuple[Clip, GroundTruth]:
    """Mirror the frames if asked, build the ground truth, draw the overlays, and wrap the
    frames ([T, H, W] uint8) into a :class:`Clip` with its metadata and warnings."""
    H, W = int(p["height"]), int(p["width"])
    fps, mmpp, top = float(p["fps"]), float(p["mm_per_px"]), float(p["top_px"])
    cx, seed, T = p["cx_px"], p["seed"], int(p["n_frames"])
    mirrored = bool(p["mirrored"])
    if mirrored:
        frames = np.ascontiguousarray(frames[:, :, ::-1])
        mask = np.ascontiguousarray(mask[:, ::-1])
    scan = ScanGeometry(height=H, width=W, mm_per_px=mmpp, top_px=top, mirrored=mirrored,
                        cx_px=None if cx is None else float(cx))
    gt = build_groundtruth(model, scan, times, fps, p, mask, cmap)
    if p["overlays"]:
        frames = draw_overlays(frames, gt.ecg, overlay_info(gt))
    clip = Clip(frames=frames, fps=fps, fps_source="synthetic", mm_per_px=mmpp, metadata={
        "source_kind": "synthetic", "vendor": "ttsfast.synth", "model": preset,
        "n_frames": T, "original_size": (H, W), "seed": seed, "mirrored": mirrored,
        "overlays": bool(p["overlays"]), "depth_mm": geo.depth,
    })
    if p["variety"] is not None:
        clip.metadata["variety"] = p["variety"]
    left, right = _margins(geo, model)
    if min(left, right) < 0.0:
        clip.warnings.append(warn("source_note", f"the LV myocardium leaves the sector by {-min(left, right):.1f} mm "
                                  "in this clip: the ground truth there holds motion the image cannot show"))
    return clip, gt


def generate(preset: str = "normal", seed: int = 0, **overrides) -> tuple[Clip, GroundTruth]:
    """Render a synthetic apical-4-chamber B-mode clip with known motion.

    Parameters
    ----------
    preset : str
        ``"normal"``, ``"tts"`` or ``"stemi_anterior"`` (see :data:`PRESETS`).
    seed : int
        Random seed; output is identical for the same preset, seed and overrides.
    **overrides
        Clip settings: ``n_frames`` (default: three full beats after the first
        end-diastole), ``fps`` (50), ``heart_rate_bpm`` (alias ``hr``),
        ``height`` (256), ``width`` (352), ``mm_per_px`` (0.9), ``mirrored`` (False),
        ``overlays`` (False), ``noise`` (thermal noise factor, 1 = typical),
        ``start_phase`` (fraction of a cycle before the first end-diastole), ``threads``,
        ``sector_margin_mm`` (3: the LV is framed this far inside the sector, see
        :func:`fit_in_sector`; None keeps the drawn geometry); or any preset parameter (``strain``, ``radial_mm``, ``depth_mm``, ``dropout``,
        ``clutter_db``, ``gain_db``, ...).

    Returns
    -------
    clip : Clip
        uint8 frames [T, H, W], fps, ``fps_source="synthetic"``, ``mm_per_px``.
    gt : GroundTruth
        Landmarks, wall points, strain, true flow and measures.
    """
    p = draw_params(preset, seed, **overrides)
    seed = p["seed"]
    rngs = _rngs(preset, seed)
    geo, model = model_for(p, seed)
    T = _frame_count(p, model, float(p["fps"]))
    cmap = class_map(geo)
    grid = make_grid(geo.depth, geo.half_angle)
    times = np.arange(T) / float(p["fps"])
    scene = _make_scene(p, rngs[2], geo, cmap, model, times)
    # gain and clutter draw from a fresh copy of the fourth stream; the noise bank from rngs[3]
    echo = _make_echo(p, rngs, _rngs(preset, seed)[3], grid, geo, T)
    maps = _make_scan_maps(p, grid, geo)
    frames = _render_frames(grid, scene, echo, maps, T, max(1, int(p["threads"])))
    return _assemble(preset, p, geo, model, cmap, frames, maps.mask, times)


def overlay_info(gt: GroundTruth) -> dict:
    """Settings :func:`draw_overlays` needs, from a ground truth."""
    return {"fps": gt.fps, "depth_mm": gt.model.geo.depth, "hr": gt.heart_rate_bpm,
            "top_px": gt.scan.top_px, "mm_per_px": gt.mm_per_px, "mirrored": gt.mirrored}


def to_rgb(clip: Clip, gt: GroundTruth) -> np.ndarray:
    """RGB frames [T, H, W, 3] uint8 of a clip with coloured scanner overlays (green ECG,
    white text, yellow markers), for exercising readers and overlay removal. Draws on the
    clip's grey frames (if the clip already has grey overlays they stay underneath)."""
    return draw_overlays(clip.frames, gt.ecg, overlay_info(gt), rgb=True)
