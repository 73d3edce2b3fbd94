"""The ``ttsfast`` command line. Each subcommand is a pair of small functions:
``_add_<name>(subparsers)`` declares it and ``_cmd_<name>(args) -> int`` runs it."""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Callable

from . import __version__
from .errors import InputError, TTSFastError
from .live_cli import add_live
from .warning_codes import warning_dicts


def _add_info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="versions, native build flags, threads, ONNX Runtime providers")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=_cmd_info)


def collect_info() -> dict:
    """Versions of ttsfast and its dependencies, native build flags, threads and providers."""
    import platform

    import numpy as np

    info: dict = {"ttsfast": __version__, "python": platform.python_version(),
                  "platform": platform.platform(), "numpy": np.__version__,
                  "cpu_count": os.cpu_count()}
    from ._nativelib import native

    info["native"] = dict(native.build_info())
    try:  # the copy of the flow kernels this CPU runs (TTSFAST_FLOW_ISA=baseline forces the baseline)
        info["flow_kernels"] = native.flow_isa()
    except Exception as exc:  # noqa: BLE001 - a bad TTSFAST_FLOW_ISA: report, never crash `info`
        info["flow_kernels"] = f"unavailable ({exc})"
    for mod in ("cv2", "numba", "onnx", "onnxruntime", "torch", "pydicom"):
        try:
            m = __import__(mod)
            info[mod] = getattr(m, "__version__", "?")
        except Exception as exc:  # noqa: BLE001 - report, never crash `info`
            info[mod] = f"unavailable ({type(exc).__name__}: {exc})"
    try:
        import onnxruntime as ort

        info["onnxruntime_providers"] = ort.get_available_providers()
    except Exception:  # noqa: BLE001
        info["onnxruntime_providers"] = []
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
    except Exception:  # noqa: BLE001
        pass
    try:
        import numba

        info["numba_threads"] = numba.config.NUMBA_NUM_THREADS
    except Exception:  # noqa: BLE001
        pass
    return info


def _cmd_info(args: argparse.Namespace) -> int:
    info = collect_info()
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for k, v in info.items():
            print(f"{k:22s} {v}")
    return 0


