"""``ttsfast.analyze()``: the only place that strings the stages together.

read -> preprocess -> flow -> cycle -> mechanics -> model (ONNX Runtime) -> saliency, each
timed. Nothing is reloaded on a second call in the same process: the ONNX Runtime session is
cached by :mod:`ttsfast.model.runtime`, the Numba kernels by Numba's cache.
"""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from .clip import Clip
from .errors import InputError, QualityError, TTSFastError
from .result import AnalysisResult, BeatArrays

#: Frames per beat for the model and the paper's measure.
N_BEAT = 32
_DEVICES = {"auto": "auto", "cpu": "cpu", "cuda": "cuda", "gpu": "cuda"}


@contextmanager
def _timed(timings: dict[str, float], name: str) -> Iterator[None]:
    t0 = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = round((time.perf_counter() - t0) * 1e3, 2)


def _es_index(beat: tuple[int, int, int], n: int) -> int:
    ed, es, ned = beat
    return int(round((es - ed) / max(ned - ed, 1) * (n - 1)))


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
        keeps its own track, with a warning; README "Accuracy"). Not applied with
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
        ``status`` is ``"complete"``, or ``"partial"`` when the landmarks could not be found or
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
    from .io import read_clip
    from .mechanics import METHODS, measure_mechanics
    from .model.gradcam import cam_from_raw
    from .model.inputs import beat_inputs
    from .model.runtime import model_card, predict
    from .preprocess import check_continuity, preprocess

    if device not in _DEVICES:
        raise InputError(f"device must be one of {sorted(_DEVICES)}, got {device!r}")
    if landmark_detector not in LANDMARK_DETECTORS:
        raise InputError(f"landmark_detector must be one of {', '.join(map(repr, LANDMARK_DETECTORS))}, "
                         f"got {landmark_detector!r}")
    if tracker not in METHODS:
        raise InputError(f"tracker must be one of {', '.join(map(repr, METHODS))}, got {tracker!r}")
    if saliency not in (True, False, "cam", "gradcam"):
        raise InputError(f"saliency must be True, False, 'cam' or 'gradcam', got {saliency!r}")
    timings: dict[str, float] = {}
    warnings: list[str] = []
    t_start = time.perf_counter()

    with _timed(timings, "read"):
        if isinstance(source, Clip):
            clip = source
            if fps is not None and clip.fps_source not in ("dicom_frame_time", "dicom_frame_time_vector",
                                                           "dicom_cine_rate"):
                clip = Clip(clip.frames, fps=fps, fps_source="caller", mm_per_px=clip.mm_per_px,
                            metadata=clip.metadata, warnings=list(clip.warnings), overlay_mask=clip.overlay_mask)
        else:
            clip = read_clip(source, fps=fps)
    warnings += clip.warnings
    if clip.fps_source == "container":
        warnings.append(f"frame rate {clip.fps:g} fps taken from the video container, which is often the playback "
                        "rate of a screen capture: heart rate and velocities assume it is the acquisition rate; "
                        "pass fps= if it is not")

    with _timed(timings, "preprocess"):
        prep = preprocess(clip, grid=grid)
        frame_r = check_continuity(prep.frames, prep.mask)
    warnings += [w for w in prep.warnings if w not in warnings]

    with _timed(timings, "flow"):
        flow = dense_flow(prep.frames, mask=prep.mask, threads=threads, backend=flow_backend)

    with _timed(timings, "cycle"):
        cyc = detect_cycles(flow, fps=prep.fps, mask=prep.mask, single_beat=single_beat)
        warnings += [f"cycle: {w}" for w in cyc.warnings]
        chosen = cyc.beat(beat)  # QualityError when the clip holds no complete beat

    withheld: dict[str, dict[str, str]] = {}
    with _timed(timings, "landmarks"):
        lm_stage = find_landmarks(prep.frames, flow, chosen, prep.mask, landmarks, prep.to_grid,
                                  detector=landmark_detector)
        if lm_stage.withheld is not None:
            withheld["mechanics"] = withheld["saliency_regions"] = lm_stage.withheld
    mech = None
    with _timed(timings, "mechanics"):
        if lm_stage.trusted:
            try:
                mech = measure_mechanics(prep.frames, flow, chosen, landmarks=lm_stage.landmarks, fps=prep.fps,
                                         mm_per_px=prep.mm_per_px, to_original=prep.to_original,
                                         to_grid=prep.to_grid, mask=prep.mask,
                                         beat_times=cyc.beat_times[beat] if cyc.beat_times else None,
                                         method=tracker, threads=threads, annulus_anchor=bool(annulus_anchor))
                warnings += [f"mechanics: {w}" for w in mech.warnings]
            except QualityError as exc:
                withheld["mechanics"] = _withheld("mechanics_failed", f"the mechanics could not be measured: {exc}")
        elif lm_stage.landmarks is not None:
            warnings += [f"landmarks: {w}" for w in lm_stage.landmarks.warnings]

    ed, es, ned = chosen
    es32 = _es_index(chosen, N_BEAT)
    with _timed(timings, "model"):
        frames_beat, _, spatial, temporal = beat_inputs(prep.frames, flow, prep.mask, ed, ned, N_BEAT)
        out = predict(spatial, temporal, model=model, providers=_DEVICES[device],
                      with_cam=saliency in (True, "cam"), with_features=True)
        p_tts = float(out.p_tts[0])
        label = "TTS" if p_tts >= 0.5 else "STEMI"
        card = _model_summary(model, model_card, out, warnings)
        if score_all_beats:
            p_beats = _score_other_beats(prep.frames, flow, prep.mask, cyc.beats, beat, p_tts, model,
                                         _DEVICES[device])
            warnings += _beat_agreement_warnings(p_beats, beat)
        else:
            p_beats = [p_tts if i == beat else None for i in range(len(cyc.beats))]

    sal_maps: dict[str, np.ndarray] = {}
    sal_summary: dict[str, Any] = {}
    with _timed(timings, "saliency"):
        if saliency:
            target = 1 if label == "TTS" else 0
            out_size = (N_BEAT,) + tuple(prep.frames.shape[1:])
            if saliency == "gradcam":
                maps = _gradcam_maps(model, spatial, temporal, target, out_size)
            else:
                maps = cam_from_raw(out.cam_spatial, out.cam_temporal, classes=(target,), out_size=out_size)
            trusted_lm = lm_stage.landmarks if lm_stage.trusted else None
            for arm in ("spatial", "temporal"):
                m = np.asarray(maps[arm][0, 0], np.float32)
                np.multiply(m, prep.mask[None], out=m)  # in place: no second [T,H,W] map
                sal_maps[arm] = m
                summary, notes = saliency_summary(m, trusted_lm, es32)
                summary.update(target_class=label, method="gradcam" if saliency == "gradcam" else "cam")
                sal_summary[arm] = summary
                warnings += [f"saliency {arm}: {n}" for n in notes]
    timings["total"] = round((time.perf_counter() - t_start) * 1e3, 2)

    mdict = None if mech is None else mech.to_dict()
    if mdict is not None:
        mdict.pop("landmarks")
    cycle = cyc.to_dict()
    cycle.update(fps=prep.fps, fps_source=prep.fps_source,
                 beats=[{"ed": int(a), "es": int(b), "next_ed": int(c), "p_tts": None if pb is None else round(pb, 4)}
                        for (a, b, c), pb in zip(cyc.beats, p_beats)],
                 chosen_beat=int(beat))
    landmarks_grid = lm_stage.to_dict()
    arrays = None
    if keep_arrays:
        tracks = {} if mech is None else {k: np.asarray(v) for k, v in mech.tracks.items()}
        arrays = BeatArrays(frames=frames_beat, saliency=sal_maps, tracks=_tracks_on_beat(tracks, N_BEAT),
                            es_index=es32)
    source_info = {k: v for k, v in clip.metadata.items()}
    source_info.update(n_frames=clip.n_frames, original_size=list(clip.shape), mm_per_px=clip.mm_per_px,
                       grid=list(prep.grid), grid_mm_per_px=prep.mm_per_px, grid_scale=prep.scale)
    if isinstance(source, (str, os.PathLike)):
        source_info["file"] = Path(source).name
    if "mechanics" in withheld:
        warnings.append(f"mechanics withheld: {withheld['mechanics']['reason']}")
    return AnalysisResult(p_tts=p_tts, label=label, model=card, cycle=cycle, landmarks=landmarks_grid,
                          mechanics=mdict, saliency=sal_summary, warnings=_dedupe(warnings),
                          status="partial" if withheld else "complete", withheld=withheld,
                          timings_ms=timings, source=source_info, beat=arrays, to_original=prep.to_original,
                          quality={"frame_correlation": round(frame_r, 4)})


