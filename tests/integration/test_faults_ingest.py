"""Ingestion and the ledger under network faults, and batches from plain S3 clients
(issue 12, findings 1 and 6): a real moto S3 server process, the fault forwarder in
front of it, real MinioStores (small timeouts, fast retries) pointed at the forwarder.

Producers upload batches straight to the server (our store, boto3, or the minio SDK
without metadata); the consumer ingests and commits through the forwarder while it
refuses, resets, stalls or drops the replies of one kind of request. After every fault:
each batch is committed exactly once, by the run that took it; every good row was
consumed once (none lost, none twice); a re-run finds nothing left, or, after a run that
failed, takes exactly what was not committed and completes.
"""

from __future__ import annotations

import contextlib
import io
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from speechloop.config import Settings
from speechloop.data.ingest import Ingestor, IngestResult
from speechloop.data.ledger import Ledger
from speechloop.errors import Conflict, StoreError, StoreUnavailable
from speechloop.storage.s3 import MinioStore
from tests.integration.conftest import S3Server, unique_bucket
from tests.integration.faultproxy import Action, FaultProxy, Request
from tests.integration.test_faults_registry import STALL_S, proxied_settings, proxied_store
from tests.unit.ingest_support import clip, manifest_bytes

Uploader = Callable[[str, bytes], None]


def boto3_uploader(s3_server: S3Server, bucket: str) -> Uploader:
    """Upload as boto3 does by default (no speechloop checksum metadata)."""
    client = boto3.client(
        "s3",
        endpoint_url=f"http://{s3_server.endpoint}",
        aws_access_key_id=s3_server.access_key,
        aws_secret_access_key=s3_server.secret_key,
        region_name="us-east-1",
    )

    def put(key: str, data: bytes) -> None:
        client.put_object(Bucket=bucket, Key=key, Body=data)

    return put


def minio_uploader(s3_server: S3Server, bucket: str) -> Uploader:
    """Upload with the bare minio SDK, no metadata (as ``mc cp`` does)."""
    client = s3_server.raw_client()

    def put(key: str, data: bytes) -> None:
        client.put_object(bucket, key, io.BytesIO(data), len(data))

    return put


def store_uploader(store: MinioStore, bucket: str) -> Uploader:
    """Upload with speechloop's own store (sha256 metadata)."""

    def put(key: str, data: bytes) -> None:
        store.put_bytes(bucket, key, data)

    return put


def upload_batch(put: Uploader, batch_id: str, n: int = 3) -> list[str]:
    """A clean ASR batch of ``n`` clips, audio first and manifest last; its row ids."""
    rows = [
        {"id": f"{batch_id}-u{i}", "audio": f"u{i}.wav", "text": f"hello number {i}"}
        for i in range(n)
    ]
    for i in range(n):
        put(f"asr/batches/{batch_id}/u{i}.wav", clip(0.5, freq=200.0 + 10 * i))
    put(f"asr/batches/{batch_id}/manifest.jsonl", manifest_bytes(rows))
    return [str(row["id"]) for row in rows]


@dataclass
class Bench:
    """A data bucket, producers writing to it directly, a consumer behind the forwarder."""

    s3_server: S3Server
    proxy: FaultProxy
    bucket: str
    direct: MinioStore
    settings: Settings
    store: MinioStore
    work: Path
    rows: dict[str, list[str]]

    def ingestor(self, name: str = "w") -> Ingestor:
        """A consumer going through the forwarder, with its own work directory."""
        return Ingestor(self.store, self.bucket, self.work / name, "asr", self.settings)

    def ledger(self) -> Ledger:
        """The ledger as seen directly (no faults)."""
        return Ledger(self.direct, self.bucket, "asr")


@pytest.fixture
def bench(s3_server: S3Server, fault_proxy: FaultProxy, tmp_path: Path) -> Bench:
    """Two complete batches: ``ours`` (uploaded by speechloop) and ``plain`` (boto3)."""
    bucket = unique_bucket("data")
    direct = MinioStore.from_settings(s3_server.settings())
    direct.ensure_bucket(bucket)
    settings = proxied_settings(
        s3_server, fault_proxy, data_bucket=bucket, min_audio_s=0.3, max_audio_s=2.0
    )
    rows = {
        "ours": upload_batch(store_uploader(direct, bucket), "ours"),
        "plain": upload_batch(boto3_uploader(s3_server, bucket), "plain"),
    }
    store = proxied_store(settings)
    return Bench(s3_server, fault_proxy, bucket, direct, settings, store, tmp_path, rows)


