"""``speechloop asr ...`` commands and ``speechloop bootstrap asr``.

Model choice for every command: ``--model-dir DIR`` (a model directory), ``--version V``
(a registry version, checksums verified), else the registry's production alias, else
the seed shipped in ``speechloop/seeds/asr``. torch and funasr load inside commands.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from speechloop.cli.common import exit_for
from speechloop.errors import InvalidInput, NotFound, SpeechloopError

app = typer.Typer(no_args_is_help=True)

ModelDir = Annotated[Path | None, typer.Option("--model-dir", help="model directory to load")]
Version = Annotated[str | None, typer.Option("--version", help="registry version to load")]


def resolve_model_dir(model_dir: Path | None, version: str | None) -> tuple[Path, str]:
    """The directory of the model to use and its version label (see module docstring)."""
    from speechloop.asr.bootstrap import SEED_DIR
    from speechloop.config import get_settings
    from speechloop.registry import ModelRegistry
    from speechloop.storage import open_store

    if model_dir is not None:
        return model_dir, "local"
    settings = get_settings()
    registry = ModelRegistry(open_store(settings), settings.models_bucket)
    if version is None:
        try:
            alias = registry.get_alias("asr", "production")
        except SpeechloopError:
            alias = None
        if alias is None:
            return SEED_DIR, "seed"
        version = alias.version
    dest = Path(settings.work_dir) / "models" / "asr" / version
    return registry.fetch("asr", version, dest), version


@app.command()
def transcribe(
    files: Annotated[list[Path], typer.Argument(help="audio files (wav, flac, mp3, ...)")],
    hotword: Annotated[
        list[str] | None, typer.Option("--hotword", "-w", help="a hotword (repeatable; phrases ok)")
    ] = None,
    onnx: Annotated[bool, typer.Option("--onnx", help="use the ONNX runtime path")] = False,
    int8: Annotated[
        bool, typer.Option("--int8", help="with --onnx: the int8 graphs (faster on CPU)")
    ] = False,
    model_dir: ModelDir = None,
    version: Version = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Transcribe audio files with optional hotwords."""
    try:
        if int8 and not onnx:
            raise InvalidInput("--int8 needs --onnx (the int8 graphs are ONNX only)")
        directory, label = resolve_model_dir(model_dir, version)
        if onnx:
            results = _onnx_transcribe(directory, files, hotword, quantized=int8)
        else:
            results = _torch_transcribe(directory, files, hotword)
    except SpeechloopError as exc:
        raise exit_for(exc) from exc
    for path, res in zip(files, results, strict=True):
        res["file"], res["model_version"] = str(path), label
        if as_json:
            typer.echo(json.dumps(res))
        else:
            found = ", ".join(res.get("hotwords_found", [])) or "-"
            typer.echo(f"{path}: {res['text']}    [hotwords found: {found}]")


def _torch_transcribe(
    directory: Path, files: list[Path], hotwords: list[str] | None
) -> list[dict[str, Any]]:
    from speechloop.asr.hotwords import parse_hotwords
    from speechloop.asr.inference import Transcriber
    from speechloop.asr.model import load_from_dir

    tr = Transcriber(load_from_dir(directory))
    parsed = parse_hotwords(hotwords, tr.loaded.tokenizer) if hotwords else None
    if parsed is not None and parsed.oov:
        raise InvalidInput(f"hotwords the model cannot spell: {parsed.oov}")
    if parsed is not None and parsed.duplicates:
        typer.echo(f"duplicate hotwords ignored: {parsed.duplicates}", err=True)
    out = []
    for t in tr.transcribe_files(files, list(parsed.phrases) if parsed else None):
        out.append({
            "text": t.text,
            "hotwords_found": t.hotwords_found,
            "timestamps": [[s.token, s.start_s, s.end_s] for s in t.timestamps],
        })  # fmt: skip
    return out


def _onnx_transcribe(
    directory: Path, files: list[Path], hotwords: list[str] | None, *, quantized: bool
) -> list[dict[str, Any]]:
    """Transcribe with onnxruntime; exports the model once into the work dir if needed."""
    from speechloop.asr.onnx_infer import OnnxSeacoAsr
    from speechloop.audio import decode_audio

    onnx_dir = onnx_dir_for(directory, quantized=quantized)
    asr = OnnxSeacoAsr(
        onnx_dir,
        cmvn_file=directory / "am.mvn" if (directory / "am.mvn").is_file() else None,
        quantized=quantized,
    )
    out = []
    for path in files:
        res = asr.transcribe(decode_audio(Path(path), name=str(path)).samples, hotwords or [])
        stamps = [
            [tok, s / 1000, e / 1000]
            for tok, (s, e) in zip(res.tokens, res.timestamps, strict=False)
        ]
        out.append({"text": res.text, "hotwords_found": res.hotwords_found, "timestamps": stamps})
    return out


