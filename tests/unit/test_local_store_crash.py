"""LocalStore under killed writers: every object stays readable as its old or new
generation, interrupted writes are settled, staging files of dead writers are swept and
those of live writers are not.

Writers are real child processes (fork) that die by ``os._exit`` at a chosen rename
(deterministic crash points) or by SIGKILL at random moments (the kill loop).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from speechloop.errors import IntegrityError, NotFound
from speechloop.storage.local import LocalStore, sweep_temp

CTX = mp.get_context("fork")
OLD, NEW = b"old generation " * 1000, b"new generation " * 2000


def _die_before_rename(root: str, key: str, data: bytes, nth: int) -> None:
    """Child: put ``data`` at ``key`` but die (no cleanup) just before the nth rename."""
    calls = {"n": 0}
    real_replace = Path.replace

    def replace(self: Path, target: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == nth:
            os._exit(9)
        return real_replace(self, target)

    Path.replace = replace  # type: ignore[method-assign]
    LocalStore(Path(root)).put_bytes("bkt", key, data)
    os._exit(0)


def _run_child(target: Any, *args: Any) -> int:
    proc = CTX.Process(target=target, args=args)
    proc.start()
    proc.join(timeout=60)
    assert proc.exitcode is not None
    return proc.exitcode


def _records(store: LocalStore) -> dict[str, dict[str, Any]]:
    meta = store.root / ".meta" / "bkt"
    return {
        p.relative_to(meta).as_posix()[: -len(".json")]: json.loads(p.read_text())
        for p in meta.rglob("*.json")
    }


@pytest.mark.parametrize(
    ("nth", "expected"),
    [(1, OLD), (2, OLD), (3, NEW), (4, NEW)],
    ids=["before-intent", "before-bytes", "before-settled-record", "completed"],
)
def test_writer_killed_at_each_rename_leaves_a_readable_generation(
    tmp_path: Path, nth: int, expected: bytes
) -> None:
    """A writer dying before the intent record, before the bytes or before the settled
    record leaves the key readable as the old or new generation; stat agrees with the
    bytes, recover settles the record, and compare-and-swap on that etag works."""
    store = LocalStore(tmp_path / "store")
    store.ensure_bucket("bkt")
    store.put_bytes("bkt", "models/alias", OLD)
    code = _run_child(_die_before_rename, str(store.root), "models/alias", NEW, nth)
    assert code == (0 if nth == 4 else 9)

    store = LocalStore(store.root)  # a fresh process would see the same files
    assert store.get_bytes("bkt", "models/alias") == expected
    assert store.get_file("bkt", "models/alias", tmp_path / "out").sha256 == _sha(expected)
    report = store.recover("bkt")
    assert report.ok and report.unfixable == []
    assert [r.key for r in report.fixed] == (["models/alias"] if nth in (2, 3) else [])
    assert all("prev" not in r for r in _records(store).values())
    info = store.stat("bkt", "models/alias")
    assert info.sha256 == _sha(expected) and info.size == len(expected)
    store.put_bytes("bkt", "models/alias", b"next", if_match=info.etag)
    assert store.get_bytes("bkt", "models/alias") == b"next"


def test_stat_settles_an_interrupted_write_without_recover(tmp_path: Path) -> None:
    """stat of a key whose writer died mid-commit reports the generation its bytes hold
    (here the old one) and leaves a settled record behind."""
    store = LocalStore(tmp_path / "store")
    store.ensure_bucket("bkt")
    old = store.put_bytes("bkt", "k", OLD)
    assert _run_child(_die_before_rename, str(store.root), "k", NEW, 2) == 9
    assert "prev" in _records(store)["k"]
    assert store.stat("bkt", "k") == old
    assert _records(store)["k"] == {"sha256": old.sha256, "size": old.size, "etag": old.etag}


def test_killed_creation_of_a_new_key_reads_as_absent(tmp_path: Path) -> None:
    """A writer dying between the intent record and the bytes of a new key leaves the key
    absent (NotFound, not listed); recover removes the record without bytes."""
    store = LocalStore(tmp_path / "store")
    store.ensure_bucket("bkt")
    assert _run_child(_die_before_rename, str(store.root), "fresh", NEW, 2) == 9
    with pytest.raises(NotFound, match="fresh"):
        store.get_bytes("bkt", "fresh")
    assert list(store.list("bkt")) == []
    report = store.recover("bkt")
    assert [(r.key, r.action) for r in report.fixed] == [
        ("fresh", "removed a checksum record without bytes")
    ]
    assert _records(store) == {}
    store.put_bytes("bkt", "fresh", b"1", if_none_match=True)


def test_tampered_bytes_are_reported_not_repaired(tmp_path: Path) -> None:
    """Bytes that match no recorded generation (changed by hand, or torn by an older
    speechloop) stay an IntegrityError: verify_objects names them, an interrupted
    write over them is reported unfixable, and an unconditional put repairs them."""
    store = LocalStore(tmp_path / "store")
    store.ensure_bucket("bkt")
    store.put_bytes("bkt", "ok", b"fine")
    store.put_bytes("bkt", "bad", OLD)
    (store.root / "bkt" / "bad").write_bytes(b"evil")
    assert [p.key for p in store.verify_objects("bkt")] == ["bad"]
    assert _run_child(_die_before_rename, str(store.root), "bad", NEW, 2) == 9
    with pytest.raises(IntegrityError, match="bkt/bad"):
        store.get_bytes("bkt", "bad")
    report = store.recover("bkt")
    assert [r.key for r in report.unfixable] == ["bad"] and not report.ok
    store.put_bytes("bkt", "bad", b"rewritten")
    assert store.verify_objects("bkt") == [] and store.recover("bkt").ok


def _hold_staging_file(root: str, ready: Any, release: Any) -> None:
    """Child: a write that stops just before its bytes rename, until released."""
    real_replace = Path.replace

    def replace(self: Path, target: Any) -> Any:
        if self.suffix == ".part":
            ready.set()
            release.wait(30)
        return real_replace(self, target)

    Path.replace = replace  # type: ignore[method-assign]
    LocalStore(Path(root)).put_bytes("bkt", "slow", b"slow write")
    os._exit(0)


def test_sweep_removes_dead_writers_files_but_not_a_live_writers(tmp_path: Path) -> None:
    """Staging files of a killed writer are removed on the next start; a live writer's
    file (it holds its lock) survives the sweep and its write completes."""
    store = LocalStore(tmp_path / "store")
    store.ensure_bucket("bkt")
    assert _run_child(_die_before_rename, str(store.root), "k", NEW, 2) == 9
    leftovers = list((store.root / ".tmp").iterdir())
    assert [p.suffix for p in leftovers] == [".part"]
    assert sweep_temp(store.root, now=time.time() + 10) == 0  # younger than the grace period
    ready, release = CTX.Event(), CTX.Event()
    live = CTX.Process(target=_hold_staging_file, args=(str(store.root), ready, release))
    live.start()
    try:
        assert ready.wait(30)
        assert sweep_temp(store.root, min_age_s=0) == 1  # the dead writer's file only
        assert [p.suffix for p in (store.root / ".tmp").iterdir()] == [".part"]
    finally:
        release.set()
        live.join(timeout=30)
    assert live.exitcode == 0
    assert store.get_bytes("bkt", "slow") == b"slow write"
    assert list((store.root / ".tmp").iterdir()) == []


# -- the kill loop -------------------------------------------------------------------

KEYS = ["asr/aliases/production", "asr/versions/v1/model.pt", "asr/history.jsonl"]
VALUES = [bytes([65 + i]) * (4096 * (1 + 7 * i)) for i in range(3)]


def _write_forever(root: str, seed: int) -> None:
    """Child: rewrite every key with the values in turn until killed."""
    store = LocalStore(Path(root), fsync=False)
    rng = random.Random(seed)
    while True:
        key = rng.choice(KEYS)
        store.put_bytes("bkt", key, rng.choice(VALUES))


def test_sigkilled_writers_never_leave_an_unreadable_object(tmp_path: Path) -> None:
    """Writers SIGKILLed at random moments, over and over (two at a time): after each
    kill every object reads as one of the values ever written, stat agrees with the
    bytes, and recover finds nothing it cannot fix. The loop runs at least 20 rounds and
    until it has seen 5 writes interrupted mid-commit (at most 150), and checks that it
    saw some."""
    root = tmp_path / "store"
    LocalStore(root).ensure_bucket("bkt")
    for key in KEYS:
        LocalStore(root).put_bytes("bkt", key, VALUES[0])
    rng = random.Random(12)
    interrupted = kills = 0
    while kills < 150 and (kills < 20 or interrupted < 5):
        writers = [CTX.Process(target=_write_forever, args=(str(root), kills + i)) for i in (0, 1)]
        for writer in writers:
            writer.start()
        time.sleep(rng.uniform(0.02, 0.08))
        for writer in writers:
            os.kill(writer.pid or 0, signal.SIGKILL)
            writer.join(timeout=30)
        kills += 1
        interrupted += sum("prev" in r for r in _records(LocalStore(root)).values())
        store = LocalStore(root)
        for key in KEYS:
            body = store.get_bytes("bkt", key)
            assert body in VALUES, key
            assert store.stat("bkt", key).sha256 == _sha(body)
        assert store.recover("bkt").ok
    assert interrupted >= 1, f"no kill landed mid-commit in {kills} kills"
    assert sweep_temp(root, min_age_s=0) >= 0
    assert list((root / ".tmp").iterdir()) == []


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
