"""Aliases and history by compare-and-swap on single objects.

The ``production`` alias object is the commit point of a promotion or rollback. It
embeds the alias it replaced as ``previous``, so both aliases change in one atomic
conditional write and can never disagree. ``<kind>/aliases/previous`` is a mirror of
that embedded record for people and tools reading the bucket; :func:`sync_previous`
rewrites it after each change and re-checks production afterwards, so racing writers
leave it equal to the final production's ``previous``. ``history.jsonl`` is appended by
a read-modify-write loop with ``if_match``, after the alias was written.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from typing import Any

from speechloop.errors import Conflict, IntegrityError, NotFound
from speechloop.registry.model import alias_key, dumps, history_key
from speechloop.storage.base import ObjectStore

MAX_ATTEMPTS = 200


def _pause(attempt: int) -> None:
    """A short randomised pause between compare-and-swap attempts (less lock-step)."""
    time.sleep(random.uniform(0, min(0.002 * 2**attempt, 0.05)))


def read_versioned(store: ObjectStore, bucket: str, key: str) -> tuple[bytes | None, str | None]:
    """An object's bytes with the etag they had (``(None, None)`` if absent).

    The etag is read *before* the bytes: if the object changes in between, a write
    conditioned on that etag fails, so no update is ever lost.
    """
    try:
        etag = store.stat(bucket, key).etag
        return store.get_bytes(bucket, key), etag
    except NotFound:
        return None, None


def cas_update(
    store: ObjectStore,
    bucket: str,
    key: str,
    update: Callable[[bytes | None], bytes | None],
) -> bytes | None:
    """Apply ``update`` to the current bytes and write the result if nothing changed
    meanwhile; retry on a lost race. ``update`` returning None means "no write"."""
    for attempt in range(MAX_ATTEMPTS):
        current, etag = read_versioned(store, bucket, key)
        new = update(current)
        if new is None:
            return current
        try:
            store.put_bytes(bucket, key, new, if_none_match=etag is None, if_match=etag)
        except Conflict:
            _pause(attempt)
            continue
        return new
    raise Conflict(f"{bucket}/{key} kept changing: gave up after {MAX_ATTEMPTS} attempts")


def parse_record(data: bytes | None, where: str) -> dict[str, Any] | None:
    """The JSON object in an alias file (None if absent); IntegrityError if unreadable."""
    if data is None:
        return None
    try:
        record = json.loads(data)
    except ValueError as exc:
        raise IntegrityError(f"alias {where} is not JSON: {exc}") from None
    if not isinstance(record, dict) or "version" not in record:
        raise IntegrityError(f"alias {where} has no version")
    return record


def read_production(store: ObjectStore, bucket: str, kind: str) -> dict[str, Any] | None:
    """The production alias record of ``kind``, or None before the first promotion."""
    key = alias_key(kind, "production")
    return parse_record(read_versioned(store, bucket, key)[0], key)


def strip_previous(record: dict[str, Any]) -> dict[str, Any]:
    """An alias record without its embedded ``previous`` (no chains of history)."""
    return {k: v for k, v in record.items() if k != "previous"}


def sync_previous(store: ObjectStore, bucket: str, kind: str) -> None:
    """Make the ``previous`` mirror equal to production's embedded ``previous``."""
    prod_key, prev_key = alias_key(kind, "production"), alias_key(kind, "previous")
    for attempt in range(MAX_ATTEMPTS):
        prod_bytes, prod_etag = read_versioned(store, bucket, prod_key)
        record = parse_record(prod_bytes, prod_key)
        desired = record.get("previous") if record else None
        mirror, mirror_etag = read_versioned(store, bucket, prev_key)
        if desired is None or (mirror is not None and json.loads(mirror) == desired):
            return
        try:
            store.put_bytes(
                bucket,
                prev_key,
                dumps(desired),
                if_none_match=mirror_etag is None,
                if_match=mirror_etag,
            )
        except Conflict:
            _pause(attempt)
            continue
        if read_versioned(store, bucket, prod_key)[1] == prod_etag:
            return
    raise Conflict(f"{bucket}/{prev_key} could not be synchronised with production")


def append_history(store: ObjectStore, bucket: str, kind: str, record: dict[str, Any]) -> None:
    """Append one JSON line to ``<kind>/history.jsonl`` (compare-and-swap loop)."""
    line = json.dumps(record, sort_keys=True, ensure_ascii=False).encode() + b"\n"
    cas_update(store, bucket, history_key(kind), lambda cur: (cur or b"") + line)


def read_history(store: ObjectStore, bucket: str, kind: str) -> list[dict[str, Any]]:
    """All history records of ``kind``, in the order they were appended."""
    data, _ = read_versioned(store, bucket, history_key(kind))
    if data is None:
        return []
    return [json.loads(line) for line in data.decode().splitlines() if line.strip()]