def assert_consumed_once(bench: Bench, runs: list[IngestResult]) -> None:
    """Every batch committed once, by a run that took it; the rows those runs took for
    the batches they committed are every row exactly once; nothing left to take."""
    ledger = bench.ledger()
    states = {s.batch_id: s.state for s in ledger.scan()}
    assert states == dict.fromkeys(bench.rows, "committed")
    consumed: list[str] = []
    for batch_id in bench.rows:
        owner = ledger.committed_record(batch_id).run_id
        (run,) = [r for r in runs if r.run_id == owner]
        consumed += [row.id for row in run.rows if row.id.startswith(f"{batch_id}-")]
    assert sorted(consumed) == sorted(i for ids in bench.rows.values() for i in ids)
    assert bench.ingestor("after").run().batch_ids == []


# -- plain S3 uploads (finding 1) ---------------------------------------------------------


@pytest.mark.parametrize("uploader", ["boto3", "minio"])
def test_plain_s3_batch_ingested_and_committed_once(
    s3_server: S3Server, s3_settings: Settings, tmp_path: Path, uploader: str
) -> None:
    """A batch uploaded with a plain S3 client (no speechloop metadata) is ingested and
    committed once; the next run takes nothing."""
    store = MinioStore.from_settings(s3_settings)
    bucket = s3_settings.data_bucket
    make = boto3_uploader if uploader == "boto3" else minio_uploader
    ids = upload_batch(make(s3_server, bucket), "plain", n=4)
    settings = s3_settings.model_copy(update={"min_audio_s": 0.3, "max_audio_s": 2.0})
    run = Ingestor(store, bucket, tmp_path / "w", "asr", settings).run()
    assert run.batch_ids == ["plain"] and sorted(r.id for r in run.rows) == sorted(ids)
    assert Ingestor(store, bucket, tmp_path / "w", "asr", settings).commit(run) == ["plain"]
    ledger = Ledger(store, bucket, "asr")
    assert [(s.batch_id, s.state) for s in ledger.scan()] == [("plain", "committed")]
    assert ledger.committed_record("plain").run_id == run.run_id
    assert Ingestor(store, bucket, tmp_path / "w2", "asr", settings).run().batch_ids == []


def test_plain_s3_batch_changed_after_staging_is_refused(
    s3_server: S3Server, s3_settings: Settings, tmp_path: Path
) -> None:
    """A plain-S3 batch whose manifest really changed after it was staged is not
    committed (the message says it changed); a new run takes the new rows, commits once."""
    store = MinioStore.from_settings(s3_settings)
    bucket = s3_settings.data_bucket
    put = boto3_uploader(s3_server, bucket)
    upload_batch(put, "moving", n=2)
    settings = s3_settings.model_copy(update={"min_audio_s": 0.3, "max_audio_s": 2.0})
    first = Ingestor(store, bucket, tmp_path / "w", "asr", settings).run()
    assert first.batch_ids == ["moving"]
    new_ids = upload_batch(put, "moving", n=3)
    with pytest.raises(Conflict, match=r"moving.*changed"):
        Ingestor(store, bucket, tmp_path / "w", "asr", settings).commit(first)
    second = Ingestor(store, bucket, tmp_path / "w", "asr", settings).run()
    assert sorted(r.id for r in second.rows) == sorted(new_ids)
    assert Ingestor(store, bucket, tmp_path / "w", "asr", settings).commit(second) == ["moving"]
    assert Ledger(store, bucket, "asr").committed_record("moving").run_id == second.run_id


def test_audio_replaced_after_staging_is_refused(bench: Bench) -> None:
    """A producer replaces one audio object of a staged batch (manifest untouched): the
    batch really changed, so the commit refuses it naming the batch, and the next run
    takes the new audio (otherwise the replacement would never be trained on)."""
    ingestor = bench.ingestor()
    run = ingestor.run()
    bench.direct.put_bytes(bench.bucket, "asr/batches/ours/u1.wav", clip(1.5, freq=440.0))
    with pytest.raises(Conflict, match=r"ours.*changed"):
        ingestor.commit(run)
    assert bench.ingestor("again").run().batch_ids == ["ours"]


# -- one fault on one kind of request -----------------------------------------------------

TARGETS = {
    "listing": "LIST *",
    "manifest-read": "GET */manifest.jsonl",
    "audio-read": "GET */u1.wav",
    "stat": "HEAD *",
    "claim-write": "PUT */staged/*",
    "claim-read": "GET */staged/*",
    "report-write": "PUT */quarantine/*",
    "commit-write": "PUT */committed.json",
}


@pytest.mark.parametrize("target", sorted(TARGETS))
@pytest.mark.parametrize("action", ["refuse", "reset", "stall", "drop_reply"])
def test_one_fault_during_ingest_and_commit(bench: Bench, action: Action, target: str) -> None:
    """One fault on the first matching request of an ingest-and-commit run: the run and
    its commit complete, both batches are consumed exactly once."""
    bench.proxy.add_rule(TARGETS[target], action, seconds=STALL_S)
    ingestor = bench.ingestor()
    run = ingestor.run()
    assert sorted(run.batch_ids) == sorted(bench.rows)
    assert sorted(ingestor.commit(run)) == sorted(bench.rows)
    assert bench.proxy.count(action) == 1, f"the {action} fault on {target} never fired"
    assert_consumed_once(bench, [run])


