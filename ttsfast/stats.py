"""Cohort statistics: the study's table (TTS vs STEMI, mean ± SD, Welch t and Mann-Whitney p)
and classification metrics. Plain functions on lists and arrays; no file I/O."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .errors import InputError

#: The measures of the study's table: (dotted key in ``AnalysisResult.to_dict()``, label, unit).
STUDY_MEASURES: tuple[tuple[str, str, str], ...] = (
    ("mechanics.peak_displacement_px.basal_inferoseptal.systolic", "Peak displacement basal inferoseptal, systolic", "px"),
    ("mechanics.peak_displacement_px.basal_inferoseptal.diastolic", "Peak displacement basal inferoseptal, diastolic", "px"),
    ("mechanics.peak_displacement_px.basal_anterolateral.systolic", "Peak displacement basal anterolateral, systolic", "px"),
    ("mechanics.peak_displacement_px.basal_anterolateral.diastolic", "Peak displacement basal anterolateral, diastolic", "px"),
    ("mechanics.excursion_mm.basal_inferoseptal", "AV-plane excursion basal inferoseptal", "mm"),
    ("mechanics.excursion_mm.basal_anterolateral", "AV-plane excursion basal anterolateral", "mm"),
    ("mechanics.strain_peak_pct.basal_inferoseptal", "Longitudinal strain basal inferoseptal", "%"),
    ("mechanics.strain_peak_pct.mid_inferoseptal", "Longitudinal strain mid inferoseptal", "%"),
    ("mechanics.strain_peak_pct.apical_inferoseptal", "Longitudinal strain apical inferoseptal", "%"),
    ("mechanics.strain_peak_pct.basal_anterolateral", "Longitudinal strain basal anterolateral", "%"),
    ("mechanics.strain_peak_pct.mid_anterolateral", "Longitudinal strain mid anterolateral", "%"),
    ("mechanics.strain_peak_pct.apical_anterolateral", "Longitudinal strain apical anterolateral", "%"),
    ("mechanics.gls_pct", "Global longitudinal strain", "%"),
    ("mechanics.e_prime_cm_s.septal", "E' septal", "cm/s"),
    ("mechanics.s_prime_cm_s.septal", "S' septal", "cm/s"),
    ("mechanics.e_prime_cm_s.lateral", "E' lateral", "cm/s"),
    ("mechanics.s_prime_cm_s.lateral", "S' lateral", "cm/s"),
    ("p_tts", "Model p(TTS)", ""),
)


def get_dotted(d: Mapping[str, Any], key: str) -> Any:
    """Value of a dotted key (``"a.b.c"``) in nested dicts; None when any part is missing."""
    cur: Any = d
    for part in key.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return None
        cur = cur[part]
    return cur


def _finite(values: Iterable[Any]) -> np.ndarray:
    out = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
    return np.asarray(out, dtype=np.float64)


@dataclass
class MeasureRow:
    """One row of the study's table.

    Attributes
    ----------
    key, label, unit : str
        Dotted report key, human label and unit.
    n_tts, n_stemi : int
        Number of clips with a finite value in each class.
    mean_tts, sd_tts, mean_stemi, sd_stemi : float
        Mean and sample standard deviation (ddof=1) per class; NaN when n < 1 (SD: n < 2).
    p_welch, p_mannwhitney : float
        Two-sided p-values of Welch's t-test and the Mann-Whitney U test; NaN when a class has
        fewer than 2 values.
    """

    key: str
    label: str
    unit: str
    n_tts: int
    mean_tts: float
    sd_tts: float
    n_stemi: int
    mean_stemi: float
    sd_stemi: float
    p_welch: float
    p_mannwhitney: float


def _mean_sd(x: np.ndarray) -> tuple[float, float]:
    mean = float(x.mean()) if x.size else float("nan")
    sd = float(x.std(ddof=1)) if x.size > 1 else float("nan")
    return mean, sd


def compare_groups(tts: Sequence[float], stemi: Sequence[float]) -> tuple[float, float]:
    """Two-sided p-values (Welch t-test, Mann-Whitney U) of two samples; NaN when either has
    fewer than 2 finite values or both are constant."""
    from scipy import stats

    a, b = _finite(tts), _finite(stemi)
    if a.size < 2 or b.size < 2:
        return float("nan"), float("nan")
    if np.ptp(np.concatenate([a, b])) == 0:
        return float("nan"), float("nan")
    p_t = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    p_u = float(stats.mannwhitneyu(a, b, alternative="two-sided").pvalue)
    return p_t, p_u


def study_table(records: Sequence[Mapping[str, Any]], labels: Sequence[str],
                measures: Sequence[tuple[str, str, str]] = STUDY_MEASURES) -> list[MeasureRow]:
    """The study's table from per-clip reports.

    Parameters
    ----------
    records : sequence of dict
        ``AnalysisResult.to_dict()`` of each clip.
    labels : sequence of str
        Class of each record: ``"TTS"`` or ``"STEMI"`` (others, e.g. ``"CTRL"``, are ignored).
    measures : sequence of (key, label, unit)
        Which measures to tabulate.
    """
    if len(records) != len(labels):
        raise InputError(f"{len(records)} records but {len(labels)} labels")
    rows = []
    for key, label, unit in measures:
        tts = _finite(get_dotted(r, key) for r, c in zip(records, labels) if c == "TTS")
        stemi = _finite(get_dotted(r, key) for r, c in zip(records, labels) if c == "STEMI")
        mt, st = _mean_sd(tts)
        ms, ss = _mean_sd(stemi)
        pt, pu = compare_groups(tts, stemi)
        rows.append(MeasureRow(key, label, unit, int(tts.size), mt, st, int(stemi.size), ms, ss, pt, pu))
    return rows


def _fmt(v: float, digits: int = 2) -> str:
    return "n/a" if not math.isfinite(v) else f"{v:.{digits}f}"


def _fmt_p(p: float) -> str:
    if not math.isfinite(p):
        return "n/a"
    return "<0.001" if p < 1e-3 else f"{p:.3f}"


def table_markdown(rows: Sequence[MeasureRow]) -> str:
    """The table as GitHub Markdown (mean ± SD per class, n, p-values)."""
    out = ["| measure | unit | TTS mean ± SD | n | STEMI mean ± SD | n | p (Welch t) | p (Mann-Whitney) |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r.label} | {r.unit} | {_fmt(r.mean_tts)} ± {_fmt(r.sd_tts)} | {r.n_tts} | "
                   f"{_fmt(r.mean_stemi)} ± {_fmt(r.sd_stemi)} | {r.n_stemi} | {_fmt_p(r.p_welch)} | "
                   f"{_fmt_p(r.p_mannwhitney)} |")
    return "\n".join(out) + "\n"


def table_csv_rows(rows: Sequence[MeasureRow]) -> list[dict[str, Any]]:
    """The table as dicts for ``csv.DictWriter`` (full precision)."""
    return [dict(r.__dict__) for r in rows]


def roc_auc(y_true: Sequence[int], score: Sequence[float]) -> float:
    """Area under the ROC curve (probability that a random positive scores above a random
    negative, ties counted half); NaN when a class is missing."""
    y = np.asarray(y_true, dtype=np.int64)
    s = np.asarray(score, dtype=np.float64)
    pos, neg = s[y == 1], s[y == 0]
    if pos.size == 0 or neg.size == 0:
        return float("nan")
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([pos, neg]))
    return float((ranks[: pos.size].sum() - pos.size * (pos.size + 1) / 2) / (pos.size * neg.size))


def classification_metrics(y_true: Sequence[int], p_pos: Sequence[float], threshold: float = 0.5) -> dict[str, float]:
    """Accuracy, AUC, sensitivity and specificity of scores against 0/1 labels (1 = TTS)."""
    y = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(p_pos, dtype=np.float64)
    if y.shape != p.shape or y.size == 0:
        raise InputError("labels and scores must be non-empty and of equal length")
    pred = (p >= threshold).astype(np.int64)
    tp = int(((pred == 1) & (y == 1)).sum()); tn = int(((pred == 0) & (y == 0)).sum())
    fp = int(((pred == 1) & (y == 0)).sum()); fn = int(((pred == 0) & (y == 1)).sum())
    return {
        "n": int(y.size),
        "accuracy": (tp + tn) / y.size,
        "auc": roc_auc(y, p),
        "sensitivity": tp / (tp + fn) if tp + fn else float("nan"),
        "specificity": tn / (tn + fp) if tn + fp else float("nan"),
    }
