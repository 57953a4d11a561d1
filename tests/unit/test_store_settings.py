"""Store settings and failure reporting: the endpoint setting is validated (a scheme sets
``s3_secure``, a path is refused), timeouts and the retry budget reach the S3 backend,
retries are logged at debug level, and the CLI reports a bad setting or an unreachable
store in one ``error:`` line."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from speechloop.cli.main import app
from speechloop.config import Settings, get_settings
from speechloop.errors import InvalidInput, StoreUnavailable
from speechloop.storage.endpoint import parse_endpoint
from speechloop.storage.retry import RetriesExhausted, call_with_retries
from speechloop.storage.s3 import MinioStore


@pytest.mark.parametrize(
    ("value", "endpoint", "secure"),
    [
        ("minio:9000", "minio:9000", None),
        ("minio", "minio", None),
        ("http://minio:9000", "minio:9000", False),
        ("HTTPS://minio.example.com", "minio.example.com", True),
        ("https://minio:9000/", "minio:9000", True),
        ("[::1]:9000", "[::1]:9000", None),
        (" 10.0.0.5:9000 ", "10.0.0.5:9000", None),
    ],
)
def test_endpoint_forms_accepted(value: str, endpoint: str, secure: bool | None) -> None:
    """host[:port] and http(s)://host[:port] give the SDK's host:port (and secure)."""
    assert parse_endpoint(value) == (endpoint, secure)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("http://minio:9000/speech-data", "it has a path '/speech-data'"),
        ("minio:9000/x", "it has a path '/x'"),
        ("ftp://minio:21", "scheme 'ftp' is not http or https"),
        ("minio:99999", "port is not a number"),
        ("minio:", "port is not a number"),
        ("minio:nine", "port is not a number"),
        ("http://key:secret@minio:9000", "holds credentials"),
        ("http://minio:9000?x=1", "query or fragment"),
        ("", "names no host"),
        ("http://", "names no host"),
    ],
)
def test_bad_endpoints_refused_naming_the_problem(value: str, problem: str) -> None:
    """Each malformed endpoint is one ValueError naming the variable, the value and why."""
    with pytest.raises(ValueError, match="SPEECHLOOP_S3_ENDPOINT") as info:
        parse_endpoint(value)
    assert problem in str(info.value) and repr(value) in str(info.value)


def test_scheme_sets_secure_and_a_contradiction_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SPEECHLOOP_S3_ENDPOINT=https://... sets s3_secure; with S3_SECURE=false it is an error."""
    monkeypatch.setenv("SPEECHLOOP_S3_ENDPOINT", "https://minio.example.com:9000")
    settings = Settings()
    assert (settings.s3_endpoint, settings.s3_secure) == ("minio.example.com:9000", True)
    monkeypatch.setenv("SPEECHLOOP_S3_SECURE", "false")
    get_settings.cache_clear()
    try:
        with pytest.raises(InvalidInput, match="says https but SPEECHLOOP_S3_SECURE=False"):
            get_settings()
    finally:
        get_settings.cache_clear()


def test_get_settings_names_every_bad_setting_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad endpoint and a negative retry count: one InvalidInput line naming both."""
    monkeypatch.setenv("SPEECHLOOP_S3_ENDPOINT", "http://minio:9000/bucket")
    monkeypatch.setenv("SPEECHLOOP_STORE_RETRIES", "-1")
    get_settings.cache_clear()
    try:
        with pytest.raises(InvalidInput) as info:
            get_settings()
    finally:
        get_settings.cache_clear()
    message = str(info.value)
    assert "\n" not in message
    assert "path '/bucket'" in message and "SPEECHLOOP_STORE_RETRIES" in message


def test_timeouts_and_budget_reach_the_s3_backend() -> None:
    """from_settings passes the connect/read timeouts and the retry budget to the store."""
    settings = Settings(
        s3_endpoint="http://127.0.0.1:9",
        store_connect_timeout_s=1.5,
        store_read_timeout_s=4.0,
        store_retry_budget_s=7.0,
        store_retries=3,
    )
    store = MinioStore.from_settings(settings)
    assert store.endpoint == "127.0.0.1:9"
    assert (store.connect_timeout_s, store.read_timeout_s) == (1.5, 4.0)
    assert (store.retry_budget_s, store.retries) == (7.0, 3)
    defaults = Settings()
    assert defaults.store_connect_timeout_s * (defaults.store_retries + 1) <= 30
    assert defaults.store_retry_budget_s + defaults.store_read_timeout_s <= 30


class _Transient(Exception):
    pass


def test_retry_budget_stops_retrying_and_retries_log_at_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With each attempt taking 10 (fake) seconds and a 25 s budget, the third attempt is
    the last of 10 allowed; the retries are debug records, never warnings."""
    now = [0.0]
    calls = []

    def attempt() -> None:
        calls.append(now[0])
        now[0] += 10.0
        raise _Transient("stalled")

    caplog.set_level(logging.DEBUG, logger="speechloop.storage.retry")
    with pytest.raises(RetriesExhausted) as info:
        call_with_retries(
            attempt,
            retries=10,
            backoff_s=1.0,
            is_transient=lambda exc: isinstance(exc, _Transient),
            what="get b/k",
            budget_s=25.0,
            sleep=lambda s: now.__setitem__(0, now[0] + s),
            clock=lambda: now[0],
        )
    assert info.value.attempts == len(calls) == 3
    assert isinstance(info.value.last, _Transient) and info.value.__cause__ is info.value.last
    assert [r.levelno for r in caplog.records] == [logging.DEBUG, logging.DEBUG]


