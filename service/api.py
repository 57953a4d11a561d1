"""The HTTP surface of the gateway: ``/v1/...`` routes, OpenAPI at ``/docs``.

A FastAPI app mounted on the BentoML gateway (``service.app``): FastAPI parses the
multipart forms (repeatable ``hotwords`` fields, file parts checked to be files) and
documents them; the work is done by a :class:`Backend` (the gateway forwards to the
ASR and speaker services). Every failure becomes the JSON error of
:mod:`service.errors`; the request id and the model version travel in headers too.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Sequence
from typing import Annotated, Any, Protocol, cast

import anyio
from fastapi import Depends, FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.datastructures import UploadFile as StarletteUpload
from starlette.exceptions import HTTPException as StarletteHTTPException

from service import formats
from service.errors import (
    ErrorInfo,
    Unprocessable,
    error_body,
    error_info,
    raise_for,
)
from service.logs import request_id_var
from service.middleware import ERROR_TYPE_HEADER
from service.schemas import (
    AsrItem,
    AsrReply,
    EmbedReply,
    EmbedResponse,
    EnrollReply,
    EnrollRequest,
    EnrollResponse,
    IdentifyReply,
    IdentifyRequest,
    IdentifyResponse,
    ModelRef,
    ModelsResponse,
    ModelStatus,
    SpkItem,
    TranscribeResponse,
    VerifyReply,
    VerifyRequest,
    VerifyResponse,
)
from service.ui import mount_ui
from service.uploads import AudioLimits, decode_upload, to_pcm
from speechloop.audio import Audio
from speechloop.errors import InvalidInput, SpeechloopError

log = logging.getLogger("service.api")
MODEL_HEADER = "X-Model-Version"
OPENAI_FIELDS = {
    "file",
    "model",
    "prompt",
    "response_format",
    "temperature",
    "language",
    "timestamp_granularities",
    "timestamp_granularities[]",
    "stream",
    "include",
    "include[]",
    "chunking_strategy",
    "hotwords",
    "hotwords[]",
    "keywords",
    "keywords[]",
}
_PROMPT_SPLIT = re.compile(r"[,;\n\r]+")


class Backend(Protocol):
    """What the routes need from the gateway (forwarded to the model services)."""

    limits: AudioLimits
    max_enrol_files: int

    async def transcribe(self, item: AsrItem) -> AsrReply:
        """Transcribe one decoded utterance."""
        ...

    async def embed(self, item: SpkItem) -> EmbedReply:
        """Embed one decoded utterance."""
        ...

    async def verify(self, req: VerifyRequest) -> VerifyReply:
        """Score two utterances, or one against an enrolled speaker."""
        ...

    async def enroll(self, req: EnrollRequest) -> EnrollReply:
        """Add recordings to a speaker's voiceprint."""
        ...

    async def identify(self, req: IdentifyRequest) -> IdentifyReply:
        """Rank enrolled speakers against an utterance."""
        ...

    async def models(self) -> list[ModelStatus]:
        """Status of both served models."""
        ...


def get_backend() -> Backend:
    """The running gateway (overridden in unit tests)."""
    import bentoml

    return cast(Backend, bentoml.get_current_service())


BackendDep = Annotated[Backend, Depends(get_backend)]


# -- helpers ---------------------------------------------------------------------------------


async def check_form(request: Request, allowed: set[str], files: set[str]) -> None:
    """Refuse unknown form fields, and text where a file is expected or vice versa (422)."""
    form = await request.form()
    unknown = sorted({k for k in form if k not in allowed})
    if unknown:
        raise Unprocessable(f"unknown form field(s) {unknown}; this route takes {sorted(allowed)}")
    for key, value in form.multi_items():
        is_file = isinstance(value, StarletteUpload)
        if key in files and not is_file:
            raise Unprocessable(f"form field {key!r} must be a file upload, not text")
        if key not in files and is_file:
            raise Unprocessable(f"form field {key!r} must be text, not a file upload")


async def decoded(upload: UploadFile, name: str, limits: AudioLimits) -> Audio:
    """Read one uploaded file and decode it off the event loop."""
    raw = await upload.read()
    label = f"{name} ({upload.filename})" if upload.filename else name
    return await anyio.to_thread.run_sync(decode_upload, raw, label, limits)


def _rid() -> str | None:
    return request_id_var.get()


def _model_headers(model: ModelRef | None) -> dict[str, str]:
    return {MODEL_HEADER: f"{model.kind}:{model.version}"} if model else {}


