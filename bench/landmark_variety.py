"""Automatic landmarks on synthetic clips: the presets' own look against the wide variety.

Runs the pipeline the tests use (preprocess -> dense_flow -> detect_cycles -> detect_landmarks)
on short clips (2.2 cycles) and compares the landmarks found on the first end-diastolic frame
of the first beat with the ground truth, in the clip's own pixels and in % of the true LV length
(annulus midpoint to apex).

    python bench/landmark_variety.py --n 48 --out /tmp/landmark_variety.json
    python bench/landmark_variety.py --n 0 --ref-seeds 8 --out /tmp/ref.json   # presets only

Not named bench_*.py: pytest does not collect it (it takes minutes).
"""
from __future__ import annotations

import argparse
import json
import time
import traceback

import numpy as np

PRESET_NAMES = ("normal", "tts", "stemi_anterior")


def _summary(p: dict) -> dict:
    """The variety draws that matter for the landmarks, rounded."""
    vi = p.get("variety_info") or {}

    def r(k, nd=2):
        v = p.get(k)
        return None if v is None else round(float(v), nd)

    return {
        "framing": vi.get("framing", "classic"), "heart": vi.get("heart", "preset"),
        "dropout_kind": vi.get("dropout", "patch"), "size": [int(p["height"]), int(p["width"])],
        "mm_per_px": r("mm_per_px", 3), "fps": r("fps", 1), "mirrored": bool(p["mirrored"]),
        "overlays": bool(p["overlays"]), "depth_mm": r("depth_mm", 1), "half_angle_deg": r("half_angle_deg", 1),
        "apex_depth_mm": r("apex_depth_mm", 1), "lv_length_mm": r("lv_length_mm", 1),
        "lv_halfwidth_mm": r("lv_halfwidth_mm", 1), "lv_apex_frac": r("lv_apex_frac"),
        "gain_db": r("gain_db", 1), "dynamic_range_db": r("dynamic_range_db", 1), "noise": r("noise"),
        "axial_sigma_mm": r("axial_sigma_mm"), "lateral_sigma_rad": r("lateral_sigma_rad", 4),
        "clutter_db": r("clutter_db", 1), "reverb_db": r("reverb_db", 1), "dropout": r("dropout"),
        "blood_db": r("blood_db", 1), "papillary": bool(p.get("papillary")),
    }


def run_one(preset: str, seed: int, variety: str | None, cycles: float = 2.2) -> dict:
    import ttsfast
    from ttsfast.cycle import detect_cycles
    from ttsfast.errors import QualityError, TTSFastError
    from ttsfast.landmarks import LANDMARK_NAMES, detect_landmarks
    from ttsfast.synth import draw_params, generate

    p = draw_params(preset, seed, variety=variety)
    period = 60.0 / float(p["heart_rate_bpm"])
    n = int(np.ceil(cycles * period * float(p["fps"]))) + 2
    row: dict = {"preset": preset, "seed": seed, "variety": variety, "n_frames": n}
    t0 = time.perf_counter()
    clip, gt = generate(preset, seed, variety=variety, n_frames=n)
    row["t_generate_s"] = round(time.perf_counter() - t0, 2)
    row["params"] = _summary(gt.params)
    row.update(raised=None, stage=None, message=None, confidence=None, errors_px=None, errors_pct=None,
               worst_pct=None, mirrored_found=None)
    t1 = time.perf_counter()
    stage = "preprocess"
    try:
        prep = ttsfast.preprocess(clip)
        stage = "dense_flow"
        flow = ttsfast.dense_flow(prep.frames, mask=prep.mask)
        stage = "detect_cycles"
        cyc = detect_cycles(flow, fps=prep.fps, mask=prep.mask)
        beat = cyc.beats[0]
        stage = "detect_landmarks"
        lm = detect_landmarks(prep.frames, flow, beat, mask=prep.mask)
    except TTSFastError as e:  # QualityError and the other typed errors
        row.update(raised=type(e).__name__, stage=stage, message=str(e)[:300],
                   quality_error=isinstance(e, QualityError))
        row["t_pipeline_s"] = round(time.perf_counter() - t1, 2)
        return row
    except Exception as e:  # an untyped error is a bug: record it, keep going
        row.update(raised=type(e).__name__, stage=stage, message=traceback.format_exc()[-600:],
                   quality_error=False)
        row["t_pipeline_s"] = round(time.perf_counter() - t1, 2)
        return row
    row["t_pipeline_s"] = round(time.perf_counter() - t1, 2)
    ed = int(beat[0])
    got = prep.to_original(lm.as_array())
    true = {k: gt.landmarks[k][ed] for k in LANDMARK_NAMES}
    L = float(np.linalg.norm(true["apex"] - 0.5 * (true["septal_annulus"] + true["lateral_annulus"])))
    err = {k: float(np.hypot(*(got[i] - true[k]))) for i, k in enumerate(LANDMARK_NAMES)}
    from ttsfast.anatomy import check_landmarks
    from ttsfast.landmarks import Landmarks

    chk = check_landmarks(lm, prep.frames[ed], prep.mask)
    tg = prep.to_grid(np.array([true[k] for k in LANDMARK_NAMES]))
    chk_true = check_landmarks(Landmarks(tg[0], tg[1], tg[2], source="caller"), prep.frames[ed], prep.mask)
    row.update(check_confidence=round(chk.confidence, 3), trusted=chk.trusted,
               checks_failed=[f["code"] for f in chk.failed],
               truth_checks_failed=[f["code"] for f in chk_true.failed])
    row.update(
        quality_error=False, ed_frame=ed, lv_length_px=round(L, 2), confidence=round(float(lm.confidence), 3),
        mirrored_found=bool(lm.mirrored), mirrored_true=bool(gt.mirrored),
        errors_px={k: round(v, 2) for k, v in err.items()},
        errors_pct={k: round(100.0 * v / L, 2) for k, v in err.items()},
        worst_pct=round(100.0 * max(err.values()) / L, 2), n_warnings=len(lm.warnings),
    )
    return row


