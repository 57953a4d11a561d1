"""The embedded object store: one directory per bucket on the local filesystem.

Layout under ``root``::

    <root>/<bucket>/<key>                 the object's bytes (what a user browses)
    <root>/.meta/<bucket>/<key>.json      {"sha256", "size", "etag"}: the checksum record
    <root>/.tmp/<uuid>.part|.json         staging files, each flock-ed by its writer
    <root>/.locks/<bucket>.lock           fcntl lock serialising commits to a bucket

Why it is built this way:

- Atomicity: bytes are staged in a file under ``.tmp``, fsynced, then
  moved into place with ``os.replace``, so a reader never sees a partial object under
  its final name, and a failed upload leaves nothing behind. Staging lives outside the
  bucket directory, so ``list`` never shows a temporary file.
- Checksums: the sha256 record sits in a separate tree (bucket names cannot start with a
  dot, so ``.meta`` can never collide with a bucket). Reads recompute the hash and
  compare. A file placed in a bucket directory by hand has no record and is adopted as
  it is (like an object uploaded to MinIO by another tool).
- Crash safety: a commit is three steps under the bucket lock: (1) an *intent* record
  naming both generations (the new sha256/etag and, under ``prev``, the current one,
  or null for a new key) replaces the record; (2) the staged bytes are renamed into
  place (the commit point); (3) the settled record (no ``prev``) replaces the intent. A
  writer killed anywhere leaves bytes that match one of the generations its record
  names, so the object reads as the old or the new generation, never as corrupt. The
  next commit or ``stat`` of the key settles such a record (hashing the bytes to see
  which generation won); :meth:`LocalStore.recover` settles every one in a bucket and
  removes records left without bytes. Bytes matching no generation (changed by hand,
  or torn by a speechloop before this scheme) stay an IntegrityError, reported by
  ``recover``/``verify_objects``; an unconditional put over them repairs the key.
- Temp files: a writer holds an ``flock`` on each staging file from its creation to its
  rename; the kernel drops the lock when the process dies. The first store opened on a
  root in a process (and ``recover``) removes staging files older than a minute whose
  lock is free: a killed writer's leftovers, never a live (or stopped) writer's file,
  in this process or another.
- Concurrency: every commit (the three steps, delete) holds an exclusive ``flock`` on
  the bucket's lock file, and the conditional check runs inside it, so
  ``if_none_match``/``if_match`` are compare-and-swap across threads and processes.
  Readers go without the lock; when bytes and record disagree (a writer was between two
  renames) they re-read under the shared lock, where bytes that match no generation of
  the record are real corruption. An open descriptor keeps the old inode alive if a
  writer replaces it.

Links: an object is a regular file at its own key. A key whose path below the bucket
directory passes through a symbolic link (the file itself or a folder above it) is
never read: reads raise InvalidInput naming the key and where the link leads (another
key, or "outside the bucket"), ``list`` skips it, ``verify_objects`` reports it, and a
write or delete below a linked folder is refused. Reads open each path segment relative
to its parent's descriptor with ``O_NOFOLLOW``, so a link swapped in after a check
cannot redirect them; FIFOs, sockets and devices are refused too (a FIFO would block a
reader forever). Without this, a producer could drop ``a.wav -> /etc/passwd`` into a
batch and have ingestion read it. (The bucket directory itself may be a link: that is
the operator's choice of where a bucket lives, like the root.)

Limitation (filesystem, not S3): a key cannot be both an object and a "directory"
(``a`` and ``a/b``); such a write raises Conflict naming the key.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import stat as stat_mode
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from speechloop.errors import Conflict, IntegrityError, InvalidInput, NotFound
from speechloop.storage.base import ObjectInfo, ObjectStore, RecoveryReport, Repair
from speechloop.storage.keys import validate_bucket, validate_key

_CHUNK = 1 << 20
_GRACE_S = 60.0
"""A staging file younger than this is never swept (its writer may not hold its lock yet)."""

Record = dict[str, Any]


def _new_etag() -> str:
    """A fresh etag per write, so compare-and-swap also detects rewrites of equal bytes."""
    return uuid.uuid4().hex


# -- staging files ---------------------------------------------------------------------


@contextlib.contextmanager
def _held_temp(directory: Path, suffix: str) -> Iterator[tuple[Path, IO[bytes]]]:
    """A fresh file in ``directory``, open for writing and ``flock``-ed until the block ends.

    The lock tells :func:`sweep_temp` that its writer is alive; the kernel drops it when
    the process dies. The file is removed at the end unless it was renamed away.
    """
    path = directory / f"{uuid.uuid4().hex}{suffix}"
    with path.open("xb") as out:
        fcntl.flock(out.fileno(), fcntl.LOCK_EX)
        try:
            yield path, out
        finally:
            path.unlink(missing_ok=True)


_SWEPT: set[tuple[int, Path]] = set()


def sweep_temp(root: Path, *, now: float | None = None, min_age_s: float = _GRACE_S) -> int:
    """Remove staging files whose writer is gone; return how many were removed.

    A file goes when it is older than ``min_age_s`` and its ``flock`` is free (a live
    writer holds it from creation to rename). Files of live writers are never touched.
    """
    now = time.time() if now is None else now
    removed = 0
    try:
        entries = list((Path(root) / ".tmp").iterdir())
    except OSError:
        return 0
    for entry in entries:
        with contextlib.suppress(OSError):
            if now - entry.lstat().st_mtime >= min_age_s and _unheld(entry):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
                removed += 1
    return removed


def _unheld(path: Path) -> bool:
    """Whether no process holds the ``flock`` of ``path`` (directories: always true)."""
    if path.is_dir() or path.is_symlink():
        return True
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


# -- no links --------------------------------------------------------------------------


def _link_refused(bucket_dir: Path, bucket: str, key: str, link: str) -> InvalidInput:
    """The error for ``key`` whose path segment ``link`` (a key prefix) is a symbolic link.

    Names where the link leads as a key of the bucket, or "outside the bucket"; never a
    host path (the message reaches producers through quarantine reports).
    """
    base = bucket_dir.resolve()
    target = (bucket_dir / link).resolve()
    where = "outside the bucket"
    if target.is_relative_to(base) and target != base:
        where = f"to {bucket}/{target.relative_to(base).as_posix()}"
    what = f"object {bucket}/{key} is" if link == key else f"{bucket}/{link}, a folder of {key}, is"
    return InvalidInput(
        f"{what} a symbolic link leading {where}: refused, the local store reads objects "
        "only from regular files at their own key"
    )


def _open_regular(bucket_dir: Path, bucket: str, key: str) -> IO[bytes]:
    """Open the file of ``key`` for reading without following any link below the bucket.

    Each segment is opened relative to its parent's descriptor with ``O_NOFOLLOW``
    (``ELOOP`` on a linked file, ``ENOTDIR`` on a linked folder), non-blocking (a FIFO
    would block), and the result must be a regular file. NotFound if absent or a
    directory; InvalidInput for a link or a special file.
    """
    parts = key.split("/")
    fd = os.open(bucket_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for depth, segment in enumerate(parts):
            last = depth == len(parts) - 1
            flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | (0 if last else os.O_DIRECTORY)
            try:
                child = os.open(segment, flags, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR) and _is_link(segment, fd):
                    raise _link_refused(
                        bucket_dir, bucket, key, "/".join(parts[: depth + 1])
                    ) from None
                if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                    raise NotFound(f"object {bucket}/{key} does not exist") from None
                raise
            os.close(fd)
            fd = child
        mode = os.fstat(fd).st_mode
        if stat_mode.S_ISDIR(mode):
            raise NotFound(f"object {bucket}/{key} does not exist (it is a prefix)")
        if not stat_mode.S_ISREG(mode):
            raise InvalidInput(f"object {bucket}/{key} is not a regular file: refused")
        os.set_blocking(fd, True)
        handle = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    return handle


def _is_link(name: str, dir_fd: int) -> bool:
    """Whether ``name`` in the directory open as ``dir_fd`` is a symbolic link."""
    try:
        return stat_mode.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _refuse_linked_folders(bucket_dir: Path, bucket: str, key: str) -> None:
    """InvalidInput if a folder on the path of ``key`` is a symbolic link (writes, deletes)."""
    parts = key.split("/")[:-1]
    for depth in range(1, len(parts) + 1):
        prefix = "/".join(parts[:depth])
        if (bucket_dir / prefix).is_symlink():
            raise _link_refused(bucket_dir, bucket, key, prefix)


# -- the store -------------------------------------------------------------------------


class LocalStore(ObjectStore):
    """An :class:`ObjectStore` on a local directory (see the module docstring)."""

    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = Path(root).resolve()
        self._fsync = fsync
        self._tmp = self.root / ".tmp"
        for sub in (".meta", ".tmp", ".locks"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        slot = (os.getpid(), self.root)
        if slot not in _SWEPT:  # once per process and root: clean what dead writers left
            _SWEPT.add(slot)
            sweep_temp(self.root)

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

    # -- checksum records ------------------------------------------------------------

    @staticmethod
    def _read_meta(meta: Path, data: Path, bucket: str, key: str) -> Record:
        """The checksum record of an object.

        A file placed in the bucket directory by hand has no record: it is adopted as
        it is (sha256 computed now, etag from its mtime and size), so users can drop
        files into the embedded store as they would upload them to MinIO with ``mc``.
        """
        try:
            record: Record = json.loads(meta.read_text())
        except FileNotFoundError:
            st = data.stat()
            return {
                "sha256": _hash_path(data),
                "size": st.st_size,
                "etag": f"ext-{st.st_mtime_ns:x}-{st.st_size:x}",
            }
        except ValueError as exc:
            raise IntegrityError(f"checksum record of {bucket}/{key} is corrupt: {exc}") from None
        if not isinstance(record, dict):
            raise IntegrityError(f"checksum record of {bucket}/{key} is not a JSON object")
        return record

    def _write_record(self, meta: Path, record: Record) -> None:
        """Replace ``meta`` atomically by ``record`` (staged in ``.tmp``).

        Not fsynced (only object bytes are, before their rename): a killed process
        loses nothing the page cache holds, and an fsync per record would halve the
        put rate.
        """
        with _held_temp(self._tmp, ".json") as (tmp, out):
            out.write(json.dumps(record).encode())
            out.flush()
            tmp.replace(meta)

    @staticmethod
    def _generation(record: Record, sha: str) -> Record | None:
        """The generation of ``record`` whose sha256 is ``sha``: itself, its ``prev``, or None."""
        if record.get("sha256") == sha:
            return {k: v for k, v in record.items() if k != "prev"}
        prev = record.get("prev")
        if isinstance(prev, dict) and prev.get("sha256") == sha:
            return prev
        return None

    def _settle(self, bucket: str, key: str, data: Path, meta: Path) -> Record | None:
        """The current generation of a key, settling an interrupted write (bucket lock held).

        None if the key has no bytes. A record still carrying ``prev`` (its writer died
        between renames) is replaced by the generation the bytes match; IntegrityError
        if they match neither.
        """
        if not data.is_file():
            return None
        record = self._read_meta(meta, data, bucket, key)
        if "prev" not in record:
            return record
        sha = _hash_path(data)
        settled = self._generation(record, sha)
        if settled is None:
            raise IntegrityError(
                f"object {bucket}/{key} is corrupt: sha256 {sha} matches neither generation "
                "its interrupted write recorded"
            )
        with contextlib.suppress(OSError):  # a read-only store still reads correctly
            self._write_record(meta, settled)
        return settled

    # -- staging and committing ------------------------------------------------------

    def _fill(self, out: IO[bytes], source: IO[bytes] | bytes) -> tuple[str, int]:
        """Copy ``source`` into the staging file ``out``, fsynced; return (sha256, size)."""
        digest = hashlib.sha256()
        size = 0
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
        return digest.hexdigest(), size

    def _commit(
        self,
        bucket: str,
        key: str,
        source: IO[bytes] | bytes,
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
    ) -> ObjectInfo:
        """Stage ``source``, then under the bucket lock: intent record, bytes, settled record.

        If reading ``source`` fails, the staging file is removed and the error
        propagates: nothing becomes visible.
        """
        data, meta = self._paths(bucket, key)
        with _held_temp(self._tmp, ".part") as (tmp, out):
            sha, size = self._fill(out, source)
            new: Record = {"sha256": sha, "size": size, "etag": _new_etag()}
            with self._lock(bucket):
                _refuse_linked_folders(self.root / bucket, bucket, key)
                current = self._current(bucket, key, data, meta, if_none_match, if_match)
                self._make_parents(bucket, key, data, meta)
                saved = _read_raw(meta)
                self._write_record(meta, {**new, "prev": current})
                try:
                    tmp.replace(data)  # the commit point
                except BaseException:
                    self._restore(meta, saved)
                    raise
                self._write_record(meta, new)
        return ObjectInfo(key=key, size=size, sha256=sha, etag=str(new["etag"]))

    def _current(
        self,
        bucket: str,
        key: str,
        data: Path,
        meta: Path,
        if_none_match: bool,
        if_match: str | None,
    ) -> Record | None:
        """The generation a write replaces, after checking its condition (lock held).

        An unconditional write may replace a corrupt object (that is how one repairs it);
        a conditional one may not.
        """
        try:
            current = self._settle(bucket, key, data, meta)
        except IntegrityError:
            if if_none_match or if_match is not None:
                raise
            return None
        if if_none_match and current is not None:
            raise Conflict(f"object {bucket}/{key} already exists (if_none_match)")
        if if_match is not None:
            if current is None:
                raise Conflict(f"object {bucket}/{key} does not exist (if_match {if_match})")
            if current.get("etag") != if_match:
                raise Conflict(
                    f"object {bucket}/{key} changed: etag {current.get('etag')} != {if_match}"
                )
        return current

    @staticmethod
    def _make_parents(bucket: str, key: str, data: Path, meta: Path) -> None:
        try:
            data.parent.mkdir(parents=True, exist_ok=True)
            meta.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise Conflict(f"key {bucket}/{key}: a parent path is already an object") from None
        if data.is_dir():
            raise Conflict(f"key {bucket}/{key}: already a prefix of other objects")

    def _restore(self, meta: Path, saved: bytes | None) -> None:
        """Put back the record file an aborted commit replaced by its intent."""
        if saved is None:
            meta.unlink(missing_ok=True)
            return
        with _held_temp(self._tmp, ".json") as (tmp, out):
            out.write(saved)
            out.flush()
            tmp.replace(meta)

    # -- reading ---------------------------------------------------------------------

    def _open(self, bucket: str, key: str, *, locked: bool = False) -> tuple[Record, IO[bytes]]:
        """The checksum record and an open handle on the bytes.

        Unlocked, the pair may straddle a concurrent write (record of one generation,
        bytes of another); callers that find a mismatch re-read with ``locked=True``,
        under the shared lock, where no commit is half done.
        """
        data, meta = self._paths(bucket, key)
        guard = self._lock(bucket, shared=True) if locked else contextlib.nullcontext()
        with guard:
            handle = _open_regular(self.root / bucket, bucket, key)
            try:
                record = self._read_meta(meta, data, bucket, key)
            except BaseException:
                handle.close()
                raise
        return record, handle

    @staticmethod
    def _corrupt(bucket: str, key: str, record: Record, sha: str) -> IntegrityError:
        return IntegrityError(
            f"object {bucket}/{key} is corrupt: sha256 {sha} != recorded {record.get('sha256')}"
        )

    def get_bytes(self, bucket: str, key: str) -> bytes:
        """Read a whole object; IntegrityError if its bytes match no recorded generation."""
        for locked in (False, True):
            record, handle = self._open(bucket, key, locked=locked)
            with handle:
                body = handle.read()
            sha = hashlib.sha256(body).hexdigest()
            if self._generation(record, sha) is not None:
                return body
        raise self._corrupt(bucket, key, record, sha)

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
                generation = self._generation(record, digest.hexdigest())
                if generation is not None:
                    break
            else:
                raise self._corrupt(bucket, key, record, digest.hexdigest())
            tmp.replace(dest)
        finally:
            tmp.unlink(missing_ok=True)
        return self._info(key, generation)

    @staticmethod
    def _info(key: str, record: Record) -> ObjectInfo:
        return ObjectInfo(
            key=key,
            size=int(record.get("size", -1)),
            sha256=str(record.get("sha256", "")),
            etag=str(record.get("etag", "")),
        )

    def stat(self, bucket: str, key: str) -> ObjectInfo:
        """The recorded size, sha256 and etag of one object (NotFound if absent).

        A record left mid-write by a killed writer is settled first (under the lock).
        """
        record, handle = self._open(bucket, key)
        handle.close()
        if "prev" in record:
            data, meta = self._paths(bucket, key)
            with self._lock(bucket):
                settled = self._settle(bucket, key, data, meta)
            if settled is None:
                raise NotFound(f"object {bucket}/{key} does not exist")
            record = settled
        return self._info(key, record)

    # -- the rest of the ObjectStore interface --------------------------------------

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
        return self._commit(
            bucket, key, bytes(data), if_none_match=if_none_match, if_match=if_match
        )

    def put_file(self, bucket: str, key: str, path: Path) -> ObjectInfo:
        """Stream a local file into the store atomically."""
        self._paths(bucket, key)
        if not Path(path).is_file():
            raise NotFound(f"local file {path} does not exist")
        with Path(path).open("rb") as source:
            return self._commit(bucket, key, source)

    def list(
        self, bucket: str, prefix: str = "", *, start_after: str | None = None
    ) -> Iterator[ObjectInfo]:
        """Objects under ``prefix`` in lexicographic key order, after ``start_after``."""
        base = self._bucket_dir(bucket)
        keys = [key for key in _walk_keys(base, prefix) if start_after is None or key > start_after]
        for key in sorted(keys):
            # NotFound: deleted since the walk; InvalidInput: a link, not an object
            with contextlib.suppress(NotFound, InvalidInput):
                yield self.stat(bucket, key)

    def list_keys(self, bucket: str, prefix: str = "") -> builtins.list[str]:
        """The keys ``list`` yields, from a directory walk alone (no checksum record read).

        The same rule as ``list``: regular files at valid keys reached through no link.
        """
        base = self._bucket_dir(bucket)
        return sorted(_walk_regular(base, prefix))

    def list_prefixes(self, bucket: str, prefix: str) -> builtins.list[str]:
        """The next path components under ``prefix``: one scan of its folder, and each
        subfolder walked only until its first object (a folder holding none, or only
        links, is no prefix: ``list`` shows nothing below it)."""
        if prefix and not prefix.endswith("/"):
            return super().list_prefixes(bucket, prefix)
        base = self._bucket_dir(bucket)
        folder = _plain_folder(base, prefix.rstrip("/"))
        if folder is None:
            return []
        try:
            entries = list(os.scandir(folder))
        except OSError:
            return []
        return sorted(
            entry.name
            for entry in entries
            if entry.is_dir(follow_symlinks=False)
            and _holds_object(Path(entry.path), f"{prefix}{entry.name}")
        )

    def delete(self, bucket: str, key: str) -> None:
        """Remove an object and its record; a missing key is not an error.

        Bytes go first: a crash in between leaves a record without bytes (the key reads
        as absent; ``recover`` removes the record), never bytes without their record.
        """
        data, meta = self._paths(bucket, key)
        bucket_dir, meta_dir = self.root / bucket, self.root / ".meta" / bucket
        with self._lock(bucket):
            _refuse_linked_folders(bucket_dir, bucket, key)
            with contextlib.suppress(FileNotFoundError, NotADirectoryError, IsADirectoryError):
                data.unlink()
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                meta.unlink()
            _prune_empty(data.parent, bucket_dir)
            _prune_empty(meta.parent, meta_dir)

    # -- repair ----------------------------------------------------------------------

    def recover(self, bucket: str, prefix: str = "") -> RecoveryReport:
        """Settle every interrupted write under ``prefix`` and drop records without bytes.

        Also removes the staging files of writers that are gone (files older than a
        minute whose lock no process holds). Reads only the checksum
        records; hashes only the bytes of interrupted writes. Objects whose bytes match
        no generation of their record are reported in ``unfixable`` (rewrite them with an
        unconditional put, or delete them).
        """
        self._bucket_dir(bucket)
        report = RecoveryReport(bucket, temp_files_removed=sweep_temp(self.root))
        for key in _walk_keys(self.root / ".meta" / bucket, prefix, suffix=".json"):
            try:
                data, meta = self._paths(bucket, key)
            except InvalidInput as exc:
                report.unfixable.append(Repair(key, f"stray file in the checksum tree: {exc}"))
                continue
            if _settled(data, meta):
                continue  # nothing to check without hashing
            with self._lock(bucket):
                self._recover_one(bucket, key, data, meta, report)
        return report

    def _recover_one(
        self, bucket: str, key: str, data: Path, meta: Path, report: RecoveryReport
    ) -> None:
        """Settle one suspicious record (bucket lock held) and note it in ``report``."""
        if not data.is_file():
            if meta.is_file():
                meta.unlink()
                report.fixed.append(Repair(key, "removed a checksum record without bytes"))
            return
        try:
            before = self._read_meta(meta, data, bucket, key)
            if "prev" not in before:
                return
            after = self._settle(bucket, key, data, meta)
        except IntegrityError as exc:
            report.unfixable.append(Repair(key, str(exc)))
            return
        won = "new" if after is not None and after.get("etag") == before.get("etag") else "old"
        report.fixed.append(Repair(key, f"settled an interrupted write: the {won} generation"))

    def verify_objects(self, bucket: str, prefix: str = "") -> builtins.list[Repair]:
        """Hash every object under ``prefix`` in place; the ones matching no generation."""
        problems: builtins.list[Repair] = []
        for key in sorted(_walk_keys(self._bucket_dir(bucket), prefix)):
            try:
                self._verify_in_place(bucket, key)
            except (IntegrityError, InvalidInput) as exc:  # corrupt, or a link
                problems.append(Repair(key, str(exc)))
            except NotFound:
                continue
        return problems

    def _verify_in_place(self, bucket: str, key: str) -> None:
        for locked in (False, True):
            record, handle = self._open(bucket, key, locked=locked)
            with handle:
                digest = hashlib.sha256()
                while chunk := handle.read(_CHUNK):
                    digest.update(chunk)
            if self._generation(record, digest.hexdigest()) is not None:
                return
        raise self._corrupt(bucket, key, record, digest.hexdigest())


def _settled(data: Path, meta: Path) -> bool:
    """Whether a record is a plain settled record of existing bytes (read unlocked)."""
    try:
        record = json.loads(meta.read_text())
    except (OSError, ValueError):
        return False
    return data.is_file() and isinstance(record, dict) and "prev" not in record


def _walk_keys(base: Path, prefix: str, *, suffix: str = "") -> Iterator[str]:
    """Keys of the files under ``base`` starting with ``prefix`` (``suffix`` stripped)."""
    head = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
    top = base / head if head else base
    for dirpath, _dirs, files in os.walk(top):
        rel = Path(dirpath).relative_to(base).as_posix()
        for name in files:
            if suffix:
                if not name.endswith(suffix):
                    continue
                name = name[: -len(suffix)]
            key = name if rel == "." else f"{rel}/{name}"
            if key.startswith(prefix):
                yield key


def _plain_folder(base: Path, rel: str) -> Path | None:
    """``base/rel`` if every segment of ``rel`` is a real folder (no link), else None."""
    folder = base
    for segment in rel.split("/") if rel else []:
        folder = folder / segment
        try:
            if not stat_mode.S_ISDIR(folder.lstat().st_mode):  # a link or a file: no keys
                return None
        except OSError:
            return None
    return folder


def _holds_object(folder: Path, rel: str) -> bool:
    """Whether a real folder holds an object below it (stops at the first one found)."""
    subfolders: builtins.list[tuple[Path, str]] = []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                key = f"{rel}/{entry.name}"
                if entry.is_dir(follow_symlinks=False):
                    subfolders.append((Path(entry.path), key))
                elif entry.is_file(follow_symlinks=False) and _is_valid_key(key):
                    return True
    except OSError:  # removed meanwhile
        return False
    return any(_holds_object(path, key) for path, key in subfolders)


def _is_valid_key(key: str) -> bool:
    try:
        validate_key(key)
    except InvalidInput:
        return False
    return True


def _walk_regular(base: Path, prefix: str) -> Iterator[str]:
    """Keys under ``base`` starting with ``prefix`` whose path holds no link (neither a
    folder nor the file), that are regular files and valid keys: what ``list`` keeps."""
    head = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
    folder = _plain_folder(base, head)
    if folder is None:
        return
    todo = [(folder, head)]
    while todo:
        directory, rel = todo.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError:  # removed meanwhile
            continue
        for entry in entries:
            key = f"{rel}/{entry.name}" if rel else entry.name
            if entry.is_dir(follow_symlinks=False):
                if key.startswith(prefix) or prefix.startswith(f"{key}/"):
                    todo.append((Path(entry.path), key))
            elif (
                key.startswith(prefix)
                and entry.is_file(follow_symlinks=False)
                and _is_valid_key(key)
            ):
                yield key


def _prune_empty(directory: Path, stop: Path) -> None:
    """Remove empty directories from ``directory`` up to (not including) ``stop``."""
    while directory != stop and stop in directory.parents:
        try:
            directory.rmdir()
        except OSError:
            return
        directory = directory.parent


def _read_raw(path: Path) -> bytes | None:
    """The bytes of a file, or None if it does not exist."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _hash_path(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def remove_tree(root: Path) -> None:
    """Delete a whole local store (tests and ``make clean``)."""
    shutil.rmtree(root, ignore_errors=True)
