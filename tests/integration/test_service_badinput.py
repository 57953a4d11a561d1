"""Malformed requests against a real ``bentoml serve`` process: each kind gets the right
4xx with a JSON error naming the problem, never a 5xx, and the process keeps serving.

The server runs with small limits (2 MB bodies, 20 s of audio) so the limit cases are
cheap. Odd but valid audio (8-bit, 48 kHz stereo, MP3, FLAC, a wrong declared type) is
decoded and answered 200: content is checked by decoding, not by headers.
"""

from __future__ import annotations

import io
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import httpx
import numpy as np
import pytest
import soundfile as sf

from tests.integration.test_service_support import KEYS, Server, start_server, wav_bytes

MAX_BODY = 2_000_000
MAX_AUDIO_S = 20


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, realaudio: Path) -> Iterator[Server]:
    """The gateway with small limits."""
    srv = start_server(
        tmp_path_factory,
        "svc-bad",
        SPEECHLOOP_MAX_BODY_BYTES=str(MAX_BODY),
        SPEECHLOOP_MAX_REQUEST_AUDIO_S=str(MAX_AUDIO_S),
        SPEECHLOOP_MAX_ENROL_FILES="3",
    )
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def speech(realaudio: Path) -> bytes:
    """A real 5 s recording."""
    return (realaudio / "zh_mid_5s.wav").read_bytes()


def _noise(seconds: float, rate: int = 16_000, channels: int = 1) -> np.ndarray:
    rng = np.random.default_rng(1)
    shape = (int(seconds * rate), channels) if channels > 1 else (int(seconds * rate),)
    return (rng.normal(0, 0.1, shape)).astype(np.float32)


def _flac(samples: np.ndarray, rate: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, rate, format="FLAC")
    return buf.getvalue()


Send = Callable[[httpx.Client, bytes], httpx.Response]


@dataclass(frozen=True)
class Case:
    """One malformed request and what it must get."""

    name: str
    send: Send
    status: int
    says: str  # a fragment the error message must contain (case-insensitive)


def _transcribe(audio: bytes, *hotwords: str, filename: str = "a.wav") -> Send:
    def send(c: httpx.Client, _: bytes) -> httpx.Response:
        files = [("audio", (filename, audio, "audio/wav"))]
        files += [("hotwords", (None, h)) for h in hotwords]  # type: ignore[misc]
        return c.post("/v1/asr/transcribe", files=files)

    return send


def _with_speech(build: Callable[[bytes], Send]) -> Send:
    def send(c: httpx.Client, speech: bytes) -> httpx.Response:
        return build(speech)(c, speech)

    return send


def _post(path: str, **kwargs: object) -> Send:
    def send(c: httpx.Client, _: bytes) -> httpx.Response:
        return c.post(path, **kwargs)  # type: ignore[arg-type]

    return send


def _raw_multipart(body: bytes, content_type: str) -> Send:
    return _post("/v1/asr/transcribe", content=body, headers={"Content-Type": content_type})


def _chunked_too_large(c: httpx.Client, _: bytes) -> httpx.Response:
    def chunks() -> Iterator[bytes]:
        head = b'--b\r\nContent-Disposition: form-data; name="audio"; filename="a.wav"\r\n\r\n'
        yield head
        for _ in range(40):
            yield b"\0" * 100_000

    return c.post(
        "/v1/asr/transcribe",
        content=chunks(),
        headers={"Content-Type": "multipart/form-data; boundary=b"},
    )


def _wav_header_only() -> bytes:
    return wav_bytes(np.zeros(0, np.float32))


def _corrupt_wav() -> bytes:
    good = wav_bytes(_noise(1.0))
    rng = np.random.default_rng(7)
    return good[:12] + rng.integers(0, 256, len(good) - 12, dtype=np.uint8).tobytes()


def _nan_wav() -> bytes:
    samples = _noise(1.0)
    samples[100:200] = np.nan
    return wav_bytes(samples, subtype="FLOAT")


PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452") + b"\0" * 200

