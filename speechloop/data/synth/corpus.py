"""Writing a planned corpus to an object store in the contract layout.

Audio is rendered by a pool of worker processes (``spec.workers``; 1 renders inline),
forked after the shared noise banks are built, and
uploaded in plan order. Worker processes are forked (not spawned), so callers need no
``if __name__ == "__main__"`` guard. Within each set the audio goes first, then ``trials.txt``
(speaker evaluation sets), then ``manifest.jsonl`` last, so that a set is complete
exactly when its manifest exists. A set whose manifest already exists is left alone
(reported as skipped) unless ``overwrite`` is set: re-running a spec is idempotent.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import get_context

from speechloop.data.synth.plan import PlannedSet, plan_corpus
from speechloop.data.synth.render import Rendered, RenderJob, render, warm_up
from speechloop.data.synth.spec import CorpusSpec
from speechloop.storage.base import ObjectStore

_MAX_CHUNK = 16


@dataclass(frozen=True)
class CorpusReport:
    """What a generation run wrote."""

    bucket: str
    asr_batches: tuple[str, ...]
    spk_batches: tuple[str, ...]
    eval_sets: tuple[str, ...]
    skipped: tuple[str, ...]
    asr_utterances: int
    spk_utterances: int
    eval_utterances: int
    trials: int
    audio_seconds: float
    seconds: float

    @property
    def utterances(self) -> int:
        """Utterances rendered and written in this run."""
        return self.asr_utterances + self.spk_utterances + self.eval_utterances

    @property
    def utterances_per_s(self) -> float:
        """Generation rate of this run (wall clock, including uploads)."""
        return self.utterances / self.seconds if self.seconds > 0 else 0.0


def generate_corpus(
    store: ObjectStore,
    bucket: str,
    spec: CorpusSpec,
    *,
    progress: bool = False,
    overwrite: bool = False,
) -> CorpusReport:
    """Render the corpus ``spec`` describes and write it to ``bucket`` of ``store``."""
    started = time.perf_counter()
    store.ensure_bucket(bucket)
    todo: list[PlannedSet] = []
    skipped: list[str] = []
    for planned in plan_corpus(spec):
        if not overwrite and store.exists(bucket, f"{planned.prefix}/manifest.jsonl"):
            skipped.append(planned.prefix)
        else:
            todo.append(planned)
    jobs = [row.job for planned in todo for row in planned.rows]
    warm_up(jobs)
    audio_s = 0.0
    # workers are forked before the progress bar starts its refresh thread
    with (
        _rendered(jobs, spec.workers) as results,
        _progress_bar(len(jobs), enabled=progress) as advance,
    ):
        for planned in todo:
            for row in planned.rows:
                rendered = next(results)
                store.put_bytes(bucket, f"{planned.prefix}/{row.audio}", rendered.data)
                audio_s += rendered.duration_s
                advance(planned.prefix)
            _write_index(store, bucket, planned)
    return _report(bucket, todo, skipped, audio_s, time.perf_counter() - started)


def _write_index(store: ObjectStore, bucket: str, planned: PlannedSet) -> None:
    """Write a set's trials (speaker evaluation sets) and then, last, its manifest."""
    if planned.trials:
        lines = "".join(
            f"{t.enrol} {t.test} {'target' if t.target else 'nontarget'}\n" for t in planned.trials
        )
        store.put_bytes(bucket, f"{planned.prefix}/trials.txt", lines.encode())
    manifest = "".join(
        json.dumps(row.manifest_row(planned.kind), ensure_ascii=False) + "\n"
        for row in planned.rows
    )
    store.put_bytes(bucket, f"{planned.prefix}/manifest.jsonl", manifest.encode())


@contextmanager
def _rendered(jobs: list[RenderJob], workers: int) -> Iterator[Iterator[Rendered]]:
    """Rendered audio for ``jobs`` in order, from a process pool when workers > 1.

    The pool is shut down (pending work cancelled) when the block exits, also on error.
    """
    if workers <= 1 or len(jobs) < 2 * workers:
        yield map(render, jobs)
        return
    chunk = max(1, min(_MAX_CHUNK, len(jobs) // (workers * 4)))
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("fork"))
    try:
        yield pool.map(render, jobs, chunksize=chunk)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@contextmanager
def _progress_bar(total: int, *, enabled: bool) -> Iterator[Callable[[str], None]]:
    """A rich progress bar over ``total`` utterances; yields its advance function."""
    if not enabled:
        yield lambda _label: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()
    ) as progress:
        task = progress.add_task("synthesising", total=total)
        yield lambda label: progress.update(task, advance=1, description=label)


def _report(
    bucket: str, done: list[PlannedSet], skipped: list[str], audio_s: float, seconds: float
) -> CorpusReport:
    """Summarise the sets written in this run."""

    def batch_ids(kind: str) -> tuple[str, ...]:
        return tuple(s.prefix.rsplit("/", 1)[1] for s in done if s.kind == kind and not s.is_eval)

    return CorpusReport(
        bucket=bucket,
        asr_batches=batch_ids("asr"),
        spk_batches=batch_ids("spk"),
        eval_sets=tuple(s.prefix for s in done if s.is_eval),
        skipped=tuple(skipped),
        asr_utterances=sum(len(s.rows) for s in done if s.kind == "asr" and not s.is_eval),
        spk_utterances=sum(len(s.rows) for s in done if s.kind == "spk" and not s.is_eval),
        eval_utterances=sum(len(s.rows) for s in done if s.is_eval),
        trials=sum(len(s.trials) for s in done),
        audio_seconds=round(audio_s, 2),
        seconds=round(seconds, 3),
    )
