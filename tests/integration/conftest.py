"""Fixtures for integration tests against a real S3-compatible server on 127.0.0.1.

The server is moto's standalone S3 server, started once per session as a separate
process on a free port and stopped at the end; when ``MINIO_TEST_ENDPOINT`` (host:port)
is set, that real MinIO is used instead (credentials from ``MINIO_TEST_ACCESS_KEY`` /
``MINIO_TEST_SECRET_KEY``, default ``minioadmin``).

moto runs single-threaded here: its threaded server checks ``If-None-Match``/``If-Match``
and stores the object in two separate steps, so two simultaneous conditional writes
could in principle both pass. Serialising requests makes the server behave like S3 and
MinIO, which evaluate the condition atomically.

Fixtures (names are stable; other test modules reuse them):

- ``s3_server`` (session): :class:`S3Server` with ``endpoint``, ``access_key``,
  ``secret_key``, ``kind`` ("moto" or "minio"), ``settings(**overrides)`` and ``raw_client()``
  (a plain ``minio.Minio`` that bypasses the store wrapper).
- ``s3_settings``: a :class:`~speechloop.config.Settings` with ``store="s3://"`` on that
  server, fast retries (2 retries, 10 ms back-off) and fresh unique bucket names for
  ``data_bucket`` and ``models_bucket`` (both created).
- ``s3_store``: a :class:`~speechloop.storage.s3.MinioStore` on the server, fast retries.
- ``s3_bucket``: a fresh, created bucket name in ``s3_store``.
- ``local_store``: a :class:`~speechloop.storage.local.LocalStore` in ``tmp_path``.
- ``store``: parametrised over ``["local", "s3"]``: one of the two stores above.
- ``bucket``: a fresh, created bucket name in ``store``.
- ``fault_proxy``: a :class:`~tests.integration.faultproxy.FaultProxy` in front of the S3
  server (no rules until the test adds some); point a store at ``fault_proxy.endpoint``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from minio import Minio

from speechloop.config import Settings
from speechloop.storage.base import ObjectStore
from speechloop.storage.local import LocalStore
from speechloop.storage.s3 import MinioStore
from tests.integration.faultproxy import FaultProxy

_MOTO_SINGLE_THREADED = (
    "import sys\n"
    "from werkzeug.serving import run_simple\n"
    "from moto.moto_server.werkzeug_app import (\n"
    "    DomainDispatcherApplication, MotoRequestHandler, create_backend_app)\n"
    "app = DomainDispatcherApplication(create_backend_app)\n"
    "run_simple(sys.argv[1], int(sys.argv[2]), app, threaded=False,\n"
    "           request_handler=MotoRequestHandler)\n"
)


@dataclass
class S3Server:
    """Where the S3-compatible test server answers, and how to reach it."""

    endpoint: str
    access_key: str
    secret_key: str
    kind: str
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def settings(self, **overrides: object) -> Settings:
        """Settings for ``store="s3://"`` on this server, with fast retries."""
        values: dict[str, object] = {
            "store": "s3://",
            "s3_endpoint": self.endpoint,
            "s3_access_key": self.access_key,
            "s3_secret_key": self.secret_key,
            "store_retries": 2,
            "store_backoff_s": 0.01,
        }
        values.update(overrides)
        return Settings.model_validate(values)

    def raw_client(self) -> Minio:
        """A bare SDK client, for tests that must bypass the store (tampering)."""
        return Minio(
            endpoint=self.endpoint,
            access_key=self.access_key,
            secret_key=self.secret_key,
            secure=False,
            region="us-east-1",
        )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until_listening(port: int, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto server exited early with status {proc.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"moto server did not listen on port {port} within {timeout_s}s")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real S3 server process on loopback (moto), or the MinIO at MINIO_TEST_ENDPOINT."""
    endpoint = os.environ.get("MINIO_TEST_ENDPOINT")
    if endpoint:
        yield S3Server(
            endpoint=endpoint,
            access_key=os.environ.get("MINIO_TEST_ACCESS_KEY", "minioadmin"),
            secret_key=os.environ.get("MINIO_TEST_SECRET_KEY", "minioadmin"),
            kind="minio",
        )
        return
    port = free_port()
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-c", _MOTO_SINGLE_THREADED, "127.0.0.1", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_until_listening(port, proc, timeout_s=30)
        yield S3Server(f"127.0.0.1:{port}", "testing", "testing", "moto", proc)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def unique_bucket(prefix: str = "t") -> str:
    """A fresh bucket name (valid for S3 and the local store)."""
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


@pytest.fixture
def s3_store(s3_server: S3Server) -> MinioStore:
    """A MinioStore on the test server with fast retries (2 retries, 10 ms back-off)."""
    return MinioStore.from_settings(s3_server.settings())


@pytest.fixture
def s3_bucket(s3_store: MinioStore) -> str:
    """A fresh bucket, created in ``s3_store``."""
    name = unique_bucket()
    s3_store.ensure_bucket(name)
    return name


@pytest.fixture
def s3_settings(s3_server: S3Server, s3_store: MinioStore) -> Settings:
    """Settings on the test server with fresh, created data and models buckets."""
    settings = s3_server.settings(
        data_bucket=unique_bucket("data"), models_bucket=unique_bucket("models")
    )
    s3_store.ensure_bucket(settings.data_bucket)
    s3_store.ensure_bucket(settings.models_bucket)
    return settings


@pytest.fixture
def local_store(tmp_path: Path) -> LocalStore:
    """A LocalStore in this test's temporary directory."""
    return LocalStore(tmp_path / "store")


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest) -> ObjectStore:
    """Each backend in turn; ``request.param`` says which ("local" or "s3")."""
    if request.param == "local":
        return request.getfixturevalue("local_store")
    return request.getfixturevalue("s3_store")


@pytest.fixture
def bucket(store: ObjectStore) -> str:
    """A fresh bucket, created in ``store``."""
    name = unique_bucket()
    store.ensure_bucket(name)
    return name


@pytest.fixture
def fault_proxy(s3_server: S3Server) -> Iterator[FaultProxy]:
    """A fault forwarder in front of the S3 server, stopped (connections dropped) after."""
    host, port = s3_server.endpoint.rsplit(":", 1)
    with FaultProxy((host, int(port))) as proxy:
        yield proxy
