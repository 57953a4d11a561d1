"""The ObjectStore contract, one suite run against both backends (``store`` fixture:
LocalStore in a temp dir, MinioStore on a real S3 server process on 127.0.0.1).

Faults are injected, never mocked away: tampering writes bytes behind the store's back
(on disk, or through a raw SDK client); an interrupted upload uses a source file whose
reads fail half way; transient server faults come from a small TCP proxy in front of
the S3 server that answers the first requests itself with canned HTTP errors.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from speechloop.errors import (
    Conflict,
    IntegrityError,
    NotFound,
    StoreAuthError,
    StoreError,
    StoreUnavailable,
)
from speechloop.storage.base import ObjectStore
from speechloop.storage.local import LocalStore
from speechloop.storage.s3 import MinioStore
from tests.integration.conftest import S3Server, free_port


def _tamper(request: pytest.FixtureRequest, store: ObjectStore, bucket: str, key: str) -> None:
    """Replace an object's bytes behind the store, keeping its recorded checksum."""
    if isinstance(store, LocalStore):
        (store.root / bucket / key).write_bytes(b"evil bytes")
        return
    server: S3Server = request.getfixturevalue("s3_server")
    recorded = store.stat(bucket, key).sha256
    server.raw_client().put_object(
        bucket_name=bucket,
        object_name=key,
        data=io.BytesIO(b"evil bytes"),
        length=10,
        metadata={"sha256": recorded},
    )


def test_put_get_round_trip_records_sha256(store: ObjectStore, bucket: str) -> None:
    """Bytes come back unchanged; stat reports size, the sha256 of the bytes and an etag."""
    data = b"hello \x00 world" * 100
    info = store.put_bytes(bucket, "dir/obj.bin", data)
    assert store.get_bytes(bucket, "dir/obj.bin") == data
    stat = store.stat(bucket, "dir/obj.bin")
    assert stat.sha256 == info.sha256 == hashlib.sha256(data).hexdigest()
    assert stat.size == len(data) and stat.etag == info.etag != ""
    assert store.exists(bucket, "dir/obj.bin") and not store.exists(bucket, "dir/nope")


def test_file_round_trip_large(store: ObjectStore, bucket: str, tmp_path: Path) -> None:
    """A 6 MiB file (multipart on S3) streams up and down intact; get_file reports its sha."""
    src = tmp_path / "big.bin"
    src.write_bytes(bytes(range(256)) * (6 * 4096))
    info = store.put_file(bucket, "big/file.bin", src)
    out = store.get_file(bucket, "big/file.bin", tmp_path / "down" / "file.bin")
    assert (tmp_path / "down" / "file.bin").read_bytes() == src.read_bytes()
    assert out.sha256 == info.sha256 == hashlib.sha256(src.read_bytes()).hexdigest()
    assert [p.name for p in (tmp_path / "down").iterdir()] == ["file.bin"]  # no temp left


def test_tampered_object_refused(
    request: pytest.FixtureRequest, store: ObjectStore, bucket: str, tmp_path: Path
) -> None:
    """Bytes changed behind the store fail verification on get_bytes and get_file."""
    store.put_bytes(bucket, "model/weights.pt", b"good weights")
    _tamper(request, store, bucket, "model/weights.pt")
    with pytest.raises(IntegrityError, match=r"model/weights\.pt"):
        store.get_bytes(bucket, "model/weights.pt")
    with pytest.raises(IntegrityError):
        store.get_file(bucket, "model/weights.pt", tmp_path / "w.pt")
    assert not (tmp_path / "w.pt").exists()
    assert not list(tmp_path.glob(".w.pt*"))  # the temp download was removed


