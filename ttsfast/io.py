"""Reading echo clips from DICOM, video, GIF, PNG folders and arrays into a grey :class:`Clip`.

Every reader decodes frame by frame into one preallocated ``uint8 [T, H, W]`` array, so that a
clip never needs much more memory than its grey frames; colour is looked at *before* the grey
conversion and kept as ``Clip.overlay_mask`` (pixels coloured in any frame: ECG traces,
markers, colour text), which :func:`ttsfast.preprocess` uses to remove overlays.

Frame rate priority (``Clip.fps_source``): DICOM FrameTime, then FrameTimeVector, then
CineRate / RecommendedDisplayFrameRate, then the caller's ``fps=``, then the container's rate
(which for a screen capture is the playback rate, not the acquisition rate).
"""
from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .clip import Clip
from .errors import InputError
from .warning_codes import ReportWarning, warn

__all__ = ["read_clip", "MAX_SIDE", "MAX_FRAMES", "MAX_BYTES", "CHROMA_THRESHOLD"]

#: Largest accepted frame height or width in pixels.
MAX_SIDE = 8192
#: Largest accepted number of frames.
MAX_FRAMES = 100_000
#: Largest accepted grey clip size in bytes (T*H*W).
MAX_BYTES = 2**31
#: A pixel whose channels differ by more than this (max - min, 0..255) is "coloured".
CHROMA_THRESHOLD = 40

_VIDEO_EXT = {".mp4", ".avi", ".mov", ".mkv", ".m4v", ".mpg", ".mpeg", ".wmv", ".webm", ".ogv"}
_IMAGE_EXT = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


# --------------------------------------------------------------------------------------------
# public entry point
# --------------------------------------------------------------------------------------------
def read_clip(source: Any, *, fps: float | None = None) -> Clip:
    """Read an echocardiography clip into a grey :class:`~ttsfast.Clip`.

    Parameters
    ----------
    source : str, os.PathLike, numpy.ndarray or pydicom.Dataset
        A DICOM file (detected by content: the 'DICM' preamble, or a data set without one when
        the extension is not a video's), an mp4/avi/... video (OpenCV/FFmpeg), an animated
        GIF, a folder of PNG frames (sorted naturally: ``f2.png`` before ``f10.png``), an
        array ``[T, H, W]`` or ``[T, H, W, 3]`` (RGB), or a pydicom Dataset read from a file.
        Arrays must be uint8, or integer within 0..255, or finite float in [0, 1] or [0, 255].
    fps : float, optional
        Acquisition frame rate in frames/s known by the caller. DICOM timing tags win over it
        (with a warning when they disagree); it wins over a container's playback rate.

    Returns
    -------
    Clip
        ``frames`` uint8 ``[T, H, W]`` (luminance of RGB, Y of YBR), ``fps`` and
        ``fps_source``, ``mm_per_px`` from a trustworthy DICOM ultrasound region (else None),
        ``metadata`` without patient identifiers, ``warnings``, and ``overlay_mask``.

    Raises
    ------
    InputError
        Missing, empty, truncated, unsupported or absurd input, or fewer than 2 frames.
    """
    caller_fps = _check_fps(fps)
    if type(source).__module__.startswith("pydicom"):
        import pydicom

        if isinstance(source, pydicom.Dataset):
            return _read_dicom(source, caller_fps)
    if isinstance(source, np.ndarray):
        return _read_array(source, caller_fps)
    if isinstance(source, (list, tuple)):
        raise InputError(
            "read_clip got a list/tuple; pass a numpy array [T,H,W] (np.stack your frames) or a path"
        )
    if not isinstance(source, (str, os.PathLike)):
        raise InputError(
            f"read_clip cannot read a {type(source).__name__}; pass a path (str or pathlib.Path), "
            "a numpy array [T,H,W] or [T,H,W,3], or a pydicom Dataset"
        )
    path = Path(os.fspath(source))
    if not path.exists():
        raise InputError(f"clip not found: {path} (check the path)")
    if path.is_dir():
        return _read_png_folder(path, caller_fps)
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError as exc:
        raise InputError(f"cannot open {path}: {exc}") from exc
    if size == 0:
        raise InputError(f"clip file is empty (0 bytes): {path}")
    kind = _sniff(head, path)
    if kind == "video" and path.suffix.lower() not in _VIDEO_EXT and _is_raw_dicom(path):
        kind = "dicom"  # a DICOM data set written without the 128-byte preamble
    if kind == "dicom":
        return _read_dicom(path, caller_fps)
    if kind == "gif":
        return _read_gif(path, caller_fps)
    if kind == "image":
        raise InputError(
            f"{path.name} is a still image, not a clip; a clip needs >= 2 frames "
            "(pass a folder of PNG frames, a video, a GIF or a DICOM)"
        )
    return _read_video(path, caller_fps)


