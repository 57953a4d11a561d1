"""Build and load SeACo-Paraformer models (funasr's ``SeacoParaformer`` class).

One class for every size: the pretrained 220 M-parameter model from ModelScope and the
small seed model the project trains itself (:func:`seed_config`; the real one:
:func:`pretrained_config`) are both
``funasr.models.seaco_paraformer.model.SeacoParaformer``, built from a funasr-style
``config.yaml`` (``model_conf``, ``encoder_conf``, ...). A model directory holds
``config.yaml``, ``tokens.json``, ``model.pt`` (a state dict) and ``am.mvn``, which is
also what ``funasr.AutoModel(model=<dir>)`` loads.

torch and funasr are imported inside the functions: importing this module is cheap.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from speechloop.asr.tokenizer import SEG_DICT_FILE, Tokenizer, load_vocabulary, write_seg_dict
from speechloop.errors import InvalidInput, ModelUnavailable, NotFound

if TYPE_CHECKING:
    import torch

CONFIG_FILE = "config.yaml"
TOKENS_FILE = "tokens.json"
WEIGHTS_FILE = "model.pt"
CMVN_FILE = "am.mvn"
#: ModelScope's description of a snapshot (hub id, task, which file is which); funasr
#: reads it first when a directory has one. Carried along unchanged.
HUB_CONFIG_FILE = "configuration.json"
HOTWORD_MODULES = ("bias_encoder", "seaco_decoder", "hotword_output_layer", "lstm_proj")


@dataclass(frozen=True)
class SeacoSize:
    """The sizes in which SeACo-Paraformer configurations differ (funasr names in brackets)."""

    d: int  # model width [output_size, inner_dim, idim]
    encoder_blocks: int
    encoder_units: int  # [encoder_conf.linear_units]
    decoder_blocks: int
    decoder_units: int
    seaco_blocks: int  # [seaco_decoder_conf.num_blocks and att_layer_num]
    seaco_units: int


# The pretrained model's architecture (ModelScope config.yaml of the model in hub.py).
PRETRAINED_SIZE = SeacoSize(
    d=512, encoder_blocks=50, encoder_units=2048, decoder_blocks=16, decoder_units=2048,
    seaco_blocks=6, seaco_units=1024,
)  # fmt: skip


#: The pretrained model's SpecAugment (its config.yaml): one frequency mask of up to 30
#: of the 80 mel bins, one time mask of up to 12 LFR frames, no time warp.
SPECAUG_CONF: dict[str, Any] = {
    "apply_time_warp": False,
    "time_warp_window": 5,
    "time_warp_mode": "bicubic",
    "apply_freq_mask": True,
    "freq_mask_width_range": [0, 30],
    "lfr_rate": 6,
    "num_freq_mask": 1,
    "apply_time_mask": True,
    "time_mask_width_range": [0, 12],
    "num_time_mask": 1,
}


def seed_config(
    vocab_size: int,
    no_bias: int,
    d: int = 128,
    ctc_weight: float = 0.0,
    specaug: bool = True,
) -> dict[str, Any]:
    """The seed configuration: a few million parameters, same class and layout as the real one.

    Differences from the real model: width ``d`` (real: 512), 5 encoder blocks (50),
    2 decoder blocks (16), our vocabulary and NO_BIAS id, and
    optionally a CTC branch on the encoder (``ctc_weight`` > 0; the real model has none):
    training from scratch, it teaches the encoder alignments sooner. ``specaug`` keeps
    the real model's SpecAugment (frequency and time masks on the LFR features, applied
    by ``encode`` in training mode only). The SeACo decoder has the real model's 6 blocks
    (funasr builds ``att_layer_num`` of them, 6 unless set, whatever ``num_blocks`` says;
    the config now names both).
    """
    size = SeacoSize(
        d=d, encoder_blocks=5, encoder_units=2 * d,
        decoder_blocks=2, decoder_units=2 * d, seaco_blocks=6, seaco_units=2 * d,
    )  # fmt: skip
    config = seaco_config(size, vocab_size=vocab_size, no_bias=no_bias, train_decoder=False)
    config["model_conf"]["ctc_weight"] = ctc_weight
    if not specaug:
        del config["specaug"], config["specaug_conf"]
    config["frontend_conf"]["cmvn_file"] = CMVN_FILE
    config["tokenizer_conf"]["token_list"] = TOKENS_FILE
    return config


def pretrained_config() -> dict[str, Any]:
    """The pretrained SeACo-Paraformer's architecture (vocabulary 8404, NO_BIAS 8377)."""
    return seaco_config(PRETRAINED_SIZE, vocab_size=8404, no_bias=8377, train_decoder=True)


