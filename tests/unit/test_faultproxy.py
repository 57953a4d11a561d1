"""The fault forwarder of the integration tests (tests/integration/faultproxy.py), in front
of a tiny stdlib HTTP server in this process: each action does what it says to the client
and to the server, rules fire the number of times asked, requests are classified by kind."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.integration.faultproxy import FaultProxy, Request


class _Upstream(ThreadingHTTPServer):
    """Records every request it applied: (method, path, body)."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.applied: list[tuple[str, str, bytes]] = []
        self.arrived = threading.Event()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Upstream

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", ""):
            out = b""
            while size := int(self.rfile.readline().split(b";")[0], 16):
                out += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
            return out
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def _answer(self) -> None:
        body = self._body() if self.command in ("PUT", "POST") else b""
        self.server.applied.append((self.command, self.path, body))
        self.server.arrived.set()
        reply = b"ok " + self.path.encode() + b" " + body
        self.send_response(200)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply)

    def do_GET(self) -> None:
        self._answer()

    def do_PUT(self) -> None:
        self._answer()

    def do_HEAD(self) -> None:
        self._answer()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def upstream() -> Iterator[_Upstream]:
    server = _Upstream()
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def proxy(upstream: _Upstream) -> Iterator[FaultProxy]:
    with FaultProxy(("127.0.0.1", upstream.server_address[1])) as fp:
        yield fp


