"""Classical vs learned landmark detector, side by side.

On held-out variety clips (seeds 900000+, presets in turn), on classic clips (presets x seeds
0..7, default look) and on the real clips in ../shared/data/real/ (against the landmarks read by
eye in tests/data/real_landmarks.json). Same pipeline for both detectors: preprocess ->
dense_flow -> detect_cycles -> beats[0] -> detector; errors on the ED frame in % of the true LV
length (annulus midpoint to apex).

    python bench/landmark_cnn_compare.py --n 60 --ref-seeds 8 --out /tmp/lmcnn/compare.json

Not named bench_*.py: pytest does not collect it (it takes minutes).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from landmark_variety import PRESET_NAMES, _auc  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REAL_DIR = ROOT.parent / "shared" / "data" / "real"
REAL_FPS = {"ctrl_a4c_ge_55hz.mp4": 55.0}
DETECTORS = ("classical", "learned")


def _detectors():
    from ttsfast.landmarks import detect_landmarks
    from ttsfast.landmarks_cnn import detect_landmarks_cnn

    return {"classical": detect_landmarks, "learned": detect_landmarks_cnn}


def _score(lm, prep, true: dict) -> dict:
    from ttsfast.landmarks import LANDMARK_NAMES

    got = prep.to_original(lm.as_array())
    pts = {"landmarks_original": {k: [round(float(got[i][0]), 1), round(float(got[i][1]), 1)]
                                  for i, k in enumerate(LANDMARK_NAMES)}}
    err = {k: float(np.hypot(*(got[i] - np.asarray(true[k])))) for i, k in enumerate(LANDMARK_NAMES)
           if true.get(k) is not None}
    if true.get("apex") is None:  # apex not readable: annulus errors in px only
        return {"confidence": round(float(lm.confidence), 3), "mirrored_found": bool(lm.mirrored),
                "errors_px": {k: round(v, 1) for k, v in err.items()}, **pts}
    L = float(np.linalg.norm(np.asarray(true["apex"]) - 0.5 * (np.asarray(true["septal_annulus"])
                                                              + np.asarray(true["lateral_annulus"]))))
    return {"confidence": round(float(lm.confidence), 3), "mirrored_found": bool(lm.mirrored),
            "errors_px": {k: round(v, 1) for k, v in err.items()},
            "errors_pct": {k: round(100 * v / L, 2) for k, v in err.items()},
            "worst_pct": round(100 * max(err.values()) / L, 2), "lv_length_px": round(L, 1),
            **pts}


def _run_detectors(prep, flow, beat, true: dict | None) -> dict:
    from ttsfast.errors import TTSFastError

    out = {}
    for name, fn in _detectors().items():
        t0 = time.perf_counter()
        try:
            lm = fn(prep.frames, flow, beat, mask=prep.mask)
        except TTSFastError as e:
            out[name] = {"raised": type(e).__name__, "message": str(e)[:200]}
            continue
        except Exception:
            out[name] = {"raised": "BUG", "message": traceback.format_exc()[-500:]}
            continue
        r = _score(lm, prep, true) if true is not None else {
            "confidence": round(float(lm.confidence), 3),
            "landmarks_original": {k: [round(float(v[0]), 1), round(float(v[1]), 1)]
                                   for k, v in zip(("septal_annulus", "lateral_annulus", "apex"),
                                                   prep.to_original(lm.as_array()))}}
        r["raised"] = None
        r["t_s"] = round(time.perf_counter() - t0, 3)
        out[name] = r
    return out


def _first_beat(clip):
    """preprocess -> dense_flow -> detect_cycles on one thread: (prep, flow, first beat)."""
    import ttsfast
    from ttsfast.cycle import detect_cycles

    prep = ttsfast.preprocess(clip, threads=1)
    flow = ttsfast.dense_flow(prep.frames, mask=prep.mask, threads=1)
    return prep, flow, detect_cycles(flow, fps=prep.fps, mask=prep.mask).beats[0]


def run_synthetic(preset: str, seed: int, variety: str | None, cycles: float = 2.2) -> dict:
    from ttsfast.landmarks import LANDMARK_NAMES
    from ttsfast.synth import draw_params, generate

    p = draw_params(preset, seed, variety=variety)
    n = int(np.ceil(cycles * 60.0 / float(p["heart_rate_bpm"]) * float(p["fps"]))) + 2
    row: dict = {"preset": preset, "seed": seed, "variety": variety or "classic"}
    try:
        clip, gt = generate(preset, seed, variety=variety, n_frames=n, threads=1)
        prep, flow, beat = _first_beat(clip)
    except Exception as e:
        row["pipeline_error"] = f"{type(e).__name__}: {e}"[:300]
        return row
    ed = int(beat[0])
    row.update(ed=ed, true_ed=[int(x) for x in gt.ed_frames[:2]], mirrored_true=bool(gt.mirrored))
    true = {k: gt.landmarks[k][ed] for k in LANDMARK_NAMES}
    row.update(_run_detectors(prep, flow, beat, true))
    return row


def run_real(name: str, ref: dict | None) -> dict:
    import ttsfast

    row: dict = {"file": name}
    try:
        kw = {"fps": REAL_FPS[name]} if name in REAL_FPS else {}
        if name.startswith("pydicom:"):
            from pydicom import examples

            src = str(examples.get_path(name.split(":", 1)[1]))
        else:
            src = str(REAL_DIR / name)
        prep, flow, beat = _first_beat(ttsfast.read_clip(src, **kw))
    except Exception as e:
        row["pipeline_error"] = f"{type(e).__name__}: {e}"[:300]
        return row
    row["beat"] = [int(x) for x in beat]
    row["ref_frame"] = ref.get("frame") if ref else None
    true = ref["landmarks"] if ref else None
    row.update(_run_detectors(prep, flow, beat, true))
    return row


def summarise(rows: list[dict], det: str) -> dict:
    ok = [r for r in rows if det in r and r[det].get("raised") is None and "worst_pct" in r[det]]
    n = sum(1 for r in rows if "pipeline_error" not in r)
    if not ok:
        return {"n": n, "n_measured": 0}
    worst = np.array([r[det]["worst_pct"] for r in ok])
    conf = np.array([r[det]["confidence"] for r in ok])
    miss = worst > 10
    out = {"n": n, "n_measured": len(ok), "n_raised": n - len(ok),
           "median_worst_pct": round(float(np.median(worst)), 2), "max_worst_pct": round(float(worst.max()), 2),
           "share_within_10pct_of_measured": round(float(np.mean(~miss)), 3),
           "share_within_10pct_of_all": round(float(np.sum(~miss) / max(n, 1)), 3),
           "auc_low_confidence_for_miss": _auc(-conf, miss)}
    if "mirrored_true" in ok[0]:
        out["display_found"] = round(float(np.mean([r[det]["mirrored_found"] == r["mirrored_true"] for r in ok])), 3)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--ref-seeds", type=int, default=8)
    ap.add_argument("--seed0", type=int, default=900000)
    ap.add_argument("--no-real", action="store_true")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    import torch  # only to pin its threads where it is imported indirectly

    torch.set_num_threads(1)
    groups: dict[str, list] = {"variety_heldout": [], "classic": [], "real": []}
    t0 = time.perf_counter()
    jobs = [("variety_heldout", PRESET_NAMES[i % 3], a.seed0 + i, "wide") for i in range(a.n)]
    jobs += [("classic", pr, s, None) for pr in PRESET_NAMES for s in range(a.ref_seeds)]
    for g, pr, s, v in jobs:
        r = run_synthetic(pr, s, v)
        groups[g].append(r)
        msg = " ".join(f"{d}: " + (f"{r[d]['worst_pct']:.1f}% c{r[d]['confidence']:.2f}"
                                   if r.get(d, {}).get("raised") is None and d in r
                                   else str(r.get(d, {}).get("raised", r.get("pipeline_error"))))
                       for d in DETECTORS)
        print(f"[{time.perf_counter() - t0:.0f}s] {g} {pr} {s}: {msg}", flush=True)
    if not a.no_real:
        refp = ROOT / "tests" / "data" / "real_landmarks.json"
        refs = {}
        if refp.is_file():
            refs = {c["file"]: c for c in json.loads(refp.read_text())["clips"]}
        for name in ("ctrl_a4c_ge_55hz.mp4", "a4c_clean_1024x768.mp4", "stemi_a4c_cleaned16.gif",
                     "stemi_a4c_roi_cycle32.mp4", "pydicom:ybr_color"):
            r = run_real(name, refs.get(name))
            groups["real"].append(r)
            print(f"[real] {json.dumps(r)[:600]}", flush=True)
    res = {"summary": {g: {d: summarise(rows, d) for d in DETECTORS} for g, rows in groups.items()},
           "groups": groups}
    Path(a.out).write_text(json.dumps(res, indent=1))
    print(json.dumps(res["summary"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
