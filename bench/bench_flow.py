"""Benchmark of ttsfast.dense_flow (native) against OpenCV Farneback pair by pair, same
parameters and same thread count, measured side by side in one run; DIS MEDIUM for
reference.

Gate: native at least 2x faster than OpenCV (ratio of medians) on a 33-frame 256x352 clip
and a 100-frame 512x704 clip (synthetic apical echo from ttsfast.synth), both sides on one
thread (OpenCV's Farneback is essentially single-threaded, and on a shared machine a second
thread mostly measures the load of other processes).  The ratio with all cores on both
sides is measured and printed too, and gated at the same 2x unless TTSFAST_BENCH_GATE_ALL=0.

    cd /work/main && /work/venv/bin/pytest -q bench/bench_flow.py -p no:cacheprovider \
        --benchmark-disable-gc -s

TTSFAST_BENCH_QUICK=1: fewer repeats and a 40-frame large clip (same gates).
TTSFAST_BENCH_THREADS=n: thread count of the all-cores measurement (default: all cores).
"""
from __future__ import annotations

import os
import statistics
import time

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from ttsfast.flow import DEFAULT_FLOW_PARAMS, STUDY_FLOW_PARAMS, dense_flow  # noqa: E402

QUICK = os.environ.get("TTSFAST_BENCH_QUICK", "") not in ("", "0")
THREADS = int(os.environ.get("TTSFAST_BENCH_THREADS", "0")) or (os.cpu_count() or 1)
GATE_ALL = os.environ.get("TTSFAST_BENCH_GATE_ALL", "1") not in ("", "0")
REPEATS = 3 if QUICK else 5
#: Interleaved rounds of the edge-margin cost gate: each round is two ~90 ms flows, and with 7
#: rounds a clean-clone CI run once read the ratio as 1.14 where quiet runs read 1.00-1.04; 21
#: rounds (~4 s) hold the median steadier. The gate (<= 1.10) is unchanged.
EDGE_COST_ROUNDS = 21
GATE = 2.0
SIZES = {
    "small": dict(n_frames=33, height=256, width=352, mm_per_px=0.9),
    "large": dict(n_frames=40 if QUICK else 100, height=512, width=704, mm_per_px=0.45),
}
PARAMS = {"default": DEFAULT_FLOW_PARAMS, "study": STUDY_FLOW_PARAMS}


def _synth_clip(n_frames, height, width, mm_per_px):
    """Synthetic speckle clip with known motion: frames uint8 [T,H,W], true flow, tissue."""
    synth = pytest.importorskip("ttsfast.synth")
    clip, gt = synth.generate("normal", 7, n_frames=n_frames, height=height, width=width,
                              mm_per_px=mm_per_px, fps=30.0)
    return clip.frames, gt


@pytest.fixture(scope="module")
def clips():
    return {name: _synth_clip(**kw) for name, kw in SIZES.items()}


def _opencv(frames, p, threads):
    return dense_flow(frames, **p, threads=threads, backend="opencv")


def _native(frames, p, threads):
    return dense_flow(frames, **p, threads=threads)


def _dis(frames, threads):
    cv2.setNumThreads(threads)
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return np.stack([dis.calc(frames[t], frames[t + 1], None) for t in range(len(frames) - 1)])


def _medians(frames, p, threads):
    """Median wall time of native, OpenCV and DIS with `threads` threads each, runs
    interleaved so that load from other processes hits all of them alike."""
    tn, tc, td = [], [], []
    _native(frames[:3], p, threads)  # warm-up (thread start, page faults)
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        _native(frames, p, threads)
        tn.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        _opencv(frames, p, threads)
        tc.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        _dis(frames, threads)
        td.append(time.perf_counter() - t0)
    return statistics.median(tn), statistics.median(tc), statistics.median(td)


@pytest.fixture(scope="module")
def timings(clips):
    out = {}
    for size, (frames, _) in clips.items():
        for pname in ("default",) if QUICK else ("default", "study"):
            for threads in sorted({1, THREADS}):
                n, c, d = _medians(frames, PARAMS[pname], threads)
                out[(size, pname, threads)] = dict(native=n, opencv=c, dis=d, ratio=c / n)
                t, h, w = frames.shape
                print(f"\n[flow bench] {size} {t}x{h}x{w} params={pname} threads={threads}: "
                      f"native {n:.3f}s  opencv {c:.3f}s  DIS {d:.3f}s  "
                      f"ratio opencv/native {c / n:.2f}  ({1e3 * n / (t - 1):.2f} ms/pair)")
    return out


