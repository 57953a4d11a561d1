"""The registry after lost replies and crashes, on a LocalStore behind a wrapper that
applies a write and then loses its reply (as a dropped HTTP response does).

Two ways a lost reply surfaces, both simulated: the store layer's retry of the
conditional put meets the write it already made and reports Conflict ("conflict"), or
the retries run out and the put fails with StoreUnavailable although the server applied
it ("unavailable"). The wrapper is a stand-in for the network fault; the fault-injection
suite in tests/integration does the same with a real forwarder and server.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from speechloop.errors import Conflict, NotFound, StoreError, StoreUnavailable
from speechloop.registry import ModelRegistry
from speechloop.storage.base import ObjectInfo, ObjectStore
from speechloop.storage.local import LocalStore
from tests.unit.test_registry import BUCKET, assert_consistent, make_model, publish


class Crash(BaseException):
    """A writer killed at this point (not an Exception: nothing handles it)."""


class LossyStore(ObjectStore):
    """Delegates to ``inner``; the next ``losses[key]`` puts to ``key`` lose their reply.

    ``mode`` "conflict": the write is applied, then Conflict (for conditional puts).
    "unavailable": applied, then StoreUnavailable. "down": not applied, StoreUnavailable.
    "crash": not applied, :class:`Crash`. ``between`` runs after the write is applied and
    before the reply is lost (a rival writer slipping in).
    """

    def __init__(self, inner: ObjectStore, mode: str = "conflict") -> None:
        self.inner, self.mode = inner, mode
        self.losses: dict[str, int] = {}
        self.between: Callable[[], object] | None = None
        self.lost: list[str] = []
        self._lock = threading.Lock()

    def lose(self, key: str, times: int = 1) -> None:
        """Lose the reply of the next ``times`` puts to ``key``."""
        self.losses[key] = times

    def _take(self, key: str) -> bool:
        with self._lock:
            left = self.losses.get(key, 0)
            if left <= 0:
                return False
            self.losses[key] = left - 1
            self.lost.append(key)
            return True

    def put_bytes(
        self,
        bucket: str,
        key: str,
        data: bytes,
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
    ) -> ObjectInfo:
        if not self._take(key):
            return self.inner.put_bytes(
                bucket, key, data, if_none_match=if_none_match, if_match=if_match
            )
        if self.mode == "down":
            raise StoreUnavailable(f"store down: put {key}")
        if self.mode == "crash":
            raise Crash(key)
        info = self.inner.put_bytes(
            bucket, key, data, if_none_match=if_none_match, if_match=if_match
        )
        if self.between is not None:
            between, self.between = self.between, None
            between()
        if self.mode == "conflict" and (if_none_match or if_match is not None):
            raise Conflict(f"conditional put of {bucket}/{key} failed: PreconditionFailed")
        if self.mode == "conflict":
            return info
        raise StoreUnavailable(f"reply to put {bucket}/{key} lost")

    def ensure_bucket(self, bucket: str) -> None:
        self.inner.ensure_bucket(bucket)

    def put_file(self, bucket: str, key: str, path: Path) -> ObjectInfo:
        return self.inner.put_file(bucket, key, path)

    def get_bytes(self, bucket: str, key: str) -> bytes:
        return self.inner.get_bytes(bucket, key)

    def get_file(self, bucket: str, key: str, dest: Path) -> ObjectInfo:
        return self.inner.get_file(bucket, key, dest)

    def stat(self, bucket: str, key: str) -> ObjectInfo:
        return self.inner.stat(bucket, key)

    def list(
        self, bucket: str, prefix: str = "", *, start_after: str | None = None
    ) -> Iterator[ObjectInfo]:
        return self.inner.list(bucket, prefix, start_after=start_after)

    def delete(self, bucket: str, key: str) -> None:
        self.inner.delete(bucket, key)


PROD, HIST, PREV = "asr/aliases/production", "asr/history.jsonl", "asr/aliases/previous"


def lossy_registry(tmp_path: Path, mode: str) -> tuple[ModelRegistry, LossyStore]:
    inner = LocalStore(tmp_path / "store")
    inner.ensure_bucket(BUCKET)
    store = LossyStore(inner, mode)
    return ModelRegistry(store, BUCKET), store


def moves(reg: ModelRegistry) -> list[tuple[str, str, str | None]]:
    """(action, version, from_version) of every history record, in order."""
    return [(h["action"], h["version"], h["from_version"]) for h in reg.history("asr")]


def prod_prev(reg: ModelRegistry) -> tuple[str | None, str | None]:
    production, previous = reg.get_alias("asr", "production"), reg.get_alias("asr", "previous")
    return (
        production.version if production else None,
        previous.version if previous else None,
    )


def log_lines(reg: ModelRegistry) -> list[dict[str, Any]]:
    """The history file as stored (no catch-up from the alias)."""
    data = reg.store.get_bytes(BUCKET, HIST).decode()
    return [json.loads(line) for line in data.splitlines()]


LOST = pytest.mark.parametrize("mode", ["conflict", "unavailable"])


@LOST
def test_rollback_after_lost_reply_stays_rolled_back(tmp_path: Path, mode: str) -> None:
    """A rollback whose alias reply is lost reports the version it rolled back to, and
    production stays there (it used to move back to the bad version)."""
    reg, store = lossy_registry(tmp_path, mode)
    v1, v2 = publish(reg, tmp_path, 1), publish(reg, tmp_path, 2)
    reg.promote("asr", v1, reason="first")
    reg.promote("asr", v2, reason="second")
    store.lose(PROD)
    assert reg.rollback("asr", reason="v2 regressed").version == v1
    assert store.lost == [PROD]
    assert prod_prev(reg) == (v1, v2)
    assert moves(reg) == [("promote", v1, None), ("promote", v2, v1), ("rollback", v1, v2)]
    assert json.loads(reg.store.get_bytes(BUCKET, PREV))["version"] == v2


@LOST
def test_promote_after_lost_reply_succeeds_once(tmp_path: Path, mode: str) -> None:
    """A promotion whose alias reply is lost succeeds (not "already in production"),
    writes one history line, and previous stays the version it replaced."""
    reg, store = lossy_registry(tmp_path, mode)
    v1, v2 = publish(reg, tmp_path, 1), publish(reg, tmp_path, 2)
    reg.promote("asr", v1, reason="first")
    store.lose(PROD)
    assert reg.promote("asr", v2, reason="second").version == v2
    assert prod_prev(reg) == (v2, v1)
    assert moves(reg) == [("promote", v1, None), ("promote", v2, v1)]
    assert [line["seq"] for line in log_lines(reg)] == [1, 2]


@LOST
def test_first_promote_after_lost_reply(tmp_path: Path, mode: str) -> None:
    """The very first promotion (if_none_match on the alias) after a lost reply succeeds."""
    reg, store = lossy_registry(tmp_path, mode)
    v1 = publish(reg, tmp_path, 1)
    store.lose(PROD)
    assert reg.promote("asr", v1, reason="first").version == v1
    assert moves(reg) == [("promote", v1, None)]


@LOST
def test_history_line_written_once_after_lost_reply(tmp_path: Path, mode: str) -> None:
    """Lost replies on history.jsonl (promotion and rejection) leave one line each."""
    reg, store = lossy_registry(tmp_path, mode)
    v1, v2 = publish(reg, tmp_path, 1), publish(reg, tmp_path, 2)
    store.lose(HIST)
    reg.promote("asr", v1, reason="first")
    store.lose(HIST)
    line = reg.reject("asr", v2, reason="worse", decision={"delta": -0.1})
    assert store.lost == [HIST, HIST]
    assert line["seq"] == 2 and line["action"] == "reject"
    stored = log_lines(reg)
    assert [(h["action"], h["seq"]) for h in stored] == [("promote", 1), ("reject", 2)]
    assert len({h["write_id"] for h in stored}) == 2


@LOST
def test_publish_after_lost_manifest_reply(tmp_path: Path, mode: str) -> None:
    """publish succeeds when the reply to its manifest write is lost (it used to report
    "already exists" for its own version); a rival's version of that name is a Conflict."""
    reg, store = lossy_registry(tmp_path, mode)
    store.lose("asr/versions/v1/manifest.json")
    info = publish(reg, tmp_path, 1, version="v1")
    assert info == "v1" and reg.list_versions("asr") == ["v1"]
    assert reg.verify("asr", "v1").manifest["write_id"].endswith(":publish:asr:v1")
    with pytest.raises(Conflict, match="already exists"):
        publish(reg, tmp_path, 2, version="v1")