#: What a partial report tells the caller to do about its landmarks.
LANDMARKS_HINT = ("pass the landmarks by hand: analyze(..., landmarks={'septal_annulus': (x, y), "
                  "'lateral_annulus': (x, y), 'apex': (x, y)}) in original-image pixels on frame {frame} "
                  "(the first end-diastole), or ttsfast analyze --landmarks "
                  "'{{\"septal_annulus\": [x, y], \"lateral_annulus\": [x, y], \"apex\": [x, y]}}'")


def _withheld(code: str, reason: str, frame: int | None = None) -> dict[str, str]:
    """``{code, reason, hint}`` of a withheld part of the report."""
    d = {"code": code, "reason": reason}
    if frame is not None:
        d["hint"] = LANDMARKS_HINT.replace("{frame}", str(frame)).replace("{{", "{").replace("}}", "}")
    return d


@dataclass
class LandmarkStage:
    """The landmarks of the analysed beat and whether the mechanics may use them.

    Attributes
    ----------
    landmarks : Landmarks or None
        Grid px; None when none could be found.
    check : LandmarkCheck or None
        The anatomy checks (None when no landmarks were found).
    frame : int
        The end-diastolic frame the landmarks are on.
    to_original : callable or None
        Grid -> original-image px.
    withheld : dict or None
        ``{code, reason, hint}`` when the landmark-dependent values must be withheld.
    detector : str or None
        The automatic detector used (None for caller landmarks).
    """

    landmarks: Any
    check: Any
    frame: int
    to_original: Any = None
    withheld: dict[str, str] | None = None
    detector: str | None = None

    @property
    def trusted(self) -> bool:
        return self.withheld is None

    def to_dict(self) -> dict[str, Any]:
        """The report's ``landmarks`` (grid px; ``AnalysisResult.landmarks_in`` maps them)."""
        from .landmarks import LANDMARK_NAMES

        lm = self.landmarks
        d: dict[str, Any] = {n: None if lm is None else [float(v) for v in getattr(lm, n)] for n in LANDMARK_NAMES}
        d.update(source=None if lm is None else lm.source,
                 confidence=None if self.check is None else round(float(self.check.confidence), 3),
                 detector_confidence=None if lm is None else round(float(lm.confidence), 3),
                 mirrored=None if lm is None else bool(lm.mirrored), trusted=self.trusted, frame=int(self.frame),
                 detector=self.detector,
                 checks_failed=[] if self.check is None else list(self.check.failed))
        if self.withheld is not None:
            d["withheld_reason"] = self.withheld["reason"]
        return d


