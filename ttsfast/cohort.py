"""Cohort runs: analyse many clips (locally in parallel or on a Dask cluster), keep going past
single failures, skip clips already done, and write the study's table and figures."""
from __future__ import annotations

import csv
import json
import os
import re
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from ._atomic import write_text_atomic
from .errors import InputError, TTSFastError
from .stats import STUDY_MEASURES, classification_metrics, study_table, table_csv_rows, table_markdown
from .warning_codes import codes

#: File endings read as clips when scanning a cohort folder (DICOM files may have none).
CLIP_SUFFIXES = {".dcm", ".dicom", ".mp4", ".avi", ".gif", ".mov", ".npy", ""}
CLASSES = ("TTS", "STEMI", "CTRL")


@dataclass
class CohortItem:
    """One clip of a cohort: its path, its class (or None) and its output folder name."""

    path: Path
    label: str | None
    key: str


@dataclass
class CohortSummary:
    """What a cohort run did.

    Attributes
    ----------
    done : list of str
        Keys analysed in this run.
    skipped : list of str
        Keys whose report already existed (not analysed again).
    failed : list of dict
        ``{"key", "path", "error", "message"}`` per clip that could not be analysed.
    partial : list of str
        Keys of the records whose report is ``"partial"`` (p(TTS), cycle and saliency, the
        landmark-dependent values withheld): results, counted in the table where they have a value.
    records : list of dict
        The report of every clip with a report (this run's and earlier ones).
    labels : list of str or None
        Class of each record.
    out_dir : Path
    """

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)
    partial: list[str] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    labels: list[str | None] = field(default_factory=list)
    out_dir: Path | None = None


