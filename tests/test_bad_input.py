"""Everything a caller can get wrong raises InputError (a TTSFastError) with a clear message,
never a raw NumPy / pydicom / OpenCV exception."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from ttsfast import InputError, TTSFastError, preprocess, read_clip

from conftest import write_test_dicom


def _dicom(path, arr=None, *, tsyntax=None, **tags):
    return write_test_dicom(path, arr, tsyntax=tsyntax, **tags)


def _video(path, n, size=(64, 48)):
    wr = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, size)
    for i in range(n):
        wr.write(np.full((size[1], size[0], 3), (i * 37) % 256, np.uint8))
    wr.release()
    return path


def _raises(match, fn, *args, **kw):
    with pytest.raises(InputError, match=match) as info:
        fn(*args, **kw)
    assert isinstance(info.value, TTSFastError)
    return info.value


def test_missing_file(tmp_path):
    _raises("not found", read_clip, tmp_path / "nope.mp4")


def test_empty_file(tmp_path):
    p = tmp_path / "empty.mp4"
    p.write_bytes(b"")
    _raises("empty", read_clip, p)


def test_truncated_video(tmp_path):
    p = _video(tmp_path / "v.mp4", 20)
    data = p.read_bytes()
    t = tmp_path / "trunc.mp4"
    t.write_bytes(data[: len(data) // 3])
    _raises("decode|truncated|corrupt", read_clip, t)


def test_garbage_bytes_named_mp4(tmp_path):
    p = tmp_path / "junk.mp4"
    p.write_bytes(np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    _raises("decode|corrupt", read_clip, p)


def test_zero_frames_array():
    _raises("0 frames", read_clip, np.zeros((0, 10, 10), np.uint8))


def test_one_frame_array_needs_two_frames():
    _raises(">= 2 frames", read_clip, np.zeros((1, 10, 10), np.uint8))


def test_one_frame_video(tmp_path):
    _raises(">= 2 frames", read_clip, _video(tmp_path / "one.mp4", 1))


def test_one_frame_dicom(tmp_path):
    p = _dicom(tmp_path / "one.dcm", np.zeros((1, 8, 8), np.uint8))
    _raises(">= 2 frames", read_clip, p)


def test_dicom_without_pixel_data(tmp_path):
    p = _dicom(tmp_path / "nopix.dcm", None)
    _raises("no pixel data", read_clip, p)


def test_dicom_with_unsupported_transfer_syntax(tmp_path):
    arr = np.zeros((3, 8, 8), np.uint8)
    p = _dicom(tmp_path / "bogus.dcm", arr)
    # rewrite with a compressed syntax no decoder supports (encapsulated, bogus bitstream)
    import pydicom
    from pydicom.encaps import encapsulate

    ds = pydicom.dcmread(p)
    ds.PixelData = encapsulate([b"\x00\x01\x02\x03"] * 3)
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2 main profile
    ds.save_as(p, enforce_file_format=True)
    _raises("transfer syntax", read_clip, p)


def test_dicom_with_bogus_transfer_syntax_uid(tmp_path):
    p = _dicom(tmp_path / "bogus2.dcm", np.zeros((3, 8, 8), np.uint8), tsyntax="1.2.3.4.5.6.7")
    _raises("unknown transfer syntax", read_clip, p)


def test_dicom_with_corrupt_jpeg_stream(tmp_path):
    arr = np.zeros((3, 8, 8), np.uint8)
    p = _dicom(tmp_path / "badjpeg.dcm", arr)
    import pydicom
    from pydicom.encaps import encapsulate

    ds = pydicom.dcmread(p)
    ds.PixelData = encapsulate([b"\xff\xd8garbage"] * 3)
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.50"
    ds.save_as(p, enforce_file_format=True)
    err = _raises("DICOM", read_clip, p)
    assert err.__cause__ is not None


def test_truncated_dicom(tmp_path):
    p = _dicom(tmp_path / "t.dcm", np.zeros((10, 64, 64), np.uint8))
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    _raises("truncated", read_clip, p)


def test_still_png_file(tmp_path):
    p = tmp_path / "still.png"
    cv2.imwrite(str(p), np.zeros((10, 10), np.uint8))
    _raises("still image", read_clip, p)


def test_two_dimensional_array():
    _raises("still image", read_clip, np.zeros((10, 10), np.uint8))


def test_non_finite_float_array():
    a = np.zeros((3, 10, 10), np.float32)
    a[1, 2, 3] = np.nan
    _raises("NaN|infinite", read_clip, a)
    a[1, 2, 3] = np.inf
    _raises("NaN|infinite", read_clip, a)


def test_float_array_out_of_range():
    _raises(r"\[0, 1\] or \[0, 255\]", read_clip, np.full((3, 4, 4), 300.0))


@pytest.mark.parametrize(
    "arr",
    [
        np.zeros((3, 4, 4), np.complex64),
        np.zeros((3, 4, 4), object),
        np.zeros((3, 4, 4), bool),
        np.array(["a"] * 48).reshape(3, 4, 4),
    ],
    ids=["complex", "object", "bool", "str"],
)
def test_wrong_dtype_arrays(arr):
    _raises("dtype", read_clip, arr)


def test_int64_out_of_range():
    a = np.zeros((3, 4, 4), np.int64)
    a[0, 0, 0] = 70000
    _raises("0..255", read_clip, a)
    a[0, 0, 0] = -1
    _raises("0..255", read_clip, a)


def test_wrong_array_shape():
    _raises("shape", read_clip, np.zeros((3, 4, 4, 5), np.uint8))
    _raises("shape", read_clip, np.zeros((2, 3, 4, 4, 3), np.uint8))


@pytest.mark.parametrize(
    "shape, match",
    [((2, 9000, 10), "8192"), ((2, 10, 9000), "8192"), ((100_001, 1, 1), "100000"),
     ((40_000, 300, 300), "GiB")],
    ids=["tall", "wide", "too-many-frames", "over-2GiB"],
)
def test_absurd_sizes(shape, match):
    a = np.broadcast_to(np.zeros((1, 1, 1), np.uint8), shape)  # no memory behind it
    _raises(match, read_clip, a)


def test_absurd_dicom_header(tmp_path):
    p = _dicom(tmp_path / "huge.dcm", np.zeros((2, 8, 8), np.uint8))
    import pydicom

    ds = pydicom.dcmread(p)
    ds.Rows = 60000
    ds.Columns = 60000
    ds.save_as(p, enforce_file_format=True)
    _raises("8192", read_clip, p)


def test_bad_fps_argument():
    a = np.zeros((3, 4, 4), np.uint8)
    for bad in (0, -5, float("nan"), float("inf"), "fast"):
        _raises("fps", read_clip, a, fps=bad)


def test_unsupported_source_type():
    _raises("cannot read", read_clip, 12345)
    _raises("list", read_clip, [np.zeros((4, 4), np.uint8)] * 3)


def test_folder_without_png(tmp_path):
    _raises("no .png", read_clip, tmp_path)


def test_png_folder_with_mismatched_sizes(tmp_path):
    cv2.imwrite(str(tmp_path / "1.png"), np.zeros((10, 10), np.uint8))
    cv2.imwrite(str(tmp_path / "2.png"), np.zeros((12, 10), np.uint8))
    _raises("other frames", read_clip, tmp_path)


def test_preprocess_bad_arguments():
    clip = read_clip(np.random.default_rng(0).integers(0, 255, (4, 32, 32), dtype=np.uint8))
    _raises("grid", preprocess, clip, grid=(2, 2))
    _raises("grid", preprocess, clip, grid="big")
    _raises("Clip", preprocess, "clip.mp4")
    _raises("mask", preprocess, clip, mask=np.ones((5, 5), bool))
    _raises("margin", preprocess, clip, margin="wide")
    _raises("margin", preprocess, clip, margin=2.0)
    p = preprocess(clip)
    _raises(r"\[\.\.\., 2\]", p.to_grid, np.zeros((3, 3)))


def test_zero_frame_video(tmp_path):
    p = tmp_path / "zero.mp4"
    wr = cv2.VideoWriter(str(p), cv2.VideoWriter_fourcc(*"mp4v"), 30, (64, 48))
    wr.release()
    _raises("decode|no frame|empty", read_clip, p)


def test_truncated_gif(tmp_path):
    from PIL import Image

    frames = [Image.fromarray(np.full((40, 50), 30 * i, np.uint8)) for i in range(6)]
    p = tmp_path / "a.gif"
    frames[0].save(p, save_all=True, append_images=frames[1:], duration=40)
    t = tmp_path / "t.gif"
    t.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    _raises("GIF", read_clip, t)


def test_junk_after_dicom_preamble(tmp_path):
    p = tmp_path / "junk.dcm"
    p.write_bytes(b"\0" * 128 + b"DICM" + bytes(range(256)) * 4)
    _raises("DICOM", read_clip, p)


# ----------------------------------------------------------------------------- not an echo clip

def test_frame_correlation_known_cases():
    from ttsfast.preprocess import frame_correlation

    rng = np.random.default_rng(0)
    base = rng.integers(0, 200, (32, 40)).astype(np.uint8)
    mask = np.ones((32, 40), bool)
    # brightness/contrast change only: r = 1; a negative: r = -1; flat frames: 0 (no NaN)
    stack = np.stack([base, base // 2 + 10, 255 - base, np.full_like(base, 7), np.full_like(base, 7)])
    r = frame_correlation(stack, mask)
    assert r[0] == pytest.approx(1.0, abs=1e-3)
    assert r[1] == pytest.approx(-1.0, abs=1e-3)
    assert np.all(r[2:] == 0.0)
    noise = rng.integers(0, 255, (20, 64, 64), dtype=np.uint8)
    assert abs(float(np.median(frame_correlation(noise, np.ones((64, 64), bool))))) < 0.05


@pytest.mark.parametrize("seed", [0, 1])
def test_analyze_rejects_noise(seed):
    """Random frames once came out as a confident 'STEMI' at 56 bpm: every stage finds
    something in noise. They must be rejected as not an echo clip."""
    import ttsfast
    from ttsfast import QualityError

    frames = np.random.default_rng(seed).integers(0, 255, (60, 128, 128), dtype=np.uint8)
    with pytest.raises(QualityError, match="consecutive frames hardly correlate"):
        ttsfast.analyze(frames, fps=30)
