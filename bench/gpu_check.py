"""CUDA check of the ONNX model: latency of the CUDA execution provider (batch 1 and 8) and
parity of its outputs with the CPU provider. Prints one JSON object.

Run:  python bench/gpu_check.py [MODEL.onnx]     (default: the shipped ttsfast/data/model.onnx)

Exits 0 with {"status": "skipped", ...} when no CUDA provider / GPU is present; exits 1 when
CUDA runs but its outputs differ from CPU by more than 1e-3 (abs, logits/probs) .
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

ATOL = 1e-3


def _inputs(batch: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    tt = np.linspace(0, 2 * np.pi, 32, dtype=np.float32)[:, None, None]
    yy = np.linspace(-1, 1, 128, dtype=np.float32)[None, :, None]
    xx = np.linspace(-1, 1, 176, dtype=np.float32)[None, None, :]
    s = np.empty((batch, 1, 32, 128, 176), np.float32)
    f = np.empty((batch, 2, 32, 128, 176), np.float32)
    for b in range(batch):
        a = rng.uniform(0.5, 2.0)
        s[b, 0] = np.sin(3 * a * xx + np.cos(tt) + 2 * yy) + 0.3 * rng.standard_normal((32, 128, 176))
        f[b, 0] = np.cos(tt) * np.exp(-((xx - 0.2) ** 2 + yy ** 2) * 4) * 3 * a
        f[b, 1] = np.sin(tt) * np.exp(-(xx ** 2 + (yy + 0.3) ** 2) * 3) * 4
    return s, f


def main(argv: list[str]) -> int:
    try:
        import onnxruntime as ort
    except ImportError as exc:
        print(json.dumps({"status": "skipped", "reason": f"onnxruntime not importable: {exc}"}))
        return 0
    avail = ort.get_available_providers()
    if "CUDAExecutionProvider" not in avail:
        print(json.dumps({"status": "skipped", "reason": "no CUDAExecutionProvider (install onnxruntime-gpu "
                          "on a machine with an NVIDIA GPU)", "providers": avail}))
        return 0
    model = Path(argv[0]) if argv else Path(__file__).resolve().parents[1] / "ttsfast" / "data" / "model.onnx"
    if not model.is_file():
        print(json.dumps({"status": "error", "reason": f"model not found: {model}"}))
        return 2
    cuda = ("CUDAExecutionProvider", {"cudnn_conv_algo_search": "HEURISTIC"})
    try:
        gpu = ort.InferenceSession(str(model), providers=[cuda, "CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001
        print(json.dumps({"status": "skipped", "reason": f"CUDA session failed: {exc}"}))
        return 0
    if gpu.get_providers()[0] != "CUDAExecutionProvider":
        print(json.dumps({"status": "skipped", "reason": "CUDA provider fell back to CPU (no GPU / driver?)",
                          "session_providers": gpu.get_providers()}))
        return 0
    cpu = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    res: dict = {"status": "ok", "model": str(model), "session_providers": gpu.get_providers()}
    worst = 0.0
    for b in (1, 8):
        s, f = _inputs(b)
        feed = {"spatial": s, "temporal": f}
        names = [o.name for o in gpu.get_outputs()]
        for _ in range(5):
            gpu.run(None, feed)
        ts = []
        for _ in range(30):
            t0 = time.perf_counter()
            out_g = gpu.run(None, feed)
            ts.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        out_c = cpu.run(None, feed)
        t_cpu = time.perf_counter() - t0
        diffs = {n: float(np.abs(g - c).max()) for n, g, c in zip(names, out_g, out_c)}
        worst = max(worst, *(diffs[n] for n in ("logits", "probs") if n in diffs))
        res[f"batch{b}"] = {"cuda_median_ms": 1e3 * float(np.median(ts)), "cpu_once_ms": 1e3 * t_cpu,
                            "max_abs_diff_vs_cpu": diffs}
    res["parity_ok"] = worst <= ATOL
    print(json.dumps(res, indent=2))
    return 0 if res["parity_ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
