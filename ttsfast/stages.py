"""The stages of :func:`ttsfast.analyze` past the flow, each with a typed result.

:class:`LandmarkStage` (the landmarks and whether they are trusted), :class:`MechanicsStage`,
:class:`ModelStage` (scoring of the chosen beat and the clip's other beats) and
:class:`SaliencyStage` (CAM or Grad-CAM maps and their summary). ``analyze()`` runs them in
order and assembles the report from their results.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .constants import FRAMES_PER_BEAT
from .errors import QualityError, TTSFastError
from .warning_codes import ReportWarning, warn

#: Devices of ``analyze(device=)`` -> ONNX Runtime providers argument.
DEVICES = {"auto": "auto", "cpu": "cpu", "cuda": "cuda", "gpu": "cuda"}


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


@dataclass
class MechanicsStage:
    """The mechanics of the analysed beat, or why they were withheld.

    Attributes
    ----------
    mechanics : Mechanics or None
        :class:`ttsfast.mechanics.Mechanics`; None when withheld.
    withheld : dict or None
        ``{code, reason}`` when the mechanics could not be measured on trusted landmarks.
    warnings : list of ReportWarning
        The mechanics' warnings, or the untrusted landmarks' when nothing was measured.
    """

    mechanics: Any = None
    withheld: dict[str, str] | None = None
    warnings: list[ReportWarning] = field(default_factory=list)


def mechanics_stage(prep: Any, flow: np.ndarray, cyc: Any, beat: int, lm_stage: LandmarkStage, *,
                    tracker: str, threads: int | None, annulus_anchor: bool, dis_pairs: Any = None) -> MechanicsStage:
    """:func:`ttsfast.mechanics.measure_mechanics` of beat ``beat`` of ``cyc`` on trusted
    landmarks; nothing (with the landmarks' warnings) on untrusted ones. ``dis_pairs``: the
    tracking-flow pairs computed ahead (live path; ``measure_mechanics(dis_pairs=)``)."""
    from .mechanics import measure_mechanics

    if not lm_stage.trusted:
        return MechanicsStage(warnings=[] if lm_stage.landmarks is None else list(lm_stage.landmarks.warnings))
    try:
        mech = measure_mechanics(prep.frames, flow, cyc.beat(beat), landmarks=lm_stage.landmarks, fps=prep.fps,
                                 mm_per_px=prep.mm_per_px, to_original=prep.to_original, to_grid=prep.to_grid,
                                 mask=prep.mask, beat_times=cyc.beat_times[beat] if cyc.beat_times else None,
                                 method=tracker, threads=threads, annulus_anchor=bool(annulus_anchor),
                                 dis_pairs=dis_pairs)
    except QualityError as exc:
        return MechanicsStage(withheld=_withheld("mechanics_failed", f"the mechanics could not be measured: {exc}"))
    return MechanicsStage(mech, None, list(mech.warnings))


@dataclass
class ModelStage:
    """The model's answer for the analysed beat.

    Attributes
    ----------
    p_tts : float
        p(TTS) of the chosen beat.
    label : str
        ``"TTS"`` (p_tts >= 0.5) or ``"STEMI"``.
    card : dict
        The report's ``model`` (name, sha256, trained_on, in_distribution).
    p_beats : list of float or None
        p(TTS) of every complete beat (None where not scored).
    output : ModelOutput
        The raw ONNX Runtime output of the chosen beat (CAM activations included).
    frames_beat : np.ndarray
        float32 ``[N, H, W]`` the beat resampled to ``N`` = FRAMES_PER_BEAT frames (grid).
    spatial, temporal : np.ndarray
        The model's inputs ``[1, 1, N, h, w]`` and ``[1, 2, N, h, w]``.
    es_index : int
        End-systole index within the N frames.
    warnings : list of ReportWarning
    """

    p_tts: float
    label: str
    card: dict[str, Any]
    p_beats: list[float | None]
    output: Any
    frames_beat: np.ndarray
    spatial: np.ndarray
    temporal: np.ndarray
    es_index: int
    warnings: list[ReportWarning] = field(default_factory=list)


def _es_index(beat: tuple[int, int, int], n: int) -> int:
    ed, es, ned = beat
    return int(round((es - ed) / max(ned - ed, 1) * (n - 1)))


def model_stage(prep: Any, flow: np.ndarray, cyc: Any, beat: int, *, model: Any, device: str, with_cam: bool,
                score_all_beats: bool) -> ModelStage:
    """Score beat ``beat`` (with the CAM activations when ``with_cam``), check the clip against
    the model's training distribution, and score the clip's other beats in one batch."""
    from .model.inputs import beat_inputs
    from .model.runtime import predict

    ed, _, ned = chosen = cyc.beat(beat)
    frames_beat, _, spatial, temporal = beat_inputs(prep.frames, flow, prep.mask, ed, ned, FRAMES_PER_BEAT)
    out = predict(spatial, temporal, model=model, providers=DEVICES[device], with_cam=with_cam, with_features=True)
    p_tts = float(out.p_tts[0])
    warnings: list[ReportWarning] = []
    card = _model_summary(model, out, warnings)
    if score_all_beats:
        p_beats = _score_other_beats(prep.frames, flow, prep.mask, cyc.beats, beat, p_tts, model, DEVICES[device])
        warnings += _beat_agreement_warnings(p_beats, beat)
    else:
        p_beats = [p_tts if i == beat else None for i in range(len(cyc.beats))]
    return ModelStage(p_tts, "TTS" if p_tts >= 0.5 else "STEMI", card, p_beats, out, frames_beat, spatial, temporal,
                      _es_index(chosen, FRAMES_PER_BEAT), warnings)


@dataclass
class SaliencyStage:
    """Saliency maps of the analysed beat and their summary.

    Attributes
    ----------
    maps : dict
        ``{"spatial", "temporal"}`` -> float32 ``[N, H, W]`` on the grid, zero outside the sector.
    summary : dict
        The report's ``saliency`` (per arm: :func:`saliency_summary` plus target class and method).
    warnings : list of ReportWarning
    """

    maps: dict[str, np.ndarray] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    warnings: list[ReportWarning] = field(default_factory=list)


def saliency_stage(ms: ModelStage, mask: np.ndarray, lm_stage: LandmarkStage, *, method: bool | str,
                   model: Any) -> SaliencyStage:
    """The saliency of the model's answer: ``method`` True/``"cam"`` from the ONNX graph's
    activations, ``"gradcam"`` by the PyTorch hooks path, False for none."""
    from .model.gradcam import cam_from_raw

    st = SaliencyStage()
    if not method:
        return st
    target = 1 if ms.label == "TTS" else 0
    out_size = (FRAMES_PER_BEAT,) + tuple(mask.shape)
    if method == "gradcam":
        maps = _gradcam_maps(model, ms.spatial, ms.temporal, target, out_size)
    else:
        maps = cam_from_raw(ms.output.cam_spatial, ms.output.cam_temporal, classes=(target,), out_size=out_size)
    trusted_lm = lm_stage.landmarks if lm_stage.trusted else None
    for arm in ("spatial", "temporal"):
        m = np.asarray(maps[arm][0, 0], np.float32)
        np.multiply(m, mask[None], out=m)  # in place: no second [T,H,W] map
        st.maps[arm] = m
        summary, notes = saliency_summary(m, trusted_lm, ms.es_index)
        summary.update(target_class=ms.label, method="gradcam" if method == "gradcam" else "cam")
        st.summary[arm] = summary
        st.warnings += [warn("saliency_zero", f"{arm}: {n}") for n in notes]
    return st


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
    ins = [beat_inputs(frames, flow, mask, beats[i][0], beats[i][2], FRAMES_PER_BEAT)[2:] for i in others]
    out = predict_batch(np.concatenate([a for a, _ in ins]), np.concatenate([b for _, b in ins]),
                        model=model, providers=providers)
    for i, v in zip(others, out.p_tts):
        p[i] = float(v)
    return p


#: Beats whose p(TTS) spread more than this, or fall on both sides of 0.5, get a warning.
BEAT_SPREAD_WARN = 0.3


def _beat_agreement_warnings(p_beats: list[float], chosen: int) -> list[ReportWarning]:
    """A warning when the complete beats of a clip get different answers (labels or a
    p(TTS) spread above :data:`BEAT_SPREAD_WARN`): the chosen beat's answer is then uncertain."""
    if len(p_beats) < 2:
        return []
    lo, hi = min(p_beats), max(p_beats)
    if (lo < 0.5 <= hi) or hi - lo > BEAT_SPREAD_WARN:
        return [warn("beats_disagree", f"the clip's {len(p_beats)} beats disagree (p(TTS) {lo:.2f} to {hi:.2f}; "
                     f"beat {chosen} reported, see cycle.beats[].p_tts): treat the label as uncertain")]
    return []


def _tracks_on_beat(tracks: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    """Keep trajectories that are sampled on the resampled beat (length n in time)."""
    return {k: v for k, v in tracks.items() if v.ndim in (2, 3) and v.shape[0] == n and v.shape[-1] == 2}


def _model_summary(model: Any, out: Any, warnings: list[ReportWarning]) -> dict[str, Any]:
    """The report's ``model``: name, sha256, trained_on (and the not-for-patients note) of the
    model in use, and ``in_distribution``, the score and flag of the clip's pooled features
    under the card's feature statistics (None for ``.pt`` checkpoints and for cards without
    statistics; a warning when the clip is outside them). The card is read once."""
    from .model.ood import in_distribution, ood_warning
    from .model.runtime import model_card

    if model is not None and Path(model).suffix.lower() == ".pt":
        return {"name": Path(model).name, "sha256": None, "trained_on": "user checkpoint (unknown)",
                "in_distribution": None}
    try:
        card = model_card(model)
    except TTSFastError as exc:
        warnings.append(warn("ood_check_skipped", f"out-of-distribution check skipped: {exc}"))
        return {"name": Path(model).name if model else "default", "sha256": None, "trained_on": None,
                "card_error": str(exc), "in_distribution": None}
    summary = {"name": card.get("name"), "sha256": card.get("sha256"), "trained_on": card.get("trained_on"),
               "warning": card.get("warning"), "in_distribution": None}
    try:
        summary["in_distribution"] = in_distribution(out.features_spatial[0], out.features_temporal[0], card)
    except TTSFastError as exc:
        warnings.append(warn("ood_check_skipped", f"out-of-distribution check skipped: {exc}"))
        return summary
    w = ood_warning(summary["in_distribution"], card)
    if w:
        warnings.append(warn("out_of_distribution", w))
    return summary


def _gradcam_maps(model: Any, spatial: np.ndarray, temporal: np.ndarray, target: int,
                  out_size: tuple[int, ...]) -> dict[str, np.ndarray]:
    from .model.gradcam import grad_cam
    from .model.runtime import load_torch_model

    net = load_torch_model(model)
    return grad_cam(net, spatial, temporal, classes=(target,), out_size=out_size)