def _auc(score: np.ndarray, positive: np.ndarray) -> float | None:
    """P(score of a positive > score of a negative) (ties count half)."""
    pos, neg = score[positive], score[~positive]
    if pos.size == 0 or neg.size == 0:
        return None
    gt = (pos[:, None] > neg[None, :]).mean()
    eq = (pos[:, None] == neg[None, :]).mean()
    return float(gt + 0.5 * eq)


def summarise(rows: list[dict]) -> dict:
    ok = [r for r in rows if r["raised"] is None]
    worst = np.array([r["worst_pct"] for r in ok], dtype=float)
    conf = np.array([r["confidence"] for r in ok], dtype=float)
    miss = worst > 10.0
    out = {
        "n": len(rows), "n_raised": len(rows) - len(ok),
        "n_quality_error": sum(1 for r in rows if r.get("quality_error")),
        "raised_by_stage": {},
        "median_worst_pct": float(np.median(worst)) if ok else None,
        "max_worst_pct": float(worst.max()) if ok else None,
        "share_within_10pct_of_measured": float(np.mean(~miss)) if ok else None,
        "share_within_10pct_of_all": float(np.sum(~miss) / len(rows)) if rows else None,
        "display_found": float(np.mean([r["mirrored_found"] == r["mirrored_true"] for r in ok])) if ok else None,
        # how well low confidence ranks the misses (> 10 % of the LV length): 1 = perfectly
        "auc_low_confidence_for_miss": _auc(-conf, miss) if ok else None,
        "median_confidence_hit": float(np.median(conf[~miss])) if (~miss).any() else None,
        "median_confidence_miss": float(np.median(conf[miss])) if miss.any() else None,
    }
    if ok and "check_confidence" in ok[0]:
        cc = np.array([r["check_confidence"] for r in ok], dtype=float)
        trusted = np.array([r["trusted"] for r in ok], dtype=bool)
        out.update(
            # the report's landmarks.confidence (ttsfast.anatomy: detector x tilt and wall margins)
            auc_low_check_confidence_for_miss=_auc(-cc, miss),
            n_trusted=int(trusted.sum()), n_trusted_misses=int((trusted & miss).sum()),
            worst_pct_trusted=float(worst[trusted].max()) if trusted.any() else None,
            n_hits_withheld=int((~trusted & ~miss).sum()),
            n_true_landmarks_refused=sum(1 for r in ok if r["truth_checks_failed"]),
        )
    for r in rows:
        if r["raised"] is not None:
            k = f"{r['stage']}:{r['raised']}"
            out["raised_by_stage"][k] = out["raised_by_stage"].get(k, 0) + 1
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=48, help="variety clips (presets in turn, seeds 0..n-1)")
    ap.add_argument("--ref-seeds", type=int, default=8, help="seeds 0..k-1 of each preset, classic look")
    ap.add_argument("--variety", default="wide")
    ap.add_argument("--out", required=True, help="JSON file to write")
    ap.add_argument("--seed0", type=int, default=0, help="first variety seed")
    args = ap.parse_args(argv)

    jobs = [(pr, s, None) for pr in PRESET_NAMES for s in range(args.ref_seeds)]
    jobs += [(PRESET_NAMES[s % 3], s, args.variety) for s in range(args.seed0, args.seed0 + args.n)]
    rows = []
    t0 = time.perf_counter()
    for i, (pr, s, v) in enumerate(jobs):
        r = run_one(pr, s, v)
        rows.append(r)
        tag = "classic" if v is None else v
        res = (f"RAISED {r['raised']} at {r['stage']}" if r["raised"]
               else f"worst {r['worst_pct']:.1f} % conf {r['confidence']:.2f} -> {r['check_confidence']:.2f} "
               f"{'trusted' if r['trusted'] else 'withheld'}")
        print(f"[{i + 1}/{len(jobs)} {time.perf_counter() - t0:.0f}s] {tag} {pr} {s}: {res} "
              f"({r['params']['framing']}, {r['params']['heart']}, {r['t_generate_s']}+{r['t_pipeline_s']} s)",
              flush=True)
        # write as we go: a long run that is stopped keeps its rows
        _write(args.out, rows)
    res = _write(args.out, rows)
    for k, v in res["summary"].items():
        print(k, json.dumps(v))
    return 0


def _write(path: str, rows: list[dict]) -> dict:
    groups = {"classic": [r for r in rows if r["variety"] is None],
              "variety": [r for r in rows if r["variety"] is not None]}
    res = {"summary": {k: summarise(v) for k, v in groups.items() if v}, "rows": rows}
    from ttsfast._atomic import write_text_atomic

    write_text_atomic(path, json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    raise SystemExit(main())
