"""Opt-in variety of the synthetic generator: scanner looks, framings and hearts beyond the
presets' single "vendor look".

``generate(preset, seed, variety="wide")`` draws, from a random stream of its own (so that a
seed's anatomy and motion draws stay those of ``generate(preset, seed)`` where the variety
does not replace them), everything that differs between real scanner clips:

===================  ===========================================================================
imaging              speckle size (``axial_sigma_mm`` 0.45-1.0, ``lateral_sigma_rad``
                     0.010-0.024, ``min_lateral_mm`` 0.9-1.8, ``wavelength_mm`` 0.45-0.9),
                     ``gain_db`` -8..7, time-gain compensation (``tgc_points_db``: 5 gains
                     SD 4 dB, clipped to +-9 dB, at equal depths), ``dynamic_range_db`` 40-70,
                     ``noise`` 0.3-3.5 (log-uniform), ``texture_db`` 3-9, ``anisotropy_db``
                     2-14, faint blood echo ("smoke", ``blood_db`` -36..-26) in 35 %
clutter, dropout     near-field haze ``clutter_db`` -20..+2 fading by ``clutter_near_mm`` 20-40
                     mm; a reverberation band over the apex (``reverb_db`` -12..0, at the apex
                     depth +-6 mm) in 50 %; a lateral-wall dropout, in 70 % a long strong band
                     (``dropout`` 0.6-1, ``dropout_sigma_mm`` 15-35 along the beam,
                     ``dropout_sigma_rad`` 0.04-0.09 across), otherwise a patch (0-0.6)
sector               ``half_angle_deg`` 30-45 (widened only where the LV would not fit),
                     ``depth_mm`` 120-240 (at least 20 mm below the annulus), ``apex_depth_mm``
                     18-50, ``apex_x_mm`` -5..18, ``tilt_deg`` 0-28
heart                typical 60 % (length x0.9-1.12, half-width x0.85-1.2, apex shape
                     ``lv_apex_frac`` 0.55-0.68), dilated 20 % (length 95-115 mm, half-width
                     26-34 mm, round apex 0.42-0.55, wall 6.5-9 mm, strains and radial motion
                     x0.3-0.6, S'/E' x0.55-0.85: low EF), foreshortened 20 % (length x0.70-0.85,
                     round apex 0.40-0.52); ``rv_scale`` 0.6-1.6, ``la_length_mm`` 30-66;
                     bright valve leaflets (``leaflet_db`` -6..8); papillary muscles in 50 %
                     (lateral; a septal one in 30 % of those), ``papillary_db`` -8..2
display, output      mirrored 35 %; framing: ``sector`` 40 % (whole fan on a 256x352, 300x400,
                     240x320, 224x224, 208x256 or 128x160 canvas, 0-20 % slack), ``zoom`` 35 %
                     (the LV length fills 45-80 % of the canvas height, fan apex and edges may be
                     cropped, CAMUS / region-of-interest crops), ``echonet`` 25 % (the fan cropped
                     to a square and resized to 112x112, 50 fps); frame rate 30, 40, 50, 55 or
                     60 fps (echonet: 50); overlays in 30 % of canvases >= 192 px high
===================  ===========================================================================

Frames whose pixels are coarser than 0.6 mm are rendered supersampled (``render_scale``) and
area-averaged down, as a scanner image resized to a small grid is. The ground truth follows
every choice: landmarks and wall points in the output pixels (``ScanGeometry.cx_px`` holds the
fan apex column of a cropped frame), ``mm_per_px`` of the output, the true motion.

Explicit keyword arguments always win over the variety draws; passing any of ``height``,
``width``, ``mm_per_px``, ``top_px`` or ``cx_px`` keeps the classic framing: the fan centred,
the whole sector fitted into the canvas unless ``mm_per_px`` is given too.
"""
from __future__ import annotations

import zlib

import numpy as np

#: Accepted values of ``variety=`` (None or "none": the presets' own look, bit for bit).
VARIETY_MODES = ("wide",)

#: Output grids (height, width) of the ``sector`` and ``zoom`` framings.
SECTOR_GRIDS = ((256, 352), (300, 400), (240, 320), (224, 224), (208, 256), (128, 160))
ZOOM_GRIDS = ((256, 352), (240, 320), (256, 256), (224, 224), (128, 160))

#: Keys that pin the framing: when the caller passes any, the variety keeps the classic one.
FRAMING_KEYS = ("height", "width", "mm_per_px", "top_px", "cx_px")


