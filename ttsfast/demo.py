"""The bundled demo clip and the short human summary the ``ttsfast demo`` command prints."""
from __future__ import annotations

from pathlib import Path

from .errors import InputError
from .result import AnalysisResult
from .warning_codes import codes

#: A synthetic Takotsubo clip (``ttsfast synth --preset tts``), written as an ultrasound
#: multi-frame DICOM with FrameTime and a calibrated SequenceOfUltrasoundRegions.
DEMO_CLIP = Path(__file__).resolve().parent / "data" / "demo_tts.dcm"


def demo_clip_path() -> Path:
    """Path of the bundled demo clip (InputError if the installation lacks it)."""
    if not DEMO_CLIP.is_file():
        raise InputError(f"the bundled demo clip is missing ({DEMO_CLIP}); reinstall ttsfast")
    return DEMO_CLIP


def _fmt(v: object, unit: str = "", digits: int = 2) -> str:
    return "n/a" if not isinstance(v, (int, float)) else f"{v:.{digits}f}{unit}"


def format_summary(res: AnalysisResult, source: Path | str | None = None) -> str:
    """A few lines a clinician can read: verdict, cycle, the paper's measures, saliency, time."""
    d = res.to_dict()
    m = d["mechanics"] or {}
    pd = m.get("peak_displacement_px") or {}
    lines = []
    if source is not None:
        lines.append(f"clip: {Path(source).name} ({d['source'].get('n_frames')} frames, "
                     f"{_fmt(d['cycle'].get('fps'), ' fps', 1)} from {d['cycle'].get('fps_source')})")
    lines.append(f"p(TTS) = {res.p_tts:.2f} -> {res.label}   [model: {d['model'].get('name')}; "
                 f"{d['model'].get('trained_on')}]")
    ind = d["model"].get("in_distribution")
    if ind is not None:
        lines.append(f"like the model's training data: {'yes' if ind['in_distribution'] else 'NO'} "
                     f"(score {_fmt(ind['score'])}, threshold {_fmt(ind['threshold'])})")
    if d["status"] != "complete":
        for what, w in d["withheld"].items():
            lines.append(f"PARTIAL: {what} withheld ({w['code']}): {w['reason']}")
    per_beat = [b.get("p_tts") for b in d["cycle"].get("beats", [])]
    scored = " (p(TTS) per beat " + " / ".join(_fmt(p) for p in per_beat) + ")" if len(per_beat) > 1 else ""
    lines.append(f"heart rate {_fmt(d['cycle'].get('heart_rate_bpm'), ' bpm', 0)}, "
                 f"{len(per_beat)} complete beat(s){scored}; landmarks {d['landmarks'].get('source')} "
                 f"(confidence {_fmt(d['landmarks'].get('confidence'))})")
    for wall in ("basal_inferoseptal", "basal_anterolateral"):
        v = pd.get(wall) or {}
        lines.append(f"peak displacement {wall:20s} systolic {_fmt(v.get('systolic'), ' px')}, "
                     f"diastolic {_fmt(v.get('diastolic'), ' px')}  (paper's measure)")
    ex = m.get("excursion_mm") or {}
    lines.append(f"AV-plane excursion septal {_fmt(ex.get('basal_inferoseptal'), ' mm', 1)}, "
                 f"lateral {_fmt(ex.get('basal_anterolateral'), ' mm', 1)}; GLS {_fmt(m.get('gls_pct'), ' %', 1)}")
    sp, ep = m.get("s_prime_cm_s") or {}, m.get("e_prime_cm_s") or {}
    lines.append(f"S' septal {_fmt(sp.get('septal'), ' cm/s', 1)}, lateral {_fmt(sp.get('lateral'), ' cm/s', 1)}; "
                 f"E' septal {_fmt(ep.get('septal'), ' cm/s', 1)}, lateral {_fmt(ep.get('lateral'), ' cm/s', 1)}")
    for arm in ("spatial", "temporal"):
        s = d["saliency"].get(arm)
        if s:
            lines.append(f"{arm:8s} saliency: base {_fmt(s.get('base_share'))}, mid {_fmt(s.get('mid_share'))}, "
                         f"apex {_fmt(s.get('apical_share'))}; systole {_fmt(s.get('systole_share'))}")
    t = d["timings_ms"]
    lines.append("time: " + ", ".join(f"{k} {v:.0f}" for k, v in t.items() if k != "total")
                 + f"; total {t['total']:.0f} ms")
    for w in d["quality"]["warnings"][:5]:
        lines.append(f"warning [{w['code']}] {w['stage']}: {w['message']}")
    if len(d["quality"]["warnings"]) > 5:
        lines.append(f"... {len(d['quality']['warnings']) - 5} more warnings in the report "
                     f"({', '.join(codes(d['quality']['warnings'][5:]))})")
    return "\n".join(lines)
