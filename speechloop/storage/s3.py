"""The MinIO / S3 backend of :class:`~speechloop.storage.base.ObjectStore` (``minio`` SDK).

- Checksums: every put stores the sha256 of the bytes as user metadata
  (``x-amz-meta-sha256``); every get recomputes it and raises IntegrityError on a
  mismatch. Objects uploaded by other tools (``mc cp``, boto) carry no sha256: they are
  verified against their MD5 etag when it is a plain MD5 (single-part upload), and
  otherwise read as they are.
- Atomicity is S3's own: an object becomes visible only when its (multipart) upload
  completes; a failed multipart upload is aborted by the SDK. ``get_file`` downloads to
  a temp file beside ``dest`` and renames it after the checksum matched.
- Compare-and-swap: ``if_none_match`` / ``if_match`` travel as the ``If-None-Match: *``
  and ``If-Match: "<etag>"`` headers of PutObject, which AWS S3 and MinIO evaluate
  atomically (412 PreconditionFailed -> Conflict). minio-py 7.2 has no public way to
  send them, so conditional puts go through its internal ``_put_object`` (a single
  PUT; the package is pinned below 8). Known limitation: moto's *threaded* server
  checks the condition and stores the object in two steps, so two truly simultaneous
  conditional writes can both pass there; the test fixture runs moto single-threaded.
  A conditional put whose response was lost and is retried may report Conflict for
  its own earlier write: callers (the registry) re-read and decide.
- Timeouts and retries: every request waits at most ``connect_timeout_s`` for a
  connection and ``read_timeout_s`` for each reply (or chunk of one). Connection errors,
  timeouts, 5xx and SlowDown are retried with exponential back-off (``retries``,
  ``backoff_s``), and no retry starts once ``retry_budget_s`` has passed; 4xx are not
  retried. The SDK's own urllib3 retries are off, so the policy lives in one place.
  With the defaults (settings ``store_*``) a refused connection fails in about 3 s and
  a stalled server in about 20 s (figures: ``docs/operations.md``). The failure is one
  StoreUnavailable (or StoreError) naming the endpoint, the operation, the reason and
  the attempts; the retries themselves are logged at debug level only.
- ``list`` returns sha256 only where the server includes user metadata in listings
  (MinIO does, with ``metadata=true``); elsewhere it is "" and ``stat`` has it.
"""

from __future__ import annotations

import builtins
import hashlib
import io
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO, TypeVar, cast

import urllib3
from minio import Minio
from minio.error import InvalidResponseError, S3Error, ServerError
from pydantic import SecretStr

from speechloop.errors import (
    Conflict,
    IntegrityError,
    NotFound,
    StoreAuthError,
    StoreError,
    StoreUnavailable,
)
from speechloop.storage.base import ObjectInfo, ObjectStore
from speechloop.storage.keys import validate_key
from speechloop.storage.retry import RetriesExhausted, call_with_retries

if TYPE_CHECKING:
    from speechloop.config import Settings

T = TypeVar("T")
SHA_HEADER = "x-amz-meta-sha256"
_CHUNK = 1 << 20
_TRANSIENT_CODES = {"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout"}
_AUTH_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidToken"}


def _secret(value: SecretStr | str) -> str:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def is_transient(exc: BaseException) -> bool:
    """Whether an SDK/HTTP error is worth retrying: connection faults, 5xx, SlowDown."""
    if isinstance(exc, urllib3.exceptions.HTTPError):
        return True
    if isinstance(exc, ServerError):
        return exc.status_code >= 500
    if isinstance(exc, InvalidResponseError):
        return str(exc).startswith("non-XML response from server; Response code: 5")
    if isinstance(exc, S3Error):
        status = exc.response.status if exc.response is not None else 0
        return exc.code in _TRANSIENT_CODES or status >= 500
    return False