def check_variety(variety) -> str | None:
    """Normalise a ``variety=`` argument: None / "none" -> None, else one of VARIETY_MODES."""
    from ..errors import InputError

    if variety is None or (isinstance(variety, str) and variety.lower() in ("none", "default", "")):
        return None
    if isinstance(variety, str) and variety.lower() in VARIETY_MODES:
        return variety.lower()
    raise InputError(f"unknown synth variety {variety!r}; choose None or one of {list(VARIETY_MODES)}")


def variety_rng(preset: str, seed: int, mode: str = "wide") -> np.random.Generator:
    """The variety's own random stream of (preset, seed): independent of the preset's."""
    ss = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, zlib.crc32(preset.encode()),
                                 zlib.crc32(f"variety:{mode}".encode())])
    return np.random.default_rng(ss)


def _scale(v, f: float) -> list:
    return (np.asarray(v, dtype=np.float64) * f).tolist()


def _draw_imaging(p: dict, rng: np.random.Generator) -> None:
    """Draw the speckle size (mm, rad), gain, TGC and dynamic range (dB), noise factor,
    texture and anisotropy (dB) and the faint blood echo (dB, in 35 %) into ``p``."""
    u = rng.uniform
    p["axial_sigma_mm"] = u(0.45, 1.0)
    p["lateral_sigma_rad"] = u(0.010, 0.024)
    p["min_lateral_mm"] = u(0.9, 1.8)
    p["wavelength_mm"] = u(0.45, 0.9)
    p["gain_db"] = u(-8.0, 7.0)
    p["tgc_points_db"] = np.clip(rng.normal(0.0, 4.0, 5), -9.0, 9.0).tolist()
    p["dynamic_range_db"] = u(40.0, 70.0)
    p["noise"] = float(np.exp(u(np.log(0.3), np.log(3.5))))
    p["texture_db"] = u(3.0, 9.0)
    p["anisotropy_db"] = u(2.0, 14.0)
    p["blood_db"] = u(-36.0, -26.0) if rng.random() < 0.35 else None


def _draw_clutter_dropout(p: dict, rng: np.random.Generator, info: dict) -> None:
    """Draw the near-field haze (dB, mm), the reverberation band (dB; in 50 %, its depth
    offset from the apex in mm goes to ``info``) and the lateral-wall dropout (a band in
    70 %, else a patch; its kind goes to ``info``) into ``p``."""
    u = rng.uniform
    p["clutter_db"] = u(-20.0, 2.0)
    p["clutter_near_mm"] = u(20.0, 40.0)
    reverb = rng.random() < 0.5
    reverb_db, reverb_off = u(-12.0, 0.0), u(-6.0, 6.0)
    p["reverb_db"] = reverb_db if reverb else None
    info["reverb_offset_mm"] = reverb_off
    if rng.random() < 0.7:
        p["dropout"] = u(0.6, 1.0)
        p["dropout_sigma_mm"] = u(15.0, 35.0)
        p["dropout_sigma_rad"] = u(0.04, 0.09)
        info["dropout"] = "band"
    else:
        p["dropout"] = u(0.0, 0.6)
        p["dropout_sigma_mm"], p["dropout_sigma_rad"] = 12.0, 0.05
        info["dropout"] = "patch"
    p["dropout_pos"] = u(0.3, 0.7)


def _draw_sector(p: dict, rng: np.random.Generator) -> None:
    """Draw the sector half angle (deg), depth (mm), apex position (mm) and LV tilt (deg)
    into ``p`` (the framing in :func:`finish_variety` may still change them)."""
    u = rng.uniform
    p["half_angle_deg"] = u(30.0, 45.0)
    p["depth_mm"] = u(120.0, 240.0)
    p["apex_depth_mm"] = u(18.0, 50.0)
    p["apex_x_mm"] = u(-5.0, 18.0)
    p["tilt_deg"] = u(0.0, 28.0)


