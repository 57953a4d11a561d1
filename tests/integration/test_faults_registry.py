"""The model registry under network faults (issue 12, findings 2 and 3): a real moto S3
server process, the fault forwarder in front of it, and a real MinioStore pointed at the
forwarder with small timeouts and fast retries.

Each test makes the forwarder refuse, reset, stall or drop the reply of one kind of
request (the alias write, the history append, a version's manifest, a file read, a
listing), runs registry operations through it, and then checks, through a second store
that bypasses the forwarder:

- production names a complete version whose every file verifies;
- ``previous`` (the record and its mirror object) names the version production replaced;
- ``history.jsonl`` as stored holds exactly one line per change, in order, chained
  (each line's ``from_version`` is the version the line before it set);
- the operation reported what it did (a promotion says promoted, a rollback lands on
  the version it was asked for).
"""

from __future__ import annotations

import itertools
import json
import random
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from speechloop.config import Settings
from speechloop.errors import Conflict
from speechloop.registry import ModelRegistry
from speechloop.storage.s3 import MinioStore
from tests.integration.conftest import S3Server, unique_bucket
from tests.integration.faultproxy import Action, FaultProxy
from tests.unit.test_registry import make_model

KIND = "asr"
#: Small client timeouts for stores behind the forwarder (seconds); a stall holds longer.
CONNECT_TIMEOUT_S = 1.0
READ_TIMEOUT_S = 1.0
STALL_S = 1.5
#: Setting names the storage fix (issue 12, finding 6) gives the timeouts.
TIMEOUT_SETTINGS = {
    "store_connect_timeout_s": CONNECT_TIMEOUT_S,
    "store_read_timeout_s": READ_TIMEOUT_S,
}


def proxied_settings(s3_server: S3Server, proxy: FaultProxy, **overrides: Any) -> Settings:
    """Settings for a store behind ``proxy``: 3 retries, 10 ms back-off, small timeouts."""
    values: dict[str, Any] = {"s3_endpoint": proxy.endpoint, "store_retries": 3}
    values.update({k: v for k, v in TIMEOUT_SETTINGS.items() if k in Settings.model_fields})
    values.update(overrides)
    return s3_server.settings(**values)


def proxied_store(settings: Settings) -> MinioStore:
    """A MinioStore from ``settings``; timeouts passed directly while they are no settings."""
    if all(name in Settings.model_fields for name in TIMEOUT_SETTINGS):
        return MinioStore.from_settings(settings)
    return MinioStore(
        settings.s3_endpoint,
        access_key=settings.s3_access_key,
        secret_key=settings.s3_secret_key,
        retries=settings.store_retries,
        backoff_s=settings.store_backoff_s,
        connect_timeout_s=CONNECT_TIMEOUT_S,
        read_timeout_s=READ_TIMEOUT_S,
    )


@dataclass
class Rig:
    """A registry behind the forwarder, and an observer on the same bucket that is not."""

    proxy: FaultProxy
    reg: ModelRegistry
    observer: ModelRegistry
    tmp_path: Path
    versions: list[str] = field(default_factory=list)

    def publish(self, seed: int, *, through_proxy: bool = False) -> str:
        """Publish a small model version (directly unless ``through_proxy``)."""
        src = make_model(self.tmp_path / f"src{seed}", seed)
        reg = self.reg if through_proxy else self.observer
        version = reg.publish(KIND, src, metrics={"acc": seed}, lineage={}).version
        self.versions.append(version)
        return version


@pytest.fixture
def rig(s3_server: S3Server, fault_proxy: FaultProxy, tmp_path: Path) -> Rig:
    """Three published versions in a fresh models bucket, nothing promoted yet."""
    bucket = unique_bucket("models")
    direct = MinioStore.from_settings(s3_server.settings())
    direct.ensure_bucket(bucket)
    store = proxied_store(proxied_settings(s3_server, fault_proxy, models_bucket=bucket))
    rig = Rig(fault_proxy, ModelRegistry(store, bucket), ModelRegistry(direct, bucket), tmp_path)
    for seed in range(3):
        rig.publish(seed)
    return rig


# -- what must hold after every fault ------------------------------------------------------


def stored_history(reg: ModelRegistry, kind: str = KIND) -> list[dict[str, Any]]:
    """The lines of ``<kind>/history.jsonl`` exactly as stored (no de-duplication)."""
    key = f"{kind}/history.jsonl"
    if not reg.store.exists(reg.bucket, key):
        return []
    data = reg.store.get_bytes(reg.bucket, key).decode()
    return [json.loads(line) for line in data.splitlines() if line.strip()]


