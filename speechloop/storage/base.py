"""The object-store interface that every backend implements.

Contract (checked by ``tests/integration/test_store_contract.py`` on every backend):

- ``put_*`` is atomic: a reader sees the whole new object or the old one (or none),
  never a partially written object under its final name.
- Every object written through this interface carries the sha256 of its bytes
  (metadata ``sha256``); ``get_*`` recomputes it and raises
  :class:`~speechloop.errors.IntegrityError` on a mismatch. Objects put by other S3
  tools carry none (``stat`` reports ``sha256=""``) and are checked against what the
  server offers (a single-part MD5 etag); callers that need their hash compute it from
  the bytes (the ingestion ledger does).
- ``list`` yields objects under a prefix in lexicographic key order, optionally
  starting after a key; ``list_keys`` and ``list_prefixes`` give the same names
  without metadata (backends make them cheaper than ``list``).
- Conditional writes (``if_none_match`` / ``if_match``) give compare-and-swap, which
  the registry uses for aliases and history.
- A missing key or bucket raises :class:`~speechloop.errors.NotFound`; transient faults
  are retried with back-off; an unreachable endpoint raises
  :class:`~speechloop.errors.StoreUnavailable` and refused credentials
  :class:`~speechloop.errors.StoreAuthError`.
- ``recover`` repairs what a killed writer left (a no-op where the server makes every
  write atomic, as S3 does); ``verify_objects`` re-reads objects and names the ones whose
  bytes no longer match their checksum. Both report, neither raises on a bad object.
"""

from __future__ import annotations

import abc
import builtins
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ObjectInfo:
    """What a store knows about one object."""

    key: str
    size: int
    sha256: str
    etag: str


@dataclass(frozen=True)
class Repair:
    """One object ``recover`` or ``verify_objects`` acted on: its key and what happened."""

    key: str
    action: str


@dataclass
class RecoveryReport:
    """What :meth:`ObjectStore.recover` did in one bucket.

    ``fixed``: interrupted writes completed or rolled back, stray records removed.
    ``unfixable``: objects whose bytes match no recorded generation (tampered, or torn
    by a writer older than the crash-safe commit); they read as IntegrityError until
    rewritten. ``temp_files_removed``: staging files of writers that are gone.
    """

    bucket: str
    fixed: list[Repair] = field(default_factory=list)
    unfixable: list[Repair] = field(default_factory=list)
    temp_files_removed: int = 0

    @property
    def ok(self) -> bool:
        """Whether every object is readable after the recovery."""
        return not self.unfixable


class ObjectStore(abc.ABC):
    """A bucketed key/value store of immutable-per-write byte objects."""

    @abc.abstractmethod
    def ensure_bucket(self, bucket: str) -> None:
        """Create ``bucket`` if it does not exist."""

    @abc.abstractmethod
    def put_bytes(
        self,
        bucket: str,
        key: str,
        data: bytes,
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
    ) -> ObjectInfo:
        """Write ``data`` at ``key`` atomically.

        ``if_none_match``: fail with Conflict if the key exists. ``if_match``: fail with
        Conflict unless the current object's etag equals it.
        """

    @abc.abstractmethod
    def put_file(self, bucket: str, key: str, path: Path) -> ObjectInfo:
        """Upload a local file atomically (streams large files)."""

    @abc.abstractmethod
    def get_bytes(self, bucket: str, key: str) -> bytes:
        """Read a whole object, verifying its sha256."""

    @abc.abstractmethod
    def get_file(self, bucket: str, key: str, dest: Path) -> ObjectInfo:
        """Download an object to ``dest`` (atomically, checksum verified)."""

    @abc.abstractmethod
    def stat(self, bucket: str, key: str) -> ObjectInfo:
        """Metadata of one object; NotFound if absent."""

    @abc.abstractmethod
    def list(
        self, bucket: str, prefix: str = "", *, start_after: str | None = None
    ) -> Iterator[ObjectInfo]:
        """All objects whose key starts with ``prefix``, in key order, recursively."""

    @abc.abstractmethod
    def delete(self, bucket: str, key: str) -> None:
        """Remove an object; deleting a missing key is not an error."""

    def exists(self, bucket: str, key: str) -> bool:
        """Whether ``key`` exists in ``bucket``."""
        from speechloop.errors import NotFound

        try:
            self.stat(bucket, key)
        except NotFound:
            return False
        return True

    def list_keys(self, bucket: str, prefix: str = "") -> builtins.list[str]:
        """The keys ``list`` would yield, in key order, without their metadata.

        Backends override it where names alone are cheaper than :class:`ObjectInfo`
        (the local store reads no checksum record; S3 asks for no user metadata), so a
        caller that needs only names (the ingestion ledger) does not pay per object.
        """
        return [info.key for info in self.list(bucket, prefix)]

    def list_prefixes(self, bucket: str, prefix: str) -> builtins.list[str]:
        """The distinct next path components under ``prefix`` (like ``ls``), sorted."""
        names: set[str] = set()
        for key in self.list_keys(bucket, prefix):
            rest = key[len(prefix) :]
            if "/" in rest:
                names.add(rest.split("/", 1)[0])
        return sorted(names)

    def recover(self, bucket: str, prefix: str = "") -> RecoveryReport:
        """Repair what killed writers left under ``prefix``; report what was done.

        The default has nothing to do: on S3 a write becomes visible only when it
        completed, so nothing can be torn. A killed multipart upload leaves only
        invisible parts, which MinIO purges itself after 24 h (its
        ``api stale_uploads_expiry`` setting) and AWS S3 with an
        AbortIncompleteMultipartUpload lifecycle rule.
        :class:`~speechloop.storage.local.LocalStore` overrides it.
        """
        del prefix  # nothing is ever torn, whatever the prefix
        return RecoveryReport(bucket)

    def verify_objects(self, bucket: str, prefix: str = "") -> builtins.list[Repair]:
        """Re-read every object under ``prefix``; the ones failing their checksum.

        Each returned :class:`Repair` names the key and the integrity problem. Streams
        every object through a temporary file (the backend's own verified download).
        """
        from speechloop.errors import IntegrityError, NotFound

        problems: builtins.list[Repair] = []
        with tempfile.TemporaryDirectory(prefix="speechloop-verify-") as tmp:
            dest = Path(tmp) / "object"
            for info in self.list(bucket, prefix):
                try:
                    self.get_file(bucket, info.key, dest)
                except IntegrityError as exc:
                    problems.append(Repair(info.key, str(exc)))
                except NotFound:
                    continue  # deleted since the listing
                dest.unlink(missing_ok=True)
        return problems
