"""A stand-in for the pretrained SeACo-Paraformer snapshot: its files, full size, random weights.

Users start from the ModelScope snapshot named in :mod:`speechloop.asr.hub`. No model
hub is reachable from the build machines, so no test can load it; this module writes a
directory with the same file set and formats, which tests and benchmarks load instead:

- ``config.yaml``: the architecture and sizes of funasr's SeACo-Paraformer template
  (``funasr/models/seaco_paraformer/template.yaml``, the published form of the snapshot's
  config): SANM encoder 50 blocks x 512, decoder 16 blocks, SeACo decoder
  (``num_blocks: 4``, no ``att_layer_num``: funasr builds 6), CifPredictorV3,
  ``NO_BIAS: 8377``, and the training sections (``train_conf``, ``optim``, ``dataset``,
  ``tokenizer_conf`` ...) loaders must ignore;
- ``configuration.json``: ModelScope's description (hub id, ``file_path_metas`` naming
  ``model.pt``, ``config.yaml``, ``tokens.json``, ``seg_dict``, ``am.mvn``), which funasr
  reads first when a directory has one;
- ``tokens.json``: 8404 tokens, ``<blank> <s> </s>`` first and ``<unk>`` last (id 8403,
  as funasr's ONNX runtime hard-codes), Chinese characters (GB2312's 6763, then further
  CJK ideographs) and English BPE pieces (``spe@@`` continues a word, ``loop`` ends one);
- ``seg_dict``: funasr's word -> pieces file (``word<TAB>piece piece``): ``<unk>``, the
  English words of :data:`ENGLISH_WORDS` split into BPE pieces, and every CJK character
  mapped to itself (funasr spells a Chinese hotword character by character through it);
- ``am.mvn``: global CMVN in Kaldi nnet text (560 dims), computed over seeded synthetic
  speech-like audio (:func:`speech_like`);
- ``model.pt``: the state dict of the model funasr itself builds from these files
  (``AutoModel.build_model``: same classes, same random initialisation, seeded), 247 M
  parameters, float32, not nested.

What differs from the real snapshot: the weights (random: outputs are meaningless, so
compare tokens between engines, never accuracy), the order of the vocabulary, the words
``seg_dict`` lists, and the snapshot's extra files no loader reads (README, examples).

:func:`cached_replica` builds it once into a cache directory keyed by
:data:`REPLICA_VERSION` and the seed (about 1 GB); bump the version whenever what is
written changes. Building imports funasr (about 25 s of CPU) and writes ~1 GB.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from speechloop.asr.hub import MODEL_ID
from speechloop.asr.tokenizer import SEG_DICT_FILE, syllables, write_seg_dict

#: Bump when the files written change (cached copies under another version are ignored).
REPLICA_VERSION = 1
VOCAB_SIZE = 8404
NO_BIAS = 8377
SPECIALS_FRONT = ("<blank>", "<s>", "</s>")
UNK = "<unk>"
READY_FILE = "replica.json"  # beside the snapshot directory in the cache, never inside
SNAPSHOT_FILES = (
    "config.yaml", "configuration.json", "tokens.json", "seg_dict", "am.mvn", "model.pt",
)  # fmt: skip

#: English words the replica's ``seg_dict`` spells (the real one lists far more).
ENGLISH_WORDS = (
    "a", "alibaba", "alipay", "and", "beijing", "cloud", "data", "deploy", "docker",
    "for", "funasr", "github", "hello", "hotword", "in", "iphone", "is", "it",
    "kubernetes", "meeting", "model", "modelscope", "of", "ok", "onnx", "paraformer",
    "project", "python", "server", "shanghai", "speech", "speechloop", "taobao", "the",
    "to", "voice", "we", "wechat", "world", "you",
)  # fmt: skip


def config_yaml() -> dict[str, Any]:
    """The snapshot's ``config.yaml`` (funasr's SeACo-Paraformer template, key for key)."""
    sanm = {"attention_heads": 4, "dropout_rate": 0.1, "positional_dropout_rate": 0.1}
    dec_drop = {"self_attention_dropout_rate": 0.1, "src_attention_dropout_rate": 0.1}
    return {
        "model": "SeacoParaformer",
        "model_conf": {
            "ctc_weight": 0.0, "lsm_weight": 0.1, "length_normalized_loss": True,
            "predictor_weight": 1.0, "predictor_bias": 1, "sampling_ratio": 0.75,
            "inner_dim": 512, "bias_encoder_type": "lstm", "bias_encoder_bid": False,
            "seaco_lsm_weight": 0.1, "seaco_length_normal": True, "train_decoder": False,
            "NO_BIAS": NO_BIAS,
        },
        "encoder": "SANMEncoder",
        "encoder_conf": {
            "output_size": 512, **sanm, "linear_units": 2048, "num_blocks": 50,
            "attention_dropout_rate": 0.1, "input_layer": "pe",
            "pos_enc_class": "SinusoidalPositionEncoder", "normalize_before": True,
            "kernel_size": 11, "sanm_shfit": 0, "selfattention_layer_type": "sanm",
        },
        "decoder": "ParaformerSANMDecoder",
        "decoder_conf": {
            **sanm, "linear_units": 2048, "num_blocks": 16, **dec_drop,
            "att_layer_num": 16, "kernel_size": 11, "sanm_shfit": 0,
        },
        "seaco_decoder": "ParaformerSANMDecoder",
        "seaco_decoder_conf": {
            **sanm, "linear_units": 1024, "num_blocks": 4, **dec_drop, "kernel_size": 21,
            "sanm_shfit": 0, "use_output_layer": False, "wo_input_layer": True,
        },
        "predictor": "CifPredictorV3",
        "predictor_conf": {
            "idim": 512, "threshold": 1.0, "l_order": 1, "r_order": 1,
            "tail_threshold": 0.45, "smooth_factor2": 0.25, "noise_threshold2": 0.01,
            "upsample_times": 3, "use_cif1_cnn": False, "upsample_type": "cnn_blstm",
        },
        "frontend": "WavFrontend",
        "frontend_conf": {
            "fs": 16000, "window": "hamming", "n_mels": 80, "frame_length": 25,
            "frame_shift": 10, "lfr_m": 7, "lfr_n": 6, "dither": 0.0,
        },
        "specaug": "SpecAugLFR",
        "specaug_conf": {
            "apply_time_warp": False, "time_warp_window": 5, "time_warp_mode": "bicubic",
            "apply_freq_mask": True, "freq_mask_width_range": [0, 30], "lfr_rate": 6,
            "num_freq_mask": 1, "apply_time_mask": True, "time_mask_width_range": [0, 12],
            "num_time_mask": 1,
        },
        "train_conf": {
            "accum_grad": 1, "grad_clip": 5, "max_epoch": 150,
            "val_scheduler_criterion": ["valid", "acc"],
            "best_model_criterion": [["valid", "acc", "max"]], "keep_nbest_models": 10,
            "log_interval": 50,
        },
        "optim": "adam",
        "optim_conf": {"lr": 0.0005},
        "scheduler": "warmuplr",
        "scheduler_conf": {"warmup_steps": 30000},
        "dataset": "AudioDataset",
        "dataset_conf": {
            "index_ds": "IndexDSJsonl", "batch_sampler": "DynamicBatchLocalShuffleSampler",
            "batch_type": "example", "batch_size": 1, "max_token_length": 2048,
            "buffer_size": 500, "shuffle": True, "num_workers": 0,
        },
        "tokenizer": "CharTokenizer",
        "tokenizer_conf": {"unk_symbol": UNK, "split_with_space": True},
        "ctc_conf": {
            "dropout_rate": 0.0, "ctc_type": "builtin", "reduce": True, "ignore_nan_grad": True,
        },
        "normalize": None,
    }  # fmt: skip


def configuration_json() -> dict[str, Any]:
    """The snapshot's ``configuration.json`` (ModelScope's fields for a funasr model)."""
    return {
        "framework": "pytorch",
        "task": "auto-speech-recognition",
        "model": {"type": "funasr"},
        "pipeline": {"type": "funasr-pipeline"},
        "model_name_in_hub": {"ms": MODEL_ID, "hf": ""},
        "file_path_metas": {
            "init_param": "model.pt",
            "config": "config.yaml",
            "tokenizer_conf": {"token_list": "tokens.json", "seg_dict_file": SEG_DICT_FILE},
            "frontend_conf": {"cmvn_file": "am.mvn"},
        },
    }


def bpe_pieces(word: str) -> list[str]:
    """A word's BPE pieces in the snapshot's notation: ``@@`` on every piece but the last
    (the cut is :func:`speechloop.asr.tokenizer.syllables`; the real BPE cuts elsewhere)."""
    parts = syllables(word)
    return [p + "@@" for p in parts[:-1]] + parts[-1:]


def _gb2312_hanzi() -> list[str]:
    """GB2312's 6763 Chinese characters in code order (levels 1 and 2)."""
    out = []
    for hi in range(0xB0, 0xF8):
        for lo in range(0xA1, 0xFF):
            try:
                out.append(bytes([hi, lo]).decode("gb2312"))
            except UnicodeDecodeError:
                continue
    return out


