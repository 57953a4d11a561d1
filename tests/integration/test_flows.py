"""The Prefect flows on Prefect's real temporary server, the S3 server process, the seed
models and a small synthetic corpus.

One story, in order (each test builds on the state the previous ones left):

1. a recorded MinIO bucket notification, posted to the events adapter over HTTP, becomes
   ``speechloop.batch.complete`` events, and the ``retrain-spk`` trigger of prefect.yaml
   schedules a retraining once its threshold of batches is reached;
2. ``retrain-spk`` on new voices (voices the seed never heard): the candidate is better
   on the golden set and passes the guard on the demo preset's unseen voices; promoted,
   deployed (alias), voiceprints re-enrolled, the decision is a Prefect artifact linked
   from the registry history, the ledger committed;
3. a second run finds no new data and changes nothing;
4. ``evaluate`` scores production on the golden set;
5. ``rollback`` serves the seed again;
6. ``retrain-asr`` on mislabelled rows (transcripts shifted between clips): no better
   than production, rejected, recorded, not deployed, its batches consumed;
7. no batch lost or consumed twice.

The gate runs at 80% confidence (margin 0.005, the default) here: the golden set has
8 speakers, so a 95% interval over speakers is wider than a short CPU fine-tune's gain.
Prefect runs here, so nothing is skipped.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from pydantic import SecretStr

from speechloop.config import Settings, get_settings
from speechloop.context import AppContext, build_context
from speechloop.data.ledger import Ledger
from speechloop.data.manifest import Kind
from speechloop.data.synth import CorpusSpec, generate_corpus
from speechloop.loop.config import RetrainOptions
from tests.integration.conftest import S3Server, free_port, unique_bucket

ROOT = Path(__file__).resolve().parents[2]

#: A notification as MinIO's webhook target posts it (object keys URL-encoded), for the
#: manifest of a speaker batch and, in the same body, one audio file of it (ignored).
MINIO_BODY: dict[str, Any] = {
    "EventName": "s3:ObjectCreated:Put",
    "Key": "speech-data/spk/batches/new-0001/manifest.jsonl",
    "Records": [
        {
            "eventVersion": "2.0",
            "eventSource": "minio:s3",
            "awsRegion": "",
            "eventTime": "2026-12-01T05:00:00.000Z",
            "eventName": "s3:ObjectCreated:Put",
            "userIdentity": {"principalId": "minioadmin"},
            "requestParameters": {
                "principalId": "minioadmin",
                "region": "",
                "sourceIPAddress": "10.0.0.7",
            },
            "responseElements": {
                "x-amz-request-id": "187D2A3A5B9C0F21",
                "x-minio-origin-endpoint": "http://10.0.0.5:9000",
            },
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": "Config",
                "bucket": {
                    "name": "speech-data",
                    "ownerIdentity": {"principalId": "minioadmin"},
                    "arn": "arn:aws:s3:::speech-data",
                },
                "object": {
                    "key": "spk%2Fbatches%2Fnew-0001%2Fmanifest.jsonl",
                    "size": 9321,
                    "eTag": "0f343b0931126a20f133d67c2b018a3b",
                    "contentType": "application/octet-stream",
                    "userMetadata": {"content-type": "application/octet-stream"},
                    "sequencer": "187D2A3A5BA6D3C4",
                },
            },
            "source": {
                "host": "10.0.0.7",
                "port": "",
                "userAgent": "MinIO (linux; amd64) minio-go/v7.0.70",
            },
        },
        {
            "eventVersion": "2.0",
            "eventSource": "minio:s3",
            "awsRegion": "",
            "eventTime": "2026-12-01T04:59:59.000Z",
            "eventName": "s3:ObjectCreated:Put",
            "userIdentity": {"principalId": "minioadmin"},
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": "Config",
                "bucket": {
                    "name": "speech-data",
                    "ownerIdentity": {"principalId": "minioadmin"},
                    "arn": "arn:aws:s3:::speech-data",
                },
                "object": {
                    "key": "spk%2Fbatches%2Fnew-0001%2Fa%2F0001.flac",
                    "size": 40211,
                    "eTag": "9b2cf535f27731c974343645a3985328",
                    "sequencer": "187D2A3A5B0E77A1",
                },
            },
        },
    ],
}


def _options(**changes: Any) -> RetrainOptions:
    """A short CPU run with the test gate (80% confidence, the default margin 0.005)."""
    return RetrainOptions.model_validate({"small": True, "margin": 0.005, "confidence": 0.8,
                                          **changes})  # fmt: skip


@dataclass
class World:
    """What the story shares: the context, the corpus, the seed's registry version."""

    ctx: AppContext
    settings: Settings
    spk_seed: str
    asr_batches: list[str]
    spk_batches: list[str]
    enrolled: str


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[str]:
    """Prefect's real temporary server (one per session); yields its API URL."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield str(PREFECT_API_URL.value())


@pytest.fixture(scope="module")
def world(
    prefect_server: str, s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    """Settings on the S3 server (fresh buckets), the corpus, the spk seed in production."""
    work = tmp_path_factory.mktemp("flows-work")
    settings = s3_server.settings(
        data_bucket=unique_bucket("data"), models_bucket=unique_bucket("models"), work_dir=work
    )
    env = {
        "SPEECHLOOP_STORE": "s3://", "SPEECHLOOP_S3_ENDPOINT": settings.s3_endpoint,
        "SPEECHLOOP_S3_ACCESS_KEY": s3_server.access_key,
        "SPEECHLOOP_S3_SECRET_KEY": s3_server.secret_key,
        "SPEECHLOOP_DATA_BUCKET": settings.data_bucket,
        "SPEECHLOOP_MODELS_BUCKET": settings.models_bucket, "SPEECHLOOP_WORK_DIR": str(work),
        "SPEECHLOOP_STORE_RETRIES": "2", "SPEECHLOOP_STORE_BACKOFF_S": "0.01",
        "SPEECHLOOP_DEPLOYER": "embedded",
    }  # fmt: skip
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        mp.delenv("SPEECHLOOP_ASR_VERSION", raising=False)
        mp.delenv("SPEECHLOOP_SPK_VERSION", raising=False)
        get_settings.cache_clear()
        ctx = build_context()
        ctx.store.ensure_bucket(settings.data_bucket)
        yield _populate(ctx, get_settings())
    get_settings.cache_clear()


def _populate(ctx: AppContext, settings: Settings) -> World:
    """New voices and names (held out from the seeds), two batches of each kind."""
    from speechloop.publishing import publish_seed

    spec = CorpusSpec.preset("demo").updated({
        "n_voices_heldout": 8, "pool": "heldout", "batches": 2, "batch_prefix": "new",
        "spk_per_batch": 80, "asr_per_batch": 30, "spk_eval_utts": 10,
        "asr_eval_golden": 30, "asr_eval_seen": 0,
    })  # fmt: skip
    report = generate_corpus(ctx.store, settings.data_bucket, spec, progress=False)
    for batch_id in report.asr_batches:
        _mislabel(ctx, settings.data_bucket, f"asr/batches/{batch_id}/manifest.jsonl")
    seed = publish_seed(ctx, "spk").version
    enrolled = "alice"
    audio_key = next(
        i.key for i in ctx.store.list(settings.data_bucket, "spk/eval/golden/")
        if not i.key.endswith((".jsonl", ".txt"))
    )  # fmt: skip
    audio = ctx.store.get_bytes(settings.data_bucket, audio_key)
    ctx.voiceprints.enroll(ctx.speaker_embedder(), enrolled, [audio], [audio_key])
    return World(ctx, settings, seed, list(report.asr_batches), list(report.spk_batches), enrolled)


def _mislabel(ctx: AppContext, bucket: str, key: str) -> None:
    """Shift every row's transcript (and its hotwords) to the next clip of the batch."""
    rows = [json.loads(line) for line in ctx.store.get_bytes(bucket, key).decode().splitlines()]
    labels = [(r["text"], r.get("hotwords", [])) for r in rows]
    for row, (text, hotwords) in zip(rows, labels[1:] + labels[:1], strict=True):
        row["text"], row["hotwords"] = text, hotwords
    body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    ctx.store.put_bytes(bucket, key, body.encode())


