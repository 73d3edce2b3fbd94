"""Training the two-arm CNN: cohort building (clip -> model inputs, cached as .npz), stratified
k-fold cross-validation, augmentation, early stopping, metrics, and the logistic-regression
reference on true mechanics for synthetic cohorts.

Pipeline per clip (:func:`clip_to_inputs`)::

    read_clip -> preprocess -> dense_flow -> detect_cycles -> first complete beat
    -> resample_beat (32 frames, flow in px per new frame step) -> make_inputs

Labels: 1 = TTS (positive class), 0 = STEMI. Metrics: accuracy, AUC, sensitivity (TTS
recall), specificity (STEMI recall) at threshold 0.5 on p_tts.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import InputError, QualityError, TTSFastError
from ..stats import classification_metrics, roc_auc
from .inputs import MODEL_H, MODEL_T, MODEL_W, beat_inputs

CLASS_DIRS = {"STEMI": 0, "TTS": 1}


# ----------------------------------------------------------------------------- metrics
#: AUC with average ranks for ties (one implementation for the whole package).
auc = roc_auc


def binary_metrics(y: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Accuracy, AUC, sensitivity (class 1 = TTS) and specificity of probabilities ``p``,
    with the class counts (:func:`ttsfast.stats.classification_metrics`)."""
    y = np.asarray(y).astype(int).ravel()
    out = classification_metrics(y, np.asarray(p, dtype=np.float64).ravel(), threshold)
    out.update(n_tts=int((y == 1).sum()), n_stemi=int((y == 0).sum()))
    return out


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-2, iters: int = 50) -> dict[str, Any]:
    """L2-regularised logistic regression by Newton's method (IRLS) on standardised features.

    Returns ``{"mean", "std", "coef", "intercept"}`` (coef in standardised units)."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64).ravel()
    mean, std = x.mean(axis=0), x.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    z = np.hstack([np.ones((len(x), 1)), (x - mean) / std])
    w = np.zeros(z.shape[1])
    reg = np.full(z.shape[1], l2 * len(x))
    reg[0] = 0.0
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-np.clip(z @ w, -30, 30)))
        g = z.T @ (p - y) + reg * w
        hess = (z * (p * (1 - p))[:, None]).T @ z + np.diag(reg) + 1e-9 * np.eye(len(w))
        step = np.linalg.solve(hess, g)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return {"mean": mean, "std": std, "coef": w[1:], "intercept": float(w[0])}


def predict_logistic(model: dict[str, Any], x: np.ndarray) -> np.ndarray:
    """Probabilities of class 1 from :func:`fit_logistic`'s model."""
    z = (np.asarray(x, np.float64) - model["mean"]) / model["std"]
    return 1.0 / (1.0 + np.exp(-np.clip(z @ model["coef"] + model["intercept"], -30, 30)))


