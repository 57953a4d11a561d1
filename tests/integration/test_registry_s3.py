"""The model registry on the S3 backend (real server process on 127.0.0.1): a full
publish / fetch / promote / rollback cycle, a tampered object refused, racing threads."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from speechloop.errors import IntegrityError
from speechloop.registry import ModelRegistry
from speechloop.storage.s3 import MinioStore
from tests.integration.conftest import S3Server
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