def test_lost_reply_then_a_rival_writes_first(tmp_path: Path) -> None:
    """A promotion applied whose reply is lost while a rival promotes on top of it is
    still found (in the rival's previous and in the history the rival caught up): it
    reports success, and the history is one chain in commit order."""
    reg, store = lossy_registry(tmp_path, "conflict")
    v1, v2, v3 = (publish(reg, tmp_path, i) for i in (1, 2, 3))
    reg.promote("asr", v1, reason="first")
    rival = ModelRegistry(store.inner, BUCKET)
    store.between = lambda: rival.promote("asr", v3, reason="rival")
    store.lose(PROD)
    assert reg.promote("asr", v2, reason="second").version == v2
    assert prod_prev(reg) == (v3, v2)
    assert moves(reg) == [("promote", v1, None), ("promote", v2, v1), ("promote", v3, v2)]
    assert [h["seq"] for h in reg.history("asr")] == [1, 2, 3]


def test_lost_reply_then_two_rivals(tmp_path: Path) -> None:
    """Two rival promotions on top of a write whose reply was lost: the write is found
    in the history log (no longer in production or previous)."""
    reg, store = lossy_registry(tmp_path, "unavailable")
    v1, v2, v3, v4 = (publish(reg, tmp_path, i) for i in (1, 2, 3, 4))
    reg.promote("asr", v1, reason="first")
    rival = ModelRegistry(store.inner, BUCKET)

    def two_rivals() -> None:
        rival.promote("asr", v3, reason="rival 1")
        rival.promote("asr", v4, reason="rival 2")

    store.between = two_rivals
    store.lose(PROD)
    alias = reg.promote("asr", v2, reason="second")
    assert alias.version == v2 and alias.reason == "second"
    assert prod_prev(reg) == (v4, v3)
    assert [m[1] for m in moves(reg)] == [v1, v2, v3, v4]