def test_non_transient_error_is_raised_as_it_is() -> None:
    """A fault the policy does not retry propagates at once, unwrapped."""
    calls: list[int] = []

    def fail() -> None:
        calls.append(1)
        raise KeyError("x")

    with pytest.raises(KeyError):
        call_with_retries(fail, retries=3, backoff_s=1.0, is_transient=lambda e: False, what="x")
    assert calls == [1]


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A TCP server on loopback that accepts connections and never answers (a stalled store)."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield f"127.0.0.1:{server.getsockname()[1]}"
    server.close()
    for conn in held:
        conn.close()


def test_stalled_store_fails_on_the_read_timeout_within_the_budget(silent_server: str) -> None:
    """A server that never replies gives StoreUnavailable naming the read timeout; the
    budget (0.5 s) ends the retries long before the 50 allowed."""
    store = MinioStore(
        silent_server,
        access_key="k",
        secret_key="s",
        retries=50,
        backoff_s=0.01,
        read_timeout_s=0.2,
        retry_budget_s=0.5,
    )
    with pytest.raises(StoreUnavailable, match=r"no reply within 0\.2 s \(get bkt/k, ") as info:
        store.get_bytes("bkt", "k")
    attempts = int(str(info.value).split(", ")[-1].split(" attempts")[0])
    assert 1 <= attempts <= 10


def _cli(env: dict[str, str], args: tuple[str, ...] = ("data", "status")) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "300", **env})
    return result.exit_code, result.output


@pytest.mark.parametrize(
    "args",
    [
        ("data", "status"),
        ("models", "list", "asr"),
        ("asr", "transcribe", "x.wav"),
        ("spk", "verify", "a.wav", "b.wav"),
    ],
    ids=lambda args: " ".join(args[:2]),
)
def test_cli_bad_endpoint_is_one_error_line(args: tuple[str, ...]) -> None:
    """SPEECHLOOP_S3_ENDPOINT with a path: every command group exits non-zero with one
    'error:' line naming the setting, no traceback."""
    get_settings.cache_clear()
    env = {"SPEECHLOOP_STORE": "s3://", "SPEECHLOOP_S3_ENDPOINT": "http://h:9000/x"}
    code, out = _cli(env, args)
    get_settings.cache_clear()
    assert code in (1, 2), out
    assert out.startswith("error: invalid settings: SPEECHLOOP_S3_ENDPOINT='http://h:9000/x'"), out
    assert len(out.strip().splitlines()) == 1, out


def test_cli_unreachable_store_is_one_error_line() -> None:
    """A closed port: exit 1 with one line naming the endpoint and the reason; the
    retries before it print nothing."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    get_settings.cache_clear()
    code, out = _cli(
        {
            "SPEECHLOOP_STORE": "s3://",
            "SPEECHLOOP_S3_ENDPOINT": f"http://127.0.0.1:{port}",
            "SPEECHLOOP_STORE_RETRIES": "2",
            "SPEECHLOOP_STORE_BACKOFF_S": "0.01",
        }
    )
    get_settings.cache_clear()
    assert code == 1, out
    assert len(out.strip().splitlines()) == 1, out
    assert f"error: object store at 127.0.0.1:{port} unreachable: " in out
    assert "Connection refused" in out and "3 attempts" in out