def test_recover_and_verify_objects(
    request: pytest.FixtureRequest, store: ObjectStore, bucket: str
) -> None:
    """On an intact bucket recover fixes nothing; verify_objects names exactly the
    tampered object under the prefix (and reports, rather than raises)."""
    store.put_bytes(bucket, "v/good.bin", b"good")
    store.put_bytes(bucket, "v/bad.bin", b"to be tampered")
    store.put_bytes(bucket, "w/other.bin", b"other")
    _tamper(request, store, bucket, "v/bad.bin")
    report = store.recover(bucket, "v/")
    assert report.ok and report.fixed == [] and report.unfixable == []
    problems = store.verify_objects(bucket, "v/")
    assert [p.key for p in problems] == ["v/bad.bin"]
    assert "v/bad.bin" in problems[0].action and "corrupt" in problems[0].action
    assert store.verify_objects(bucket, "w/") == []


def test_list_prefix_and_start_after_in_key_order(store: ObjectStore, bucket: str) -> None:
    """list is recursive, filtered by prefix, in byte order, and resumes after a key."""
    keys = ["b", "ab", "a/b", "a-b", "a/a/c", "a/c/d/e"]
    for key in keys:
        store.put_bytes(bucket, key, key.encode())
    assert [o.key for o in store.list(bucket)] == sorted(keys)
    assert [o.key for o in store.list(bucket, "a/")] == ["a/a/c", "a/b", "a/c/d/e"]
    assert [o.key for o in store.list(bucket, "a", start_after="a/b")] == ["a/c/d/e", "ab"]
    assert [o.key for o in store.list(bucket, "zzz")] == []
    assert store.list_prefixes(bucket, "a/") == ["a", "c"]
    assert store.list_prefixes(bucket, "") == ["a"]
    assert store.list_prefixes(bucket, "zzz/") == []
    assert store.list_keys(bucket) == sorted(keys)
    assert store.list_keys(bucket, "a/") == ["a/a/c", "a/b", "a/c/d/e"]
    assert store.list_keys(bucket, "a") == ["a-b", "a/a/c", "a/b", "a/c/d/e", "ab"]
    assert {o.key: o.size for o in store.list(bucket, "a/c")} == {"a/c/d/e": 7}


class _FailingReader(io.RawIOBase):
    """A file reader that raises OSError after ``fail_after`` bytes (a dying disk or NFS)."""

    def __init__(self, path: Path, fail_after: int) -> None:
        super().__init__()
        self._fh = io.FileIO(path, "rb")
        self._left = fail_after

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._left <= 0:
            raise OSError("injected read failure")
        n = self._fh.readinto(memoryview(buffer)[: self._left])
        self._left -= n or 0
        return n or 0

    def close(self) -> None:
        self._fh.close()
        super().close()


