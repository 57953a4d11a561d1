"""The ingestion ledger: which labelled batches a consumer has taken, and which it consumed.

Kept in the object store beside the data, so every consumer (CLI, flow, another pod)
sees the same ledger::

    <kind>/ledger/<batch_id>/staged/<run_id>.json   a claim: run R ingested the batch
                                                    (manifest sha256, row counts, time)
    <kind>/ledger/<batch_id>/committed.json         the commit: written once, by one run

A batch's state:

- ``incomplete``: objects under ``<kind>/batches/<id>/`` but no ``manifest.jsonl`` yet
  (producers upload the manifest last); ignored by ingestion.
- ``pending``: complete, never claimed. ``staged``: claimed by one or more runs, none
  committed. Ingestion takes pending *and* staged batches, so a run that failed before
  committing loses nothing: the next run takes the same batches again.
- ``committed``: a consumer called :meth:`Ledger.commit` after its work succeeded; the
  batch is never consumed again.

The commit record is written with ``if_none_match``, a compare-and-swap on every
backend, so of two consumers committing one batch exactly one wins; the other gets
:class:`~speechloop.errors.Conflict`. A commit also checks that the manifest still has
the sha256 the run ingested, so a batch re-uploaded after staging is not marked consumed
with rows the run never saw. The claim holds the hash of the bytes the run read; at
commit the ledger compares it with the checksum the store records, or, for a manifest
uploaded by ``mc``, boto3 or the MinIO console (no speechloop metadata), with the hash
of the bytes the store serves now. Batches from any S3 tool commit like our own.

The claim also records what the store reported for every object of the batch when the
run listed it before reading (:func:`batch_objects`: size, etag, and the sha256 of ours
where the store has one). A commit lists the batch prefix once more (one LIST, no GET per
object) and refuses a batch whose audio was replaced, removed or added since. Claims
written before this record existed carry no object list and get the manifest check only.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from speechloop.data.manifest import MANIFEST, Kind, is_safe_name
from speechloop.errors import Conflict, IntegrityError, InvalidInput, NotFound
from speechloop.storage.base import ObjectStore

BatchState = Literal["incomplete", "pending", "staged", "committed"]
COMMITTED = "committed.json"
ObjectState = dict[str, Any]
"""What a listing reported for one object: ``{"size": int, "etag": str, "sha256": str}``."""
_SHOWN = 5  # changed objects named in a refusal; the rest are counted


def utc_now() -> str:
    """The current time as an ISO-8601 UTC string (ledger and report timestamps)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Claim:
    """One run's claim on one batch: what it ingested (or, in a commit record, consumed)."""

    batch_id: str
    run_id: str
    manifest_sha256: str
    rows_in: int
    good: int
    quarantined: int
    at: str = field(default_factory=utc_now)
    objects: dict[str, ObjectState] | None = None
    """Batch objects (name below the batch prefix -> state) as listed before reading;
    None in claims written before the ledger recorded them."""

    def to_bytes(self) -> bytes:
        """The JSON form stored in the ledger."""
        return json.dumps(asdict(self), indent=1).encode()

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> Claim:
        """Parse a stored claim; IntegrityError naming ``where`` if it is not one."""
        try:
            obj = json.loads(data)
            fields = {name: obj[name] for name in cls.__dataclass_fields__ if name != "objects"}
            objects = obj.get("objects")
            if objects is not None and not isinstance(objects, dict):
                raise TypeError("'objects' is not a mapping")
            return cls(**fields, objects=objects)
        except (ValueError, KeyError, TypeError) as exc:
            raise IntegrityError(f"ledger record {where} is corrupt: {exc}") from None


@dataclass(frozen=True)
class BatchStatus:
    """Where one batch stands: its state, the runs that staged it, who committed it."""

    batch_id: str
    state: BatchState
    manifest_sha256: str | None = None
    staged_by: tuple[str, ...] = ()
    committed_by: str | None = None


@dataclass(frozen=True)
class LedgerView:
    """Which batches a consumer may take and which are consumed (:meth:`Ledger.survey`).

    ``open``: complete batches not committed (pending or staged), sorted. ``committed``:
    committed batches, sorted (a committed batch whose objects were since deleted too).
    """

    open: tuple[str, ...]
    committed: tuple[str, ...]


