"""read_clip: DICOM, video, GIF, PNG folders, arrays; frame rates, calibration, metadata, memory."""
from __future__ import annotations

import tracemalloc

import cv2
import numpy as np
import pydicom
import pydicom.examples
import pytest
from pydicom.pixels import iter_pixels

import ttsfast
from ttsfast import InputError, read_clip
from ttsfast.clip import FPS_SOURCES

from conftest import write_test_dicom

YBR_PATH = pydicom.examples.get_path("ybr_color")


write_dicom = write_test_dicom


def region(x0, y0, x1, y1, dx=0.03, dy=0.03, fmt=1, units=3):
    return dict(RegionSpatialFormat=fmt, RegionDataType=1, RegionFlags=0,
                RegionLocationMinX0=x0, RegionLocationMinY0=y0, RegionLocationMaxX1=x1,
                RegionLocationMaxY1=y1, PhysicalUnitsXDirection=units, PhysicalUnitsYDirection=units,
                PhysicalDeltaX=dx, PhysicalDeltaY=dy)


def ramp_clip(t=4, h=40, w=50):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (t, h, w), dtype=np.uint8)


# ---------------------------------------------------------------------------- pydicom example
def test_ybr_color_example_fps_calibration_metadata():
    clip = read_clip(YBR_PATH)
    assert clip.frames.shape == (30, 240, 320) and clip.frames.dtype == np.uint8
    assert clip.fps == pytest.approx(1000 / 33.333, rel=1e-6)
    assert clip.fps_source == "dicom_frame_time"
    # region (84,31)-(595,414) only fits the 320x240 image once halved: 0.05105 cm * 2
    assert clip.mm_per_px == pytest.approx(0.5104970559477806 * 2, rel=1e-9)
    assert any(w.code == "calibration_rescaled" and "downsampled by 2" in w.message for w in clip.warnings)
    md = clip.metadata
    assert md["source_kind"] == "dicom"
    assert md["vendor"] == "SonoSite, Inc." and md["model"] == "Turbo"
    assert md["n_frames"] == 30 and md["original_size"] == (240, 320)
    assert md["photometric_interpretation"] == "YBR_FULL_422"
    assert md["transfer_syntax"] == "JPEG Baseline (Process 1)"


def test_ybr_grey_is_the_y_channel_and_green_dot_is_an_overlay():
    clip = read_clip(pydicom.examples.ybr_color)  # a Dataset works too
    y0 = next(iter_pixels(YBR_PATH, raw=True))[..., 0]
    np.testing.assert_array_equal(clip.frames[0], y0)
    # the green probe-orientation dot (checked visually) at x 186..193, y 17..23
    assert clip.overlay_mask[17:24, 186:194].any()
    # grey tissue in the middle of the fan is not coloured
    assert not clip.overlay_mask[80:180, 120:220].any()


def test_caller_fps_disagreeing_with_dicom_frame_time_keeps_dicom_and_warns():
    clip = read_clip(YBR_PATH, fps=55)
    assert clip.fps == pytest.approx(30.0003, rel=1e-4) and clip.fps_source == "dicom_frame_time"
    assert any(w.code == "fps_conflict" and "fps=55" in w.message for w in clip.warnings)


# ---------------------------------------------------------------------------- crafted DICOMs
def test_dicom_frame_time_vector_median_after_first(tmp_path):
    arr = ramp_clip(5)
    p = write_dicom(tmp_path / "a.dcm", arr, FrameTimeVector=[0, 20, 20, 25, 20])
    clip = read_clip(p)
    assert clip.fps == pytest.approx(50.0) and clip.fps_source == "dicom_frame_time_vector"
    np.testing.assert_array_equal(clip.frames, arr)


def test_dicom_cine_rate_then_caller(tmp_path):
    arr = ramp_clip(3)
    clip = read_clip(write_dicom(tmp_path / "c.dcm", arr, CineRate=48), fps=30)
    assert clip.fps == 48 and clip.fps_source == "dicom_cine_rate"
    assert any(w.code == "fps_conflict" and "fps=30" in w.message for w in clip.warnings)
    clip = read_clip(write_dicom(tmp_path / "d.dcm", arr), fps=42)
    assert clip.fps == 42 and clip.fps_source == "caller"
    clip = read_clip(tmp_path / "d.dcm")
    assert clip.fps is None and clip.fps_source == "unknown"
    assert all(c.fps_source in FPS_SOURCES for c in [clip])


