"""The gateway's HTTP layer without model services: the FastAPI routes and the request
middleware over a fake backend (starlette's TestClient, in process)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from starlette.testclient import TestClient

from service.api import get_backend, make_api, prompt_hotwords
from service.auth import ApiKeys
from service.errors import ErrorInfo
from service.middleware import RequestGuard
from service.schemas import (
    AsrItem,
    AsrReply,
    EmbedReply,
    EnrollReply,
    EnrollRequest,
    IdentifyReply,
    IdentifyRequest,
    ModelRef,
    ModelStatus,
    SpkItem,
    TokenTime,
    VerifyReply,
    VerifyRequest,
)
from service.uploads import AudioLimits, from_pcm
from tests.integration.test_service_support import wav_bytes

KEY = "unit-key"
ASR = ModelRef(kind="asr", version="v7", backend="onnx")
SPK = ModelRef(kind="spk", version="s3", backend="onnx")


class FakeBackend:
    """Records what reaches the model services and answers canned replies."""

    limits = AudioLimits(min_s=0.1, max_s=10.0, max_bytes=200_000)
    max_enrol_files = 2

    def __init__(self) -> None:
        self.items: list[AsrItem] = []
        self.asr_error: ErrorInfo | None = None

    async def transcribe(self, item: AsrItem) -> AsrReply:
        self.items.append(item)
        if self.asr_error:
            return AsrReply(error=self.asr_error)
        stamps = [TokenTime(token="▁hi", start=0.1, end=0.3)]
        return AsrReply(text="hi", hotwords_found=[], timestamps=stamps, duration_s=1, model=ASR)

    async def embed(self, item: SpkItem) -> EmbedReply:
        return EmbedReply(embedding=[0.0, 1.0], model=SPK)

    async def verify(self, req: VerifyRequest) -> VerifyReply:
        return VerifyReply(score=0.8, threshold=0.7, same_speaker=True, model=SPK)

    async def enroll(self, req: EnrollRequest) -> EnrollReply:
        return EnrollReply(speaker_id=req.speaker_id, n_utterances=len(req.pcms), model=SPK)

    async def identify(self, req: IdentifyRequest) -> IdentifyReply:
        return IdentifyReply(speaker_id=None, candidates=[], threshold=0.7, model=SPK)

    async def models(self) -> list[ModelStatus]:
        return [ModelStatus(kind="asr", ready=True, version="v7", torch_imported=False, pid=1)]


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend()


@pytest.fixture
def client(backend: FakeBackend) -> Iterator[TestClient]:
    api = make_api()
    api.dependency_overrides[get_backend] = lambda: backend
    app = RequestGuard(api, keys=ApiKeys([KEY]), max_body_bytes=500_000)
    with TestClient(app, headers={"Authorization": f"Bearer {KEY}"}) as c:
        yield c


def _clip(seconds: float = 1.0) -> bytes:
    rng = np.random.default_rng(0)
    return wav_bytes(rng.normal(0, 0.1, int(16_000 * seconds)).astype(np.float32))


def test_transcribe_passes_audio_and_hotwords(client: TestClient, backend: FakeBackend) -> None:
    """Repeated hotwords fields arrive in order; the audio arrives decoded at 16 kHz; the
    answer names the version in body and header and echoes the request id."""
    resp = client.post(
        "/v1/asr/transcribe",
        files=[
            ("audio", ("a.wav", _clip(1.0))),
            ("hotwords", (None, "a b")),
            ("hotwords", (None, "c")),
        ],
        headers={"X-Request-ID": "rid-1"},
    )
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-model-version"] == "asr:v7" and resp.headers["x-request-id"] == "rid-1"
    body = resp.json()
    assert body["model"]["version"] == "v7" and body["request_id"] == "rid-1"
    (item,) = backend.items
    assert item.hotwords == ["a b", "c"] and len(from_pcm(item.pcm)) == 16_000


def test_model_error_keeps_its_status(client: TestClient, backend: FakeBackend) -> None:
    """An error reply of a model service becomes the JSON error with its own status."""
    backend.asr_error = ErrorInfo(type="HotwordError", message="hotwords: too many", status=422)
    resp = client.post("/v1/asr/transcribe", files={"audio": ("a.wav", _clip())})
    assert resp.status_code == 422
    assert resp.json()["error"]["type"] == "HotwordError"


@pytest.mark.parametrize(
    ("kwargs", "status", "says"),
    [
        ({"headers": {"Authorization": ""}}, 401, "missing API key"),
        ({"headers": {"Authorization": "Bearer nope"}}, 401, "invalid API key"),
        ({"json": {"audio": 1}}, 415, "multipart"),
        ({"files": {"audio": ("a.wav", b"\0" * 600_000)}}, 413, "exceeds the limit"),
        ({"files": {"audio": ("a.wav", _clip(12.0))}}, 413, "limit is 10 s"),
        ({"files": {"audio": ("a.wav", b"")}}, 400, "empty"),
    ],
)
def test_client_faults(
    client: TestClient, kwargs: dict[str, object], status: int, says: str
) -> None:
    """Auth, media type, body size, duration and empty files are 4xx JSON errors."""
    resp = client.post("/v1/asr/transcribe", **kwargs)  # type: ignore[arg-type]
    assert resp.status_code == status, resp.text
    assert says in resp.json()["error"]["message"]


def test_chunked_body_over_the_limit_is_413(client: TestClient) -> None:
    """A body without Content-Length is cut at the limit and answered 413."""

    def chunks() -> Iterator[bytes]:
        yield b'--b\r\nContent-Disposition: form-data; name="audio"; filename="a"\r\n\r\n'
        for _ in range(30):
            yield b"\0" * 25_000

    resp = client.post(
        "/v1/asr/transcribe",
        content=chunks(),
        headers={"Content-Type": "multipart/form-data; boundary=b"},
    )
    assert resp.status_code == 413 and "exceeds the limit" in resp.text


def test_health_is_public(client: TestClient) -> None:
    """Routes outside /v1 (docs) need no key."""
    assert client.get("/docs", headers={"Authorization": ""}).status_code == 200


def test_openai_route_collects_hotwords(client: TestClient, backend: FakeBackend) -> None:
    """hotwords, hotwords[], keywords[] and the prompt all reach the model, in order."""
    resp = client.post(
        "/v1/audio/transcriptions",
        data={
            "model": "whisper-1",
            "prompt": "kalo venturi, drofator\nsharkrik",
            "response_format": "text",
        },
        files=[
            ("file", ("a.wav", _clip())),
            ("hotwords[]", (None, "x")),
            ("keywords[]", (None, "y")),
        ],
    )
    assert resp.status_code == 200 and resp.text == "hi\n"
    assert backend.items[-1].hotwords == ["x", "y", "kalo venturi", "drofator", "sharkrik"]


def test_enroll_file_count(client: TestClient) -> None:
    """Enrolment with more files than allowed is a 400 naming the limit."""
    files = [("audio", ("a.wav", _clip()))] * 3
    resp = client.post("/v1/speaker/enroll", data={"speaker_id": "a"}, files=files)
    assert resp.status_code == 400 and "at most 2" in resp.json()["error"]["message"]


def test_prompt_hotwords() -> None:
    """Prompts split on commas, semicolons and newlines; blanks are dropped."""
    assert prompt_hotwords(" a b ; c,,\n d ") == ["a b", "c", "d"]
    assert prompt_hotwords(None) == [] and prompt_hotwords("") == []
