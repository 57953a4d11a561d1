"""A TCP fault forwarder for tests: an HTTP/1.1-aware proxy on 127.0.0.1 in front of an
S3 server process, that injects network faults into chosen kinds of request.

Why: the store, the registry and the ledger promise to survive connection faults
(issue 12). The faults that matter happen *between* the client and the server: a request
that never arrives, a connection reset, a server that stalls, a request the server
applied whose reply was lost. Only a forwarder on the wire produces them with a real
server process and a real SDK on either side.

It parses just enough HTTP/1.1 to know where each request ends: the request line,
headers, and a body framed by ``Content-Length`` or chunked encoding (``Expect:
100-continue`` is answered by the proxy itself). Each request is forwarded on its own
upstream connection with ``Connection: close``; after each reply the client connection
is closed as well (the reply says so), so one client connection carries one request.

Requests are classified by method and object key (path-style S3: ``/<bucket>/<key>``):
``LIST`` (a GET on a bucket with listing parameters), ``GET``, ``HEAD``, ``PUT``,
``DELETE``, ``POST``. A rule matches either a string ``"<METHOD> <key glob>"`` (``*``
for any method; for ``LIST`` the glob applies to the ``prefix`` parameter) or a
callable on :class:`Request`. Actions:

- ``refuse``: close the connection (FIN) without contacting the server;
- ``reset``: read the request, then reset the connection (RST), server untouched;
- ``stall``: hold the request ``seconds``, then forward it (a paused server: the
  client may have given up while the server still applies it);
- ``drop_reply``: forward the request, let the server apply it and answer, then reset
  the client connection without the reply (the lost reply);
- ``truncate_reply``: like ``drop_reply``, but first send the reply's headers and half
  its body (a connection that breaks mid-download);
- ``error``: answer ``status`` (default 502) with an HTML page, as a load balancer in
  front of the server does, without contacting the server;
- ``applied_error``: forward the request (the server applies it), then answer
  ``status`` with the HTML page instead of the server's reply;
- ``pass``: forward normally (useful to count).

Example::

    with FaultProxy(("127.0.0.1", port)) as proxy:
        proxy.add_rule("PUT */aliases/production", "drop_reply", times=1)
        ...                                   # point a store at proxy.endpoint
        assert proxy.count("drop_reply") == 1
"""

from __future__ import annotations

import contextlib
import fnmatch
import socket
import struct
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO, Literal
from urllib.parse import parse_qs, unquote, urlsplit

Action = Literal[
    "pass", "refuse", "reset", "stall", "drop_reply", "truncate_reply", "error", "applied_error"
]
ACTIONS: tuple[Action, ...] = (
    "pass",
    "refuse",
    "reset",
    "stall",
    "drop_reply",
    "truncate_reply",
    "error",
    "applied_error",
)
Matcher = str | Callable[["Request"], bool]
_MAX_LINE = 65_536
_HOP_HEADERS = {"connection", "keep-alive", "expect", "proxy-connection"}


class ProtocolViolation(Exception):
    """The bytes on a connection are not the HTTP/1.1 this proxy understands."""


@dataclass(frozen=True)
class Request:
    """One HTTP request as the proxy read it: what a rule can match on."""

    method: str
    target: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    chunked: bool = False

    @property
    def path(self) -> str:
        """The decoded path of the request target."""
        return unquote(urlsplit(self.target).path)

    @property
    def query(self) -> dict[str, list[str]]:
        """The query parameters of the request target."""
        return parse_qs(urlsplit(self.target).query, keep_blank_values=True)

    @property
    def bucket(self) -> str:
        """The bucket of a path-style S3 request ("" for the service root)."""
        return self.path.lstrip("/").split("/", 1)[0]

    @property
    def key(self) -> str:
        """The object key of a path-style S3 request ("" for bucket-level requests)."""
        parts = self.path.lstrip("/").split("/", 1)
        return parts[1] if len(parts) == 2 else ""

    @property
    def kind(self) -> str:
        """``LIST`` for a bucket listing, else the HTTP method."""
        query = self.query
        if self.method == "GET" and not self.key and self.bucket:
            listing = {"list-type", "prefix", "delimiter", "marker", "start-after"}
            if listing & set(query) or not query:
                return "LIST"
        return self.method

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)

    def matches(self, spec: str) -> bool:
        """Whether ``"<METHOD> <glob>"`` matches: method (``*`` any) and key glob.

        For ``LIST`` the glob is matched against the ``prefix`` parameter.
        """
        method, _, glob = spec.strip().partition(" ")
        glob = glob.strip() or "*"
        if method not in ("*", self.kind):
            return False
        subject = self.query.get("prefix", [""])[0] if self.kind == "LIST" else self.key
        return fnmatch.fnmatchcase(subject, glob)

    def wire(self) -> bytes:
        """The request as sent upstream: hop-by-hop headers replaced by ``Connection: close``."""
        lines = [f"{self.method} {self.target} HTTP/1.1"]
        lines += [f"{k}: {v}" for k, v in self.headers if k.lower() not in _HOP_HEADERS]
        lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


