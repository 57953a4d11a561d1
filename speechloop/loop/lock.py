"""One retraining per model kind at a time, across processes and machines: a store lease.

The lease is one object, ``<kind>/locks/retrain.json`` in the models bucket, written with
``if_none_match`` (compare-and-swap on every backend): of two runs starting together
exactly one gets it, the other gets :class:`~speechloop.errors.Conflict` naming the
holder. A lease carries an expiry, so a run killed without releasing it blocks the kind
only until then; a later run takes an expired lease over with ``if_match`` on its etag.

The Prefect deployment adds its own concurrency limit (one flow run per kind), but the
CLI and other callers share only the store, so the use-case takes this lease itself.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

from speechloop.errors import Conflict, IntegrityError, NotFound, StoreError
from speechloop.storage.base import ObjectStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Lease:
    """Who holds the retraining of a kind, since when, until when (epoch seconds)."""

    kind: str
    run_id: str
    acquired_at: float
    expires_at: float

    def to_bytes(self) -> bytes:
        """The stored JSON form."""
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> Lease:
        """Parse a stored lease; IntegrityError naming ``where`` if it is not one."""
        try:
            obj = json.loads(data)
            return cls(str(obj["kind"]), str(obj["run_id"]), float(obj["acquired_at"]),
                       float(obj["expires_at"]))  # fmt: skip
        except (ValueError, KeyError, TypeError) as exc:
            raise IntegrityError(f"retrain lease {where} is corrupt: {exc}") from None


def lease_key(kind: str) -> str:
    """Key of the retraining lease of ``kind`` in the models bucket."""
    return f"{kind}/locks/retrain.json"


def acquire(store: ObjectStore, bucket: str, kind: str, run_id: str, ttl_s: float) -> Lease:
    """Take the lease of ``kind`` for ``run_id``; Conflict if another live run holds it."""
    store.ensure_bucket(bucket)
    key = lease_key(kind)
    now = time.time()
    lease = Lease(kind, run_id, now, now + ttl_s)
    try:
        store.put_bytes(bucket, key, lease.to_bytes(), if_none_match=True)
        return lease
    except Conflict:
        pass
    try:
        info = store.stat(bucket, key)
        held = Lease.from_bytes(store.get_bytes(bucket, key), key)
    except NotFound:  # released in between: try once more from scratch
        store.put_bytes(bucket, key, lease.to_bytes(), if_none_match=True)
        return lease
    if held.run_id != run_id and held.expires_at > now:
        raise Conflict(
            f"another {kind} retraining is running (run {held.run_id!r}, lease until "
            f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(held.expires_at))}): "
            "wait for it to finish"
        )
    store.put_bytes(bucket, key, lease.to_bytes(), if_match=info.etag)
    return lease


def release(store: ObjectStore, bucket: str, lease: Lease) -> None:
    """Drop the lease if it is still ours (a taken-over lease is left to its new holder)."""
    key = lease_key(lease.kind)
    try:
        held = Lease.from_bytes(store.get_bytes(bucket, key), key)
    except NotFound:
        return
    if held.run_id == lease.run_id:
        store.delete(bucket, key)


@contextmanager
def retrain_lease(
    store: ObjectStore, bucket: str, kind: str, run_id: str, ttl_s: float
) -> Iterator[Lease]:
    """Hold the retraining lease of ``kind`` for the ``with`` block."""
    lease = acquire(store, bucket, kind, run_id, ttl_s)
    try:
        yield lease
    finally:
        try:
            release(store, bucket, lease)
        except StoreError as exc:  # the store is down: the lease expires on its own
            log.warning("could not release the %s retrain lease: %s", kind, exc)
