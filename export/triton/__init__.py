"""Triton Inference Server model repository for the ttsfast ONNX model.

:func:`write_triton_repo` writes::

    OUT/triton/ttsfast/config.pbtxt     backend "onnxruntime", inputs/outputs, dynamic batching
    OUT/triton/ttsfast/1/model.onnx     the model file
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Sequence

_TEMPLATE = """\
name: "{name}"
backend: "onnxruntime"
max_batch_size: {max_batch}
input [
{inputs}
]
output [
{outputs}
]
dynamic_batching {{
  preferred_batch_size: [ {preferred} ]
  max_queue_delay_microseconds: {delay_us}
}}
instance_group [
  {{
    count: 1
    kind: {kind}
  }}
]
"""

_TENSOR = """  {{
    name: "{name}"
    data_type: TYPE_FP32
    dims: [ {dims} ]
  }}"""


def render_config(name: str, inputs: dict[str, Sequence[int]], outputs: dict[str, Sequence[int]],
                  max_batch: int = 16, preferred: Sequence[int] = (4, 8), delay_us: int = 2000,
                  kind: str = "KIND_AUTO") -> str:
    """The ``config.pbtxt`` text. ``inputs``/``outputs`` map tensor names to their dims
    WITHOUT the batch axis (Triton adds it because ``max_batch_size > 0``)."""
    def block(d: dict[str, Sequence[int]]) -> str:
        return ",\n".join(_TENSOR.format(name=n, dims=", ".join(str(int(x)) for x in dims)) for n, dims in d.items())

    return _TEMPLATE.format(name=name, max_batch=int(max_batch), inputs=block(inputs), outputs=block(outputs),
                            preferred=", ".join(str(int(p)) for p in preferred), delay_us=int(delay_us), kind=kind)


def write_triton_repo(onnx_path: str | Path, out_dir: str | Path, inputs: dict[str, Sequence[int]],
                      outputs: dict[str, Sequence[int]], name: str = "ttsfast", version: int = 1,
                      **config_kwargs) -> Path:
    """Write ``out_dir/name/config.pbtxt`` and ``out_dir/name/<version>/model.onnx``; return the
    model folder."""
    model_dir = Path(out_dir) / name
    (model_dir / str(version)).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(onnx_path, model_dir / str(version) / "model.onnx")
    (model_dir / "config.pbtxt").write_text(render_config(name, inputs, outputs, **config_kwargs), encoding="utf-8")
    return model_dir


__all__ = ["render_config", "write_triton_repo"]
