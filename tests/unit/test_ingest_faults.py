"""Ingestion survives a crash at every step, and two consumers cannot both commit a batch.

Faults are injected by monkeypatching the step functions of the real code (no mocks of
the store or the audio stack): the crashed run raises, a fresh run follows, and the rows
consumed overall must be exactly the batches' good rows, once each.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from speechloop.config import Settings
from speechloop.data import ingest
from speechloop.data.ingest import Ingestor, IngestResult
from speechloop.data.ledger import Ledger
from speechloop.errors import Conflict, StoreUnavailable
from speechloop.storage.local import LocalStore
from tests.unit.ingest_support import BUCKET, clip, good_asr_batch, put_batch

SETTINGS = Settings(min_audio_s=0.3, max_audio_s=2.0)


class Boom(RuntimeError):
    """The injected crash."""


def crash_while_writing_audio(mp: pytest.MonkeyPatch, store: LocalStore) -> None:
    real = ingest._materialise_row
    calls = itertools.count()

    def flaky(*args, **kwargs):
        if next(calls) == 2:
            raise Boom("crash after two rows' audio")
        return real(*args, **kwargs)

    mp.setattr(ingest, "_materialise_row", flaky)


def crash_after_validation(mp: pytest.MonkeyPatch, store: LocalStore) -> None:
    mp.setattr(ingest, "_write_local_outputs", _raise)


def crash_after_local_rows(mp: pytest.MonkeyPatch, store: LocalStore) -> None:
    mp.setattr(ingest, "_publish_report", _raise)


def crash_before_staging(mp: pytest.MonkeyPatch, store: LocalStore) -> None:
    mp.setattr(Ledger, "stage", _raise)


def crash_before_commit(mp: pytest.MonkeyPatch, store: LocalStore) -> None:
    mp.setattr(Ingestor, "commit", _raise)  # the consumer dies after ingesting


def crash_during_commit(mp: pytest.MonkeyPatch, store: LocalStore) -> None:
    real = store.put_bytes

    def put(bucket: str, key: str, data: bytes, **kwargs):
        if key.endswith("b2/committed.json"):
            raise Boom("crash while committing b2")
        return real(bucket, key, data, **kwargs)

    mp.setattr(store, "put_bytes", put)


def _raise(*_args: object, **_kwargs: object) -> None:
    raise Boom("injected crash")


FAULTS: list[Callable[[pytest.MonkeyPatch, LocalStore], None]] = [
    crash_while_writing_audio,
    crash_after_validation,
    crash_after_local_rows,
    crash_before_staging,
    crash_before_commit,
    crash_during_commit,
]


def two_batches(store: LocalStore) -> None:
    """b1: three good rows and one too short; b2: three good rows."""
    rows: list[dict[str, object] | str] = [
        {"id": f"b1-u{i}", "audio": f"u{i}.wav", "text": f"row {i}"} for i in range(3)
    ]
    rows.append({"id": "b1-short", "audio": "s.wav", "text": "short"})
    audio = {f"u{i}.wav": clip(0.5, freq=300.0 + i) for i in range(3)} | {"s.wav": clip(0.1)}
    put_batch(store, "asr", "b1", rows, audio)
    good_asr_batch(store, "b2")


def signature(result: IngestResult, work: Path) -> list[tuple[str, str, str, bytes]]:
    return [
        (r.batch_id, r.id, str(r.audio.relative_to(work)), r.audio.read_bytes())
        for r in result.rows
    ]


@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: f.__name__)
def test_crash_at_any_step_then_rerun_consumes_every_row_once(
    fault: Callable[[pytest.MonkeyPatch, LocalStore], None], tmp_path: Path
) -> None:
    """After a crash at ``fault``, the next run yields the uncommitted batches' rows, once."""
    store = LocalStore(tmp_path / "store", fsync=False)
    two_batches(store)
    reference = Ingestor(store, BUCKET, tmp_path / "ref", "asr", SETTINGS).run()
    work = tmp_path / "work"
    with pytest.MonkeyPatch.context() as mp:
        fault(mp, store)
        ing = Ingestor(store, BUCKET, work, "asr", SETTINGS, workers=2)
        with pytest.raises(Boom):
            ing.commit(ing.run())
    ledger = Ledger(store, BUCKET, "asr")
    committed_early = [s.batch_id for s in ledger.scan() if s.state == "committed"]
    assert committed_early == (["b1"] if fault is crash_during_commit else [])

    rerun_ing = Ingestor(store, BUCKET, work, "asr", SETTINGS, workers=2)
    rerun = rerun_ing.run()
    left = [b for b in ("b1", "b2") if b not in committed_early]
    assert rerun.batch_ids == left
    expected = [s for s in signature(reference, tmp_path / "ref") if s[0] in left]
    assert signature(rerun, work) == expected
    assert [q.row_id for q in rerun.quarantined] == (["b1-short"] if "b1" in left else [])
    assert rerun_ing.commit(rerun) == left
    assert [s.state for s in ledger.scan()] == ["committed", "committed"]
    assert Ingestor(store, BUCKET, work, "asr", SETTINGS).run().rows == []