def stratified_folds(y: np.ndarray, k: int = 5, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``k`` (train_idx, val_idx) pairs; each class is shuffled and dealt round-robin."""
    y = np.asarray(y).astype(int)
    if k < 2:
        raise InputError(f"k-fold cross-validation needs k >= 2, got {k}")
    rng = np.random.default_rng(seed)
    fold_of = np.empty(len(y), int)
    for c in np.unique(y):
        idx = np.nonzero(y == c)[0]
        rng.shuffle(idx)
        start = int(rng.integers(k))
        fold_of[idx] = (np.arange(len(idx)) + start) % k
    out = []
    for f in range(k):
        out.append((np.nonzero(fold_of != f)[0], np.nonzero(fold_of == f)[0]))
    return out


# ----------------------------------------------------------------------------- augmentation
def _shift(x: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Shift the last two axes by (dy, dx) pixels, filling with zeros."""
    out = np.zeros_like(x)
    h, w = x.shape[-2:]
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[..., yd, xd] = x[..., ys, xs]
    return out


def augment(spatial: np.ndarray, temporal: np.ndarray, rng: np.random.Generator,
            max_shift: int = 6, max_roll: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Random small shift (same for both arms), intensity gain/offset and noise (spatial arm),
    small flow gain (0.95..1.05) and a circular time jitter of up to ``max_roll`` frames.
    No flips: the LV side is never mirrored.

    ``spatial`` [1,T,H,W], ``temporal`` [2,T,H,W] (one item, float) -> same shapes, float32.
    """
    s = spatial.astype(np.float32)
    f = temporal.astype(np.float32)
    dy, dx = (int(v) for v in rng.integers(-max_shift, max_shift + 1, 2))
    s, f = _shift(s, dy, dx), _shift(f, dy, dx)
    roll = int(rng.integers(-max_roll, max_roll + 1))
    if roll:
        s, f = np.roll(s, roll, axis=1), np.roll(f, roll, axis=1)
    inside = s != 0
    gain, offset = rng.uniform(0.8, 1.2), rng.uniform(-0.2, 0.2)
    s = np.where(inside, s * gain + offset + rng.normal(0, 0.05, s.shape).astype(np.float32), 0.0)
    f = f * np.float32(rng.uniform(0.95, 1.05))
    return s.astype(np.float32), f.astype(np.float32)


# ----------------------------------------------------------------------------- clips -> inputs
def dense_flow_any(frames: np.ndarray, mask: np.ndarray | None = None, backend: str = "native") -> np.ndarray:
    """``ttsfast.flow.dense_flow`` when present; else OpenCV Farneback with the study's
    parameters (levels=1, winsize=21, iterations=3, poly_n=5, poly_sigma=1.1).
    Returns float32 ``[T-1, H, W, 2]``."""
    try:
        from ..flow import dense_flow  # type: ignore[attr-defined]
    except ImportError:
        dense_flow = None
    if dense_flow is not None:
        return np.asarray(dense_flow(frames, mask=mask, backend=backend), np.float32)
    import cv2

    out = np.empty((frames.shape[0] - 1,) + frames.shape[1:] + (2,), np.float32)
    for i in range(frames.shape[0] - 1):
        out[i] = cv2.calcOpticalFlowFarneback(frames[i], frames[i + 1], None, 0.5, 1, 21, 3, 5, 1.1, 0)
    if mask is not None:
        out *= np.asarray(mask, bool)[None, :, :, None]
    return out


def clip_to_inputs(clip: Any, flow_backend: str = "native", beat_index: int = 0,
                   n: int = MODEL_T) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """The training/analysis pipeline for one clip (Clip, path or array).

    Returns ``(spatial [1,1,32,128,176], temporal [1,2,32,128,176], info)`` where ``info`` holds
    the beat ``(ed, es, next_ed)`` in clip frames and ``es`` in resampled frames.
    Raises QualityError when no complete beat is found or the frames are not a continuous clip
    (:func:`ttsfast.preprocess.check_continuity`).
    """
    from .. import cycle as cyc
    from ..io import read_clip
    from ..preprocess import check_continuity, preprocess

    c = read_clip(clip) if not hasattr(clip, "frames") else clip
    prep = preprocess(c)
    check_continuity(prep.frames, prep.mask)
    flow = dense_flow_any(prep.frames, mask=prep.mask, backend=flow_backend)
    cr = cyc.detect_cycles(flow, fps=prep.fps, mask=prep.mask)
    ed, es, ned = cr.beat(beat_index)
    _, _, s, t = beat_inputs(prep.frames, flow, prep.mask, ed, ned, n)
    es_new = int(round((es - ed) / (ned - ed) * (n - 1)))
    return s, t, {"beat": [int(ed), int(es), int(ned)], "es_resampled": es_new}


@dataclass
class Cohort:
    """Model inputs of a cohort, held in memory as float16.

    ``spatial`` [N,1,32,128,176], ``temporal`` [N,2,32,128,176], ``y`` [N] (1 = TTS),
    ``features`` [N, F] true mechanics (synthetic cohorts; else None), ``names``.
    """

    spatial: np.ndarray
    temporal: np.ndarray
    y: np.ndarray
    names: list[str]
    features: np.ndarray | None = None
    feature_names: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    versions: list[str] = field(default_factory=list)

    def subset(self, idx: np.ndarray) -> "Cohort":
        return Cohort(self.spatial[idx], self.temporal[idx], self.y[idx], [self.names[i] for i in idx],
                      None if self.features is None else self.features[idx], list(self.feature_names),
                      [], [self.versions[i] for i in idx] if self.versions else [])


def _cache_file(cache_dir: Path, key: str) -> Path:
    return cache_dir / (hashlib.sha1(key.encode()).hexdigest()[:20] + ".npz")


#: The true mechanics the logistic-regression reference uses: segmental peak strains, GLS,
#: the paper's peak displacements (px) and the AV-plane excursion (px) of both basal points.
TRUE_FEATURE_PREFIXES = ("strain_peak_pct.", "gls_pct", "peak_displacement_px.", "excursion_px.")


def _flow_backend_name(requested: str) -> str:
    try:
        from ..flow import EDGE_MARGIN, dense_flow  # type: ignore[attr-defined]  # noqa: F401
        # the native flow's sector-edge margin changes the inputs: part of the cache key
        return f"ttsfast.flow:{requested}" + (f":edge{EDGE_MARGIN}" if requested == "native" else "")
    except ImportError:
        return "opencv-farneback-fallback"


def _synth_fingerprint() -> str:
    """Hash of the synth package's sources: a cached synthetic clip is stale when they change."""
    h = hashlib.sha1()
    for p in sorted((Path(__file__).resolve().parents[1] / "synth").glob("*.py")):
        h.update(p.read_bytes())
    return h.hexdigest()[:12]


def _true_features(gt: Any) -> tuple[list[str], np.ndarray]:
    """Flatten ``gt.true_measures()`` (nested dict of numbers) to sorted (names, values)."""
    meas = gt.true_measures()
    flat: dict[str, float] = {}

    def walk(prefix: str, v: Any) -> None:
        if isinstance(v, dict):
            for k, vv in v.items():
                walk(f"{prefix}.{k}" if prefix else str(k), vv)
        elif isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool):
            flat[prefix] = float(v)

    walk("", meas if isinstance(meas, dict) else getattr(meas, "__dict__", {}))
    names = sorted(k for k in flat if k.startswith(TRUE_FEATURE_PREFIXES))
    return names, np.array([flat[k] for k in names], np.float64)


def _synth_clip(preset: str, seed: int, beats: float | None, overrides: dict) -> Any:
    """``synth.generate`` with ``n_frames`` set to ``beats`` cardiac cycles (from the drawn
    heart rate) unless given: shorter clips keep cohort building affordable."""
    from ..synth import draw_params, generate

    ov = dict(overrides)
    if beats is not None and "n_frames" not in ov and "n" not in ov:
        p = draw_params(preset, seed, **ov)
        ov["n_frames"] = int(np.ceil(float(p["fps"]) * beats * 60.0 / float(p["heart_rate_bpm"]))) + 2
    return generate(preset=preset, seed=seed, **ov)


def build_synthetic_cohort(n: int, seed: int = 0, cache_dir: str | Path = "/tmp/ttsfast_cohort",
                           flow_backend: str = "native", progress: bool = True,
                           presets: Sequence[str] = ("stemi_anterior", "tts"), beats: float | None = 2.3,
                           only_cached: bool = False, any_synth_version: bool = False,
                           **overrides: Any) -> Cohort:
    """Generate ``n`` synthetic clips (alternating presets; seed ``seed + i``; ``beats`` cardiac
    cycles per clip, default 30 frames/s), run the pipeline, cache each clip's inputs and true
    mechanics as .npz in ``cache_dir``. ``only_cached``: use the clips already cached, skip
    the others (e.g. to train while a cohort is still being built). The cache key includes a
    hash of the synth sources unless ``any_synth_version`` (each .npz records the hash anyway)."""
    overrides = {"fps": 30.0, **overrides}
    fp = _synth_fingerprint()
    tag = f"{'' if any_synth_version else fp}:{_flow_backend_name(flow_backend)}:{beats}:{sorted(overrides.items())}"
    return _build(
        [(f"synth:{presets[i % len(presets)]}:{seed + i}:{tag}",
          (lambda p=presets[i % len(presets)], s=seed + i: _synth_clip(p, s, beats, overrides)),
          int(presets[i % len(presets)] == "tts")) for i in range(n)],
        cache_dir, flow_backend, progress, synthetic=True, only_cached=only_cached, version=fp)


def build_folder_cohort(data_dir: str | Path, cache_dir: str | Path = "/tmp/ttsfast_cohort",
                        flow_backend: str = "native", progress: bool = True) -> Cohort:
    """Cohort from ``DATA_DIR/{TTS,STEMI}/*`` (any format ``read_clip`` takes). A ``CTRL/``
    folder is listed in ``skipped`` (the model has two classes)."""
    root = Path(data_dir)
    if not root.is_dir():
        raise InputError(f"{root} is not a folder; it must hold TTS/ and STEMI/ sub-folders of clips")
    items, skipped = [], []
    for cls, label in CLASS_DIRS.items():
        d = root / cls
        if not d.is_dir():
            raise InputError(f"{root} has no {cls}/ folder; put each class's clips in TTS/ and STEMI/")
        for p in sorted(d.iterdir()):
            if p.name.startswith("."):
                continue
            st = p.stat()
            items.append((f"file:{p.resolve()}:{st.st_size}:{st.st_mtime_ns}:{_flow_backend_name(flow_backend)}",
                          p, label))
    if (root / "CTRL").is_dir():
        skipped += [f"CTRL/{p.name}: control clips are not used by the 2-class model" for p in (root / "CTRL").iterdir()]
    coh = _build(items, cache_dir, flow_backend, progress, synthetic=False)
    coh.skipped = skipped + coh.skipped
    return coh


def _build(items: list, cache_dir: str | Path, flow_backend: str, progress: bool, synthetic: bool,
           only_cached: bool = False, version: str = "") -> Cohort:
    from tqdm import tqdm

    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    S, F, Y, names, feats, skipped, versions = [], [], [], [], [], [], []
    fnames: list[str] = []
    for key, src, label in tqdm(items, desc="cohort", disable=not progress, unit="clip"):
        cf = _cache_file(cache, key)
        if cf.is_file():
            with np.load(cf, allow_pickle=False) as z:
                s, t = z["spatial"], z["temporal"]
                fv = z["features"] if "features" in z.files else None
                fn = [str(x) for x in z["feature_names"]] if "feature_names" in z.files else []
                ver = str(z["version"]) if "version" in z.files else ""
        elif only_cached:
            skipped.append(f"{key}: not cached")
            continue
        else:
            try:
                if synthetic:
                    clip, gt = src()
                    fn, fv = _true_features(gt)
                else:
                    clip, fn, fv = src, [], None
                s, t, _ = clip_to_inputs(clip, flow_backend=flow_backend)
            except (TTSFastError, QualityError) as exc:
                skipped.append(f"{key}: {exc}")
                continue
            s, t = s[0].astype(np.float16), t[0].astype(np.float16)
            tmp = cf.with_suffix(".tmp.npz")
            extra = {"features": fv, "feature_names": np.array(fn)} if fv is not None else {}
            ver = version
            np.savez(tmp, spatial=s, temporal=t, version=np.array(version), **extra)
            tmp.replace(cf)
        S.append(s)
        F.append(t)
        Y.append(label)
        names.append(key)
        versions.append(ver)
        if fv is not None:
            feats.append(fv)
            fnames = fn
    if not S:
        raise InputError("no usable clip in the cohort: " + "; ".join(skipped[:5]))
    features = np.stack(feats) if synthetic and len(feats) == len(S) else None
    coh = Cohort(np.stack(S), np.stack(F), np.array(Y, int), names, features, fnames, skipped)
    coh.versions = versions
    return coh


# ----------------------------------------------------------------------------- training
@dataclass
class TrainConfig:
    """Optimisation settings."""

    epochs: int = 20
    batch_size: int = 8
    lr: float = 3e-3
    weight_decay: float = 1e-3
    patience: int = 5
    seed: int = 0
    augment: bool = True
    threads: int = 1
    #: Weight of the auxiliary loss: the pooled features of both arms also regress the cohort's
    #: true mechanics (z-scored; synthetic cohorts only) through a linear head that exists only
    #: during training. 0 = off. The exported network is the same either way.
    aux_weight: float = 0.0


def _batches(n: int, bs: int, rng: np.random.Generator | None):
    idx = rng.permutation(n) if rng is not None else np.arange(n)
    for i in range(0, n, bs):
        yield idx[i:i + bs]


def predict_torch(net, spatial: np.ndarray, temporal: np.ndarray, batch_size: int = 8) -> np.ndarray:
    """p_tts ``[N]`` of a PyTorch net on float16/float32 inputs."""
    import torch

    net.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(spatial), batch_size):
            s = torch.from_numpy(np.asarray(spatial[i:i + batch_size], np.float32))
            t = torch.from_numpy(np.asarray(temporal[i:i + batch_size], np.float32))
            out.append(torch.softmax(net(s, t), dim=1)[:, 1].numpy())
    return np.concatenate(out) if out else np.zeros(0)


