"""Feature statistics for the out-of-distribution check, written into a model's card.

Usage::

    python -m export.feature_stats --model MODEL.onnx --synthetic 300 [--heldout 100]
    python -m export.feature_stats --model MODEL.onnx --data DATA_DIR [--heldout-data DIR2]

Runs the model on clips like its training clips, pools each arm's last-conv activations
(``predict_batch(..., with_features=True)``), fits the density model of
:mod:`ttsfast.model.ood` (per arm: mean, top-k principal components, isotropic residual) and
the threshold (the ``--quantile`` of out-of-fold scores of the fit clips), scores the held-out
clips when given (their flag rate goes into the card as ``heldout_flag_rate``), and writes
everything into the model card under ``feature_stats`` (atomically; the ONNX file and its
SHA-256 are untouched).

``--synthetic N``: N synthetic clips made exactly as ``ttsfast train --synthetic`` makes its
training clips (``build_synthetic_cohort``: presets stemi_anterior / tts alternating, seeds
``--seed`` .. ``--seed + N - 1``, 30 fps, 2.3 beats, first beat); ``--heldout M``: M more
from seeds ``--heldout-seed`` .. (default 100000, the trainer's held-out seeds).
``--data DIR``: the clips of ``DIR/{TTS,STEMI}/`` read as ``ttsfast train DIR`` reads them
(a model trained on patients gets statistics of patients). Model inputs are cached in
``--cache-dir`` (the trainer's cache format), so a second run is fast.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_CACHE = str(Path(tempfile.gettempdir()) / "ttsfast_cohort")


def cohort_features(spatial: np.ndarray, temporal: np.ndarray, model: str | Path,
                    batch_size: int = 8, providers: Any = "auto") -> dict[str, np.ndarray]:
    """Pooled features of a cohort's model inputs.

    Parameters
    ----------
    spatial, temporal : np.ndarray
        ``[N,1,32,128,176]`` / ``[N,2,32,128,176]`` (float16 or float32, e.g. a ``Cohort``'s).
    model : path
        ONNX file (with card) or ``.pt`` checkpoint.

    Returns
    -------
    dict
        ``{"spatial": [N, C], "temporal": [N, C]}`` float64, plus ``"p_tts": [N]``.
    """
    from ttsfast.model.runtime import predict_batch

    fs, ft, pt = [], [], []
    for i in range(0, len(spatial), batch_size):
        out = predict_batch(np.asarray(spatial[i:i + batch_size], np.float32),
                            np.asarray(temporal[i:i + batch_size], np.float32), model=model,
                            providers=providers, batch_size=batch_size, with_features=True)
        fs.append(out.features_spatial)
        ft.append(out.features_temporal)
        pt.append(out.p_tts)
    return {"spatial": np.concatenate(fs), "temporal": np.concatenate(ft), "p_tts": np.concatenate(pt)}


def _synthetic(n: int, seed: int, cache_dir: str, progress: bool, any_synth_version: bool = False):
    from ttsfast.model.train import build_synthetic_cohort

    return build_synthetic_cohort(n, seed=seed, cache_dir=cache_dir, progress=progress,
                                  any_synth_version=any_synth_version)


def _folder(path: str | Path, cache_dir: str, progress: bool):
    from ttsfast.model.train import build_folder_cohort

    return build_folder_cohort(path, cache_dir=cache_dir, progress=progress)


def compute_feature_stats(model: str | Path, *, synthetic: int | None = None, data: str | Path | None = None,
                          seed: int = 0, heldout: int = 0, heldout_seed: int = 100000,
                          heldout_data: str | Path | None = None, k: int | None = None,
                          quantile: float | None = None, n_folds: int = 5,
                          cache_dir: str = DEFAULT_CACHE, progress: bool = True,
                          any_synth_version: bool = False) -> dict[str, Any]:
    """Fit the feature statistics of ``model`` and return the card entry (JSON-ready dict).

    Exactly one of ``synthetic`` (number of synthetic fit clips) and ``data`` (a folder with
    ``TTS/`` and ``STEMI/``) is required. Held-out clips (``heldout`` synthetic ones from
    ``heldout_seed``, or ``heldout_data``) are only scored, never fitted: their flag rate is
    recorded as ``heldout_flag_rate``. ``any_synth_version``: reuse cached synthetic clips
    whatever version of ``ttsfast.synth`` made them (the card records the versions used).
    """
    from ttsfast.errors import InputError
    from ttsfast.model import ood
    from ttsfast.model.train import _flow_backend_name, _synth_fingerprint

    if (synthetic is None) == (data is None):
        raise InputError("give either --synthetic N or --data DIR")
    k = ood.DEFAULT_K if k is None else int(k)
    quantile = ood.DEFAULT_QUANTILE if quantile is None else float(quantile)
    t0 = time.perf_counter()
    info: dict[str, Any] = {}
    if synthetic is not None:
        if synthetic < 3 * max(n_folds, 2):
            raise InputError(f"--synthetic needs at least {3 * max(n_folds, 2)} clips (3 per fold)")
        coh = _synthetic(int(synthetic), seed, cache_dir, progress, any_synth_version)
        info["fit_on"] = (f"synthetic clips made as the training clips (ttsfast.model.train.build_synthetic_cohort: "
                          f"presets stemi_anterior/tts alternating, 30 fps, 2.3 beats, first beat), "
                          f"seeds {seed}..{seed + int(synthetic) - 1}")
        info["synth_versions"] = sorted(set(coh.versions)) or [_synth_fingerprint()]
    else:
        coh = _folder(data, cache_dir, progress)
        info["fit_on"] = f"clips of the folder {Path(data).resolve().name}/ (TTS/, STEMI/)"
    info["pipeline"] = ("read_clip -> preprocess -> dense_flow (" + _flow_backend_name("native") + ") -> "
                        "detect_cycles -> first beat -> beat_inputs(32)")
    feats = cohort_features(coh.spatial, coh.temporal, model)
    del coh.spatial, coh.temporal
    stats = ood.fit_stats({a: feats[a] for a in ood.ARMS}, k=k, quantile=quantile, n_folds=n_folds)
    info["n_skipped"] = len(coh.skipped)
    fit_s = time.perf_counter() - t0
    if heldout or heldout_data is not None:
        if heldout_data is not None:
            hc = _folder(heldout_data, cache_dir, progress)
            info["heldout"] = f"clips of the folder {Path(heldout_data).resolve().name}/"
        else:
            hc = _synthetic(int(heldout), heldout_seed, cache_dir, progress, any_synth_version)
            info["heldout"] = f"synthetic, same settings, seeds {heldout_seed}..{heldout_seed + int(heldout) - 1}"
        hf = cohort_features(hc.spatial, hc.temporal, model)
        score, per_arm = ood.score_features(stats, hf)
        flagged = score > stats["threshold"]
        info.update(n_heldout=int(len(score)), heldout_flag_rate=round(float(flagged.mean()), 4),
                    heldout_score_quantiles={str(q): round(float(np.quantile(score, q)), 4)
                                             for q in (0.5, 0.9, 0.99, 1.0)},
                    heldout_flag_rate_per_arm={a: round(float((v > stats["threshold"]).mean()), 4)
                                               for a, v in per_arm.items()})
    info["threshold_from"] = (f"{quantile:g} quantile of {n_folds}-fold out-of-fold scores of the {stats['n_fit']} "
                              "fit clips")
    info["seconds"] = {"fit": round(fit_s, 1), "total": round(time.perf_counter() - t0, 1)}
    return ood.stats_to_card(stats, **info)


def write_stats_to_card(model: str | Path, entry: dict[str, Any]) -> Path:
    """Put ``entry`` into ``model``'s card under ``feature_stats`` (after checking the card
    describes this ONNX file); returns the card's path."""
    from ttsfast.model.card import card_path_for, load_card, verify_model_file, write_card
    from ttsfast.model.ood import CARD_KEY, stats_from_card

    path = card_path_for(model)
    card = load_card(path)
    verify_model_file(model, card)
    card[CARD_KEY] = entry
    stats_from_card(card)  # what is written must read back
    write_card(card, path)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m export.feature_stats", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="ONNX model (its card gets the statistics)")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--synthetic", type=int, metavar="N", help="fit on N synthetic training-like clips")
    src.add_argument("--data", metavar="DIR", help="fit on the clips of DIR/{TTS,STEMI}/")
    ap.add_argument("--seed", type=int, default=0, help="first seed of the synthetic fit clips (default 0)")
    ap.add_argument("--heldout", type=int, default=0, metavar="M", help="score M held-out synthetic clips")
    ap.add_argument("--heldout-seed", type=int, default=100000)
    ap.add_argument("--heldout-data", metavar="DIR", help="score the clips of DIR/{TTS,STEMI}/ as held-out")
    ap.add_argument("--k", type=int, default=None, help="principal components per arm (default 8)")
    ap.add_argument("--quantile", type=float, default=None, help="threshold quantile (default 0.99)")
    ap.add_argument("--folds", type=int, default=5, help="folds of the out-of-fold scores that set the threshold")
    ap.add_argument("--cache-dir", default=DEFAULT_CACHE, help=f"model-input cache (default {DEFAULT_CACHE})")
    ap.add_argument("--any-synth-version", action="store_true", help="reuse cached synthetic clips whatever "
                    "version of ttsfast.synth made them (the card records the versions)")
    ap.add_argument("--dry-run", action="store_true", help="print the statistics, do not write the card")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    from ttsfast.errors import TTSFastError
    from ttsfast.model.runtime import clear_cache

    try:
        model = Path(args.model)
        if model.suffix.lower() != ".onnx":
            from ttsfast.errors import InputError

            raise InputError("--model must be an ONNX file with its model card")
        entry = compute_feature_stats(model, synthetic=args.synthetic, data=args.data, seed=args.seed,
                                      heldout=args.heldout, heldout_seed=args.heldout_seed,
                                      heldout_data=args.heldout_data, k=args.k, quantile=args.quantile,
                                      n_folds=args.folds,
                                      cache_dir=args.cache_dir, progress=not args.no_progress,
                                      any_synth_version=args.any_synth_version)
        argv_s = " ".join(sys.argv[1:] if argv is None else argv)
        entry["command"] = f"python -m export.feature_stats {argv_s}"
        summary = {k: v for k, v in entry.items() if k not in ("arms", "method")}
        if not args.dry_run:
            summary["card"] = str(write_stats_to_card(model, entry))
            clear_cache()
    except TTSFastError as exc:
        print(f"feature_stats: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