def _add_synth(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="write a synthetic apical-4-chamber clip with known motion")
    p.add_argument("--preset", default="normal", help="normal, tts or stemi_anterior (default normal)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("-o", "--output", required=True, help="output file: .dcm, .mp4 or .avi")
    p.add_argument("--n-frames", type=int, default=None, help="number of frames (default 64)")
    p.add_argument("--fps", type=float, default=None, help="frame rate in frames/s (default 50)")
    p.add_argument("--hr", type=float, default=None, help="heart rate in beats/min (default: drawn)")
    p.add_argument("--mirrored", action="store_true", help="LV on the viewer's left")
    p.add_argument("--overlays", action="store_true", help="burn in text, depth scale and ECG")
    p.add_argument("--rgb", action="store_true", help="video only: coloured overlays (green ECG)")
    p.add_argument("--truth", default=None, help="also write the true measures as JSON here")
    p.add_argument("--variety", default=None, choices=["none", "wide"],
                   help="'wide': draw the scanner look, framing (down to 112x112), display and heart "
                        "shape from a wide range (see ttsfast.synth.variety); default: the preset's look")
    p.set_defaults(func=_cmd_synth)


def _cmd_synth(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .errors import InputError
    from .synth import generate, to_rgb, write_dicom, write_video

    out = Path(args.output)
    ext = out.suffix.lower()
    if ext not in (".dcm", ".mp4", ".avi"):
        raise InputError(f"output must end in .dcm, .mp4 or .avi, got {out.name!r}")
    clip, gt = generate(args.preset, args.seed, n_frames=args.n_frames, fps=args.fps,
                        heart_rate_bpm=args.hr, mirrored=args.mirrored or None,
                        overlays=args.overlays or None, variety=args.variety)
    if ext == ".dcm":
        write_dicom(clip, out)
    else:
        write_video(clip, out, rgb=to_rgb(clip, gt) if args.rgb else None)
    m = gt.true_measures()
    if args.truth:
        from ._atomic import write_text_atomic

        write_text_atomic(args.truth, json.dumps({"preset": args.preset, "seed": args.seed, "measures": m}, indent=2))
    pk = m["peak_displacement_px"]
    var = f" variety={args.variety}" if args.variety not in (None, "none") else ""
    print(f"{out}: {args.preset} seed={args.seed}{var} {clip.n_frames} frames {clip.shape[1]}x{clip.shape[0]} "
          f"@ {clip.fps:g} fps, HR {gt.heart_rate_bpm:.0f} bpm, {clip.mm_per_px:g} mm/px, "
          f"mirrored={gt.mirrored}; ED {list(map(int, gt.ed_frames))}; "
          f"peak disp px IS {pk['basal_inferoseptal']['systolic']:.2f}/{pk['basal_inferoseptal']['diastolic']:.2f} "
          f"AL {pk['basal_anterolateral']['systolic']:.2f}/{pk['basal_anterolateral']['diastolic']:.2f}, "
          f"GLS {m['gls_pct']:.1f} %")
    return 0


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train the two-arm CNN on a folder of clips (TTS/, STEMI/) or a synthetic cohort")
    p.add_argument("data_dir", nargs="?", help="folder with TTS/ and STEMI/ sub-folders of clips")
    p.add_argument("--synthetic", type=int, metavar="N", help="train on N synthetic clips (tts vs stemi_anterior)")
    p.add_argument("--holdout", type=int, default=0, metavar="N",
                   help="with --synthetic: also evaluate on N held-out synthetic clips (and a logistic "
                        "regression on their true mechanics)")
    p.add_argument("-o", "--out", default="ttsfast_model.pt", help="checkpoint to write (weights only; "
                   "metrics go to <out>.train.json); export with python -m export.export_onnx")
    p.add_argument("--folds", type=int, default=5, help="stratified k-fold cross-validation (0 = none)")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--patience", type=int, default=5, help="early stopping patience (epochs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--aux-weight", type=float, default=0.0,
                   help="synthetic cohorts: weight of an auxiliary loss regressing the true mechanics "
                        "from the pooled features (training only; 0 = off)")
    p.add_argument("--threads", type=int, default=0, help="PyTorch threads (0 = PyTorch default)")
    p.add_argument("--cache-dir", default=None, help="where model inputs are cached as .npz "
                   "(default: <tmp>/ttsfast_cohort)")
    p.add_argument("--flow-backend", default="native", choices=["native", "opencv"])
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_train)


def _cmd_train(args: argparse.Namespace) -> int:
    import tempfile

    from .errors import InputError
    from .model.train import TrainConfig, build_folder_cohort, build_synthetic_cohort, run_training

    if (args.data_dir is None) == (args.synthetic is None):
        raise InputError("give either DATA_DIR or --synthetic N")
    cache = args.cache_dir or os.path.join(tempfile.gettempdir(), "ttsfast_cohort")
    prog = not args.no_progress
    holdout = None
    if args.synthetic is not None:
        if args.synthetic < 4:
            raise InputError("--synthetic needs at least 4 clips")
        coh = build_synthetic_cohort(args.synthetic, seed=args.seed, cache_dir=cache,
                                     flow_backend=args.flow_backend, progress=prog)
        if args.holdout:
            holdout = build_synthetic_cohort(args.holdout, seed=args.seed + 100000, cache_dir=cache,
                                             flow_backend=args.flow_backend, progress=prog)
        desc = {"source": "synthetic", "presets": ["stemi_anterior", "tts"], "n": args.synthetic,
                "seeds": [args.seed, args.seed + args.synthetic - 1]}
    else:
        coh = build_folder_cohort(args.data_dir, cache_dir=cache, flow_backend=args.flow_backend, progress=prog)
        desc = {"source": "folder", "path": os.path.basename(os.path.abspath(args.data_dir))}
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, patience=args.patience,
                      seed=args.seed, threads=args.threads, aux_weight=args.aux_weight)
    info = run_training(coh, args.out, cfg, folds=args.folds, holdout=holdout, progress=prog,
                        data_description=desc)
    summary = {"checkpoint": args.out, "n_clips": info["training"]["n_clips"],
               "skipped": len(info["training"]["skipped"])}
    cv = info["metrics"].get("cross_validation")
    if cv:
        summary["cv_pooled"] = cv["pooled"]
    if "held_out" in info["metrics"]:
        summary["held_out"] = info["metrics"]["held_out"]
    print(json.dumps(summary, indent=2, default=str))
    return 0