def seaco_config(
    size: SeacoSize, *, vocab_size: int, no_bias: int, train_decoder: bool
) -> dict[str, Any]:
    """A funasr ``config.yaml`` for ``SeacoParaformer`` of the given sizes."""
    sanm_dec = {
        "attention_heads": 4,
        "dropout_rate": 0.1,
        "positional_dropout_rate": 0.1,
        "self_attention_dropout_rate": 0.1,
        "src_attention_dropout_rate": 0.1,
        "sanm_shfit": 0,
    }
    return {
        "model": "SeacoParaformer",
        "model_conf": {
            "ctc_weight": 0.0,
            "lsm_weight": 0.1,
            "length_normalized_loss": True,
            "predictor_weight": 1.0,
            "predictor_bias": 1,
            "sampling_ratio": 0.75,
            "inner_dim": size.d,
            "bias_encoder_type": "lstm",
            "bias_encoder_bid": False,
            "seaco_lsm_weight": 0.1,
            "seaco_length_normalized_loss": True,
            "train_decoder": train_decoder,
            "NO_BIAS": no_bias,
        },
        "encoder": "SANMEncoder",
        "encoder_conf": {
            "output_size": size.d,
            "attention_heads": 4,
            "linear_units": size.encoder_units,
            "num_blocks": size.encoder_blocks,
            "dropout_rate": 0.1,
            "positional_dropout_rate": 0.1,
            "attention_dropout_rate": 0.1,
            "input_layer": "pe",
            "pos_enc_class": "SinusoidalPositionEncoder",
            "normalize_before": True,
            "kernel_size": 11,
            "sanm_shfit": 0,
            "selfattention_layer_type": "sanm",
        },
        "decoder": "ParaformerSANMDecoder",
        "decoder_conf": {
            **sanm_dec,
            "linear_units": size.decoder_units,
            "num_blocks": size.decoder_blocks,
            "att_layer_num": size.decoder_blocks,
            "kernel_size": 11,
        },
        "seaco_decoder": "ParaformerSANMDecoder",
        "seaco_decoder_conf": {
            **sanm_dec,
            "linear_units": size.seaco_units,
            "num_blocks": size.seaco_blocks,
            "att_layer_num": size.seaco_blocks,
            "kernel_size": 21,
            "use_output_layer": False,
            "wo_input_layer": True,
        },
        "specaug": "SpecAugLFR",
        "specaug_conf": dict(SPECAUG_CONF),
        "predictor": "CifPredictorV3",
        "predictor_conf": {
            "idim": size.d,
            "threshold": 1.0,
            "l_order": 1,
            "r_order": 1,
            "tail_threshold": 0.45,
            "smooth_factor2": 0.25,
            "noise_threshold2": 0.01,
            "upsample_times": 3,
            "use_cif1_cnn": False,
            "upsample_type": "cnn_blstm",
        },
        "frontend": "WavFrontend",
        "frontend_conf": {
            "fs": 16000,
            "window": "hamming",
            "n_mels": 80,
            "frame_length": 25,
            "frame_shift": 10,
            "lfr_m": 7,
            "lfr_n": 6,
            "dither": 0.0,
        },
        "input_size": 560,
        "vocab_size": vocab_size,
        "tokenizer": "CharTokenizer",
        "tokenizer_conf": {"unk_symbol": "<unk>"},
    }


@dataclass
class LoadedModel:
    """A SeACo-Paraformer ready for inference: the module, its tokenizer, config and files."""

    model: Any  # funasr SeacoParaformer (a torch.nn.Module)
    tokenizer: Tokenizer
    config: dict[str, Any]
    directory: Path | None = None
    cmvn_file: Path | None = None
    version: str = "local"

    @property
    def no_bias_id(self) -> int:
        """The hotword head's "no hotword here" class."""
        return int(self.model.NO_BIAS)


def build_seaco(config: dict[str, Any]) -> Any:
    """A freshly initialised ``SeacoParaformer`` from a funasr-style config dict."""
    from speechloop.asr.funasr_modules import funasr_module

    seaco_class = funasr_module("funasr.models.seaco_paraformer.model").SeacoParaformer

    if config.get("model", "SeacoParaformer") != "SeacoParaformer":
        raise InvalidInput(f"config is for {config.get('model')!r}, not SeacoParaformer")
    kwargs = dict(config.get("model_conf", {}))
    for key in ("encoder", "encoder_conf", "decoder", "decoder_conf", "predictor"):
        kwargs[key] = copy.deepcopy(config[key])
    kwargs["predictor_conf"] = copy.deepcopy(config["predictor_conf"])
    if config.get("specaug"):  # applied by ``encode`` in training mode only
        kwargs["specaug"] = config["specaug"]
        kwargs["specaug_conf"] = copy.deepcopy(config.get("specaug_conf") or {})
    kwargs["seaco_decoder"] = config.get("seaco_decoder")
    kwargs["seaco_decoder_conf"] = copy.deepcopy(config.get("seaco_decoder_conf"))
    kwargs["input_size"] = config.get("input_size", 560)
    kwargs["vocab_size"] = config["vocab_size"]
    return seaco_class(**kwargs)


