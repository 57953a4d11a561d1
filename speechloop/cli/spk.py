"""``speechloop spk ...`` commands and ``speechloop bootstrap spk``.

Model choice for every command (:meth:`speechloop.context.AppContext.resolve_model`):
``--model-dir DIR`` (a model directory, e.g. a ModelScope download of
iic/speech_eres2netv2_sv_zh-cn_16k-common), ``--version V`` (a registry version, an
alias, or ``seed``; checksums verified), else ``SPEECHLOOP_SPK_VERSION``, else the
registry's production alias, else the seed shipped in ``speechloop/seeds/spk`` -- only
when the registry holds no speaker version at all (a store or alias failure is an
error, never a quiet switch to the seed). ``--onnx`` embeds with ONNX Runtime (the
version's graph, or one exported once into the work dir). torch loads only inside
commands.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from speechloop.cli.common import exit_for
from speechloop.errors import InvalidInput, SpeechloopError

if TYPE_CHECKING:
    from speechloop.context import AppContext
    from speechloop.speaker.embed import SpeakerEmbedder

app = typer.Typer(no_args_is_help=True)

ModelDir = Annotated[Path | None, typer.Option("--model-dir", help="model directory to load")]
Version = Annotated[
    str | None, typer.Option("--version", help="registry version, alias, or 'seed' to load")
]
Onnx = Annotated[bool, typer.Option("--onnx", help="embed with ONNX Runtime instead of torch")]
MinDur = Annotated[float, typer.Option("--min-duration", help="shortest audio accepted (s)")]


def _print(data: dict[str, Any]) -> None:
    typer.echo(json.dumps(data, indent=1, ensure_ascii=False))


def _context() -> AppContext:
    """A context on settings read now (a command is one process; tests change the env)."""
    from speechloop.config import load_settings
    from speechloop.context import build_context

    return build_context(load_settings())  # a bad SPEECHLOOP_* setting: one error line


def _embedder(
    model_dir: Path | None,
    version: str | None,
    onnx: bool,
    min_duration: float = 0.5,
    ctx: AppContext | None = None,
) -> tuple[SpeakerEmbedder, float | None]:
    """The embedder for the chosen model and its calibrated threshold."""
    from speechloop.speaker.embed import EmbedConfig

    embedder = (ctx or _context()).speaker_embedder(
        version, onnx=onnx, model_dir=model_dir, config=EmbedConfig(min_duration_s=min_duration)
    )
    return embedder, embedder.threshold


@app.command()
def embed(
    files: Annotated[list[Path], typer.Argument(help="audio files")],
    onnx: Onnx = False,
    model_dir: ModelDir = None,
    version: Version = None,
    min_duration: MinDur = 0.5,
    full: Annotated[bool, typer.Option("--full", help="print the whole vectors")] = False,
) -> None:
    """Print the speaker embedding of each file (JSON)."""
    try:
        embedder, _ = _embedder(model_dir, version, onnx, min_duration)
        out = []
        for path in files:
            vec = embedder.embed_file(path)
            item: dict[str, Any] = {"file": str(path), "dim": int(vec.shape[0]),
                                    "norm": round(float((vec**2).sum() ** 0.5), 4)}  # fmt: skip
            item["embedding"] = [round(float(x), 6) for x in (vec if full else vec[:8])]
            out.append(item)
        _print({"model_version": embedder.version, "backend": embedder.backend.name,
                "embeddings": out})  # fmt: skip
    except SpeechloopError as exc:
        raise exit_for(exc) from exc


@app.command()
def verify(
    a: Annotated[Path, typer.Argument(help="first audio file")],
    b: Annotated[Path, typer.Argument(help="second audio file")],
    threshold: Annotated[
        float | None, typer.Option("--threshold", help="override the calibrated threshold")
    ] = None,
    onnx: Onnx = False,
    model_dir: ModelDir = None,
    version: Version = None,
    min_duration: MinDur = 0.5,
) -> None:
    """Score two recordings: same speaker if the cosine score reaches the threshold."""
    from speechloop.speaker.embed import cosine

    try:
        embedder, calibrated = _embedder(model_dir, version, onnx, min_duration)
        score = cosine(embedder.embed_file(a), embedder.embed_file(b))
        chosen = threshold if threshold is not None else calibrated
        _print({"a": str(a), "b": str(b), "score": round(score, 4),
                "threshold": chosen, "same_speaker": None if chosen is None else score >= chosen,
                "model_version": embedder.version, "backend": embedder.backend.name})  # fmt: skip
    except SpeechloopError as exc:
        raise exit_for(exc) from exc


@app.command("eval")
def eval_cmd(
    eval_set: Annotated[str, typer.Option("--set", help="golden eval set name")] = "golden",
    onnx: Onnx = False,
    model_dir: ModelDir = None,
    version: Version = None,
    det: Annotated[Path | None, typer.Option("--det", help="write a DET curve PNG")] = None,
) -> None:
    """EER and minDCF on a golden evaluation set of the configured store."""
    from speechloop.data.dataset import load_spk_eval_set
    from speechloop.speaker.evaluate import evaluate_embedder

    try:
        ctx = _context()
        embedder, _ = _embedder(model_dir, version, onnx, ctx=ctx)
        data = load_spk_eval_set(
            ctx.store, ctx.settings.data_bucket, eval_set, ctx.layout.root, ctx.settings
        )
        result = evaluate_embedder(embedder, data, det_png=det)
        _print({"set": eval_set, "model_version": embedder.version, **result.to_json()})
    except SpeechloopError as exc:
        raise exit_for(exc) from exc


@app.command("export-onnx")
def export_onnx_cmd(
    out: Annotated[Path, typer.Argument(help="where to write the .onnx file")],
    model_dir: ModelDir = None,
    version: Version = None,
) -> None:
    """Export the model to ONNX (dynamic batch and frames)."""
    from speechloop.speaker.loading import load_model_dir
    from speechloop.speaker.onnx_export import export_onnx

    try:
        directory = _context().resolve_model("spk", version, model_dir=model_dir).directory
        path = export_onnx(load_model_dir(directory), out)
        _print({"onnx": str(path), "bytes": path.stat().st_size})
    except SpeechloopError as exc:
        raise exit_for(exc) from exc


@app.command()
def enroll(
    speaker: Annotated[str, typer.Argument(help="speaker id")],
    files: Annotated[list[Path], typer.Argument(help="enrolment recordings")],
    onnx: Onnx = False,
    model_dir: ModelDir = None,
    version: Version = None,
) -> None:
    """Enrol a speaker: store the audio and the voiceprint for the model version."""
    try:
        ctx = _context()
        embedder, _ = _embedder(model_dir, version, onnx, ctx=ctx)
        vp = ctx.voiceprints.enroll(
            embedder, speaker, [f.read_bytes() for f in files], [str(f) for f in files]
        )
        _print({"speaker": vp.speaker, "model_version": vp.model_version,
                "n_utterances": vp.n_utterances, "enrolment": vp.enrolment})  # fmt: skip
    except OSError as exc:
        raise exit_for(InvalidInput(f"cannot read enrolment audio: {exc}")) from exc
    except SpeechloopError as exc:
        raise exit_for(exc) from exc


@app.command()
def identify(
    file: Annotated[Path, typer.Argument(help="recording of an unknown speaker")],
    top_k: Annotated[int, typer.Option("--top-k")] = 5,
    threshold: Annotated[
        float | None, typer.Option("--threshold", help="override the calibrated threshold")
    ] = None,
    onnx: Onnx = False,
    model_dir: ModelDir = None,
    version: Version = None,
) -> None:
    """Rank enrolled speakers against a recording; reject below the threshold."""
    from speechloop.audio import decode_audio

    try:
        ctx = _context()
        embedder, calibrated = _embedder(model_dir, version, onnx, ctx=ctx)
        chosen = threshold if threshold is not None else calibrated
        if chosen is None:
            raise SpeechloopError("the model has no calibrated threshold: pass --threshold")
        samples = decode_audio(file, name=str(file)).samples
        result = ctx.voiceprints.identify(embedder, samples, threshold=chosen, top_k=top_k)
        _print(result.to_json())
    except SpeechloopError as exc:
        raise exit_for(exc) from exc


@app.command()
def finetune(
    batches: Annotated[list[str], typer.Option("--batch", help="spk batch id (repeatable)")],
    out: Annotated[Path, typer.Option("--out", help="output directory")],
    eval_set: Annotated[str, typer.Option("--eval-set")] = "golden",
    epochs: Annotated[int, typer.Option("--epochs")] = 8,
    lr: Annotated[float, typer.Option("--lr", help="peak lr (pre-training used 2e-3)")] = 2e-4,
    margin: Annotated[float, typer.Option("--margin")] = 0.2,
    scale: Annotated[float, typer.Option("--scale")] = 32.0,
    freeze_stages: Annotated[int, typer.Option("--freeze-stages")] = 0,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    new_version: Annotated[str | None, typer.Option("--new-version")] = None,
    resume: Annotated[bool, typer.Option("--resume/--no-resume")] = True,
    target_far: Annotated[float | None, typer.Option("--target-far")] = None,
    model_dir: ModelDir = None,
    version: Version = None,
) -> None:
    """Fine-tune on speaker batches of the store; score base and new model on a golden set."""
    from datetime import UTC, datetime

    from speechloop.data.dataset import load_spk_eval_set
    from speechloop.speaker.finetune.config import finetune_config
    from speechloop.speaker.finetune.pipeline import batch_rows, finetune_on_rows
    from speechloop.speaker.loading import load_model_dir

    try:
        ctx = _context()
        settings, store = ctx.settings, ctx.store
        base = load_model_dir(ctx.resolve_model("spk", version, model_dir=model_dir).directory)
        rows = batch_rows(store, settings.data_bucket, batches, settings.work_dir, settings)
        golden = load_spk_eval_set(
            store, settings.data_bucket, eval_set, settings.work_dir, settings
        )
        config = finetune_config(
            epochs=epochs, lr=lr, margin=margin, scale=scale, freeze_stages=freeze_stages,
            seed=seed, progress=sys.stderr.isatty(),
        )  # fmt: skip
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        metrics = finetune_on_rows(
            base, rows, golden, out, config, version=new_version or f"spk-ft-{stamp}",
            target_far=target_far, resume=resume,
        )  # fmt: skip
    except SpeechloopError as exc:
        raise exit_for(exc) from exc
    keys = ("version", "base_version", "base_golden", "golden", "eer_relative_change",
            "threshold", "best_epoch", "seconds")  # fmt: skip
    _print({k: metrics[k] for k in keys} | {"model_dir": str(out / "best")})


def bootstrap(
    out: Annotated[Path, typer.Option("--out", help="where to write the seed model")] = Path(
        "speechloop/seeds/spk"
    ),
    epochs: Annotated[int, typer.Option("--epochs")] = 10,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    batches: Annotated[int, typer.Option("--batches", help="speaker batches generated")] = 10,
    work_dir: Annotated[Path | None, typer.Option("--work-dir")] = None,
) -> None:
    """Train the seed speaker model from the synthetic corpus (reproducible by --seed)."""
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    from speechloop.speaker.bootstrap import seed_corpus_spec, train_seed
    from speechloop.speaker.finetune.config import pretrain_config

    command = "speechloop bootstrap spk " + shlex.join(sys.argv[3:] if len(sys.argv) > 3 else [])
    try:
        metrics = train_seed(
            out,
            spec=seed_corpus_spec(batches=batches, seed=seed),
            train=pretrain_config(epochs=epochs, seed=seed, progress=sys.stderr.isatty()),
            work_dir=work_dir or _context().layout.root / "bootstrap" / "spk",
            command=command.strip(),
        )
    except SpeechloopError as exc:
        raise exit_for(exc) from exc
    _print({k: metrics[k] for k in ("version", "golden", "seen", "best_epoch", "seconds")})
