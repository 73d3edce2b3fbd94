"""Release gate of the whole analysis: ``analyze()`` warm against what decoding the file alone
takes, and against decode + resize to the same analysis grid + OpenCV's Farneback there (the
least a user would otherwise spend for the same flow), measured side by side in one run.

Five clips: the real GE screen capture (issue 25's gate: at most 2x the decode and at most a
quarter of the clip's duration), the shipped demo DICOM, a 2-s 514x712 screen capture with
overlays, a 2-s 112x112 EchoNet-format AVI at 50 fps and the study's 32-frame beat. Each round
runs the references and ``analyze()`` one after the other (the order alternates); the ratios are
medians of the per-round ratios, so that a change of load between rounds moves both sides.
Prints the medians, the ratios and the median time of each stage; ``TARGET`` lines say whether
issue 25's targets are met, the asserts are regression bounds (below). The GE capture is also
measured in a fresh process after :func:`ttsfast.reuse_freed_memory` (what the command-line
tools do), which cannot be undone in this one.

Run: ``pytest bench/bench_analyze.py -s``.
"""
from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest

from _shared_data import real_clip_path

QUICK = os.environ.get("TTSFAST_BENCH_QUICK", "") not in ("", "0")
REPEATS = 7 if QUICK else 9
#: Issue 25's targets on the real GE capture: analyze() at most this many times the decode...
TARGET_DECODE_RATIO = 2.0
#: ...and at most this fraction of the clip's duration.
TARGET_DURATION_RATIO = 0.25
#: Regression bounds (asserted): analyze() no slower than decode + resize + Farneback on the same
#: grid (0.35-0.61 measured across the five clips, up to 0.87 on a loaded machine, 2026-12-06)...
MAX_SAME_GRID_RATIO = 1.0
#: ...and on the GE capture at most this many times the decode alone (5.0-7.3 measured; 4.8 in a process that runs no reference).
MAX_GE_DECODE_RATIO = 8.0
#: OpenCV Farneback with ttsfast's default flow parameters (pyr_scale, levels, winsize,
#: iterations, poly_n, poly_sigma, flags): the same flow analyze() computes.
FARNEBACK_ARGS = (0.5, 3, 21, 3, 5, 1.1, 0)
GRID = (256, 352)


def _true_landmarks(gt: Any, frame: int = 0) -> dict[str, list[float]]:
    return {n: gt.landmarks[n][frame].tolist() for n in ("septal_annulus", "lateral_annulus", "apex")}


def _synthetic_cases(tmp: Path) -> dict[str, dict[str, Any]]:
    """The synthetic clips, written as the files a user would have, with their true landmarks
    (so that every stage runs: the gate times the mechanics too)."""
    from ttsfast.synth import generate, write_video

    out = {}
    clip, gt = generate("tts", seed=5, fps=50, hr=75, n_frames=100, height=514, width=712, mm_per_px=0.45,
                        overlays=True)
    out["capture_514x712"] = dict(path=write_video(clip, tmp / "capture.avi"), fps=50.0, single_beat=None,
                                  landmarks=None, duration_s=2.0)
    clip, gt = generate("tts", seed=7, fps=50, hr=75, n_frames=100, height=112, width=112, mm_per_px=1.2)
    out["echonet_112x112"] = dict(path=write_video(clip, tmp / "echonet.avi"), fps=50.0, single_beat=None,
                                  landmarks=None, duration_s=2.0)
    clip, gt = generate("stemi_anterior", seed=6, fps=31, hr=60, n_frames=32, start_phase=0.0)
    out["study_beat_32"] = dict(path=write_video(clip, tmp / "beat.avi"), fps=31.0, single_beat=True,
                                landmarks=_true_landmarks(gt), duration_s=32 / 31.0)
    return out


def decode_video(path: Path) -> Iterator[np.ndarray]:
    """Every frame of a video as OpenCV decodes it (BGR), one at a time: the reference decode."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        while True:
            ok, f = cap.read()
            if not ok:
                return
            yield f
    finally:
        cap.release()


def decode_dicom(path: Path) -> Iterator[np.ndarray]:
    """Every frame of a DICOM as pydicom decodes it: the reference decode."""
    import pydicom

    arr = pydicom.dcmread(str(path)).pixel_array
    yield from (arr if arr.ndim == 3 else arr[None])


def decode_only(decode: Callable[[Path], Iterator[np.ndarray]], path: Path) -> None:
    """Decode every frame and keep none (what decoding the file alone costs)."""
    for _ in decode(path):
        pass


def decode_resize_farneback(decode: Callable[[Path], Iterator[np.ndarray]], path: Path) -> None:
    """The reference on the same grid: decode, grey, area-resize each frame to 256x352 (rows x
    cols), OpenCV Farneback between consecutive frames with ttsfast's flow parameters."""
    import cv2

    prev = None
    for f in decode(path):
        grey = cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) if f.ndim == 3 and f.shape[2] == 3 else f
        g = cv2.resize(grey, (GRID[1], GRID[0]), interpolation=cv2.INTER_AREA)
        if prev is not None:
            cv2.calcOpticalFlowFarneback(prev, g, None, *FARNEBACK_ARGS)
        prev = g


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> dict[str, dict[str, Any]]:
    out = {"ge_real": dict(path=real_clip_path("ctrl_a4c_ge_55hz.mp4"), fps=55.0, single_beat=None,
                           landmarks=None, duration_s=110 / 55.0)}
    from ttsfast.demo import demo_clip_path

    out["demo_dicom"] = dict(path=demo_clip_path(), fps=None, single_beat=None, landmarks=None, duration_s=None,
                             decode=decode_dicom)
    out.update(_synthetic_cases(tmp_path_factory.mktemp("bench_analyze")))
    return out


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    r = fn()
    return time.perf_counter() - t0, r


