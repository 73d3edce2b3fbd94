"""The real clips in ../shared/data/real (and pydicom's ybr_color), analysed as a user would:
status, landmark errors against the hand-read landmarks (tests/data/real_landmarks.json, % of
the hand-read LV length) for each detector, the report's landmark confidence, the model's
in-distribution score and p(TTS). Prints a Markdown table.

    python bench/real_clips_table.py [--shared ../shared]

Not named bench_*.py: pytest does not collect it.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

NAMES = ("septal_annulus", "lateral_annulus", "apex")
FPS = {"ctrl_a4c_ge_55hz.mp4": 55.0, "tts_a4c_philips.mp4": 40.0}


def _errors(auto: dict, hand: dict) -> str:
    if any(hand.get(n) is None for n in NAMES) or any(auto.get(n) is None for n in NAMES):
        known = [n for n in NAMES if hand.get(n) is not None and auto.get(n) is not None]
        if not known:
            return "n/a"
        return " / ".join(f"{np.hypot(*(np.subtract(auto[n], hand[n]))):.0f} px" if n in known else "?" for n in NAMES)
    s, l, a = (np.asarray(hand[n], float) for n in NAMES)
    length = float(np.hypot(*(a - 0.5 * (s + l))))
    return " / ".join(f"{100 * np.hypot(*(np.subtract(auto[n], hand[n]))) / length:.0f}" for n in NAMES)


def _detector_row(path: str, fps: float | None, detector: str) -> dict:
    """Landmarks of one detector on the analysis's first ED frame (original px) and the checks."""
    import ttsfast
    from ttsfast.anatomy import check_landmarks
    from ttsfast.cycle import detect_cycles

    clip = ttsfast.read_clip(path, fps=fps)
    prep = ttsfast.preprocess(clip)
    flow = ttsfast.dense_flow(prep.frames, mask=prep.mask)
    beat = detect_cycles(flow, fps=prep.fps, mask=prep.mask).beats[0]
    if detector == "classic":
        from ttsfast.landmarks import detect_landmarks as det
    else:
        from ttsfast.landmarks_cnn import detect_landmarks_cnn as det
    lm = det(prep.frames, flow, beat, mask=prep.mask)
    chk = check_landmarks(lm, prep.frames[beat[0]], prep.mask)
    xy = prep.to_original(lm.as_array())
    return {"landmarks": {n: xy[i].tolist() for i, n in enumerate(NAMES)}, "confidence": chk.confidence,
            "trusted": chk.trusted, "failed": [f["code"] for f in chk.failed]}


def main(argv: list[str] | None = None) -> int:
    import ttsfast

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared"))
    ap.add_argument("--detectors", default="classic,cnn")
    args = ap.parse_args(argv)
    hand = json.loads((Path(__file__).resolve().parents[1] / "tests" / "data" / "real_landmarks.json").read_text())
    print("| clip | status | " + " | ".join(f"{d}: errors S / L / A (% LV), confidence" for d in args.detectors.split(","))
          + " | in-distribution score (threshold) | p_tts |")
    print("|---|---|" + "---|" * len(args.detectors.split(",")) + "---|---|")
    for c in hand["clips"]:
        if c["file"].startswith("pydicom:"):
            from pydicom import examples
            path = str(examples.get_path(c["file"].split(":", 1)[1]))
        else:
            path = str(Path(args.shared) / "data" / "real" / c["file"])
        fps = FPS.get(c["file"])
        try:
            d = ttsfast.analyze(path, fps=fps).to_dict()
        except ttsfast.TTSFastError as exc:
            print(f"| {c['file']} | refused: {type(exc).__name__} ({str(exc)[:80]}) |"
                  + " |" * len(args.detectors.split(",")) + " | |")
            continue
        cells = []
        for det in args.detectors.split(","):
            try:
                r = _detector_row(path, fps, det)
                verdict = "trusted" if r["trusted"] else "withheld: " + ", ".join(r["failed"])
                cells.append(f"{_errors(r['landmarks'], c['landmarks'])}, {r['confidence']:.2f} ({verdict})")
            except ttsfast.TTSFastError as exc:
                cells.append(f"none found ({type(exc).__name__})")
        ind = d["model"].get("in_distribution") or {}
        flag = "" if ind.get("in_distribution", True) else " **flagged**"
        print(f"| {c['file']} ({c['view']}) | {d['status']} | " + " | ".join(cells)
              + f" | {ind.get('score', float('nan')):.2f} ({ind.get('threshold', float('nan')):.2f}){flag} | {d['p_tts']:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