@pytest.mark.parametrize("target", ["manifest-read", "audio-read", "claim-read"])
def test_reply_broken_midway_during_ingest(bench: Bench, target: str) -> None:
    """A reply cut off mid-body (twice) while reading a manifest, an audio object or a
    claim: the run and its commit complete, every row consumed once, none quarantined."""
    bench.proxy.add_rule(TARGETS[target], "truncate_reply", times=2)
    ingestor = bench.ingestor()
    run = ingestor.run()
    assert run.quarantined == []
    assert sorted(ingestor.commit(run)) == sorted(bench.rows)
    assert bench.proxy.count("truncate_reply") == 2
    assert_consumed_once(bench, [run])


@pytest.mark.parametrize("target", ["audio-read", "commit-write"])
@pytest.mark.parametrize("action", ["error", "applied_error"])
def test_gateway_error_during_ingest_and_commit(bench: Bench, action: Action, target: str) -> None:
    """A load balancer's HTML 502 instead of the server's answer, before or after the
    server applied the request: ingestion and commit complete, each batch consumed once."""
    test_one_fault_during_ingest_and_commit(bench, action, target)


# -- faults that outlast the retries: the run fails, a re-run completes ---------------------


@pytest.mark.parametrize("action", ["refuse", "reset", "drop_reply"])
def test_ingest_failing_midway_then_rerun(bench: Bench, action: Action) -> None:
    """Every read of one audio object of ``plain`` fails: the run fails with a store
    error (the row is not quarantined as bad data); with the fault gone a re-run takes
    both batches and commits them once."""
    bench.proxy.add_rule("GET asr/batches/plain/u1.wav", action, times=None)
    with pytest.raises(StoreError):
        bench.ingestor().run()
    bench.proxy.clear_rules()
    ingestor = bench.ingestor()
    run = ingestor.run()
    assert sorted(run.batch_ids) == sorted(bench.rows) and run.quarantined == []
    ingestor.commit(run)
    assert_consumed_once(bench, [run])


@pytest.mark.parametrize("action", ["refuse", "reset"])
def test_commit_failing_midway_then_rerun(bench: Bench, action: Action) -> None:
    """Every commit write of ``plain`` fails: ``ours`` is committed, ``plain`` is not
    and the commit says so; the next run takes ``plain`` only and commits it once."""
    bench.proxy.add_rule("PUT asr/ledger/plain/committed.json", action, times=None)
    ingestor = bench.ingestor()
    first = ingestor.run()
    with pytest.raises(StoreError):
        ingestor.commit(first)
    states = {s.batch_id: s.state for s in bench.ledger().scan()}
    assert states == {"ours": "committed", "plain": "staged"}
    bench.proxy.clear_rules()
    second = bench.ingestor("w2").run()
    assert second.batch_ids == ["plain"]
    assert bench.ingestor("w2").commit(second) == ["plain"]
    assert_consumed_once(bench, [first, second])


def test_commit_reply_lost_once_per_batch(bench: Bench) -> None:
    """The first commit write of each batch is applied but its reply lost: the retry
    recognises the run's own record and the commit succeeds; nothing is consumed twice."""
    dropped: set[str] = set()

    def first_per_key(request: Request) -> bool:
        if request.method != "PUT" or not request.key.endswith("/committed.json"):
            return False
        fresh = request.key not in dropped
        dropped.add(request.key)
        return fresh

    bench.proxy.add_rule(first_per_key, "drop_reply", times=None)
    ingestor = bench.ingestor()
    run = ingestor.run()
    assert sorted(ingestor.commit(run)) == sorted(bench.rows)
    assert bench.proxy.count("drop_reply") == 2
    assert_consumed_once(bench, [run])


def test_commit_replies_all_lost(bench: Bench) -> None:
    """Every reply to a commit write is lost, retries included: the commit may fail with
    a store error, but the records it wrote are the run's own; committing again by the
    same run succeeds, and nothing is consumed twice."""
    bench.proxy.add_rule("PUT */committed.json", "drop_reply", times=None)
    ingestor = bench.ingestor()
    run = ingestor.run()
    with contextlib.suppress(StoreError):
        ingestor.commit(run)
    bench.proxy.clear_rules()
    assert sorted(ingestor.commit(run)) == sorted(bench.rows)
    assert_consumed_once(bench, [run])