# --------------------------------------------------------------------------------------------
# helpers shared by the readers
# --------------------------------------------------------------------------------------------
def _check_fps(fps: Any) -> float | None:
    if fps is None:
        return None
    try:
        v = float(fps)
    except (TypeError, ValueError) as exc:
        raise InputError(f"fps must be a number of frames/s, got {fps!r}") from exc
    if not math.isfinite(v) or v <= 0 or v > 10000:
        raise InputError(f"fps must be a positive finite number of frames/s (<= 10000), got {fps!r}")
    return v


def _sniff(head: bytes, path: Path) -> str:
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:8] == b"\x89PNG\r\n\x1a\n" or head[:3] == b"\xff\xd8\xff" or head[:2] == b"BM":
        return "image"
    ext = path.suffix.lower()
    if ext in (".dcm", ".dicom", ".dic"):
        return "dicom"
    if ext in _IMAGE_EXT:
        return "image"
    return "video"


def _is_raw_dicom(path: Path) -> bool:
    """True when ``path`` parses as a DICOM data set with image attributes (no preamble)."""
    try:
        import pydicom

        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        return "Rows" in ds and "Columns" in ds
    except Exception:  # noqa: BLE001 - anything unparsable is simply not DICOM
        return False


def _check_size(t: int, h: int, w: int, what: str) -> None:
    if h < 1 or w < 1:
        raise InputError(f"{what} has empty frames ({h}x{w} pixels)")
    if h > MAX_SIDE or w > MAX_SIDE:
        raise InputError(
            f"{what} frames are {h}x{w} pixels; the largest accepted side is {MAX_SIDE} px "
            "(downsample the clip first)"
        )
    if t > MAX_FRAMES:
        raise InputError(f"{what} has {t} frames; at most {MAX_FRAMES} are accepted (trim the clip)")
    if t * h * w > MAX_BYTES:
        raise InputError(
            f"{what} would need {t * h * w / 2**30:.1f} GiB as grey uint8 ({t}x{h}x{w}); at most "
            f"{MAX_BYTES / 2**30:.0f} GiB is accepted (trim or downsample the clip)"
        )


def _check_two_frames(t: int, what: str) -> None:
    if t < 2:
        raise InputError(
            f"{what} has {t} frame{'s' if t != 1 else ''}; a clip needs >= 2 frames "
            "(a still image cannot show motion)"
        )


