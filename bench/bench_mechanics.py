"""Benchmark: point tracking + strain of one beat (32 frames, 256x352 grid, 200 points) next to
the flows it sits on (measured in the same run): the clip's dense flow (Farneback, native) and
the tracking flow the default mechanics method computes over the beat in the box of the points
(``ttsfast.flow.tracking_flow``, OpenCV DIS held to the dense flow).

Run:  /work/venv/bin/pytest bench/bench_mechanics.py --benchmark-only -q -s
      (or ``/work/venv/bin/python bench/bench_mechanics.py`` for a quick table)

Gate: tracking + strain must cost less than 5 % of each of the two flows of the same beat.
"""
from __future__ import annotations

import time

import numpy as np
import pytest

from ttsfast.mechanics import strain_curves
from ttsfast.tracking import track_points

T, H, W, N_POINTS = 32, 256, 352, 200


def _frames(seed: int = 0) -> np.ndarray:
    """A speckle texture moving with a smooth periodic field (realistic enough for flow cost)."""
    import cv2

    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.random((H + 64, W + 64)).astype(np.float32) * 255, (0, 0), 1.2)
    out = np.empty((T, H, W), np.uint8)
    for k in range(T):
        s = 1.0 - 0.12 * np.sin(np.pi * k / (T - 1)) ** 2
        m = np.float32([[1, 0, 32], [0, s, 32 + 40 * (1 - s)]])
        out[k] = np.clip(cv2.warpAffine(base, m, (W, H)) * 2 - 128, 0, 255).astype(np.uint8)
    return out


def _flow_fn():
    """(name, function frames -> flow): ttsfast's dense flow when present, else OpenCV Farneback."""
    try:
        from ttsfast.flow import dense_flow

        return "ttsfast.flow.dense_flow", lambda fr: dense_flow(fr)
    except ImportError:
        import cv2

        def farneback(fr):
            return np.stack([cv2.calcOpticalFlowFarneback(fr[i], fr[i + 1], None, 0.5, 3, 15, 3, 5, 1.1, 0)
                             for i in range(len(fr) - 1)]).astype(np.float32)

        return "cv2 Farneback (ttsfast.flow absent)", farneback


def _roi(pts: np.ndarray) -> tuple[int, int, int, int]:
    """The box measure_mechanics(method="dis") computes the tracking flow in."""
    from ttsfast.mechanics import tracking_box

    return tracking_box(pts)


def _tracking_flow(fr: np.ndarray, flow: np.ndarray) -> np.ndarray:
    from ttsfast.flow import tracking_flow

    return tracking_flow(fr, roi=_roi(_points()), reference=flow)


def _points() -> np.ndarray:
    """200 points: 3 landmarks + two walls of 98 points + 1 spare, inside the grid."""
    t = np.linspace(0, 1, 98)
    sep = np.stack([170 + 20 * t, 200 - 150 * t], -1)
    lat = np.stack([240 - 50 * t, 205 - 155 * t], -1)
    return np.concatenate([[[170, 200], [240, 205], [190, 50]], sep, lat, [[200, 120]]])


def tracking_and_strain(flow: np.ndarray, pts: np.ndarray) -> dict:
    tr = track_points(flow, pts, full_beat=True)
    p = tr.points
    walls = {"inferoseptal": p[:, 3:101], "anterolateral": p[:, 101:199]}
    return strain_curves(walls)


@pytest.fixture(scope="module")
def beat():
    fr = _frames()
    name, fn = _flow_fn()
    flow = fn(fr)
    tracking_and_strain(flow, _points())  # compile / load the Numba cache outside the timing
    return fr, flow, name, fn


def test_bench_flow(benchmark, beat):
    fr, _, name, fn = beat
    benchmark.group = "mechanics beat 32x256x352"
    benchmark.extra_info["flow"] = name
    benchmark.pedantic(fn, args=(fr,), rounds=3, iterations=1)


def test_bench_tracking_flow(benchmark, beat):
    fr, flow, _, _ = beat
    benchmark.group = "mechanics beat 32x256x352"
    benchmark.extra_info["roi"] = str(_roi(_points()))
    benchmark.pedantic(_tracking_flow, args=(fr, flow), rounds=3, iterations=1)


def test_bench_tracking_strain(benchmark, beat):
    _, flow, _, _ = beat
    benchmark.group = "mechanics beat 32x256x352"
    benchmark.pedantic(tracking_and_strain, args=(flow, _points()), rounds=20, iterations=1)


def test_bench_measure_mechanics_stage(benchmark, beat):
    """The whole mechanics stage of one beat (caller landmarks, 2x31 wall points, 32-frame
    resampling, strain, displacement, velocities), for reference."""
    from ttsfast.mechanics import measure_mechanics

    fr, flow, _, _ = beat
    lm = {"septal_annulus": (170.0, 200.0), "lateral_annulus": (240.0, 205.0), "apex": (190.0, 50.0)}
    benchmark.group = "mechanics beat 32x256x352"
    benchmark.pedantic(measure_mechanics, args=(fr, flow, (0, 12, T - 1)),
                       kwargs=dict(landmarks=lm, fps=50.0, mm_per_px=0.9), rounds=10, iterations=1)


def test_tracking_is_small_next_to_flow(beat):
    """Side by side in one run: medians of 3 runs of each flow vs 20 tracking+strain runs."""
    fr, flow, name, fn = beat
    tf, td = [], []
    for _ in range(3):
        t = time.perf_counter()
        fn(fr)
        tf.append(time.perf_counter() - t)
        t = time.perf_counter()
        _tracking_flow(fr, flow)
        td.append(time.perf_counter() - t)
    tt = []
    pts = _points()
    for _ in range(20):
        t = time.perf_counter()
        tracking_and_strain(flow, pts)
        tt.append(time.perf_counter() - t)
    f, d, m = float(np.median(tf)), float(np.median(td)), float(np.median(tt))
    print(f"\nflow ({name}): {1e3 * f:.1f} ms/beat; tracking flow (DIS in {_roi(pts)}): {1e3 * d:.1f} ms/beat; "
          f"tracking+strain (200 pts): {1e3 * m:.3f} ms/beat; ratio {100 * m / f:.2f} % / {100 * m / d:.2f} %")
    assert m < 0.05 * f and m < 0.05 * d


if __name__ == "__main__":
    fr = _frames()
    name, fn = _flow_fn()
    flow = fn(fr)
    tracking_and_strain(flow, _points())
    t = time.perf_counter()
    fn(fr)
    f = time.perf_counter() - t
    ts = []
    for _ in range(20):
        t = time.perf_counter()
        tracking_and_strain(flow, _points())
        ts.append(time.perf_counter() - t)
    m = float(np.median(ts))
    print(f"flow ({name}): {1e3 * f:.1f} ms; tracking+strain: {1e3 * m:.3f} ms; ratio {100 * m / f:.2f} %")
