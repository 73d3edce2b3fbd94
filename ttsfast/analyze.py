"""``ttsfast.analyze()``: the only place that strings the stages together.

read -> preprocess -> flow -> cycle -> landmarks -> mechanics -> model (ONNX Runtime) ->
saliency, each timed; each stage past the flow returns a typed result (:mod:`ttsfast.stages`)
and :func:`_assemble` makes the report of them. Nothing is reloaded on a second call in the
same process: the ONNX Runtime session is cached by :mod:`ttsfast.model.runtime`, the Numba
kernels by Numba's cache.
"""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from .clip import Clip
from .constants import FRAMES_PER_BEAT
from .errors import InputError
from .result import AnalysisResult, BeatArrays
from .stages import (DEVICES, LANDMARK_DETECTORS, LANDMARKS_HINT, LandmarkStage, MechanicsStage, ModelStage,
                     SaliencyStage, _tracks_on_beat, find_landmarks, mechanics_stage, model_stage, saliency_stage,
                     saliency_summary)
from .warning_codes import ReportWarning, warn


@contextmanager
def _timed(timings: dict[str, float], name: str) -> Iterator[None]:
    t0 = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = round((time.perf_counter() - t0) * 1e3, 2)


def analyze(source: Any, *, fps: float | None = None, landmarks: Mapping[str, Any] | None = None,
            model: str | os.PathLike | None = None, saliency: bool | str = True, device: str = "auto",
            beat: int = 0, single_beat: bool | None = None, grid: tuple[int, int] = (256, 352),
            flow_backend: str = "native", score_all_beats: bool = True,
            threads: int | None = None, keep_arrays: bool = True, tracker: str = "dis",
            annulus_anchor: bool = True, landmark_detector: str = "classic") -> AnalysisResult:
    """Analyse one apical-4-chamber clip: TTS vs anterior STEMI, saliency and mechanics.

    Parameters
    ----------
    source : path, Clip or np.ndarray
        DICOM, mp4/avi, gif, a folder of PNG frames, a :class:`~ttsfast.Clip`, or uint8
        ``[T,H,W]`` / ``[T,H,W,3]`` frames.
    fps : float, optional
        Acquisition frame rate (frames/s) when the source does not carry a trustworthy one
        (screen captures: the container's rate is the playback rate). DICOM FrameTime wins.
    landmarks : mapping, optional
        ``{"septal_annulus": (x, y), "lateral_annulus": (x, y), "apex": (x, y)}`` in
        original-image pixels on the first end-diastolic frame; found automatically if None.
    model : path, optional
        An ONNX file with its model card, or a weights-only ``.pt`` checkpoint; None = the
        shipped demo model (NOT trained on patients).
    saliency : bool or str
        True or ``"cam"``: the CAM fast path from the ONNX graph's activations (equal to
        Grad-CAM for this head); ``"gradcam"``: the PyTorch hooks path (needs a ``.pt`` model
        or the shipped checkpoint); False: no saliency.
    device : str
        ``"auto"`` (CUDA when ONNX Runtime offers it, else CPU), ``"cpu"`` or ``"cuda"``.
    beat : int
        Which complete beat to measure and score (0 = the first).
    single_beat : bool or None
        True: the clip is exactly one beat, end-diastole to the next end-diastole (the study's
        format: one cycle resampled to 32 frames); only its end-systole is searched. None
        (default): a clip whose motion is one beat is read as one (with a warning). False: never.
    grid : (int, int)
        Analysis grid (rows, cols); the paper's canvas is 256 x 352.
    flow_backend : str
        ``"native"`` (ttsfast's C++ Farneback) or ``"opencv"``.
    score_all_beats : bool
        Also score the clip's other complete beats (one batched call, ~30-50 ms per extra beat
        on 2 CPU cores): ``cycle.beats[i].p_tts`` and a warning when the beats disagree.
        False: only the chosen beat is scored, the others' ``p_tts`` are None.
    threads : int, optional
        Threads of the native kernels (default: all cores).
    keep_arrays : bool
        Keep the beat's frames, saliency and tracks in ``result.beat`` for figures.
    tracker : str
        How the mechanics stage tracks its points (``measure_mechanics(method=)``): ``"dis"``
        (default, the most accurate on ground truth), ``"flow"`` (the clip's Farneback flow,
        ~60 ms faster per 32-frame beat), ``"flow+lk"``, or ``"lk"`` (the original study's
        Lucas-Kanade, 75 px, 5 levels). The report's ``mechanics.method`` says which.
    annulus_anchor : bool
        Take the slow part of each annulus track from its basal wall
        (``measure_mechanics(annulus_anchor=)``, default on: it removes most of the annulus's
        excursion under-read on synthetic clips; an annulus whose basal wall the tracker lost
        keeps its own track, with a warning; docs/accuracy.md). Not applied with
        ``tracker="lk"``. The report's ``mechanics.annulus_anchored`` says, per annulus,
        whether it was.
    landmark_detector : str
        How landmarks are found when none are given: ``"classic"`` (default; image and motion
        heuristics, :func:`ttsfast.landmarks.detect_landmarks`) or ``"cnn"`` (the learned
        heatmap detector trained on synthetic clips, :func:`ttsfast.landmarks_cnn.detect_landmarks_cnn`;
        far better on synthetic clips, no better on the real test clips: docs/landmarks.md).
        Either set faces the same anatomy checks.

    Returns
    -------
    AnalysisResult
        Its :meth:`~ttsfast.AnalysisResult.to_dict` follows ``ttsfast/data/report.schema.json``
        (``schema_version``); warnings are ``{code, stage, message}`` objects
        (:data:`ttsfast.warning_codes.WARNING_CODES`). ``status`` is ``"complete"``, or ``"partial"`` when the landmarks could not be found or
        are not trusted (:func:`ttsfast.anatomy.check_landmarks`) or the mechanics could not be
        measured: ``p_tts``, the cycle and the saliency maps are there, the landmark-dependent
        values (mechanics, the saliency's region shares) are None and ``withheld`` says why.

    Raises
    ------
    InputError
        Unreadable or invalid input or arguments, or not an echo clip.
    QualityError
        Nothing can be answered: less than one complete cardiac cycle, no motion.
    ModelError
        The model file is missing or does not match its model card.
    """
    from .cycle import detect_cycles
    from .flow import dense_flow
    from .preprocess import check_continuity, preprocess

    _check_options(device, landmark_detector, tracker, saliency)
    timings: dict[str, float] = {}
    t_start = time.perf_counter()
    with _timed(timings, "read"):
        clip = _read_source(source, fps)
    with _timed(timings, "preprocess"):
        prep = preprocess(clip, grid=grid)
        frame_r = check_continuity(prep.frames, prep.mask)
    with _timed(timings, "flow"):
        flow = dense_flow(prep.frames, mask=prep.mask, threads=threads, backend=flow_backend)
    with _timed(timings, "cycle"):
        cyc = detect_cycles(flow, fps=prep.fps, mask=prep.mask, single_beat=single_beat)
        chosen = cyc.beat(beat)  # QualityError when the clip holds no complete beat
    with _timed(timings, "landmarks"):
        lm_stage = find_landmarks(prep.frames, flow, chosen, prep.mask, landmarks, prep.to_grid,
                                  detector=landmark_detector)
    with _timed(timings, "mechanics"):
        mech_stage = mechanics_stage(prep, flow, cyc, beat, lm_stage, tracker=tracker, threads=threads,
                                     annulus_anchor=annulus_anchor)
    with _timed(timings, "model"):
        ms = model_stage(prep, flow, cyc, beat, model=model, device=device, with_cam=saliency in (True, "cam"),
                         score_all_beats=score_all_beats)
    with _timed(timings, "saliency"):
        sal = saliency_stage(ms, prep.mask, lm_stage, method=saliency, model=model)
    timings["total"] = round((time.perf_counter() - t_start) * 1e3, 2)
    return _assemble(source, clip, prep, cyc, beat, lm_stage, mech_stage, ms, sal, timings=timings,
                     quality={"frame_correlation": round(frame_r, 4)}, keep_arrays=keep_arrays)


