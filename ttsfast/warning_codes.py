"""Coded warnings: what every report's ``warnings`` hold, and the stable codes they use.

A warning is ``{code, stage, message}``: ``code`` is stable and meant for code to branch on,
``stage`` is the pipeline stage that raised it, ``message`` is for people and may change
wording between releases. Every code and its meaning is listed in :data:`WARNING_CODES` (and
in docs/report.md); adding a code is a minor bump of :data:`SCHEMA_VERSION`, renaming or
removing one a major bump.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

#: Version of the report's structure (``report["schema_version"]``; docs/report.md says what
#: bumps it). The JSON Schema in ``ttsfast/data/report.schema.json`` describes this version.
SCHEMA_VERSION = "1.1"

#: The pipeline stages, in order (also the keys of ``timings_ms``), and ``stream`` for the
#: faults of a live stream.
STAGES = ("read", "preprocess", "flow", "cycle", "landmarks", "mechanics", "model", "saliency", "stream")

#: code -> (stage, meaning). The stage is the one that raises the warning.
WARNING_CODES: dict[str, tuple[str, str]] = {
    # read
    "frames_truncated": ("read", "the container announced more frames than could be decoded"),
    "fps_conflict": ("read", "the caller's fps disagrees with the DICOM timing; the DICOM value is kept"),
    "fps_from_container": ("read", "the frame rate is the video container's, often a screen capture's playback rate"),
    "calibration_missing": ("read", "the DICOM ultrasound regions hold no 2D tissue region in cm: no mm_per_px"),
    "calibration_anisotropic": ("read", "the DICOM pixel spacing differs in x and y; their mean is used"),
    "calibration_rescaled": ("read", "the image was downsampled after calibration; mm_per_px rescaled"),
    "calibration_dropped": ("read", "the DICOM calibration does not fit the image and is dropped"),
    "source_note": ("read", "a note the clip's source attached (e.g. a synthetic clip's geometry)"),
    # preprocess
    "colour_not_used": ("preprocess", "colour covers much of the image (tint or Doppler): not used to find overlays"),
    "sector_still": ("preprocess", "the clip barely moves; the whole frame is used as the sector"),
    "sector_not_found": ("preprocess", "no moving region found; the whole frame is used as the sector"),
    # cycle
    "one_beat_read": ("cycle", "the clip was read as exactly one beat, end-diastole at its first and last frames"),
    "single_beat_not_closed": ("cycle", "a one-beat clip whose motion does not return to its start"),
    "fps_unknown": ("cycle", "no frame rate: the heart rate is not measured"),
    "heart_rate_implausible": ("cycle", "the frame rate gives an implausible heart rate, which is not reported"),
    "periodicity_unconfirmed": ("cycle", "the autocorrelation does not confirm the period; beats from extrema alone"),
    "beat_rejected": ("cycle", "a candidate beat was rejected (reason in the message)"),
    "period_mismatch": ("cycle", "no beat matched the autocorrelation period; beats from extrema alone"),
    "beat_lengths_disagree": ("cycle", "beat lengths disagree with the period: the heart rate is uncertain"),
    # landmarks
    "axis_tilted": ("landmarks", "the long axis is tilted more than 60 degrees from vertical"),
    "annulus_wide": ("landmarks", "the annulus points are unusually far apart for a mitral annulus"),
    "walls_unequal": ("landmarks", "one wall is much longer than the other"),
    "display_uncertain": ("landmarks", "the display orientation (mirrored or not) is uncertain"),
    "display_disagrees": ("landmarks", "the declared display orientation disagrees with the image"),
    "cavity_faint": ("landmarks", "the LV cavity is not clearly separated from the other chambers"),
    "annulus_from_motion": ("landmarks", "an annulus point was placed from wall motion only"),
    "landmarks_low_confidence": ("landmarks", "the automatic landmarks have a low detector confidence"),
    "learned_detector": ("landmarks", "the landmarks come from the learned (synthetic-trained) detector"),
    # mechanics
    "tracking_fb_error": ("mechanics", "tracked points with a forward-backward error of 0.5 px or more"),
    "tracking_left_image": ("mechanics", "tracked points left the image"),
    "tracking_lk_lost": ("mechanics", "Lucas-Kanade lost point-steps (the previous position was kept)"),
    "annulus_not_anchored": ("mechanics", "an annulus keeps its own track: its basal wall's track did not close"),
    "strain_not_closed": ("mechanics", "segment end points ended the beat far from where they started"),
    "track_not_closed": ("mechanics", "a landmark's track ended the beat far from where it started"),
    "no_calibration": ("mechanics", "no mm_per_px: displacement and excursion in mm not measured"),
    "lv_short": ("mechanics", "the LV is only a few px long: strain is unreliable"),
    "velocities_not_measured": ("mechanics", "S' and E' need both fps and mm_per_px"),
    "fps_low": ("mechanics", "the frame rate is low: peak velocities are underestimated"),
    "mechanics_withheld": ("mechanics", "the mechanics were withheld (report['withheld'] says why)"),
    # model
    "ood_check_skipped": ("model", "the out-of-distribution check could not run"),
    "out_of_distribution": ("model", "the clip's features are outside the model's training distribution"),
    "beats_disagree": ("model", "the clip's beats get different answers: the label is uncertain"),
    # saliency
    "saliency_zero": ("saliency", "a saliency map is all zeros"),
    # stream (ttsfast.live): why a beat of a stream was not measured
    "stream_gap": ("stream", "frames were dropped: the frame times jump"),
    "frozen_frames": ("stream", "too many frames of the beat repeat the one before"),
    "no_signal": ("stream", "the image went dark: the probe was lifted"),
    "view_change": ("stream", "consecutive frames do not correlate: another view or clip, or noise"),
    "beat_not_measured": ("stream", "the beat's analysis failed (reason in the message)"),
}


@dataclass(frozen=True)
class ReportWarning:
    """One coded warning.

    Attributes
    ----------
    code : str
        A key of :data:`WARNING_CODES`, stable across releases.
    stage : str
        The stage that raised it (one of :data:`STAGES`).
    message : str
        Human-readable detail with the measured values.
    """

    code: str
    stage: str
    message: str

    def __post_init__(self) -> None:
        if self.code not in WARNING_CODES:
            raise ValueError(f"unknown warning code {self.code!r}")
        if self.stage not in STAGES:
            raise ValueError(f"unknown stage {self.stage!r}")

    def __str__(self) -> str:
        return f"{self.stage}: {self.message}"

    def to_dict(self) -> dict[str, str]:
        """``{"code", "stage", "message"}``, as reports hold it."""
        return {"code": self.code, "stage": self.stage, "message": self.message}


def report_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a report, ``ttsfast/data/report.schema.json``:
    validate with any JSON Schema library, e.g. ``jsonschema.validate(report, report_schema())``."""
    import json
    from pathlib import Path

    return json.loads((Path(__file__).parent / "data" / "report.schema.json").read_text())