#: The automatic landmark detectors (``analyze(landmark_detector=)``).
LANDMARK_DETECTORS = ("classic", "cnn")


def find_landmarks(frames: np.ndarray, flow: np.ndarray, beat: tuple[int, int, int], mask: np.ndarray,
                   landmarks: Mapping[str, Any] | None, to_grid: Any = None,
                   detector: str = "classic") -> LandmarkStage:
    """The caller's landmarks (validated) or automatic ones, checked against the anatomy.

    Parameters
    ----------
    frames : np.ndarray
        uint8 ``[T, H, W]`` analysis grid.
    flow : np.ndarray
        float32 ``[T-1, H, W, 2]``.
    beat : (int, int, int)
        ``(ed, es, next_ed)``.
    mask : np.ndarray
        bool ``[H, W]`` sector.
    landmarks : mapping or None
        The caller's, in original-image px (an invalid set raises InputError); None: automatic.
    to_grid : callable, optional
        Original -> grid px.
    detector : str
        ``"classic"`` or ``"cnn"`` (:data:`LANDMARK_DETECTORS`), when ``landmarks`` is None.

    Returns
    -------
    LandmarkStage
        ``withheld`` set when no landmarks were found, a check failed or the confidence is
        below :data:`ttsfast.anatomy.MIN_CONFIDENCE`.
    """
    from .anatomy import check_landmarks
    from .landmarks import detect_landmarks, landmarks_from_caller

    ed = int(beat[0])
    if landmarks is not None:
        lm = landmarks_from_caller(landmarks, frames.shape[1:], to_grid=to_grid)
    else:
        detect = detect_landmarks
        if detector == "cnn":
            from .landmarks_cnn import detect_landmarks_cnn as detect
        try:
            lm = detect(frames, flow, beat, mask=mask)
        except QualityError as exc:
            return LandmarkStage(None, None, ed, detector=detector, withheld=_withheld(
                "landmarks_not_found", f"no landmarks found automatically ({exc})", ed))
    check = check_landmarks(lm, frames[ed], mask)
    if check.trusted:
        lm.confidence = check.confidence if lm.source == "auto" else lm.confidence
        return LandmarkStage(lm, check, ed, detector=None if lm.source == "caller" else detector)
    src = "the automatic" if lm.source == "auto" else "the given"
    return LandmarkStage(lm, check, ed, detector=None if lm.source == "caller" else detector, withheld=_withheld(
        "landmarks_untrusted", f"{src} landmarks fail the apical-4-chamber anatomy checks: {check.reason()}", ed))


