"""Speed of the synthetic clip generator.

Run: ``pytest bench/bench_synth.py --benchmark-only`` (medians in the table), or
``pytest bench/bench_synth.py -k gate -s`` for the gate alone with its numbers.

Target (issue 3): a 64-frame 256x352 clip in under a second on the development machine
(2 cores, after Numba compilation, Numba cache on). Other jobs share those cores, so the
gate is a ratio against a reference measured in the same run, interleaved: one
``cv2.GaussianBlur`` + ``cv2.remap`` per frame on a polar grid of the generator's size,
the least any PSF-and-scan-conversion renderer must do. The full ``generate()`` (scatterer
motion, leaflets, PSF, envelope, log compression, scan conversion, ground truth) may take
at most ``MAX_RATIO`` times that (measured 16-19x, i.e. 0.6-0.7 s, at load average ~12).
The absolute median is printed; ``TTSFAST_BENCH_ABSOLUTE=1`` also asserts < 1 s.
"""
from __future__ import annotations

import os
import time

import cv2
import numpy as np
import pytest

from ttsfast.synth import generate
from ttsfast.synth.clipgen import true_measures_fast

N_FRAMES = 64
#: Absolute target for one 64-frame 256x352 clip, seconds (median).
MAX_SECONDS = 1.0
#: generate() may take at most this many times the blur+remap reference.
MAX_RATIO = 30.0


def _reference(n_frames: int) -> None:
    """Blur + scan-convert n_frames polar frames of the generator's grid size."""
    rng = np.random.default_rng(0)
    pol = rng.standard_normal((415, 195)).astype(np.float32)
    mx = rng.uniform(0, 194, (256, 352)).astype(np.float32)
    my = rng.uniform(0, 414, (256, 352)).astype(np.float32)
    for _ in range(n_frames):
        b = cv2.GaussianBlur(pol, (0, 0), sigmaX=1.9, sigmaY=1.7)
        cv2.remap(b, mx, my, cv2.INTER_LINEAR)


@pytest.fixture(scope="module", autouse=True)
def _warm():
    generate("normal", seed=0, n_frames=4)
    true_measures_fast("tts", 0)


def test_bench_generate_64(benchmark):
    benchmark.pedantic(lambda: generate("normal", seed=1, n_frames=N_FRAMES), rounds=5, iterations=1)


def test_bench_generate_64_single_thread(benchmark):
    benchmark.pedantic(lambda: generate("normal", seed=1, n_frames=N_FRAMES, threads=1),
                       rounds=3, iterations=1)


def test_bench_true_measures_fast(benchmark):
    benchmark(lambda: true_measures_fast("tts", 3))


def test_gate_generate_speed():
    gen, ref = [], []
    for s in range(7):
        t0 = time.perf_counter()
        generate("normal", seed=s, n_frames=N_FRAMES)
        gen.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        _reference(N_FRAMES)
        ref.append(time.perf_counter() - t0)
    g, r = float(np.median(gen)), float(np.median(ref))
    print(f"\ngenerate 64x256x352: median {g * 1000:.0f} ms ({g / N_FRAMES * 1000:.1f} ms/frame); "
          f"blur+remap reference {r * 1000:.0f} ms; ratio {g / r:.1f}")
    assert g / r < MAX_RATIO, f"generate/reference = {g / r:.1f} (gate {MAX_RATIO})"
    if os.environ.get("TTSFAST_BENCH_ABSOLUTE", "") not in ("", "0"):
        assert g < MAX_SECONDS, f"median {g:.2f} s for {N_FRAMES} frames (target < {MAX_SECONDS} s)"