def _gate(timings, size, threads):
    for (s, pname, th), r in timings.items():
        if s == size and th == threads:
            assert r["ratio"] >= GATE, (
                f"{size}/{pname}/threads={th}: native {r['native']:.3f}s vs OpenCV "
                f"{r['opencv']:.3f}s (ratio {r['ratio']:.2f} < {GATE})")


@pytest.mark.parametrize("size", list(SIZES))
def test_gate_native_at_least_2x_faster_than_opencv(timings, size):
    _gate(timings, size, 1)


@pytest.mark.parametrize("size", list(SIZES))
def test_gate_all_cores(timings, size):
    if THREADS == 1 or not GATE_ALL:
        pytest.skip("single core, or TTSFAST_BENCH_GATE_ALL=0")
    _gate(timings, size, THREADS)


def test_accuracy_native_vs_opencv_vs_dis(clips):
    """Median end-point error in the myocardium of the small clip (not a speed gate)."""
    frames, gt = clips["small"]
    nat = _native(frames, DEFAULT_FLOW_PARAMS, THREADS)
    ocv = _opencv(frames, DEFAULT_FLOW_PARAMS, THREADS)
    dis = _dis(frames, THREADS)
    errs = {"native": [], "opencv": [], "dis": []}
    maxmot = 0.0
    for t in range(len(frames) - 1):
        tf, tm = gt.true_flow(t), gt.tissue_mask(t)
        ok = tm & np.isfinite(tf).all(-1)
        maxmot = max(maxmot, float(np.linalg.norm(tf[ok], axis=-1).max(initial=0.0)))
        for k, f in (("native", nat), ("opencv", ocv), ("dis", dis)):
            errs[k].append(np.linalg.norm(f[t] - tf, axis=-1)[ok])
    med = {k: float(np.median(np.concatenate(v))) for k, v in errs.items()}
    print(f"\n[flow bench] median EPE in myocardium (px), motion up to {maxmot:.2f} px/frame: "
          + "  ".join(f"{k} {v:.4f}" for k, v in med.items()))
    assert med["native"] <= med["opencv"] + 1e-3
    assert med["native"] <= 0.12


def test_sector_edge_margin_cost(clips):
    """With a sector mask (as analyze() runs it), the sector-edge margin (no weight for image
    structure within EDGE_MARGIN px of the mask's border) against OpenCV's weighting
    (edge_margin=0), interleaved in one run: it must cost at most 10 %. The rounds alternate
    which of the two runs first, and the gate is the median of the per-round ratios: one CI run
    read 1.105 as the ratio of the two medians with a fixed order (79.4 / 71.8 ms), where three
    runs on their own read 1.036-1.044."""
    from ttsfast.flow import EDGE_MARGIN

    frames, gt = clips["small"]
    mask = gt.sector_mask
    t_edge, t_plain = [], []
    dense_flow(frames[:3], mask=mask, threads=THREADS)

    def timed(**kw) -> float:
        t0 = time.perf_counter()
        dense_flow(frames, mask=mask, threads=THREADS, **kw)
        return time.perf_counter() - t0

    for r in range(EDGE_COST_ROUNDS):
        if r % 2:
            t_plain.append(timed(edge_margin=0))
            t_edge.append(timed())
        else:
            t_edge.append(timed())
            t_plain.append(timed(edge_margin=0))
    e, p = statistics.median(t_edge), statistics.median(t_plain)
    ratio = statistics.median(a / b for a, b in zip(t_edge, t_plain))
    print(f"\n[flow bench] small clip with sector mask, threads={THREADS}: edge_margin={EDGE_MARGIN} "
          f"{1e3 * e:.1f} ms, edge_margin=0 {1e3 * p:.1f} ms, median per-round ratio {ratio:.3f} "
          f"(ratio of the medians {e / p:.3f})")
    assert ratio <= 1.10


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("impl", ["native", "opencv", "dis"])
def test_bench(benchmark, clips, size, impl):
    frames, _ = clips[size]
    benchmark.group = f"flow {size} {frames.shape} threads={THREADS}"
    benchmark.extra_info.update(frames=list(frames.shape), threads=THREADS, params="default")
    if impl == "native":
        fn = lambda: _native(frames, DEFAULT_FLOW_PARAMS, THREADS)  # noqa: E731
    elif impl == "opencv":
        fn = lambda: _opencv(frames, DEFAULT_FLOW_PARAMS, THREADS)  # noqa: E731
    else:
        fn = lambda: _dis(frames, THREADS)  # noqa: E731
    out = benchmark.pedantic(fn, rounds=1 if QUICK else 2, iterations=1, warmup_rounds=0)
    assert out.shape == (len(frames) - 1,) + frames.shape[1:] + (2,)
