"""LocalStore specifics that the shared contract suite does not cover: on-disk layout,
path tricks, cross-process compare-and-swap, the store URL factory."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import pytest

from speechloop.config import Settings
from speechloop.errors import Conflict, IntegrityError, InvalidInput, NotFound
from speechloop.storage import open_store
from speechloop.storage.local import LocalStore


@pytest.fixture
def local(tmp_path: Path) -> LocalStore:
    store = LocalStore(tmp_path / "store")
    store.ensure_bucket("bkt")
    return store


@pytest.mark.parametrize(
    "key", ["../evil", "a/../../b", "/etc/passwd", "a\\b", "a//b", "", "a/./b", "a/"]
)
def test_path_tricks_rejected(local: LocalStore, key: str) -> None:
    """Keys that could escape the bucket directory or alias another key are refused."""
    with pytest.raises(InvalidInput):
        local.put_bytes("bkt", key, b"x")
    with pytest.raises(InvalidInput):
        local.get_bytes("bkt", key)


def test_invalid_bucket_name_rejected(local: LocalStore) -> None:
    """Bucket names follow S3 rules, so '.meta' or '../x' can never be a bucket."""
    for bucket in (".meta", "../x", "A", "ab"):
        with pytest.raises(InvalidInput):
            local.ensure_bucket(bucket)


def test_layout_one_directory_per_bucket(local: LocalStore) -> None:
    """An object lives at <root>/<bucket>/<key> with its plain bytes."""
    local.put_bytes("bkt", "asr/batches/b1/manifest.jsonl", b"{}\n")
    assert (local.root / "bkt" / "asr/batches/b1/manifest.jsonl").read_bytes() == b"{}\n"


def test_hand_placed_file_is_adopted(local: LocalStore) -> None:
    """A file copied into a bucket by hand (no checksum record) is readable and listed,
    with the sha256 of its bytes; once the store rewrites it, it is verified as usual."""
    import hashlib

    (local.root / "bkt" / "hand").mkdir()
    (local.root / "bkt" / "hand" / "stray.bin").write_bytes(b"abc")
    assert local.get_bytes("bkt", "hand/stray.bin") == b"abc"
    info = local.stat("bkt", "hand/stray.bin")
    assert info.sha256 == hashlib.sha256(b"abc").hexdigest()
    assert [o.key for o in local.list("bkt")] == ["hand/stray.bin"]
    local.put_bytes("bkt", "hand/stray.bin", b"new", if_match=info.etag)
    (local.root / "bkt" / "hand" / "stray.bin").write_bytes(b"NEW")
    with pytest.raises(IntegrityError, match=r"bkt/hand/stray\.bin"):
        local.get_bytes("bkt", "hand/stray.bin")


def test_corrupt_checksum_record_is_integrity_error(local: LocalStore) -> None:
    """A checksum record that is not JSON makes the object unreadable, naming it."""
    local.put_bytes("bkt", "k", b"1")
    (local.root / ".meta" / "bkt" / "k.json").write_text("{not json")
    with pytest.raises(IntegrityError, match="bkt/k"):
        local.get_bytes("bkt", "k")


def test_object_and_prefix_clash_is_conflict(local: LocalStore) -> None:
    """The filesystem cannot hold both 'a' and 'a/b': the second write is a Conflict."""
    local.put_bytes("bkt", "a", b"1")
    with pytest.raises(Conflict, match="a/b"):
        local.put_bytes("bkt", "a/b", b"2")


def test_delete_prunes_empty_directories(local: LocalStore) -> None:
    """Deleting the last object under a prefix leaves no empty directories behind."""
    local.put_bytes("bkt", "x/y/z", b"1")
    local.delete("bkt", "x/y/z")
    assert not (local.root / "bkt" / "x").exists()
    assert list(local.list("bkt")) == []


def _race_create(root: str, n: int, queue: mp.Queue) -> None:
    store = LocalStore(Path(root))
    wins = 0
    for i in range(n):
        try:
            store.put_bytes("bkt", f"k{i}", b"p", if_none_match=True)
            wins += 1
        except Conflict:
            pass
    queue.put(wins)


def test_if_none_match_is_exclusive_across_processes(local: LocalStore) -> None:
    """Two processes creating the same 40 keys with if_none_match: each key won exactly once."""
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_race_create, args=(str(local.root), 40, queue)) for _ in range(2)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=30)
    assert sum(queue.get(timeout=5) for _ in procs) == 40
    assert len(list(local.list("bkt"))) == 40


def test_open_store_file_url_relative_to_cwd(tmp_path: Path, monkeypatch) -> None:
    """file://./rel resolves against the working directory; unknown schemes are refused."""
    monkeypatch.chdir(tmp_path)
    store = open_store(Settings(store="file://./here/store"))
    assert isinstance(store, LocalStore)
    assert store.root == (tmp_path / "here" / "store").resolve()
    with pytest.raises(InvalidInput, match="ftp://"):
        open_store(Settings(store="ftp://x"))


def test_missing_bucket_named(local: LocalStore) -> None:
    """Reading from a bucket that does not exist names the bucket."""
    with pytest.raises(NotFound, match="nobucket"):
        local.get_bytes("nobucket", "k")