def prompt_hotwords(prompt: str | None) -> list[str]:
    """Hotwords in an OpenAI ``prompt``: comma, semicolon or newline separated phrases."""
    if not prompt:
        return []
    return [p.strip() for p in _PROMPT_SPLIT.split(prompt) if p.strip()]


def _one(files: Sequence[UploadFile], name: str) -> UploadFile:
    if len(files) != 1:
        raise InvalidInput(f"send exactly one {name!r} file part, got {len(files)}")
    return files[0]


# -- the app -------------------------------------------------------------------------------


def make_api() -> FastAPI:
    """The FastAPI app with every /v1 route and the JSON error handlers."""
    api = FastAPI(
        title="speechloop",
        version="1",
        description=(
            "Hotword ASR (SeACo-Paraformer) and speaker verification (ERes2NetV2). "
            "Every /v1 route needs `Authorization: Bearer <key>`. Uploads are multipart: "
            "`audio` (the file) and `hotwords` (repeatable)."
        ),
        docs_url="/docs",
        openapi_url="/openapi.json",
        redoc_url=None,
    )
    _add_error_handlers(api)
    _add_asr_routes(api)
    _add_speaker_routes(api)
    _add_openai_route(api)

    @api.get("/v1/models", response_model=ModelsResponse, tags=["models"])
    async def models(backend: BackendDep) -> ModelsResponse:
        """The model versions being served, with their registry metrics and status."""
        return ModelsResponse(
            models=await backend.models(),
            gateway_pid=_pid(),
            gateway_torch_imported="torch" in sys.modules,
        )

    mount_ui(api)  # GET /ui: the public static try-it page (service/ui); its /v1 calls send a key
    _add_unknown_route(api)  # last: a JSON 404/405 for any other /v1 path
    return api


def _add_unknown_route(api: FastAPI) -> None:
    known = {getattr(r, "path", "") for r in api.routes}

    @api.api_route(
        "/v1/{rest:path}",
        methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
        include_in_schema=False,
    )
    async def unknown(request: Request, rest: str) -> Response:
        """A JSON 404 (or 405 for a known route with another method) under /v1."""
        path = f"/v1/{rest}"
        if path in known:
            message = f"method {request.method} is not allowed on {path}"
            info = ErrorInfo(type="MethodNotAllowed", message=message, status=405)
        else:
            info = ErrorInfo(type="NotFound", message=f"route {path} not found", status=404)
        return _error_response(info)


def _pid() -> int:
    import os

    return os.getpid()


def _error_response(info: ErrorInfo, headers: dict[str, str] | None = None) -> JSONResponse:
    extra = {ERROR_TYPE_HEADER.decode(): info.type, **(headers or {})}
    return JSONResponse(error_body(info, _rid()), status_code=info.status, headers=extra)


def _add_error_handlers(api: FastAPI) -> None:
    @api.exception_handler(SpeechloopError)
    async def speechloop_error(_: Request, exc: SpeechloopError) -> JSONResponse:
        info = error_info(exc)
        if info.status >= 500:
            log.error("request failed", extra={"error": info.type, "why": str(exc)})
        return _error_response(info)

    @api.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            loc = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
            parts.append(f"{loc or 'request'}: {err.get('msg', 'invalid')}")
        info = ErrorInfo(type="ValidationError", message="; ".join(parts), status=422)
        return _error_response(info)

    @api.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = str(exc.detail)
        if exc.__cause__ is not None:
            message = f"{message}: {exc.__cause__}"
        info = ErrorInfo(
            type="BadRequest" if exc.status_code < 500 else "HTTPError",
            message=message,
            status=exc.status_code,
        )
        return _error_response(info)

    @api.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return _error_response(error_info(exc))


def _add_asr_routes(api: FastAPI) -> None:
    @api.post(
        "/v1/asr/transcribe",
        response_model=TranscribeResponse,
        tags=["asr"],
        responses=_ERRORS,
    )
    async def transcribe(
        request: Request,
        backend: BackendDep,
        audio: Annotated[list[UploadFile], File(description="the recording (wav, flac, ogg, mp3)")],
        hotwords: Annotated[
            list[str], Form(description="a hotword or phrase; repeat the field for more")
        ] = [],  # noqa: B006 - FastAPI copies defaults
    ) -> Response:
        """Transcribe one recording, biased towards the given hotwords."""
        await check_form(request, {"audio", "hotwords"}, {"audio"})
        clip = await decoded(_one(audio, "audio"), "audio", backend.limits)
        reply = await backend.transcribe(
            AsrItem(pcm=to_pcm(clip), hotwords=list(hotwords), request_id=_rid())
        )
        raise_for(reply.error)
        assert reply.model is not None
        body = TranscribeResponse(
            text=reply.text,
            hotwords_found=reply.hotwords_found,
            hotwords_ignored=reply.hotwords_ignored,
            timestamps=reply.timestamps,
            duration_s=round(clip.duration_s, 3),
            model=reply.model,
            request_id=_rid(),
        )
        return JSONResponse(body.model_dump(), headers=_model_headers(reply.model))


