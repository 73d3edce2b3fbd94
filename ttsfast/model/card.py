"""Model cards: the JSON file that travels with an ONNX model (what it was trained on, how
well it did, its architecture and input spec, and the SHA-256 of the ONNX file it describes).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ..errors import ModelError

#: Printed in large letters on every card of a model that has not seen a patient.
NOT_FOR_PATIENTS = "NOT TRAINED ON PATIENTS — research/demo only"


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    except OSError as exc:
        raise ModelError(f"cannot read model file {path}: {exc}") from exc
    return h.hexdigest()


def card_path_for(model_path: str | Path) -> Path:
    """Where the card of ``model.onnx`` lives: ``model_card.json`` beside it when the model is
    called ``model.onnx``, else ``<stem>.card.json`` (then ``model_card.json`` as fallback)."""
    p = Path(model_path)
    own = p.with_name(p.stem + ".card.json")
    if own.is_file():
        return own
    return p.with_name("model_card.json")


def load_card(path: str | Path) -> dict[str, Any]:
    """Read a model card JSON (ModelError when missing or malformed)."""
    try:
        with open(path, encoding="utf-8") as fh:
            card = json.load(fh)
    except FileNotFoundError as exc:
        raise ModelError(f"model card not found: {path}; every ONNX model needs its card (export writes one)") from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"model card {path} is not valid JSON: {exc}") from exc
    if not isinstance(card, dict):
        raise ModelError(f"model card {path} must hold a JSON object")
    return card


def verify_model_file(model_path: str | Path, card: dict[str, Any]) -> str:
    """Check that the file's SHA-256 equals ``card["onnx_sha256"]``; return the digest.

    Raises
    ------
    ModelError
        The card has no digest, or the file does not match it (corrupt or swapped file).
    """
    want = str(card.get("onnx_sha256", "")).lower()
    if len(want) != 64:
        raise ModelError("model card has no valid 'onnx_sha256'; re-export the model to write one")
    got = sha256_file(model_path)
    if got != want:
        raise ModelError(f"SHA-256 of {model_path} ({got[:12]}...) does not match its model card "
                         f"({want[:12]}...): the file is corrupt or not the model the card describes")
    return got


def write_card(card: dict[str, Any], path: str | Path) -> None:
    """Write a card atomically (temporary file then rename), so no half-written card is left."""
    from .._atomic import write_text_atomic

    write_text_atomic(path, json.dumps(card, indent=2, ensure_ascii=False) + "\n")


def _trained_on(training: dict | None) -> str:
    """One line saying what the model was trained on (for result summaries)."""
    t = training or {}
    data = t.get("data") or {}
    src = data.get("source", "unknown data")
    n = t.get("n_clips")
    return f"{src}" + (f", {n} clips ({t.get('n_tts')} TTS, {t.get('n_stemi')} STEMI)" if n else "") + \
        f" — {NOT_FOR_PATIENTS}"


def make_card(*, onnx_sha256: str, architecture: dict, flops: int, params: int,
              training: dict | None = None, metrics: dict | None = None,
              extra: dict | None = None) -> dict[str, Any]:
    """Assemble a model card dict (see the module docstring for the fields)."""
    from .inputs import INPUT_SPEC
    from .net import CLASSES, ONNX_INPUTS, ONNX_OUTPUTS

    banner = "#" * (len(NOT_FOR_PATIENTS) + 8)
    card: dict[str, Any] = {
        "WARNING": NOT_FOR_PATIENTS,
        "warning_banner": [banner, "### " + NOT_FOR_PATIENTS + " ###", banner],
        "name": "ttsfast two-arm spatiotemporal CNN",
        "trained_on": _trained_on(training),
        "warning": NOT_FOR_PATIENTS,
        "classes": list(CLASSES),
        "onnx_sha256": onnx_sha256,
        "sha256": onnx_sha256,
        "onnx_inputs": list(ONNX_INPUTS),
        "onnx_outputs": list(ONNX_OUTPUTS),
        "architecture": architecture,
        "flops_per_clip": int(flops),
        "params": int(params),
        "input_spec": INPUT_SPEC,
        "training": training or {},
        "metrics": metrics or {},
    }
    if extra:
        card.update(extra)
    return card


__all__ = ["NOT_FOR_PATIENTS", "sha256_file", "card_path_for", "load_card", "verify_model_file",
           "write_card", "make_card"]