def _production(world: World, kind: str) -> str:
    alias = world.ctx.registry.get_alias(kind, "production")
    assert alias is not None, f"{kind} has no production version"
    return alias.version


def _history(world: World, kind: str) -> list[dict[str, Any]]:
    return world.ctx.registry.history(kind)


def _artifact(key: str) -> Any:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
        )
    return found[0] if found else None


# -- 1. events and the trigger -------------------------------------------------------


@pytest.fixture
def events_url(prefect_server: str) -> Iterator[str]:
    """The events adapter served by uvicorn on a loopback port (a real HTTP server)."""
    import uvicorn

    from flows.events import EventsSettings, make_app

    port = free_port()
    app = make_app(EventsSettings(prefect_api_url=prefect_server, token=SecretStr("s3cret")))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_minio_notification_becomes_an_event_and_the_trigger_schedules_a_retrain(
    world: World, events_url: str, prefect_server: str
) -> None:
    """Posting a recorded notification emits one event per new manifest (audio ignored);
    the retrain-spk trigger from prefect.yaml schedules a run at its threshold, not before."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.deployments.runner import RunnerDeployment
    from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger

    from flows.retrain import retrain_spk

    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    entry = next(d for d in spec["deployments"] if d["name"] == "retrain-spk")
    threshold = entry["triggers"][0]["threshold"]
    trigger = DeploymentEventTrigger(**entry["triggers"][0])
    deployment = retrain_spk.to_deployment(name=f"trigger-{uuid.uuid4().hex[:6]}",
                                           triggers=[trigger])  # fmt: skip
    assert isinstance(deployment, RunnerDeployment)
    deployment_id = deployment.apply()
    assert isinstance(deployment_id, uuid.UUID)

    def scheduled() -> int:
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
            )
        return len(runs)

    refused = httpx.post(f"{events_url}/minio", json=MINIO_BODY)
    assert refused.status_code == 401
    headers = {"Authorization": "Bearer s3cret"}
    for number in range(1, threshold + 1):
        body = json.loads(json.dumps(MINIO_BODY).replace("new-0001", f"new-{number:04d}"))
        reply = httpx.post(f"{events_url}/minio", json=body, headers=headers)
        assert reply.status_code == 200, reply.text
        assert reply.json() == {"emitted": [f"spk/new-{number:04d}"], "ignored": 1}
        if number < threshold:
            time.sleep(2)
            assert scheduled() == 0, "the trigger fired before its threshold"
    deadline = time.monotonic() + 60
    while scheduled() == 0 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert scheduled() == 1
    wanted = {"filter": {"event": {"name": ["speechloop.batch.complete"]}}}
    expected = {f"speechloop.batch.spk.new-{n:04d}" for n in range(1, threshold + 1)}

    def stored_ids() -> set[str]:
        events = httpx.post(f"{prefect_server}/events/filter", json=wanted)
        return {e["resource"]["prefect.resource.id"] for e in events.json()["events"]}

    # the trigger sees events before the server has persisted all of them: wait for both
    deadline = time.monotonic() + 30
    while not expected <= (ids := stored_ids()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert expected <= ids
    bad = httpx.post(f"{events_url}/minio", content=b"{not json", headers=headers)
    assert bad.status_code == 400 and "bad notification" in bad.json()["error"]


# -- 2-5. speaker: promote, nothing new, evaluate, roll back -------------------------


def test_retrain_spk_promotes_a_candidate_that_knows_the_new_voices(world: World) -> None:
    """New voices: the candidate's golden EER is clearly lower than the seed's; it is
    promoted with the decision (and a link to its artifact) in history, deployed,
    voiceprints are rebuilt for it, and the ledger records the run's batches.

    The promotion path through Prefect, so this run has no open-set check
    (``spk_unseen_set=None``, which the decision notes): every speaker fine-tune recipe
    measured so far is worse than the seed on unseen voices (docs/speaker.md), so with the
    check the candidate is rightly rejected -- that rejection is what the e2e test and
    tests/unit/test_loop.py assert."""
    from flows.retrain import retrain_spk

    options = _options(epochs=6, spk_unseen_set=None)
    result = retrain_spk(options=options)
    assert result["status"] == "promoted", result["message"]
    candidate = result["candidate"]
    assert _production(world, "spk") == candidate
    previous = world.ctx.registry.get_alias("spk", "previous")
    assert previous is not None and previous.version == world.spk_seed
    checks = {c["name"]: c for c in result["decision"]["checks"]}
    eer = checks["eer"]
    assert eer["production"] - eer["candidate"] >= 0.03, eer  # a real gain, not noise
    assert "unseen_eer" not in checks
    assert any("open-set check not run" in n for n in result["decision"]["notes"])
    promote = [h for h in _history(world, "spk") if h["action"] == "promote"][-1]
    assert promote["version"] == candidate and promote["decision"]["promote"] is True
    link = promote["decision"]["links"]
    artifact = _artifact(link["artifact_key"])
    assert artifact is not None and str(artifact.id) == link["artifact_id"]
    assert "PROMOTE" in artifact.data and candidate in artifact.data
    assert world.enrolled in world.ctx.voiceprints.speakers(candidate)
    lineage = world.ctx.registry.show("spk", candidate).lineage
    assert lineage["parent"] == world.spk_seed
    assert lineage["data_batches"] == world.spk_batches
    assert result["committed"] == world.spk_batches
    files = world.ctx.registry.show("spk", candidate).files
    assert any(name.startswith("onnx/") for name in files)


def test_a_second_run_finds_no_new_data_and_changes_nothing(world: World) -> None:
    """With every batch consumed, retrain-spk ends cleanly with "no new data"."""
    from flows.retrain import retrain_spk

    before = _production(world, "spk")
    history = len(_history(world, "spk"))
    result = retrain_spk(options=_options())
    assert result["status"] == "no_new_data" and result["batches"] == []
    assert _production(world, "spk") == before
    assert len(_history(world, "spk")) == history


def test_evaluate_scores_production_on_the_golden_set(world: World) -> None:
    """The evaluate flow scores any version (here: production) and makes an artifact."""
    from flows.evaluate import evaluate

    result = evaluate(kind="spk", version="production", eval_set="golden")
    production = _production(world, "spk")
    assert result["version"] == production
    assert 0.0 <= result["summary"]["eer"] < 0.2
    assert _artifact(result["links"]["artifact_key"]) is not None


def test_rollback_serves_the_previous_version_again(world: World) -> None:
    """The rollback flow moves production back to the seed version, records the reason
    in history and rebuilds the voiceprints for the version now serving."""
    from flows.rollback import rollback

    promoted = _production(world, "spk")
    result = rollback(kind="spk", reason="operator: new model misbehaves")
    assert result["version"] == world.spk_seed and result["previous"] == promoted
    assert _production(world, "spk") == world.spk_seed
    last = _history(world, "spk")[-1]
    assert last["action"] == "rollback" and "misbehaves" in last["reason"]
    assert world.enrolled in result["reenrolled"]


# -- 6. ASR: a candidate trained on mislabelled rows ---------------------------------


def test_retrain_asr_rejects_a_candidate_trained_on_mislabelled_rows(world: World) -> None:
    """Transcripts shifted between clips give a candidate no better than production (the
    trainer keeps its start weights when training on them does not help its validation
    rows): rejected and recorded (with its artifact), never deployed; batches consumed."""
    from flows.retrain import retrain_asr

    result = retrain_asr(options=_options(epochs=1))
    assert result["status"] == "rejected", result["message"]
    assert world.ctx.registry.get_alias("asr", "production") is None
    acc = next(c for c in result["decision"]["checks"] if c["name"] == "acc")
    assert acc["gain"] <= 0.0 and not acc["passed"], acc
    reject = _history(world, "asr")[-1]
    assert reject["action"] == "reject" and reject["version"] == result["candidate"]
    assert _artifact(reject["decision"]["links"]["artifact_key"]) is not None
    assert result["committed"] == world.asr_batches


# -- 7. the ledger -------------------------------------------------------------------


def test_no_batch_is_lost_or_consumed_twice(world: World) -> None:
    """Every batch of both kinds is committed exactly once, by the run that trained on it."""
    bucket = world.settings.data_bucket
    kinds: list[tuple[Kind, list[str]]] = [("asr", world.asr_batches), ("spk", world.spk_batches)]
    for kind, batches in kinds:
        ledger = Ledger(world.ctx.store, bucket, kind)
        states = {s.batch_id: s for s in ledger.scan(owners=True)}
        assert sorted(states) == sorted(batches)
        assert {s.state for s in states.values()} == {"committed"}
        owners = {s.committed_by for s in states.values()}
        assert len(owners) == 1 and str(next(iter(owners))).startswith("prefect-")
        for batch_id in batches:
            record = ledger.committed_record(batch_id)
            assert record.rows_in == record.good + record.quarantined