def _check_options(device: str, landmark_detector: str, tracker: str, saliency: bool | str) -> None:
    """InputError for an ``analyze()`` option outside its choices."""
    from .mechanics import METHODS

    if device not in DEVICES:
        raise InputError(f"device must be one of {sorted(DEVICES)}, got {device!r}")
    if landmark_detector not in LANDMARK_DETECTORS:
        raise InputError(f"landmark_detector must be one of {', '.join(map(repr, LANDMARK_DETECTORS))}, "
                         f"got {landmark_detector!r}")
    if tracker not in METHODS:
        raise InputError(f"tracker must be one of {', '.join(map(repr, METHODS))}, got {tracker!r}")
    if saliency not in (True, False, "cam", "gradcam"):
        raise InputError(f"saliency must be True, False, 'cam' or 'gradcam', got {saliency!r}")


def _read_source(source: Any, fps: float | None) -> Clip:
    """The clip of a path, array or :class:`Clip`; a caller's ``fps`` replaces any rate but a
    DICOM's own timing."""
    from .io import read_clip

    if not isinstance(source, Clip):
        return read_clip(source, fps=fps)
    if fps is None or source.fps_source in ("dicom_frame_time", "dicom_frame_time_vector", "dicom_cine_rate"):
        return source
    return Clip(source.frames, fps=fps, fps_source="caller", mm_per_px=source.mm_per_px, metadata=source.metadata,
                warnings=list(source.warnings), overlay_mask=source.overlay_mask)


