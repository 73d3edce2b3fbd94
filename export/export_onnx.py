"""Checkpoint -> ONNX (verified through ONNX Runtime) + model card + Triton model repository.

Usage::

    python -m export.export_onnx CKPT.pt -o OUT_DIR [--info CKPT.train.json] [--no-triton]
                                 [--stats-data DIR | --stats-synthetic N] [--stats-heldout-data DIR2]
    python -m export.export_onnx --card-only MODEL.onnx      # write a card for your own ONNX file

``--stats-data DIR`` (the folder of TTS/ and STEMI/ clips the model was trained on) or
``--stats-synthetic N`` also writes the feature statistics of the out-of-distribution check
into the card (``feature_stats``; see :mod:`export.feature_stats`, which can add them later).

Writes ``OUT_DIR/model.onnx``, ``OUT_DIR/model_card.json`` (with the file's SHA-256) and
``OUT_DIR/triton/ttsfast/{config.pbtxt,1/model.onnx}``. The export fails (and leaves no
files behind) unless every output of ONNX Runtime matches PyTorch within ``--atol``.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

OPSET = 17


def _export_to(net, path: Path, batch: int = 1) -> None:
    import torch

    from ttsfast.model.net import ONNX_INPUTS, ONNX_OUTPUTS, ExportWrapper

    cfg = net.config
    # the legacy exporter follows the TOP module's mode; the inference graph (folded BN,
    # depthwise 3D convolutions as 2D ones) is what ONNX Runtime runs fastest on CPU
    wrapper = ExportWrapper(net.eval(), inference_graph=True).eval()
    s = torch.zeros(batch, 1, cfg.t, cfg.h, cfg.w)
    t = torch.zeros(batch, 2, cfg.t, cfg.h, cfg.w)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, (s, t), str(path), input_names=list(ONNX_INPUTS),
                          output_names=list(ONNX_OUTPUTS), opset_version=OPSET, do_constant_folding=True,
                          dynamic_axes={n: {0: "batch"} for n in ONNX_INPUTS + ONNX_OUTPUTS}, dynamo=False)


def parity_inputs(net, batch: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Inputs for the parity check: smooth random blobs moving in time, on the model grid,
    in the value range ``make_inputs`` produces (not zeros, which would hide errors)."""
    cfg = net.config
    rng = np.random.default_rng(seed)
    tt = np.linspace(0, 2 * np.pi, cfg.t, dtype=np.float32)[:, None, None]
    yy = np.linspace(-1, 1, cfg.h, dtype=np.float32)[None, :, None]
    xx = np.linspace(-1, 1, cfg.w, dtype=np.float32)[None, None, :]
    s = np.empty((batch, 1, cfg.t, cfg.h, cfg.w), np.float32)
    f = np.empty((batch, 2, cfg.t, cfg.h, cfg.w), np.float32)
    for b in range(batch):
        a, c = rng.uniform(0.5, 2.0, 2)
        base = np.sin(3 * a * xx + np.cos(tt) + 2 * c * yy) + 0.5 * np.cos(5 * yy - tt)
        s[b, 0] = base + 0.3 * rng.standard_normal(base.shape).astype(np.float32)
        f[b, 0] = np.cos(tt + c) * np.exp(-((xx - 0.2) ** 2 + yy ** 2) * 4) * 3 * a
        f[b, 1] = np.sin(tt) * np.exp(-(xx ** 2 + (yy + 0.3) ** 2) * 3) * 4 * c
    return s, f


def verify_onnx(net, onnx_path: str | Path, atol: float = 1e-4, batch: int = 3) -> dict[str, float]:
    """Run PyTorch and ONNX Runtime (CPU) on the same inputs; return the max abs diff per
    output. Raises ``ModelError`` if any exceeds ``atol``."""
    import onnxruntime as ort
    import torch

    from ttsfast.errors import ModelError
    from ttsfast.model.net import ONNX_OUTPUTS, ExportWrapper

    s, f = parity_inputs(net, batch=batch)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run(list(ONNX_OUTPUTS), {"spatial": s, "temporal": f})
    with torch.no_grad():
        ref = ExportWrapper(net).eval()(torch.from_numpy(s), torch.from_numpy(f))
    diffs = {name: float(np.abs(g - r.numpy()).max()) for name, g, r in zip(ONNX_OUTPUTS, got, ref)}
    diffs["ref_logit_absmax"] = float(ref[0].abs().max())
    bad = {k: v for k, v in diffs.items() if k in ONNX_OUTPUTS and not v <= atol}
    if bad:
        raise ModelError(f"ONNX export does not match PyTorch within {atol}: {bad}")
    return diffs


def _shapes(net) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    cfg = net.config
    c, t, h, w = cfg.act_shape()
    inputs = {"spatial": [1, cfg.t, cfg.h, cfg.w], "temporal": [2, cfg.t, cfg.h, cfg.w]}
    outputs = {"logits": [cfg.n_classes], "probs": [cfg.n_classes], "act_spatial": [c, t, h, w],
               "act_temporal": [c, t, h, w], "cam_spatial": [cfg.n_classes, t, h, w],
               "cam_temporal": [cfg.n_classes, t, h, w]}
    return inputs, outputs


