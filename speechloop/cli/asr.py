"""``speechloop asr ...`` commands and ``speechloop bootstrap asr``.

Model choice for every command (:meth:`speechloop.context.AppContext.resolve_model`):
``--model-dir DIR`` (a model directory), ``--version V`` (a registry version, an alias,
or ``seed``; checksums verified), else ``SPEECHLOOP_ASR_VERSION``, else the registry's
production alias, else the seed shipped in ``speechloop/seeds/asr`` -- but only when the
registry holds no ASR version at all: an unreachable store, an unreadable alias or a
corrupt version is an error naming why, never a quiet switch to the seed.

``transcribe`` goes through the one ASR engine (:mod:`speechloop.asr.engine`): torch by
default, ``--onnx`` / ``--onnx --int8`` for ONNX Runtime (graphs from the version, or
exported once into the work dir for a directory without them). torch and funasr load
inside commands.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from speechloop.cli.common import exit_for
from speechloop.errors import InvalidInput, SpeechloopError

if TYPE_CHECKING:
    from speechloop.context import AppContext

app = typer.Typer(no_args_is_help=True)

ModelDir = Annotated[Path | None, typer.Option("--model-dir", help="model directory to load")]
Version = Annotated[
    str | None, typer.Option("--version", help="registry version, alias, or 'seed' to load")
]


def _context() -> AppContext:
    """A context on settings read now (a command is one process; tests change the env)."""
    from speechloop.config import load_settings
    from speechloop.context import build_context

    return build_context(load_settings())  # a bad SPEECHLOOP_* setting: one error line


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
    from speechloop.audio import decode_audio

    try:
        if int8 and not onnx:
            raise InvalidInput("--int8 needs --onnx (the int8 graphs are ONNX only)")
        backend = "onnx-int8" if int8 else "onnx" if onnx else "torch"
        engine = _context().asr_engine(version, backend=backend, model_dir=model_dir)
        parsed = engine.parse_hotwords(hotword) if hotword else None
        if parsed is not None and parsed.duplicates:
            typer.echo(f"duplicate hotwords ignored: {parsed.duplicates}", err=True)
        waves = [decode_audio(Path(p), name=str(p)).samples for p in files]
        results = engine.transcribe(waves, parsed)
    except SpeechloopError as exc:
        raise exit_for(exc) from exc
    for path, res in zip(files, results, strict=True):
        doc = res.to_dict() | {"file": str(path), "model_version": engine.version,
                               "backend": engine.backend}  # fmt: skip
        if as_json:
            typer.echo(json.dumps(doc))
        else:
            found = ", ".join(res.hotwords_found) or "-"
            typer.echo(f"{path}: {res.text}    [hotwords found: {found}]")


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
    from speechloop.data.dataset import load_asr_eval_set

    try:
        ctx = _context()
        model = ctx.resolve_model("asr", version, model_dir=model_dir)
        rows = load_asr_eval_set(
            ctx.store, ctx.settings.data_bucket, eval_set, ctx.layout.root, ctx.settings
        )
        loaded = load_from_dir(model.directory, version=model.version)
        report = evaluate_rows(Transcriber(loaded), rows)
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
    from speechloop.data.ingest import Ingestor
    from speechloop.data.types import AsrRow

    try:
        ctx = _context()
        directory = ctx.resolve_model("asr", version, model_dir=model_dir).directory
        result = Ingestor(
            ctx.store, ctx.settings.data_bucket, ctx.layout.root, "asr", ctx.settings
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
            out, preset=preset, quick=quick, seed=seed, threads=threads, argv=sys.argv,
            work_root=_context().layout.root,
        )  # fmt: skip
    except SpeechloopError as exc:
        raise exit_for(exc) from exc
    typer.echo(json.dumps(summary, indent=2))