def warn(code: str, message: str) -> ReportWarning:
    """A :class:`ReportWarning` of ``code``, its stage taken from :data:`WARNING_CODES`."""
    if code not in WARNING_CODES:
        raise ValueError(f"unknown warning code {code!r}")
    return ReportWarning(code, WARNING_CODES[code][0], message)


def as_warning(w: Any) -> ReportWarning:
    """A :class:`ReportWarning` from one, from its dict, or from free text (``source_note``:
    e.g. a :class:`~ttsfast.Clip` built by a caller with string warnings)."""
    if isinstance(w, ReportWarning):
        return w
    if isinstance(w, dict):
        return ReportWarning(str(w["code"]), str(w["stage"]), str(w["message"]))
    return warn("source_note", str(w))


def warning_dicts(ws: Iterable[Any]) -> list[dict[str, str]]:
    """Report form of a list of warnings, duplicates (same code, stage and message) dropped."""
    seen: set[ReportWarning] = set()
    out = []
    for w in map(as_warning, ws):
        if w not in seen:
            seen.add(w)
            out.append(w.to_dict())
    return out


def codes(ws: Iterable[Any]) -> list[str]:
    """The codes of a list of warnings (objects or report dicts), in order."""
    return [as_warning(w).code for w in ws]


__all__ = ["SCHEMA_VERSION", "STAGES", "WARNING_CODES", "ReportWarning", "report_schema", "warn", "as_warning", "warning_dicts",
           "codes"]