def _add_speaker_routes(api: FastAPI) -> None:
    @api.post(
        "/v1/speaker/embed", response_model=EmbedResponse, tags=["speaker"], responses=_ERRORS
    )
    async def embed(
        request: Request,
        backend: BackendDep,
        audio: Annotated[list[UploadFile], File(description="the recording")],
    ) -> Response:
        """The speaker embedding of one recording."""
        await check_form(request, {"audio"}, {"audio"})
        clip = await decoded(_one(audio, "audio"), "audio", backend.limits)
        reply = await backend.embed(SpkItem(pcm=to_pcm(clip), request_id=_rid()))
        raise_for(reply.error)
        assert reply.model is not None
        body = EmbedResponse(
            embedding=reply.embedding,
            dim=len(reply.embedding),
            duration_s=round(clip.duration_s, 3),
            model=reply.model,
            request_id=_rid(),
        )
        return JSONResponse(body.model_dump(), headers=_model_headers(reply.model))

    @api.post(
        "/v1/speaker/verify", response_model=VerifyResponse, tags=["speaker"], responses=_ERRORS
    )
    async def verify(
        request: Request,
        backend: BackendDep,
        audio: Annotated[
            list[UploadFile],
            File(description="two recordings to compare, or one with speaker_id"),
        ],
        speaker_id: Annotated[str | None, Form(description="an enrolled speaker")] = None,
    ) -> Response:
        """Are two recordings (or a recording and an enrolled speaker) the same voice?"""
        await check_form(request, {"audio", "speaker_id"}, {"audio"})
        want = 1 if speaker_id is not None else 2
        if len(audio) != want:
            raise InvalidInput(
                "send two 'audio' files, or one 'audio' file and a 'speaker_id' "
                f"(got {len(audio)} file(s){' and a speaker_id' if speaker_id else ''})"
            )
        clips = [await decoded(f, f"audio[{i}]", backend.limits) for i, f in enumerate(audio)]
        reply = await backend.verify(
            VerifyRequest(
                pcm_a=to_pcm(clips[0]),
                pcm_b=to_pcm(clips[1]) if len(clips) > 1 else None,
                speaker_id=speaker_id,
                request_id=_rid(),
            )
        )
        raise_for(reply.error)
        assert reply.model is not None
        body = VerifyResponse(
            score=reply.score,
            threshold=reply.threshold,
            same_speaker=reply.same_speaker,
            speaker_id=speaker_id,
            model=reply.model,
            request_id=_rid(),
        )
        return JSONResponse(body.model_dump(), headers=_model_headers(reply.model))

    @api.post(
        "/v1/speaker/enroll", response_model=EnrollResponse, tags=["speaker"], responses=_ERRORS
    )
    async def enroll(
        request: Request,
        backend: BackendDep,
        speaker_id: Annotated[str, Form(description="letters, digits, _ . - (up to 64)")],
        audio: Annotated[list[UploadFile], File(description="recordings; repeat the field")],
    ) -> Response:
        """Add recordings to a speaker's voiceprint (creating it on the first call)."""
        await check_form(request, {"audio", "speaker_id"}, {"audio"})
        if len(audio) > backend.max_enrol_files:
            raise InvalidInput(
                f"{len(audio)} recordings sent; at most {backend.max_enrol_files} per request"
            )
        clips = [await decoded(f, f"audio[{i}]", backend.limits) for i, f in enumerate(audio)]
        reply = await backend.enroll(
            EnrollRequest(
                speaker_id=speaker_id,
                pcms=[to_pcm(c) for c in clips],
                names=[f.filename or f"audio[{i}]" for i, f in enumerate(audio)],
                request_id=_rid(),
            )
        )
        raise_for(reply.error)
        assert reply.model is not None
        body = EnrollResponse(
            speaker_id=reply.speaker_id,
            n_utterances=reply.n_utterances,
            model=reply.model,
            request_id=_rid(),
        )
        return JSONResponse(body.model_dump(), headers=_model_headers(reply.model))

    @api.post(
        "/v1/speaker/identify",
        response_model=IdentifyResponse,
        tags=["speaker"],
        responses=_ERRORS,
    )
    async def identify(
        request: Request,
        backend: BackendDep,
        audio: Annotated[list[UploadFile], File(description="the recording")],
        top_k: Annotated[int, Form(ge=1, le=100, description="candidates to return")] = 5,
    ) -> Response:
        """Rank the enrolled speakers by similarity to one recording."""
        await check_form(request, {"audio", "top_k"}, {"audio"})
        clip = await decoded(_one(audio, "audio"), "audio", backend.limits)
        reply = await backend.identify(
            IdentifyRequest(pcm=to_pcm(clip), top_k=top_k, request_id=_rid())
        )
        raise_for(reply.error)
        assert reply.model is not None
        body = IdentifyResponse(
            speaker_id=reply.speaker_id,
            candidates=reply.candidates,
            threshold=reply.threshold,
            model=reply.model,
            request_id=_rid(),
        )
        return JSONResponse(body.model_dump(), headers=_model_headers(reply.model))


