"""The history log ``<kind>/history.jsonl``: one JSON line per promotion, rejection and
rollback, each exactly once and in commit order.

- Every line carries ``write_id`` (the token of the change) and ``seq`` (its 1-based
  position in the log). Appending is a compare-and-swap on the whole file that first
  looks for its token, so a retry after a lost reply finds its own line and does not
  write it twice.
- An alias change is committed with its history entry inside the production alias
  record (``change``). Before every append and every alias write, the writer copies the
  current production's ``change`` into the log if it is missing ("catch-up"). So a
  crash between the alias write and its history line loses nothing (the next writer,
  ``models repair`` or :func:`read` brings it back), and alias changes appear in the
  order of their commits: a writer can only replace a production record whose line is
  already in the log.
- Lines of the old format (no ``seq``, no ``write_id``) are read as they are; their
  ``seq`` is their position.
"""

from __future__ import annotations

import json
from typing import Any

from speechloop.errors import Conflict, IntegrityError
from speechloop.registry.cas import MAX_ATTEMPTS, pause, put_checked, read_versioned
from speechloop.registry.model import history_key
from speechloop.storage.base import ObjectStore


def parse(data: bytes | None, where: str) -> list[dict[str, Any]]:
    """The records of a history file, each with its ``seq`` (IntegrityError if unreadable)."""
    if data is None:
        return []
    records: list[dict[str, Any]] = []
    for number, line in enumerate(data.decode(errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise IntegrityError(f"{where} line {number} is not JSON: {exc}") from None
        if not isinstance(record, dict):
            raise IntegrityError(f"{where} line {number} is not a JSON object")
        record.setdefault("seq", len(records) + 1)
        records.append(record)
    return records


def _line(record: dict[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, ensure_ascii=False).encode() + b"\n"


def has_write(records: list[dict[str, Any]], write_id: str) -> bool:
    """Whether a record with token ``write_id`` is among ``records``."""
    return any(r.get("write_id") == write_id for r in records)


def read_log(store: ObjectStore, bucket: str, kind: str) -> list[dict[str, Any]]:
    """The lines of the log as stored (no catch-up), each with ``seq``."""
    key = history_key(kind)
    return parse(read_versioned(store, bucket, key)[0], f"{bucket}/{key}")


def append(store: ObjectStore, bucket: str, kind: str, entry: dict[str, Any]) -> dict[str, Any]:
    """Append ``entry`` (which has a ``write_id``) unless a line with its token is there.

    Returns the line as stored, with its ``seq``.
    """
    key, write_id = history_key(kind), str(entry["write_id"])
    for attempt in range(MAX_ATTEMPTS):
        data, etag = read_versioned(store, bucket, key)
        records = parse(data, f"{bucket}/{key}")
        mine = [r for r in records if r.get("write_id") == write_id]
        if mine:
            return mine[0]
        line = {**entry, "seq": len(records) + 1}

        def landed() -> bool:
            return has_write(read_log(store, bucket, kind), write_id)

        if put_checked(store, bucket, key, (data or b"") + _line(line), etag=etag, landed=landed):
            return line
        pause(attempt)
    raise Conflict(f"{bucket}/{key} kept changing: gave up after {MAX_ATTEMPTS} attempts")


def pending_change(production: dict[str, Any] | None) -> dict[str, Any] | None:
    """The history entry committed with a production record (None for old records)."""
    change = production.get("change") if production else None
    return change if isinstance(change, dict) and change.get("write_id") else None


def last_alias_change(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The last promotion or rollback in ``records`` (rejections move no alias)."""
    for record in reversed(records):
        if record.get("action") in ("promote", "rollback") and "version" in record:
            return record
    return None


def catch_up(store: ObjectStore, bucket: str, kind: str, production: dict[str, Any] | None) -> None:
    """Make sure the log holds the change committed with ``production`` (idempotent)."""
    change = pending_change(production)
    if change is not None:
        append(store, bucket, kind, change)


def with_pending(
    records: list[dict[str, Any]], production: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """``records`` deduplicated by token, plus production's change if the log lacks it.

    Every writer catches the log up before it writes, so a missing change can only be
    production's own, and it belongs at the end.
    """
    seen: set[str] = set()
    out = []
    for record in records:
        token = record.get("write_id")
        if token is not None:
            if token in seen:
                continue
            seen.add(str(token))
        out.append(record)
    change = pending_change(production)
    if change is not None and str(change["write_id"]) not in seen:
        out.append({**change, "seq": len(records) + 1})
    return out
