"""Speaker verification with 3D-Speaker's ERes2NetV2: embeddings, metrics, fine-tuning.

Modules: ``model`` (config, build, strict loading), ``loading`` (directories, hub, seed),
``hub`` (ModelScope), ``features`` (fbank without torch), ``masked`` (padding-invariant
forward), ``embed`` (torch/ONNX embedding), ``onnx_export``, ``metrics`` (EER, minDCF,
DET), ``calibration`` (thresholds), ``enrol`` (voiceprints), ``finetune`` (training),
``bootstrap`` (the seed model). Nothing heavy is imported here.
"""
