"""``funasr-onnx``'s ``SeacoParaformer`` (FunASR's own ONNX runtime) as a speed peer.

The peer a FunASR user would pick for CPU serving. It cannot run this project's graphs
(our ``model_eb.onnx`` returns one embedding per hotword, funasr-onnx expects the LSTM's
output at every position and indexes it itself), so its graphs come from FunASR's own
exporter, run on the same full-size model directory as the rest of ``bench_asr_speed``:

- ``AutoModel(model=<dir>).export(type="onnx")`` fails on torch 2.9: funasr's
  ``export_utils._onnx`` calls ``torch.onnx.export`` without ``dynamo=``, and torch 2.9's
  default dynamo exporter fails on the model. :func:`export_funasr_onnx` calls funasr's
  own ``export_utils.export`` (the SeACo model's ``export`` wrapper, funasr's graph
  names, its dynamic axes, opset 14, its int8 quantisation) with ``torch.onnx.export``
  switched to the TorchScript exporter (``dynamo=False``) for the duration of the call,
  in this process only: the installed package is not patched.
- funasr's wrapper hard-codes a 512-wide bias embedding, NO_BIAS 8377 and hotwords
  padded to 10 tokens: the full-size model has exactly these sizes.
- The hotword head: funasr's exported graph always runs it (funasr-onnx passes a
  pseudo-hotword even for ``hotwords=""``) and keeps the recogniser's token wherever the
  head's argmax is NO_BIAS. A trained head picks NO_BIAS where no hotword is heard; a
  random one almost never does (1 chance in 8404), so with random weights the graph's
  text would be the head's, unlike funasr's ``AutoModel.generate`` without hotwords
  (which skips the head). So before exporting, the head's output bias at NO_BIAS is
  raised by :data:`NO_BIAS_BOOST`: one value of the weights changes, the graph and its
  work do not, and the text is the recogniser's, as on a trained model.
- int8: funasr's quantisation path (``quantize=True``: dynamic, MatMul only, per
  channel, **uint8 weights**, output and bias layers excluded) writes
  ``model_quant.onnx`` and ``model_eb_quant.onnx``; that is the int8 a FunASR user gets.

The directory (``config.yaml``, ``am.mvn``, ``tokens.json`` copied from the model
directory, plus the four graphs) is built once (a few minutes) and cached.
"""

from __future__ import annotations

import functools
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

#: Files funasr-onnx's ``SeacoParaformer(model_dir)`` reads besides the graphs.
COPIED = ("config.yaml", "am.mvn", "tokens.json")
GRAPHS = ("model.onnx", "model_eb.onnx", "model_quant.onnx", "model_eb_quant.onnx")
#: Added to the hotword head's output bias at NO_BIAS before export (see above).
NO_BIAS_BOOST = 1e4
#: Written last: what the directory holds (a change rebuilds it).
MARKER = "EXPORTED.json"
REVISION = {
    "exporter": "funasr export_utils, torch.onnx dynamo=False",
    "no_bias_boost": NO_BIAS_BOOST,
}


def unavailable_reason() -> str | None:
    """Why the peer cannot run here (``None`` when ``funasr_onnx`` imports)."""
    try:
        import funasr_onnx  # noqa: F401
    except ImportError as exc:  # optional: the bench skips the cases, stating why
        return f"funasr-onnx is not importable ({exc}); `pip install funasr-onnx==0.3.2`"
    return None


def export_funasr_onnx(model_dir: Path, out_dir: Path, threads: int) -> float:
    """FunASR's own export of ``model_dir`` into ``out_dir`` (float and int8); seconds.

    Idempotent: does nothing when the directory holds this revision's export.
    """
    marker = out_dir / MARKER
    if marker.is_file() and json.loads(marker.read_text()) == REVISION:
        return 0.0
    import torch
    from funasr import AutoModel
    from funasr.utils import export_utils

    start = time.perf_counter()
    torch.set_num_threads(threads)
    out_dir.mkdir(parents=True, exist_ok=True)
    auto = AutoModel(model=str(model_dir), disable_update=True, device="cpu", ncpu=threads)
    no_bias = auto.model.NO_BIAS
    with torch.no_grad():
        auto.model.hotword_output_layer.bias[no_bias] += NO_BIAS_BOOST
    torchscript_export = functools.partial(torch.onnx.export, dynamo=False)
    # what AutoModel.export does (a copy of the model, its config as keyword arguments),
    # with the TorchScript exporter instead of torch 2.9's default dynamo exporter
    kwargs = {k: v for k, v in auto.kwargs.items() if k != "model"}
    kwargs.update(device="cpu", output_dir=str(out_dir), type="onnx", quantize=True)
    with mock.patch.object(torch.onnx, "export", torchscript_export), torch.no_grad():
        export_utils.export(model=auto.model.eval(), data_in=None, **kwargs)
    for name in COPIED:
        shutil.copyfile(model_dir / name, out_dir / name)
    marker.write_text(json.dumps(REVISION))
    return time.perf_counter() - start


def load_engine(
    model_dir: Path, threads: int, quantize: bool
) -> Callable[[list[Any], int, bool], list[str]]:
    """funasr-onnx set up as its users would; ``run(clips, batch, hotwords) -> texts``.

    ``SeacoParaformer(model_dir, batch_size=1, quantize=..., intra_op_num_threads=...)``
    and its recommended call ``model(wav, hotwords="")``, one clip per call: in 0.3.2
    (and 0.4.3) a list of several clips with ``batch_size=1`` decodes only the first (the
    hotword embedding gains a dimension on every loop iteration; the second run fails in
    onnxruntime and the except branch drops the clip with a "silence or noise" warning).
    Texts are funasr-onnx's ``preds`` without spaces (as ``bench_asr_speed`` compares
    funasr's). funasr-onnx keeps ``token_num - predictor_bias`` tokens: one fewer than
    funasr's ``generate``, which instead filters the end-of-sentence token a trained
    model puts there (with random weights funasr keeps a random last token).
    """
    from funasr_onnx import SeacoParaformer

    model = SeacoParaformer(
        str(model_dir), batch_size=1, quantize=quantize, intra_op_num_threads=threads
    )

    def run(clips: list[Any], batch: int, hotwords: bool) -> list[str]:
        if batch != 1 or hotwords:
            raise ValueError("the funasr-onnx peer is timed at batch 1 without hotwords")
        out = []
        for clip in clips:
            result = model(clip, hotwords="")
            out.append(str(result[0]["preds"]).replace(" ", "") if result else "")
        return out

    return run