def test_dicom_detected_by_content_not_extension_and_no_phi(tmp_path):
    arr = ramp_clip(3)
    p = write_dicom(tmp_path / "clip.bin", arr, FrameTime=25.0)
    clip = read_clip(str(p))
    assert clip.fps == 40 and clip.metadata["source_kind"] == "dicom"
    text = repr(clip.metadata) + repr(clip.warnings)
    for secret in ("Doe", "SECRET123", "19500101", "General Hospital", "20200101"):
        assert secret not in text
    assert not any(k.lower().startswith(("patient", "institution", "study")) for k in clip.metadata)
    assert clip.metadata["vendor"] == "TestVendor" and clip.metadata["model"] == "Model X"


def test_dicom_monochrome1_is_inverted(tmp_path):
    arr = ramp_clip(3)
    clip = read_clip(write_dicom(tmp_path / "m1.dcm", arr, pi="MONOCHROME1"))
    np.testing.assert_array_equal(clip.frames, 255 - arr)


def test_dicom_rgb_luminance_and_colour_mask(tmp_path):
    rgb = np.zeros((3, 30, 40, 3), np.uint8)
    rgb[:, 5:25, 5:35] = 100  # grey
    rgb[1, 10, 10:20] = (0, 255, 0)  # a green trace pixel run in one frame only
    clip = read_clip(write_dicom(tmp_path / "rgb.dcm", rgb, pi="RGB"))
    ref = cv2.cvtColor(rgb[1], cv2.COLOR_RGB2GRAY)
    assert np.abs(clip.frames[1].astype(int) - ref).max() <= 1  # BT.601 luminance
    assert clip.frames[0, 20, 20] == 100
    assert clip.overlay_mask[10, 10:20].all() and clip.overlay_mask.sum() == 10


def test_dicom_calibration_inside_image_and_anisotropic(tmp_path):
    arr = ramp_clip(3, 100, 120)
    c = read_clip(write_dicom(tmp_path / "r.dcm", arr, regions=[region(10, 5, 110, 95, 0.02, 0.02)]))
    assert c.mm_per_px == pytest.approx(0.2) and not c.warnings
    c = read_clip(write_dicom(tmp_path / "an.dcm", arr, regions=[region(10, 5, 110, 95, 0.02, 0.03)]))
    assert c.mm_per_px == pytest.approx(0.25) and any(w.code == "calibration_anisotropic" for w in c.warnings)
    # non-2D region (M-mode, spatial format 2) and non-cm units are ignored
    c = read_clip(write_dicom(tmp_path / "mm.dcm", arr, regions=[region(10, 5, 110, 95, fmt=2),
                                                                  region(10, 5, 110, 95, units=4)]))
    assert c.mm_per_px is None and c.warnings


def test_dicom_calibration_that_no_factor_explains_is_dropped(tmp_path):
    arr = ramp_clip(3, 100, 120)
    # 2x too big but covering a tiny share once divided: x1=1000 needs factor 9+
    c = read_clip(write_dicom(tmp_path / "bad.dcm", arr, regions=[region(0, 0, 1000, 90)]))
    assert c.mm_per_px is None and any(w.code == "calibration_dropped" for w in c.warnings)


# ---------------------------------------------------------------------------- real videos
def test_ge_mp4_container_fps_and_caller_override(real_clip):
    p = real_clip("ctrl_a4c_ge_55hz.mp4")
    clip = read_clip(p)
    assert clip.frames.shape == (110, 998, 1332)
    assert clip.fps == 30 and clip.fps_source == "container"
    clip55 = read_clip(p, fps=55)
    assert clip55.fps == 55 and clip55.fps_source == "caller"
    assert clip55.metadata["container_fps"] == 30
    # grey = BT.601 luminance of the decoded BGR frame (OpenCV's, within 1 grey level)
    cap = cv2.VideoCapture(str(p))
    ok, bgr = cap.read()
    cap.release()
    assert ok
    diff = clip.frames[0].astype(int) - cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    assert np.abs(diff).max() <= 1 and (diff != 0).mean() < 0.01
    # the green ECG sweep (x 80..708, y 900..970, checked visually) is coloured; the white
    # "91 bpm" text (x 1220..1320, y 940..975) and the grey tissue are not
    om = clip.overlay_mask
    assert om[900:971, 80:709].sum() > 2000
    assert not om[940:975, 1220:1320].any()
    assert not om[335:860, 503:860].any()


