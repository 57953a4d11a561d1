"""Export a SeACo-Paraformer of any size to ONNX: the recogniser, its hotword head and
the hotword encoder.

funasr's own wrapper (``funasr/models/seaco_paraformer/export_meta.py``) hard-codes the
real model's sizes (512-wide bias embedding, ``NO_BIAS`` 8377, dummy hotwords of 10
tokens) and its default path fails on torch 2.9 (dynamo exporter). This wrapper reads
every size from the model instance and uses the TorchScript exporter (``dynamo=False``).

Since export revision 3 the recogniser is split in two graphs, so that a request without
hotwords runs no hotword computation at all (funasr skips the hotword head then too),
while a request with hotwords loads no weight twice:

``model_asr.onnx`` — encoder, CIF predictor and ASR decoder::

    speech (B, T, 560) float32, speech_lengths (B,) int32
      -> asr_logits (B, L, V)  log-probs of the ASR decoder alone (no hotwords given)
         token_num (B,) int32  tokens per utterance (CIF fire count, floored)
         us_alphas (B, 3T'), us_cif_peak (B, 3T')  upsampled CIF weights / peaks for
                               token timestamps (funasr's ``ts_prediction_lfr6_standard``)
         acoustic_embeds (B, L, D), decoder_hidden (B, L, D)  what the head attends from

``model_head.onnx`` — the SeACo hotword head::

    bias_embed (B, N, D) float32, bias_lengths (B,) int32, acoustic_embeds,
    decoder_hidden, token_num, asr_logits (the recogniser's outputs)
      -> logits (B, L, V)      log-probs after SeACo merging (hotword head where it
                               does not predict NO_BIAS, the ASR decoder elsewhere)

``model.onnx`` (``layout="single"``, what revisions 1-2 wrote and registry versions
published before revision 3 carry) is both in one graph: inputs ``speech``,
``speech_lengths``, ``bias_embed``, ``bias_lengths``; outputs ``logits``, ``asr_logits``,
``token_num``, ``us_alphas``, ``us_cif_peak``. :mod:`speechloop.asr.onnx_infer` runs it
when a directory has no split graphs.

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
#: reused from the work dir (2: encoder output zeroed past each clip's end; 3: the
#: recogniser split into ``model_asr.onnx`` + ``model_head.onnx``).
EXPORT_REVISION = 3
MODEL_FILE = "model.onnx"  # the single graph of revisions 1-2 (layout="single")
ASR_FILE = "model_asr.onnx"
HEAD_FILE = "model_head.onnx"
EMBED_FILE = "model_eb.onnx"
META_FILE = "onnx_meta.json"
QUANT_SUFFIX = "_quant"
LAYOUTS = ("split", "single")
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


def _parts(model: Any) -> tuple[torch.nn.Module, torch.nn.Module, torch.nn.Module]:
    """The recogniser, the hotword head and both in one (the single layout), as traceable
    modules sharing one private copy of ``model``'s weights."""
    import torch

    from speechloop.asr.funasr_modules import funasr_module

    sequence_mask = funasr_module("funasr.utils.torch_function").sequence_mask

    src = copy.deepcopy(model).eval()
    no_bias = int(src.NO_BIAS)

    class Recogniser(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = _export_class("encoder_classes", src.encoder)(src.encoder, onnx=True)
            self.predictor = _export_class("predictor_classes", src.predictor)(src.predictor)
            dec = _export_class("decoder_classes", src.decoder)
            self.decoder = dec(src.decoder, onnx=True)
            self.make_pad_mask = sequence_mask(flip=False)

        def forward(
            self, speech: torch.Tensor, speech_lengths: torch.Tensor
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
            us_alphas, us_peak = self.predictor.get_upsample_timestmap(enc, mask, token_num)
            return asr_logp, token_num, us_alphas, us_peak, embeds, dec_hidden

    class Head(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.seaco_decoder = _export_class("decoder_classes", src.seaco_decoder)(
                src.seaco_decoder, onnx=True
            )
            self.hotword_output_layer = src.hotword_output_layer

        def forward(
            self,
            bias_embed: torch.Tensor,
            bias_lengths: torch.Tensor,
            embeds: torch.Tensor,
            dec_hidden: torch.Tensor,
            token_num: torch.Tensor,
            asr_logp: torch.Tensor,
        ) -> torch.Tensor:
            cif_att, _ = self.seaco_decoder(bias_embed, bias_lengths, embeds, token_num)
            dec_att, _ = self.seaco_decoder(bias_embed, bias_lengths, dec_hidden, token_num)
            dha_logp = torch.log_softmax(self.hotword_output_layer(cif_att + dec_att), dim=-1)
            keep_asr = (dha_logp.argmax(-1) == no_bias).unsqueeze(-1).type(asr_logp.dtype)
            return asr_logp * keep_asr + dha_logp * (1 - keep_asr)

    class Single(torch.nn.Module):
        def __init__(self, recogniser: Recogniser, head: Head) -> None:
            super().__init__()
            self.recogniser = recogniser
            self.head = head

        def forward(
            self,
            speech: torch.Tensor,
            speech_lengths: torch.Tensor,
            bias_embed: torch.Tensor,
            bias_lengths: torch.Tensor,
        ) -> tuple[torch.Tensor, ...]:
            asr_logp, token_num, us_alphas, us_peak, embeds, hidden = self.recogniser(
                speech, speech_lengths
            )
            logits = self.head(bias_embed, bias_lengths, embeds, hidden, token_num, asr_logp)
            return logits, asr_logp, token_num, us_alphas, us_peak

    recogniser, head = Recogniser().eval(), Head().eval()
    return recogniser, head, Single(recogniser, head).eval()


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


_SPEECH_AXES = {"speech": {0: "batch", 1: "frames"}, "speech_lengths": {0: "batch"}}
_BIAS_AXES = {"bias_embed": {0: "batch", 1: "num_hotwords"}, "bias_lengths": {0: "batch"}}
_RECOGNISER_OUT = {
    "asr_logits": {0: "batch", 1: "tokens"},
    "token_num": {0: "batch"},
    "us_alphas": {0: "batch", 1: "us_frames"},
    "us_cif_peak": {0: "batch", 1: "us_frames"},
}
_HIDDEN_AXES = {
    "acoustic_embeds": {0: "batch", 1: "tokens"},
    "decoder_hidden": {0: "batch", 1: "tokens"},
}


def _export(module: Any, args: tuple[Any, ...], path: Path, axes: dict[str, Any]) -> None:
    """TorchScript export of ``module`` with named, dynamic inputs and outputs (``axes``
    lists the inputs first, then the outputs, as the graph orders them)."""
    import torch

    names = list(axes)
    torch.onnx.export(
        module,
        args,
        str(path),
        dynamo=False,
        opset_version=OPSET,
        do_constant_folding=True,
        input_names=names[: len(args)],
        output_names=names[len(args) :],
        dynamic_axes=axes,
    )


def export_onnx(
    model: Any, out_dir: Path | str, *, quantize: bool = False, layout: str = "split"
) -> Path:
    """Write the recogniser graphs, ``model_eb.onnx`` and ``onnx_meta.json`` for ``model``.

    ``model`` is a funasr ``SeacoParaformer`` of any size (left untouched: the export
    works on copies). ``layout="split"`` writes ``model_asr.onnx`` + ``model_head.onnx``
    (what serves), ``"single"`` the one ``model.onnx`` of export revisions 1-2 (what older
    registry versions carry; kept to test and measure that fallback). With ``quantize``,
    int8 variants ``*_quant.onnx`` are written too (see :func:`quantize_int8`). Returns
    ``out_dir``.
    """
    import torch

    if layout not in LAYOUTS:
        raise InvalidInput(f"unknown ONNX layout {layout!r}: expected one of {LAYOUTS}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = meta_of(model)
    recogniser, head, single = _parts(model)
    speech, lengths, bias, bias_lengths = _dummy_inputs(meta)
    with torch.no_grad():
        if layout == "single":
            axes = {**_SPEECH_AXES, **_BIAS_AXES, "logits": {0: "batch", 1: "tokens"}}
            axes |= _RECOGNISER_OUT
            _export(single, (speech, lengths, bias, bias_lengths), out / MODEL_FILE, axes)
        else:
            _export(
                recogniser,
                (speech, lengths),
                out / ASR_FILE,
                {**_SPEECH_AXES, **_RECOGNISER_OUT, **_HIDDEN_AXES},
            )
            asr_logp, token_num, _, _, embeds, hidden = recogniser(speech, lengths)
            head_in = (bias, bias_lengths, embeds, hidden, token_num, asr_logp)
            head_axes = {**_BIAS_AXES, **_HIDDEN_AXES, "token_num": {0: "batch"}}
            head_axes |= {"asr_logits": {0: "batch", 1: "tokens"}}
            head_axes |= {"logits": {0: "batch", 1: "tokens"}}
            _export(head, head_in, out / HEAD_FILE, head_axes)
        hotwords = torch.tensor([[5, 6, 7, 0], [8, 0, 0, 0], [meta.sos_id, 0, 0, 0]])
        _export(
            _embedder(model),
            (hotwords.int(), torch.tensor([3, 1, 1], dtype=torch.int32)),
            out / EMBED_FILE,
            {
                "hotword": {0: "num_hotwords", 1: "hotword_len"},
                "hotword_lengths": {0: "num_hotwords"},
                "hotword_embed": {0: "num_hotwords"},
            },
        )
    meta.save(out)
    if quantize:
        quantize_int8(out)
    return out


def quant_name(name: str) -> str:
    """The int8 twin's file name of a graph file (``model_asr.onnx`` ->
    ``model_asr_quant.onnx``)."""
    return name.replace(".onnx", QUANT_SUFFIX + ".onnx")


def quantize_int8(directory: Path | str) -> list[Path]:
    """Dynamic int8 quantisation of the graphs in ``directory`` (weights of MatMul to int8).

    Weights are signed int8 per output channel and activations unsigned (U8S8): that is
    the pair the x86 VNNI / AMX kernels of onnxruntime take. Unsigned weights (U8U8)
    fall back to a slower kernel: on the full-size model they ran no faster than float
    (``docs/results-asr-speed.md``).

    The hotword encoder's LSTM and the output projections stay float (as funasr's
    exporter excludes ``output`` and ``bias_encoder`` nodes): they are small and the
    most sensitive to rounding. Each node is quantised alike in either layout, so the
    split graphs give the single graph's int8 outputs. Writes ``<graph>_quant.onnx`` for
    each graph present; returns their paths.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    directory = Path(directory)
    written = []
    for name in (ASR_FILE, HEAD_FILE, MODEL_FILE, EMBED_FILE):
        src = directory / name
        if not src.is_file():
            continue
        dst = directory / quant_name(name)
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
    return written