@pytest.mark.parametrize("seed", [1, 2])
def test_random_faults_during_ingest_and_commit(bench: Bench, seed: int) -> None:
    """About one request in seven refused, reset or stripped of its reply (seeded), with
    6 retries: two consumers ingest and commit in turn; each batch is consumed once."""
    rng = random.Random(seed)
    actions: tuple[Action, ...] = ("refuse", "reset", "drop_reply")
    for action in actions:
        bench.proxy.add_rule(lambda _r: rng.random() < 0.06, action, times=None)
    settings = bench.settings.model_copy(update={"store_retries": 6})
    store = proxied_store(settings)
    runs = []
    for name in ("a", "b"):
        ingestor = Ingestor(store, bench.bucket, bench.work / name, "asr", settings)
        run = ingestor.run()
        runs.append(run)
        with contextlib.suppress(Conflict):  # b took what a had not committed yet: none
            ingestor.commit(run)
    assert sorted(runs[0].batch_ids) == sorted(bench.rows) and runs[1].batch_ids == []
    assert bench.proxy.count() - bench.proxy.count("pass") >= 3, "too few faults to mean much"
    bench.proxy.clear_rules()
    assert_consumed_once(bench, runs)


def test_second_consumer_with_lost_replies(bench: Bench) -> None:
    """Two runs took the same batches; both commit while commit replies are lost: each
    batch is committed by the first only, and the second is told who has it."""
    bench.proxy.add_rule("PUT */committed.json", "drop_reply", times=3)
    a, b = bench.ingestor("a"), bench.ingestor("b")
    run_a, run_b = a.run(), b.run()
    outcomes: dict[str, Any] = {}
    for name, ingestor, run in (("a", a, run_a), ("b", b, run_b)):
        try:
            outcomes[name] = ingestor.commit(run)
        except Conflict as exc:
            outcomes[name] = str(exc)
    assert sorted(outcomes["a"]) == sorted(bench.rows)
    assert "already committed by run" in outcomes["b"]
    assert_consumed_once(bench, [run_a, run_b])


def test_racing_consumers_through_lost_replies(bench: Bench) -> None:
    """Two consumers ingest and commit the same batches at once, each through its own
    store, while one reply in eight is lost: each batch is committed by exactly one of
    them (the other is told who has it), every row is consumed once."""
    rng = random.Random(11)
    bench.proxy.add_rule(lambda _r: rng.random() < 0.125, "drop_reply", times=None)
    settings = bench.settings.model_copy(update={"store_retries": 6})
    barrier = threading.Barrier(2)
    runs: dict[str, IngestResult] = {}
    lost: dict[str, str] = {}
    errors: list[Exception] = []

    def consume(name: str) -> None:
        ingestor = Ingestor(
            proxied_store(settings), bench.bucket, bench.work / name, "asr", settings
        )
        try:
            barrier.wait()
            runs[name] = ingestor.run(run_id=f"run-{name}")
            ingestor.commit(runs[name])
        except Conflict as exc:
            lost[name] = str(exc)
        except Exception as exc:  # noqa: BLE001 - asserted empty in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=consume, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert all("already committed by run" in why for why in lost.values())
    assert bench.proxy.count("drop_reply") > 0
    bench.proxy.clear_rules()
    assert_consumed_once(bench, list(runs.values()))


# -- a dead or paused store (finding 6) ---------------------------------------------------


@pytest.mark.timeout(60)
def test_dead_store_fails_with_one_clear_error(bench: Bench) -> None:
    """Nothing listens at the endpoint: ingestion raises StoreUnavailable naming the
    endpoint, and the ledger is untouched."""
    bench.proxy.stop()
    with pytest.raises(StoreUnavailable, match=bench.proxy.endpoint.replace(".", r"\.")):
        bench.ingestor().run()
    assert {s.state for s in bench.ledger().scan()} == {"pending"}


@pytest.mark.timeout(60)
def test_paused_store_fails_after_the_configured_attempts(bench: Bench) -> None:
    """The server accepts connections but never answers (paused): with the timeouts and
    retries of the settings, ingestion gives up after ``store_retries + 1`` attempts of
    its first request with StoreUnavailable naming the endpoint (the timeouts are
    settings; the pytest timeout only guards against a hang)."""
    from speechloop.storage import open_store

    missing = {"store_connect_timeout_s", "store_read_timeout_s"} - set(Settings.model_fields)
    assert not missing, f"store timeouts are not settings yet: {sorted(missing)}"
    bench.proxy.add_rule("* *", "stall", times=None, seconds=120)
    store = open_store(bench.settings)
    ingestor = Ingestor(store, bench.bucket, bench.work / "p", "asr", bench.settings)
    with pytest.raises(StoreUnavailable, match=bench.proxy.endpoint.replace(".", r"\.")):
        ingestor.run()
    assert bench.proxy.count("stall") == bench.settings.store_retries + 1
    assert {s.state for s in bench.ledger().scan()} == {"pending"}