def _add_train_landmarks(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-landmarks", help="train the learned landmark detector (heatmap CNN) on synthetic "
                       "clips and export it to ONNX with its card")
    p.add_argument("--synthetic", type=int, required=True, metavar="N", help="number of synthetic training clips")
    p.add_argument("-o", "--out", required=True, help="output folder: landmarks.onnx, landmarks.card.json, "
                   "landmarks.pt (copy the first two to ttsfast/data/ to ship them)")
    p.add_argument("--minutes", type=float, default=20.0, help="training wall-clock budget (default 20)")
    p.add_argument("--cache-dir", default=None, help="where the training arrays are cached (default: --out)")
    p.add_argument("--threads", type=int, default=1, help="PyTorch threads (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_train_landmarks)


def _cmd_train_landmarks(args: argparse.Namespace) -> int:
    from .errors import InputError
    from .model.landmark_net import train_landmarks

    if args.synthetic < 20:
        raise InputError("--synthetic needs at least 20 clips")
    card = train_landmarks(args.synthetic, args.out, minutes=args.minutes, cache_dir=args.cache_dir,
                           threads=args.threads, seed=args.seed)
    print(json.dumps({k: card[k] for k in ("onnx_sha256", "n_params", "n_train", "steps", "train_s", "data")},
                     indent=2, default=str))
    return 0


def _add_analyze(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("analyze", help="analyse clips: report.json, saliency and mechanics figures, overlay video")
    p.add_argument("files", nargs="+", help="DICOM, mp4/avi, gif or PNG-folder clips")
    p.add_argument("-o", "--out", required=True, help="output folder (one subfolder per clip)")
    p.add_argument("--fps", type=float, default=None, help="acquisition frame rate when the file lacks it (screen captures)")
    p.add_argument("--model", default=None, help="ONNX model (with card) or weights-only .pt; default: shipped demo model")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--saliency", default="cam", choices=["cam", "gradcam", "none"])
    p.add_argument("--landmarks", default=None,
                   help="JSON {septal_annulus:[x,y], lateral_annulus:[x,y], apex:[x,y]} in original pixels on the "
                        "first end-diastolic frame, as text or a file; a file may map clip file names to such sets")
    p.add_argument("--single-beat", action="store_true",
                   help="each clip is exactly one beat, ED to next ED (the study's resampled clips); without it a "
                        "clip whose motion is one beat is read as one, with a warning")
    p.add_argument("--no-video", action="store_true", help="skip the overlay video")
    _add_tracker_args(p)
    p.set_defaults(func=_cmd_analyze)


def _add_tracker_args(p: argparse.ArgumentParser) -> None:
    """The mechanics options of ``analyze`` and ``cohort``."""
    p.add_argument("--tracker", default="dis", choices=["dis", "flow", "flow+lk", "lk"],
                   help="point tracker of the mechanics (default dis; lk = the original study's)")
    p.add_argument("--landmark-detector", default="classic", choices=["classic", "cnn"],
                   help="automatic landmarks: classic heuristics (default) or the learned detector (cnn)")
    p.add_argument("--annulus-anchor", action=argparse.BooleanOptionalAction, default=True,
                   help="take the annulus's slow motion from its basal wall (default on; --no-annulus-anchor "
                        "keeps each annulus's own track; docs/accuracy.md)")


def _analyze_kwargs(args: argparse.Namespace) -> dict:
    kw: dict = {"fps": args.fps, "model": args.model, "device": args.device,
                "saliency": False if args.saliency == "none" else args.saliency,
                "single_beat": True if getattr(args, "single_beat", False) else None,
                "tracker": getattr(args, "tracker", "dis"),
                "annulus_anchor": bool(getattr(args, "annulus_anchor", True)),
                "landmark_detector": getattr(args, "landmark_detector", "classic")}
    if getattr(args, "landmarks", None):
        kw["landmarks"] = _read_landmarks_arg(args.landmarks)
    return kw


def _read_landmarks_arg(value: str) -> dict:
    """``--landmarks``: JSON text or the path of a JSON file, holding either one landmark set
    ``{septal_annulus: [x, y], lateral_annulus: [x, y], apex: [x, y]}`` or sets per clip
    ``{"clip file name": {...}, ...}`` (returned as is; :func:`_landmarks_for` picks one)."""
    from pathlib import Path

    text = value
    if not value.lstrip().startswith("{"):
        p = Path(value)
        if not p.is_file():
            raise InputError(f"--landmarks is neither JSON text nor a file: {value!r}")
        text = p.read_text()
    try:
        got = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"--landmarks is not valid JSON: {exc}") from None
    if not isinstance(got, dict):
        raise InputError("--landmarks must hold a JSON object")
    return got


def _landmarks_for(landmarks: dict | None, path: str) -> dict | None:
    """The landmark set for one clip: the single set, or the entry under the clip's file name
    (None when the file has no entry: its landmarks are found automatically)."""
    from pathlib import Path

    if not landmarks or "apex" in landmarks:
        return landmarks
    return landmarks.get(Path(path).name)


def _cmd_analyze(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tqdm import tqdm

    from .analyze import analyze
    from .report import write_report

    kw = _analyze_kwargs(args)
    out = Path(args.out)
    failed = 0
    names = [Path(f).stem or Path(f).name for f in args.files]
    dup = {n for n in names if names.count(n) > 1}
    for f, name in tqdm(list(zip(args.files, names)), desc="analyze", unit="clip", disable=len(args.files) < 2):
        key = f"{name}_{abs(hash(f)) % 10000}" if name in dup else name
        try:
            res = analyze(f, **{**kw, "landmarks": _landmarks_for(kw.get("landmarks"), f)})
            write_report(res, out / key, video=not args.no_video)
            print(f"{f}: {_summary_line(res)} -> {out / key}")
        except TTSFastError as exc:
            failed += 1
            print(f"{f}: FAILED {type(exc).__name__}: {exc}", file=sys.stderr)
    return 1 if failed else 0


def _summary_line(res) -> str:
    hr = res.cycle.get("heart_rate_bpm")
    per_beat = [b.get("p_tts") for b in res.cycle.get("beats", [])]
    beats = (" [beats " + "/".join(f"{p:.2f}" for p in per_beat) + "]"
             if len(per_beat) > 1 and None not in per_beat else "")
    partial = ""
    if res.status != "complete":
        codes = sorted({w.get("code", "") for w in res.withheld.values()})
        partial = f", PARTIAL: {', '.join(sorted(res.withheld))} withheld ({', '.join(codes)}; see report.json)"
    warned = ", ".join(dict.fromkeys(w["code"] for w in warning_dicts(res.warnings)))
    return ((f"p(TTS)={res.p_tts:.2f} ({res.label}){beats}, HR {hr:.0f} bpm" if hr else
             f"p(TTS)={res.p_tts:.2f} ({res.label}){beats}") + f", {res.timings_ms['total']:.0f} ms" + partial
            + (f"; warnings: {warned}" if warned else ""))


def _add_cohort(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cohort", help="analyse a cohort folder and write the study's table and figures")
    p.add_argument("folder", help="cohort folder (class from labels.csv or from TTS/ STEMI/ CTRL/ subfolders)")
    p.add_argument("--labels", default=None, help="CSV with columns file,label (TTS, STEMI, CTRL)")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument("--workers", type=int, default=None, help="local worker processes (default: min(2, cores))")
    p.add_argument("--dask", default=None, metavar="ADDRESS", help="Dask scheduler address, e.g. tcp://host:8786")
    p.add_argument("--fps", type=float, default=None)
    p.add_argument("--model", default=None)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--saliency", default="cam", choices=["cam", "gradcam", "none"])
    p.add_argument("--no-figures", action="store_true")
    _add_tracker_args(p)
    p.set_defaults(func=_cmd_cohort)


def _cmd_cohort(args: argparse.Namespace) -> int:
    from .cohort import run_cohort

    s = run_cohort(args.folder, args.out, labels_csv=args.labels, workers=args.workers, dask_address=args.dask,
                   analyze_kwargs=_analyze_kwargs(args), figures=not args.no_figures)
    print(f"cohort: {len(s.done)} analysed, {len(s.skipped)} already done, {len(s.partial)} of all reports "
          f"partial (mechanics withheld), {len(s.failed)} failed "
          f"-> {args.out}/table.md")
    for f in s.failed:
        print(f"  failed {f['key']}: {f['error']}: {f['message'].splitlines()[0] if f['message'] else ''}",
              file=sys.stderr)
    return 0


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="analyse the bundled synthetic clip and print a short summary")
    p.add_argument("-o", "--out", default="ttsfast-demo", help="output folder (default ./ttsfast-demo)")
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args: argparse.Namespace) -> int:
    from .analyze import analyze
    from .demo import demo_clip_path, format_summary
    from .report import write_report

    path = demo_clip_path()
    res = analyze(path)
    out = write_report(res, args.out)
    print(format_summary(res, path))
    print("(first call in this process: the times include opening the ONNX session and loading the "
          "Numba kernels; see docs/performance.md for warm timings)")
    print(f"report: {out}/report.json, figures: {out}/saliency.png {out}/mechanics.png, video: {out}/overlay.mp4")
    return 0


def _add_probe(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("probe", help="read a clip and find its sector: frame rate, calibration, metadata, sector")
    p.add_argument("clip", help="DICOM, mp4/avi, GIF or a folder of PNG frames")
    p.add_argument("--fps", type=float, default=None, help="acquisition frame rate if known (frames/s)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=_cmd_probe)


def _cmd_probe(args: argparse.Namespace) -> int:
    from .io import read_clip
    from .preprocess import preprocess

    clip = read_clip(args.clip, fps=args.fps)
    prep = preprocess(clip)
    sec = prep.sector
    out = {
        "n_frames": clip.n_frames, "size_hw": list(clip.shape), "fps": clip.fps,
        "fps_source": clip.fps_source, "mm_per_px": clip.mm_per_px,
        "metadata": {k: (list(v) if isinstance(v, tuple) else v) for k, v in clip.metadata.items()},
        "sector": None if sec is None else {"apex_xy": list(sec.apex), "half_angle_deg": sec.half_angle_deg,
                                             "axis_angle_deg": sec.axis_angle_deg, "depth_px": sec.depth_px},
        "grid_hw": list(prep.grid), "grid_scale": prep.scale, "grid_offset_xy": list(prep.offset),
        "grid_mm_per_px": prep.mm_per_px, "overlay_px_removed": int(prep.overlay_original.sum()),
        "warnings": warning_dicts(prep.warnings),
    }
    if args.json:
        print(json.dumps(out, indent=2, default=str))
    else:
        for k, v in out.items():
            print(f"{k:20s} {v}")
    return 0


#: Subcommand declarers, in the order `ttsfast --help` lists them.
_SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_info, _add_demo, _add_analyze, _add_cohort,
                                                                   _add_synth, _add_train, _add_train_landmarks,
                                                                   _add_probe, add_live]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ttsfast",
        description="Takotsubo syndrome vs anterior STEMI on apical echo clips, with saliency and mechanics.",
    )
    parser.add_argument("--version", action="version", version=f"ttsfast {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in _SUBCOMMANDS:
        add(sub)
    return parser


#: Commands that analyse many clips or frames in one process: run from the command line (the
#: process is theirs) they keep freed memory for reuse (:func:`ttsfast.memory.reuse_freed_memory`).
_REUSE_MEMORY_COMMANDS = ("analyze", "cohort", "live")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if argv is None and args.command in _REUSE_MEMORY_COMMANDS:
        from .memory import reuse_freed_memory

        reuse_freed_memory()
    try:
        return int(args.func(args) or 0)
    except TTSFastError as exc:
        print(f"ttsfast: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
