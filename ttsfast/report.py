"""Reports of one analysis (JSON, figures, overlay video) and cohort figures.

Every writer builds its output in a temporary folder beside the target and moves it into place
only when complete, so an error never leaves half-written files behind."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import InputError
from .result import AnalysisResult
from .stats import STUDY_MEASURES, get_dotted
from .warning_codes import as_warning

ARMS = ("spatial", "temporal")


def _mpl():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def write_report(result: AnalysisResult, out_dir: str | os.PathLike, *, figures: bool = True,
                 video: bool = True, coords: str = "original") -> Path:
    """Write ``report.json`` and, with ``figures``, ``saliency.png`` (when the result has
    saliency), ``mechanics.png`` and ``overlay.mp4`` into ``out_dir`` (created; files are
    replaced atomically as one set)."""
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (tmp / "report.json").write_text(result.to_json(coords))
        if figures and result.beat is not None:
            if result.beat.saliency:  # analyze(saliency=False) / --saliency none: no saliency figure
                plot_saliency(result, tmp / "saliency.png")
            plot_mechanics(result, tmp / "mechanics.png")
            if video:
                write_overlay_video(result, tmp / "overlay.mp4")
        out.mkdir(exist_ok=True)
        for f in tmp.iterdir():
            os.replace(f, out / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _phase_indices(n: int, k: int = 6) -> np.ndarray:
    return np.linspace(0, n - 1, k).round().astype(int)


def plot_saliency(result: AnalysisResult, path: str | os.PathLike) -> None:
    """Each arm's saliency over the beat on the echo: 6 phases per arm and the share of
    saliency per frame over the beat, end-systole marked."""
    plt = _mpl()
    beat = result.beat
    if beat is None or not beat.saliency:
        raise InputError("the result carries no beat arrays; run analyze(..., saliency=True)")
    n = beat.frames.shape[0]
    idx = _phase_indices(n)
    fig, axes = plt.subplots(3, len(idx), figsize=(2.4 * len(idx), 6.6),
                             gridspec_kw={"height_ratios": [1, 1, 0.8]})
    for r, arm in enumerate(ARMS):
        sal = beat.saliency.get(arm)
        for c, t in enumerate(idx):
            ax = axes[r, c]
            ax.imshow(beat.frames[t], cmap="gray", vmin=0, vmax=255)
            if sal is not None:
                ax.imshow(sal[t], cmap="jet", alpha=0.4 * (sal[t] > 0.05), vmin=0, vmax=1)
            for name, tr in beat.tracks.items():
                if tr.ndim == 2:
                    ax.plot(tr[t, 0], tr[t, 1], "o", ms=3, color="lime")
            ax.set_xticks([]); ax.set_yticks([])
            if r == 0:
                ax.set_title(f"{t}/{n - 1}" + (" ES" if beat.es_index == t else ""), fontsize=8)
        axes[r, 0].set_ylabel(arm, fontsize=10)
    gs = axes[2, 0].get_gridspec()
    for ax in axes[2, :]:
        ax.remove()
    ax = fig.add_subplot(gs[2, :])
    for arm in ARMS:
        sal = beat.saliency.get(arm)
        if sal is not None:
            curve = sal.reshape(n, -1).sum(1)
            ax.plot(np.arange(n) / max(n - 1, 1), curve / max(curve.sum(), 1e-12), label=arm)
    if beat.es_index is not None:
        ax.axvline(beat.es_index / max(n - 1, 1), color="k", ls="--", lw=0.8, label="end-systole")
    ax.set_xlabel("normalised beat (0 = end-diastole)")
    ax.set_ylabel("share of saliency")
    ax.legend(fontsize=8)
    p = result.p_tts
    fig.suptitle(f"Grad-CAM saliency per arm   p(TTS) = {p:.2f}" if p is not None else "Grad-CAM saliency per arm")
    fig.tight_layout()
    _warning_footer(fig, result, ("model", "saliency"))
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_mechanics(result: AnalysisResult, path: str | os.PathLike) -> None:
    """Longitudinal displacement of the basal points and segmental strain over the beat, with
    the paper's peak systolic/diastolic steps and the peak strains marked."""
    plt = _mpl()
    if result.mechanics is None:
        _plot_withheld(plt, result, path)
        return
    mech = result.mechanics
    curves = mech.get("curves") or {}
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    disp = curves.get("displacement_px") or {}
    for name, ys in disp.items():
        if ys is None:
            continue
        y = np.asarray(ys, dtype=float)
        x = np.arange(y.size)
        a1.plot(x, y, label=name)
        for phase, marker in (("systolic", "v"), ("diastolic", "^")):
            i = (curves.get("peak_step_index") or {}).get(name, {}).get(phase)
            if i is not None and 0 < i < y.size:
                a1.plot([i - 1, i], y[[i - 1, i]], marker + "-", color="k", ms=6)
    es = curves.get("es_index")
    for ax in (a1, a2):
        if es is not None:
            ax.axvline(es, color="gray", ls="--", lw=0.8)
        ax.set_xlabel("frame of the beat (resampled)")
    a1.set_ylabel("longitudinal displacement toward apex (px)")
    a1.set_title("AV-plane displacement; peak steps marked")
    a1.legend(fontsize=7)
    strain = curves.get("strain_pct") or {}
    for name, ys in strain.items():
        if ys is None:
            continue
        y = np.asarray(ys, dtype=float)
        ln, = a2.plot(np.arange(y.size), y, label=name)
        if np.isfinite(y).any():
            i = int(np.nanargmin(y))
            a2.plot(i, y[i], "o", color=ln.get_color())
    a2.set_ylabel("longitudinal strain (%)")
    a2.set_title("segmental strain; peaks marked")
    a2.legend(fontsize=7)
    fig.tight_layout()
    _warning_footer(fig, result, ("landmarks", "mechanics"))
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _warning_footer(fig: Any, result: AnalysisResult, stages: Sequence[str]) -> None:
    """The codes of ``result``'s warnings from ``stages`` at the bottom of ``fig`` (none: nothing)."""
    ws = [w for w in map(as_warning, result.warnings) if w.stage in stages]
    if ws:
        text = "warnings: " + ", ".join(dict.fromkeys(w.code for w in ws)) + " (messages in report.json)"
        fig.text(0.005, 0.005, text, fontsize=7, color="darkred", va="bottom", ha="left")


