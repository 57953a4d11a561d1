"""The ledger's survey (what a retraining run looks at): the same open and committed
batches as the full scan, without listing the objects of any batch, and the local
store's name-only listings keep ``list``'s rules (no links, no special files)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from speechloop.data.ledger import Claim, Ledger
from speechloop.storage.base import ObjectInfo
from speechloop.storage.local import LocalStore
from tests.unit.ingest_support import BUCKET, clip, put_batch


class ListCountingStore(LocalStore):
    """A LocalStore that counts the objects its metadata listing (``list``) yields."""

    listed = 0

    def list(
        self, bucket: str, prefix: str = "", *, start_after: str | None = None
    ) -> Iterator[ObjectInfo]:
        for info in super().list(bucket, prefix, start_after=start_after):
            self.listed += 1
            yield info


def _batch(store: LocalStore, batch_id: str, rows: int = 3) -> None:
    audio = {f"u{i}.wav": clip(0.4) for i in range(rows)}
    put_batch(store, "asr", batch_id, [{"id": f"{batch_id}-{i}", "audio": f"u{i}.wav",
                                        "text": "hello"} for i in range(rows)], audio)  # fmt: skip


def _stage(store: LocalStore, ledger: Ledger, batch_id: str, run_id: str) -> None:
    sha = store.stat(BUCKET, f"asr/batches/{batch_id}/manifest.jsonl").sha256
    ledger.stage(Claim(batch_id, run_id, sha, 3, 3, 0))


def test_survey_finds_what_scan_finds_without_listing_batch_objects(tmp_path: Path) -> None:
    """Pending, staged, committed (also with its objects deleted since), incomplete and a
    batch whose manifest is a link: the survey's open and committed batches equal the
    scan's, and it reads no object's metadata (the scan lists every object of every
    batch)."""
    store = ListCountingStore(tmp_path / "store", fsync=False)
    ledger = Ledger(store, BUCKET, "asr")
    for batch_id in ("a-pending", "b-staged", "c-done", "d-done-gone", "e-linked"):
        _batch(store, batch_id)
    store.put_bytes(BUCKET, "asr/batches/f-incomplete/u0.wav", clip(0.4))
    _stage(store, ledger, "b-staged", "r1")
    for batch_id in ("c-done", "d-done-gone"):
        _stage(store, ledger, batch_id, "r2")
    ledger.commit("r2", ["c-done", "d-done-gone"])
    for info in list(store.list(BUCKET, "asr/batches/d-done-gone/")):
        store.delete(BUCKET, info.key)
    manifest = tmp_path / "store" / BUCKET / "asr/batches/e-linked/manifest.jsonl"
    manifest.unlink()
    manifest.symlink_to(tmp_path / "store" / BUCKET / "asr/batches/a-pending/manifest.jsonl")

    store.listed = 0
    view = ledger.survey()
    assert store.listed == 0
    assert view.open == ("a-pending", "b-staged")
    assert view.committed == ("c-done", "d-done-gone")
    states = {s.batch_id: s.state for s in ledger.scan()}
    assert store.listed > 0
    assert sorted(b for b, s in states.items() if s in ("pending", "staged")) == list(view.open)
    assert sorted(b for b, s in states.items() if s == "committed") == list(view.committed)


def test_name_listings_keep_the_local_store_rules(tmp_path: Path) -> None:
    """list_keys and list_prefixes name exactly what ``list`` shows: a linked file, a
    linked folder, a FIFO and a folder holding only those are skipped."""
    store = LocalStore(tmp_path / "store", fsync=False)
    store.ensure_bucket(BUCKET)
    for key in ("p/a/x", "p/b/c/y", "p/z", "q/w"):
        store.put_bytes(BUCKET, key, b"1")
    root = tmp_path / "store" / BUCKET
    (root / "p" / "link-dir").symlink_to(root / "q")
    (root / "p" / "only-links").mkdir()
    (root / "p" / "only-links" / "l").symlink_to(root / "q" / "w")
    os.mkfifo(root / "p" / "a" / "fifo")
    (root / "p" / "empty").mkdir()
    (root / "p" / "a" / "u").symlink_to(tmp_path)  # a link leaving the store

    listed = [info.key for info in store.list(BUCKET, "p/")]
    assert store.list_keys(BUCKET, "p/") == listed == ["p/a/x", "p/b/c/y", "p/z"]
    assert store.list_prefixes(BUCKET, "p/") == ["a", "b"]
    assert store.list_keys(BUCKET, "p/b") == ["p/b/c/y"]
    assert store.list_keys(BUCKET, "p/link-dir/") == []
    assert store.list_prefixes(BUCKET, "p/link-dir/") == []
    assert store.list_prefixes(BUCKET, "") == ["p", "q"]