def test_store_down_before_the_write_fails_and_changes_nothing(tmp_path: Path) -> None:
    """When the alias write really fails (not applied), promote raises the store error
    and production, previous and history are unchanged."""
    reg, store = lossy_registry(tmp_path, "down")
    v1, v2 = publish(reg, tmp_path, 1), publish(reg, tmp_path, 2)
    reg.promote("asr", v1, reason="first")
    store.lose(PROD)
    with pytest.raises(StoreError, match="store down"):
        reg.promote("asr", v2, reason="second")
    assert prod_prev(reg) == (v1, None)
    assert moves(reg) == [("promote", v1, None)]


def test_crash_between_alias_and_history_loses_nothing(tmp_path: Path) -> None:
    """A writer killed after the alias commit, before its history line: history() still
    lists the change (from the alias record), and the next writer writes it to the log
    before its own line, so the log stays in commit order."""
    reg, store = lossy_registry(tmp_path, "crash")
    v1, v2, v3 = (publish(reg, tmp_path, i) for i in (1, 2, 3))
    reg.promote("asr", v1, reason="first")
    store.lose(HIST)
    with pytest.raises(Crash):
        reg.promote("asr", v2, reason="second")
    assert [h["version"] for h in log_lines(reg)] == [v1]
    assert moves(reg) == [("promote", v1, None), ("promote", v2, v1)]
    assert reg.history("asr")[-1]["seq"] == 2
    reg.reject("asr", v3, reason="worse")
    reg.promote("asr", v3, reason="third")
    stored = log_lines(reg)
    assert [(h["action"], h["version"], h["seq"]) for h in stored] == [
        ("promote", v1, 1),
        ("promote", v2, 2),
        ("reject", v3, 3),
        ("promote", v3, 4),
    ]