def vocabulary() -> list[str]:
    """The 8404 tokens: specials, Chinese characters, English pieces, ``<unk>``."""
    english = sorted({p for w in ENGLISH_WORDS for p in bpe_pieces(w)})
    english += sorted({c + s for c in "abcdefghijklmnopqrstuvwxyz" for s in ("", "@@")})
    english = list(dict.fromkeys(english))
    n_cjk = VOCAB_SIZE - len(SPECIALS_FRONT) - len(english) - 1
    cjk = _gb2312_hanzi()
    seen = set(cjk)
    code = 0x4E00
    while len(cjk) < n_cjk:
        if chr(code) not in seen:
            cjk.append(chr(code))
        code += 1
    tokens = [*SPECIALS_FRONT, *cjk[:n_cjk], *english, UNK]
    assert len(tokens) == VOCAB_SIZE and len(set(tokens)) == VOCAB_SIZE
    return tokens


def seg_dict(tokens: list[str]) -> dict[str, list[str]]:
    """``<unk>``, then the English words and CJK characters of ``tokens`` in sorted order."""
    entries: dict[str, list[str]] = {w: bpe_pieces(w) for w in ENGLISH_WORDS}
    entries.update({t: [t] for t in tokens if len(t) == 1 and "\u4e00" <= t <= "\u9fa5"})
    return {UNK: [UNK], **{k: entries[k] for k in sorted(entries)}}