def _call(
    proxy: FaultProxy,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 5.0,
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_pass_forwards_and_counts(proxy: FaultProxy, upstream: _Upstream) -> None:
    """Without rules a request and its reply go through; the proxy logs it as passed."""
    assert _call(proxy, "PUT", "/b/k/x", b"data") == (200, b"ok /b/k/x data")
    assert _call(proxy, "HEAD", "/b/k/x") == (200, b"")
    assert upstream.applied == [("PUT", "/b/k/x", b"data"), ("HEAD", "/b/k/x", b"")]
    assert proxy.count("pass") == 2 and proxy.count("pass", "PUT k/*") == 1


@pytest.mark.parametrize("action", ["refuse", "reset"])
def test_refuse_and_reset_never_reach_the_server(
    proxy: FaultProxy, upstream: _Upstream, action: str
) -> None:
    """refuse and reset break the client's connection; the server sees nothing; the rule
    fires once, the next request passes."""
    proxy.add_rule("PUT */aliases/*", action, times=1)  # type: ignore[arg-type]
    with pytest.raises((ConnectionError, http.client.HTTPException)):
        _call(proxy, "PUT", "/b/asr/aliases/production", b"v1")
    assert upstream.applied == []
    assert _call(proxy, "PUT", "/b/asr/aliases/production", b"v2")[0] == 200
    assert upstream.applied == [("PUT", "/b/asr/aliases/production", b"v2")]
    assert proxy.count(action) == 1  # type: ignore[arg-type]


def test_drop_reply_applies_then_resets(proxy: FaultProxy, upstream: _Upstream) -> None:
    """drop_reply: the server applies the request, the client gets a reset, not the reply."""
    proxy.add_rule("PUT *history.jsonl", "drop_reply")
    with pytest.raises(ConnectionError):
        _call(proxy, "PUT", "/b/asr/history.jsonl", b"line\n")
    assert upstream.applied == [("PUT", "/b/asr/history.jsonl", b"line\n")]
    assert proxy.count("drop_reply", "PUT asr/history.jsonl") == 1


def test_stall_holds_then_forwards(proxy: FaultProxy, upstream: _Upstream) -> None:
    """stall: the client times out while held; the server still gets the request later."""
    proxy.add_rule("GET *", "stall", seconds=0.5)
    with pytest.raises(TimeoutError):
        _call(proxy, "GET", "/b/slow", timeout=0.1)
    assert upstream.applied == []
    assert upstream.arrived.wait(10)
    assert upstream.applied == [("GET", "/b/slow", b"")]


def test_only_matching_kind_is_hit(proxy: FaultProxy, upstream: _Upstream) -> None:
    """A rule for one kind leaves other kinds alone; unlimited rules fire every time."""
    proxy.add_rule("LIST asr/ledger/*", "reset", times=None)
    assert _call(proxy, "GET", "/b?list-type=2&prefix=asr/batches/")[0] == 200
    assert _call(proxy, "GET", "/b/asr/ledger/x")[0] == 200
    for _ in range(2):
        with pytest.raises(ConnectionError):
            _call(proxy, "GET", "/b?list-type=2&prefix=asr/ledger/")
    assert proxy.count("reset") == 2 and proxy.count("pass") == 2


def test_chunked_and_expect_continue_bodies_forwarded(
    proxy: FaultProxy, upstream: _Upstream
) -> None:
    """A chunked body and an Expect: 100-continue upload arrive whole upstream."""
    chunks = iter([b"ab", b"cde"])
    assert _call(proxy, "PUT", "/b/c", chunks)[0] == 200  # type: ignore[arg-type]
    headers = {"Expect": "100-continue", "Content-Length": "3"}
    assert _call(proxy, "PUT", "/b/e", b"xyz", headers)[0] == 200
    assert upstream.applied == [("PUT", "/b/c", b"abcde"), ("PUT", "/b/e", b"xyz")]


def test_stopped_proxy_refuses_connections(proxy: FaultProxy) -> None:
    """After stop() nothing listens: a dead store; start() listens again on the same port."""
    proxy.stop()
    with pytest.raises(ConnectionRefusedError):
        _call(proxy, "GET", "/b/k")
    proxy.start()
    assert _call(proxy, "GET", "/b/k")[0] == 200


def test_request_classification() -> None:
    """Kinds and key globs of path-style S3 requests."""

    def req(method: str, target: str) -> Request:
        return Request(method, target, (), b"")

    assert req("GET", "/bkt?list-type=2&prefix=asr%2Fledger%2F").kind == "LIST"
    assert req("GET", "/bkt?location=").kind == "GET"
    assert req("GET", "/bkt/asr/x.wav").kind == "GET"
    put = req("PUT", "/bkt/asr/aliases/production")
    assert (put.bucket, put.key) == ("bkt", "asr/aliases/production")
    assert put.matches("PUT */aliases/production") and put.matches("* *")
    assert not put.matches("GET *") and not put.matches("PUT */manifest.json")
    assert req("GET", "/bkt?list-type=2&prefix=asr%2Fledger%2F").matches("LIST asr/ledger/*")
    with pytest.raises(ValueError, match="unknown action"):
        FaultProxy(("127.0.0.1", 1)).add_rule("* *", "explode")  # type: ignore[arg-type]


def test_after_lets_the_first_matches_pass(proxy: FaultProxy, upstream: _Upstream) -> None:
    """``after=N``: the first N matching requests pass, the next one gets the fault."""
    proxy.add_rule("PUT *", "reset", after=2)
    for i in range(2):
        assert _call(proxy, "PUT", f"/b/k{i}", b"x")[0] == 200
    with pytest.raises(ConnectionError):
        _call(proxy, "PUT", "/b/k2", b"x")
    assert _call(proxy, "PUT", "/b/k3", b"x")[0] == 200
    assert [path for _, path, _ in upstream.applied] == ["/b/k0", "/b/k1", "/b/k3"]


def test_truncate_reply_sends_half_then_resets(proxy: FaultProxy, upstream: _Upstream) -> None:
    """truncate_reply: the server applies the request; the client gets the headers and
    part of the body, then the connection breaks."""
    proxy.add_rule("PUT *", "truncate_reply")
    with pytest.raises((http.client.IncompleteRead, ConnectionError)):
        _call(proxy, "PUT", "/b/long", b"y" * 10_000)
    assert upstream.applied == [("PUT", "/b/long", b"y" * 10_000)]


def test_error_answers_with_or_without_applying(proxy: FaultProxy, upstream: _Upstream) -> None:
    """error: an HTML 502 and the server untouched; applied_error: the server applies the
    request, the client gets the error page instead of the reply."""
    proxy.add_rule("PUT a", "error")
    proxy.add_rule("PUT b", "applied_error", status=504)
    status, body = _call(proxy, "PUT", "/bkt/a", b"1")
    assert status == 502 and b"<html>" in body
    assert _call(proxy, "PUT", "/bkt/b", b"2")[0] == 504
    assert upstream.applied == [("PUT", "/bkt/b", b"2")]