CASES = [
    Case("zero-length file", _transcribe(b""), 400, "empty"),
    Case("truncated WAV header", _with_speech(lambda s: _transcribe(s[:20])), 400, "decode"),
    Case("WAV header without samples", _transcribe(_wav_header_only()), 400, "no samples"),
    Case("corrupt WAV body", _transcribe(_corrupt_wav()), 400, "decode"),
    Case("RIFF magic damaged", _with_speech(lambda s: _transcribe(b"RIFX" + s[4:])), 400, "decode"),
    Case("PNG image named .wav", _transcribe(PNG), 400, "decode"),
    Case("text file", _transcribe(b"hello, this is not audio\n" * 20), 400, "decode"),
    Case("NaN samples", _transcribe(_nan_wav()), 400, "nan"),
    Case("silence only", _transcribe(wav_bytes(np.zeros(16_000 * 3, np.float32))), 422, "silent"),
    Case("too short", _transcribe(wav_bytes(_noise(0.05))), 400, "minimum"),
    Case("over the duration limit", _transcribe(wav_bytes(_noise(25))), 413, "limit"),
    Case(
        "hour-long FLAC (header)",
        _transcribe(_flac(np.zeros(8_000 * 3600, np.float32), 8_000), filename="h.flac"),
        413,
        "3600",
    ),
    Case(
        "body over the limit (Content-Length)",
        _transcribe(b"\0" * (MAX_BODY + 10)),
        413,
        "exceeds the limit",
    ),
    Case("chunked body over the limit", _chunked_too_large, 413, "exceeds the limit"),
    Case(
        "missing audio part",
        _post("/v1/asr/transcribe", files={"hotwords": (None, "x")}),
        422,
        "audio",
    ),
    Case(
        "audio sent as text",
        _post("/v1/asr/transcribe", files={"audio": (None, "hello")}),
        422,
        "audio",
    ),
    Case(
        "two audio parts",
        _with_speech(
            lambda s: _post(
                "/v1/asr/transcribe", files=[("audio", ("a.wav", s)), ("audio", ("b.wav", s))]
            )
        ),
        400,
        "exactly one",
    ),
    Case(
        "unknown form field",
        _with_speech(
            lambda s: _post(
                "/v1/asr/transcribe", files=[("audio", ("a.wav", s)), ("hotword", (None, "x"))]
            )
        ),
        422,
        "hotword",
    ),
    Case("JSON body", _post("/v1/asr/transcribe", json={"audio": "x"}), 415, "multipart"),
    Case(
        "raw bytes, no content type",
        _post("/v1/asr/transcribe", content=b"RIFF...."),
        415,
        "multipart",
    ),
    Case(
        "multipart without boundary",
        _raw_multipart(b"--x\r\n", "multipart/form-data"),
        400,
        "boundary",
    ),
    Case(
        "malformed multipart body",
        _raw_multipart(b"--b\r\ngarbage without headers\r\n", "multipart/form-data; boundary=b"),
        400,
        "multipart",
    ),
    Case("hotword too long", _with_speech(lambda s: _transcribe(s, "x" * 200)), 422, "longer than"),
    Case(
        "too many hotwords",
        _with_speech(lambda s: _transcribe(s, *[f"w{chr(97 + i % 26)}" * 2 for i in range(300)])),
        422,
        "hotwords",
    ),
    Case(
        "hostile part count",
        _with_speech(lambda s: _transcribe(s, *["a"] * 1500)),
        400,
        "too many fields",
    ),
    Case(
        "hotwords the model cannot spell",
        _with_speech(lambda s: _transcribe(s, "<script>alert(1)</script>", "😀")),
        422,
        "cannot spell",
    ),
    Case("empty hotword", _with_speech(lambda s: _transcribe(s, " ")), 422, "empty"),
    Case(
        "hotword sent as a file",
        _with_speech(
            lambda s: _post(
                "/v1/asr/transcribe", files=[("audio", ("a.wav", s)), ("hotwords", ("h.txt", b"x"))]
            )
        ),
        422,
        "hotwords",
    ),
    Case(
        "unknown speaker id",
        _with_speech(
            lambda s: _post(
                "/v1/speaker/verify", data={"speaker_id": "ghost"}, files={"audio": ("a.wav", s)}
            )
        ),
        404,
        "ghost",
    ),
    Case(
        "path-like speaker id",
        _with_speech(
            lambda s: _post(
                "/v1/speaker/enroll", data={"speaker_id": "../etc"}, files={"audio": ("a.wav", s)}
            )
        ),
        400,
        "speaker id",
    ),
    Case(
        "verify with one audio and no speaker",
        _with_speech(lambda s: _post("/v1/speaker/verify", files={"audio": ("a.wav", s)})),
        400,
        "two 'audio' files",
    ),
    Case(
        "too many enrolment files",
        _with_speech(
            lambda s: _post(
                "/v1/speaker/enroll",
                data={"speaker_id": "bob"},
                files=[("audio", ("a.wav", s))] * 4,
            )
        ),
        400,
        "at most 3",
    ),
    Case(
        "speaker audio too short for an embedding",
        _post("/v1/speaker/embed", files={"audio": ("a.wav", wav_bytes(_noise(0.3)))}),
        400,
        "too short",
    ),
    Case(
        "identify top_k of 0",
        _with_speech(
            lambda s: _post(
                "/v1/speaker/identify", data={"top_k": "0"}, files={"audio": ("a.wav", s)}
            )
        ),
        422,
        "top_k",
    ),
    Case(
        "OpenAI route: unknown response_format",
        _with_speech(
            lambda s: _post(
                "/v1/audio/transcriptions",
                data={"model": "x", "response_format": "xml"},
                files={"file": ("a.wav", s)},
            )
        ),
        400,
        "response_format",
    ),
    Case(
        "OpenAI route: missing model",
        _with_speech(lambda s: _post("/v1/audio/transcriptions", files={"file": ("a.wav", s)})),
        422,
        "model",
    ),
    Case("GET on an upload route", lambda c, _: c.get("/v1/asr/transcribe"), 405, "method"),
    Case("unknown /v1 route", lambda c, _: c.get("/v1/nope"), 404, "not found"),
]