def test_gif_frames_and_container_fps(real_clip):
    clip = read_clip(real_clip("stemi_a4c_cleaned16.gif"))
    assert clip.frames.shape == (16, 448, 480)
    assert clip.fps == pytest.approx(1000 / 70) and clip.fps_source == "container"
    assert clip.metadata["source_kind"] == "gif"


def test_avi_roundtrip(tmp_path):
    p = tmp_path / "x.avi"
    wr = cv2.VideoWriter(str(p), cv2.VideoWriter_fourcc(*"MJPG"), 25, (64, 48))
    for i in range(6):
        f = np.full((48, 64, 3), 20 * i + 10, np.uint8)
        wr.write(f)
    wr.release()
    clip = read_clip(p)
    assert clip.frames.shape == (6, 48, 64) and clip.fps == 25
    assert np.allclose(clip.frames.mean(axis=(1, 2)), 20 * np.arange(6) + 10, atol=3)


# ---------------------------------------------------------------------------- folders, arrays
def test_png_folder_natural_sort(tmp_path):
    for i in [1, 2, 10, 3]:
        cv2.imwrite(str(tmp_path / f"frame{i}.png"), np.full((20, 30), i * 10, np.uint8))
    (tmp_path / "notes.txt").write_text("ignored")
    clip = read_clip(tmp_path, fps=50)
    assert clip.frames[:, 0, 0].tolist() == [10, 20, 30, 100]
    assert clip.fps == 50 and clip.fps_source == "caller"


def test_arrays_uint8_float_rgb():
    a = ramp_clip(3)
    c = read_clip(a)
    np.testing.assert_array_equal(c.frames, a)
    assert c.fps is None and c.fps_source == "unknown"
    np.testing.assert_array_equal(read_clip(a / 255.0).frames, a)
    np.testing.assert_array_equal(read_clip(a.astype(np.float32)).frames, a)
    np.testing.assert_array_equal(read_clip(a.astype(np.int64)).frames, a)
    rgb = np.stack([a, a, a], axis=-1)
    rgb[0, 0, 0] = (255, 0, 0)
    c = read_clip(rgb, fps=20)
    assert c.frames[1, 5, 5] == a[1, 5, 5] and c.fps == 20
    assert c.overlay_mask[0, 0] and c.overlay_mask.sum() == 1


def test_exported_from_package():
    assert ttsfast.read_clip is read_clip


