"""The ``production`` alias, committed by compare-and-swap on one object, and its mirror.

The ``production`` alias object is the commit point of a promotion or rollback. It
embeds the alias it replaced as ``previous`` and the history entry of the change as
``change``, so alias, previous and history change in one atomic conditional write and
can never disagree. The record carries the change's ``write_id``: a writer whose reply
was lost finds its own write by that token (in production, in the ``previous`` of a
later record, or in the history log a later writer caught up) and reports success
instead of taking it for a rival's.

``<kind>/aliases/previous`` is a mirror of the embedded record for people and tools
reading the bucket; :func:`sync_previous` rewrites it after each change and re-checks
production afterwards, so racing writers leave it equal to the final production's
``previous``. ``<kind>/history.jsonl`` is kept by :mod:`.history`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from speechloop.errors import Conflict, IntegrityError, NotFound
from speechloop.registry import history
from speechloop.registry.cas import MAX_ATTEMPTS, pause, put_checked, read_versioned
from speechloop.registry.model import alias_key, dumps
from speechloop.storage.base import ObjectStore


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
    """An alias record without its embedded ``previous`` and ``change`` (no chains)."""
    return {k: v for k, v in record.items() if k not in ("previous", "change")}


def _as_alias(entry: dict[str, Any]) -> dict[str, Any]:
    """An alias-shaped record from a history entry (for a write found only in the log)."""
    return {
        "version": entry["version"],
        "promoted_at": entry.get("ts", ""),
        "reason": entry.get("reason", ""),
        "action": entry.get("action", "promote"),
        "decision": entry.get("decision"),
        "write_id": entry["write_id"],
    }


def find_write(
    production: dict[str, Any] | None, log: list[dict[str, Any]], write_id: str
) -> dict[str, Any] | None:
    """The alias record written with ``write_id``, wherever it is now; None if nowhere.

    A later writer can only replace a production record after copying its change into
    the log, so production (or its ``previous``) and the log together hold every
    committed change.
    """
    if production is not None:
        if production.get("write_id") == write_id:
            return production
        previous = production.get("previous")
        if isinstance(previous, dict) and previous.get("write_id") == write_id:
            return previous
    for entry in log:
        if entry.get("write_id") == write_id and "version" in entry:
            return _as_alias(entry)
    return None


def _read_current(
    store: ObjectStore, bucket: str, key: str
) -> tuple[dict[str, Any] | None, str | None, str | None]:
    """Production's record and etag, and why it is unreadable (None when it is fine).

    Bytes that match no checksum record (torn by a writer from before the crash-safe
    commit) come back with no etag: only an unconditional write replaces them. Bytes
    that are intact but not an alias record come back with their etag.
    """
    try:
        data, etag = read_versioned(store, bucket, key)
    except IntegrityError as exc:
        return None, None, str(exc)
    try:
        return parse_record(data, key), etag, None
    except IntegrityError as exc:
        return None, etag, str(exc)


def _replacement(new: dict[str, Any], log: list[dict[str, Any]], unreadable: str) -> dict[str, Any]:
    """``new`` as it replaces an unreadable production: its change says so, and its
    ``previous`` is the history's last alias change (the best record of what was there)."""
    change = {**new["change"], "replaced_unreadable": unreadable}
    last = history.last_alias_change(log)
    previous = _as_alias({**last, "write_id": last.get("write_id", "")}) if last else None
    return {**new, "change": change, "previous": previous}


def commit(
    store: ObjectStore,
    bucket: str,
    kind: str,
    build: Callable[[dict[str, Any] | None], dict[str, Any]],
    write_id: str,
) -> tuple[dict[str, Any], bool]:
    """Compare-and-swap production to ``build(old)`` (plus ``previous`` and ``write_id``).

    ``build`` returns the new record including its history entry (``change``) and may
    raise to refuse. Returns the record and whether this call wrote it (False: an
    earlier call with the same ``write_id`` already had).

    An unreadable production (torn by an old writer) is replaced as if absent
    (``build(None)``); the change records ``replaced_unreadable`` and the history gets
    its line, so the replacement is visible. Torn bytes cannot be compare-and-swapped:
    they are overwritten unconditionally and the write is re-read, Conflict if a rival's
    replaced it.
    """
    key = alias_key(kind, "production")
    for attempt in range(MAX_ATTEMPTS):
        old, etag, unreadable = _read_current(store, bucket, key)
        log = history.read_log(store, bucket, kind)
        found = find_write(old, log, write_id)
        if found is not None:
            return found, False
        if (change := history.pending_change(old)) and not history.has_write(
            log, str(change["write_id"])
        ):
            history.append(store, bucket, kind, change)
        new = {**build(old), "write_id": write_id}
        new["previous"] = strip_previous(old) if old else None
        if unreadable is not None:
            new = _replacement(new, log, unreadable)

        def landed() -> bool:
            production = read_production(store, bucket, kind)
            log = history.read_log(store, bucket, kind)
            return find_write(production, log, write_id) is not None

        if unreadable is not None and etag is None:
            store.put_bytes(bucket, key, dumps(new))
            if not landed():
                raise Conflict(f"{bucket}/{key} was replaced by another writer meanwhile")
            return new, True
        if put_checked(store, bucket, key, dumps(new), etag=etag, landed=landed):
            return new, True
        pause(attempt)
    raise Conflict(f"{bucket}/{key} kept changing: gave up after {MAX_ATTEMPTS} attempts")


def _read_mirror(store: ObjectStore, bucket: str, key: str) -> tuple[Any, str | None]:
    """The mirror's JSON and etag; an unreadable (torn, not JSON) mirror reads as None."""
    try:
        data, etag = read_versioned(store, bucket, key)
    except IntegrityError:
        return None, store.stat(bucket, key).etag
    try:
        return (json.loads(data) if data is not None else None), etag
    except ValueError:
        return None, etag


def sync_previous(store: ObjectStore, bucket: str, kind: str) -> bool:
    """Make the ``previous`` mirror equal to production's embedded ``previous``.

    Returns whether the mirror was rewritten. An unreadable mirror is rewritten.
    """
    prod_key, prev_key = alias_key(kind, "production"), alias_key(kind, "previous")
    wrote = False
    for attempt in range(MAX_ATTEMPTS):
        prod_bytes, prod_etag = read_versioned(store, bucket, prod_key)
        record = parse_record(prod_bytes, prod_key)
        desired = record.get("previous") if record else None
        mirror, mirror_etag = _read_mirror(store, bucket, prev_key)
        if desired is None or mirror == desired:
            return wrote
        body = dumps(desired)

        def landed(desired: Any = desired) -> bool:
            return bool(_read_mirror(store, bucket, prev_key)[0] == desired)

        if not put_checked(store, bucket, prev_key, body, etag=mirror_etag, landed=landed):
            pause(attempt)
            continue
        wrote = True
        if read_versioned(store, bucket, prod_key)[1] == prod_etag:
            return wrote
    raise Conflict(f"{bucket}/{prev_key} could not be synchronised with production")


def mirror_in_sync(store: ObjectStore, bucket: str, kind: str) -> bool:
    """Whether the ``previous`` mirror equals production's embedded ``previous``."""
    record = read_production(store, bucket, kind)
    desired = record.get("previous") if record else None
    if desired is None:
        return True
    try:
        return _read_mirror(store, bucket, alias_key(kind, "previous"))[0] == desired
    except NotFound:
        return False