def speech_like(seconds: float, seed: int) -> npt.NDArray[np.float32]:
    """Seeded synthetic audio with speech's coarse shape (a gliding harmonic source under
    a syllable-rate envelope, plus noise), 16 kHz; enough for a random-weight model."""
    rng = np.random.default_rng(seed)
    n = int(seconds * 16000)
    t = np.arange(n) / 16000.0
    f0 = 100 + rng.uniform(0, 80) + 30 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6.3))
    phase = 2 * np.pi * np.cumsum(f0) / 16000.0
    voiced = sum(np.sin(k * phase) / k for k in range(1, 13))
    envelope = (0.5 * (1 + np.sin(2 * np.pi * rng.uniform(3, 5) * t))) ** 2
    wave = voiced * envelope + 0.05 * rng.standard_normal(n)
    return (0.5 * wave / np.max(np.abs(wave))).astype(np.float32)


def write_files(directory: Path) -> Path:
    """Every file but ``model.pt`` into ``directory`` (created if needed)."""
    import yaml

    from speechloop.asr.features import compute_cmvn, write_am_mvn

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(config_yaml(), sort_keys=False), "utf-8")
    text = json.dumps(configuration_json(), indent=2, ensure_ascii=False)
    (out / "configuration.json").write_text(text + "\n", "utf-8")
    tokens = vocabulary()
    (out / "tokens.json").write_text(json.dumps(tokens, ensure_ascii=False, indent=0), "utf-8")
    write_seg_dict(seg_dict(tokens), out / SEG_DICT_FILE)
    write_am_mvn(compute_cmvn(speech_like(4.0, s) for s in range(8)), out / "am.mvn")
    return out


def write_weights(directory: Path, *, seed: int = 0, threads: int | None = None) -> int:
    """``model.pt``: the random weights of the model funasr builds from ``directory``'s
    files (``AutoModel.build_model``, seeded); returns the parameter count."""
    import torch
    from funasr import AutoModel

    directory = Path(directory)
    ncpu = threads or os.cpu_count() or 1
    model, _ = AutoModel.build_model(
        model=str(directory), device="cpu", seed=seed, ncpu=ncpu, disable_update=True
    )
    torch.save(model.state_dict(), directory / "model.pt")
    return sum(p.numel() for p in model.parameters())


def write_replica(directory: Path | str, *, seed: int = 0, threads: int | None = None) -> int:
    """The whole snapshot into ``directory``; returns the parameter count."""
    out = write_files(Path(directory))
    return write_weights(out, seed=seed, threads=threads)


def cached_replica(cache_dir: Path | str, *, seed: int = 0, threads: int | None = None) -> Path:
    """The replica snapshot under ``cache_dir``, built on first use (atomically: a
    half-written copy is never used), reused while :data:`REPLICA_VERSION` holds."""
    root = Path(cache_dir) / f"seaco-v{REPLICA_VERSION}-seed{seed}"
    snapshot = root / "snapshot"
    if (root / READY_FILE).is_file() and all((snapshot / f).is_file() for f in SNAPSHOT_FILES):
        return snapshot
    tmp = Path(cache_dir) / f".{root.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    started = time.perf_counter()
    params = write_replica(tmp / "snapshot", seed=seed, threads=threads)
    record = {
        "replica_version": REPLICA_VERSION, "seed": seed, "parameters": params,
        "model_id": MODEL_ID, "build_s": round(time.perf_counter() - started, 1),
    }  # fmt: skip
    (tmp / READY_FILE).write_text(json.dumps(record, indent=1) + "\n", "utf-8")
    shutil.rmtree(root, ignore_errors=True)
    try:
        tmp.rename(root)
    except OSError:  # a concurrent builder's complete copy won
        shutil.rmtree(tmp, ignore_errors=True)
    return snapshot
