"""Writing synthetic clips as ultrasound DICOM or video, atomically (temp file + rename)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .._atomic import atomic_path
from ..clip import Clip
from ..errors import InputError

#: SOP Class UID of Ultrasound Multi-frame Image Storage.
US_MULTIFRAME_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.3.1"


def _check_clip(clip: Clip) -> None:
    if not isinstance(clip, Clip):
        raise InputError(f"expected a ttsfast.Clip, got {type(clip).__name__}")
    if clip.n_frames < 1:
        raise InputError("clip has no frames")


def _encapsulated_jpeg(frames: np.ndarray, quality: int) -> bytes:
    """JPEG-baseline encode each grey frame and encapsulate them for a DICOM PixelData."""
    import cv2
    from pydicom.encaps import encapsulate

    items = []
    for f in frames:
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(f), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
        if not ok:
            raise InputError("JPEG encoding of a frame failed")
        items.append(buf.tobytes())
    return encapsulate(items, has_bot=True)


def write_dicom(clip: Clip, path: str | os.PathLike, *, jpeg_quality: int | None = None) -> Path:
    """Write a clip as an Ultrasound Multi-frame DICOM (MONOCHROME2).

    Uncompressed (Explicit VR Little Endian) by default; with ``jpeg_quality`` (1..100) each
    frame is encoded as JPEG baseline and encapsulated (transfer syntax 1.2.840.10008.1.2.4.50),
    as many scanners export cine loops: about 8x smaller, lossy.

    FrameTime / CineRate come from ``clip.fps``; a SequenceOfUltrasoundRegions with
    PhysicalDeltaX/Y (cm) from ``clip.mm_per_px`` covers the whole image. No patient
    identifiers are written (anonymous placeholders only).

    Returns
    -------
    Path
        The written file.
    """
    _check_clip(clip)
    if jpeg_quality is not None and not (isinstance(jpeg_quality, int) and 1 <= jpeg_quality <= 100):
        raise InputError(f"jpeg_quality must be an int in 1..100 or None, got {jpeg_quality!r}")
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit, generate_uid

    with atomic_path(path, ".dcm") as (path, tmp):
        T, H, W = clip.frames.shape
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = US_MULTIFRAME_SOP_CLASS
        sop_uid = generate_uid()
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian if jpeg_quality is None else JPEGBaseline8Bit
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = US_MULTIFRAME_SOP_CLASS
        ds.SOPInstanceUID = sop_uid
        ds.StudyInstanceUID = generate_uid()
        ds.SeriesInstanceUID = generate_uid()
        ds.Modality = "US"
        ds.Manufacturer = "ttsfast.synth"
        ds.PatientName = ""
        ds.PatientID = ""
        ds.PatientBirthDate = ""
        ds.PatientSex = ""
        ds.StudyDate = ""
        ds.StudyTime = ""
        ds.AccessionNumber = ""
        ds.ReferringPhysicianName = ""
        ds.StudyID = ""
        ds.SeriesNumber = 1
        ds.InstanceNumber = 1
        ds.ImageType = ["DERIVED", "SECONDARY"]
        ds.SeriesDescription = f"synthetic A4C {clip.metadata.get('model', '')}".strip()
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = H
        ds.Columns = W
        ds.NumberOfFrames = T
        ds.BitsAllocated = 8
        ds.BitsStored = 8
        ds.HighBit = 7
        ds.PixelRepresentation = 0
        ds.FrameIncrementPointer = (0x0018, 0x1063)
        if clip.fps:
            ds.FrameTime = f"{1000.0 / clip.fps:.6g}"
            ds.CineRate = int(round(clip.fps))
            ds.RecommendedDisplayFrameRate = int(round(clip.fps))
        if clip.mm_per_px:
            reg = Dataset()
            reg.RegionSpatialFormat = 1  # 2D
            reg.RegionDataType = 1  # tissue
            reg.RegionFlags = 0
            reg.RegionLocationMinX0 = 0
            reg.RegionLocationMinY0 = 0
            reg.RegionLocationMaxX1 = W - 1
            reg.RegionLocationMaxY1 = H - 1
            reg.PhysicalUnitsXDirection = 3  # cm
            reg.PhysicalUnitsYDirection = 3
            reg.PhysicalDeltaX = float(clip.mm_per_px) / 10.0
            reg.PhysicalDeltaY = float(clip.mm_per_px) / 10.0
            ds.SequenceOfUltrasoundRegions = Sequence([reg])
        if jpeg_quality is None:
            ds.PixelData = np.ascontiguousarray(clip.frames).tobytes()
        else:
            ds.PixelData = _encapsulated_jpeg(clip.frames, jpeg_quality)
            ds["PixelData"].VR = "OB"
            ds.LossyImageCompression = "01"
            ds.LossyImageCompressionMethod = "ISO_10918_1"
        ds.save_as(tmp, enforce_file_format=True)
    return path


def write_video(clip: Clip, path: str | os.PathLike, rgb: np.ndarray | None = None) -> Path:
    """Write a clip as .mp4 or .avi with ``cv2.VideoWriter`` (avi: lossless FFV1 when
    available, else MJPG at top quality; mp4: mp4v). The container's frame rate is
    ``clip.fps``.

    Parameters
    ----------
    clip : Clip
    path : str or PathLike
        Output file ending in .mp4 or .avi.
    rgb : ndarray uint8 [T, H, W, 3], optional
        Colour frames to write instead of the grey ones (e.g. from :func:`to_rgb`).
    """
    import cv2

    _check_clip(clip)
    ext = Path(path).suffix.lower()
    if ext not in (".mp4", ".avi"):
        raise InputError(f"video output must end in .mp4 or .avi, got {ext or 'no extension'!r}")
    frames = clip.frames if rgb is None else rgb
    if rgb is not None and (rgb.ndim != 4 or rgb.shape[:3] != clip.frames.shape or rgb.dtype != np.uint8):
        raise InputError("rgb frames must be uint8 [T,H,W,3] matching the clip")
    T, H, W = clip.frames.shape
    fps = float(clip.fps or 30.0)
    with atomic_path(path, ext) as (path, tmp):
        codecs = ["FFV1", "MJPG"] if ext == ".avi" else ["mp4v", "avc1"]
        writer = None
        for cc in codecs:
            w = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*cc), fps, (W, H), True)
            if w.isOpened():
                if cc == "MJPG":
                    w.set(cv2.VIDEOWRITER_PROP_QUALITY, 100)
                writer = w
                break
            w.release()
        if writer is None:
            raise InputError(f"no video codec available for {ext} in this OpenCV build")
        for t in range(T):
            f = frames[t]
            bgr = cv2.cvtColor(f, cv2.COLOR_GRAY2BGR) if f.ndim == 2 else cv2.cvtColor(f, cv2.COLOR_RGB2BGR)
            writer.write(bgr)
        writer.release()
        if os.path.getsize(tmp) == 0:
            raise InputError(f"video writer produced an empty file for {path}")
    return path
