"""The gateway's ASGI middleware: request id, API keys, body limit, metrics, access log.

Runs before the request body is read, so a request without a valid key, with a
``Content-Length`` over the limit, or with a non-multipart body on a ``/v1`` upload
route is answered (401 / 413 / 415) without reading the body. A body without
``Content-Length`` (chunked) is counted as it streams; past the limit the app sees a
disconnect and the client gets 413.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from service.auth import ApiKeys, bearer_token
from service.errors import (
    ErrorInfo,
    PayloadTooLarge,
    ServiceError,
    Unauthorized,
    UnsupportedMedia,
    error_body,
    error_info,
)
from service.logs import request_id_var
from service.metrics import metrics

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("service.access")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
PROTECTED_PREFIX = "/v1/"
ERROR_TYPE_HEADER = b"x-speechloop-error"
KNOWN_ROUTES = {
    "/v1/asr/transcribe",
    "/v1/speaker/embed",
    "/v1/speaker/verify",
    "/v1/speaker/enroll",
    "/v1/speaker/identify",
    "/v1/models",
    "/v1/audio/transcriptions",
}


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _route_label(path: str) -> str:
    return path if path in KNOWN_ROUTES else "other"


async def send_error(send: Send, info: ErrorInfo, request_id: str, **headers: str) -> None:
    """Send a complete JSON error response."""
    body = json.dumps(error_body(info, request_id)).encode()
    raw = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", request_id.encode()),
        (ERROR_TYPE_HEADER, info.type.encode()),
    ]
    raw += [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": info.status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    """ASGI middleware of the gateway (see the module docstring)."""

    def __init__(
        self, app: ASGIApp, *, keys: ApiKeys | None = None, max_body_bytes: int | None = None
    ) -> None:
        """``keys`` / ``max_body_bytes`` default to the service settings, read on first use."""
        self.app = app
        self._keys = keys
        self._max_body_bytes = max_body_bytes

    @property
    def keys(self) -> ApiKeys:
        """The accepted API keys."""
        if self._keys is None:
            from service.settings import get_service_settings

            settings = get_service_settings()
            self._keys = ApiKeys(settings.key_list(), enabled=settings.auth == "on")
        return self._keys

    @property
    def max_body_bytes(self) -> int:
        """The largest body accepted."""
        if self._max_body_bytes is None:
            from service.settings import get_service_settings

            self._max_body_bytes = get_service_settings().max_body_bytes
        return self._max_body_bytes

    def precheck(self, scope: Scope) -> ServiceError | None:
        """The fault of a request that can be answered from its headers alone."""
        path: str = scope.get("path", "")
        if not path.startswith(PROTECTED_PREFIX):
            return None
        if self.keys.enabled:
            token = bearer_token(_header(scope, b"authorization"))
            if token is None:
                return Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
            if not self.keys.accepts(token):
                return Unauthorized("invalid API key")
        if scope.get("method") != "POST":
            return None
        length = _header(scope, b"content-length")
        if length is not None:
            if not length.strip().isdigit():
                return ServiceError(400, f"invalid Content-Length {length!r}", kind="BadRequest")
            if int(length) > self.max_body_bytes:
                return PayloadTooLarge(
                    f"request body of {int(length)} bytes exceeds the limit of "
                    f"{self.max_body_bytes} bytes"
                )
        ctype = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
        if ctype != "multipart/form-data":
            return UnsupportedMedia(
                f"content type {ctype or 'none'!r} is not accepted: send multipart/form-data"
            )
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request (non-HTTP scopes pass through)."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        supplied = _header(scope, b"x-request-id")
        rid = supplied if supplied and _REQUEST_ID.match(supplied) else uuid.uuid4().hex
        token = request_id_var.set(rid)
        started = time.perf_counter()
        state = {"status": 500, "error": "", "too_large": False, "received": 0}
        try:
            fault = self.precheck(scope)
            if fault is not None:
                info = error_info(fault)
                state["status"], state["error"] = info.status, info.type
                extra = {"www_authenticate": "Bearer"} if info.status == 401 else {}
                await send_error(send, info, rid, **extra)
                return
            await self.app(scope, self._counting(receive, state), self._sending(send, state, rid))
        finally:
            self._record(scope, state, time.perf_counter() - started)
            request_id_var.reset(token)

    def _counting(self, receive: Receive, state: dict[str, Any]) -> Receive:
        """``receive`` that stops the body at the limit (the app sees a disconnect)."""

        async def wrapped() -> Message:
            if state["too_large"]:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > self.max_body_bytes:
                    state["too_large"] = True
                    return {"type": "http.disconnect"}
            return message

        return wrapped

    def _sending(self, send: Send, state: dict[str, Any], rid: str) -> Send:
        """``send`` that adds the request id and turns any answer past the limit into 413."""

        async def wrapped(message: Message) -> None:
            if state["too_large"]:
                if message["type"] == "http.response.start":
                    info = error_info(
                        PayloadTooLarge(
                            f"request body exceeds the limit of {self.max_body_bytes} bytes"
                        )
                    )
                    state["status"], state["error"] = info.status, info.type
                    await send_error(send, info, rid)
                return
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", rid.encode()))
                message["headers"] = headers
                state["status"] = message["status"]
                for key, value in headers:
                    if bytes(key).lower() == ERROR_TYPE_HEADER:
                        state["error"] = bytes(value).decode("latin-1")
            await send(message)

        return wrapped

    def _record(self, scope: Scope, state: dict[str, Any], elapsed: float) -> None:
        """Metrics and one access-log line for /v1 requests."""
        path = scope.get("path", "")
        if not path.startswith(PROTECTED_PREFIX):
            return
        route, status = _route_label(path), int(state["status"])
        m = metrics()
        m.latency.labels(route=route, status=str(status)).observe(elapsed)
        if status >= 400:
            m.errors.labels(route=route, error=state["error"] or f"http_{status}").inc()
        log.info(
            "request",
            extra={
                "method": scope.get("method"),
                "path": path,
                "status": status,
                "seconds": round(elapsed, 4),
                "error": state["error"] or None,
                "body_bytes": state["received"],
            },
        )