def _draw_heart(p: dict, rng: np.random.Generator, info: dict) -> None:
    """Draw the kind of heart (typical 60 %, dilated 20 %, foreshortened 20 %; into
    ``info``) and its LV and LA size (mm), apex shape and, when dilated, its reduced
    function, into ``p``."""
    u = rng.uniform
    kind = rng.choice(["typical", "dilated", "foreshortened"], p=[0.6, 0.2, 0.2])
    info["heart"] = str(kind)
    if kind == "typical":
        p["lv_length_mm"] = float(p["lv_length_mm"]) * u(0.9, 1.12)
        p["lv_halfwidth_mm"] = float(p["lv_halfwidth_mm"]) * u(0.85, 1.2)
        p["lv_apex_frac"] = u(0.55, 0.68)
        p["la_length_mm"] = u(30.0, 60.0)
    elif kind == "dilated":
        p["lv_length_mm"] = u(95.0, 115.0)
        p["lv_halfwidth_mm"] = u(26.0, 34.0)
        p["lv_apex_frac"] = u(0.42, 0.55)
        p["wall_mm"] = u(6.5, 9.0)
        f = u(0.3, 0.6)
        fv = u(0.55, 0.85)
        info["function_scale"] = f
        p["strain_target_pct"] = _scale(p["strain_target_pct"], f)
        p["radial_mm"] = _scale(p["radial_mm"], f)
        p["thickening"] = _scale(p["thickening"], f)
        p["s_prime_target_cm_s"] = _scale(p["s_prime_target_cm_s"], fv)
        p["e_prime_target_cm_s"] = _scale(p["e_prime_target_cm_s"], fv)
        p["excursion_mm"], p["e_dur_s"] = None, None
        p["la_length_mm"] = u(45.0, 66.0)
    else:  # foreshortened: the plane misses the true apex: a shorter LV with a blunt tip
        p["lv_length_mm"] = float(p["lv_length_mm"]) * u(0.70, 0.85)
        p["lv_apex_frac"] = u(0.40, 0.52)
        p["la_length_mm"] = u(30.0, 60.0)


def _draw_valves_papillary(p: dict, rng: np.random.Generator) -> None:
    """Draw the RV size factor, the leaflet level (dB) and the papillary muscles (in 50 %
    a lateral one, in 30 % of those also a septal one; ``[side, s_frac, length_mm,
    width_mm]``) with their level (dB) into ``p``."""
    u = rng.uniform
    p["rv_scale"] = u(0.6, 1.6)
    p["leaflet_db"] = u(-6.0, 8.0)
    pap = []
    if rng.random() < 0.5:
        pap.append([1.0, u(0.45, 0.65), u(14.0, 24.0), u(6.0, 10.0)])
        if rng.random() < 0.3:
            pap.append([-1.0, u(0.5, 0.7), u(10.0, 18.0), u(5.0, 8.0)])
    p["papillary"] = pap or None
    p["papillary_db"] = u(-8.0, 2.0) if pap else None


def _draw_display(p: dict, rng: np.random.Generator, info: dict) -> None:
    """Draw mirroring, the framing (``sector``/``zoom``/``echonet``; with its fill, jitter
    and top fraction into ``info``), the output grid (px), frame rate (frames/s), a
    provisional ``mm_per_px`` and the overlays into ``p``."""
    u = rng.uniform
    p["mirrored"] = bool(rng.random() < 0.35)
    mode = str(rng.choice(["sector", "zoom", "echonet"], p=[0.4, 0.35, 0.25]))
    info["framing"] = mode
    if mode == "echonet":
        H, W = 112, 112
        p["fps"] = 50.0
        info["fill"] = u(0.8, 1.0)
    else:
        grids = SECTOR_GRIDS if mode == "sector" else ZOOM_GRIDS
        H, W = grids[int(rng.integers(len(grids)))]
        p["fps"] = float(rng.choice([30.0, 40.0, 50.0, 55.0, 60.0]))
        info["fill"] = u(1.0, 1.2) if mode == "sector" else u(0.45, 0.8)
    info["jitter"] = rng.uniform(-1.0, 1.0, 2).tolist()
    info["top_frac"] = u(0.0, 1.0)
    p["height"], p["width"] = H, W
    p["mm_per_px"] = 1.1 * float(p["depth_mm"]) / H  # provisional: set by finish_variety
    p["overlays"] = bool(H >= 192 and rng.random() < 0.3)


def apply_variety(p: dict, rng: np.random.Generator) -> dict:
    """Draw the variety (in place) before the heart is framed in the sector.

    Returns the summary of the categorical draws (also stored as ``p["variety_info"]``); the
    framing is finished by :func:`finish_variety` once the heart is placed. The draws come
    from ``rng`` in a fixed order (imaging, clutter and dropout, sector, heart, valves and
    papillary muscles, display): changing it changes every variety clip."""
    info: dict = {}
    _draw_imaging(p, rng)
    _draw_clutter_dropout(p, rng, info)
    _draw_sector(p, rng)
    _draw_heart(p, rng, info)
    _draw_valves_papillary(p, rng)
    _draw_display(p, rng, info)
    p["variety_info"] = info
    return info