def _safe_key(rel: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", rel).strip("_") or "clip"


def read_labels(path: str | os.PathLike) -> dict[str, str]:
    """Read ``labels.csv`` with columns ``file`` (path relative to the cohort folder, or a file
    name) and ``label`` (TTS, STEMI or CTRL, case-insensitive)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"labels file not found: {p}")
    out: dict[str, str] = {}
    with p.open(newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not {"file", "label"} <= {f.strip().lower() for f in reader.fieldnames}:
            raise InputError(f"{p}: labels CSV needs the columns 'file' and 'label', got {reader.fieldnames}")
        for row in reader:
            row = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
            lab = row["label"].upper()
            if lab not in CLASSES:
                raise InputError(f"{p}: label {row['label']!r} of {row['file']!r} is not one of {CLASSES}")
            out[row["file"]] = lab
    return out


def find_clips(root: str | os.PathLike, labels: dict[str, str] | None = None) -> list[CohortItem]:
    """Clips under ``root``: files with a clip ending (DICOMs without ending included), and
    folders of PNG frames. The class comes from ``labels`` (by relative path or file name) or
    else from a parent folder named TTS, STEMI or CTRL."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"cohort folder not found: {root}")
    items: list[CohortItem] = []
    for p in sorted(root.rglob("*")):
        if p.name.startswith(".") or p.name.lower() in ("labels.csv",):
            continue
        is_png_dir = p.is_dir() and any(c.suffix.lower() == ".png" for c in p.iterdir())
        if not (is_png_dir or (p.is_file() and p.suffix.lower() in CLIP_SUFFIXES)):
            continue
        rel = p.relative_to(root).as_posix()
        label = None
        if labels:
            label = labels.get(rel, labels.get(p.name))
        if label is None:
            for part in reversed(p.relative_to(root).parts[:-1]):
                if part.upper() in CLASSES:
                    label = part.upper()
                    break
        items.append(CohortItem(p, label, _safe_key(rel)))
    return items


def analyze_to_folder(path: str, out_dir: str, analyze_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Worker: analyse one clip and write its report folder. Returns a status dict; never raises
    for a bad clip (the error is returned), so one clip cannot stop a cohort."""
    from .analyze import analyze
    from .report import write_report

    try:
        result = analyze(path, **analyze_kwargs)
        write_report(result, out_dir, figures=False)
        return {"status": "ok", "report": result.to_dict()}
    except TTSFastError as exc:
        return {"status": "failed", "error": type(exc).__name__, "message": str(exc)}
    except Exception as exc:  # noqa: BLE001 - a cohort records unexpected failures too
        return {"status": "failed", "error": type(exc).__name__,
                "message": f"{exc} | {traceback.format_exc(limit=3)}"}


def _run_local(jobs: Sequence[tuple[str, str]], analyze_kwargs: dict[str, Any], workers: int,
               progress: Callable[[int], None]) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = [{} for _ in jobs]
    if workers <= 1:
        for i, (p, o) in enumerate(jobs):
            results[i] = analyze_to_folder(p, o, analyze_kwargs)
            progress(1)
        return results
    with ProcessPoolExecutor(max_workers=workers) as ex:
        futs = {ex.submit(analyze_to_folder, p, o, analyze_kwargs): i for i, (p, o) in enumerate(jobs)}
        for f in as_completed(futs):
            results[futs[f]] = f.result()
            progress(1)
    return results


def _run_dask(jobs: Sequence[tuple[str, str]], analyze_kwargs: dict[str, Any], address: str,
              progress: Callable[[int], None]) -> list[dict[str, Any]]:
    try:
        from distributed import Client, as_completed as dask_as_completed
    except ImportError as exc:
        raise InputError("--dask needs the 'cluster' extra: pip install 'ttsfast[cluster]'") from exc
    results: list[dict[str, Any]] = [{} for _ in jobs]
    with Client(address, timeout="30s") as client:
        futs = [client.submit(analyze_to_folder, p, o, analyze_kwargs, pure=False) for p, o in jobs]
        index = {f.key: i for i, f in enumerate(futs)}
        for f in dask_as_completed(futs):
            results[index[f.key]] = f.result()
            progress(1)
    return results


def run_cohort(root: str | os.PathLike, out_dir: str | os.PathLike, *, labels_csv: str | os.PathLike | None = None,
               workers: int | None = None, dask_address: str | None = None,
               analyze_kwargs: dict[str, Any] | None = None, figures: bool = True,
               progress: bool = True) -> CohortSummary:
    """Analyse every clip under ``root`` and write the cohort outputs to ``out_dir``.

    Per clip ``out_dir/clips/<key>/report.json``; clips whose report exists are skipped.
    Cohort outputs: ``table.csv``, ``table.md`` (the study's table), ``failures.csv``,
    ``metrics.json`` (classification metrics when labels are known) and, with ``figures``,
    ``measures.png`` (box/strip plots) and ``saliency_by_class.png``.
    """
    labels = read_labels(labels_csv) if labels_csv else None
    items = find_clips(root, labels)
    if not items:
        raise InputError(f"no clips found under {root}")
    out = Path(out_dir)
    (out / "clips").mkdir(parents=True, exist_ok=True)
    summary = CohortSummary(out_dir=out)
    todo: list[CohortItem] = []
    for it in items:
        if (out / "clips" / it.key / "report.json").is_file():
            summary.skipped.append(it.key)
        else:
            todo.append(it)
    jobs = [(str(it.path), str(out / "clips" / it.key)) for it in todo]
    kwargs = dict(analyze_kwargs or {})
    bar = None
    if progress and jobs:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), desc="cohort", unit="clip")
    tick = (lambda n: bar.update(n)) if bar is not None else (lambda n: None)
    try:
        if dask_address:
            results = _run_dask(jobs, kwargs, dask_address, tick)
        else:
            results = _run_local(jobs, kwargs, workers if workers is not None else min(2, os.cpu_count() or 1), tick)
    finally:
        if bar is not None:
            bar.close()
    for it, res in zip(todo, results):
        if res.get("status") == "ok":
            summary.done.append(it.key)
        else:
            summary.failed.append({"key": it.key, "path": str(it.path), "error": res.get("error", "?"),
                                   "message": res.get("message", "")})
    for it in items:
        rp = out / "clips" / it.key / "report.json"
        if rp.is_file():
            rec = json.loads(rp.read_text())
            summary.records.append(rec)
            summary.labels.append(it.label)
            if rec.get("status", "complete") != "complete":
                summary.partial.append(it.key)
    write_cohort_outputs(summary, figures=figures)
    return summary


def warning_counts(records: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """How many reports carry each warning code (a code counted once per report), most
    frequent first; reports written before warnings were coded count as ``source_note``."""
    counts: dict[str, int] = {}
    for rec in records:
        for c in set(codes((rec.get("quality") or {}).get("warnings") or [])):
            counts[c] = counts.get(c, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def write_cohort_outputs(summary: CohortSummary, *, figures: bool = True) -> None:
    """Write table.csv/.md, failures.csv, metrics.json and figures for a finished run."""
    out = summary.out_dir
    assert out is not None
    labels = [lab or "" for lab in summary.labels]
    rows = study_table(summary.records, labels)
    import io

    buf = io.StringIO()
    crow = table_csv_rows(rows)
    w = csv.DictWriter(buf, fieldnames=list(crow[0].keys()))
    w.writeheader()
    w.writerows(crow)
    write_text_atomic(out / "table.csv", buf.getvalue())
    write_text_atomic(out / "table.md", table_markdown(rows))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["key", "path", "error", "message"])
    w.writeheader()
    w.writerows(summary.failed)
    write_text_atomic(out / "failures.csv", buf.getvalue())
    y, p = [], []
    for rec, lab in zip(summary.records, labels):
        if lab in ("TTS", "STEMI") and isinstance(rec.get("p_tts"), (int, float)):
            y.append(1 if lab == "TTS" else 0)
            p.append(float(rec["p_tts"]))
    metrics = classification_metrics(y, p) if y else {}
    write_text_atomic(out / "metrics.json", json.dumps({"classification": metrics, "n_records": len(summary.records),
                                                    "n_partial": len(summary.partial),
                                                    "warning_counts": warning_counts(summary.records),
                                                    "n_failed": len(summary.failed)}, indent=2, allow_nan=True))
    if figures and summary.records:
        from .report import plot_cohort_measures, plot_saliency_by_class

        plot_cohort_measures(summary.records, labels, out / "measures.png")
        plot_saliency_by_class(summary.records, labels, out / "saliency_by_class.png")