class Ledger:
    """The ledger of one kind (``asr`` or ``spk``) in the data bucket of ``store``."""

    def __init__(self, store: ObjectStore, bucket: str, kind: Kind) -> None:
        self.store = store
        self.bucket = bucket
        self.kind = kind

    # -- keys --------------------------------------------------------------------------

    def batch_prefix(self, batch_id: str) -> str:
        """Where a batch's manifest and audio live."""
        return f"{self.kind}/batches/{batch_id}"

    def _claim_key(self, batch_id: str, run_id: str) -> str:
        return f"{self.kind}/ledger/{batch_id}/staged/{run_id}.json"

    def _commit_key(self, batch_id: str) -> str:
        return f"{self.kind}/ledger/{batch_id}/{COMMITTED}"

    # -- reading -----------------------------------------------------------------------

    def scan(self, *, owners: bool = False) -> list[BatchStatus]:
        """Every batch under ``<kind>/batches/`` with its state, sorted by batch id.

        ``owners``: also read who committed each committed batch (one read per batch).
        """
        manifests: dict[str, str] = {}
        seen: set[str] = set()
        head = f"{self.kind}/batches/"
        for info in self.store.list(self.bucket, head):
            batch_id, _, rest = info.key[len(head) :].partition("/")
            seen.add(batch_id)
            if rest == MANIFEST:
                manifests[batch_id] = info.sha256
        staged: dict[str, list[str]] = {}
        committed: set[str] = set()
        head = f"{self.kind}/ledger/"
        for info in self.store.list(self.bucket, head):
            batch_id, _, rest = info.key[len(head) :].partition("/")
            if rest == COMMITTED:
                committed.add(batch_id)
            elif rest.startswith("staged/") and rest.endswith(".json"):
                staged.setdefault(batch_id, []).append(rest[len("staged/") : -len(".json")])
        return [
            self._status(b, manifests.get(b), staged.get(b, []), b in committed, owners)
            for b in sorted(seen | committed)
        ]

    def survey(self) -> LedgerView:
        """Open and committed batches, at a cost that follows the open batches, not the
        history: batch names from one prefix listing (a delimiter listing on S3; no
        object of a batch is listed), ledger keys from one listing without metadata, and
        one manifest check per batch not committed. :meth:`scan` (every object of every
        batch, with its state and hash) is for status displays; runs use this.
        """
        head = f"{self.kind}/ledger/"
        committed = {
            key[len(head) :].partition("/")[0]
            for key in self.store.list_keys(self.bucket, head)
            if key[len(head) :].partition("/")[2] == COMMITTED
        }
        names = self.store.list_prefixes(self.bucket, f"{self.kind}/batches/")
        complete = [b for b in names if b not in committed and self._has_manifest(b)]
        return LedgerView(tuple(complete), tuple(sorted(committed)))

    def _has_manifest(self, batch_id: str) -> bool:
        """Whether the batch's manifest is an object (listed like :meth:`scan` sees it: a
        manifest the store refuses to read, a link on the local store, is not one)."""
        key = f"{self.batch_prefix(batch_id)}/{MANIFEST}"
        return key in self.store.list_keys(self.bucket, key)

    def _status(
        self, batch_id: str, sha: str | None, runs: list[str], committed: bool, owners: bool
    ) -> BatchStatus:
        state: BatchState
        if committed:
            state = "committed"
        elif sha is None:
            state = "incomplete"
        else:
            state = "staged" if runs else "pending"
        committed_by = self.committed_record(batch_id).run_id if committed and owners else None
        return BatchStatus(batch_id, state, sha, tuple(sorted(runs)), committed_by)

    def committed_record(self, batch_id: str) -> Claim:
        """The commit record of a committed batch (NotFound if it is not committed)."""
        key = self._commit_key(batch_id)
        return Claim.from_bytes(self.store.get_bytes(self.bucket, key), key)

    def is_committed(self, batch_id: str) -> bool:
        """Whether a consumer has committed ``batch_id``."""
        return self.store.exists(self.bucket, self._commit_key(batch_id))

    # -- writing -----------------------------------------------------------------------

    def stage(self, claim: Claim) -> None:
        """Record that ``claim.run_id`` ingested the batch; Conflict if it is committed.

        Re-staging by the same run overwrites its claim (idempotent).
        """
        _check_name("run id", claim.run_id)
        if self.is_committed(claim.batch_id):
            raise Conflict(f"{self.kind} batch {claim.batch_id!r} is already committed")
        key = self._claim_key(claim.batch_id, claim.run_id)
        self.store.put_bytes(self.bucket, key, claim.to_bytes())

    def commit(self, run_id: str, batch_ids: Sequence[str]) -> list[str]:
        """Mark the batches as consumed by ``run_id``; call it after the run's work succeeded.

        Each batch is committed on its own (a compare-and-swap). Committing again by the
        same run is a no-op. If some batches cannot be committed (another run committed
        them, this run never staged them, their manifest changed), the others still are,
        and Conflict names both lists.
        """
        _check_name("run id", run_id)
        done: list[str] = []
        problems: list[str] = []
        for batch_id in batch_ids:
            try:
                self._commit_one(run_id, batch_id)
            except Conflict as exc:
                problems.append(str(exc))
            else:
                done.append(batch_id)
        if problems:
            raise Conflict("; ".join(problems) + f" (committed: {done or 'none'})")
        return done

    def _commit_one(self, run_id: str, batch_id: str) -> None:
        claim_key = self._claim_key(batch_id, run_id)
        try:
            claim = Claim.from_bytes(self.store.get_bytes(self.bucket, claim_key), claim_key)
        except NotFound:
            raise Conflict(f"run {run_id!r} did not stage {self.kind} batch {batch_id!r}") from None
        current = self.manifest_sha256(batch_id)
        if current != claim.manifest_sha256:
            raise Conflict(
                f"{self.kind} batch {batch_id!r} changed after run {run_id!r} ingested it: its "
                f"{MANIFEST} now has sha256 {current[:12]}..., the run read "
                f"{claim.manifest_sha256[:12]}...; ingest it again and commit that run"
            )
        if claim.objects is not None:
            self._check_objects(run_id, batch_id, claim.objects)
        record = Claim(**{**asdict(claim), "at": utc_now()})
        try:
            self.store.put_bytes(
                self.bucket, self._commit_key(batch_id), record.to_bytes(), if_none_match=True
            )
        except Conflict:
            winner = self.committed_record(batch_id)
            if winner.run_id != run_id:
                raise Conflict(
                    f"{self.kind} batch {batch_id!r} was already committed by run {winner.run_id!r}"
                ) from None

    def _check_objects(self, run_id: str, batch_id: str, recorded: dict[str, ObjectState]) -> None:
        """Conflict if the batch's objects differ from those the run listed (one LIST)."""
        current = batch_objects(self.store, self.bucket, self.batch_prefix(batch_id))
        changes = [
            f"{name} {_change(recorded.get(name), current.get(name))}"
            for name in sorted(recorded.keys() | current.keys())
            if not _same_object(recorded.get(name), current.get(name))
        ]
        if changes:
            more = len(changes) - _SHOWN
            shown = ", ".join(changes[:_SHOWN]) + (f" and {more} more" if more > 0 else "")
            raise Conflict(
                f"{self.kind} batch {batch_id!r} changed after run {run_id!r} ingested it: "
                f"{shown}; ingest it again and commit that run"
            )

    def manifest_sha256(self, batch_id: str) -> str:
        """The sha256 of a batch's manifest as the store serves it now.

        The checksum the store records where there is one (speechloop's own uploads;
        the local store hashes hand-placed files); otherwise the ledger reads the
        manifest and hashes it, since objects put by ``mc``, boto3 or the MinIO console
        carry no sha256 of ours. Conflict if the manifest is gone or its bytes fail the
        store's own check (MD5 etag).
        """
        key = f"{self.batch_prefix(batch_id)}/{MANIFEST}"
        try:
            recorded = self.store.stat(self.bucket, key).sha256
            if recorded:
                return recorded
            return hashlib.sha256(self.store.get_bytes(self.bucket, key)).hexdigest()
        except NotFound:
            raise Conflict(f"{self.kind} batch {batch_id!r} has no {MANIFEST} any more") from None
        except IntegrityError as exc:
            raise Conflict(f"{self.kind} batch {batch_id!r}: {exc}") from None