@dataclass
class Rule:
    """What to do with matching requests, how many more times, and how often it fired."""

    match: Matcher
    action: Action
    times: int | None = 1
    seconds: float = 0.0
    after: int = 0
    status: int = 502
    hits: int = 0
    passed: int = 0

    def applies(self, request: Request) -> bool:
        """Whether this rule fires on ``request`` (counting the matches it lets pass)."""
        if self.times is not None and self.hits >= self.times:
            return False
        if isinstance(self.match, str):
            matched = request.matches(self.match)
        else:
            matched = bool(self.match(request))
        if matched and self.passed < self.after:
            self.passed += 1
            return False
        return matched


@dataclass(frozen=True)
class Seen:
    """One request the proxy handled, and what it did with it."""

    kind: str
    bucket: str
    key: str
    action: Action


@dataclass
class _Reply:
    raw: bytes
    status: int = 0
    head_size: int = 0

    @property
    def body(self) -> bytes:
        """The reply's body bytes (framing included, as forwarded)."""
        return self.raw[self.head_size :]


@dataclass
class FaultProxy:
    """A threaded fault-injecting forwarder on 127.0.0.1 (see the module docstring)."""

    upstream: tuple[str, int]
    upstream_timeout_s: float = 30.0
    rules: list[Rule] = field(default_factory=list, repr=False)
    log: list[Seen] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._clients: set[socket.socket] = set()
        self.port = 0

    # -- life cycle --------------------------------------------------------------------

    def start(self) -> FaultProxy:
        """Listen on a free port of 127.0.0.1 and serve in background threads."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.1)
        self.port = int(listener.getsockname()[1])
        self._listener = listener
        self._stopping.clear()
        thread = threading.Thread(target=self._accept_loop, name="faultproxy", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop listening (new connections are refused by the kernel) and drop open ones.

        :meth:`start` listens again on the same port.
        """
        self._stopping.set()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            clients = list(self._clients)
        for sock in clients:
            _reset(sock)
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        """``host:port`` to give an S3 client instead of the server's."""
        return f"127.0.0.1:{self.port}"

    # -- rules and counts --------------------------------------------------------------

    def add_rule(
        self,
        match: Matcher,
        action: Action,
        *,
        times: int | None = 1,
        seconds: float = 0.0,
        after: int = 0,
        status: int = 502,
    ) -> Rule:
        """Apply ``action`` to ``times`` matching requests (None: all of them), once
        ``after`` matching requests went by untouched; ``seconds`` is a stall's hold,
        ``status`` the HTTP status of an ``error`` / ``applied_error`` answer.

        Rules are tried in the order added; the first that applies wins.
        """
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}: expected one of {ACTIONS}")
        if isinstance(match, str) and not match.strip():
            raise ValueError("empty match: use '* *' to match every request")
        rule = Rule(match, action, times, seconds, after, status)
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear_rules(self) -> None:
        """Forget every rule: from now on requests pass."""
        with self._lock:
            self.rules.clear()

    def count(self, action: Action | None = None, match: str | None = None) -> int:
        """How many handled requests got ``action`` (any if None) and match ``match``."""
        with self._lock:
            log = list(self.log)
        return sum(
            1
            for seen in log
            if (action is None or seen.action == action)
            and (match is None or _seen_matches(seen, match))
        )

    def counts(self) -> Counter[tuple[Action, str]]:
        """Handled requests by (action, kind)."""
        with self._lock:
            return Counter((seen.action, seen.kind) for seen in self.log)

    def _decide(self, request: Request) -> Rule | None:
        with self._lock:
            for rule in self.rules:
                if rule.applies(request):
                    rule.hits += 1
                    action = rule.action
                    break
            else:
                rule, action = None, "pass"
            self.log.append(Seen(request.kind, request.bucket, request.key, action))
        return rule

    # -- serving -----------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            listener = self._listener
            if listener is None:
                return
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            with self._lock:
                self._clients.add(client)
            thread = threading.Thread(target=self._serve, args=(client,), daemon=True)
            thread.start()
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)

    def _serve(self, client: socket.socket) -> None:
        """Handle one request on ``client`` as the rules say, then close the connection."""
        reader = client.makefile("rb")
        try:
            request = read_request(reader, client)
            if request is None:
                return
            rule = self._decide(request)
            action: Action = rule.action if rule else "pass"
            if action == "refuse":
                return  # the finally below closes with a FIN
            if action == "reset":
                reader.close()
                _reset(client)
                return
            if action == "stall" and rule is not None and self._stopping.wait(rule.seconds):
                return
            if action == "error" and rule is not None:
                client.sendall(_error_page(rule.status))
                return
            try:
                reply = self._forward(request)
            except OSError:
                reader.close()
                _reset(client)  # upstream gone: the client sees a dead connection
                return
            if action == "truncate_reply":
                with contextlib.suppress(OSError):
                    client.sendall(reply.raw[: reply.head_size + len(reply.body) // 2])
            if action in ("drop_reply", "truncate_reply"):
                reader.close()
                _reset(client)
                return
            if action == "applied_error" and rule is not None:
                reply = _Reply(_error_page(rule.status))
            with contextlib.suppress(OSError):
                client.sendall(reply.raw)
        except (OSError, ProtocolViolation):
            pass
        finally:
            with self._lock:
                self._clients.discard(client)
            with contextlib.suppress(OSError):
                reader.close()
            with contextlib.suppress(OSError):
                client.close()

    def _forward(self, request: Request) -> _Reply:
        """Send ``request`` on a fresh upstream connection; return the whole reply."""
        with socket.create_connection(self.upstream, timeout=self.upstream_timeout_s) as up:
            up.sendall(request.wire())
            with up.makefile("rb") as reader:
                return read_reply(reader, head_only=request.method == "HEAD")


# -- HTTP framing ------------------------------------------------------------------------


def _readline(reader: BinaryIO) -> bytes:
    line = reader.readline(_MAX_LINE + 1)
    if len(line) > _MAX_LINE:
        raise ProtocolViolation("header line too long")
    return line


def _read_headers(reader: BinaryIO) -> list[tuple[str, str]]:
    headers: list[tuple[str, str]] = []
    while True:
        line = _readline(reader)
        if not line:
            raise ProtocolViolation("connection closed inside the headers")
        if line in (b"\r\n", b"\n"):
            return headers
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep:
            raise ProtocolViolation(f"malformed header line {line!r}")
        headers.append((name.strip(), value.strip()))


def _get(headers: list[tuple[str, str]], name: str) -> str | None:
    return next((v for k, v in headers if k.lower() == name), None)


def _read_exact(reader: BinaryIO, n: int) -> bytes:
    data = reader.read(n)
    if len(data) != n:
        raise ProtocolViolation(f"body ended after {len(data)} of {n} bytes")
    return data


def _read_chunked(reader: BinaryIO) -> bytes:
    """A chunked body, framing included (it is forwarded as it came)."""
    out = bytearray()
    while True:
        line = _readline(reader)
        out += line
        size = int(line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            while True:  # trailers, then the blank line
                trailer = _readline(reader)
                out += trailer
                if trailer in (b"\r\n", b"\n", b""):
                    return bytes(out)
        out += _read_exact(reader, size + 2)


def read_request(reader: BinaryIO, client: socket.socket | None = None) -> Request | None:
    """The next request on a connection (None at a clean end of the connection).

    ``Expect: 100-continue`` is answered on ``client`` before the body is read.
    """
    line = _readline(reader)
    while line in (b"\r\n", b"\n"):
        line = _readline(reader)
    if not line:
        return None
    parts = line.decode("latin-1").split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise ProtocolViolation(f"not an HTTP/1.x request line: {line!r}")
    method, target, _version = parts
    headers = _read_headers(reader)
    expect = _get(headers, "expect")
    if client is not None and expect and expect.lower() == "100-continue":
        client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
    encoding = (_get(headers, "transfer-encoding") or "").lower()
    if "chunked" in encoding:
        return Request(method, target, tuple(headers), _read_chunked(reader), chunked=True)
    length = int(_get(headers, "content-length") or 0)
    return Request(method, target, tuple(headers), _read_exact(reader, length))


def read_reply(reader: BinaryIO, *, head_only: bool = False) -> _Reply:
    """A whole HTTP reply as raw bytes, re-framed to say ``Connection: close``."""
    while True:
        status_line = _readline(reader)
        if not status_line:
            raise ProtocolViolation("upstream closed before replying")
        parts = status_line.decode("latin-1").split(None, 2)
        status = int(parts[1])
        headers = _read_headers(reader)
        if not 100 <= status < 200:
            break
    encoding = (_get(headers, "transfer-encoding") or "").lower()
    length = _get(headers, "content-length")
    if head_only or status in (204, 304):
        body = b""
    elif "chunked" in encoding:
        body = _read_chunked(reader)
    elif length is not None:
        body = _read_exact(reader, int(length))
    else:
        body = reader.read()
    kept = [(k, v) for k, v in headers if k.lower() not in ("connection", "keep-alive")]
    lines = [status_line.decode("latin-1").rstrip("\r\n")]
    lines += [f"{k}: {v}" for k, v in kept] + ["Connection: close"]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return _Reply(head + body, status, len(head))


def _error_page(status: int) -> bytes:
    """A load balancer's error answer: ``status`` with a small HTML body, then close."""
    body = f"<html><body><h1>{status} from the fault proxy</h1></body></html>".encode()
    head = (
        f"HTTP/1.1 {status} Fault\r\nContent-Type: text/html\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


def _reset(sock: socket.socket) -> None:
    """Close ``sock`` with an RST (SO_LINGER 0) instead of a FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


def _seen_matches(seen: Seen, spec: str) -> bool:
    method, _, glob = spec.strip().partition(" ")
    return method in ("*", seen.kind) and fnmatch.fnmatchcase(seen.key, glob.strip() or "*")
