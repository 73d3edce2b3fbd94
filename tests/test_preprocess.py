"""preprocess: sector found, overlays excluded, letterboxed onto the grid with exact mappings.

Coordinates of overlays on the real clips were read off the frames by eye (frames written to
PNG and viewed), original pixels, x right / y down."""
from __future__ import annotations

import numpy as np
import pydicom.examples
import pytest

from ttsfast import Clip, Prepared, preprocess, read_clip
from ttsfast.preprocess import SectorGeometry

_CACHE: dict = {}


def prepared(real_clip, name):
    if name not in _CACHE:
        src = pydicom.examples.get_path("ybr_color") if name == "ybr" else real_clip(name)
        clip = read_clip(src)
        _CACHE[name] = (clip, preprocess(clip))
    return _CACHE[name]


def cover(mask, x0, y0, x1, y1):
    return float(mask[y0:y1, x0:x1].mean())


def fan_near_apex(p: Prepared, r0, r1):
    h, w = p.mask_original.shape
    ys, xs = np.mgrid[0:h, 0:w]
    r = np.hypot(xs - p.sector.apex[0], ys - p.sector.apex[1])
    return p.sector.mask((h, w)) & (r > r0) & (r < r1)


# ---------------------------------------------------------------------------- synthetic truth
def synthetic_fan_clip(t=12, h=300, w=400, apex=(200.0, 20.0), half=35.0, depth=250.0):
    """RGB clip: speckle changing every frame inside a known fan, static white text outside,
    a green ECG sweep below, a static white caliper cross inside the fan."""
    rng = np.random.default_rng(3)
    geo = SectorGeometry(apex=apex, half_angle_deg=half, axis_angle_deg=0.0, depth_px=depth)
    fan = geo.mask((h, w))
    frames = np.zeros((t, h, w, 3), np.uint8)
    for i in range(t):
        g = rng.integers(20, 200, (h, w), dtype=np.uint8) * fan
        frames[i] = g[..., None]
        frames[i, 10:25, 10:60] = 255  # static text block, top left
        x = 40 + 25 * i  # ECG sweep: a green segment moving right
        frames[i, 282:286, 30:x] = (0, 230, 0)
    # caliper cross at (230, 150) inside the fan
    frames[:, 150, 222:239] = 255
    frames[:, 142:159, 230] = 255
    return frames, geo, fan


def test_synthetic_fan_geometry_mask_and_overlays():
    frames, geo, fan = synthetic_fan_clip()
    clip = read_clip(frames, fps=50)
    p = preprocess(clip)
    assert p.sector is not None
    assert p.sector.apex[0] == pytest.approx(200, abs=4)
    assert p.sector.apex[1] == pytest.approx(20, abs=6)
    assert p.sector.half_angle_deg == pytest.approx(35, abs=2)
    assert p.sector.depth_px == pytest.approx(250, rel=0.03)
    m = p.mask_original
    iou = (m & fan).sum() / (m | fan).sum()
    assert iou > 0.95
    assert not m[10:25, 10:60].any()  # static text
    assert not m[280:290, 30:340].any()  # ECG sweep
    assert not m[148:153, 222:239].any() and not m[142:159, 229:232].any()  # caliper
    assert p.overlay_original[150, 225] and p.overlay_original[145, 230]
    # caliper inpainted on the grid: no saturated static line left there
    gx, gy = np.rint(p.to_grid(np.array([230.0, 150.0]))).astype(int)
    assert p.frames[:, gy, gx].std() > 5


def _overlaps(lo, hi, n):
    """Overlap of [lo, hi] with each pixel k's span [k-0.5, k+0.5] (pixel-centre coords)."""
    k = np.arange(n)
    return np.clip(np.minimum(hi, k + 0.5) - np.maximum(lo, k - 0.5), 0, None)