def count_parameters(model: torch.nn.Module) -> int:
    """Number of parameters of ``model``."""
    return sum(p.numel() for p in model.parameters())


def read_config(path: Path) -> dict[str, Any]:
    """A ``config.yaml`` as a dict (raises ModelUnavailable if unreadable)."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ModelUnavailable(f"cannot read model config {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelUnavailable(f"model config {path} is not a mapping")
    return data


def save_to_dir(loaded: LoadedModel, directory: Path | str, *, half: bool = False) -> Path:
    """Write ``config.yaml``, ``tokens.json``, ``model.pt`` (and ``am.mvn``) into ``directory``;
    a pretrained model's ``seg_dict`` and ``configuration.json`` go along unchanged.

    ``half`` stores floating tensors as float16 (the seed ships that way to stay small);
    :func:`load_from_dir` turns them back into float32.
    """
    import shutil

    import torch
    import yaml

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    (out / CONFIG_FILE).write_text(yaml.safe_dump(loaded.config, sort_keys=False), "utf-8")
    loaded.tokenizer.save(out / TOKENS_FILE)
    state = {
        k: (v.half() if half and v.is_floating_point() else v).detach().cpu().clone()
        for k, v in loaded.model.state_dict().items()
    }
    torch.save(state, out / WEIGHTS_FILE)
    if loaded.cmvn_file is not None and loaded.cmvn_file.resolve() != (out / CMVN_FILE).resolve():
        shutil.copyfile(loaded.cmvn_file, out / CMVN_FILE)
    seg_dict = getattr(loaded.tokenizer, "seg_dict", None)
    if seg_dict is not None:  # the pretrained model's English spelling goes with it
        write_seg_dict(seg_dict, out / SEG_DICT_FILE)
    hub_config = loaded.directory / HUB_CONFIG_FILE if loaded.directory is not None else None
    if hub_config is not None and hub_config.is_file() and hub_config.parent != out:
        shutil.copyfile(hub_config, out / HUB_CONFIG_FILE)
    return out


def load_from_dir(
    directory: Path | str, *, device: str = "cpu", version: str = "local"
) -> LoadedModel:
    """Load a model directory (ours or a ModelScope snapshot) in eval mode.

    A ModelScope snapshot has ``tokens.json`` and ``model.pt`` too (the state dict
    nested under ``"state_dict"`` or ``"model"`` in some releases, handled here), and a
    ``seg_dict`` (English words -> BPE pieces) that the tokenizer spells hotwords with.
    """
    import torch

    root = Path(directory)
    for name in (CONFIG_FILE, TOKENS_FILE, WEIGHTS_FILE):
        if not (root / name).is_file():
            raise ModelUnavailable(f"model directory {root} lacks {name}")
    config = read_config(root / CONFIG_FILE)
    # a snapshot's seg_dict comes with its vocabulary, as funasr reads the directory
    tokenizer = load_vocabulary(root / TOKENS_FILE)
    config.setdefault("vocab_size", tokenizer.vocab_size)
    model = build_seaco(config)
    try:
        state = torch.load(root / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError) as exc:
        raise ModelUnavailable(f"cannot read weights {root / WEIGHTS_FILE}: {exc}") from exc
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    own = model.state_dict()
    wrong = [
        f"{k} {tuple(v.shape)} (config: {tuple(own[k].shape)})"
        for k, v in state.items()
        if k in own and v.shape != own[k].shape
    ]
    if wrong:  # load_state_dict would raise a bare RuntimeError on these
        raise ModelUnavailable(f"weights in {root} do not fit the config: shapes {wrong[:5]}")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ModelUnavailable(
            f"weights in {root} do not fit the config: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    model.to(device).eval()
    cmvn = root / CMVN_FILE
    return LoadedModel(model, tokenizer, config, root, cmvn if cmvn.is_file() else None, version)


def load_from_hub(
    model_id: str | None = None, *, revision: str | None = None, device: str = "cpu"
) -> LoadedModel:
    """Download (or reuse the cache of) the pretrained model from ModelScope, then load it."""
    from speechloop.asr.hub import download

    return load_from_dir(download(model_id, revision=revision), device=device, version="hub")


def load_from_registry(
    registry: Any, version: str, work_dir: Path, *, device: str = "cpu"
) -> LoadedModel:
    """Load an ``asr`` version of a :class:`speechloop.registry.ModelRegistry`.

    ``registry.fetch`` verifies every artifact's sha256 before the files are used, so a
    tampered version is refused; the files land in ``work_dir/<version>``.
    """
    dest = Path(work_dir) / version
    try:
        path = registry.fetch("asr", version, dest)
    except NotFound as exc:
        raise ModelUnavailable(f"asr model version {version!r} not in the registry: {exc}") from exc
    return load_from_dir(path, device=device, version=version)