def _plot_withheld(plt: Any, result: AnalysisResult, path: str | os.PathLike) -> None:
    """``mechanics.png`` of a partial result: why the mechanics were withheld and how to supply
    landmarks, in place of the curves, beside the end-diastolic frame with the landmarks that
    were not trusted (when there are any)."""
    import textwrap

    info = result.withheld.get("mechanics") or {"code": "unknown", "reason": "no mechanics in this result"}
    text = "\n".join(textwrap.fill(t, 110) for t in (
        f"Mechanics withheld ({info.get('code')})", info.get("reason", ""), info.get("hint", "")) if t)
    lm = result.landmarks or {}
    pts = {n: lm.get(n) for n in ("septal_annulus", "lateral_annulus", "apex")}
    show_frame = result.beat is not None and all(v is not None for v in pts.values())
    fig, axes = plt.subplots(1, 2 if show_frame else 1, figsize=(11, 4.2 if show_frame else 2.6),
                             gridspec_kw={"width_ratios": [1, 1.6]} if show_frame else None, squeeze=False)
    ax = axes[0, -1]
    ax.axis("off")
    ax.text(0.0, 1.0, text, va="top", ha="left", fontsize=8, family="monospace", transform=ax.transAxes)
    if show_frame:
        a0 = axes[0, 0]
        a0.imshow(result.beat.frames[0], cmap="gray", vmin=0, vmax=255)
        for name, (x, y) in pts.items():  # grid px, as the beat's frames
            a0.plot(x, y, "x", color="red", ms=9, mew=2)
            a0.annotate(name.split("_")[0], (x, y), color="red", fontsize=7, xytext=(4, -4), textcoords="offset points")
        a0.set_title(f"end-diastole: {lm.get('source')} landmarks, not trusted", fontsize=9)
        a0.set_xticks([]); a0.set_yticks([])
    fig.tight_layout()
    _warning_footer(fig, result, ("landmarks", "mechanics"))
    fig.savefig(path, dpi=80)
    plt.close(fig)


