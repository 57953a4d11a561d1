"""The flows' static parts: MinIO notification parsing, artifact keys, prefect.yaml.

The adapter posting to a real Prefect server, and the trigger firing, are in
tests/integration/test_flows.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from flows.events import EVENT, parse_notification
from flows.tasks import artifact_key
from speechloop.errors import InvalidInput

ROOT = Path(__file__).resolve().parents[2]


def _record(key: str, event: str = "s3:ObjectCreated:Put") -> dict[str, Any]:
    return {
        "eventName": event,
        "eventTime": "2026-12-01T05:00:00.000Z",
        "s3": {"bucket": {"name": "speech-data"}, "object": {"key": key, "size": 12}},
    }


def test_only_created_manifests_announce_a_complete_batch() -> None:
    """A manifest's creation (URL-encoded key, as MinIO sends it) is a complete batch;
    audio uploads, deletions, eval sets and odd batch ids are counted as ignored."""
    body = {
        "Records": [
            _record("asr%2Fbatches%2Fb-0001%2Fmanifest.jsonl"),
            _record("spk/batches/b2/manifest.jsonl", "s3:ObjectCreated:CompleteMultipartUpload"),
            _record("asr/batches/b-0001/u1.wav"),
            _record("asr/batches/b3/manifest.jsonl", "s3:ObjectRemoved:Delete"),
            _record("asr/eval/golden/manifest.jsonl"),
            _record("asr/batches/..%2F..%2Fx/manifest.jsonl"),
        ]
    }
    batches, ignored = parse_notification(body)
    assert [(b.kind, b.batch_id) for b in batches] == [("asr", "b-0001"), ("spk", "b2")]
    assert ignored == 4
    event = batches[0].to_prefect()
    assert event["event"] == EVENT
    assert event["resource"]["prefect.resource.id"] == "speechloop.batch.asr.b-0001"
    assert event["payload"]["key"] == "asr/batches/b-0001/manifest.jsonl"


@pytest.mark.parametrize(
    ("body", "message"),
    [({"EventName": "x"}, "Records"), ({"Records": [{"eventName": "s3:x"}]}, "record 0")],
)
def test_a_body_that_is_not_a_notification_is_refused(body: dict[str, Any], message: str) -> None:
    """Bad bodies raise InvalidInput naming what is missing."""
    with pytest.raises(InvalidInput, match=message):
        parse_notification(body)


def test_artifact_keys_are_lowercase_digits_and_dashes() -> None:
    """Prefect's key rule, whatever the version or run id looks like."""
    assert (
        artifact_key("spk", "gate", "20261201-050937-AFcd87") == "spk-gate-20261201-050937-afcd87"
    )
    assert artifact_key("asr", "retrain", "prefect-1a2B_c.d") == "asr-retrain-prefect-1a2b-c-d"


def test_prefect_yaml_deployments_are_valid_and_schedules_are_off() -> None:
    """prefect.yaml parses with Prefect's own model; every entrypoint loads the flow its
    deployment names; cron schedules are inactive; triggers are valid event triggers on
    the batch-complete event; retraining runs one at a time per kind."""
    from prefect.cli.deploy._models import PrefectYamlModel
    from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger
    from prefect.flows import load_flow_from_entrypoint

    raw = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    model = PrefectYamlModel.model_validate(raw)
    names = {d.name: d for d in model.deployments}
    assert set(names) == {"retrain-asr", "retrain-spk", "evaluate", "rollback"}
    for name, deployment in names.items():
        assert deployment.entrypoint is not None
        flow: Any = load_flow_from_entrypoint(str(ROOT / deployment.entrypoint))
        assert flow.name == name
        for schedule in deployment.schedules or []:
            assert getattr(schedule, "active", None) is False
    for kind in ("asr", "spk"):
        deployment = names[f"retrain-{kind}"]
        limit = deployment.concurrency_limit
        assert limit is not None and not isinstance(limit, int) and limit.limit == 1
        triggers = [DeploymentEventTrigger(**t) for t in deployment.triggers or []]
        assert len(triggers) == 1 and triggers[0].expect == {EVENT}
        match = triggers[0].model_dump(mode="json")["match"]
        assert match["prefect.resource.id"] == f"speechloop.batch.{kind}.*"
        assert triggers[0].threshold >= 1


def test_io_tasks_retry_only_store_and_network_faults() -> None:
    """The retry condition of the I/O tasks: a store outage is retried, bad input is not."""
    from prefect.states import Failed

    from flows.tasks import transient
    from speechloop.errors import StoreUnavailable

    assert transient(None, None, Failed(data=StoreUnavailable("store down")))  # type: ignore[arg-type]
    assert not transient(None, None, Failed(data=InvalidInput("bad row")))  # type: ignore[arg-type]
