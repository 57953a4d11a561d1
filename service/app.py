"""The BentoML composition: ``bentoml serve service.app:Gateway``.

Three services, each its own process (Kubernetes can scale them apart):

- :class:`Gateway` (the entry service): the HTTP surface of :mod:`service.api` (mounted
  FastAPI app, OpenAPI at ``/docs``), :class:`~service.middleware.RequestGuard` (request
  id, API keys, body limit, metrics), audio decoding; it holds no model;
- :class:`~service.asr.AsrService` and :class:`~service.speaker.SpeakerService`,
  reached with ``bentoml.depends`` (BentoML's own ``/livez``, ``/readyz`` and ``/metrics``
  on the gateway report on all three: ``/readyz`` is 200 only when both models are
  loaded and warm).

``SPEECHLOOP_ASR_URL`` / ``SPEECHLOOP_SPK_URL``, when set, point the gateway at model
services running elsewhere (separate Deployments) instead of starting them here; they
are read when this module is imported, since BentoML fixes dependencies per class.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import aiohttp
import bentoml
from pydantic import BaseModel

from service.api import make_api
from service.asr import AsrService
from service.logs import setup_logging
from service.middleware import RequestGuard
from service.schemas import (
    AsrItem,
    AsrReply,
    EmbedReply,
    EnrollReply,
    EnrollRequest,
    IdentifyReply,
    IdentifyRequest,
    ModelStatus,
    SpkItem,
    VerifyReply,
    VerifyRequest,
)
from service.settings import get_service_settings
from service.speaker import SpeakerService
from service.uploads import AudioLimits
from speechloop.errors import ModelUnavailable, SpeechloopError

M = TypeVar("M", bound=BaseModel)
log = logging.getLogger("service.app")

api = make_api()


def _refuse_to_start(exc: Exception) -> None:
    """Stop the whole ``bentoml serve`` (its arbiter would restart this worker forever)."""
    log.critical("refusing to start: %s", exc)
    sys.stderr.write(f"speechloop: refusing to start: {exc}\n")
    os.kill(os.getppid(), signal.SIGTERM)


def _as(cls: type[M], value: Any) -> M:
    """A reply model from what the dependency returned (model or plain dict)."""
    return value if isinstance(value, cls) else cls.model_validate(value)


def _unavailable(kind: str, exc: Exception) -> ModelUnavailable:
    """The 503 for a model service that did not answer (logged with the cause)."""
    log.error("model service call failed", extra={"kind": kind, "why": repr(exc)})
    return ModelUnavailable(f"the {kind} model service did not answer ({type(exc).__name__})")


async def _call(kind: str, call: Callable[[], Awaitable[Any]]) -> Any:
    """Await a model-service call; a service that does not answer is a 503 naming it.

    A dropped connection is retried once: BentoML 1.4.39's client between services
    replaces its HTTP session every 100 requests and closes the old one under calls
    still in flight (bentoml issue #5540), which surfaced as about 2.6% of requests
    failing under concurrent load although the model service had answered them. Every
    model call is safe to repeat (reads, or an enrolment that rewrites the same print).
    """
    for attempt in (1, 2):
        try:
            return await call()
        except SpeechloopError:
            raise
        except Exception as exc:
            if attempt == 2 or not _dropped(exc):
                raise _unavailable(kind, exc) from exc
            log.warning(
                "model service connection dropped, retrying once",
                extra={"kind": kind, "why": repr(exc)},
            )
    raise AssertionError("unreachable")  # pragma: no cover


def _dropped(exc: Exception) -> bool:
    """Whether ``exc`` is the connection closing under a call (what #5540 causes).

    aiohttp reports it as a ``ClientConnectionError`` while the request is sent, and as
    ``RuntimeError("Connection closed.")`` (its ``StreamReader``) while the reply is read:
    a 5-minute load run met the second once in 3,974 requests.
    """
    if isinstance(exc, aiohttp.ClientConnectionError):
        return True
    return type(exc) is RuntimeError and str(exc) == "Connection closed."


@bentoml.asgi_app(api, path="/")
@bentoml.service(name="speechloop", workers=1, traffic={"timeout": 180})
class Gateway:
    """The entry service (see the module docstring); implements :class:`service.api.Backend`."""

    asr = bentoml.depends(AsrService, url=os.environ.get("SPEECHLOOP_ASR_URL") or None)
    spk = bentoml.depends(SpeakerService, url=os.environ.get("SPEECHLOOP_SPK_URL") or None)

    def __init__(self) -> None:
        try:
            settings = get_service_settings()  # refuses without keys (unless auth=off)
        except SpeechloopError as exc:
            _refuse_to_start(exc)
            raise
        setup_logging(settings.log_level)
        self.limits = AudioLimits(
            min_s=settings.min_request_audio_s,
            max_s=settings.max_request_audio_s,
            max_bytes=settings.max_body_bytes,
        )
        self.max_enrol_files = settings.max_enrol_files

    async def transcribe(self, item: AsrItem) -> AsrReply:
        """See :class:`service.api.Backend`."""
        replies = await _call("asr", lambda: self.asr.to_async.transcribe([item]))
        return _as(AsrReply, replies[0])

    async def embed(self, item: SpkItem) -> EmbedReply:
        """See :class:`service.api.Backend`."""
        replies = await _call("spk", lambda: self.spk.to_async.embed([item]))
        return _as(EmbedReply, replies[0])

    async def verify(self, req: VerifyRequest) -> VerifyReply:
        """See :class:`service.api.Backend`."""
        return _as(VerifyReply, await _call("spk", lambda: self.spk.to_async.verify(req)))

    async def enroll(self, req: EnrollRequest) -> EnrollReply:
        """See :class:`service.api.Backend`."""
        return _as(EnrollReply, await _call("spk", lambda: self.spk.to_async.enroll(req)))

    async def identify(self, req: IdentifyRequest) -> IdentifyReply:
        """See :class:`service.api.Backend`."""
        return _as(IdentifyReply, await _call("spk", lambda: self.spk.to_async.identify(req)))

    async def models(self) -> list[ModelStatus]:
        """See :class:`service.api.Backend`."""
        asr = await _call("asr", lambda: self.asr.to_async.info())
        spk = await _call("spk", lambda: self.spk.to_async.info())
        return [_as(ModelStatus, asr), _as(ModelStatus, spk)]


cast("bentoml.Service[Gateway]", Gateway).add_asgi_middleware(RequestGuard)
