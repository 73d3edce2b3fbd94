"""Training the learned landmark detector (:mod:`ttsfast.landmarks_cnn`) on randomised synthetic
clips, and exporting it to ONNX with its card.

    ttsfast train-landmarks --synthetic 1000 --out /tmp/lmcnn

Data: ``generate(preset, seed, variety="wide")`` for the presets normal / tts / stemi_anterior
(plus a share of classic-look clips), each only as long as its first ED..ES; preprocess ->
dense flow on ED..ES -> the detector's inputs (downsampled ED frame, sector mask, summed
flow) and the true landmarks on the ED frame in grid px. Cached as ``<out>/data_<N>.npz``.

Network: a small U-Net (input ``[4, 128, 176]``, levels down to 1/16, back up to 1/2) with
heat maps of the image-left and image-right annulus points and the apex, and a display logit
(mirrored or not: which annulus point is the septal one) from the bottleneck,
Gaussian target heatmaps (sigma 1.5 heat-map px = 6 grid px) as distributions, cross-entropy
of the spatial softmax of the logits,
Adam, one thread. Augmentation: intensity gain/gamma, speckle-like noise, random zoom/shift/
rotation, and a horizontal flip that swaps the septal and lateral labels (a flipped standard
display is a mirrored one).

PyTorch is imported only inside the functions that need it.
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..landmarks import LANDMARK_NAMES
from ..landmarks_cnn import GRID, NET_IN, NET_OUT, OUT_STRIDE, raw_inputs, motion_sum

PRESETS = ("normal", "tts", "stemi_anterior")
#: Seeds of the training clips (variety / classic); held-out evaluation uses 900000+.
TRAIN_SEED0 = 10000
CLASSIC_SEED0 = 100
HELDOUT_SEED0 = 900000
ONNX_OPSET = 17


def training_jobs(n: int, classic_share: float = 0.15,
                  seed0: int = TRAIN_SEED0) -> list[tuple[str, int, str | None, bool | None]]:
    """(preset, seed, variety, mirrored override) of ``n`` training clips."""
    n_classic = int(round(classic_share * n))
    jobs: list[tuple[str, int, str | None, bool | None]] = []
    for i in range(n - n_classic):
        jobs.append((PRESETS[i % 3], seed0 + i, "wide", None))
    for i in range(n_classic):
        jobs.append((PRESETS[i % 3], CLASSIC_SEED0 + i, None, bool(i % 2)))
    return jobs


def make_example(preset: str, seed: int, variety: str | None, mirrored: bool | None = None) -> dict[str, Any]:
    """One training example: ED..ES of a short synthetic clip -> downsampled inputs and truth."""
    import ttsfast
    from ..synth import draw_params, generate
    from ..synth.clipgen import model_for

    over: dict[str, Any] = {}
    if variety is not None:
        over["variety"] = variety
    if mirrored is not None:
        over["mirrored"] = mirrored
    p = draw_params(preset, seed, **over)
    _, model = model_for(p, p["seed"])
    fps = float(p["fps"])
    n = int(math.ceil((model.timing.t0 + model.timing.t_es) * fps)) + 3
    clip, gt = generate(preset, seed, n_frames=n, threads=1, **over)
    ed, es = int(gt.ed_frames[0]), int(gt.es_frames[0])
    es = min(es, n - 1)
    prep = ttsfast.preprocess(clip, threads=1)
    flow = ttsfast.dense_flow(prep.frames[ed:es + 1], mask=prep.mask, threads=1)
    img, m, mot = raw_inputs(prep.frames[ed], prep.mask, motion_sum(flow, 0, es - ed))
    pts = np.stack([prep.to_grid(gt.landmarks[k][ed]) for k in LANDMARK_NAMES]).astype(np.float32)
    return {"img": img.astype(np.float16), "mask": (m > 0.5).astype(np.uint8), "mot": mot.astype(np.float16),
            "pts": pts, "mirrored": bool(gt.mirrored), "preset": preset, "seed": int(seed),
            "variety": variety or "classic"}


def build_dataset(jobs: list, path: str | Path, progress: bool = True, chunk: int = 50) -> dict[str, np.ndarray]:
    """Make (or load) the cached arrays of ``jobs``; chunks are kept so a stopped run resumes."""
    path = Path(path)
    if path.is_file():
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    cdir = path.with_suffix(".chunks")
    cdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    parts = []
    for c0 in range(0, len(jobs), chunk):
        cp = cdir / f"{c0:06d}.npz"
        if cp.is_file():
            with np.load(cp) as z:
                parts.append({k: z[k] for k in z.files})
            continue
        rows = []
        for j in jobs[c0:c0 + chunk]:
            try:
                rows.append(make_example(*j))
            except Exception as exc:  # a clip that fails is skipped, noted
                if progress:
                    print(f"skip {j}: {type(exc).__name__}: {exc}", flush=True)
        part = _stack(rows)
        np.savez(cp, **part)
        parts.append(part)
        if progress:
            print(f"[data] {min(c0 + chunk, len(jobs))}/{len(jobs)} clips, {time.perf_counter() - t0:.0f} s",
                  flush=True)
    data = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    np.savez(path, **data)
    return data


def _stack(rows: list[dict]) -> dict[str, np.ndarray]:
    return {k: np.stack([r[k] for r in rows]) if isinstance(rows[0][k], np.ndarray) else np.array([r[k] for r in rows])
            for k in rows[0]}


# --------------------------------------------------------------------------- network

def build_net(width: int = 16):
    """Small U-Net: [B, 4, 128, 176] -> heat-map logits [B, 3, 64, 88] of the image-LEFT annulus
    point, the image-RIGHT one and the apex, and a display logit [B, 1] (> 0: mirrored, i.e.
    the septal annulus is the right one), from the bottleneck's features kept in their layout
    (the RV's side of the LV decides it)."""
    import torch
    from torch import nn

    def block(ci, co, stride=1):
        return nn.Sequential(nn.Conv2d(ci, co, 3, stride, 1, bias=False), nn.BatchNorm2d(co), nn.ReLU(inplace=True),
                             nn.Conv2d(co, co, 3, 1, 1, bias=False), nn.BatchNorm2d(co), nn.ReLU(inplace=True))

    class LandmarkUNet(nn.Module):
        def __init__(self, c=width):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(4, c, 3, 2, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True))
            self.e1 = block(c, c)  # 64x88
            self.e2 = block(c, 2 * c, 2)  # 32x44
            self.e3 = block(2 * c, 4 * c, 2)  # 16x22
            self.e4 = block(4 * c, 4 * c, 2)  # 8x11
            self.d3 = block(8 * c, 2 * c)
            self.d2 = block(4 * c, c)
            self.d1 = block(2 * c, c)
            self.head = nn.Conv2d(c, 3, 1)
            hb, wb = -(-NET_IN[0] // 16), -(-NET_IN[1] // 16)
            self.side = nn.Sequential(nn.Conv2d(4 * c, 8, 1), nn.ReLU(inplace=True), nn.Flatten(),
                                      nn.Linear(8 * hb * wb, 32), nn.ReLU(inplace=True), nn.Linear(32, 1))

        def forward(self, x):
            up = nn.functional.interpolate
            s1 = self.e1(self.stem(x))
            s2 = self.e2(s1)
            s3 = self.e3(s2)
            s4 = self.e4(s3)
            y = self.d3(torch.cat([up(s4, size=s3.shape[-2:], mode="bilinear", align_corners=False), s3], 1))
            y = self.d2(torch.cat([up(y, size=s2.shape[-2:], mode="bilinear", align_corners=False), s2], 1))
            y = self.d1(torch.cat([up(y, size=s1.shape[-2:], mode="bilinear", align_corners=False), s1], 1))
            return self.head(y), self.side(s4)

    return LandmarkUNet()


def _heat_targets(pts_out, h: int, w: int, sigma: float):
    """Gaussian heatmaps [B, 3, h, w] at heat-map px points [B, 3, 2]."""
    import torch

    yy = torch.arange(h, dtype=torch.float32).view(1, 1, h, 1)
    xx = torch.arange(w, dtype=torch.float32).view(1, 1, 1, w)
    px = pts_out[..., 0].unsqueeze(-1).unsqueeze(-1)
    py = pts_out[..., 1].unsqueeze(-1).unsqueeze(-1)
    return torch.exp(-((xx - px) ** 2 + (yy - py) ** 2) / (2 * sigma ** 2))


def _augment_batch(img, mask, mot, pts, rng: np.random.Generator, strong: bool = True):
    """Augment one batch (torch tensors: img [B,h,w] 0..255, mask [B,h,w], mot [B,2,h,w],
    pts [B,3,2] grid px) -> network input [B,4,h,w], grid-px points [B,3,2] (septal/lateral
    swapped where flipped) and the flip flags [B]."""
    import torch
    import torch.nn.functional as F

    b, h, w = img.shape
    img = img.clone()
    if strong:
        gain = torch.tensor(rng.uniform(0.6, 1.5, b), dtype=torch.float32).view(b, 1, 1)
        gamma = torch.tensor(np.exp(rng.uniform(-0.4, 0.4, b)), dtype=torch.float32).view(b, 1, 1)
        img = 255.0 * torch.clamp((img / 255.0) * gain, 0, 1) ** gamma
        noise = torch.tensor(rng.uniform(0, 12, b), dtype=torch.float32).view(b, 1, 1)
        img = torch.clamp(img + noise * torch.randn_like(img), 0, 255)
        mot = mot * torch.tensor(rng.uniform(0.7, 1.4, b), dtype=torch.float32).view(b, 1, 1, 1)
    x = torch.cat([img[:, None], mask[:, None].float(), mot], 1)
    pts = pts.clone()
    # affine: zoom, rotation, shift (about the image centre), in normalised coordinates
    if strong:
        s = np.exp(rng.uniform(np.log(0.8), np.log(1.25), b))
        a = np.deg2rad(rng.uniform(-10, 10, b))
        tx = rng.uniform(-0.15, 0.15, b)
        ty = rng.uniform(-0.12, 0.12, b)
    else:
        s, a, tx, ty = np.ones(b), np.zeros(b), np.zeros(b), np.zeros(b)
    flip = rng.random(b) < 0.5 if strong else np.zeros(b, bool)
    # forward map of points (normalised coords u = 2 (x+0.5)/W - 1): u' = s R u + t, with aspect
    H, W = GRID
    ar = W / H
    out_pts = np.zeros(pts.shape, np.float32)
    theta = np.zeros((b, 2, 3), np.float32)
    P = pts.numpy().astype(np.float64)
    for i in range(b):
        c, sn = math.cos(a[i]), math.sin(a[i])
        # rotation in pixel-isotropic space: scale x by ar before rotating
        A = s[i] * np.array([[c, -sn / ar], [sn * ar, c]])  # acting on (u, v) normalised
        if flip[i]:
            A = A @ np.diag([-1.0, 1.0])
        t = np.array([tx[i], ty[i]])
        u = np.stack([2 * (P[i, :, 0] + 0.5) / W - 1, 2 * (P[i, :, 1] + 0.5) / H - 1], 1)
        u2 = u @ A.T + t
        out_pts[i, :, 0] = (u2[:, 0] + 1) * W / 2 - 0.5
        out_pts[i, :, 1] = (u2[:, 1] + 1) * H / 2 - 0.5
        if flip[i]:
            out_pts[i, [0, 1]] = out_pts[i, [1, 0]]
        Ai = np.linalg.inv(A)
        theta[i, :, :2] = Ai
        theta[i, :, 2] = -Ai @ t
    grid = F.affine_grid(torch.from_numpy(theta), list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    # normalise the image channel inside the (warped) mask
    m = (x[:, 1] > 0.5).float()
    n = m.sum((1, 2)).clamp(min=1)
    mu = (x[:, 0] * m).sum((1, 2)) / n
    sd = (((x[:, 0] - mu.view(b, 1, 1)) ** 2 * m).sum((1, 2)) / n).sqrt().clamp(min=1e-3)
    x0 = (x[:, 0] - mu.view(b, 1, 1)) / sd.view(b, 1, 1) * m
    x = torch.cat([x0[:, None], m[:, None], x[:, 2:] * m[:, None]], 1)
    return x, torch.from_numpy(out_pts), flip


def train(data: dict[str, np.ndarray], out_dir: str | Path, *, minutes: float = 20.0, batch: int = 16,
          lr: float = 2e-3, sigma: float = 1.5, width: int = 16, seed: int = 0, threads: int = 1,
          val_frac: float = 0.05, side_weight: float = 1.0, progress: bool = True) -> dict[str, Any]:
    """Train for a wall-clock budget; return the info dict (weights saved to ``out_dir/landmarks.pt``)."""
    import torch

    torch.set_num_threads(int(threads))
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n = len(data["pts"])
    idx = rng.permutation(n)
    n_val = max(8, int(val_frac * n))
    val, tr = idx[:n_val], idx[n_val:]
    img = torch.from_numpy(data["img"].astype(np.float32))
    mask = torch.from_numpy(data["mask"].astype(np.float32))
    mot = torch.from_numpy(data["mot"].astype(np.float32))
    pts = torch.from_numpy(data["pts"].astype(np.float32))
    mirrored = np.asarray(data["mirrored"], bool)
    net = build_net(width)
    n_params = sum(p.numel() for p in net.parameters())
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    budget = 60.0 * minutes
    t0 = time.perf_counter()
    h, w = NET_OUT
    step, epoch = 0, 0
    hist = []

    def val_err():
        net.eval()
        errs = []
        with torch.no_grad():
            for c in range(0, len(val), 32):
                bi = torch.from_numpy(val[c:c + 32])
                x, p, _ = _augment_batch(img[bi], mask[bi], mot[bi], pts[bi], rng, strong=False)
                hm, side = net(x)
                hm, side = hm.numpy(), side.numpy()
                for k in range(len(bi)):
                    from ..landmarks_cnn import decode_outputs

                    q, _ = decode_outputs(hm[k], side[k])
                    pp = p[k].numpy()
                    L = np.hypot(*(pp[2] - 0.5 * (pp[0] + pp[1])))
                    errs.append(100 * np.max(np.hypot(*(q - pp).T)) / L)
        net.train()
        return float(np.median(errs)), float(np.mean(np.array(errs) <= 10))

    lr_now = lr
    batch = max(1, min(int(batch), len(tr)))
    while time.perf_counter() - t0 <= budget:
        epoch += 1
        perm = rng.permutation(tr)
        for c in range(0, len(perm) - batch + 1, batch):
            el = time.perf_counter() - t0
            if el > budget:
                break
            # cosine decay over the wall-clock budget
            lr_now = 0.5 * lr * (1 + math.cos(math.pi * min(1.0, el / budget))) + 1e-5
            for g in opt.param_groups:
                g["lr"] = lr_now
            bi = torch.from_numpy(perm[c:c + batch])
            x, p, flip = _augment_batch(img[bi], mask[bi], mot[bi], pts[bi], rng)
            mir = torch.from_numpy((mirrored[bi.numpy()] ^ flip).astype(np.float32))
            # (septal, lateral, apex) -> (image-left, image-right, apex)
            lr_pts = torch.where(mir.view(-1, 1, 1) > 0.5, p[:, [1, 0, 2]], p)
            p_out = (lr_pts + 0.5) / OUT_STRIDE - 0.5
            tgt = _heat_targets(p_out, h, w, sigma)
            pred, side = net(x)
            pred = pred.flatten(2)  # logits [B, 3, h*w]
            tgt = tgt.flatten(2)
            # a landmark warped (mostly) off the map gives no loss (a whole Gaussian sums to ~14)
            inside = (tgt.sum(-1) > 5.0).float()
            tgt = tgt / tgt.sum(-1, keepdim=True).clamp(min=1e-6)
            loss = -((tgt * torch.log_softmax(pred, -1)).sum(-1) * inside).sum() / inside.sum().clamp(min=1)
            loss = loss + side_weight * torch.nn.functional.binary_cross_entropy_with_logits(side[:, 0], mir)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if progress and step % 50 == 0:
                print(f"[train] epoch {epoch} step {step} loss {loss.item():.5f} lr {lr_now:.2e} "
                      f"{time.perf_counter() - t0:.0f} s", flush=True)
        else:
            med, share = val_err()
            hist.append({"epoch": epoch, "step": step, "val_median_worst_pct": round(med, 2),
                         "val_within_10pct": round(share, 3), "t_s": round(time.perf_counter() - t0, 1)})
            if progress:
                print(f"[val] {hist[-1]}", flush=True)
            continue
        break
    med, share = val_err()
    hist.append({"epoch": epoch, "step": step, "val_median_worst_pct": round(med, 2),
                 "val_within_10pct": round(share, 3), "t_s": round(time.perf_counter() - t0, 1)})
    if progress:
        print(f"[val] final {hist[-1]}", flush=True)
    net.eval()
    torch.save(net.state_dict(), out_dir / "landmarks.pt")
    return {"n_params": int(n_params), "n_train": int(len(tr)), "n_val": int(len(val)), "steps": step,
            "epochs": epoch, "train_s": round(time.perf_counter() - t0, 1), "history": hist,
            "settings": {"batch": batch, "lr": lr, "sigma_heatmap_px": sigma, "width": width, "seed": seed,
                         "threads": threads, "minutes": minutes, "optimizer": "Adam, cosine decay over the budget",
                         "loss": "cross-entropy of the spatial softmax against the normalised Gaussian target "
                                 f"+ {side_weight} x BCE of the display logit",
                         "augmentation": "gain 0.6-1.5, gamma exp(+-0.4), noise SD 0-12, motion x0.7-1.4, "
                                         "zoom 0.8-1.25, rotation +-10 deg, shift +-15/12 %, "
                                         "h-flip with septal/lateral swapped"}}


def export_onnx(out_dir: str | Path, info: dict[str, Any], width: int = 16) -> Path:
    """Export ``out_dir/landmarks.pt`` to ``out_dir/landmarks.onnx`` (checked against ONNX
    Runtime) and write ``landmarks.card.json``."""
    import torch

    from .card import NOT_FOR_PATIENTS, sha256_file

    out_dir = Path(out_dir)
    net = build_net(width)
    net.load_state_dict(torch.load(out_dir / "landmarks.pt", map_location="cpu", weights_only=True))
    net.eval()
    x = torch.randn(2, 4, *NET_IN)
    path = out_dir / "landmarks.onnx"
    torch.onnx.export(net, x, str(path), input_names=["x"], output_names=["heatmaps", "mirrored_logit"],
                      opset_version=ONNX_OPSET, do_constant_folding=True,
                      dynamic_axes={"x": {0: "batch"}, "heatmaps": {0: "batch"}, "mirrored_logit": {0: "batch"}},
                      dynamo=False)
    import onnxruntime as ort

    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        ref = [r.numpy() for r in net(x)]
    got = s.run(None, {"x": x.numpy()})
    diff = max(float(np.abs(r - g).max()) for r, g in zip(ref, got))
    if diff > 1e-3:
        raise RuntimeError(f"ONNX export differs from PyTorch by {diff}")
    card = {"name": "ttsfast landmark heatmap CNN", "warning": NOT_FOR_PATIENTS,
            "onnx_sha256": sha256_file(path), "onnx_opset": ONNX_OPSET, "onnx_max_abs_diff_vs_torch": diff,
            "input": {"name": "x", "shape": ["B", 4, *NET_IN],
                      "channels": ["ED frame normalised in the sector", "sector mask",
                                   "summed flow ED->ES dy / 10 (grid px)", "|summed flow| / 10"],
                      "grid": list(GRID)},
            "output": {"name": "heatmaps", "shape": ["B", 3, *NET_OUT],
                       "maps": ["image-left annulus", "image-right annulus", "apex"],
                       "landmarks": list(LANDMARK_NAMES), "stride_grid_px": OUT_STRIDE,
                       "mirrored_logit": "[B, 1], > 0: mirrored display (septal annulus = the image-right one)"},
            **info}
    with open(out_dir / "landmarks.card.json", "w", encoding="utf-8") as fh:
        json.dump(card, fh, indent=1)
    return path


def train_landmarks(n: int, out_dir: str | Path, *, minutes: float = 20.0, cache_dir: str | Path | None = None,
                    threads: int = 1, seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """The whole job: data (cached), training, export. Returns the card."""
    from .._optional import require_torch

    require_torch("ttsfast train-landmarks")
    out_dir = Path(out_dir)
    cache = Path(cache_dir) if cache_dir else out_dir
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    t0 = time.perf_counter()
    jobs = training_jobs(n)
    data = build_dataset(jobs, cache / f"data_{n}.npz", progress=progress)
    t_data = time.perf_counter() - t0
    info = train(data, out_dir, minutes=minutes, threads=threads, seed=seed, progress=progress)
    n_classic = sum(1 for j in jobs if j[2] is None)
    info["data"] = {"n_clips": int(len(data["pts"])), "n_jobs": n,
                    "presets": list(PRESETS), "variety": "wide (85 %), classic look (15 %, half mirrored)",
                    "seeds_variety": [TRAIN_SEED0, TRAIN_SEED0 + n - n_classic - 1],
                    "seeds_classic": [CLASSIC_SEED0, CLASSIC_SEED0 + n_classic - 1],
                    "data_s": round(t_data, 1), "data_cache": str(cache / f"data_{n}.npz")}
    export_onnx(out_dir, info)
    with open(out_dir / "landmarks.card.json", encoding="utf-8") as fh:
        return json.load(fh)
