"""Running the model: ONNX Runtime sessions (cached, thread-safe) or a weights-only checkpoint.

``model=`` everywhere accepts None (the shipped default ``ttsfast/data/model.onnx``), the path
of an ONNX file with its model card (SHA-256 checked before loading), or the path of a
PyTorch checkpoint ``.pt``/``.pth`` (weights-only state dict, run with PyTorch eager).

Sessions are cached per (model path, file identity, providers, threads) in one dict guarded
by a lock; ONNX Runtime's ``InferenceSession.run`` is safe to call from many threads.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import InputError, ModelError
from .card import card_path_for, load_card, verify_model_file
from .inputs import MODEL_H, MODEL_T, MODEL_W

#: The shipped default model and its card.
DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "data" / "model.onnx"
DEFAULT_CARD = DEFAULT_MODEL.with_name("model_card.json")
#: The same shipped model's weights-only PyTorch checkpoint (for the Grad-CAM hooks path).
DEFAULT_TORCH_MODEL = DEFAULT_MODEL.with_name("model.pt")

_CACHE: dict[tuple, Any] = {}
_LOCK = threading.Lock()

ProviderSpec = Any  # "auto" | "cpu" | "cuda" | list of provider names or (name, options)


@dataclass
class ModelOutput:
    """Outputs of one batch.

    Attributes
    ----------
    logits, probs : np.ndarray
        float32 ``[B, 2]`` for (STEMI, TTS).
    cam_spatial, cam_temporal : np.ndarray or None
        Raw class activation maps ``[B, 2, t, h, w]`` (``sum_k W_ck A_k``), when asked for.
    features_spatial, features_temporal : np.ndarray or None
        float64 ``[B, C]``: each arm's last-conv activations averaged over ``t, h, w`` (the
        linear head's input; :func:`ttsfast.model.ood.pool_features`), when asked for.
    """

    logits: np.ndarray
    probs: np.ndarray
    cam_spatial: np.ndarray | None = None
    cam_temporal: np.ndarray | None = None
    features_spatial: np.ndarray | None = None
    features_temporal: np.ndarray | None = None

    @property
    def p_tts(self) -> np.ndarray:
        """float ``[B]``: probability of Takotsubo syndrome."""
        return self.probs[:, 1]


def resolve_providers(providers: ProviderSpec = "auto") -> tuple:
    """Normalise a provider request to a hashable tuple of ``(name, ((key, value), ...))``.

    "auto": CUDA first when ONNX Runtime offers it (``cudnn_conv_algo_search=HEURISTIC``), then
    CPU. "cpu": CPU only. "cuda": CUDA then CPU (ModelError when CUDA is unavailable).
    """
    import onnxruntime as ort

    avail = ort.get_available_providers()
    cuda = ("CUDAExecutionProvider", (("cudnn_conv_algo_search", "HEURISTIC"),))
    cpu = ("CPUExecutionProvider", ())
    if providers is None or providers == "auto":
        return (cuda, cpu) if "CUDAExecutionProvider" in avail else (cpu,)
    if providers == "cpu":
        return (cpu,)
    if providers == "cuda":
        if "CUDAExecutionProvider" not in avail:
            raise ModelError(f"CUDAExecutionProvider is not available (have {avail}); install onnxruntime-gpu "
                             "with a matching CUDA, or use providers='cpu'")
        return (cuda, cpu)
    out = []
    for p in providers:
        if isinstance(p, str):
            out.append((p, ()))
        else:
            name, opts = p
            out.append((str(name), tuple(sorted((str(k), str(v)) for k, v in dict(opts).items()))))
    return tuple(out)


def _model_kind(path: Path) -> str:
    suf = path.suffix.lower()
    if suf == ".onnx":
        return "onnx"
    if suf in (".pt", ".pth"):
        return "torch"
    raise ModelError(f"unknown model file type {path.name!r}: give an .onnx file (with its model card) "
                     "or a weights-only PyTorch checkpoint (.pt/.pth)")


def _resolve_model(model: str | Path | None) -> Path:
    p = DEFAULT_MODEL if model is None else Path(model)
    if not p.is_file():
        raise ModelError(f"model file not found: {p}" + (" (the package's default model is missing; "
                         "reinstall ttsfast)" if model is None else ""))
    return p.resolve()


def _new_session(path: Path, providers: tuple, intra: int, inter: int):
    import onnxruntime as ort

    card = load_card(card_path_for(path))
    verify_model_file(path, card)
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(intra)
    so.inter_op_num_threads = int(inter)
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # idle pool threads sleep instead of spinning (ORT's default spins them after every run,
    # which takes a core from the flow of a live stream or of the next clip)
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    provs = [name if not opts else (name, dict(opts)) for name, opts in providers]
    try:
        sess = ort.InferenceSession(str(path), sess_options=so, providers=provs)
    except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
        raise ModelError(f"ONNX Runtime cannot load {path}: {exc}") from exc
    names_in = [i.name for i in sess.get_inputs()]
    names_out = [o.name for o in sess.get_outputs()]
    if names_in[:2] != ["spatial", "temporal"] or "logits" not in names_out:
        raise ModelError(f"{path} is not a ttsfast model: inputs {names_in}, outputs {names_out}; "
                         "expected inputs ['spatial', 'temporal'] and an output 'logits'")
    return sess


def get_session(model: str | Path | None = None, providers: ProviderSpec = "auto",
                intra_op_threads: int = 0, inter_op_threads: int = 0):
    """The cached ``onnxruntime.InferenceSession`` for these arguments (created on first use,
    after checking the file's SHA-256 against its model card).

    ``intra_op_threads`` / ``inter_op_threads``: ONNX Runtime thread pools (0 = its default).
    """
    path = _resolve_model(model)
    if _model_kind(path) != "onnx":
        raise ModelError(f"{path} is not an ONNX file")
    st = path.stat()
    key = ("onnx", str(path), st.st_mtime_ns, st.st_size, resolve_providers(providers),
           int(intra_op_threads), int(inter_op_threads))
    with _LOCK:
        sess = _CACHE.get(key)
        if sess is None:
            sess = _new_session(path, key[4], key[5], key[6])
            _CACHE[key] = sess
    return sess


def _get_torch_net(path: Path):
    from .net import load_checkpoint

    st = path.stat()
    key = ("torch", str(path), st.st_mtime_ns, st.st_size)
    with _LOCK:
        net = _CACHE.get(key)
        if net is None:
            net = load_checkpoint(path)
            _CACHE[key] = net
    return net


def load_torch_model(model: str | Path | None):
    """The cached :class:`~ttsfast.model.net.TwoArmNet` (eval mode) of a weights-only ``.pt``
    checkpoint, for the Grad-CAM hooks path. ModelError for an ONNX file (use the CAM fast
    path, :func:`~ttsfast.model.gradcam.cam_from_raw`, which is exact for this head).
    ``model=None``: the shipped checkpoint ``ttsfast/data/model.pt`` (same weights as the
    default ONNX model)."""
    if model is None:
        if not DEFAULT_TORCH_MODEL.is_file():
            raise ModelError(f"the shipped PyTorch checkpoint {DEFAULT_TORCH_MODEL} is missing (needed for "
                             "saliency='gradcam' with the default model); reinstall ttsfast or use saliency='cam'")
        model = DEFAULT_TORCH_MODEL
    path = _resolve_model(model)
    if _model_kind(path) != "torch":
        raise ModelError(f"{path.name} is an ONNX file; the Grad-CAM hooks path needs the PyTorch checkpoint "
                         "(.pt). For ONNX models use the CAM fast path (saliency='cam'), which equals Grad-CAM "
                         "for this network's head")
    return _get_torch_net(path)


def clear_cache() -> None:
    """Drop every cached session / network (e.g. after replacing a model file)."""
    with _LOCK:
        _CACHE.clear()


def _check_batch(spatial, temporal) -> tuple[np.ndarray, np.ndarray]:
    s = np.ascontiguousarray(spatial, dtype=np.float32)
    t = np.ascontiguousarray(temporal, dtype=np.float32)
    if s.ndim == 4:
        s = s[None]
    if t.ndim == 4:
        t = t[None]
    if s.ndim != 5 or s.shape[1] != 1 or t.ndim != 5 or t.shape[1] != 2 or s.shape[0] != t.shape[0] \
            or s.shape[2:] != t.shape[2:]:
        raise InputError(f"model inputs must be spatial [B,1,T,H,W] and temporal [B,2,T,H,W] with the same "
                         f"B,T,H,W; got {s.shape} and {t.shape} (use ttsfast.model.inputs.make_inputs)")
    if s.shape[2:] != (MODEL_T, MODEL_H, MODEL_W):
        raise InputError(f"model inputs must be on the {MODEL_T}x{MODEL_H}x{MODEL_W} grid; got {s.shape[2:]}")
    if not (np.isfinite(s).all() and np.isfinite(t).all()):
        raise InputError("model inputs contain NaN or infinite values")
    return s, t


def predict_batch(spatial: np.ndarray, temporal: np.ndarray, model: str | Path | None = None,
                  providers: ProviderSpec = "auto", intra_op_threads: int = 0, inter_op_threads: int = 0,
                  with_cam: bool = False, batch_size: int = 8, with_features: bool = False) -> ModelOutput:
    """Run the model on a batch (or a cohort, in chunks of ``batch_size``).

    Parameters
    ----------
    spatial, temporal : np.ndarray
        float32 ``[B,1,32,128,176]`` and ``[B,2,32,128,176]`` (a single item may omit B).
    model : path or None
        ONNX file (with card) or weights-only ``.pt`` checkpoint; None = shipped default.
    providers, intra_op_threads, inter_op_threads
        ONNX Runtime settings (ignored for ``.pt`` models).
    with_cam : bool
        Also return the raw class activation maps (for :func:`~ttsfast.model.gradcam.cam_from_raw`).
    batch_size : int
        Items per ONNX Runtime call.
    with_features : bool
        Also return each arm's pooled features ``[B, C]`` (for the out-of-distribution check,
        :func:`ttsfast.model.ood.in_distribution`); needs the ``act_spatial`` /
        ``act_temporal`` outputs of an ONNX model.
    """
    from .ood import pool_features

    s, t = _check_batch(spatial, temporal)
    path = _resolve_model(model)
    kind = _model_kind(path)
    bs = max(1, int(batch_size))
    parts: list[list[np.ndarray]] = []
    if kind == "onnx":
        sess = get_session(path, providers, intra_op_threads, inter_op_threads)
        outs = ["logits", "probs"] + (["cam_spatial", "cam_temporal"] if with_cam else [])
        extra = ["act_spatial", "act_temporal"] if with_features else []
        have = {o.name for o in sess.get_outputs()}
        missing = [o for o in outs + extra if o not in have]
        if missing == ["probs"] and not with_cam:
            outs = ["logits"]
        elif missing:
            raise ModelError(f"{path} lacks outputs {missing}; re-export it with python -m export.export_onnx")
        for i in range(0, s.shape[0], bs):
            res = sess.run(outs + extra, {"spatial": s[i:i + bs], "temporal": t[i:i + bs]})
            if with_features:  # pool per chunk: the activations themselves are not kept
                res = res[:len(outs)] + [pool_features(res[-2]), pool_features(res[-1])]
            parts.append(res)
    else:
        from .._optional import require_torch

        torch = require_torch(f"the PyTorch checkpoint {path.name}")
        from .net import ExportWrapper

        wrapper = ExportWrapper(_get_torch_net(path)).eval()
        with torch.no_grad():
            for i in range(0, s.shape[0], bs):
                lg, pr, a_s, a_t, cs, ct = wrapper(torch.from_numpy(s[i:i + bs]), torch.from_numpy(t[i:i + bs]))
                res = [x.numpy() for x in ((lg, pr, cs, ct) if with_cam else (lg, pr))]
                if with_features:
                    res += [pool_features(a_s.numpy()), pool_features(a_t.numpy())]
                parts.append(res)
    cols = [np.concatenate(c, axis=0) for c in zip(*parts)]
    feats: list[np.ndarray | None] = [None, None]
    if with_features:
        feats, cols = cols[-2:], cols[:-2]
    logits = cols[0].astype(np.float32)
    if len(cols) >= 2:
        probs = cols[1].astype(np.float32)
    else:
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs = (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
    return ModelOutput(logits=logits, probs=probs,
                       cam_spatial=cols[2] if with_cam else None,
                       cam_temporal=cols[3] if with_cam else None,
                       features_spatial=feats[0], features_temporal=feats[1])


def predict(spatial: np.ndarray, temporal: np.ndarray, model: str | Path | None = None,
            **kwargs: Any) -> ModelOutput:
    """One clip: ``spatial [1,1,32,128,176]``, ``temporal [1,2,32,128,176]`` (or without the
    batch axis). Same keyword arguments as :func:`predict_batch`."""
    s = np.asarray(spatial)
    if (s.ndim == 5 and s.shape[0] != 1):
        raise InputError(f"predict takes one clip; got a batch of {s.shape[0]} (use predict_batch)")
    return predict_batch(spatial, temporal, model=model, **kwargs)


def model_card(model: str | Path | None = None) -> dict:
    """The model card of an ONNX model (None = the shipped default)."""
    path = _resolve_model(model)
    if _model_kind(path) != "onnx":
        raise ModelError("only ONNX models carry a model card")
    return load_card(card_path_for(path))


__all__ = ["DEFAULT_MODEL", "DEFAULT_CARD", "DEFAULT_TORCH_MODEL", "ModelOutput", "resolve_providers", "get_session", "clear_cache",
           "load_torch_model",
           "predict", "predict_batch", "model_card"]