def batch_objects(store: ObjectStore, bucket: str, prefix: str) -> dict[str, ObjectState]:
    """Every object under ``prefix/`` (one LIST), by name below the prefix.

    Ingestion takes this snapshot before reading a batch, so an object replaced
    between the listing and the read makes the commit refuse (safe), never pass.
    """
    head = f"{prefix.rstrip('/')}/"
    return {
        info.key[len(head) :]: {"size": info.size, "etag": info.etag, "sha256": info.sha256}
        for info in store.list(bucket, head)
    }


def _same_object(old: ObjectState | None, new: ObjectState | None) -> bool:
    """Whether two listings show the same object: same size, etag and (where both have
    one) sha256. Uploads by plain S3 tools carry no sha256; their etag still differs."""
    if old is None or new is None:
        return old is new
    if old.get("size") != new.get("size") or old.get("etag") != new.get("etag"):
        return False
    old_sha, new_sha = old.get("sha256") or "", new.get("sha256") or ""
    return not (old_sha and new_sha and old_sha != new_sha)


def _change(old: ObjectState | None, new: ObjectState | None) -> str:
    if old is None:
        return "added"
    return "removed" if new is None else "replaced"


def _check_name(what: str, name: str) -> None:
    if not is_safe_name(name):
        raise InvalidInput(f"{what} {name!r} is not 1-128 characters of A-Z a-z 0-9 . _ @ + -")
