"""Hotword ASR with SeACo-Paraformer: tokens, models, hotword inference, fine-tuning.

Modules (heavy libraries are imported inside functions, never at import time):
``tokenizer`` (token units), ``model`` (build/load), ``hub`` (ModelScope),
``engine`` (the one ASR interface over torch and ONNX; start here),
``hotwords`` (the one per-request hotword policy), ``inference`` (torch path),
``objectives`` (losses),
``finetune`` (two-stage trainer), ``bootstrap`` (the seed model), ``features``,
``metrics``, ``onnx_export``, ``onnx_infer`` (serving path without torch), ``replica``
(a stand-in for the pretrained snapshot, for tests and benchmarks).
"""