def _source_warnings(clip: Clip, prep: Any) -> list[ReportWarning]:
    """The reader's and the preprocessing's warnings, and one for a container's frame rate."""
    out = list(clip.warnings)
    if clip.fps_source == "container":
        out.append(warn("fps_from_container", f"frame rate {clip.fps:g} fps taken from the video container, which "
                        "is often the playback rate of a screen capture: heart rate and velocities assume it is "
                        "the acquisition rate; pass fps= if it is not"))
    return out + [w for w in prep.warnings if w not in out]


def _assemble(source: Any, clip: Clip, prep: Any, cyc: Any, beat: int, lm_stage: LandmarkStage,
              mech_stage: MechanicsStage, ms: ModelStage, sal: SaliencyStage, *, timings: dict[str, float],
              quality: dict[str, Any], keep_arrays: bool) -> AnalysisResult:
    """The :class:`AnalysisResult` of the stages' results."""
    withheld: dict[str, dict[str, str]] = {}
    if lm_stage.withheld is not None:
        withheld["mechanics"] = withheld["saliency_regions"] = lm_stage.withheld
    if mech_stage.withheld is not None:
        withheld["mechanics"] = mech_stage.withheld
    warnings = _source_warnings(clip, prep) + cyc.warnings + mech_stage.warnings + ms.warnings + sal.warnings
    if "mechanics" in withheld:
        warnings.append(warn("mechanics_withheld", f"mechanics withheld: {withheld['mechanics']['reason']}"))
    mech = mech_stage.mechanics
    mdict = None if mech is None else mech.to_dict()
    if mdict is not None:
        mdict.pop("landmarks")
    cycle = cyc.to_dict()
    cycle.update(fps=prep.fps, fps_source=prep.fps_source,
                 beats=[{"ed": int(a), "es": int(b), "next_ed": int(c), "p_tts": None if pb is None else round(pb, 4)}
                        for (a, b, c), pb in zip(cyc.beats, ms.p_beats)],
                 chosen_beat=int(beat))
    arrays = None
    if keep_arrays:
        tracks = {} if mech is None else {k: np.asarray(v) for k, v in mech.tracks.items()}
        arrays = BeatArrays(frames=ms.frames_beat, saliency=sal.maps, tracks=_tracks_on_beat(tracks, FRAMES_PER_BEAT),
                            es_index=ms.es_index)
    return AnalysisResult(p_tts=ms.p_tts, label=ms.label, model=ms.card, cycle=cycle, landmarks=lm_stage.to_dict(),
                          mechanics=mdict, saliency=sal.summary, warnings=list(dict.fromkeys(warnings)),
                          status="partial" if withheld else "complete", withheld=withheld,
                          timings_ms=timings, source=_source_info(source, clip, prep), beat=arrays,
                          to_original=prep.to_original, quality=quality)


def _source_info(source: Any, clip: Clip, prep: Any) -> dict[str, Any]:
    """The report's ``source``: the clip's metadata, sizes, grid and calibration."""
    info = dict(clip.metadata)
    info.update(n_frames=clip.n_frames, original_size=list(clip.shape), mm_per_px=clip.mm_per_px,
                grid=list(prep.grid), grid_mm_per_px=prep.mm_per_px, grid_scale=prep.scale)
    if isinstance(source, (str, os.PathLike)):
        info["file"] = Path(source).name
    return info


__all__ = ["analyze", "find_landmarks", "saliency_summary", "LandmarkStage", "LANDMARK_DETECTORS", "LANDMARKS_HINT"]