def _add_openai_route(api: FastAPI) -> None:
    @api.post("/v1/audio/transcriptions", tags=["openai"], responses=_ERRORS)
    async def transcriptions(
        request: Request,
        backend: BackendDep,
        file: Annotated[list[UploadFile], File(description="the recording")],
        model: Annotated[str, Form(description="any name; the served version answers")],
        prompt: Annotated[
            str | None, Form(description="hotwords, separated by commas or newlines")
        ] = None,
        response_format: Annotated[str, Form(description="json, text, verbose_json, srt, vtt")] = (
            "json"
        ),
        language: Annotated[str | None, Form()] = None,
        temperature: Annotated[float | None, Form()] = None,
        stream: Annotated[bool, Form()] = False,
        hotwords: Annotated[list[str], Form(description="hotwords (repeatable)")] = [],  # noqa: B006
    ) -> Response:
        """OpenAI-compatible transcription (``openai.audio.transcriptions.create``).

        Hotwords come from the ``hotwords`` field (``extra_body={"hotwords": [...]}`` in
        the openai client), from OpenAI's ``keywords`` and from ``prompt`` (comma,
        semicolon or newline separated).
        """
        await check_form(request, OPENAI_FIELDS, {"file"})
        if response_format not in formats.FORMATS:
            raise InvalidInput(
                f"response_format {response_format!r} is not one of {', '.join(formats.FORMATS)}"
            )
        if stream:
            raise InvalidInput("stream=true is not supported: send stream=false")
        form = await request.form()
        words = list(hotwords) + [
            str(v) for k in ("hotwords[]", "keywords", "keywords[]") for v in form.getlist(k)
        ]
        words += prompt_hotwords(prompt)
        granularities = [
            str(v)
            for k in ("timestamp_granularities[]", "timestamp_granularities")
            for v in form.getlist(k)
        ]
        clip = await decoded(_one(file, "file"), "file", backend.limits)
        reply = await backend.transcribe(
            AsrItem(pcm=to_pcm(clip), hotwords=words, request_id=_rid())
        )
        raise_for(reply.error)
        assert reply.model is not None
        headers = _model_headers(reply.model)
        return render_openai(
            reply, response_format, clip.duration_s, language, granularities, headers
        )


def render_openai(
    reply: AsrReply,
    response_format: str,
    duration_s: float,
    language: str | None,
    granularities: list[str],
    headers: dict[str, str],
) -> Response:
    """The OpenAI rendering of a transcription in ``response_format``."""
    assert reply.model is not None
    extra = {
        "model_version": reply.model.version,
        "hotwords_found": reply.hotwords_found,
    }
    if response_format == "text":
        return PlainTextResponse(reply.text + "\n", headers=headers)
    if response_format == "json":
        return JSONResponse({"text": reply.text, **extra}, headers=headers)
    segments = formats.segments_of(reply.text, reply.timestamps, duration_s)
    if response_format == "srt":
        return PlainTextResponse(formats.to_srt(segments), headers=headers)
    if response_format == "vtt":
        return PlainTextResponse(formats.to_vtt(segments), media_type="text/vtt", headers=headers)
    body = formats.verbose_json(
        reply.text,
        reply.timestamps,
        duration_s,
        language=language or "unknown",
        with_words="word" in granularities,
        extra=extra,
    )
    return JSONResponse(body, headers=headers)


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "bad input: undecodable audio, wrong form, invalid speaker id"},
    401: {"description": "missing or invalid API key"},
    404: {"description": "unknown speaker"},
    413: {"description": "body or audio over the limits"},
    415: {"description": "not multipart/form-data"},
    422: {"description": "hotword limits, silent audio, unknown form fields"},
    503: {"description": "model not loaded yet"},
}
