"""The two-arm spatiotemporal CNN (spatial arm on grey frames, temporal arm on dense flow):
inputs, ONNX Runtime inference, Grad-CAM and region attribution; training and the network
itself (PyTorch) load lazily.

>>> from ttsfast.model import make_inputs, predict        # doctest: +SKIP
>>> out = predict(*make_inputs(frames_beat, flow_beat, mask))   # shipped default model
>>> out.p_tts[0]
"""
from __future__ import annotations

from typing import Any

from .card import NOT_FOR_PATIENTS, load_card, sha256_file, verify_model_file
from .gradcam import REGIONS, RegionShares, cam_from_raw, grad_cam, region_shares
from .inputs import INPUT_SPEC, MODEL_H, MODEL_T, MODEL_W, make_inputs
from .runtime import (DEFAULT_MODEL, ModelOutput, clear_cache, get_session, model_card, predict,
                      predict_batch)

_LAZY = {"TwoArmNet": "net", "NetConfig": "net", "CLASSES": "net", "load_checkpoint": "net",
         "save_checkpoint": "net", "count_flops": "net", "count_params": "net",
         "run_training": "train", "TrainConfig": "train", "build_synthetic_cohort": "train",
         "build_folder_cohort": "train", "clip_to_inputs": "train"}


def __getattr__(name: str) -> Any:  # PEP 562: torch is imported only when these are used
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["make_inputs", "INPUT_SPEC", "MODEL_T", "MODEL_H", "MODEL_W", "predict", "predict_batch",
           "get_session", "clear_cache", "model_card", "ModelOutput", "DEFAULT_MODEL", "grad_cam",
           "cam_from_raw", "region_shares", "RegionShares", "REGIONS", "NOT_FOR_PATIENTS", "load_card",
           "sha256_file", "verify_model_file", *_LAZY]