def test_interrupted_upload_leaves_no_object(
    store: ObjectStore, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A put_file whose source fails half way through a 12 MiB upload leaves nothing
    under the key (nor in list); an existing object under that key stays intact.

    The S3 backend reads the file twice (hash, then upload), so the failure is injected
    on the second open, after parts were already sent; LocalStore reads it once.
    """
    src = tmp_path / "big.bin"
    src.write_bytes(b"x" * (12 << 20))
    store.put_bytes(bucket, "old", b"old object")
    fail_on_open = 2 if isinstance(store, MinioStore) else 1
    opens = {"n": 0}
    real_open = Path.open

    def flaky_open(self: Path, mode: str = "r", *args: Any, **kw: Any) -> Any:
        if self == src:
            opens["n"] += 1
            if opens["n"] == fail_on_open:
                return io.BufferedReader(_FailingReader(self, 6 << 20))
        return real_open(self, mode, *args, **kw)

    monkeypatch.setattr(Path, "open", flaky_open)
    with pytest.raises(OSError, match="injected"):
        store.put_file(bucket, "new", src)
    with pytest.raises(OSError, match="injected"):
        opens["n"] = 0
        store.put_file(bucket, "old", src)
    monkeypatch.undo()
    assert opens["n"] == fail_on_open
    assert not store.exists(bucket, "new")
    assert [o.key for o in store.list(bucket)] == ["old"]
    assert store.get_bytes(bucket, "old") == b"old object"
    if isinstance(store, LocalStore):
        assert list((store.root / ".tmp").iterdir()) == []


def test_concurrent_reader_sees_whole_objects(store: ObjectStore, bucket: str) -> None:
    """While one thread rewrites a key with alternating 256 KiB values, a reader only
    ever gets one complete value (never a mix, never a checksum error)."""
    values = [bytes([65 + i]) * (256 << 10) for i in range(2)]
    store.put_bytes(bucket, "hot", values[0])
    stop, seen, errors = threading.Event(), set(), []

    def read() -> None:
        while not stop.is_set():
            try:
                seen.add(store.get_bytes(bucket, "hot"))
            except IntegrityError as exc:
                errors.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    for i in range(40):
        store.put_bytes(bucket, "hot", values[i % 2])
    stop.set()
    reader.join(timeout=30)
    assert errors == []
    assert seen and seen <= set(values)


def test_conditional_writes(store: ObjectStore, bucket: str) -> None:
    """if_none_match refuses an existing key; if_match refuses a stale or missing etag."""
    first = store.put_bytes(bucket, "alias", b"v1", if_none_match=True)
    with pytest.raises(Conflict, match="alias"):
        store.put_bytes(bucket, "alias", b"v2", if_none_match=True)
    second = store.put_bytes(bucket, "alias", b"v2", if_match=first.etag)
    assert second.etag != first.etag
    with pytest.raises(Conflict):
        store.put_bytes(bucket, "alias", b"v3", if_match=first.etag)  # stale
    with pytest.raises(Conflict):
        store.put_bytes(bucket, "missing", b"v1", if_match=first.etag)
    assert store.get_bytes(bucket, "alias") == b"v2"
    assert not store.exists(bucket, "missing")


def test_missing_key_and_bucket_name_themselves(store: ObjectStore, bucket: str) -> None:
    """NotFound messages name the missing key or bucket, for every read operation."""
    with pytest.raises(NotFound, match="no/such/key"):
        store.get_bytes(bucket, "no/such/key")
    with pytest.raises(NotFound, match="no/such/key"):
        store.stat(bucket, "no/such/key")
    with pytest.raises(NotFound, match="no-such-bucket-x"):
        store.get_bytes("no-such-bucket-x", "k")
    with pytest.raises(NotFound, match="no-such-bucket-x"):
        list(store.list("no-such-bucket-x"))
    with pytest.raises(NotFound, match="no-such-bucket-x"):
        store.put_bytes("no-such-bucket-x", "k", b"1")


def test_delete_is_idempotent(store: ObjectStore, bucket: str) -> None:
    """Deleting removes the object; deleting again (or a never-written key) is fine."""
    store.put_bytes(bucket, "d/k", b"1")
    store.delete(bucket, "d/k")
    store.delete(bucket, "d/k")
    store.delete(bucket, "never/written")
    assert not store.exists(bucket, "d/k")
    assert list(store.list(bucket)) == []


def test_unreachable_endpoint_is_store_unavailable() -> None:
    """A closed port gives StoreUnavailable naming the endpoint, after the retries."""
    port = free_port()
    store = MinioStore(
        f"127.0.0.1:{port}", access_key="k", secret_key="s", retries=2, backoff_s=0.01
    )
    with pytest.raises(StoreUnavailable, match=f"127.0.0.1:{port}.*3 attempts"):
        store.get_bytes("bkt-x", "k")


def test_bad_credentials_is_store_auth_error(s3_server: S3Server, s3_bucket: str) -> None:
    """Refused credentials give StoreAuthError (not retried, not NotFound).

    On moto, authentication is switched on for this test through its control API
    (``/moto-api/reset-auth``): with no IAM users, every key is then refused.
    """
    import urllib3

    store = MinioStore(
        s3_server.endpoint, access_key="wrong-key", secret_key="wrong", retries=2, backoff_s=5
    )
    http = urllib3.PoolManager()
    if s3_server.kind == "moto":
        http.request("POST", f"http://{s3_server.endpoint}/moto-api/reset-auth", body=b"0")
    try:
        with pytest.raises(StoreAuthError, match="refused the credentials"):
            store.get_bytes(s3_bucket, "k")
    finally:
        if s3_server.kind == "moto":
            http.request("POST", f"http://{s3_server.endpoint}/moto-api/reset-auth", body=b"inf")


class FaultProxy:
    """A TCP proxy to the S3 server that answers the first connections with canned
    HTTP errors (one per connection, then closes) and pipes the rest through."""

    def __init__(self, upstream: str, faults: list[tuple[int, str]]) -> None:
        self.faults = list(faults)
        self.served_faults = 0
        host, port = upstream.rsplit(":", 1)
        self._upstream = (host, int(port))
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"127.0.0.1:{self._sock.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        if self.faults:
            status, code = self.faults.pop(0)
            self.served_faults += 1
            _read_request(conn)
            body = f"<Error><Code>{code}</Code><Message>injected</Message></Error>".encode()
            head = (
                f"HTTP/1.1 {status} Injected\r\nContent-Type: application/xml\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            conn.sendall(head.encode() + body)
            conn.close()
            return
        upstream = socket.create_connection(self._upstream)
        threading.Thread(target=_pipe, args=(upstream, conn), daemon=True).start()
        _pipe(conn, upstream)

    def close(self) -> None:
        self._sock.close()


def _read_request(conn: socket.socket) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    while len(rest) < length:
        rest += conn.recv(65536)


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while chunk := src.recv(65536):
            dst.sendall(chunk)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def fault_proxy(s3_server: S3Server) -> Iterator[Any]:
    """Factory: a FaultProxy in front of the test server with the given faults."""
    proxies: list[FaultProxy] = []

    def make(faults: list[tuple[int, str]]) -> FaultProxy:
        proxies.append(FaultProxy(s3_server.endpoint, faults))
        return proxies[-1]

    yield make
    for proxy in proxies:
        proxy.close()


def _via(proxy: FaultProxy, server: S3Server, retries: int) -> MinioStore:
    return MinioStore(
        proxy.endpoint,
        access_key=server.access_key,
        secret_key=server.secret_key,
        retries=retries,
        backoff_s=0.01,
    )


def test_transient_faults_are_retried(
    s3_server: S3Server, s3_store: MinioStore, s3_bucket: str, fault_proxy: Any
) -> None:
    """A 503 SlowDown and a 500 InternalError are retried; the third attempt succeeds."""
    s3_store.put_bytes(s3_bucket, "k", b"payload")
    proxy = fault_proxy([(503, "SlowDown"), (500, "InternalError")])
    assert _via(proxy, s3_server, retries=2).get_bytes(s3_bucket, "k") == b"payload"
    assert proxy.served_faults == 2


def test_persistent_5xx_gives_store_error_and_4xx_is_not_retried(
    s3_server: S3Server, s3_bucket: str, fault_proxy: Any
) -> None:
    """Faults beyond the retry budget raise StoreError; a 403 is answered at once."""
    proxy = fault_proxy([(503, "SlowDown")] * 3)
    with pytest.raises(StoreError, match="SlowDown"):
        _via(proxy, s3_server, retries=1).get_bytes(s3_bucket, "k")
    assert proxy.served_faults == 2
    proxy = fault_proxy([(403, "AccessDenied"), (503, "SlowDown")])
    with pytest.raises(StoreAuthError):
        _via(proxy, s3_server, retries=3).get_bytes(s3_bucket, "k")
    assert proxy.served_faults == 1


def test_open_store_s3_url(s3_settings: Any) -> None:
    """open_store on an s3:// URL gives a MinioStore on the configured endpoint that
    reads and writes the configured buckets."""
    from speechloop.storage import open_store

    store = open_store(s3_settings)
    assert isinstance(store, MinioStore) and store.endpoint == s3_settings.s3_endpoint
    store.put_bytes(s3_settings.data_bucket, "k", b"v")
    assert store.get_bytes(s3_settings.data_bucket, "k") == b"v"
