"""The model registry on the S3 backend (real server process on 127.0.0.1): a full
publish / fetch / promote / rollback cycle, a tampered object refused, racing threads,
a rollback whose reply the fault forwarder drops, and verify / repair on both stores."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pytest

from speechloop.errors import IntegrityError
from speechloop.registry import ModelRegistry
from speechloop.registry.check import inspect, repair
from speechloop.storage.base import ObjectStore
from speechloop.storage.s3 import MinioStore
from tests.integration.conftest import S3Server
from tests.integration.faultproxy import FaultProxy
from tests.unit.test_registry import assert_consistent, make_model, race_threads


def _publish(reg: ModelRegistry, tmp_path: Path, seed: int) -> str:
    src = make_model(tmp_path / f"src{seed}", seed)
    return reg.publish("asr", src, metrics={"acc": seed}, lineage={"parent": None}).version


def test_cycle_and_tampered_object_on_s3(
    s3_server: S3Server, s3_store: MinioStore, s3_bucket: str, tmp_path: Path
) -> None:
    """Publish, fetch, promote and roll back on S3; an object replaced through a raw
    client (bytes and sha256 metadata consistent) is refused against the manifest."""
    reg = ModelRegistry(s3_store, s3_bucket)
    v1, v2 = _publish(reg, tmp_path, 1), _publish(reg, tmp_path, 2)
    assert reg.list_versions("asr") == sorted([v1, v2])
    dest = reg.fetch("asr", v1, tmp_path / "dl")
    assert (dest / "model.pt").read_bytes() == (tmp_path / "src1" / "model.pt").read_bytes()
    reg.promote("asr", v1, reason="first")
    reg.promote("asr", v2, reason="second")
    assert reg.rollback("asr", reason="regressed").version == v1
    assert [h["action"] for h in reg.history("asr")] == ["promote", "promote", "rollback"]

    evil = b"evil weights"
    s3_server.raw_client().put_object(
        bucket_name=s3_bucket,
        object_name=f"asr/versions/{v2}/files/model.pt",
        data=io.BytesIO(evil),
        length=len(evil),
        metadata={"sha256": hashlib.sha256(evil).hexdigest()},
    )
    with pytest.raises(IntegrityError, match=r"model\.pt"):
        reg.promote("asr", v2, reason="tampered")
    with pytest.raises(IntegrityError, match=r"model\.pt"):
        reg.fetch("asr", v2, tmp_path / "dl2")
    assert reg.get_alias("asr", "production").version == v1  # type: ignore[union-attr]


def test_racing_promoters_threads_on_s3(
    s3_store: MinioStore, s3_bucket: str, tmp_path: Path
) -> None:
    """Six threads promoting six versions at once on S3 leave a consistent chain."""
    reg = ModelRegistry(s3_store, s3_bucket)
    versions = [_publish(reg, tmp_path, i) for i in range(6)]
    race_threads(reg, versions)
    assert_consistent(reg, "asr", set(versions))


def test_rollback_with_dropped_reply_on_s3(
    s3_server: S3Server,
    s3_store: MinioStore,
    s3_bucket: str,
    fault_proxy: FaultProxy,
    tmp_path: Path,
) -> None:
    """The forwarder lets the server apply the rollback's alias write and drops the
    reply: the rollback reports the version it rolled back to and production stays
    there, with one history line (it used to move production back to the bad version)."""
    reg = ModelRegistry(s3_store, s3_bucket)
    v1, v2 = _publish(reg, tmp_path, 1), _publish(reg, tmp_path, 2)
    reg.promote("asr", v1, reason="first")
    reg.promote("asr", v2, reason="second")
    proxied = MinioStore.from_settings(s3_server.settings(s3_endpoint=fault_proxy.endpoint))
    fault_proxy.add_rule("PUT */aliases/production", "drop_reply", times=1)
    assert ModelRegistry(proxied, s3_bucket).rollback("asr", reason="bad").version == v1
    assert fault_proxy.count("drop_reply") == 1
    assert reg.get_alias("asr", "production").version == v1  # type: ignore[union-attr]
    assert reg.get_alias("asr", "previous").version == v2  # type: ignore[union-attr]
    lines = s3_store.get_bytes(s3_bucket, "asr/history.jsonl").decode().splitlines()
    assert [json.loads(line)["action"] for line in lines] == ["promote", "promote", "rollback"]


def test_verify_and_repair_on_both_stores(store: ObjectStore, bucket: str, tmp_path: Path) -> None:
    """On LocalStore and on S3: a deleted previous mirror, a history missing its last
    change and a half-published version are found; repair (with prune) fixes all three;
    a file replaced consistently through the store is reported and left alone."""
    reg = ModelRegistry(store, bucket)
    v1, v2 = _publish(reg, tmp_path, 1), _publish(reg, tmp_path, 2)
    reg.promote("asr", v1, reason="first")
    reg.promote("asr", v2, reason="second")
    assert inspect(reg, "asr").ok
    store.delete(bucket, "asr/aliases/previous")
    first_line = store.get_bytes(bucket, "asr/history.jsonl").splitlines(keepends=True)[0]
    store.put_bytes(bucket, "asr/history.jsonl", first_line)
    store.put_bytes(bucket, "asr/versions/half/files/model.pt", b"partial")
    found = sorted(f.code for f in inspect(reg, "asr").findings)
    assert found == ["history_missing_change", "mirror_out_of_sync", "partial_version"]
    result = repair(reg, "asr", prune=True)
    assert len(result.fixed) == 3 and result.left == []
    report = inspect(reg, "asr")
    assert report.ok and (report.production, report.previous) == (v2, v1)
    assert [h["version"] for h in reg.history("asr")] == [v1, v2]

    store.put_bytes(bucket, f"asr/versions/{v1}/files/config.yaml", b"seed: 666\n")
    report = inspect(reg, "asr")
    assert [f.code for f in report.findings] == ["corrupt_version", "previous_bad_version"]
    assert "config.yaml" in report.findings[0].problem
    assert [f.code for f in repair(reg, "asr").left] == [
        "corrupt_version",
        "previous_bad_version",
    ]