def measure(case: dict[str, Any], repeats: int = REPEATS) -> dict[str, Any]:
    """Medians of decode, decode + resize + Farneback and analyze() (warm), interleaved.

    Returns a dict with ``decode``, ``same_grid``, ``analyze`` (median s), ``ratio_decode`` and
    ``ratio_same_grid`` (median per-round ratios), ``stages`` (median ms per stage), ``status``.
    """
    import cv2

    from ttsfast.analyze import analyze

    decode = case.get("decode", decode_video)
    path = case["path"]
    kw = {k: case[k] for k in ("fps", "single_beat", "landmarks")}
    cv2.setNumThreads(os.cpu_count() or 1)
    analyze(path, **kw)  # warm: Numba cache, ONNX session, file cache
    decode_resize_farneback(decode, path)
    runs: dict[str, list[float]] = {"decode": [], "same_grid": [], "analyze": []}
    stages, status = [], set()
    refs = {"decode": lambda: decode_only(decode, path), "same_grid": lambda: decode_resize_farneback(decode, path)}
    for i in range(repeats):
        order = ["decode", "same_grid", "analyze"] if i % 2 else ["analyze", "same_grid", "decode"]
        for key in order:
            if key == "analyze":
                dt, r = _timed(lambda: analyze(path, **kw))
                stages.append(r.timings_ms)
                status.add(r.status)
            else:
                dt, _ = _timed(refs[key])
            runs[key].append(dt)
    out = {k: statistics.median(v) for k, v in runs.items()}
    out.update(ratio_decode=statistics.median(a / d for a, d in zip(runs["analyze"], runs["decode"])),
               ratio_same_grid=statistics.median(a / d for a, d in zip(runs["analyze"], runs["same_grid"])),
               stages={k: statistics.median(s[k] for s in stages) for k in stages[0]}, status=sorted(status))
    return out


def _line(name: str, m: dict[str, Any], duration_s: float | None) -> str:
    dur = "" if duration_s is None else f", {m['analyze'] / duration_s:.2f} of the clip's {duration_s:.2f} s"
    return (f"[analyze {name}] median {m['analyze'] * 1e3:.0f} ms ({'/'.join(m['status'])}); decode "
            f"{m['decode'] * 1e3:.0f} ms (ratio {m['ratio_decode']:.2f}); decode+resize+Farneback@256x352 "
            f"{m['same_grid'] * 1e3:.0f} ms (ratio {m['ratio_same_grid']:.2f}){dur}; stages (ms): "
            + ", ".join(f"{k} {v:.0f}" for k, v in m["stages"].items()))


def _target_line(m: dict[str, Any], duration_s: float, setting: str) -> str:
    dur = m["analyze"] / duration_s
    met = m["ratio_decode"] <= TARGET_DECODE_RATIO and dur <= TARGET_DURATION_RATIO
    return (f"TARGET (issue 25) on the GE capture, {setting}: <= {TARGET_DECODE_RATIO}x decode and <= "
            f"{TARGET_DURATION_RATIO} of the duration: {'met' if met else 'NOT met'} ({m['ratio_decode']:.2f}x, {dur:.2f})")


@pytest.mark.parametrize("name", ["ge_real", "demo_dicom", "capture_514x712", "echonet_112x112", "study_beat_32"])
def test_analyze_gate(cases, name, capsys):
    case = cases[name]
    m = measure(case)
    with capsys.disabled():
        print("\n" + _line(name, m, case["duration_s"]))
        if name == "ge_real":
            print(_target_line(m, case["duration_s"], "default allocator"))
    assert m["ratio_same_grid"] <= MAX_SAME_GRID_RATIO, f"{name}: {m['ratio_same_grid']:.2f} of the same-grid reference"
    if name == "ge_real":
        assert m["ratio_decode"] <= MAX_GE_DECODE_RATIO, f"GE: {m['ratio_decode']:.2f}x decode"


def test_analyze_ge_reusing_memory(cases, capsys):
    """The GE capture in a fresh process that called :func:`ttsfast.reuse_freed_memory` (as the
    command-line tools do; it cannot be undone in this one)."""
    import json
    import subprocess
    import sys

    case = cases["ge_real"]
    proc = subprocess.run([sys.executable, __file__, str(case["path"])], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    m = json.loads(proc.stdout.strip().splitlines()[-1])
    with capsys.disabled():
        print("\n" + _line("ge_real, reuse_freed_memory()", m, case["duration_s"]))
        print(_target_line(m, case["duration_s"], "reuse_freed_memory()"))
    assert m["ratio_same_grid"] <= MAX_SAME_GRID_RATIO
    assert m["ratio_decode"] <= MAX_GE_DECODE_RATIO


if __name__ == "__main__":  # the subprocess of test_analyze_ge_reusing_memory
    import json
    import sys

    from ttsfast.memory import reuse_freed_memory

    assert reuse_freed_memory(), "glibc's mallopt is not available here"
    print(json.dumps(measure(dict(path=Path(sys.argv[1]), fps=55.0, single_beat=None, landmarks=None))))
