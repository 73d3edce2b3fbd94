"""Snapshot of what analyze() answers on the synthetic accuracy clips and the real clips, to show
that a restructuring changed no behaviour.

    python bench/behaviour_snapshot.py OUT.json [--shared ../shared]
    python bench/behaviour_snapshot.py --compare BEFORE.json AFTER.json

Each case is a report without its timings: p(TTS), the cycle, the landmarks and their checks,
every mechanics value, the saliency summary, the status and what was withheld. Warnings are kept
as their messages, without the stage prefixes of the free-text warnings that the coded ones
replaced, so that a change of their format can be told from a change of their content. ``--compare`` exits 1 when any value differs (floats compared exactly).

Cases: the three presets x seeds 0-7 (the 24 accuracy clips) with automatic and with the true
landmarks, four trackers on one clip per preset, wide-variety seeds 0-3, and every real clip with
both detectors and with the hand-read landmarks. Not named bench_*.py: pytest does not collect it.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

PRESETS = ("normal", "tts", "stemi_anterior")
NAMES = ("septal_annulus", "lateral_annulus", "apex")
FPS = {"ctrl_a4c_ge_55hz.mp4": 55.0, "tts_a4c_philips.mp4": 40.0}


#: Prefixes the free-text warnings of before the coded ones carried (the stage is now a field).
_OLD_PREFIXES = ("cycle", "mechanics", "landmarks", "tracking", "strain", "model", "saliency spatial",
                 "saliency temporal", "spatial", "temporal")


def _warning_pairs(ws: list) -> list[str]:
    """Each warning's message without the stage prefixes that free-text warnings carried, so
    that the coded warnings ({code, stage, message}) compare equal to the text they replaced."""
    out = []
    for w in ws:
        msg = w.get("message", "") if isinstance(w, dict) else str(w)
        changed = True
        while changed:
            changed = False
            for p in _OLD_PREFIXES:
                if msg.startswith(p + ": "):
                    msg, changed = msg[len(p) + 2:], True
        out.append(msg)
    return out


def _strip(d: Any) -> Any:
    """The report without timings and schema version, warnings normalised to their messages."""
    if isinstance(d, dict):
        out = {}
        for k, v in d.items():
            if k in ("timings_ms", "schema_version"):
                continue
            out[k] = _warning_pairs(v) if k == "warnings" and isinstance(v, list) else _strip(v)
        return out
    if isinstance(d, list):
        return [_strip(v) for v in d]
    return d


def _case(source: Any, **kw: Any) -> Any:
    import ttsfast

    try:
        return _strip(ttsfast.analyze(source, keep_arrays=False, **kw).to_dict())
    except ttsfast.TTSFastError as exc:
        return {"error": type(exc).__name__, "message": str(exc)}


def snapshot(shared: Path) -> dict[str, Any]:
    from ttsfast.synth import generate

    cases: dict[str, Any] = {}
    for preset in PRESETS:
        for seed in range(8):
            clip, gt = generate(preset=preset, seed=seed)
            ed = int(gt.ed_frames[0])
            true_lm = {k: [float(v) for v in gt.landmarks[k][ed]] for k in NAMES}
            cases[f"{preset}/{seed}/auto"] = _case(clip)
            cases[f"{preset}/{seed}/true"] = _case(clip, landmarks=true_lm)
            if seed == 0:
                for tracker in ("flow", "flow+lk", "lk"):
                    cases[f"{preset}/{seed}/true/{tracker}"] = _case(clip, landmarks=true_lm, tracker=tracker)
                cases[f"{preset}/{seed}/auto/cnn"] = _case(clip, landmark_detector="cnn")
        for seed in range(4):
            clip, _ = generate(preset=preset, seed=seed, variety="wide")
            cases[f"{preset}/wide{seed}/auto"] = _case(clip)
    real = shared / "data" / "real"
    hand = {c["file"]: c for c in json.loads((Path(__file__).resolve().parents[1] / "tests" / "data"
                                               / "real_landmarks.json").read_text())["clips"]}
    for path in sorted(real.glob("*")):
        if path.suffix.lower() not in (".mp4", ".avi", ".gif", ".dcm"):
            continue
        fps = FPS.get(path.name)
        for det in ("classic", "cnn"):
            cases[f"real/{path.name}/{det}"] = _case(str(path), fps=fps, landmark_detector=det)
        h = hand.get(path.name)
        if h and all(h["landmarks"].get(n) is not None for n in NAMES):
            cases[f"real/{path.name}/hand"] = _case(str(path), fps=fps, landmarks=h["landmarks"])
    return cases


def _messages(ws: list) -> list[str]:
    """Warnings as stored by any version of this script ([stage, message] pairs or messages),
    normalised by :func:`_warning_pairs`."""
    return _warning_pairs([(f"{w[0]}: {w[1]}" if w[0] else w[1]) if isinstance(w, list) else w for w in ws])


def compare(before: dict, after: dict) -> list[str]:
    """Every path whose value differs, and the cases only one side has."""
    diffs: list[str] = []

    def walk(a: Any, b: Any, path: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for k in sorted(set(a) | set(b)):
                if k not in a or k not in b:
                    diffs.append(f"{path}/{k}: only in {'after' if k not in a else 'before'}")
                elif k == "warnings" and isinstance(a[k], list) and isinstance(b[k], list):
                    walk(_messages(a[k]), _messages(b[k]), f"{path}/{k}")
                else:
                    walk(a[k], b[k], f"{path}/{k}")
        elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            for i, (x, y) in enumerate(zip(a, b)):
                walk(x, y, f"{path}[{i}]")
        elif a != b and not (a != a and b != b):  # NaN == NaN here
            diffs.append(f"{path}: {a!r} -> {b!r}")

    walk(before, after, "")
    return diffs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", nargs="?")
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared"))
    ap.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"))
    args = ap.parse_args(argv)
    if args.compare:
        a, b = (json.loads(Path(p).read_text()) for p in args.compare)
        diffs = compare(a, b)
        print("\n".join(diffs[:200]) or "identical")
        print(f"{len(a)} cases before, {len(b)} after, {len(diffs)} differences")
        return 1 if diffs else 0
    cases = snapshot(Path(args.shared))
    Path(args.out).write_text(json.dumps(cases, indent=1, sort_keys=True))
    print(f"{len(cases)} cases -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
