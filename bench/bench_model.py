"""Model latency on CPU: ONNX Runtime vs PyTorch eager for one clip (batch 1) and a batch of 8,
measured side by side (interleaved) in one run; Grad-CAM (hooks path) and the ONNX CAM fast
path against a plain forward.

Run:  /work/venv/bin/pytest bench/bench_model.py -q -s          (gate + table)
      /work/venv/bin/python bench/bench_model.py                 (table as JSON)
      TTSFAST_BENCH_QUICK=1 ...                                   (fewer repeats)
      TTSFAST_BENCH_THREADS=N ...                                 (threads for both; default 1)

Gate: median ONNX Runtime latency must be at least 1.3x faster than PyTorch eager (the
``TwoArmNet`` module, as a user holding the checkpoint would run it), at batch 1 and batch 8,
with the same number of threads. For transparency the table also shows PyTorch eager on the
exported inference graph (``ExportWrapper(net, inference_graph=True)``: folded batch norm,
depthwise 3D convolutions as 2D ones), which is what the ONNX file holds. Uses the shipped
model when present, else a freshly exported untrained network (same graph, same cost).
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MIN_RATIO = 1.3

# export/ is a repository tool, not part of the installed package: make it importable without
# shadowing the installed ttsfast (appended, not prepended).
_REPO = str(Path(__file__).resolve().parents[1])
if _REPO not in sys.path:
    sys.path.append(_REPO)


def _settings() -> tuple[int, int]:
    quick = os.environ.get("TTSFAST_BENCH_QUICK", "") not in ("", "0")
    threads = int(os.environ.get("TTSFAST_BENCH_THREADS", "1"))
    return (11 if quick else 15), threads


def _model(tmp: Path):
    """(onnx path, torch net): the shipped model and ... its source weights are not shipped, so
    the eager side always runs a TwoArmNet with the same architecture (cost does not depend on
    the weights); when the shipped ONNX is absent, a fresh net is exported."""
    import torch

    from ttsfast.model.net import NetConfig, TwoArmNet, save_checkpoint
    from ttsfast.model.runtime import DEFAULT_CARD, DEFAULT_MODEL

    cfg = NetConfig()
    if DEFAULT_MODEL.is_file():
        card = json.loads(DEFAULT_CARD.read_text())
        cfg = NetConfig.from_dict(card["architecture"]["config"])
        net = TwoArmNet(cfg).eval()
        return DEFAULT_MODEL, net
    torch.manual_seed(0)
    net = TwoArmNet(cfg).eval()
    save_checkpoint(net, tmp / "c.pt")
    from export.export_onnx import export_checkpoint

    export_checkpoint(tmp / "c.pt", tmp, triton=False)
    return tmp / "model.onnx", net


def measure() -> dict:
    import torch

    from export.export_onnx import parity_inputs
    from ttsfast.model.gradcam import cam_from_raw, grad_cam
    from ttsfast.model.net import ExportWrapper
    from ttsfast.model.runtime import get_session

    reps, threads = _settings()
    torch.set_num_threads(threads)
    res: dict = {"threads": threads, "repeats": reps}
    with tempfile.TemporaryDirectory() as td:
        onnx_path, net = _model(Path(td))
        sess = get_session(onnx_path, providers="cpu", intra_op_threads=threads, inter_op_threads=1)
        s8, f8 = parity_inputs(net, batch=8, seed=1)
        folded = ExportWrapper(net, inference_graph=True).eval()
        for b in (1, 8):
            s, f = s8[:b], f8[:b]
            ts, tt = torch.from_numpy(s), torch.from_numpy(f)
            feed = {"spatial": s, "temporal": f}
            t_ort, t_pt, t_fold = [], [], []
            with torch.no_grad():
                for _ in range(2):  # warm-up
                    sess.run(["logits"], feed)
                    net(ts, tt)
                    folded(ts, tt)
                for _ in range(reps):
                    t0 = time.perf_counter()
                    sess.run(["logits"], feed)
                    t1 = time.perf_counter()
                    net(ts, tt)
                    t2 = time.perf_counter()
                    folded(ts, tt)
                    t3 = time.perf_counter()
                    t_ort.append(t1 - t0)
                    t_pt.append(t2 - t1)
                    t_fold.append(t3 - t2)
            res[f"batch{b}"] = {"onnxruntime_ms": 1e3 * float(np.median(t_ort)),
                                "pytorch_eager_ms": 1e3 * float(np.median(t_pt)),
                                "ratio_pytorch_over_ort": float(np.median(t_pt) / np.median(t_ort)),
                                "pytorch_eager_inference_graph_ms": 1e3 * float(np.median(t_fold))}
        # Grad-CAM (hooks, both arms, both classes) vs one eager forward; CAM fast path vs ORT forward
        s, f = s8[:1], f8[:1]
        t_fwd, t_gc, t_ort, t_fast = [], [], [], []
        for _ in range(max(3, reps // 2)):
            t0 = time.perf_counter()
            with torch.no_grad():
                net(torch.from_numpy(s), torch.from_numpy(f))
            t1 = time.perf_counter()
            grad_cam(net, s, f, classes=(0, 1))
            t2 = time.perf_counter()
            sess.run(["logits"], {"spatial": s, "temporal": f})
            t3 = time.perf_counter()
            out = sess.run(["logits", "cam_spatial", "cam_temporal"], {"spatial": s, "temporal": f})
            cam_from_raw(out[1], out[2], classes=(0, 1), out_size=(32, 128, 176))
            t4 = time.perf_counter()
            t_fwd.append(t1 - t0)
            t_gc.append(t2 - t1)
            t_ort.append(t3 - t2)
            t_fast.append(t4 - t3)
        res["gradcam"] = {"pytorch_forward_ms": 1e3 * float(np.median(t_fwd)),
                          "gradcam_hooks_ms": 1e3 * float(np.median(t_gc)),
                          "gradcam_over_forward": float(np.median(t_gc) / np.median(t_fwd)),
                          "ort_forward_ms": 1e3 * float(np.median(t_ort)),
                          "ort_forward_plus_cam_fast_path_ms": 1e3 * float(np.median(t_fast)),
                          "cam_fast_path_over_ort_forward": float(np.median(t_fast) / np.median(t_ort))}
    return res


def test_onnxruntime_faster_than_pytorch_eager():
    res = measure()
    print("\n" + json.dumps(res, indent=2))
    for b in (1, 8):
        r = res[f"batch{b}"]["ratio_pytorch_over_ort"]
        assert r >= MIN_RATIO, f"batch {b}: ONNX Runtime only {r:.2f}x faster than PyTorch eager (< {MIN_RATIO})"


if __name__ == "__main__":  # pragma: no cover
    print(json.dumps(measure(), indent=2))
