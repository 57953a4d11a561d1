"""``speechloop data generate``: write the synthetic labelled corpus to the object store.

Registered in :mod:`speechloop.cli.data` as ``data generate``. The corpus code
(numpy, soundfile) is imported inside the command so that ``speechloop --help`` stays
fast. See :mod:`speechloop.data.synth` for what is generated.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from speechloop.cli.common import cli_errors, console

if TYPE_CHECKING:
    from speechloop.data.synth import CorpusReport


class PresetChoice(StrEnum):
    """The corpus presets (see ``speechloop.data.synth.spec.PRESETS``)."""

    tiny = "tiny"
    demo = "demo"
    bootstrap = "bootstrap"
    finetune = "finetune"


def generate(
    preset: Annotated[PresetChoice, typer.Option(help="Starting point for the spec.")] = (
        PresetChoice.demo
    ),
    seed: Annotated[int | None, typer.Option(help="Seed for sentences and variation.")] = None,
    batches: Annotated[int | None, typer.Option(min=0, help="Number of batches.")] = None,
    per_batch: Annotated[
        int | None, typer.Option(min=0, help="Utterances per batch (ASR and speaker each).")
    ] = None,
    prefix: Annotated[str | None, typer.Option(help="Batch id prefix (<prefix>-0001).")] = None,
    first_batch: Annotated[int | None, typer.Option(min=1, help="Number of the first batch.")] = (
        None
    ),
    out: Annotated[
        str | None, typer.Option(help="Store URL (file://DIR or s3://); default: settings.")
    ] = None,
    bucket: Annotated[str | None, typer.Option(help="Bucket; default: settings.")] = None,
    with_eval: Annotated[
        bool | None, typer.Option("--with-eval/--no-eval", help="Write the golden eval sets.")
    ] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="Rendering processes.")] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Rewrite sets whose manifest exists.")
    ] = False,
) -> None:
    """Generate synthetic ASR and speaker batches (and golden eval sets) into the store."""
    with cli_errors(ValueError):
        from speechloop.config import get_settings
        from speechloop.data.synth import CorpusSpec, generate_corpus
        from speechloop.storage import open_store

        update: dict[str, object] = {}
        for field, value in (("seed", seed), ("batches", batches), ("batch_prefix", prefix),
                             ("first_batch", first_batch), ("with_eval", with_eval),
                             ("workers", workers), ("asr_per_batch", per_batch),
                             ("spk_per_batch", per_batch)):  # fmt: skip
            if value is not None:
                update[field] = value
        spec = CorpusSpec.preset(preset.value).updated(update)
        settings = get_settings()
        if out is not None:
            settings = settings.model_copy(update={"store": out})
        store = open_store(settings)
        report = generate_corpus(
            store, bucket or settings.data_bucket, spec, progress=True, overwrite=overwrite
        )
    console.print(summary_table(report))


def summary_table(report: CorpusReport) -> Table:
    """What was written, as a table."""
    table = Table(title=f"Synthetic corpus in {report.bucket}", title_justify="left")
    table.add_column("what")
    table.add_column("value", overflow="fold")
    table.add_row("ASR batches", ", ".join(report.asr_batches) or "-")
    table.add_row("speaker batches", ", ".join(report.spk_batches) or "-")
    table.add_row("eval sets", ", ".join(report.eval_sets) or "-")
    table.add_row("skipped (already complete)", ", ".join(report.skipped) or "-")
    counts = f"{report.asr_utterances} / {report.spk_utterances} / {report.eval_utterances}"
    table.add_row("utterances (ASR / spk / eval)", counts)
    table.add_row("trials", str(report.trials))
    table.add_row("audio", f"{report.audio_seconds / 60:.1f} min")
    table.add_row("time", f"{report.seconds:.1f} s ({report.utterances_per_s:.1f} utt/s)")
    return table
