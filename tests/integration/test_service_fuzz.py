"""Schemathesis over the service's own OpenAPI document, against a real server.

One ``bentoml serve`` process for the module (:mod:`tests.integration.test_service_support`).
Schemathesis reads ``/openapi.json`` from it and sends generated requests, valid and
invalid by the schema (random bytes or a real recording as audio; generated hotwords,
speaker ids and options; wrong types, missing and extra parts), to every operation with
a good API key. The contract: every answer is below 500 (a client
fault is a 4xx JSON error), and afterwards the process still serves: ``/livez`` and
``/readyz`` are 200 and a good transcription gives the same answer as before the fuzzing.

The number of examples per operation and mode is bounded (``EXAMPLES``) and derandomised,
so the run is repeatable and takes well under a minute once the server is up. (Hypothesis
drives schemathesis's strategies directly: schemathesis's own pytest plugin fails on
pytest 9.2 with ``'Function' object has no attribute '_nodeid'``.)
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.integration.test_service_support import KEYS, Server, start_server

CLIP = "zh_mid_5s.wav"
EXAMPLES = 30
AUDIO_FIELDS = {"audio", "file"}
AUTH = {"Authorization": f"Bearer {KEYS[0]}"}
_SERVER_ERROR = re.compile(r'^speechloop_request_seconds_count\{[^}]*status="5\d\d"[^}]*\} ', re.M)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, realaudio: Path) -> Iterator[Server]:
    """The gateway on a seeded store, ready."""
    srv = start_server(tmp_path_factory, "svc-fuzz")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def before(server: Server, realaudio: Path) -> dict[str, Any]:
    """A good transcription taken before any fuzzing."""
    return _transcribe(server, realaudio)


@pytest.fixture(scope="module")
def api_schema(server: Server, before: dict[str, Any]) -> Any:
    """The served OpenAPI document, generating valid and invalid requests."""
    return schemathesis.openapi.from_url(f"{server.url}/openapi.json", timeout=30)


def _transcribe(server: Server, realaudio: Path) -> dict[str, Any]:
    with server.client() as c:
        resp = c.post(
            "/v1/asr/transcribe",
            files=[("audio", (CLIP, (realaudio / CLIP).read_bytes(), "audio/wav"))],
        )
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def _declared_fields(api_schema: Any) -> set[str]:
    """Every property name of the document's component schemas (the form fields)."""
    components = api_schema.raw_schema.get("components", {}).get("schemas", {})
    return {name for spec in components.values() for name in spec.get("properties", {})}


def _with_real_audio(case: Any, clip: bytes, declared: set[str], files: int) -> Any:
    """The case reduced to its declared form fields, with ``files`` real recordings as
    each file part, so generated hotwords, speaker ids and options reach
    the models instead of stopping at the audio decoder or the unknown-field check."""
    if isinstance(case.body, dict):
        case.body = {k: v for k, v in case.body.items() if k in declared}
        for field in AUDIO_FIELDS & case.body.keys():
            case.body[field] = [clip] * files
    return case


def _cases(
    operation: Any, mode: GenerationMode, clip: bytes, declared: set[str]
) -> st.SearchStrategy[Any]:
    """Generated cases; of the valid ones, half carry one real recording, a quarter two."""
    cases = operation.as_strategy(generation_mode=mode)
    if mode is GenerationMode.NEGATIVE:
        return cases
    return st.tuples(cases, st.sampled_from((0, 1, 1, 2))).map(
        lambda pair: _with_real_audio(pair[0], clip, declared, pair[1]) if pair[1] else pair[0]
    )


def _probe(
    operation: Any,
    mode: GenerationMode,
    clip: tuple[bytes, set[str]],
    seen: Counter[str],
    faults: list[str],
) -> None:
    """Send ``EXAMPLES`` generated requests to one operation, recording what came back."""

    @given(case=_cases(operation, mode, *clip))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def probe(case: Any) -> None:
        response = case.call(headers=AUTH, timeout=120)
        label = f"{case.method} {case.path} ({mode.value})"
        seen[f"{response.status_code // 100}xx"] += 1
        if response.status_code >= 500:
            faults.append(f"{label} -> {response.status_code}: {response.text[:300]}")
        elif response.status_code >= 400:
            error = response.json().get("error") or {}
            if not (error.get("type") and error.get("message")):
                faults.append(f"{label} -> {response.status_code} without a JSON error")

    try:
        probe()
    except Unsatisfiable:
        # an operation without any input (GET /v1/models) has no invalid request
        if mode is not GenerationMode.NEGATIVE or operation.method.upper() != "GET":
            raise


def test_no_operation_answers_5xx(api_schema: Any, realaudio: Path) -> None:
    """Every generated request (valid and invalid by the schema, some with a real
    recording as the audio) to every operation gets an answer below 500, and every 4xx is
    a JSON error naming its type and the problem."""
    clip = ((realaudio / CLIP).read_bytes(), _declared_fields(api_schema))
    seen: Counter[str] = Counter()
    faults: list[str] = []
    labels = []
    for result in api_schema.get_all_operations():
        operation = result.ok()
        labels.append(operation.label)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _probe(operation, mode, clip, seen, faults)
    assert len(labels) >= 7, labels  # every /v1 route is in the document
    assert not faults, "\n".join(faults)
    assert seen["4xx"] > 0 and sum(seen.values()) >= len(labels) * EXAMPLES, seen
    assert seen["2xx"] >= 3, f"too few requests reached the models: {seen}"


def test_still_serving_after_fuzzing(
    server: Server, realaudio: Path, before: dict[str, Any]
) -> None:
    """After the fuzzing the process is alive, live and ready, transcribes the same clip
    to the same text with the same version, and its metrics count no 5xx answer."""
    assert server.alive()
    with server.client(key=None) as c:
        assert c.get("/livez").status_code == 200
        assert c.get("/readyz").status_code == 200
        metrics = c.get("/metrics").text
    after = _transcribe(server, realaudio)
    assert (after["text"], after["model"]) == (before["text"], before["model"])
    assert "speechloop_request_seconds_count" in metrics
    assert not _SERVER_ERROR.search(metrics), _SERVER_ERROR.findall(metrics)
