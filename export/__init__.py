"""Turning a trained checkpoint into the shipped ONNX file, its model card and a Triton
Inference Server model repository (``python -m export.export_onnx --help``)."""
