"""Conditional writes that survive a lost reply: read with etag, put, and on doubt re-read.

Every registry write is a compare-and-swap on one object and carries a *write id* (a
token naming the writer and its intent) inside the bytes it writes. When the reply to a
put is lost, the store layer retries it, and the retry may meet the writer's own earlier
write and report Conflict (or the put fails outright with a store error although the
server applied it). :func:`put_checked` then asks the caller's ``landed`` function
whether the token is in the store: if so the write is the writer's own and succeeded;
if not, a rival won the race (Conflict) or the store really failed (the error
propagates).
"""

from __future__ import annotations

import random
import secrets
import time
from collections.abc import Callable

from speechloop.errors import Conflict, NotFound, StoreError
from speechloop.storage.base import ObjectStore

MAX_ATTEMPTS = 200


def new_write_id(action: str, kind: str, target: str, run_id: str | None = None) -> str:
    """The token of one intended change: ``<run id>:<action>:<kind>:<target>``.

    Without ``run_id`` a fresh random one is used, so the token is unique to this call.
    With it, a re-run of the same run (same intent) recognises the change it already
    made and reports it instead of making it twice.
    """
    run = run_id if run_id else secrets.token_hex(8)
    return f"{run}:{action}:{kind}:{target}"


def pause(attempt: int) -> None:
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


def put_checked(
    store: ObjectStore,
    bucket: str,
    key: str,
    data: bytes,
    *,
    etag: str | None,
    landed: Callable[[], bool],
) -> bool:
    """Write ``data`` if ``key`` still has ``etag`` (absent when None); True if it is ours.

    True: the store acknowledged the write, or -- after a Conflict or a failure that may
    hide a lost reply -- ``landed()`` found the caller's token in the store (the write
    was applied, and may have been built on by a later writer since). False: a rival
    changed the object first and nothing of ours landed; the caller re-reads and tries
    again. A store failure whose write did not land propagates.
    """
    try:
        store.put_bytes(bucket, key, data, if_none_match=etag is None, if_match=etag)
    except Conflict:
        return landed()  # a rival's write, or our own retried after a lost reply
    except (StoreError, OSError):
        if not landed():  # the reply was lost, or the write really failed
            raise
    return True