def test_grid_mapping_is_exact_affine_and_square():
    frames, _, _ = synthetic_fan_clip()
    grey = read_clip(frames).frames
    clip = Clip(grey.copy())
    p = preprocess(clip, grid=(128, 160), antialias=False, remove_overlays=False)
    assert p.frames.shape == (12, 128, 160) and p.mask.shape == (128, 160)
    pts = np.random.default_rng(0).uniform(0, 300, (5, 7, 2))
    np.testing.assert_allclose(p.to_original(p.to_grid(pts)), pts, atol=1e-9)
    # each grid pixel inside the mask is the bilinear sample of the original at to_original()
    g = grey[3].astype(float)
    gys, gxs = np.nonzero(p.mask)
    for gx, gy in list(zip(gxs, gys))[:: max(1, len(gxs) // 200)]:
        ox, oy = p.to_original(np.array([gx, gy], float))
        x0, y0 = int(np.floor(ox)), int(np.floor(oy))
        fx, fy = ox - x0, oy - y0
        ref = ((1 - fy) * ((1 - fx) * g[y0, x0] + fx * g[y0, x0 + 1])
               + fy * ((1 - fx) * g[y0 + 1, x0] + fx * g[y0 + 1, x0 + 1]))
        assert abs(int(p.frames[3, gy, gx]) - ref) <= 1.0
    # with antialiasing (scale ~2), a grid pixel is the mean of its footprint
    pa = preprocess(clip, grid=(128, 160), remove_overlays=False)
    assert pa.scale > 1.5
    gys, gxs = np.nonzero(pa.mask)
    for gx, gy in list(zip(gxs, gys))[:: max(1, len(gxs) // 50)]:
        lo = pa.to_original(np.array([gx - 0.5, gy - 0.5]))
        hi = pa.to_original(np.array([gx + 0.5, gy + 0.5]))
        wx = _overlaps(lo[0], hi[0], g.shape[1])
        wy = _overlaps(lo[1], hi[1], g.shape[0])
        ref = (wy[:, None] * wx[None, :] * g).sum() / (wy.sum() * wx.sum())
        assert abs(int(pa.frames[3, gy, gx]) - ref) <= 1.0
    # letterbox: one scale, the sector's box fits inside the grid
    ys, xs = np.nonzero(p.mask_original)
    corners = p.to_grid(np.array([[xs.min(), ys.min()], [xs.max(), ys.max()]], float))
    assert (corners >= -1).all() and corners[1, 0] <= 160 and corners[1, 1] <= 128


def test_area_resize_matches_opencv_inter_area():
    from ttsfast._nativelib import native

    import cv2

    f = np.random.default_rng(2).integers(0, 256, (2, 998, 1332), dtype=np.uint8)
    ours = native.crop_resize_area(f, 0, 0, 1332, 998, 263, 352)
    for i in range(2):
        ref = cv2.resize(f[i], (352, 263), interpolation=cv2.INTER_AREA)
        assert np.abs(ours[i].astype(int) - ref).max() <= 1
    # outside the source is 0, a constant stays constant at any fractional box
    c = np.full((1, 97, 131), 77, np.uint8)
    assert set(np.unique(native.crop_resize_area(c, 3.3, 2.7, 120, 90, 37, 51))) == {77}
    z = native.crop_resize_area(np.full((1, 10, 10), 100, np.uint8), -10, -10, 30, 30, 6, 6)[0]
    assert z[0, 0] == 0 and z[2, 2] == 100
    with pytest.raises(ValueError):
        native.crop_resize_area(f, 0, 0, -1, 10, 8, 8)
    with pytest.raises(ValueError):
        native.crop_resize_area(f.astype(np.float32), 0, 0, 10, 10, 8, 8)


def test_mm_per_px_scales_with_grid():
    frames, _, _ = synthetic_fan_clip()
    clip = Clip(read_clip(frames).frames, mm_per_px=0.3)
    p = preprocess(clip)
    assert p.mm_per_px == pytest.approx(0.3 * p.scale)
    assert preprocess(read_clip(frames)).mm_per_px is None


# ---------------------------------------------------------------------------- real clips
def test_ge_sector_mask_and_overlays(real_clip):
    clip, p = prepared(real_clip, "ctrl_a4c_ge_55hz.mp4")
    m = p.mask_original
    assert p.frames.shape == (110, 256, 352) and p.frames.dtype == np.uint8
    assert p.sector is not None
    assert p.sector.apex == pytest.approx((668, 95), abs=8)  # tip of the fan seen at (668, 95)
    assert cover(m, 503, 335, 860, 860) > 0.95  # LV, septum, both atria
    assert cover(m, 650, 168, 692, 210) > 0.95  # near the apex
    assert m[fan_near_apex(p, 40, 120)].mean() > 0.9
    assert cover(m, 1220, 940, 1320, 975) == 0  # "91 bpm"
    assert cover(m, 15, 35, 180, 300) == 0  # "UIHC ECHO / X5-1 / 55Hz / 18cm / 2D ..." text
    assert cover(m, 1255, 150, 1285, 420) == 0  # grey-scale bar
    # probe marker (dot + cup icon) at the apex, x 650..690, y 95..130
    marker = clip.frames[0][95:130, 650:690] > 150
    assert marker.sum() > 30 and not m[95:130, 650:690][marker].any()
    assert not (m & clip.overlay_mask).any()  # green ECG sweep (x 80..708, y 900..970)
    # depth-scale dots on the right fan edge (white, static), and beyond the fan
    f0 = clip.frames[0]
    for x, y in [(734, 174), (766, 207), (797, 238), (1205, 670)]:
        dot = f0[y - 4:y + 5, x - 4:x + 5] > 200
        assert dot.sum() >= 4, (x, y)
        assert not m[y - 4:y + 5, x - 4:x + 5][dot].any(), (x, y)
    assert (p.frames[:, ~p.mask] == 0).mean() > 0.97  # outside the mask is blanked


def test_philips_sector_calipers_ecg(real_clip):
    clip, p = prepared(real_clip, "tts_a4c_philips.mp4")
    m = p.mask_original
    assert p.sector is not None
    assert p.sector.apex == pytest.approx((797, 110), abs=6)  # tip of the fan seen at (797, 111)
    assert p.sector.half_angle_deg == pytest.approx(30, abs=3)
    assert cover(m, 700, 300, 900, 800) > 0.95
    assert m[fan_near_apex(p, 20, 80)].mean() > 0.9
    assert cover(m, 1291, 910, 1351, 970) == 0  # "83 BPM"
    assert cover(m, 300, 900, 850, 1000) < 0.005  # green ECG + sweep cursor
    assert not (m & clip.overlay_mask).any()
    assert cover(m, 850, 105, 885, 140) == 0  # blue "P" marker
    # caliper crosses at the fan edges: "x" strokes at (556..566, 420..432), (989..998, 442..452)
    f0 = clip.frames[0]
    for x0, y0, x1, y1 in [(556, 420, 567, 433), (988, 440, 999, 452)]:
        bright = f0[y0:y1, x0:x1] > 150
        assert bright.sum() >= 10
        assert not m[y0:y1, x0:x1][bright].any()


def test_roi_without_fan_covers_the_moving_image(real_clip):
    clip, p = prepared(real_clip, "stemi_a4c_roi_cycle32.mp4")
    m = p.mask_original
    assert m.mean() > 0.7
    assert cover(m, 30, 30, 130, 120) > 0.98
    assert p.frames.shape == (32, 256, 352)


def test_cleaned_gif_sector(real_clip):
    clip, p = prepared(real_clip, "stemi_a4c_cleaned16.gif")
    m = p.mask_original
    assert cover(m, 180, 80, 300, 440) > 0.98
    assert cover(m, 0, 0, 60, 60) == 0 and cover(m, 420, 0, 480, 60) == 0  # black corners


def test_ybr_color_example(real_clip):
    clip, p = prepared(real_clip, "ybr")
    m = p.mask_original
    assert cover(m, 120, 60, 220, 190) > 0.98
    assert not m[17:24, 187:193].any()  # green dot (outside the fan)
    assert not (m & clip.overlay_mask).any()
    assert not m[0:12, 0:40].any() and not m[225:, :].any()  # "PLA" text, bottom toolbar
    assert not m[:, 300:].any()  # right-hand column of text and depth marks
    # the fitted fan lies inside the DICOM ultrasound region once halved: (42,15.5)-(297.5,207)
    ys, xs = np.nonzero(m)
    assert xs.min() >= 41 and xs.max() <= 298 and ys.min() >= 0 and ys.max() <= 207
    assert p.mm_per_px == pytest.approx(1.0209941 * p.scale, rel=1e-6)
    assert p.fps == pytest.approx(30.0003, rel=1e-4) and p.fps_source == "dicom_frame_time"


def test_custom_grid_and_given_mask(real_clip):
    clip = read_clip(real_clip("stemi_a4c_cleaned16.gif"))
    given = np.zeros(clip.shape, bool)
    given[100:300, 100:400] = True
    p = preprocess(clip, grid=(64, 96), mask=given)
    assert p.frames.shape == (16, 64, 96)
    # 300x200 box plus a 1% (of 300 px) margin on each side, letterboxed on a 96x64 grid
    pad = 0.01 * 300
    assert p.scale == pytest.approx(max((300 + 2 * pad) / 96, (200 + 2 * pad) / 64), rel=1e-9)
    np.testing.assert_allclose(p.to_grid(p.to_original([[10.0, 20.0]])), [[10.0, 20.0]])


@pytest.mark.parametrize("rgb", [False, True], ids=["grey-overlays", "coloured-overlays"])
def test_synthetic_scanner_clip_sector_matches_ground_truth(rgb):
    from ttsfast.synth import generate, to_rgb

    clip, gt = generate("normal", 0, overlays=True, n_frames=24)
    src = read_clip(to_rgb(clip, gt), fps=clip.fps) if rgb else clip
    p = preprocess(src)
    m, truth = p.mask_original, gt.sector_mask
    assert (m & truth).sum() / (m | truth).sum() > 0.95
    assert (m & ~truth).sum() < 0.01 * truth.sum()
    # fan of the generator: apex at ((W-1)/2, top_px), its half angle, depth_mm / mm_per_px
    assert p.sector is not None
    assert p.sector.half_angle_deg == pytest.approx(gt.params["half_angle_deg"], abs=1.5)
    assert p.sector.apex == pytest.approx(((352 - 1) / 2, gt.scan.top_px), abs=2.0)
    assert p.sector.depth_px == pytest.approx(gt.params["depth_mm"] / gt.mm_per_px, rel=0.02)
    assert p.mm_per_px == (None if rgb else pytest.approx(0.9 * p.scale))
    # burnt-in text (top corners) and the ECG strip (bottom rows) stay out
    assert not m[:50, :80].any() and not m[:20, 290:].any() and not m[225:, :].any()


def test_cli_probe_json(real_clip, capsys):
    import json

    from ttsfast.cli import main

    assert main(["probe", str(real_clip("stemi_a4c_cleaned16.gif")), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_frames"] == 16 and out["fps_source"] == "container"
    assert out["sector"] is not None and out["grid_hw"] == [256, 352]
    assert main(["probe", "/nonexistent/clip.mp4"]) == 2
    assert "not found" in capsys.readouterr().err


def test_still_clip_uses_the_whole_frame_with_a_warning():
    p = preprocess(read_clip(np.full((4, 40, 60), 90, np.uint8)), grid=(32, 48))
    assert p.mask.mean() > 0.9 and p.sector is None
    assert any(w.code == "sector_still" for w in p.warnings)


def test_resize_kernels_survive_random_and_absurd_boxes():
    from ttsfast._nativelib import native

    rng = np.random.default_rng(11)
    frames = rng.integers(0, 256, (2, 23, 31), dtype=np.uint8)
    specials = [(-1e7, 0, 1e7, 1e7), (1e7, 1e7, 1, 1), (0, 0, 1e-9, 1e-9), (5, 5, 1e7, 3)]
    boxes = specials + [tuple(rng.uniform(-100, 100, 2)) + tuple(rng.uniform(0.1, 300, 2))
                        for _ in range(100)]
    for fn in (native.crop_resize, native.crop_resize_area):
        for x0, y0, w, h in boxes:
            oh, ow = (int(v) for v in rng.integers(1, 40, 2))
            out = fn(frames, x0, y0, w, h, oh, ow)
            assert out.shape == (2, oh, ow) and out.dtype == np.uint8
        for bad in [(np.nan, 0, 10, 10), (0, 0, 0, 10), (0, 0, 10, -1), (2e7, 0, 10, 10),
                    (0, 0, np.inf, 10)]:
            with pytest.raises(ValueError):
                fn(frames, *bad, 8, 8)
        with pytest.raises(ValueError):
            fn(frames, 0, 0, 10, 10, 0, 8)
        with pytest.raises(ValueError):
            fn(frames[:, :, ::2], 0, 0, 10, 10, 8, 8)


def test_tinted_grey_map_is_not_taken_for_overlays():
    frames, geo, fan = synthetic_fan_clip()
    tint = np.array([1.0, 0.8, 0.55])  # sepia-like B-mode map: every bright pixel is "coloured"
    sepia = np.clip(frames.astype(np.float32) * tint, 0, 255).astype(np.uint8)
    p = preprocess(read_clip(sepia))
    assert any(w.code == "colour_not_used" for w in p.warnings)
    m = p.mask_original
    assert (m & fan).sum() / (m | fan).sum() > 0.93
