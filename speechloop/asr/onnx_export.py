"""Export a SeACo-Paraformer of any size to ONNX: ``model.onnx`` and ``model_eb.onnx``.

funasr's own wrapper (``funasr/models/seaco_paraformer/export_meta.py``) hard-codes the
real model's sizes (512-wide bias embedding, ``NO_BIAS`` 8377, dummy hotwords of 10
tokens) and its default path fails on torch 2.9 (dynamo exporter). This wrapper reads
every size from the model instance and uses the TorchScript exporter (``dynamo=False``).

``model.onnx`` — the recogniser with its hotword head::

    speech (B, T, 560) float32, speech_lengths (B,) int32,
    bias_embed (B, N, D) float32, bias_lengths (B,) int32
      -> logits (B, L, V)      log-probs after SeACo merging (hotword head where it
                               does not predict NO_BIAS, the ASR decoder elsewhere)
         asr_logits (B, L, V)  log-probs of the ASR decoder alone (no hotwords given)
         token_num (B,) int32  tokens per utterance (CIF fire count, floored)
         us_alphas (B, 3T'), us_cif_peak (B, 3T')  upsampled CIF weights / peaks for
                               token timestamps (funasr's ``ts_prediction_lfr6_standard``)

``bias_lengths`` lets every utterance of a batch carry its own hotword list (padded to
the longest); funasr's wrapper uses one list for the whole batch.

``model_eb.onnx`` — the hotword (bias) encoder::

    hotword (N, L) int32 token ids (0-padded), hotword_lengths (N,) int32
      -> hotword_embed (N, D): ``bias_encoder`` LSTM over ``decoder.embed``, the state at
         each hotword's last valid token (funasr's ``_hotword_representation``)

All axes B, T, N, L are dynamic. The hotword list of an utterance ends with the
``[sos]`` entry, as funasr appends it ("no hotword here"). funasr filters the list to
the top 50 by attention score when it has more than 50 entries (ASF); this graph does
not, so :mod:`speechloop.asr.onnx_infer` caps lists at :data:`MAX_HOTWORDS` entries,
below the filter's threshold, which keeps ONNX and torch outputs identical.

torch and funasr are imported inside the functions: importing this module is cheap.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from speechloop.errors import InvalidInput

if TYPE_CHECKING:
    import torch

#: Bumped whenever the exported graphs change, so graphs exported by older code are not
#: reused from the work dir (2: encoder output zeroed past each clip's end).
EXPORT_REVISION = 2
MODEL_FILE = "model.onnx"
EMBED_FILE = "model_eb.onnx"
META_FILE = "onnx_meta.json"
QUANT_SUFFIX = "_quant"
OPSET = 17
# funasr's ASF filter starts above 50 list entries (hotwords + the [sos] entry).
MAX_HOTWORDS = 49


@dataclass(frozen=True)
class OnnxMeta:
    """What the runtime needs to know about an exported model, read from the instance."""

    feats_dim: int
    bias_dim: int
    vocab_size: int
    no_bias_id: int
    sos_id: int
    eos_id: int
    blank_id: int
    lfr_n: int = 6
    upsample_times: int = 3
    opset: int = OPSET

    def save(self, directory: Path) -> Path:
        """Write ``onnx_meta.json`` next to the ONNX files."""
        path = directory / META_FILE
        path.write_text(json.dumps(asdict(self), indent=1), encoding="utf-8")
        return path

    @classmethod
    def load(cls, directory: Path) -> OnnxMeta:
        """Read ``onnx_meta.json`` from ``directory``."""
        path = directory / META_FILE
        if not path.is_file():
            raise InvalidInput(f"{path} missing: not an exported SeACo ONNX directory")
        return cls(**json.loads(path.read_text(encoding="utf-8")))


def meta_of(model: Any) -> OnnxMeta:
    """Sizes and special ids of a funasr ``SeacoParaformer`` instance."""
    enc = model.encoder
    feats_dim = int(enc.encoders0[0].self_attn.linear_q_k_v.in_features)
    return OnnxMeta(
        feats_dim=feats_dim,
        bias_dim=int(model.bias_encoder.hidden_size),
        vocab_size=int(model.vocab_size),
        no_bias_id=int(model.NO_BIAS),
        sos_id=int(model.sos),
        eos_id=int(model.eos),
        blank_id=int(model.blank_id),
        upsample_times=int(getattr(model.predictor, "upsample_times", 3)),
    )


def _export_class(table: str, module: Any) -> Any:
    """funasr's ``<Class>Export`` twin of ``module`` (registered in funasr's tables)."""
    from speechloop.asr.funasr_modules import funasr_module

    tables = funasr_module("funasr.register").tables

    name = type(module).__name__ + "Export"
    cls = getattr(tables, table).get(name)
    if cls is None:
        raise InvalidInput(f"funasr has no {name} for ONNX export of {type(module).__name__}")
    return cls


def _backbone(model: Any) -> torch.nn.Module:
    """The recogniser + hotword head as one traceable module (on a private copy)."""
    import torch

    from speechloop.asr.funasr_modules import funasr_module

    sequence_mask = funasr_module("funasr.utils.torch_function").sequence_mask

    src = copy.deepcopy(model).eval()
    no_bias = int(src.NO_BIAS)

    class Backbone(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = _export_class("encoder_classes", src.encoder)(src.encoder, onnx=True)
            self.predictor = _export_class("predictor_classes", src.predictor)(src.predictor)
            dec = _export_class("decoder_classes", src.decoder)
            self.decoder = dec(src.decoder, onnx=True)
            self.seaco_decoder = _export_class("decoder_classes", src.seaco_decoder)(
                src.seaco_decoder, onnx=True
            )
            self.hotword_output_layer = src.hotword_output_layer
            self.make_pad_mask = sequence_mask(flip=False)

        def forward(
            self,
            speech: torch.Tensor,
            speech_lengths: torch.Tensor,
            bias_embed: torch.Tensor,
            bias_lengths: torch.Tensor,
        ) -> tuple[torch.Tensor, ...]:
            enc, enc_len = self.encoder(speech, speech_lengths)
            mask = self.make_pad_mask(enc_len)[:, None, :]
            enc = enc * mask.transpose(1, 2).type(enc.dtype)  # as inference.encode
            embeds, token_num, _, _ = self.predictor(enc, mask)
            token_num = token_num.floor().type(torch.int32)
            dec_out, dec_hidden, _ = self.decoder(
                enc, enc_len, embeds, token_num, return_hidden=True, return_both=True
            )
            asr_logp = torch.log_softmax(dec_out, dim=-1)
            cif_att, _ = self.seaco_decoder(bias_embed, bias_lengths, embeds, token_num)
            dec_att, _ = self.seaco_decoder(bias_embed, bias_lengths, dec_hidden, token_num)
            dha_logp = torch.log_softmax(self.hotword_output_layer(cif_att + dec_att), dim=-1)
            keep_asr = (dha_logp.argmax(-1) == no_bias).unsqueeze(-1).type(asr_logp.dtype)
            logits = asr_logp * keep_asr + dha_logp * (1 - keep_asr)
            us_alphas, us_peak = self.predictor.get_upsample_timestmap(enc, mask, token_num)
            return logits, asr_logp, token_num, us_alphas, us_peak

    return Backbone().eval()


def _embedder(model: Any) -> torch.nn.Module:
    """The hotword encoder: embedding + LSTM, state at the last valid token."""
    import torch

    if model.bias_encoder_type != "lstm":
        raise InvalidInput(f"bias encoder {model.bias_encoder_type!r}: only 'lstm' exports")
    if model.bias_encoder.bidirectional:
        # With padding, the backward direction would start on pad tokens; funasr packs.
        raise InvalidInput("a bidirectional bias encoder is not supported by the ONNX export")
    embed = copy.deepcopy(model.decoder.embed).eval()
    lstm = copy.deepcopy(model.bias_encoder).eval()

    class Embedder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = embed
            self.lstm = lstm

        def forward(self, hotword: torch.Tensor, hotword_lengths: torch.Tensor) -> torch.Tensor:
            states, _ = self.lstm(self.embed(hotword.long()))
            rows = torch.arange(hotword.shape[0], device=hotword.device)
            return states[rows, hotword_lengths.long() - 1]

    return Embedder().eval()


def _dummy_inputs(meta: OnnxMeta) -> tuple[torch.Tensor, ...]:
    import torch

    gen = torch.Generator().manual_seed(0)
    speech = torch.randn(2, 40, meta.feats_dim, generator=gen)
    lengths = torch.tensor([40, 25], dtype=torch.int32)
    bias = torch.randn(2, 3, meta.bias_dim, generator=gen)
    bias_lengths = torch.tensor([3, 2], dtype=torch.int32)
    return speech, lengths, bias, bias_lengths


def export_onnx(model: Any, out_dir: Path | str, *, quantize: bool = False) -> Path:
    """Write ``model.onnx``, ``model_eb.onnx`` and ``onnx_meta.json`` for ``model``.

    ``model`` is a funasr ``SeacoParaformer`` of any size (left untouched: the export
    works on copies). With ``quantize``, int8 variants ``*_quant.onnx`` are written too
    (see :func:`quantize_int8`). Returns ``out_dir``.
    """
    import torch

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = meta_of(model)
    with torch.no_grad():
        torch.onnx.export(
            _backbone(model),
            _dummy_inputs(meta),
            str(out / MODEL_FILE),
            dynamo=False,
            opset_version=OPSET,
            do_constant_folding=True,
            input_names=["speech", "speech_lengths", "bias_embed", "bias_lengths"],
            output_names=["logits", "asr_logits", "token_num", "us_alphas", "us_cif_peak"],
            dynamic_axes={
                "speech": {0: "batch", 1: "frames"},
                "speech_lengths": {0: "batch"},
                "bias_embed": {0: "batch", 1: "num_hotwords"},
                "bias_lengths": {0: "batch"},
                "logits": {0: "batch", 1: "tokens"},
                "asr_logits": {0: "batch", 1: "tokens"},
                "token_num": {0: "batch"},
                "us_alphas": {0: "batch", 1: "us_frames"},
                "us_cif_peak": {0: "batch", 1: "us_frames"},
            },
        )
        hotwords = torch.tensor([[5, 6, 7, 0], [8, 0, 0, 0], [meta.sos_id, 0, 0, 0]])
        torch.onnx.export(
            _embedder(model),
            (hotwords.int(), torch.tensor([3, 1, 1], dtype=torch.int32)),
            str(out / EMBED_FILE),
            dynamo=False,
            opset_version=OPSET,
            input_names=["hotword", "hotword_lengths"],
            output_names=["hotword_embed"],
            dynamic_axes={
                "hotword": {0: "num_hotwords", 1: "hotword_len"},
                "hotword_lengths": {0: "num_hotwords"},
                "hotword_embed": {0: "num_hotwords"},
            },
        )
    meta.save(out)
    if quantize:
        quantize_int8(out)
    return out


def quantize_int8(directory: Path | str) -> tuple[Path, Path]:
    """Dynamic int8 quantisation of both graphs (weights of MatMul/Gemm to int8).

    Weights are signed int8 per output channel and activations unsigned (U8S8): that is
    the pair the x86 VNNI / AMX kernels of onnxruntime take. Unsigned weights (U8U8)
    fall back to a slower kernel: on the full-size model they ran no faster than float
    (``docs/results-asr-speed.md``).

    The hotword encoder's LSTM and the output projections stay float (as funasr's
    exporter excludes ``output`` and ``bias_encoder`` nodes): they are small and the
    most sensitive to rounding. Writes ``model_quant.onnx`` and ``model_eb_quant.onnx``.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    directory = Path(directory)
    written = []
    for name in (MODEL_FILE, EMBED_FILE):
        src = directory / name
        dst = directory / name.replace(".onnx", QUANT_SUFFIX + ".onnx")
        nodes = [n.name for n in onnx.load(str(src), load_external_data=False).graph.node]
        exclude = [n for n in nodes if "output_layer" in n or "lstm" in n.lower()]
        quantize_dynamic(
            model_input=str(src),
            model_output=str(dst),
            op_types_to_quantize=["MatMul"],
            per_channel=True,
            reduce_range=False,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=exclude,
        )
        written.append(dst)
    return written[0], written[1]