def saliency_summary(m: np.ndarray, landmarks: Any, es: int) -> tuple[dict[str, Any], list[str]]:
    """Summary of one arm's saliency map over the beat.

    Parameters
    ----------
    m : np.ndarray
        float32 ``[N, H, W]`` map over the resampled beat.
    landmarks : Landmarks or None
        Trusted landmarks (grid px); None leaves the region shares None.
    es : int
        End-systole index within the N frames.

    Returns
    -------
    (dict, list of str)
        ``regions``, ``base_share``/``mid_share``/``apical_share`` (None without landmarks),
        ``systole_share``/``diastole_share``, ``time_curve``; and notes.
    """
    from .model.gradcam import region_shares

    n = m.shape[0]
    curve = m.reshape(n, -1).sum(1, dtype=np.float64)
    total = float(curve.sum())
    out: dict[str, Any] = {"regions": None, "base_share": None, "mid_share": None, "apical_share": None}
    notes: list[str] = []
    if landmarks is not None:
        lm_grid = {k: getattr(landmarks, k) for k in ("septal_annulus", "lateral_annulus", "apex")}
        shares = region_shares(m, lm_grid, 0, es)
        out.update(regions=shares.regions, base_share=shares.base, mid_share=shares.mid, apical_share=shares.apical)
        notes = shares.notes
    sys_share = float(curve[:es].sum() / total) if total > 0 else 0.0
    out.update(systole_share=sys_share, diastole_share=1.0 - sys_share if total > 0 else 0.0,
               time_curve=(curve / total).round(5).tolist() if total > 0 else None)
    if total <= 0 and landmarks is None:
        notes = ["saliency map is all zeros"]
    return out, notes