def onnx_dir_for(directory: Path, *, quantized: bool = False) -> Path:
    """ONNX graphs of a model directory (with ``quantized``, its int8 graphs too): its
    own, else exported once into the work dir."""
    import hashlib
    import shutil

    from speechloop.asr.model import load_from_dir
    from speechloop.asr.onnx_export import (
        EXPORT_REVISION,
        MODEL_FILE,
        QUANT_SUFFIX,
        export_onnx,
        quantize_int8,
    )
    from speechloop.config import get_settings

    int8_file = MODEL_FILE.replace(".onnx", QUANT_SUFFIX + ".onnx")
    if (directory / "onnx_meta.json").is_file() and (
        not quantized or (directory / int8_file).is_file()
    ):
        return directory
    if not (directory / "model.pt").is_file():
        wanted = int8_file if quantized else "onnx_meta.json"
        raise NotFound(f"{directory} has no {wanted}, and no model.pt to export it from")
    weights = (directory / "model.pt").read_bytes()
    digest = hashlib.sha256(weights + f"rev{EXPORT_REVISION}".encode()).hexdigest()[:16]
    out = Path(get_settings().work_dir) / "onnx" / digest
    if not (out / "onnx_meta.json").is_file():
        export_onnx(load_from_dir(directory).model, out, quantize=quantized)
    elif quantized and not (out / int8_file).is_file():
        quantize_int8(out)
    shutil.copyfile(directory / "tokens.json", out / "tokens.json")
    return out


@app.command("eval")
def evaluate_cmd(
    eval_set: Annotated[str, typer.Option("--set", help="golden ASR eval set name")] = "golden",
    model_dir: ModelDir = None,
    version: Version = None,
) -> None:
    """Evaluate a model on a golden set: CER and hotword recall/precision/F1, with and without."""
    from speechloop.asr.evaluation import evaluate_rows
    from speechloop.asr.inference import Transcriber
    from speechloop.asr.model import load_from_dir
    from speechloop.config import get_settings
    from speechloop.data.dataset import load_asr_eval_set
    from speechloop.storage import open_store

    try:
        settings = get_settings()
        directory, _ = resolve_model_dir(model_dir, version)
        rows = load_asr_eval_set(
            open_store(settings), settings.data_bucket, eval_set, Path(settings.work_dir)
        )
        report = evaluate_rows(Transcriber(load_from_dir(directory)), rows)
    except SpeechloopError as exc:
        raise exit_for(exc) from exc
    typer.echo(json.dumps(report, indent=2))


@app.command()
def finetune(
    out: Annotated[Path, typer.Option("--out", help="directory for the fine-tuned model")],
    naive: Annotated[
        bool, typer.Option("--naive", help="one stage, all parameters (baseline)")
    ] = False,
    epochs: Annotated[int, typer.Option(help="epochs per stage")] = 10,
    lr: Annotated[float, typer.Option(help="stage-1 learning rate")] = 5e-5,
    hotword_lr_factor: Annotated[
        float, typer.Option(help="stage-2 lr = factor x lr (lower keeps old names, docs/asr.md)")
    ] = 10.0,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    model_dir: ModelDir = None,
    version: Version = None,
) -> None:
    """Fine-tune on the pending ingested ASR batches (two stages unless --naive)."""
    from speechloop.asr.finetune import FinetuneConfig, finetune_model
    from speechloop.asr.model import load_from_dir
    from speechloop.config import get_settings
    from speechloop.data.ingest import Ingestor
    from speechloop.data.types import AsrRow
    from speechloop.storage import open_store

    try:
        settings = get_settings()
        directory, _ = resolve_model_dir(model_dir, version)
        result = Ingestor(
            open_store(settings), settings.data_bucket, Path(settings.work_dir), "asr"
        ).run()
        asr_rows = [r for r in result.rows if isinstance(r, AsrRow)]
        if not asr_rows:
            typer.echo("no pending ASR batches to fine-tune on", err=True)
            raise typer.Exit(code=1)
        cfg = (
            FinetuneConfig.naive(epochs, lr, seed)
            if naive
            else FinetuneConfig.two_stage(epochs, lr, seed, hotword_lr_factor)
        )
        tuned = finetune_model(load_from_dir(directory), asr_rows, cfg, work_dir=out / "work")
        from speechloop.asr.model import save_to_dir

        save_to_dir(tuned.loaded, out)
    except SpeechloopError as exc:
        raise exit_for(exc) from exc
    typer.echo(json.dumps({"out": str(out), "stages": tuned.summary()}, indent=2))


def bootstrap(
    out: Annotated[Path | None, typer.Option("--out", help="where to write the seed")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="a short run (CI)")] = False,
    preset: Annotated[str, typer.Option(help="corpus preset")] = "bootstrap",
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    threads: Annotated[int, typer.Option(help="CPU threads")] = 2,
) -> None:
    """Train the seed ASR model from the synthetic corpus (see docs/asr.md)."""
    from speechloop.asr.seed_recipe import make_seed

    try:
        summary = make_seed(
            out, preset=preset, quick=quick, seed=seed, threads=threads, argv=sys.argv
        )
    except SpeechloopError as exc:
        raise exit_for(exc) from exc
    typer.echo(json.dumps(summary, indent=2))
