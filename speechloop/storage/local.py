"""The embedded object store: one directory per bucket on the local filesystem.

Layout under ``root``::

    <root>/<bucket>/<key>                 the object's bytes (what a user browses)
    <root>/.meta/<bucket>/<key>.json      {"sha256", "size", "etag"}: the checksum record
    <root>/.tmp/                          staging area for atomic writes (same filesystem)
    <root>/.locks/<bucket>.lock           fcntl lock serialising commits to a bucket

Why it is built this way:

- Atomicity: bytes are staged in ``.tmp``, fsynced, then moved into place with
  ``os.replace``, so a reader never sees a partial object under its final name, and a
  failed upload leaves nothing behind. Staging lives outside the bucket directory, so
  ``list`` never shows a temporary file.
- Checksums: the sha256 record sits in a separate tree (bucket names cannot start with a
  dot, so ``.meta`` can never collide with a bucket). The record is replaced *before* the
  bytes; a crash in between leaves a torn object that reads as IntegrityError, never a
  silently wrong one. Reads recompute the hash and compare. A file placed in a bucket
  directory by hand has no record and is adopted as it is (like an object uploaded to
  MinIO by another tool).
- Concurrency: every commit (replace of record + bytes, delete) holds an exclusive
  ``flock`` on the bucket's lock file, and the conditional check runs inside it, so
  ``if_none_match``/``if_match`` are compare-and-swap across threads and processes.
  Readers go without the lock; only when bytes and record disagree (a writer was between
  its two renames) they re-read under the shared lock, where a mismatch is real
  corruption. An open descriptor keeps the old inode alive if a writer replaces it.

Limitation (filesystem, not S3): a key cannot be both an object and a "directory"
(``a`` and ``a/b``); such a write raises Conflict naming the key.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from speechloop.errors import Conflict, IntegrityError, NotFound
from speechloop.storage.base import ObjectInfo, ObjectStore
from speechloop.storage.keys import validate_bucket, validate_key

_CHUNK = 1 << 20


def _new_etag() -> str:
    """A fresh etag per write, so compare-and-swap also detects rewrites of equal bytes."""
    return uuid.uuid4().hex


class LocalStore(ObjectStore):
    """An :class:`ObjectStore` on a local directory (see the module docstring)."""

    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = Path(root).resolve()
        self._fsync = fsync
        for sub in (".meta", ".tmp", ".locks"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    # -- paths and locks -------------------------------------------------------------

    def _bucket_dir(self, bucket: str, *, must_exist: bool = True) -> Path:
        path = self.root / validate_bucket(bucket)
        if must_exist and not path.is_dir():
            raise NotFound(f"bucket {bucket!r} does not exist in {self.root}")
        return path

    def _paths(self, bucket: str, key: str) -> tuple[Path, Path]:
        validate_key(key)
        data = self._bucket_dir(bucket) / key
        meta = self.root / ".meta" / bucket / (key + ".json")
        return data, meta

    @contextlib.contextmanager
    def _lock(self, bucket: str, *, shared: bool = False) -> Iterator[None]:
        with (self.root / ".locks" / f"{bucket}.lock").open("a+b") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    @staticmethod
    def _read_meta(meta: Path, data: Path, bucket: str, key: str) -> dict[str, Any]:
        """The checksum record of an object.

        A file placed in the bucket directory by hand has no record: it is adopted as
        it is (sha256 computed now, etag from its mtime and size), so users can drop
        files into the embedded store as they would upload them to MinIO with ``mc``.
        """
        try:
            record: dict[str, Any] = json.loads(meta.read_text())
        except FileNotFoundError:
            st = data.stat()
            return {
                "sha256": _hash_path(data),
                "size": st.st_size,
                "etag": f"ext-{st.st_mtime_ns:x}-{st.st_size:x}",
            }
        except ValueError as exc:
            raise IntegrityError(f"checksum record of {bucket}/{key} is corrupt: {exc}") from None
        return record

    # -- staging and committing ------------------------------------------------------

    def _stage(self, source: IO[bytes] | bytes) -> tuple[Path, str, int]:
        """Write ``source`` to a fresh file in ``.tmp``, fsynced; return (path, sha256, size).

        If reading ``source`` fails, the temp file is removed and the error propagates:
        nothing becomes visible.
        """
        tmp = self.root / ".tmp" / f"{uuid.uuid4().hex}.part"
        digest = hashlib.sha256()
        size = 0
        try:
            with tmp.open("xb") as out:
                if isinstance(source, bytes):
                    out.write(source)
                    digest.update(source)
                    size = len(source)
                else:
                    while chunk := source.read(_CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        size += len(chunk)
                out.flush()
                if self._fsync:
                    os.fsync(out.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp, digest.hexdigest(), size

    def _commit(
        self,
        bucket: str,
        key: str,
        tmp: Path,
        sha: str,
        size: int,
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
    ) -> ObjectInfo:
        data, meta = self._paths(bucket, key)
        etag = _new_etag()
        meta_tmp = tmp.with_suffix(".json")
        meta_tmp.write_text(json.dumps({"sha256": sha, "size": size, "etag": etag}))
        try:
            with self._lock(bucket):
                self._check_condition(bucket, key, data, meta, if_none_match, if_match)
                try:
                    data.parent.mkdir(parents=True, exist_ok=True)
                    meta.parent.mkdir(parents=True, exist_ok=True)
                except (FileExistsError, NotADirectoryError):
                    raise Conflict(
                        f"key {bucket}/{key}: a parent path is already an object"
                    ) from None
                if data.is_dir():
                    raise Conflict(f"key {bucket}/{key}: already a prefix of other objects")
                meta_tmp.replace(meta)
                tmp.replace(data)
        finally:
            for leftover in (tmp, meta_tmp):
                leftover.unlink(missing_ok=True)
        return ObjectInfo(key=key, size=size, sha256=sha, etag=etag)

    def _check_condition(
        self,
        bucket: str,
        key: str,
        data: Path,
        meta: Path,
        if_none_match: bool,
        if_match: str | None,
    ) -> None:
        exists = data.is_file()
        if if_none_match and exists:
            raise Conflict(f"object {bucket}/{key} already exists (if_none_match)")
        if if_match is not None:
            if not exists:
                raise Conflict(f"object {bucket}/{key} does not exist (if_match {if_match})")
            current = self._read_meta(meta, data, bucket, key).get("etag")
            if current != if_match:
                raise Conflict(f"object {bucket}/{key} changed: etag {current} != {if_match}")

    def _open(
        self, bucket: str, key: str, *, locked: bool = False
    ) -> tuple[dict[str, Any], IO[bytes]]:
        """The checksum record and an open handle on the bytes.

        Unlocked, the pair may straddle a concurrent write (record of one generation,
        bytes of another); callers that find a mismatch re-read with ``locked=True``,
        under the shared lock, where the pair is consistent.
        """
        data, meta = self._paths(bucket, key)
        guard = self._lock(bucket, shared=True) if locked else contextlib.nullcontext()
        with guard:
            try:
                handle = data.open("rb")
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                raise NotFound(f"object {bucket}/{key} does not exist") from None
            try:
                record = self._read_meta(meta, data, bucket, key)
            except BaseException:
                handle.close()
                raise
        return record, handle

    @staticmethod
    def _verify(bucket: str, key: str, record: dict[str, Any], sha: str) -> None:
        if record.get("sha256") != sha:
            raise IntegrityError(
                f"object {bucket}/{key} is corrupt: sha256 {sha} != recorded {record.get('sha256')}"
            )

    # -- the ObjectStore interface ---------------------------------------------------

    def ensure_bucket(self, bucket: str) -> None:
        """Create the bucket directory (and its checksum tree) if missing."""
        self._bucket_dir(bucket, must_exist=False).mkdir(exist_ok=True)
        (self.root / ".meta" / bucket).mkdir(exist_ok=True)

    def put_bytes(
        self,
        bucket: str,
        key: str,
        data: bytes,
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
    ) -> ObjectInfo:
        """Write ``data`` at ``key`` atomically, optionally as compare-and-swap."""
        self._paths(bucket, key)  # validate before staging
        tmp, sha, size = self._stage(bytes(data))
        return self._commit(
            bucket, key, tmp, sha, size, if_none_match=if_none_match, if_match=if_match
        )

    def put_file(self, bucket: str, key: str, path: Path) -> ObjectInfo:
        """Stream a local file into the store atomically."""
        self._paths(bucket, key)
        if not Path(path).is_file():
            raise NotFound(f"local file {path} does not exist")
        with Path(path).open("rb") as source:
            tmp, sha, size = self._stage(source)
        return self._commit(bucket, key, tmp, sha, size)

    def get_bytes(self, bucket: str, key: str) -> bytes:
        """Read a whole object; IntegrityError if its bytes do not match the record."""
        for locked in (False, True):
            record, handle = self._open(bucket, key, locked=locked)
            with handle:
                body = handle.read()
            sha = hashlib.sha256(body).hexdigest()
            if record.get("sha256") == sha:
                return body
        self._verify(bucket, key, record, sha)
        return body  # pragma: no cover - _verify raised

    def get_file(self, bucket: str, key: str, dest: Path) -> ObjectInfo:
        """Copy an object to ``dest`` via a temp file beside it, verified before the rename."""
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.part")
        try:
            for locked in (False, True):
                record, handle = self._open(bucket, key, locked=locked)
                digest = hashlib.sha256()
                with handle, tmp.open("wb") as out:
                    while chunk := handle.read(_CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                if record.get("sha256") == digest.hexdigest():
                    break
            self._verify(bucket, key, record, digest.hexdigest())
            tmp.replace(dest)
        finally:
            tmp.unlink(missing_ok=True)
        return self._info(key, record)

    @staticmethod
    def _info(key: str, record: dict[str, Any]) -> ObjectInfo:
        return ObjectInfo(
            key=key,
            size=int(record.get("size", -1)),
            sha256=str(record.get("sha256", "")),
            etag=str(record.get("etag", "")),
        )

    def stat(self, bucket: str, key: str) -> ObjectInfo:
        """The recorded size, sha256 and etag of one object (NotFound if absent)."""
        record, handle = self._open(bucket, key)
        handle.close()
        return self._info(key, record)

    def list(
        self, bucket: str, prefix: str = "", *, start_after: str | None = None
    ) -> Iterator[ObjectInfo]:
        """Objects under ``prefix`` in lexicographic key order, after ``start_after``."""
        base = self._bucket_dir(bucket)
        head = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        top = base / head if head else base
        keys: list[str] = []
        for dirpath, _dirs, files in os.walk(top):
            rel = Path(dirpath).relative_to(base).as_posix()
            for name in files:
                key = name if rel == "." else f"{rel}/{name}"
                if key.startswith(prefix) and (start_after is None or key > start_after):
                    keys.append(key)
        for key in sorted(keys):
            with contextlib.suppress(NotFound):  # deleted since the walk
                yield self.stat(bucket, key)

    def delete(self, bucket: str, key: str) -> None:
        """Remove an object and its record; a missing key is not an error."""
        data, meta = self._paths(bucket, key)
        bucket_dir, meta_dir = self.root / bucket, self.root / ".meta" / bucket
        with self._lock(bucket):
            with contextlib.suppress(FileNotFoundError, NotADirectoryError, IsADirectoryError):
                data.unlink()
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                meta.unlink()
            _prune_empty(data.parent, bucket_dir)
            _prune_empty(meta.parent, meta_dir)


def _prune_empty(directory: Path, stop: Path) -> None:
    """Remove empty directories from ``directory`` up to (not including) ``stop``."""
    while directory != stop and stop in directory.parents:
        try:
            directory.rmdir()
        except OSError:
            return
        directory = directory.parent


def _hash_path(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def remove_tree(root: Path) -> None:
    """Delete a whole local store (tests and ``make clean``)."""
    shutil.rmtree(root, ignore_errors=True)