class _FrameSink:
    """Preallocated grey ``[T,H,W]`` buffer (grown when a frame-count hint was low), plus the
    running "coloured anywhere" maximum of per-pixel chroma."""

    def __init__(self, t_hint: int, h: int, w: int, what: str):
        self.h, self.w, self.what = h, w, what
        t_hint = max(2, min(int(t_hint), MAX_FRAMES))
        _check_size(t_hint, h, w, what)
        self.buf = np.empty((t_hint, h, w), np.uint8)
        self.chroma: np.ndarray | None = None
        self.n = 0

    def next_slot(self) -> np.ndarray:
        if self.n >= MAX_FRAMES:
            raise InputError(
                f"{self.what} has more than {MAX_FRAMES} frames; trim the clip"
            )
        if self.n == self.buf.shape[0]:
            new_t = min(MAX_FRAMES, max(self.n + 16, int(self.n * 1.25)))
            _check_size(self.n + 1, self.h, self.w, self.what)
            new_t = min(new_t, max(self.n + 1, MAX_BYTES // (self.h * self.w)))
            grown = np.empty((new_t, self.h, self.w), np.uint8)
            grown[: self.n] = self.buf[: self.n]
            self.buf = grown
        return self.buf[self.n]

    def add_chroma(self, chroma: np.ndarray) -> None:
        import cv2

        if self.chroma is None:
            self.chroma = chroma.copy()
        else:
            cv2.max(self.chroma, chroma, dst=self.chroma)

    def commit(self) -> None:
        self.n += 1

    def result(self) -> tuple[np.ndarray, np.ndarray | None]:
        frames = self.buf[: self.n]
        if self.n != self.buf.shape[0]:
            frames = frames.copy() if self.n < self.buf.shape[0] // 2 else frames
        frames = np.ascontiguousarray(frames)
        mask = None if self.chroma is None else self.chroma > CHROMA_THRESHOLD
        return frames, mask


def _rgb_into(frame: np.ndarray, dst: np.ndarray, sink: _FrameSink, bgr: bool) -> None:
    """Luminance of a colour frame ``[H,W,3]`` into ``dst`` ``[H,W]``; chroma into ``sink``
    (one native pass: grey within 1 level of cv2.cvtColor, chroma = max - min channel)."""
    from ._nativelib import native

    if frame.dtype != np.uint8:
        raise InputError(f"{sink.what}: colour frames must be 8-bit, got {frame.dtype}")
    frame = np.ascontiguousarray(frame)
    if sink.chroma is None:
        sink.chroma = np.zeros(dst.shape, np.uint8)
    native.colour_to_grey(frame, dst, sink.chroma, bgr)


def _natural_key(name: str) -> list:
    return [int(tok) if tok.isdigit() else tok.lower() for tok in re.split(r"(\d+)", name)]


def _finish(
    frames: np.ndarray,
    overlay: np.ndarray | None,
    *,
    fps: float | None,
    fps_source: str,
    mm_per_px: float | None = None,
    metadata: dict,
    warnings: list[ReportWarning],
    what: str,
) -> Clip:
    _check_two_frames(frames.shape[0], what)
    if overlay is not None and not overlay.any():
        overlay = np.zeros(frames.shape[1:], bool)
    metadata.setdefault("n_frames", int(frames.shape[0]))
    metadata["n_frames"] = int(frames.shape[0])
    metadata.setdefault("original_size", (int(frames.shape[1]), int(frames.shape[2])))
    return Clip(
        frames=frames,
        fps=fps,
        fps_source=fps_source,
        mm_per_px=mm_per_px,
        metadata=metadata,
        warnings=warnings,
        overlay_mask=overlay,
    )


# --------------------------------------------------------------------------------------------
# arrays
# --------------------------------------------------------------------------------------------
def _read_array(arr: np.ndarray, caller_fps: float | None) -> Clip:
    what = "the array"
    if arr.dtype == np.bool_ or arr.dtype.kind not in "uif":
        raise InputError(
            f"array dtype {arr.dtype} is not supported; pass uint8 (0..255), an integer array "
            "within 0..255, or a finite float array in [0,1] or [0,255]"
        )
    if arr.ndim == 2:
        raise InputError(
            f"got a 2-D array {arr.shape}: a still image, not a clip; a clip needs >= 2 frames "
            "as [T,H,W] or [T,H,W,3]"
        )
    if arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if not (arr.ndim == 3 or (arr.ndim == 4 and arr.shape[-1] in (3, 4))):
        raise InputError(f"array must have shape [T,H,W] or [T,H,W,3] (RGB), got {arr.shape}")
    t, h, w = (int(v) for v in arr.shape[:3])
    _check_two_frames(t, what)
    _check_size(t, h, w, what)
    if arr.dtype != np.uint8:
        arr = _to_uint8(arr)
    warnings: list[ReportWarning] = []
    overlay = None
    if arr.ndim == 4:
        sink = _FrameSink(t, h, w, what)
        for i in range(t):
            _rgb_into(arr[i, :, :, :3], sink.next_slot(), sink, bgr=False)
            sink.commit()
        frames, overlay = sink.result()
    else:
        frames = np.ascontiguousarray(arr)
    meta = {"source_kind": "array", "n_frames": t, "original_size": (h, w)}
    return _finish(
        frames, overlay,
        fps=caller_fps, fps_source="caller" if caller_fps else "unknown",
        metadata=meta, warnings=warnings, what=what,
    )


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.size == 0:
        raise InputError("the array is empty")
    if arr.dtype.kind == "f":
        if not all(np.isfinite(arr[i]).all() for i in range(arr.shape[0])):
            raise InputError("the array contains NaN or infinite values; clean it before reading")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0 or hi > 255:
            raise InputError(
                f"float array values span [{lo:g}, {hi:g}]; expected [0, 1] or [0, 255]"
            )
        scale = 255.0 if hi <= 1.0 else 1.0
        out = np.empty(arr.shape, np.uint8)
        for i in range(arr.shape[0]):  # frame by frame: no full-size float temporaries
            out[i] = np.clip(np.rint(arr[i] * scale), 0, 255)
        return out
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi > 255:
        raise InputError(
            f"integer array values span [{lo}, {hi}]; expected 0..255 (rescale to uint8 first)"
        )
    return arr.astype(np.uint8)


# --------------------------------------------------------------------------------------------
# videos (cv2) and GIFs (Pillow)
# --------------------------------------------------------------------------------------------
def _read_video(path: Path, caller_fps: float | None) -> Clip:
    import cv2

    what = f"video {path.name}"
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise InputError(
                f"cannot decode {path} as a video (unknown format, corrupt or truncated file); "
                "supported: DICOM, mp4/avi (OpenCV/FFmpeg), GIF, a folder of PNG frames"
            )
        container_fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        hint = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        w = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0)
        h = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
        if hint < 0 or hint > MAX_FRAMES * 10:
            hint = 0
        ok, frame = cap.read()
        if not ok or frame is None:
            raise InputError(f"{what}: no frame could be decoded (empty, corrupt or truncated file)")
        if frame.ndim == 3:
            h, w = frame.shape[:2]
        else:
            h, w = frame.shape
        if hint > MAX_FRAMES:
            _check_size(hint, h, w, what)
        sink = _FrameSink(hint if hint >= 2 else 64, h, w, what)
        while ok and frame is not None:
            if frame.shape[:2] != (h, w):
                raise InputError(f"{what}: frame size changed mid-stream ({frame.shape[:2]} vs {(h, w)})")
            dst = sink.next_slot()
            if frame.ndim == 2:
                dst[...] = frame
            elif frame.shape[2] == 1:
                dst[...] = frame[..., 0]
            else:
                _rgb_into(frame[..., :3], dst, sink, bgr=True)
            sink.commit()
            # decode into the same BGR buffer (no fresh 4 MB allocation per frame)
            ok, frame = cap.read(frame) if frame.flags.c_contiguous else cap.read()
    except cv2.error as exc:
        raise InputError(f"{what}: OpenCV could not decode it ({exc})") from exc
    finally:
        cap.release()
    frames, overlay = sink.result()
    warnings: list[ReportWarning] = []
    if hint >= 2 and frames.shape[0] < hint:
        warnings.append(warn(
            "frames_truncated", f"the container announced {hint} frames but only {frames.shape[0]} could be decoded "
            "(truncated file?)"))
    cfps = container_fps if math.isfinite(container_fps) and 0 < container_fps <= 10000 else None
    fps, src = _container_fps(caller_fps, cfps)
    meta = {
        "source_kind": "video",
        "container": path.suffix.lower().lstrip("."),
        "container_fps": cfps,
        "n_frames": int(frames.shape[0]),
        "original_size": (h, w),
    }
    return _finish(frames, overlay, fps=fps, fps_source=src, metadata=meta, warnings=warnings, what=what)


def _container_fps(caller_fps: float | None, cfps: float | None) -> tuple[float | None, str]:
    if caller_fps is not None:
        return caller_fps, "caller"
    if cfps is not None:
        return cfps, "container"
    return None, "unknown"


def _read_gif(path: Path, caller_fps: float | None) -> Clip:
    from PIL import Image, ImageSequence, UnidentifiedImageError

    what = f"GIF {path.name}"
    try:
        with Image.open(path) as im:
            n = int(getattr(im, "n_frames", 1))
            w, h = im.size
            _check_size(max(n, 2), h, w, what)
            durations: list[float] = []
            sink = _FrameSink(max(n, 2), h, w, what)
            for fr in ImageSequence.Iterator(im):
                d = fr.info.get("duration")
                if d:
                    durations.append(float(d))
                rgb = np.asarray(fr.convert("RGB"))
                _rgb_into(rgb, sink.next_slot(), sink, bgr=False)
                sink.commit()
    except (UnidentifiedImageError, OSError, EOFError, SyntaxError, ValueError) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(f"{what}: cannot decode it ({exc}); the file may be corrupt or truncated") from exc
    frames, overlay = sink.result()
    cfps = None
    if durations:
        med = float(np.median(durations))
        if med > 0:
            cfps = 1000.0 / med
    fps, src = _container_fps(caller_fps, cfps)
    meta = {
        "source_kind": "gif",
        "container": "gif",
        "container_fps": cfps,
        "n_frames": int(frames.shape[0]),
        "original_size": (h, w),
    }
    return _finish(frames, overlay, fps=fps, fps_source=src, metadata=meta, warnings=[], what=what)


def _read_png_folder(folder: Path, caller_fps: float | None) -> Clip:
    import cv2

    what = f"PNG folder {folder.name}"
    files = sorted((p for p in folder.iterdir() if p.suffix.lower() == ".png" and p.is_file()),
                   key=lambda p: _natural_key(p.name))
    if not files:
        raise InputError(f"{folder} holds no .png frames; put the frames there as PNG files")
    _check_two_frames(len(files), what)
    sink: _FrameSink | None = None
    h = w = 0
    for p in files:
        img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise InputError(f"{what}: cannot decode {p.name} as PNG (corrupt?)")
        if img.dtype == np.uint16:
            img = (img >> 8).astype(np.uint8)
        elif img.dtype != np.uint8:
            raise InputError(f"{what}: {p.name} has unsupported pixel type {img.dtype}")
        if sink is None:
            h, w = img.shape[:2]
            sink = _FrameSink(len(files), h, w, what)
        if img.shape[:2] != (h, w):
            raise InputError(f"{what}: {p.name} is {img.shape[1]}x{img.shape[0]}, other frames {w}x{h}")
        dst = sink.next_slot()
        if img.ndim == 2:
            dst[...] = img
        else:
            _rgb_into(img[..., :3], dst, sink, bgr=True)
        sink.commit()
    assert sink is not None
    frames, overlay = sink.result()
    meta = {"source_kind": "png_folder", "n_frames": int(frames.shape[0]), "original_size": (h, w)}
    return _finish(
        frames, overlay,
        fps=caller_fps, fps_source="caller" if caller_fps else "unknown",
        metadata=meta, warnings=[], what=what,
    )


# --------------------------------------------------------------------------------------------
# DICOM
# --------------------------------------------------------------------------------------------
def _read_dicom(src: Any, caller_fps: float | None) -> Clip:
    import pydicom
    from pydicom.errors import InvalidDicomError

    if isinstance(src, pydicom.Dataset):
        ds = src
        what = "DICOM dataset"
        pix_src: Any = ds
    else:
        what = f"DICOM {Path(src).name}"
        try:
            ds = pydicom.dcmread(src, defer_size="1 KB", force=True)
        except (InvalidDicomError, OSError, EOFError, ValueError, KeyError, TypeError,
                AttributeError, NotImplementedError) as exc:
            raise InputError(f"{what}: cannot parse the file ({exc}); it may be corrupt or truncated") from exc
        pix_src = src
    try:
        return _dicom_clip(ds, pix_src, caller_fps, what)
    except InputError:
        raise
    except Exception as exc:  # pydicom / decoders raise many types; none may escape raw
        raise InputError(
            f"{what}: cannot decode pixel data ({type(exc).__name__}: {exc}); the file may be "
            "truncated or corrupt"
        ) from exc


def _dicom_tsyntax(ds: Any) -> Any:
    meta = getattr(ds, "file_meta", None)
    return None if meta is None else meta.get("TransferSyntaxUID")


def _dicom_clip(ds: Any, pix_src: Any, caller_fps: float | None, what: str) -> Clip:
    import pydicom
    from pydicom.pixels import iter_pixels

    if "PixelData" not in ds:
        kinds = [k for k in ("FloatPixelData", "DoubleFloatPixelData") if k in ds]
        if kinds:
            raise InputError(f"{what}: {kinds[0]} (float pixels) is not supported; only integer PixelData")
        raise InputError(f"{what}: the DICOM has no pixel data (PixelData missing); it is not an image")
    tsyntax = _dicom_tsyntax(ds)
    if tsyntax is None:
        raise InputError(f"{what}: no TransferSyntaxUID in the file meta; cannot decode the pixels")
    ts = pydicom.uid.UID(str(tsyntax))
    if not ts.is_transfer_syntax:
        raise InputError(
            f"{what}: unknown transfer syntax {ts}; no pixel decoder supports it "
            "(export the clip uncompressed or as JPEG baseline)"
        )
    if ts.is_compressed:
        try:
            dec = pydicom.pixels.get_decoder(ts)
        except NotImplementedError as exc:
            raise InputError(
                f"{what}: transfer syntax {ts} ({ts.name}) is not supported by any pixel decoder; "
                "export the clip uncompressed or as JPEG baseline"
            ) from exc
        if not dec.is_available:
            raise InputError(
                f"{what}: transfer syntax {ts.name} needs a decoder plugin that is not installed "
                f"(missing: {dec.missing_dependencies}); install pylibjpeg and its plugins"
            )
    for tag in ("Rows", "Columns"):
        if tag not in ds:
            raise InputError(f"{what}: {tag} is missing; cannot decode the pixels")
    rows, cols = int(ds.Rows), int(ds.Columns)
    n = int(ds.get("NumberOfFrames", 1) or 1)
    spp = int(ds.get("SamplesPerPixel", 1) or 1)
    pi = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    bits = int(ds.get("BitsStored", 8) or 8)
    _check_size(n, rows, cols, what)
    _check_two_frames(n, what)

    sink = _FrameSink(n, rows, cols, what)
    ds_out = pydicom.Dataset()
    # raw=True keeps YBR as decoded (so Y can be taken directly); colour-space of the result is
    # reported in ds_out.PhotometricInterpretation.
    it: Iterator[np.ndarray] = iter_pixels(pix_src, ds_out=ds_out, raw=True)
    out_pi: str | None = None
    lut_ds = ds if pi == "PALETTE COLOR" else None
    for i, arr in enumerate(it):
        if i >= n:
            break
        if out_pi is None:
            out_pi = str(ds_out.get("PhotometricInterpretation", pi)).strip().upper()
        dst = sink.next_slot()
        _dicom_frame_into(arr, dst, sink, out_pi, bits, lut_ds, what)
        sink.commit()
    frames, overlay = sink.result()
    if frames.shape[0] < n:
        raise InputError(f"{what}: NumberOfFrames is {n} but only {frames.shape[0]} frames could be decoded")

    warnings: list[ReportWarning] = []
    fps, fps_src = _dicom_fps(ds, caller_fps, warnings)
    mm = _dicom_mm_per_px(ds, rows, cols, warnings)
    cine = _dicom_cine_rate(ds)
    meta = {
        "source_kind": "dicom",
        "vendor": _clean_str(ds.get("Manufacturer")),
        "model": _clean_str(ds.get("ManufacturerModelName")),
        "modality": _clean_str(ds.get("Modality")),
        "n_frames": int(frames.shape[0]),
        "original_size": (rows, cols),
        "photometric_interpretation": pi,
        "samples_per_pixel": spp,
        "bits_stored": bits,
        "transfer_syntax": ts.name,
        "transfer_syntax_uid": str(ts),
        "container_fps": cine,
    }
    if spp == 1:
        overlay = None
    return _finish(frames, overlay, fps=fps, fps_source=fps_src, mm_per_px=mm,
                   metadata=meta, warnings=warnings, what=what)


def _clean_str(v: Any) -> str | None:
    if v is None:
        return None
    s = str(v).strip()
    return s or None


def _dicom_frame_into(arr: np.ndarray, dst: np.ndarray, sink: _FrameSink, pi: str, bits: int,
                      lut_ds: Any, what: str) -> None:
    if arr.ndim == 2:
        if lut_ds is not None:
            from pydicom.pixels import apply_color_lut

            rgb = apply_color_lut(arr, lut_ds)
            if rgb.dtype != np.uint8:
                rgb = (rgb >> 8).astype(np.uint8)
            _rgb_into(rgb, dst, sink, bgr=False)
            return
        if arr.dtype != np.uint8:
            a = arr.astype(np.int64)
            if bits > 8:
                a = a >> (bits - 8) if a.min() >= 0 else (a - a.min()) >> (bits - 8)
            a = np.clip(a, 0, 255)
            dst[...] = a
        else:
            dst[...] = arr
        if pi == "MONOCHROME1":
            np.subtract(255, dst, out=dst)
        return
    if arr.ndim == 3 and arr.shape[-1] == 3:
        if arr.dtype != np.uint8:
            arr = (arr.astype(np.uint32) >> max(0, bits - 8)).clip(0, 255).astype(np.uint8)
        if pi.startswith("YBR"):
            # Y is the luminance; chroma = distance of Cb, Cr from 128.
            dst[...] = arr[..., 0]
            cb = arr[..., 1].astype(np.float32) - 128.0
            cr = arr[..., 2].astype(np.float32) - 128.0
            # RGB channel differences implied by Cb, Cr (ITU-R BT.601 full range)
            rg = np.abs(2.116 * cr + 0.344 * cb)
            bg = np.abs(2.116 * cb + 0.714 * cr)
            rb = np.abs(1.402 * cr - 1.772 * cb)
            spread = np.maximum(np.maximum(rg, bg), rb)
            sink.add_chroma(np.minimum(spread, 255.0).astype(np.uint8))
        else:
            _rgb_into(arr, dst, sink, bgr=False)
        return
    raise InputError(f"{what}: unexpected decoded frame shape {arr.shape}")


def _positive(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) and f > 0 else None


def _dicom_cine_rate(ds: Any) -> float | None:
    for tag in ("CineRate", "RecommendedDisplayFrameRate"):
        v = _positive(ds.get(tag))
        if v is not None and v <= 10000:
            return v
    return None


def _dicom_fps(ds: Any, caller_fps: float | None, warnings: list[ReportWarning]) -> tuple[float | None, str]:
    fps: float | None = None
    src = "unknown"
    ft = _positive(ds.get("FrameTime"))
    if ft is not None and 1000.0 / ft <= 10000:
        fps, src = 1000.0 / ft, "dicom_frame_time"
    if fps is None and "FrameTimeVector" in ds:
        try:
            vec = np.asarray([float(v) for v in np.atleast_1d(ds.FrameTimeVector)], float)
        except (TypeError, ValueError):
            vec = np.zeros(0)
        vec = vec[1:] if vec.size > 1 else vec
        vec = vec[np.isfinite(vec) & (vec > 0)]
        if vec.size:
            fps, src = 1000.0 / float(np.median(vec)), "dicom_frame_time_vector"
    if fps is None:
        cr = _dicom_cine_rate(ds)
        if cr is not None:
            fps, src = cr, "dicom_cine_rate"
    if fps is None:
        if caller_fps is not None:
            return caller_fps, "caller"
        return None, "unknown"
    if caller_fps is not None and abs(caller_fps - fps) > 0.02 * fps:
        warnings.append(warn(
            "fps_conflict", f"fps={caller_fps:g} was given but the DICOM timing ({src}) says {fps:.3f} frames/s; "
            "the DICOM value is kept"))
    return fps, src


def _dicom_mm_per_px(ds: Any, rows: int, cols: int, warnings: list[ReportWarning]) -> float | None:
    regions = ds.get("SequenceOfUltrasoundRegions")
    if not regions:
        return None
    cands = []
    for r in regions:
        if int(r.get("RegionSpatialFormat", 0) or 0) != 1:
            continue
        if int(r.get("PhysicalUnitsXDirection", 0) or 0) != 3 or int(r.get("PhysicalUnitsYDirection", 0) or 0) != 3:
            continue
        dx, dy = _positive(r.get("PhysicalDeltaX")), _positive(r.get("PhysicalDeltaY"))
        try:
            box = [int(r.get(k)) for k in ("RegionLocationMinX0", "RegionLocationMinY0",
                                            "RegionLocationMaxX1", "RegionLocationMaxY1")]
        except (TypeError, ValueError):
            continue
        if dx is None or dy is None or box[2] <= box[0] or box[3] <= box[1]:
            continue
        cands.append((dx, dy, box))
    if not cands:
        warnings.append(warn("calibration_missing",
                             "the DICOM ultrasound regions hold no 2D tissue region in cm; no calibration"))
        return None
    dx, dy, (x0, y0, x1, y1) = max(cands, key=lambda c: (c[2][2] - c[2][0]) * (c[2][3] - c[2][1]))
    if abs(dx - dy) > 0.02 * max(dx, dy):
        warnings.append(warn(
            "calibration_anisotropic", f"anisotropic ultrasound calibration (PhysicalDeltaX {dx:g} cm, Y {dy:g} cm); "
            "their mean is used"))
    mm = 10.0 * (dx + dy) / 2.0

    def inside(k: int) -> bool:
        return x0 / k >= 0 and y0 / k >= 0 and x1 / k <= cols - 0.5 and y1 / k <= rows - 0.5

    if inside(1):
        return mm
    for k in (2, 3, 4):
        share = ((x1 - x0) / k) * ((y1 - y0) / k) / float(rows * cols)
        if inside(k) and share >= 0.25:
            warnings.append(warn(
                "calibration_rescaled", f"the ultrasound region ({x0},{y0})-({x1},{y1}) lies outside the {cols}x{rows} image: "
                f"the image was downsampled by {k} after calibration (region fits once divided by "
                f"{k}, covering {share:.0%} of the image); mm_per_px rescaled from {mm:.4f} to "
                f"{mm * k:.4f} mm"))
            return mm * k
    warnings.append(warn(
        "calibration_dropped", f"the ultrasound region ({x0},{y0})-({x1},{y1}) does not fit the {cols}x{rows} image and "
        "no integer downsampling factor explains it; the calibration is dropped (mm_per_px=None)"))
    return None