# ---------------------------------------------------------------------------- memory
def test_memory_peak_of_a_300_frame_1024x768_mp4(tmp_path):
    t, h, w = 300, 768, 1024
    p = tmp_path / "big.mp4"
    wr = cv2.VideoWriter(str(p), cv2.VideoWriter_fourcc(*"mp4v"), 30, (w, h))
    assert wr.isOpened()
    base = np.zeros((h, w, 3), np.uint8)
    cv2.circle(base, (w // 2, h // 2), 200, (200, 200, 200), -1)
    for i in range(t):
        f = base.copy()
        cv2.putText(f, str(i), (50, 100), cv2.FONT_HERSHEY_SIMPLEX, 2, (0, 255, 0), 3)
        wr.write(f)
    wr.release()
    tracemalloc.start()
    try:
        clip = read_clip(p)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    grey = t * h * w
    assert clip.frames.shape == (t, h, w)
    assert peak < 2.2 * grey, f"peak {peak / 2**20:.0f} MiB vs grey {grey / 2**20:.0f} MiB"


def test_frame_buffer_grows_when_the_frame_count_hint_is_low():
    from ttsfast.io import _FrameSink

    sink = _FrameSink(2, 4, 5, "test")
    for i in range(37):
        sink.next_slot()[...] = i
        sink.commit()
    frames, overlay = sink.result()
    assert frames.shape == (37, 4, 5) and overlay is None
    assert frames[:, 0, 0].tolist() == list(range(37))


def test_frame_buffer_stops_at_the_frame_limit(monkeypatch):
    import ttsfast.io as tio
    from ttsfast.io import _FrameSink

    monkeypatch.setattr(tio, "MAX_FRAMES", 40)
    sink = _FrameSink(2, 4, 5, "test")
    with pytest.raises(InputError, match="more than 40 frames"):
        for _ in range(41):
            sink.next_slot()[...] = 1
            sink.commit()
    assert sink.n == 40


def test_memory_peak_of_a_multiframe_rgb_dicom(tmp_path):
    t, h, w = 60, 480, 640
    rgb = np.zeros((t, h, w, 3), np.uint8)
    rgb[:, 100:300, 100:500] = 90
    rgb[:, 400, 50:300] = (0, 200, 0)
    p = write_dicom(tmp_path / "big.dcm", rgb, pi="RGB", FrameTime=20.0)
    del rgb  # the file holds 3x the grey size
    tracemalloc.start()
    try:
        clip = read_clip(p)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert clip.frames.shape == (t, h, w) and clip.fps == 50
    assert clip.overlay_mask[400, 50:300].all()
    assert peak < 2.2 * t * h * w, f"peak {peak / 2**20:.0f} MiB vs grey {t * h * w / 2**20:.0f} MiB"


def test_native_colour_to_grey_validates_and_matches_opencv():
    from ttsfast._nativelib import native

    f = np.random.default_rng(4).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    dst = np.empty((37, 53), np.uint8)
    acc = np.zeros((37, 53), np.uint8)
    native.colour_to_grey(f, dst, acc, True)
    assert np.abs(dst.astype(int) - cv2.cvtColor(f, cv2.COLOR_BGR2GRAY)).max() <= 1
    np.testing.assert_array_equal(acc, f.max(axis=2) - f.min(axis=2))
    native.colour_to_grey(f, dst, acc, False)
    assert np.abs(dst.astype(int) - cv2.cvtColor(f, cv2.COLOR_RGB2GRAY)).max() <= 1
    ro = dst.copy()
    ro.flags.writeable = False
    for args in [(f[..., :2].copy(), dst, acc), (f, dst.T, acc), (f, ro, acc),
                 (f, dst[:, :50], acc), (f.astype(np.uint16), dst, acc), (f[:, ::2], dst, acc)]:
        with pytest.raises(ValueError):
            native.colour_to_grey(*args, True)


def test_dicom_ybr_full_uses_the_y_channel(tmp_path):
    rng = np.random.default_rng(5)
    ybr = rng.integers(0, 256, (3, 24, 32, 3), dtype=np.uint8)
    ybr[..., 1:] = 128  # grey: no chroma
    ybr[1, 5, 5:15, 1:] = (40, 60)  # a coloured run in frame 1
    clip = read_clip(write_dicom(tmp_path / "ybr.dcm", ybr, pi="YBR_FULL"))
    np.testing.assert_array_equal(clip.frames, ybr[..., 0])
    assert clip.overlay_mask[5, 5:15].all() and clip.overlay_mask.sum() == 10
    assert clip.metadata["photometric_interpretation"] == "YBR_FULL"


def test_dicom_rle_lossless_compressed_multiframe(tmp_path):
    from pydicom.uid import RLELossless

    arr = ramp_clip(4, 30, 40)
    p = write_dicom(tmp_path / "plain.dcm", arr, FrameTime=40.0)
    ds = pydicom.dcmread(p)
    ds.compress(RLELossless)
    ds.save_as(tmp_path / "rle.dcm", enforce_file_format=True)
    clip = read_clip(tmp_path / "rle.dcm")
    np.testing.assert_array_equal(clip.frames, arr)
    assert clip.fps == 25 and clip.metadata["transfer_syntax"] == "RLE Lossless"


def test_dicom_12_bit_monochrome_is_scaled_to_8_bit(tmp_path):
    arr16 = (ramp_clip(3).astype(np.uint16) << 4) | 0x7  # 12-bit values
    ds_path = tmp_path / "m12.dcm"
    write_dicom(ds_path, None)
    ds = pydicom.dcmread(ds_path)
    ds.set_pixel_data(arr16, "MONOCHROME2", 12)
    ds.NumberOfFrames = 3
    ds.save_as(ds_path, enforce_file_format=True)
    clip = read_clip(ds_path)
    np.testing.assert_array_equal(clip.frames, ramp_clip(3))


def test_dicom_without_preamble_and_extension(tmp_path):
    arr = ramp_clip(3)
    ds = pydicom.dcmread(write_dicom(tmp_path / "a.dcm", arr, FrameTime=20.0))
    ds.preamble = None
    ds.save_as(tmp_path / "IM_0001", enforce_file_format=False)
    assert (tmp_path / "IM_0001").read_bytes()[128:132] != b"DICM"
    clip = read_clip(tmp_path / "IM_0001")
    assert clip.metadata["source_kind"] == "dicom" and clip.fps == 50
    np.testing.assert_array_equal(clip.frames, arr)