def test_history_failure_after_commit_still_reports_the_change(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """If the store fails after the alias commit (mirror or history), the committed
    promotion is reported with a warning; the history shows it; the next change repairs."""
    reg, store = lossy_registry(tmp_path, "down")
    v1, v2 = publish(reg, tmp_path, 1), publish(reg, tmp_path, 2)
    reg.promote("asr", v1, reason="first")
    store.lose(HIST)
    assert reg.promote("asr", v2, reason="second").version == v2
    assert "models repair" in caplog.text
    assert moves(reg)[-1] == ("promote", v2, v1)
    assert len(log_lines(reg)) == 1


def test_same_run_id_is_idempotent(tmp_path: Path) -> None:
    """A re-run with the same run id finds what it already did: publish returns the
    version, promote and rollback return the alias without a second history line."""
    reg, _ = lossy_registry(tmp_path, "conflict")
    v1 = publish(reg, tmp_path, 1)
    src = make_model(tmp_path / "src2", 2)
    first = reg.publish("asr", src, metrics={}, lineage={}, version="v2", run_id="run-7")
    again = reg.publish("asr", src, metrics={}, lineage={}, version="v2", run_id="run-7")
    assert first.manifest == again.manifest
    reg.promote("asr", v1, reason="first")
    for _ in range(2):
        assert reg.promote("asr", "v2", reason="gate", run_id="run-7").version == "v2"
    for _ in range(2):
        assert reg.rollback("asr", reason="bad", run_id="run-8").version == v1
    assert moves(reg) == [("promote", v1, None), ("promote", "v2", v1), ("rollback", v1, "v2")]
    with pytest.raises(Conflict, match="already exists"):
        reg.publish("asr", src, metrics={}, lineage={}, version="v2", run_id="run-9")


def test_old_format_alias_and_history_are_read(tmp_path: Path) -> None:
    """Alias and history files written before write ids (no change, seq, write_id) are
    read as they are, and new lines continue their numbering."""
    reg, _ = lossy_registry(tmp_path, "conflict")
    v1, v2 = publish(reg, tmp_path, 1), publish(reg, tmp_path, 2)
    old_alias = {"version": v1, "promoted_at": "2026-01-01T00:00:00", "reason": "r"}
    reg.store.put_bytes(BUCKET, PROD, json.dumps({**old_alias, "previous": None}).encode())
    old_line = {"action": "promote", "kind": "asr", "version": v1, "from_version": None}
    reg.store.put_bytes(BUCKET, HIST, (json.dumps(old_line) + "\n").encode())
    assert [h["seq"] for h in reg.history("asr")] == [1]
    reg.promote("asr", v2, reason="new format")
    assert prod_prev(reg) == (v2, v1)
    assert moves(reg) == [("promote", v1, None), ("promote", v2, v1)]
    assert [h.get("seq") for h in log_lines(reg)] == [None, 2]


def test_racing_promoters_with_lost_replies(tmp_path: Path) -> None:
    """Six threads promote at once while the replies of alias and history writes are
    lost again and again: one chain in commit order, each promotion once."""
    reg, store = lossy_registry(tmp_path, "conflict")
    versions = [publish(reg, tmp_path, i) for i in range(6)]
    store.lose(PROD, times=4)
    store.lose(HIST, times=4)
    barrier = threading.Barrier(len(versions))
    errors: list[BaseException] = []

    def run(version: str) -> None:
        barrier.wait()
        try:
            reg.promote("asr", version, reason=f"race {version}")
        except Exception as exc:  # noqa: BLE001 - checked in the test thread below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(v,)) for v in versions]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == [] and store.lost.count(PROD) == 4
    assert_consistent(reg, "asr", set(versions))


def test_two_writers_promote_reject_rollback_with_lost_replies(tmp_path: Path) -> None:
    """Two writers at once, one promoting, one rejecting and rolling back, with lost
    replies on alias and history writes: every call is logged exactly once, the alias
    changes form one chain in commit order, and production/previous match its end."""
    reg, store = lossy_registry(tmp_path, "unavailable")
    versions = [publish(reg, tmp_path, i) for i in range(5)]
    reg.promote("asr", versions[0], reason="base")
    store.lose(PROD, times=3)
    store.lose(HIST, times=3)
    barrier = threading.Barrier(2)
    calls: list[str] = []
    errors: list[BaseException] = []

    def promoter() -> None:
        barrier.wait()
        for version in versions[1:]:
            reg.promote("asr", version, reason=f"promote {version}")
            calls.append("promote")

    def other() -> None:
        barrier.wait()
        for i in range(3):
            reg.reject("asr", versions[i], reason="worse")
            calls.append("reject")
            try:
                reg.rollback("asr", reason="regressed")
                calls.append("rollback")
            except NotFound:  # no promotion since the base yet: no previous
                pass

    def guarded(body: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                body()
            except Exception as exc:  # noqa: BLE001 - checked in the test thread below
                errors.append(exc)

        return run

    threads = [threading.Thread(target=guarded(f)) for f in (promoter, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == [] and store.lost.count(PROD) == 3
    hist = reg.history("asr")
    assert [h["seq"] for h in hist] == list(range(1, len(hist) + 1))
    assert sorted(h["action"] for h in hist[1:]) == sorted(calls)
    changes = [h for h in hist if h["action"] != "reject"]
    for before, after in itertools.pairwise(changes):
        assert after["from_version"] == before["version"]
    assert prod_prev(reg) == (changes[-1]["version"], changes[-1]["from_version"])
    assert len(log_lines(reg)) == len(hist)