def moves(records: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(action, version) of the alias changes (promote, rollback) among history records."""
    return [(r["action"], r["version"]) for r in records if r["action"] in ("promote", "rollback")]


def assert_registry_sound(
    reg: ModelRegistry, expected: list[tuple[str, str]] | None = None, kind: str = KIND
) -> None:
    """Production names a complete, verified version; previous is what it replaced (record
    and mirror); the stored history has one chained line per change (``expected`` if given),
    numbered in order (``seq``) and no change token twice."""
    production = reg.get_alias(kind, "production")
    assert production is not None, "no production alias"
    assert production.version in reg.list_versions(kind)
    reg.verify(kind, production.version)
    stored = stored_history(reg, kind)
    seqs = [r["seq"] for r in stored if "seq" in r]
    assert seqs == list(range(len(stored) - len(seqs) + 1, len(stored) + 1)), "seq out of order"
    tokens = [r["write_id"] for r in stored if "write_id" in r]
    assert len(tokens) == len(set(tokens)), "a change is logged twice"
    lines = [r for r in stored if r["action"] in ("promote", "rollback")]
    if expected is not None:
        assert moves(lines) == expected, "history is not one line per change, in order"
    assert lines, "an alias was set but history has no line for it"
    assert lines[0]["from_version"] is None
    for before, after in itertools.pairwise(lines):
        assert after["from_version"] == before["version"], f"history chain broken at {after}"
    assert lines[-1]["version"] == production.version
    previous = reg.get_alias(kind, "previous")
    replaced = lines[-1]["from_version"]
    assert (previous.version if previous else None) == replaced
    if previous is not None:
        assert previous.version != production.version
        mirror = json.loads(reg.store.get_bytes(reg.bucket, f"{kind}/aliases/previous"))
        assert mirror["version"] == previous.version, "previous mirror disagrees with production"


# -- lost replies (findings 2 and 3) ------------------------------------------------------


def test_lost_reply_on_promote_alias_write(rig: Rig) -> None:
    """The production write is applied but its reply lost: promote still reports the
    promotion, writes exactly one history line, and previous is the old production."""
    v0, v1, v2 = rig.versions
    rig.reg.promote(KIND, v0, reason="first")
    rig.reg.promote(KIND, v1, reason="second")
    rig.proxy.add_rule("PUT */aliases/production", "drop_reply")
    assert rig.reg.promote(KIND, v2, reason="third").version == v2
    assert rig.proxy.count("drop_reply") == 1
    assert_registry_sound(rig.observer, [("promote", v0), ("promote", v1), ("promote", v2)])
    assert rig.observer.get_alias(KIND, "previous").version == v1  # type: ignore[union-attr]


def test_lost_reply_on_rollback_alias_write(rig: Rig) -> None:
    """The rollback's production write is applied but its reply lost: production is the
    version rolled back to (not undone on retry), reported as such, history one line."""
    v0, v1, _ = rig.versions
    rig.reg.promote(KIND, v0, reason="first")
    rig.reg.promote(KIND, v1, reason="regressing")
    rig.proxy.add_rule("PUT */aliases/production", "drop_reply")
    assert rig.reg.rollback(KIND, reason="regressed").version == v0
    assert rig.proxy.count("drop_reply") == 1
    assert_registry_sound(rig.observer, [("promote", v0), ("promote", v1), ("rollback", v0)])
    assert rig.observer.get_alias(KIND, "previous").version == v1  # type: ignore[union-attr]


def test_lost_reply_on_history_append(rig: Rig) -> None:
    """The history append is applied but its reply lost: the line is stored once."""
    v0, v1, _ = rig.versions
    rig.reg.promote(KIND, v0, reason="first")
    rig.proxy.add_rule("PUT */history.jsonl", "drop_reply")
    rig.reg.promote(KIND, v1, reason="second")
    assert rig.proxy.count("drop_reply") == 1
    assert_registry_sound(rig.observer, [("promote", v0), ("promote", v1)])


def test_lost_reply_on_reject_history_append(rig: Rig) -> None:
    """A rejection whose history append lost its reply is recorded once."""
    v0, v1, _ = rig.versions
    rig.reg.promote(KIND, v0, reason="first")
    rig.proxy.add_rule("PUT */history.jsonl", "drop_reply")
    rig.reg.reject(KIND, v1, reason="worse on the golden set")
    assert rig.proxy.count("drop_reply") == 1
    rejects = [r for r in stored_history(rig.observer) if r["action"] == "reject"]
    assert [r["version"] for r in rejects] == [v1]
    assert_registry_sound(rig.observer, [("promote", v0)])


def test_lost_reply_on_manifest_write(rig: Rig) -> None:
    """The manifest (a version's commit point) is applied but its reply lost: publish
    reports the version it published, which is complete and verifies; publishing the
    same version name again is still refused."""
    rig.proxy.add_rule("PUT */manifest.json", "drop_reply")
    src = make_model(rig.tmp_path / "lost", 42)
    info = rig.reg.publish(KIND, src, metrics={"acc": 42}, lineage={}, version="lost-reply-v")
    assert info.version == "lost-reply-v" and rig.proxy.count("drop_reply") == 1
    assert rig.observer.list_versions(KIND).count("lost-reply-v") == 1
    assert rig.observer.verify(KIND, "lost-reply-v").metrics == {"acc": 42}
    with pytest.raises(Conflict, match="already exists"):
        rig.reg.publish(KIND, src, metrics={}, lineage={}, version="lost-reply-v")
    rig.reg.promote(KIND, "lost-reply-v", reason="published through a lost reply")
    assert_registry_sound(rig.observer, [("promote", "lost-reply-v")])


def test_lost_reply_on_previous_mirror(rig: Rig) -> None:
    """The previous mirror's write is applied but its reply lost: the mirror is right."""
    v0, v1, _ = rig.versions
    rig.reg.promote(KIND, v0, reason="first")
    rig.proxy.add_rule("PUT */aliases/previous", "drop_reply")
    rig.reg.promote(KIND, v1, reason="second")
    assert rig.proxy.count("drop_reply") == 1
    assert_registry_sound(rig.observer, [("promote", v0), ("promote", v1)])


# -- one fault of each kind on each kind of request ----------------------------------------

TARGETS = {
    "alias": "PUT */aliases/production",
    "history": "PUT */history.jsonl",
    "manifest": "PUT */manifest.json",
    "file-read": "GET */files/*",
    "stat": "HEAD *",
    "listing": "LIST *",
}


@pytest.mark.parametrize("target", sorted(TARGETS))
@pytest.mark.parametrize("action", ["refuse", "reset", "stall", "drop_reply"])
def test_one_fault_during_a_cycle(rig: Rig, action: Action, target: str) -> None:
    """One fault on the first matching request of a publish, list, promote, promote,
    rollback, promote cycle: every step reports its outcome and the registry stays sound."""
    v0, v1, _ = rig.versions
    rig.proxy.add_rule(TARGETS[target], action, seconds=STALL_S)
    v3 = rig.publish(3, through_proxy=True)
    assert rig.reg.list_versions(KIND) == sorted(rig.versions)
    assert rig.reg.promote(KIND, v0, reason="a").version == v0
    assert rig.reg.promote(KIND, v1, reason="b").version == v1
    assert rig.reg.rollback(KIND, reason="c").version == v0
    assert rig.reg.promote(KIND, v3, reason="d").version == v3
    assert rig.proxy.count(action) == 1, f"the {action} fault on {target} never fired"
    expected = [("promote", v0), ("promote", v1), ("rollback", v0), ("promote", v3)]
    assert_registry_sound(rig.observer, expected)


@pytest.mark.parametrize("target", ["alias", "manifest"])
@pytest.mark.parametrize("action", ["error", "applied_error"])
def test_gateway_error_during_a_cycle(rig: Rig, action: Action, target: str) -> None:
    """A load balancer's HTML 502 instead of the server's answer, before or after the
    server applied the request: the cycle completes and the registry stays sound."""
    test_one_fault_during_a_cycle(rig, action, target)


# -- many random faults --------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2])
def test_random_faults_on_every_kind_of_request(rig: Rig, s3_server: S3Server, seed: int) -> None:
    """About one request in seven refused, reset or stripped of its reply (seeded) while
    versions are published, promoted and rolled back: each operation reports what it
    did, and the registry is sound after every one (6 retries: no request fails 7 times)."""
    rng = random.Random(seed)
    actions: tuple[Action, ...] = ("refuse", "reset", "drop_reply")
    for action in actions:
        rig.proxy.add_rule(lambda _r: rng.random() < 0.05, action, times=None)
    settings = proxied_settings(s3_server, rig.proxy, store_retries=6)
    reg = ModelRegistry(proxied_store(settings), rig.reg.bucket)
    done: list[tuple[str, str]] = []
    for step in range(8):
        if step == 4:
            src = make_model(rig.tmp_path / "chaos", 99)
            rig.versions.append(reg.publish(KIND, src, metrics={}, lineage={}).version)
        if step % 3 == 2:
            done.append(("rollback", reg.rollback(KIND, reason=f"step {step}").version))
            assert done[-1][1] == done[-3][1]
        else:
            production = rig.observer.get_alias(KIND, "production")
            version = rng.choice(
                [v for v in rig.versions if not production or v != production.version]
            )
            done.append(("promote", reg.promote(KIND, version, reason=f"step {step}").version))
            assert done[-1][1] == version
        assert_registry_sound(rig.observer, done)
    assert rig.proxy.count("drop_reply") > 0 and rig.proxy.count("reset") > 0


def test_racing_promoters_with_lost_replies_keep_history_in_order(
    rig: Rig, s3_server: S3Server
) -> None:
    """Three threads, each with its own store behind the forwarder, promote two versions
    each while one reply in eight is lost: each promotion has exactly one history line,
    the lines chain in the order they are stored, and production is the last of them."""
    rng = random.Random(8)
    rig.proxy.add_rule(lambda _r: rng.random() < 0.125, "drop_reply", times=None)
    extra = [rig.publish(10 + i) for i in range(3)]
    versions = rig.versions[:3] + extra
    settings = proxied_settings(s3_server, rig.proxy, store_retries=6)
    barrier = threading.Barrier(3)
    errors: list[Exception] = []

    def promoter(mine: list[str]) -> None:
        reg = ModelRegistry(proxied_store(settings), rig.reg.bucket)
        barrier.wait()
        try:
            for version in mine:
                assert reg.promote(KIND, version, reason="race").version == version
        except Exception as exc:  # noqa: BLE001 - asserted empty in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=promoter, args=(versions[i::3],)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert rig.proxy.count("drop_reply") > 0
    lines = moves(stored_history(rig.observer))
    assert sorted(lines) == sorted(("promote", v) for v in versions)
    assert_registry_sound(rig.observer)


MULTIPART = {
    "initiate": lambda r: r.method == "POST" and "uploads" in r.query,
    "part": lambda r: r.method == "PUT" and "partNumber" in r.query,
    "complete": lambda r: r.method == "POST" and "uploadId" in r.query,
}


@pytest.mark.parametrize("step", sorted(MULTIPART))
def test_lost_reply_during_a_multipart_upload(rig: Rig, step: str) -> None:
    """A model file over 5 MiB goes up as a multipart upload (every real checkpoint
    does): a lost reply to its initiation, a part, or its completion still publishes a
    complete version that verifies."""
    src = rig.tmp_path / "big"
    src.mkdir()
    (src / "model.pt").write_bytes(random.Random(6).randbytes(6 * 1024 * 1024))
    (src / "config.yaml").write_text("big: true\n")
    rig.proxy.add_rule(MULTIPART[step], "drop_reply")
    info = rig.reg.publish(KIND, src, metrics={}, lineage={}, version=f"big-{step}")
    assert rig.proxy.count("drop_reply") == 1
    assert rig.observer.verify(KIND, info.version).files["model.pt"]["size"] == 6 * 1024 * 1024
    rig.reg.promote(KIND, info.version, reason="big")
    assert_registry_sound(rig.observer, [("promote", info.version)])


@pytest.mark.parametrize("what", ["GET */files/*", "GET */manifest.json", "GET */metrics.json"])
def test_download_broken_midway(rig: Rig, what: str) -> None:
    """Replies cut off mid-body (twice) while a version is fetched: the fetch completes
    with every file verified, and leaves no partial file in the destination."""
    v0 = rig.versions[0]
    rig.proxy.add_rule(what, "truncate_reply", times=2)
    dest = rig.reg.fetch(KIND, v0, rig.tmp_path / "fetched")
    assert rig.proxy.count("truncate_reply") == 2
    expected = rig.tmp_path / "src0"
    for path in expected.rglob("*"):
        if path.is_file():
            assert (dest / path.relative_to(expected)).read_bytes() == path.read_bytes()
    assert sorted(p.name for p in dest.rglob("*") if p.is_file()) == sorted(
        p.name for p in expected.rglob("*") if p.is_file()
    )


def test_verify_reports_production_out_of_step_with_history(rig: Rig) -> None:
    """Production put back to a record the history has moved past (the damage finding 2
    did before the fix, or a restore from a backup): verify reports that production is
    not the history's last change, and repair does not paper over it by rewriting the
    previous mirror to match."""
    from speechloop.registry import check

    v0, v1, _ = rig.versions
    reg = rig.observer
    reg.promote(KIND, v0, reason="a")
    reg.promote(KIND, v1, reason="b")
    stale = reg.store.get_bytes(reg.bucket, f"{KIND}/aliases/production")
    reg.rollback(KIND, reason="c")
    reg.store.put_bytes(reg.bucket, f"{KIND}/aliases/production", stale)
    for step in ("inspect", "after repair"):
        if step == "after repair":
            check.repair(reg, KIND)
        findings = [str(f) for f in check.inspect(reg, KIND).findings]
        assert any("history" in f for f in findings), f"{step}: {findings}"
