"""One JSON error shape for every failure, and the status of each error class.

Body: ``{"error": {"type": "AudioError", "message": "audio: cannot decode ...",
"status": 400, "request_id": "..."}}``. Core errors (:mod:`speechloop.errors`) carry
their own ``http_status``; the service adds the HTTP-only faults (401, 413, 415, 422).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from speechloop.errors import InvalidInput, SpeechloopError


class ServiceError(SpeechloopError):
    """An HTTP-level client fault with its own status (auth, size, media type)."""

    def __init__(self, status: int, message: str, *, kind: str | None = None) -> None:
        super().__init__(message)
        self.http_status = status
        self.kind = kind or type(self).__name__


class Unauthorized(ServiceError):
    """Missing or unknown API key."""

    def __init__(self, message: str) -> None:
        super().__init__(401, message)


class PayloadTooLarge(ServiceError):
    """Body or audio beyond the configured limits."""

    def __init__(self, message: str) -> None:
        super().__init__(413, message)


class UnsupportedMedia(ServiceError):
    """A request body that is not the expected media type."""

    def __init__(self, message: str) -> None:
        super().__init__(415, message)


class Unprocessable(ServiceError):
    """A well-formed request whose content cannot be used (hotword limits, silent audio)."""

    def __init__(self, message: str) -> None:
        super().__init__(422, message)


class HotwordError(Unprocessable):
    """A hotword list the model refuses (count, length, tokens, spelling)."""


class ErrorInfo(BaseModel):
    """A failure as it travels between services and to the client."""

    type: str
    message: str
    status: int


def error_info(exc: BaseException) -> ErrorInfo:
    """The status, class name and message of an exception (500 for unknown ones)."""
    if isinstance(exc, ServiceError):
        return ErrorInfo(type=exc.kind, message=str(exc), status=exc.http_status)
    if isinstance(exc, SpeechloopError):
        return ErrorInfo(type=type(exc).__name__, message=str(exc), status=exc.http_status)
    return ErrorInfo(type="InternalError", message="internal error (see server log)", status=500)


def error_body(info: ErrorInfo, request_id: str | None) -> dict[str, Any]:
    """The JSON body of an error response."""
    return {"error": {**info.model_dump(), "request_id": request_id}}


def raise_for(info: ErrorInfo | None) -> None:
    """Re-raise an error that came back from a model service (None: nothing to do)."""
    if info is None:
        return
    raise ServiceError(info.status, info.message, kind=info.type)


__all__ = [
    "ErrorInfo",
    "HotwordError",
    "InvalidInput",
    "PayloadTooLarge",
    "ServiceError",
    "Unauthorized",
    "Unprocessable",
    "UnsupportedMedia",
    "error_body",
    "error_info",
    "raise_for",
]