def export_checkpoint(ckpt: str | Path, out_dir: str | Path, info: dict | None = None, atol: float = 1e-4,
                      triton: bool = True, feature_stats: dict | None = None) -> dict[str, Any]:
    """Export a weights-only checkpoint; return ``{"onnx", "card", "triton", "parity", "sha256"}``.

    ``info`` (e.g. the ``.train.json`` the trainer writes) goes into the card's
    ``training`` / ``metrics`` fields. ``feature_stats``: keyword arguments of
    :func:`export.feature_stats.compute_feature_stats` (e.g. ``{"data": DIR}`` or
    ``{"synthetic": 300}``); the statistics are fitted on the checkpoint's features (PyTorch)
    before anything is written, and go into the card under ``feature_stats``.
    """
    from ttsfast._atomic import atomic_path
    from ttsfast.model.card import make_card, sha256_file, write_card
    from ttsfast.model.net import count_flops, count_params, load_checkpoint

    net = load_checkpoint(ckpt)
    stats_entry = None
    if feature_stats:
        from export.feature_stats import compute_feature_stats

        stats_entry = compute_feature_stats(ckpt, **feature_stats)
        stats_entry["computed_on"] = ("the PyTorch checkpoint's features (equal to the ONNX model's within the "
                                      "parity tolerance)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "model.onnx", ".onnx") as (final, tmp_name):
        tmp = Path(tmp_name)
        _export_to(net, tmp)
        import onnx

        onnx.checker.check_model(str(tmp))
        parity = verify_onnx(net, tmp, atol=atol)
    sha = sha256_file(final)
    info = dict(info or {})
    inputs, outputs = _shapes(net)
    arch = {"type": "TwoArmNet", "config": net.config.to_dict(),
            "description": "two arms (grey frames, dense flow), each a (2+1)D stem + depthwise-separable 3D "
                           "blocks with BN+ReLU; global average pool per arm; concatenated; one linear layer "
                           "-> logits (STEMI, TTS)",
            "onnx_opset": OPSET, "onnx_input_dims_without_batch": inputs,
            "onnx_output_dims_without_batch": outputs}
    card = make_card(onnx_sha256=sha, architecture=arch, flops=count_flops(net), params=count_params(net),
                     training=info.get("training"), metrics=info.get("metrics"),
                     extra={"export_parity_max_abs_diff": parity, "source_checkpoint": Path(ckpt).name,
                            **({"feature_stats": stats_entry} if stats_entry else {})})
    card_path = out / "model_card.json"
    write_card(card, card_path)
    result: dict[str, Any] = {"onnx": str(final), "card": str(card_path), "parity": parity, "sha256": sha}
    if triton:
        from export.triton import write_triton_repo

        result["triton"] = str(write_triton_repo(final, out / "triton", inputs, outputs))
    return result


def card_only(onnx_path: str | Path) -> Path:
    """Write ``<stem>.card.json`` for an existing ONNX file (your own model): SHA-256 and the
    input/output names ONNX Runtime reports. Returns the card path."""
    import onnxruntime as ort

    from ttsfast.model.card import NOT_FOR_PATIENTS, sha256_file, write_card

    p = Path(onnx_path)
    sess = ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
    card = {"WARNING": "user-supplied model; provenance not recorded by ttsfast (" + NOT_FOR_PATIENTS + " unless "
            "you know otherwise)", "onnx_sha256": sha256_file(p),
            "onnx_inputs": [i.name for i in sess.get_inputs()], "onnx_outputs": [o.name for o in sess.get_outputs()]}
    dst = p.with_name(p.stem + ".card.json")
    write_card(card, dst)
    return dst


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m export.export_onnx", description=__doc__.split("\n\n")[0])
    ap.add_argument("ckpt", help="weights-only checkpoint (.pt), or an ONNX file with --card-only")
    ap.add_argument("-o", "--out", default="export_out", help="output folder (default: export_out)")
    ap.add_argument("--info", help="training info JSON for the card (default: CKPT with .train.json)")
    ap.add_argument("--atol", type=float, default=1e-4, help="max abs difference ONNX Runtime vs PyTorch")
    ap.add_argument("--no-triton", action="store_true", help="do not write the Triton model repository")
    ap.add_argument("--card-only", action="store_true", help="only write a card (SHA-256) for an existing ONNX file")
    st = ap.add_mutually_exclusive_group()
    st.add_argument("--stats-data", metavar="DIR", help="fit the out-of-distribution feature statistics on the "
                    "clips of DIR/{TTS,STEMI}/ (the model's training data) and write them into the card")
    st.add_argument("--stats-synthetic", type=int, metavar="N", help="... or on N synthetic training-like clips")
    ap.add_argument("--stats-heldout-data", metavar="DIR", help="held-out clips DIR/{TTS,STEMI}/ whose flag rate "
                    "goes into the card")
    ap.add_argument("--stats-heldout", type=int, default=0, metavar="M", help="M held-out synthetic clips")
    args = ap.parse_args(argv)
    from ttsfast.errors import TTSFastError

    try:
        if args.card_only:
            print(card_only(args.ckpt))
            return 0
        info_path = Path(args.info) if args.info else Path(args.ckpt).with_suffix(".train.json")
        info = json.loads(info_path.read_text()) if info_path.is_file() else None
        fs = None
        if args.stats_data or args.stats_synthetic:
            fs = {"data": args.stats_data, "synthetic": args.stats_synthetic,
                  "heldout": args.stats_heldout, "heldout_data": args.stats_heldout_data}
        else:
            print("export: note: no --stats-data/--stats-synthetic: the card has no feature statistics, so "
                  "analyze() cannot say whether a clip is like the training data; add them later with "
                  "python -m export.feature_stats --model OUT/model.onnx --data DIR", file=sys.stderr)
        res = export_checkpoint(args.ckpt, args.out, info=info, atol=args.atol, triton=not args.no_triton,
                                feature_stats=fs)
    except TTSFastError as exc:
        print(f"export: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