def test_corpus_is_big_enough() -> None:
    """The corpus covers at least 25 kinds of malformed request."""
    assert len({c.name for c in CASES}) >= 25


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_malformed_request(server: Server, speech: bytes, case: Case) -> None:
    """Each malformed request gets its 4xx and a JSON error naming the problem."""
    with server.client() as c:
        resp = case.send(c, speech)
    assert resp.status_code == case.status, resp.text[:500]
    error = resp.json()["error"]
    assert case.says.lower() in error["message"].lower(), error
    assert error["status"] == case.status and error["request_id"]


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("8-bit WAV", lambda s: wav_bytes(_noise(2.0), subtype="PCM_U8")),
        ("48 kHz stereo WAV", lambda s: wav_bytes(_noise(2.0, 48_000, 2), 48_000)),
        ("FLAC", lambda s: _flac(_noise(2.0), 16_000)),
        ("real WAV sent with an MP3 name", lambda s: s),
    ],
)
def test_odd_but_valid_audio_is_decoded(
    server: Server, speech: bytes, name: str, make: Callable[[bytes], bytes]
) -> None:
    """Odd but valid audio is decoded, whatever its declared type or name, and answered."""
    with server.client() as c:
        resp = c.post(
            "/v1/asr/transcribe", files={"audio": ("clip.mp3", make(speech), "audio/mpeg")}
        )
    assert resp.status_code == 200, (name, resp.text[:300])


def test_real_mp3(server: Server, realaudio: Path) -> None:
    """The real MP3 recording is transcribed (same duration as its WAV, to 0.1 s)."""
    with server.client() as c:
        mp3 = c.post(
            "/v1/asr/transcribe",
            files={"audio": ("x.mp3", (realaudio / "zh_asr_example.mp3").read_bytes())},
        )
        wav = c.post(
            "/v1/asr/transcribe",
            files={"audio": ("x.wav", (realaudio / "zh_asr_example.wav").read_bytes())},
        )
    assert mp3.status_code == wav.status_code == 200
    assert abs(mp3.json()["duration_s"] - wav.json()["duration_s"]) < 0.1


def test_oversized_upload_is_refused_before_it_is_read(server: Server) -> None:
    """A client announcing a body over the limit gets 413 after sending only its headers
    (raw socket: the server answers before a byte of the body is sent)."""
    url = urlparse(server.url)
    head = (
        "POST /v1/asr/transcribe HTTP/1.1\r\n"
        f"Host: {url.hostname}\r\nAuthorization: Bearer {KEYS[0]}\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\n"
        f"Content-Length: {50 * MAX_BODY}\r\n\r\n"
    )
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall(head.encode())
        reply = ""
        while "}}" not in reply:  # headers and the JSON body may arrive separately
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk.decode(errors="replace")
    assert reply.startswith("HTTP/1.1 413"), reply[:200]
    assert "exceeds the limit" in reply


def test_still_serving_after_the_corpus(server: Server, speech: bytes) -> None:
    """After every malformed request the process still answers /readyz and transcribes,
    and its log records no unexpected error and no 500."""
    assert server.alive()
    with server.client() as c:
        assert c.get("/readyz").status_code == 200
        ok = c.post("/v1/asr/transcribe", files={"audio": ("a.wav", speech)})
    assert ok.status_code == 200
    log = server.log()
    assert "unexpected error" not in log and '"status": 500' not in log
