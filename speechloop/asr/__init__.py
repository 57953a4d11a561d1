"""Hotword ASR (SeACo-Paraformer): models, features, ONNX, metrics."""
