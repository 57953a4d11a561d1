"""``speechloop data ...``: generate, ingest and commit labelled batches; show where data stands.

Heavy modules (numpy, soundfile via the ingestion code) are imported inside the
commands, so ``speechloop --help`` stays fast. Errors of the speechloop family (and
local I/O errors) print as one line on stderr and exit with status 1, no traceback.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from speechloop.cli.common import cli_errors, console, err_console
from speechloop.cli.data_generate import generate
from speechloop.errors import SpeechloopError

if TYPE_CHECKING:
    from speechloop.config import Settings
    from speechloop.data.ingest import Ingestor, IngestResult
    from speechloop.data.manifest import Kind
    from speechloop.storage.base import ObjectStore

app = typer.Typer(no_args_is_help=True)
app.command("generate")(generate)  # the corpus generator's command (speechloop.data.synth)


class KindChoice(StrEnum):
    """Which labelled data a command works on."""

    asr = "asr"
    spk = "spk"
    all = "all"


def _kinds(kind: KindChoice) -> list[Kind]:
    if kind is KindChoice.asr:
        return ["asr"]
    if kind is KindChoice.spk:
        return ["spk"]
    return ["asr", "spk"]


def _context() -> tuple[Settings, ObjectStore]:
    from speechloop.config import get_settings
    from speechloop.storage import open_store

    settings = get_settings()
    return settings, open_store(settings)


def _ingestor(settings: Settings, store: ObjectStore, kind: Kind) -> Ingestor:
    from speechloop.data.ingest import Ingestor, data_dir

    return Ingestor(store, settings.data_bucket, data_dir(settings), kind, settings)


def _batch_table(results: list[IngestResult]) -> Table:
    table = Table(title="Ingested batches", title_justify="left")
    for name, justify in [
        ("kind", "left"),
        ("batch", "left"),
        ("rows in", "right"),
        ("good", "right"),
        ("quarantined", "right"),
        ("by reason", "left"),
    ]:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for result in results:
        for b in result.batches:
            reasons = ", ".join(f"{code} {n}" for code, n in b.reasons.items()) or "-"
            quarantined = f"[yellow]{b.quarantined}[/yellow]" if b.quarantined else "0"
            table.add_row(b.kind, b.batch_id, str(b.rows_in), str(b.good), quarantined, reasons)
    return table


def _quarantine_table(results: list[IngestResult], limit: int) -> Table | None:
    rows = [q for result in results for q in result.quarantined]
    if not rows or limit <= 0:
        return None
    title = "Quarantined rows" + (f" (first {limit} of {len(rows)})" if len(rows) > limit else "")
    table = Table(title=title, title_justify="left")
    table.add_column("kind")
    table.add_column("batch")
    table.add_column("reason")
    table.add_column("problem", overflow="fold")
    for result in results:
        for q in result.quarantined:
            if limit <= 0:
                return table
            table.add_row(result.kind, q.batch_id, q.reason.value, q.message)
            limit -= 1
    return table


@app.command()
def ingest(
    kind: Annotated[KindChoice, typer.Option(help="Which batches: asr, spk or all.")] = (
        KindChoice.all
    ),
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate and report only; write nothing.")
    ] = False,
    commit: Annotated[
        bool, typer.Option("--commit", help="Mark the batches consumed right after ingesting.")
    ] = False,
    run_id: Annotated[
        str | None, typer.Option(help="Run id for the ledger (default: new).")
    ] = None,
    batch: Annotated[
        list[str] | None, typer.Option(help="Only these batch ids (repeatable).")
    ] = None,
    show: Annotated[int, typer.Option(help="How many quarantined rows to list.")] = 20,
) -> None:
    """Validate pending labelled batches into local 16 kHz rows; quarantine bad rows.

    Without --commit the batches are staged: the next run takes them again until a
    consumer commits them (``speechloop data commit``).
    """
    if dry_run and commit:
        err_console.print("[red]error:[/red] --dry-run and --commit exclude each other")
        raise typer.Exit(2)
    if batch and kind is KindChoice.all:
        err_console.print("[red]error:[/red] --batch needs --kind asr or --kind spk")
        raise typer.Exit(2)
    with cli_errors():
        from speechloop.data.ingest import new_run_id

        settings, store = _context()
        run_id = run_id or new_run_id()
        results = []
        for k in _kinds(kind):
            ing = _ingestor(settings, store, k)
            with console.status(f"{k}: looking for batches") as status:

                def progress(batch_id: str, index: int, total: int, k: str = k) -> None:
                    status.update(f"{k}: batch {batch_id} ({index + 1}/{total})")

                result = ing.run(run_id, dry_run=dry_run, batch_ids=batch, on_batch=progress)
            if commit and result.batches:
                ing.commit(result)
            results.append(result)
        _print_ingest(results, dry_run=dry_run, committed=commit, show=show)


def _print_ingest(
    results: list[IngestResult], *, dry_run: bool, committed: bool, show: int
) -> None:
    if not any(r.batches for r in results):
        console.print("No pending batches.")
        return
    console.print(_batch_table(results))
    table = _quarantine_table(results, show)
    if table is not None:
        console.print(table)
    good = sum(len(r.rows) for r in results)
    bad = sum(len(r.quarantined) for r in results)
    for r in results:
        if not r.batches:
            continue
        if dry_run:
            state = "dry run: nothing written"
        elif committed:
            state = "committed"
        else:
            state = f"staged; commit: speechloop data commit --kind {r.kind} --run-id {r.run_id}"
        console.print(f"{r.kind} run {r.run_id}: {len(r.batches)} batch(es), {state}")
    console.print(f"{good} good rows, {bad} quarantined (reports under <kind>/quarantine/)")


@app.command("commit")
def commit_cmd(
    run_id: Annotated[str, typer.Option(help="The run that ingested the batches.")],
    kind: Annotated[KindChoice, typer.Option(help="asr, spk or all.")] = KindChoice.all,
    batch: Annotated[
        list[str] | None, typer.Option(help="Batch ids (default: all the run staged).")
    ] = None,
) -> None:
    """Mark batches consumed by a run (after the work on them succeeded)."""
    with cli_errors():
        settings, store = _context()
        for k in _kinds(kind):
            ing = _ingestor(settings, store, k)
            staged = [s.batch_id for s in ing.ledger.scan() if run_id in s.staged_by]
            targets = batch or [b for b in staged if not ing.ledger.is_committed(b)]
            if not targets:
                console.print(f"{k}: nothing staged by {run_id} to commit")
                continue
            done = ing.commit(run_id, targets)
            console.print(f"{k}: committed {', '.join(done)}")


def _eval_check(settings: Settings, store: ObjectStore, kind: Kind, name: str) -> str:
    """Load (validate and cache locally) one eval set; "ok" or the one-line problem."""
    from speechloop.data.dataset import load_asr_eval_set, load_spk_eval_set
    from speechloop.data.ingest import data_dir

    try:
        if kind == "asr":
            load_asr_eval_set(store, settings.data_bucket, name, data_dir(settings), settings)
        else:
            load_spk_eval_set(store, settings.data_bucket, name, data_dir(settings), settings)
    except SpeechloopError as exc:
        return f"[red]invalid[/red]: {exc}"
    return "[green]valid[/green]"


def _eval_summary(
    settings: Settings, store: ObjectStore, kind: Kind, check: bool
) -> list[tuple[str, str, str]]:
    """(name, size, validity) of each eval set of ``kind``; validity "-" unless ``check``."""
    from speechloop.data.dataset import TRIALS, list_eval_sets

    out = []
    for name in list_eval_sets(store, settings.data_bucket, kind):
        prefix = f"{kind}/eval/{name}"
        data = store.get_bytes(settings.data_bucket, f"{prefix}/manifest.jsonl")
        size = f"{sum(1 for line in data.splitlines() if line.strip())} rows"
        if kind == "spk":
            try:
                trials = store.get_bytes(settings.data_bucket, f"{prefix}/{TRIALS}")
                size += f", {sum(1 for line in trials.splitlines() if line.strip())} trials"
            except SpeechloopError:
                size += ", no trials.txt"
        out.append((name, size, _eval_check(settings, store, kind, name) if check else "-"))
    return out


def _status_table(settings: Settings, store: ObjectStore) -> tuple[Table, list[str]]:
    """The batch table and one summary line per kind ("asr: 2 committed, 1 pending")."""
    from speechloop.data.ledger import Ledger

    table = Table(title=f"Labelled data in {settings.data_bucket}", title_justify="left")
    for name in ("kind", "batch", "state", "staged by", "committed by"):
        table.add_column(name)
    lines = []
    for kind in _kinds(KindChoice.all):
        counts: dict[str, int] = {}
        for s in Ledger(store, settings.data_bucket, kind).scan(owners=True):
            counts[s.state] = counts.get(s.state, 0) + 1
            staged = ", ".join(s.staged_by[-2:]) + (" ..." if len(s.staged_by) > 2 else "")
            table.add_row(kind, s.batch_id, s.state, staged or "-", s.committed_by or "-")
        summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
        lines.append(f"{kind}: {summary or 'no batches'}")
    return table, lines


@app.command()
def status(
    check_eval: Annotated[
        bool,
        typer.Option("--check-eval", help="Validate each golden eval set (and cache it locally)."),
    ] = False,
) -> None:
    """Batches per kind (incomplete, pending, staged, committed) and the golden eval sets."""
    with cli_errors():
        settings, store = _context()
        table, lines = _status_table(settings, store)
        console.print(table)
        for line in lines:
            console.print(line)
        evals = Table(title="Golden eval sets", title_justify="left")
        for name in ("kind", "set", "size", "validation"):
            evals.add_column(name, overflow="fold")
        for kind in _kinds(KindChoice.all):
            for name, size, valid in _eval_summary(settings, store, kind, check_eval):
                evals.add_row(kind, name, size, valid)
        console.print(evals if evals.row_count else "No golden eval sets.")
