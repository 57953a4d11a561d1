"""Every endpoint of a real ``bentoml serve`` process, over HTTP, with the real
``openai`` client: answers, model versions, auth, metrics, logs, the no-torch rule.

One server for the module (seeded registry, ONNX backend, torch blocked by an import
hook in every server process). Model outputs are compared with the same registry
version run in this process, so the tests check that the service passes audio and
hotwords through unchanged (the seed ASR model is English and synthetic: its text on
the real Mandarin recordings is not meaningful, the equality is).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from speechloop.audio import decode_audio
from tests.integration.test_service_support import KEYS, Server, start_server

CLIP = "zh_mid_5s.wav"
OTHER = "zh_long_8s.wav"
HOTWORDS = ["kalo venturi", "drofator", "sharkrik"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, realaudio: Path) -> Iterator[Server]:
    """The gateway on a seeded store, ready."""
    srv = start_server(tmp_path_factory, "svc-api")
    yield srv
    srv.stop()


def _file(realaudio: Path, name: str) -> tuple[str, bytes, str]:
    return (name, (realaudio / name).read_bytes(), "application/octet-stream")


def _production(server: Server, kind: str) -> str:
    alias = server.context().registry.get_alias(kind, "production")
    assert alias is not None
    return alias.version


def test_health_docs_and_openapi(server: Server) -> None:
    """/livez and /readyz answer 200 without a key; /docs serves Swagger UI and the
    OpenAPI document lists every /v1 route."""
    with server.client(key=None) as c:
        assert c.get("/livez").status_code == 200
        assert c.get("/readyz").status_code == 200
        docs = c.get("/docs")
        assert docs.status_code == 200 and "swagger" in docs.text.lower()
        paths = c.get("/openapi.json").json()["paths"]
    for route in ("/v1/asr/transcribe", "/v1/speaker/embed", "/v1/speaker/verify",
                  "/v1/speaker/enroll", "/v1/speaker/identify", "/v1/models",
                  "/v1/audio/transcriptions"):  # fmt: skip
        assert route in paths, route


def test_models_name_the_production_versions_and_no_process_imported_torch(
    server: Server,
) -> None:
    """GET /v1/models reports both production versions, loaded from the registry with the
    ONNX backend, in three processes none of which imported torch."""
    models = server.models()
    for kind in ("asr", "spk"):
        m = models[kind]
        assert m["ready"] and m["version"] == _production(server, kind)
        assert m["source"] == "production" and m["backend"] == "onnx"
        assert m["torch_imported"] is False
        assert m["metrics"], "the version's metrics are reported"
    limits = models["asr"]["details"]["hotword_limits"]
    assert limits["max_count"] >= 1 and models["asr"]["details"]["device"] == "cpu"
    gateway = models["_gateway"]
    assert gateway["gateway_torch_imported"] is False
    assert len({models["asr"]["pid"], models["spk"]["pid"], gateway["gateway_pid"]}) == 3


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer wrong-key"}, 401),
        ({"Authorization": f"Basic {KEYS[0]}"}, 401),
        ({"Authorization": f"Bearer {KEYS[0]}"}, 200),
        ({"Authorization": f"Bearer {KEYS[1]}"}, 200),
    ],
)
def test_auth_on_every_v1_route(server: Server, headers: dict[str, str], status: int) -> None:
    """A missing, wrong or non-Bearer key is a 401 JSON error; each configured key works."""
    with server.client(key=None) as c:
        resp = c.get("/v1/models", headers=headers)
    assert resp.status_code == status
    if status == 401:
        assert resp.json()["error"]["type"] == "Unauthorized"
        assert resp.headers["www-authenticate"] == "Bearer"


def test_unauthorised_upload_is_refused_before_the_body(server: Server, realaudio: Path) -> None:
    """Upload routes refuse a missing key with 401 as well (never a model call)."""
    with server.client(key=None) as c:
        resp = c.post("/v1/asr/transcribe", files={"audio": _file(realaudio, CLIP)})
    assert resp.status_code == 401


def test_transcribe_matches_the_engine_and_names_the_version(
    server: Server, realaudio: Path
) -> None:
    """POST /v1/asr/transcribe with repeated hotwords gives what the same version's engine
    gives in-process for that audio and those hotwords, with timestamps inside the clip and
    the version in the body and the X-Model-Version header."""
    from speechloop.asr.engine import make_asr_engine

    version = _production(server, "asr")
    with server.client() as c:
        resp = c.post(
            "/v1/asr/transcribe",
            files=[("audio", _file(realaudio, CLIP))] + [("hotwords", (None, h)) for h in HOTWORDS],
            headers={"X-Request-ID": "test-transcribe-1"},
        )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["model"] == {"kind": "asr", "version": version, "backend": "onnx"}
    assert resp.headers["x-model-version"] == f"asr:{version}"
    assert resp.headers["x-request-id"] == "test-transcribe-1" == body["request_id"]
    ctx = server.context()
    engine = make_asr_engine(ctx.resolve_model("asr", version).directory, version=version)
    samples = decode_audio(realaudio / CLIP).samples
    want = engine.transcribe_each([samples], [engine.parse_hotwords(HOTWORDS)])[0]
    assert body["text"] == want.text
    assert body["hotwords_found"] == want.hotwords_found
    assert [t["token"] for t in body["timestamps"]] == [s.token for s in want.timestamps]
    ends = [t["end"] for t in body["timestamps"]]
    assert ends == sorted(ends) and (not ends or ends[-1] <= body["duration_s"] + 0.05)


def test_concurrent_requests_are_batched_not_shed(server: Server, realaudio: Path) -> None:
    """Twelve concurrent transcriptions and embeddings all succeed: requests queue for the
    adaptive batcher instead of being shed with 503 (BentoML's max_latency_ms)."""
    from concurrent.futures import ThreadPoolExecutor

    audio = (realaudio / CLIP).read_bytes()

    def one(i: int) -> int:
        route = "/v1/asr/transcribe" if i % 2 else "/v1/speaker/embed"
        with server.client() as c:
            return c.post(route, files={"audio": (CLIP, audio)}).status_code

    with ThreadPoolExecutor(12) as pool:
        statuses = list(pool.map(one, range(24)))
    assert statuses == [200] * 24


def test_duplicate_hotwords_are_reported(server: Server, realaudio: Path) -> None:
    """A hotword repeated (after normalising) is answered in hotwords_ignored."""
    with server.client() as c:
        resp = c.post(
            "/v1/asr/transcribe",
            files=[
                ("audio", _file(realaudio, CLIP)),
                ("hotwords", (None, "drofator")),
                ("hotwords", (None, "Drofator")),
            ],
        )
    assert resp.status_code == 200, resp.text
    assert resp.json()["hotwords_ignored"] == ["Drofator"]


def test_embed_matches_the_embedder(server: Server, realaudio: Path) -> None:
    """POST /v1/speaker/embed returns the served version's embedding of the clip."""
    from speechloop.speaker.embed import cosine
    from speechloop.speaker.loading import open_embedder

    version = _production(server, "spk")
    with server.client() as c:
        resp = c.post("/v1/speaker/embed", files={"audio": _file(realaudio, CLIP)})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["model"]["version"] == version and body["dim"] == len(body["embedding"])
    ctx = server.context()
    embedder = open_embedder(ctx.resolve_model("spk", version).directory, onnx=True)
    want = embedder.embed(decode_audio(realaudio / CLIP).samples)
    assert cosine(np.asarray(body["embedding"], np.float32), want) > 0.9999


def test_verify_two_audios(server: Server, realaudio: Path) -> None:
    """The same clip twice scores ~1 and is the same speaker; two clips give a score in
    [-1, 1] against the model's calibrated threshold."""
    with server.client() as c:
        same = c.post(
            "/v1/speaker/verify",
            files=[("audio", _file(realaudio, CLIP)), ("audio", _file(realaudio, CLIP))],
        ).json()
        pair = c.post(
            "/v1/speaker/verify",
            files=[("audio", _file(realaudio, CLIP)), ("audio", _file(realaudio, OTHER))],
        ).json()
    assert same["score"] > 0.999 and same["same_speaker"] is True
    assert -1.0 <= pair["score"] <= 1.0
    assert pair["same_speaker"] == (pair["score"] >= pair["threshold"])
    assert same["model"]["version"] == pair["model"]["version"] == _production(server, "spk")


def test_enroll_verify_identify(server: Server, realaudio: Path) -> None:
    """Enrolling a speaker stores a voiceprint for the served version; verify against the
    speaker id and identify find it; an unknown speaker id is a 404."""
    with server.client() as c:
        enrolled = c.post(
            "/v1/speaker/enroll",
            data={"speaker_id": "alice"},
            files=[("audio", _file(realaudio, CLIP)), ("audio", _file(realaudio, "sample_6s.wav"))],
        )
        assert enrolled.status_code == 200, enrolled.text
        assert enrolled.json()["n_utterances"] == 2
        verified = c.post(
            "/v1/speaker/verify",
            data={"speaker_id": "alice"},
            files={"audio": _file(realaudio, CLIP)},
        ).json()
        found = c.post(
            "/v1/speaker/identify", data={"top_k": "3"}, files={"audio": _file(realaudio, CLIP)}
        ).json()
        unknown = c.post(
            "/v1/speaker/verify",
            data={"speaker_id": "nobody"},
            files={"audio": _file(realaudio, CLIP)},
        )
    assert verified["speaker_id"] == "alice" and verified["score"] > 0.5
    assert found["candidates"][0]["speaker_id"] == "alice"
    assert unknown.status_code == 404 and "nobody" in unknown.json()["error"]["message"]
    version = _production(server, "spk")
    assert server.context().voiceprints.speakers(version) == ["alice"]


def test_openai_client_every_response_format(server: Server, realaudio: Path) -> None:
    """The real openai client transcribes through /v1/audio/transcriptions in every
    response format; hotwords from extra_body and from the prompt reach the model (the
    text equals /v1/asr/transcribe's with the same hotwords)."""
    import openai

    client = openai.OpenAI(api_key=KEYS[1], base_url=f"{server.url}/v1", max_retries=0)
    audio = (realaudio / CLIP).read_bytes()
    with server.client() as c:
        direct = c.post(
            "/v1/asr/transcribe",
            files=[("audio", _file(realaudio, CLIP))] + [("hotwords", (None, h)) for h in HOTWORDS],
        ).json()
    as_json = client.audio.transcriptions.create(
        model="speechloop", file=(CLIP, audio), extra_body={"hotwords": HOTWORDS}
    )
    assert as_json.text == direct["text"]
    via_prompt = client.audio.transcriptions.create(
        model="speechloop", file=(CLIP, audio), prompt=", ".join(HOTWORDS)
    )
    assert via_prompt.text == direct["text"]
    text = client.audio.transcriptions.create(
        model="whisper-1",
        file=(CLIP, audio),
        response_format="text",
        extra_body={"hotwords": HOTWORDS},
    )
    assert str(text).strip() == direct["text"]
    verbose = client.audio.transcriptions.create(
        model="speechloop",
        file=(CLIP, audio),
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
    )
    assert verbose.duration == pytest.approx(direct["duration_s"], abs=0.01)
    assert verbose.segments and verbose.words is not None
    srt = client.audio.transcriptions.create(model="x", file=(CLIP, audio), response_format="srt")
    assert re.match(r"1\n\d\d:\d\d:\d\d,\d{3} --> \d\d:\d\d:\d\d,\d{3}\n", str(srt))
    vtt = client.audio.transcriptions.create(model="x", file=(CLIP, audio), response_format="vtt")
    assert str(vtt).startswith("WEBVTT\n\n")


def test_openai_client_sees_errors(server: Server, realaudio: Path) -> None:
    """An unknown response_format is a 4xx the openai client raises with our message."""
    import openai

    client = openai.OpenAI(api_key=KEYS[0], base_url=f"{server.url}/v1", max_retries=0)
    with pytest.raises(openai.BadRequestError, match="response_format"):
        client.audio.transcriptions.create(  # type: ignore[call-overload]
            model="x", file=(CLIP, (realaudio / CLIP).read_bytes()), response_format="xml"
        )
    bad = openai.OpenAI(api_key="not-a-key", base_url=f"{server.url}/v1", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.audio.transcriptions.create(model="x", file=(CLIP, (realaudio / CLIP).read_bytes()))


def test_metrics_and_json_logs(server: Server, realaudio: Path) -> None:
    """/metrics carries latency, audio seconds, real-time factor, batch size, errors by
    class and the served versions; the log is JSON lines with request ids and never
    contains an API key."""
    with server.client() as c:
        ok = c.post("/v1/asr/transcribe", files={"audio": _file(realaudio, CLIP)},
                    headers={"X-Request-ID": "metrics-probe-42"})  # fmt: skip
        assert ok.status_code == 200
        c.post("/v1/asr/transcribe", files={"audio": ("x.wav", b"not audio", "audio/wav")})
        text = c.get("/metrics").text
    assert 'speechloop_request_seconds_count{route="/v1/asr/transcribe",status="200"}' in text
    assert re.search(r'speechloop_audio_seconds_total\{kind="asr"\} [1-9]', text)
    assert 'speechloop_rtf_count{kind="asr"}' in text
    assert 'speechloop_batch_size_count{kind="asr"}' in text
    assert 'speechloop_errors_total{error="AudioError",route="/v1/asr/transcribe"}' in text
    asr = _production(server, "asr")
    assert f'speechloop_model_info{{backend="onnx",kind="asr",version="{asr}"}} 1.0' in text
    log = server.log()
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    mine = [rec for rec in lines if rec.get("request_id") == "metrics-probe-42"]
    assert any(rec.get("path") == "/v1/asr/transcribe" and rec["status"] == 200 for rec in mine)
    assert any(rec.get("logger") == "service.asr" for rec in lines)
    for key in KEYS:
        assert key not in log
