"""Pydantic models: the public JSON answers, and the messages between the services.

Audio travels from the gateway to the model services as ``pcm``: 16 kHz mono
little-endian float32 bytes (already decoded and checked by the gateway). Model
services never raise to the gateway: each reply carries either its result or an
:class:`~service.errors.ErrorInfo`, so one bad item in a batch fails only itself.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from service.errors import ErrorInfo

# -- public answers ----------------------------------------------------------------------


class ModelRef(BaseModel):
    """The model version that produced an answer."""

    kind: str = Field(description="'asr' or 'spk'")
    version: str = Field(description="registry version, 'seed' or 'local'")
    backend: str = Field(description="'onnx', 'onnx-int8' or 'torch'")


class TokenTime(BaseModel):
    """One token and when it was spoken (seconds)."""

    token: str
    start: float
    end: float


class TranscribeResponse(BaseModel):
    """Answer of ``POST /v1/asr/transcribe``."""

    text: str
    hotwords_found: list[str] = Field(description="hotwords that occur in the text")
    hotwords_ignored: list[str] = Field(
        default_factory=list, description="duplicates of earlier hotwords (after normalising)"
    )
    timestamps: list[TokenTime]
    duration_s: float
    model: ModelRef
    request_id: str | None = None


class EmbedResponse(BaseModel):
    """Answer of ``POST /v1/speaker/embed``."""

    embedding: list[float]
    dim: int
    duration_s: float
    model: ModelRef
    request_id: str | None = None


class VerifyResponse(BaseModel):
    """Answer of ``POST /v1/speaker/verify``."""

    score: float = Field(description="cosine similarity")
    threshold: float
    same_speaker: bool = Field(description="score >= threshold")
    speaker_id: str | None = Field(default=None, description="when verified against a voiceprint")
    model: ModelRef
    request_id: str | None = None


class EnrollResponse(BaseModel):
    """Answer of ``POST /v1/speaker/enroll``."""

    speaker_id: str
    n_utterances: int = Field(description="recordings the voiceprint covers (all enrolments)")
    model: ModelRef
    request_id: str | None = None


class Candidate(BaseModel):
    """An enrolled speaker and its score."""

    speaker_id: str
    score: float


class IdentifyResponse(BaseModel):
    """Answer of ``POST /v1/speaker/identify``."""

    speaker_id: str | None = Field(description="best candidate if it passes the threshold")
    candidates: list[Candidate]
    threshold: float
    model: ModelRef
    request_id: str | None = None


class ModelStatus(BaseModel):
    """One served model (``GET /v1/models``)."""

    kind: str
    ready: bool
    version: str | None = None
    source: str | None = None
    backend: str | None = None
    loaded_at: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    pinned: bool = False
    swaps: int = 0
    refused: dict[str, str] = Field(default_factory=dict, description="version -> why")
    last_error: str | None = None
    details: dict[str, Any] = Field(
        default_factory=dict, description="engine details: device, hotword limits (ASR)"
    )
    torch_imported: bool = Field(description="whether the serving process has imported torch")
    pid: int


class ModelsResponse(BaseModel):
    """Answer of ``GET /v1/models``."""

    models: list[ModelStatus]
    gateway_pid: int
    gateway_torch_imported: bool = Field(description="whether the gateway process imported torch")


# -- between the gateway and the model services -------------------------------------------

# bytes fields travel as base64 in JSON (a remote dependency reached by URL); BentoML's
# own inter-service transport between local processes is pickle, which keeps them raw.
_BINARY = ConfigDict(ser_json_bytes="base64", val_json_bytes="base64")


class AsrItem(BaseModel):
    """One utterance to transcribe, with its raw hotword list."""

    model_config = _BINARY

    pcm: bytes
    hotwords: list[str] = Field(default_factory=list)
    request_id: str | None = None


class AsrReply(BaseModel):
    """The transcription of one :class:`AsrItem`, or its error."""

    text: str = ""
    hotwords_found: list[str] = Field(default_factory=list)
    hotwords_ignored: list[str] = Field(default_factory=list)
    timestamps: list[TokenTime] = Field(default_factory=list)
    duration_s: float = 0.0
    model: ModelRef | None = None
    error: ErrorInfo | None = None


class SpkItem(BaseModel):
    """One utterance to embed."""

    model_config = _BINARY

    pcm: bytes
    request_id: str | None = None


class EmbedReply(BaseModel):
    """The embedding of one :class:`SpkItem`, or its error."""

    embedding: list[float] = Field(default_factory=list)
    model: ModelRef | None = None
    error: ErrorInfo | None = None


class VerifyRequest(BaseModel):
    """Two utterances, or one and an enrolled speaker."""

    model_config = _BINARY

    pcm_a: bytes
    pcm_b: bytes | None = None
    speaker_id: str | None = None
    request_id: str | None = None


class VerifyReply(BaseModel):
    """A verification score and decision, or its error."""

    score: float = 0.0
    threshold: float = 0.0
    same_speaker: bool = False
    model: ModelRef | None = None
    error: ErrorInfo | None = None


class EnrollRequest(BaseModel):
    """Recordings of one speaker to add to its voiceprint."""

    model_config = _BINARY

    speaker_id: str
    pcms: list[bytes]
    names: list[str]
    request_id: str | None = None


class EnrollReply(BaseModel):
    """The stored voiceprint's summary, or the error."""

    speaker_id: str = ""
    n_utterances: int = 0
    model: ModelRef | None = None
    error: ErrorInfo | None = None


class IdentifyRequest(BaseModel):
    """One utterance to rank the enrolled speakers against."""

    model_config = _BINARY

    pcm: bytes
    top_k: int = 5
    request_id: str | None = None


class IdentifyReply(BaseModel):
    """Ranked candidates, or the error."""

    speaker_id: str | None = None
    candidates: list[Candidate] = Field(default_factory=list)
    threshold: float = 0.0
    model: ModelRef | None = None
    error: ErrorInfo | None = None