def write_overlay_video(result: AnalysisResult, path: str | os.PathLike, fps: float = 10.0) -> None:
    """The beat as an mp4: echo, temporal-arm saliency as a heat overlay, tracked points."""
    import cv2

    beat = result.beat
    if beat is None:
        raise InputError("the result carries no beat arrays")
    n, h, w = beat.frames.shape
    scale = 2
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w * scale, h * scale))
    if not writer.isOpened():
        raise InputError(f"cannot open a video writer for {path}")
    try:
        sal = beat.saliency.get("temporal")
        for t in range(n):
            img = cv2.cvtColor(beat.frames[t], cv2.COLOR_GRAY2BGR)
            if sal is not None:
                heat = cv2.applyColorMap((np.clip(sal[t], 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)
                a = (0.45 * np.clip(sal[t], 0, 1))[..., None]
                img = (img * (1 - a) + heat * a).astype(np.uint8)
            img = cv2.resize(img, (w * scale, h * scale), interpolation=cv2.INTER_LINEAR)
            for name, tr in beat.tracks.items():
                pts = tr[t] if tr.ndim == 3 else tr[t][None]
                for x, y in pts:
                    if np.isfinite(x) and np.isfinite(y):
                        cv2.circle(img, (int(round(x * scale)), int(round(y * scale))), 3, (0, 255, 0), -1)
            writer.write(img)
    finally:
        writer.release()


def plot_cohort_measures(records: Sequence[dict[str, Any]], labels: Sequence[str], path: str | os.PathLike) -> None:
    """Box and strip plot per study measure, TTS vs STEMI."""
    plt = _mpl()
    measures = [m for m in STUDY_MEASURES
                if any(isinstance(get_dotted(r, m[0]), (int, float)) for r in records)]
    if not measures:
        return
    ncol = 4
    nrow = (len(measures) + ncol - 1) // ncol
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 2.8 * nrow), squeeze=False)
    rng = np.random.default_rng(0)
    for ax, (key, label, unit) in zip(axes.ravel(), measures):
        data = []
        for cls in ("TTS", "STEMI"):
            v = [get_dotted(r, key) for r, c in zip(records, labels) if c == cls]
            data.append(np.asarray([x for x in v if isinstance(x, (int, float)) and np.isfinite(x)], float))
        ax.boxplot(data, showfliers=False)
        ax.set_xticks([1, 2], ["TTS", "STEMI"])
        for i, d in enumerate(data):
            ax.plot(i + 1 + rng.uniform(-0.12, 0.12, d.size), d, ".", alpha=0.5, ms=4)
        ax.set_title(label, fontsize=8)
        ax.set_ylabel(unit, fontsize=8)
    for ax in axes.ravel()[len(measures):]:
        ax.remove()
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_saliency_by_class(records: Sequence[dict[str, Any]], labels: Sequence[str], path: str | os.PathLike) -> None:
    """Mean share of saliency over the normalised beat, per class and arm (the study's picture),
    with ±1 SD bands."""
    plt = _mpl()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5), sharey=True)
    for ax, arm in zip(axes, ARMS):
        for cls in ("TTS", "STEMI"):
            curves = [get_dotted(r, f"saliency.{arm}.time_curve") for r, c in zip(records, labels) if c == cls]
            curves = [np.asarray(c, float) for c in curves if c]
            if not curves or len({c.size for c in curves}) != 1:
                continue
            a = np.stack(curves)
            x = np.linspace(0, 1, a.shape[1])
            m, s = a.mean(0), a.std(0)
            ax.plot(x, m, label=f"{cls} (n={len(curves)})")
            ax.fill_between(x, m - s, m + s, alpha=0.2)
        ax.set_title(f"{arm} arm")
        ax.set_xlabel("normalised beat (0 = end-diastole)")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("share of saliency per frame")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