def _aux_target(net: Any, train: Cohort, weight: float) -> tuple[Any, np.ndarray | None]:
    """The training-only auxiliary head and its targets: ``(Linear(pooled features -> F),
    z-scored true mechanics [N, F] float32)``, or ``(None, None)`` when ``weight`` is 0 or
    the cohort has no true mechanics (folders of real clips)."""
    import torch

    if weight <= 0 or train.features is None or train.features.size == 0:
        return None, None
    f = np.asarray(train.features, np.float64)
    z = ((f - f.mean(axis=0)) / (f.std(axis=0) + 1e-9)).astype(np.float32)
    with torch.random.fork_rng():  # the main run's random stream (dropout, batches) is left as it was
        head = torch.nn.Linear(2 * net.config.channels[-1], f.shape[1])
    return head, z


def train_model(train: Cohort, val: Cohort | None, cfg: TrainConfig, net_config=None,
                progress: bool = True, desc: str = "train",
                log: Callable[[str], None] | None = None) -> tuple[Any, list[dict]]:
    """Train a :class:`TwoArmNet`; early stopping on the validation loss (``patience`` epochs)
    and the best epoch's weights restored. Returns ``(net, history)``."""
    import torch
    from tqdm import tqdm

    from .net import NetConfig, TwoArmNet

    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    rng = np.random.default_rng(cfg.seed)
    net = TwoArmNet(net_config or NetConfig())
    aux_head, aux_z = _aux_target(net, train, cfg.aux_weight)
    params = list(net.parameters()) + ([] if aux_head is None else list(aux_head.parameters()))
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(cfg.epochs, 1))
    n = len(train.y)
    counts = np.bincount(train.y, minlength=2).astype(np.float64)
    class_w = torch.tensor(counts.sum() / (2 * np.maximum(counts, 1)), dtype=torch.float32)
    history: list[dict] = []
    best, best_state, bad = np.inf, None, 0
    steps = cfg.epochs * ((n + cfg.batch_size - 1) // cfg.batch_size)
    bar = tqdm(total=steps, desc=desc, disable=not progress, unit="step")
    for epoch in range(cfg.epochs):
        net.train()
        t0, tot = time.perf_counter(), 0.0
        for idx in _batches(n, cfg.batch_size, rng):
            if len(idx) < 2:  # BatchNorm needs 2 items
                bar.update(1)
                continue
            if cfg.augment:
                pairs = [augment(train.spatial[i], train.temporal[i], rng) for i in idx]
                s = np.stack([p[0] for p in pairs])
                t = np.stack([p[1] for p in pairs])
            else:
                s, t = train.spatial[idx].astype(np.float32), train.temporal[idx].astype(np.float32)
            logits, a_s, a_t = net.forward_all(torch.from_numpy(s), torch.from_numpy(t))
            loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(train.y[idx]), weight=class_w)
            if aux_head is not None:
                loss = loss + cfg.aux_weight * torch.nn.functional.mse_loss(aux_head(net.pool(a_s, a_t)),
                                                                            torch.from_numpy(aux_z[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += float(loss.detach()) * len(idx)
            bar.update(1)
        sched.step()
        rec: dict[str, Any] = {"epoch": epoch + 1, "train_loss": tot / n, "seconds": time.perf_counter() - t0}
        if val is not None and len(val.y):
            p = predict_torch(net, val.spatial, val.temporal)
            eps = 1e-6
            vl = float(-np.mean(val.y * np.log(p + eps) + (1 - val.y) * np.log(1 - p + eps)))
            rec.update({"val_loss": vl, **{f"val_{k}": v for k, v in binary_metrics(val.y, p).items()
                                           if k in ("accuracy", "auc")}})
            if vl < best - 1e-4:
                best, bad = vl, 0
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
                rec["best"] = True
            else:
                bad += 1
        history.append(rec)
        bar.set_postfix({k: round(v, 3) for k, v in rec.items() if k in ("train_loss", "val_loss", "val_auc")})
        if log:
            log(json.dumps(rec))
        if val is not None and bad >= cfg.patience:
            break
    bar.close()
    if best_state is not None:
        net.load_state_dict(best_state)
    return net.eval(), history


def cross_validate(coh: Cohort, k: int, cfg: TrainConfig, progress: bool = True,
                   log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Stratified k-fold CV. In each fold an inner 15 % of the training part (stratified) is
    the early-stopping set; the fold's validation part is only predicted. Returns per-fold
    metrics, pooled out-of-fold metrics and, when true features exist, the logistic
    regression's out-of-fold metrics on the same folds."""
    folds = stratified_folds(coh.y, k=k, seed=cfg.seed)
    oof = np.full(len(coh.y), np.nan)
    oof_lr = np.full(len(coh.y), np.nan)
    per_fold = []
    for fi, (tr, va) in enumerate(folds):
        inner = stratified_folds(coh.y[tr], k=max(2, round(1 / 0.15)), seed=cfg.seed + fi)[0]
        tr_in, es = tr[inner[0]], tr[inner[1]]
        net, hist = train_model(coh.subset(tr_in), coh.subset(es), cfg, progress=progress,
                                desc=f"fold {fi + 1}/{k}", log=log)
        p = predict_torch(net, coh.spatial[va], coh.temporal[va])
        oof[va] = p
        rec = {"fold": fi + 1, "epochs": len(hist), **binary_metrics(coh.y[va], p)}
        if coh.features is not None:
            lr = fit_logistic(coh.features[tr], coh.y[tr])
            oof_lr[va] = predict_logistic(lr, coh.features[va])
            rec["logreg_auc"] = auc(coh.y[va], oof_lr[va])
        per_fold.append(rec)
        if log:
            log(json.dumps(rec))
    res: dict[str, Any] = {"k": k, "folds": per_fold, "pooled": binary_metrics(coh.y, oof)}
    aucs = [f["auc"] for f in per_fold]
    res["auc_mean"], res["auc_sd"] = float(np.nanmean(aucs)), float(np.nanstd(aucs))
    if coh.features is not None:
        res["logreg_pooled"] = binary_metrics(coh.y, oof_lr)
    return res


def run_training(coh: Cohort, out: str | Path, cfg: TrainConfig, folds: int = 0, holdout: Cohort | None = None,
                 progress: bool = True, log: Callable[[str], None] | None = None,
                 data_description: dict | None = None) -> dict[str, Any]:
    """CV (when ``folds >= 2``), then the final model on the whole cohort (15 % kept aside for
    early stopping), saved to ``out`` (weights-only) with ``out.train.json`` beside it (the
    training description and metrics that ``export.export_onnx`` puts into the model card).
    ``holdout``: a separate held-out cohort evaluated once at the end (CNN and, when true
    features exist, a logistic regression fitted on the training cohort)."""
    from .net import count_flops, count_params, save_checkpoint

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    info: dict[str, Any] = {"training": {"data": data_description or {}, "n_clips": int(len(coh.y)),
                                         "n_tts": int(coh.y.sum()), "n_stemi": int((1 - coh.y).sum()),
                                         "skipped": coh.skipped[:50],
                                         "synth_source_versions": sorted(set(coh.versions)),
                                         "config": cfg.__dict__.copy(), "labels": {"1": "TTS", "0": "STEMI"}},
                            "metrics": {}}
    if folds >= 2:
        info["metrics"]["cross_validation"] = cross_validate(coh, folds, cfg, progress, log)
    es_split = stratified_folds(coh.y, k=max(2, round(1 / 0.15)), seed=cfg.seed + 99)[0]
    net, hist = train_model(coh.subset(es_split[0]), coh.subset(es_split[1]), cfg, progress=progress,
                            desc="final", log=log)
    info["training"]["final_history"] = hist
    info["training"]["params"] = count_params(net)
    info["training"]["flops_per_clip"] = count_flops(net)
    if holdout is not None:
        p = predict_torch(net, holdout.spatial, holdout.temporal)
        ho: dict[str, Any] = {"cnn": binary_metrics(holdout.y, p)}
        if coh.features is not None and holdout.features is not None:
            lr = fit_logistic(coh.features, coh.y)
            ho["logreg_true_mechanics"] = binary_metrics(holdout.y, predict_logistic(lr, holdout.features))
            ho["logreg_features"] = list(coh.feature_names)
            ho["auc_gap_cnn_minus_logreg"] = ho["cnn"]["auc"] - ho["logreg_true_mechanics"]["auc"]
        info["metrics"]["held_out"] = ho
    save_checkpoint(net, out)
    out.with_suffix(".train.json").write_text(json.dumps(info, indent=2, default=_json_default))
    return info


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


__all__ = ["auc", "binary_metrics", "fit_logistic", "predict_logistic", "stratified_folds", "augment",
           "dense_flow_any", "clip_to_inputs", "Cohort", "build_synthetic_cohort", "build_folder_cohort",
           "TrainConfig", "train_model", "predict_torch", "cross_validate", "run_training", "MODEL_H", "MODEL_W"]