def _score_other_beats(frames: np.ndarray, flow: np.ndarray, mask: np.ndarray, beats: list[tuple[int, int, int]],
                       chosen: int, p_chosen: float, model: Any, providers: str) -> list[float | None]:
    """p(TTS) of every complete beat (the chosen one's is ``p_chosen``), the others scored in
    one batch without saliency. ``frames [T,H,W]``, ``flow [T-1,H,W,2]``; beats in frames."""
    from .model.inputs import beat_inputs
    from .model.runtime import predict_batch

    others = [i for i in range(len(beats)) if i != chosen]
    p: list[float | None] = [p_chosen] * len(beats)
    if not others:
        return p
    ins = [beat_inputs(frames, flow, mask, beats[i][0], beats[i][2], N_BEAT)[2:] for i in others]
    out = predict_batch(np.concatenate([a for a, _ in ins]), np.concatenate([b for _, b in ins]),
                        model=model, providers=providers)
    for i, v in zip(others, out.p_tts):
        p[i] = float(v)
    return p


#: Beats whose p(TTS) spread more than this, or fall on both sides of 0.5, get a warning.
BEAT_SPREAD_WARN = 0.3


def _beat_agreement_warnings(p_beats: list[float], chosen: int) -> list[str]:
    """A warning when the complete beats of a clip get different answers (labels or a
    p(TTS) spread above :data:`BEAT_SPREAD_WARN`): the chosen beat's answer is then uncertain."""
    if len(p_beats) < 2:
        return []
    lo, hi = min(p_beats), max(p_beats)
    if (lo < 0.5 <= hi) or hi - lo > BEAT_SPREAD_WARN:
        return [f"model: the clip's {len(p_beats)} beats disagree (p(TTS) {lo:.2f} to {hi:.2f}; beat {chosen} "
                f"reported, see cycle.beats[].p_tts): treat the label as uncertain"]
    return []


def _dedupe(items: list[str]) -> list[str]:
    seen: set[str] = set()
    return [w for w in items if not (w in seen or seen.add(w))]


def _tracks_on_beat(tracks: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    """Keep trajectories that are sampled on the resampled beat (length n in time)."""
    return {k: v for k, v in tracks.items() if v.ndim in (2, 3) and v.shape[0] == n and v.shape[-1] == 2}


def _model_summary(model: Any, model_card: Any, out: Any, warnings: list[str]) -> dict[str, Any]:
    """The report's ``model``: name, sha256, trained_on (and the not-for-patients note) of the
    model in use, and ``in_distribution``, the score and flag of the clip's pooled features
    under the card's feature statistics (None for ``.pt`` checkpoints and for cards without
    statistics; a warning when the clip is outside them). The card is read once."""
    from .model.ood import in_distribution, ood_warning

    if model is not None and Path(model).suffix.lower() == ".pt":
        return {"name": Path(model).name, "sha256": None, "trained_on": "user checkpoint (unknown)",
                "in_distribution": None}
    try:
        card = model_card(model)
    except TTSFastError as exc:
        warnings.append(f"model: out-of-distribution check skipped: {exc}")
        return {"name": Path(model).name if model else "default", "sha256": None, "trained_on": None,
                "card_error": str(exc), "in_distribution": None}
    summary = {"name": card.get("name"), "sha256": card.get("sha256"), "trained_on": card.get("trained_on"),
               "warning": card.get("warning"), "in_distribution": None}
    try:
        summary["in_distribution"] = in_distribution(out.features_spatial[0], out.features_temporal[0], card)
    except TTSFastError as exc:
        warnings.append(f"model: out-of-distribution check skipped: {exc}")
        return summary
    w = ood_warning(summary["in_distribution"], card)
    if w:
        warnings.append(w)
    return summary


def _gradcam_maps(model: Any, spatial: np.ndarray, temporal: np.ndarray, target: int,
                  out_size: tuple[int, ...]) -> dict[str, np.ndarray]:
    from .model.gradcam import grad_cam
    from .model.runtime import load_torch_model

    net = load_torch_model(model)
    return grad_cam(net, spatial, temporal, classes=(target,), out_size=out_size)