def test_racing_commits_have_exactly_one_winner(tmp_path: Path) -> None:
    """Two consumers that ingested the same batch commit at once: one wins, one gets Conflict."""
    store = LocalStore(tmp_path / "store", fsync=False)
    for round_no in range(5):
        batch = f"race{round_no}"
        good_asr_batch(store, batch, n=1)
        runs = [
            Ingestor(store, BUCKET, tmp_path / f"w{i}", "asr", SETTINGS).run(batch_ids=[batch])
            for i in range(2)
        ]
        barrier = threading.Barrier(2)
        outcome: dict[str, str] = {}

        def commit(
            result: IngestResult,
            barrier: threading.Barrier = barrier,
            outcome: dict[str, str] = outcome,
        ) -> None:
            ing = Ingestor(store, BUCKET, tmp_path / "any", "asr", SETTINGS)
            barrier.wait()
            try:
                ing.commit(result)
                outcome[result.run_id] = "won"
            except Conflict:
                outcome[result.run_id] = "lost"

        threads = [threading.Thread(target=commit, args=(r,)) for r in runs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert sorted(outcome.values()) == ["lost", "won"]
        winner = next(run for run, what in outcome.items() if what == "won")
        assert Ledger(store, BUCKET, "asr").committed_record(batch).run_id == winner


def test_a_run_cannot_commit_what_it_did_not_stage(tmp_path: Path) -> None:
    """Committing a batch under a run id that never staged it is a Conflict naming both."""
    store = LocalStore(tmp_path / "store", fsync=False)
    good_asr_batch(store, "b1", n=1)
    ing = Ingestor(store, BUCKET, tmp_path / "w", "asr", SETTINGS)
    ing.run(run_id="run-a")
    with pytest.raises(Conflict, match="run 'run-b' did not stage asr batch 'b1'"):
        ing.commit("run-b", ["b1"])
    assert ing.commit("run-a", ["b1"]) == ["b1"]


def test_two_runs_sharing_a_work_dir_at_once_agree(tmp_path: Path) -> None:
    """Two concurrent runs on one work dir (CLI and flow, say) get identical, intact rows."""
    store = LocalStore(tmp_path / "store", fsync=False)
    two_batches(store)
    results: list[IngestResult] = []
    barrier = threading.Barrier(2)

    def run() -> None:
        ing = Ingestor(store, BUCKET, tmp_path / "work", "asr", SETTINGS, workers=2)
        barrier.wait()
        results.append(ing.run())

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == 2 and results[0].rows == results[1].rows
    assert len(results[0].rows) == 6
    for row in results[0].rows:
        assert row.audio.is_file() and row.audio.stat().st_size > 44


class _DeadForAudio(LocalStore):
    """A local store whose audio reads fail as an unreachable S3 store's do, counted."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.audio_reads = 0
        self._guard = threading.Lock()

    def get_bytes(self, bucket: str, key: str) -> bytes:
        if key.endswith(".wav"):
            with self._guard:
                self.audio_reads += 1
            raise StoreUnavailable(f"object store unreachable (get {bucket}/{key})")
        return super().get_bytes(bucket, key)


def test_a_store_fault_stops_the_batch_without_trying_every_row(tmp_path: Path) -> None:
    """When the store dies mid-batch, rows not yet started are skipped: a 40-row batch on
    2 threads makes at most a few audio reads (not 40, each waiting out its own time-out),
    the run raises StoreUnavailable, and the batch stays pending."""
    store = _DeadForAudio(tmp_path / "store")
    good_asr_batch(store, "b1", n=40)
    ing = Ingestor(store, BUCKET, tmp_path / "work", "asr", SETTINGS, workers=2)
    with pytest.raises(StoreUnavailable, match="unreachable"):
        ing.run()
    assert 1 <= store.audio_reads <= 4
    assert [s.state for s in ing.ledger.scan()] == ["pending"]