def _lv_points(p: dict, seed: int) -> tuple[np.ndarray, float, float]:
    """LV mid-wall points (mm, probe frame) over one cycle, the wall thickness and the LV
    length (mm)."""
    from .clipgen import model_for

    geo, model = model_for(p, seed)
    pts = np.concatenate([geo.midwall["inferoseptal"], geo.midwall["anterolateral"]])
    t = model.timing.t0 + np.linspace(0.0, model.timing.period, 16)
    cur = model.displace(pts, t).reshape(-1, 2)
    return cur, geo.wall, geo.length


def finish_variety(p: dict, seed: int, pinned: set) -> None:
    """Place what depends on where the heart ended up (in place): sector depth, the
    reverberation band, and the framing (``mm_per_px``, ``top_px``, ``cx_px``,
    ``render_scale``) unless the caller pinned the framing (``pinned`` holds the names of the
    explicit keyword arguments)."""
    info = p["variety_info"]
    pts, wall, lv_len = _lv_points(p, seed)
    ann_y = float(pts[:, 1].max()) + 0.5 * wall
    if "depth_mm" not in pinned:
        p["depth_mm"] = float(max(float(p["depth_mm"]), ann_y + 20.0))
    if p.get("reverb_db") is not None and "reverb_mm" not in pinned:
        p["reverb_mm"] = float(p["apex_depth_mm"]) + float(info["reverb_offset_mm"])
    H, W = int(p["height"]), int(p["width"])
    depth = float(p["depth_mm"])
    ha = np.deg2rad(float(p["half_angle_deg"]))
    mode = info["framing"]
    if pinned & set(FRAMING_KEYS):  # classic framing: the whole fan, centred
        if "mm_per_px" not in pinned:
            top = float(p["top_px"])
            p["mm_per_px"] = float(max(depth / (H - top - 2.0), 2.0 * depth * np.sin(ha) / (W - 4.0)))
        if "cx_px" not in pinned:
            p["cx_px"] = None
        if "render_scale" not in pinned:
            p["render_scale"] = int(np.clip(np.ceil(float(p["mm_per_px"]) / 0.6 - 1e-9), 1, 4))
        return
    jx, jy = info["jitter"]
    lo = pts.min(axis=0) - (0.5 * wall + 4.0)  # LV box (mm) with the wall and a margin
    hi = pts.max(axis=0) + (0.5 * wall + 4.0)
    if mode == "sector":
        top = 2.0 + 12.0 * info["top_frac"] * H / 256.0
        mmpp = max(depth / (H - top - 2.0), 2.0 * depth * np.sin(ha) / (W - 4.0)) * info["fill"]
        cx = None
    elif mode == "echonet":
        side = info["fill"] * depth
        side = max(side, hi[1] + 4.0, 2.0 * max(abs(lo[0]), abs(hi[0])) + 8.0)
        mmpp = side / W
        top = -2.0 + 5.0 * info["top_frac"]
        cx = None
    else:  # zoom: the LV length spans `fill` of the canvas height
        box = hi - lo
        mmpp = max(lv_len / (info["fill"] * H), box[0] / (0.92 * W), box[1] / (0.92 * H))
        cw, ch = W * mmpp, H * mmpp  # canvas in mm
        slack = np.array([cw - box[0], ch - box[1]])
        c = 0.5 * (lo + hi) + 0.4 * slack * np.array([jx, jy])
        # canvas corner (mm of pixel (0, 0)): never above the transducer by more than 5 mm
        x0 = c[0] - 0.5 * (W - 1) * mmpp
        y0 = max(c[1] - 0.5 * (H - 1) * mmpp, -5.0 - 12.0 * info["top_frac"])
        y0 = min(y0, lo[1])  # keep the apex inside
        top = -y0 / mmpp
        cx = -x0 / mmpp
    p["mm_per_px"] = float(mmpp)
    p["top_px"] = float(top)
    p["cx_px"] = None if cx is None else float(cx)
    if "render_scale" not in pinned:
        p["render_scale"] = int(np.clip(np.ceil(mmpp / 0.6 - 1e-9), 1, 4))