class MinioStore(ObjectStore):
    """An :class:`ObjectStore` on an S3-compatible server (see the module docstring)."""

    def __init__(
        self,
        endpoint: str,
        *,
        access_key: SecretStr | str,
        secret_key: SecretStr | str,
        secure: bool = False,
        region: str | None = None,
        retries: int = 4,
        backoff_s: float = 0.2,
        connect_timeout_s: float = 3.0,
        read_timeout_s: float = 10.0,
        retry_budget_s: float | None = 20.0,
    ) -> None:
        self.endpoint = endpoint
        self.retries = retries
        self.backoff_s = backoff_s
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.retry_budget_s = retry_budget_s
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=connect_timeout_s, read=read_timeout_s),
            retries=False,
            maxsize=16,
        )
        self.client = Minio(
            endpoint=endpoint,
            access_key=_secret(access_key),
            secret_key=_secret(secret_key),
            secure=secure,
            region=region or "us-east-1",
            http_client=http,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> MinioStore:
        """A store on ``settings.s3_endpoint`` with the configured credentials, timeouts
        and retries."""
        return cls(
            settings.s3_endpoint,
            access_key=settings.s3_access_key,
            secret_key=settings.s3_secret_key,
            secure=settings.s3_secure,
            region=settings.s3_region,
            retries=settings.store_retries,
            backoff_s=settings.store_backoff_s,
            connect_timeout_s=settings.store_connect_timeout_s,
            read_timeout_s=settings.store_read_timeout_s,
            retry_budget_s=settings.store_retry_budget_s,
        )

    def __repr__(self) -> str:
        return f"MinioStore({self.endpoint!r})"

    # -- calling the SDK -------------------------------------------------------------

    def _call(self, func: Callable[[], T], what: str, bucket: str, key: str | None = None) -> T:
        """Run one SDK operation with retries and translate its errors into ours."""
        where = f"{what} {bucket}/{key}" if key else f"{what} {bucket}"
        try:
            return call_with_retries(
                func,
                retries=self.retries,
                backoff_s=self.backoff_s,
                is_transient=is_transient,
                what=f"{where} at {self.endpoint}",
                budget_s=self.retry_budget_s,
            )
        except RetriesExhausted as exc:
            tries = f"{where}, {exc.attempts} attempts in {exc.elapsed_s:.1f} s"
            if isinstance(exc.last, urllib3.exceptions.HTTPError):
                raise StoreUnavailable(
                    f"object store at {self.endpoint} unreachable: {self._reason(exc.last)} "
                    f"({tries})"
                ) from exc.last
            if isinstance(exc.last, S3Error):
                code = f"{exc.last.code} {exc.last.message}"
            else:
                code = str(exc.last)
            raise StoreError(
                f"object store at {self.endpoint} failed: {code} ({tries})"
            ) from exc.last
        except (ServerError, InvalidResponseError) as exc:
            raise StoreError(f"object store at {self.endpoint} failed {where}: {exc}") from exc
        except S3Error as exc:
            raise self._translate(exc, what, bucket, key) from exc

    def _reason(self, exc: urllib3.exceptions.HTTPError) -> str:
        """A few words on why a request got no answer (no object reprs, no URL)."""
        if isinstance(exc, urllib3.exceptions.NewConnectionError):
            return str(exc).rsplit("new connection: ", 1)[-1]
        if isinstance(exc, urllib3.exceptions.ConnectTimeoutError):
            return f"no connection within {self.connect_timeout_s:g} s"
        if isinstance(exc, urllib3.exceptions.ReadTimeoutError):
            return f"no reply within {self.read_timeout_s:g} s"
        if isinstance(exc, urllib3.exceptions.ProtocolError) and len(exc.args) > 1:
            return f"connection broken ({exc.args[1]})"
        return f"{type(exc).__name__}: {exc}"

    def _translate(self, exc: S3Error, what: str, bucket: str, key: str | None) -> Exception:
        where = f"{bucket}/{key}" if key else bucket
        if exc.code == "NoSuchBucket":
            return NotFound(f"bucket {bucket!r} does not exist at {self.endpoint}")
        if exc.code in ("NoSuchKey", "NoSuchObject"):
            return NotFound(f"object {where} does not exist at {self.endpoint}")
        if exc.code in ("PreconditionFailed", "ConditionalRequestConflict"):
            return Conflict(f"conditional {what} of {where} failed: {exc.code}")
        if exc.code in _AUTH_CODES:
            return StoreAuthError(
                f"object store at {self.endpoint} refused the credentials ({exc.code}) "
                f"on {what} {where}"
            )
        return StoreError(f"{what} {where} at {self.endpoint} failed: {exc.code} {exc.message}")

    # -- checksums -------------------------------------------------------------------

    @staticmethod
    def _verify(bucket: str, key: str, headers: Any, sha: str, md5: str) -> None:
        recorded = headers.get(SHA_HEADER)
        if recorded is not None:
            if recorded != sha:
                raise IntegrityError(
                    f"object {bucket}/{key} is corrupt: sha256 {sha} != recorded {recorded}"
                )
            return
        etag = str(headers.get("etag", "")).strip('"')
        if len(etag) == 32 and "-" not in etag and etag != md5:
            raise IntegrityError(f"object {bucket}/{key} is corrupt: md5 {md5} != etag {etag}")

    # -- the ObjectStore interface ---------------------------------------------------

    def ensure_bucket(self, bucket: str) -> None:
        """Create ``bucket`` unless it exists (a concurrent creation is fine)."""

        def create() -> None:
            if self.client.bucket_exists(bucket_name=bucket):
                return
            try:
                self.client.make_bucket(bucket_name=bucket)
            except S3Error as exc:
                if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise

        self._call(create, "create bucket", bucket)

    def put_bytes(
        self,
        bucket: str,
        key: str,
        data: bytes,
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
    ) -> ObjectInfo:
        """One PUT with the sha256 header (and the conditional headers when asked)."""
        validate_key(key)
        data = bytes(data)
        sha = hashlib.sha256(data).hexdigest()
        headers = {"Content-Type": "application/octet-stream", SHA_HEADER: sha}
        if if_none_match:
            headers["If-None-Match"] = "*"
        if if_match is not None:
            headers["If-Match"] = f'"{if_match}"'

        def put() -> str:
            try:
                result = self.client._put_object(bucket, key, data, headers=dict(headers))
            except S3Error as exc:
                if if_match is not None and exc.code == "NoSuchKey":
                    raise Conflict(f"object {bucket}/{key} does not exist (if_match)") from exc
                raise
            return str(result.etag).strip('"')

        etag = self._call(put, "put", bucket, key)
        return ObjectInfo(key=key, size=len(data), sha256=sha, etag=etag)

    def put_file(self, bucket: str, key: str, path: Path) -> ObjectInfo:
        """Hash the file, then stream it (multipart above 5 MiB) with the sha256 header.

        The upload re-hashes what it sends and aborts if the file changed in between,
        so the recorded checksum always matches the stored bytes. A multipart upload
        whose completion reply was lost is retried as a whole: the SDK's abort then
        meets an upload the server already completed (NoSuchUpload), which must not
        hide the transient fault behind it.
        """
        validate_key(key)
        path = Path(path)
        if not path.is_file():
            raise NotFound(f"local file {path} does not exist")
        sha, size = _hash_file(path)

        def put() -> str:
            with path.open("rb") as raw:
                reader = _CheckedReader(raw, sha, size, path)
                try:
                    result = self.client.put_object(
                        bucket_name=bucket,
                        object_name=key,
                        data=cast(BinaryIO, reader),
                        length=size,
                        metadata={"sha256": sha},
                    )
                except S3Error as exc:
                    cause = exc.__context__
                    if exc.code == "NoSuchUpload" and cause is not None and is_transient(cause):
                        raise cause from None  # the abort after a lost reply: retry the put
                    raise
            return str(result.etag).strip('"')

        etag = self._call(put, "put", bucket, key)
        return ObjectInfo(key=key, size=size, sha256=sha, etag=etag)

    def get_bytes(self, bucket: str, key: str) -> bytes:
        """Read a whole object and verify it."""
        validate_key(key)

        def get() -> bytes:
            response = self.client.get_object(bucket_name=bucket, object_name=key)
            try:
                body = response.read()
                headers = response.headers
            finally:
                response.close()
                response.release_conn()
            sha = hashlib.sha256(body).hexdigest()
            self._verify(bucket, key, headers, sha, hashlib.md5(body).hexdigest())
            return body

        return self._call(get, "get", bucket, key)

    def get_file(self, bucket: str, key: str, dest: Path) -> ObjectInfo:
        """Stream an object into a temp file beside ``dest``; rename once verified."""
        validate_key(key)
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.part")
        try:
            info = self._call(lambda: self._download(bucket, key, tmp), "get", bucket, key)
            tmp.replace(dest)
        finally:
            tmp.unlink(missing_ok=True)
        return info

    def _download(self, bucket: str, key: str, tmp: Path) -> ObjectInfo:
        response = self.client.get_object(bucket_name=bucket, object_name=key)
        sha, md5, size = hashlib.sha256(), hashlib.md5(), 0
        try:
            with tmp.open("wb") as out:
                for chunk in response.stream(_CHUNK):
                    out.write(chunk)
                    sha.update(chunk)
                    md5.update(chunk)
                    size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            headers = response.headers
        finally:
            response.close()
            response.release_conn()
        self._verify(bucket, key, headers, sha.hexdigest(), md5.hexdigest())
        etag = str(headers.get("etag", "")).strip('"')
        return ObjectInfo(key=key, size=size, sha256=sha.hexdigest(), etag=etag)

    def stat(self, bucket: str, key: str) -> ObjectInfo:
        """HEAD one object: size, recorded sha256 ("" if none), etag."""
        validate_key(key)

        def head() -> ObjectInfo:
            obj = self.client.stat_object(bucket_name=bucket, object_name=key)
            meta = obj.metadata or {}
            return ObjectInfo(
                key=key,
                size=int(obj.size or 0),
                sha256=str(meta.get(SHA_HEADER, "")),
                etag=str(obj.etag or "").strip('"'),
            )

        return self._call(head, "stat", bucket, key)

    def list(
        self, bucket: str, prefix: str = "", *, start_after: str | None = None
    ) -> Iterator[ObjectInfo]:
        """Objects under ``prefix`` in key order (S3 lists in UTF-8 binary order)."""

        def fetch() -> list[ObjectInfo]:
            found = []
            for obj in self.client.list_objects(
                bucket_name=bucket,
                prefix=prefix or None,
                recursive=True,
                start_after=start_after,
                include_user_meta=True,
            ):
                meta = {k.lower(): v for k, v in (obj.metadata or {}).items()}
                sha = meta.get(SHA_HEADER, meta.get("sha256", ""))
                found.append(
                    ObjectInfo(
                        key=str(obj.object_name),
                        size=int(obj.size or 0),
                        sha256=str(sha),
                        etag=str(obj.etag or "").strip('"'),
                    )
                )
            return found

        yield from self._call(fetch, "list", bucket, prefix)

    def list_keys(self, bucket: str, prefix: str = "") -> builtins.list[str]:
        """Keys under ``prefix`` in key order, listed without user metadata (MinIO reads
        each object's metadata to return it)."""

        def fetch() -> list[str]:
            listing = self.client.list_objects(
                bucket_name=bucket, prefix=prefix or None, recursive=True
            )
            return [str(obj.object_name) for obj in listing]

        return self._call(fetch, "list", bucket, prefix)

    def list_prefixes(self, bucket: str, prefix: str) -> builtins.list[str]:
        """The next path components under ``prefix``: one delimiter listing, so one entry
        per component (the server folds the objects below it), not one per object."""

        def fetch() -> list[str]:
            listing = self.client.list_objects(
                bucket_name=bucket, prefix=prefix or None, recursive=False
            )
            names = {
                str(obj.object_name)[len(prefix) :].rstrip("/") for obj in listing if obj.is_dir
            }
            return sorted(name for name in names if name)

        return self._call(fetch, "list", bucket, prefix)

    def delete(self, bucket: str, key: str) -> None:
        """Remove an object; a missing key is not an error."""
        validate_key(key)
        self._call(
            lambda: self.client.remove_object(bucket_name=bucket, object_name=key),
            "delete",
            bucket,
            key,
        )


def _hash_file(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


class _CheckedReader(io.RawIOBase):
    """Reads a file for upload, re-hashing it; raises once all ``size`` bytes were read
    if they differ from what was hashed before (the file changed under the upload)."""

    def __init__(self, raw: IO[bytes], expected_sha: str, size: int, path: Path) -> None:
        super().__init__()
        self._raw, self._expected, self._size, self._path = raw, expected_sha, size, path
        self._digest, self._seen = hashlib.sha256(), 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        chunk = self._raw.read(size)
        self._digest.update(chunk)
        self._seen += len(chunk)
        if (self._seen >= self._size or not chunk) and self._digest.hexdigest() != self._expected:
            raise IntegrityError(f"{self._path} changed while it was being uploaded")
        return chunk
