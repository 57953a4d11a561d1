"""The story's calls to the running service, over HTTP, and their answers as values.

:class:`ServiceClient` is a thin ``httpx`` client of the documented REST API (the same
requests as the README's curl examples); :func:`ask_asr` and :func:`ask_spk` send the
story's probes and return what came back, with the model version that answered, so a
caller can show and compare answers before and after a promotion or a rollback.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from speechloop.errors import ModelUnavailable, SpeechloopError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from speechloop.demo.story import AsrProbe, SpkProbe


class ServiceError(SpeechloopError):
    """The service answered a story request with an error."""

    http_status = 502


class ServiceClient:
    """Calls to one running service with one API key."""

    def __init__(self, url: str, key: str | None, timeout_s: float = 120.0) -> None:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _post(self, route: str, files: list[tuple[str, Any]], data: Any = None) -> dict[str, Any]:
        reply = self._http.post(route, files=files, data=data)
        if reply.status_code != 200:
            raise ServiceError(f"POST {route} -> {reply.status_code}: {reply.text[:300]}")
        body: dict[str, Any] = reply.json()
        return body

    def ready(self) -> bool:
        """Whether ``/readyz`` answers 200 (both models loaded)."""
        try:
            return self._http.get("/readyz", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def transcribe(self, audio: bytes, hotwords: Sequence[str] = ()) -> dict[str, Any]:
        """``POST /v1/asr/transcribe``."""
        return self._post("/v1/asr/transcribe", [("audio", ("clip.wav", audio))],
                          {"hotwords": list(hotwords)})  # fmt: skip

    def verify(self, audio_a: bytes, audio_b: bytes) -> dict[str, Any]:
        """``POST /v1/speaker/verify`` with two recordings."""
        files = [("audio", ("a.wav", audio_a)), ("audio", ("b.wav", audio_b))]
        return self._post("/v1/speaker/verify", files)

    def enroll(self, speaker_id: str, audios: Sequence[bytes]) -> dict[str, Any]:
        """``POST /v1/speaker/enroll``."""
        files = [("audio", (f"{speaker_id}-{i}.wav", a)) for i, a in enumerate(audios)]
        return self._post("/v1/speaker/enroll", files, {"speaker_id": speaker_id})

    def identify(self, audio: bytes, top_k: int = 3) -> dict[str, Any]:
        """``POST /v1/speaker/identify``."""
        return self._post("/v1/speaker/identify", [("audio", ("clip.wav", audio))],
                          {"top_k": str(top_k)})  # fmt: skip

    def models(self) -> dict[str, dict[str, Any]]:
        """``GET /v1/models`` by kind."""
        reply = self._http.get("/v1/models")
        if reply.status_code != 200:
            raise ServiceError(f"GET /v1/models -> {reply.status_code}: {reply.text[:300]}")
        return {m["kind"]: m for m in reply.json()["models"]}

    def served(self) -> dict[str, str | None]:
        """The version each kind serves now."""
        return {kind: m.get("version") for kind, m in self.models().items()}

    def wait_for(self, kind: str, version: str, timeout_s: float = 180.0) -> float:
        """Wait until ``kind`` serves ``version`` (the service follows the alias without a
        restart); the seconds it took. ModelUnavailable naming a refusal or the timeout."""
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            model = self.models().get(kind, {})
            if model.get("ready") and model.get("version") == version:
                return time.monotonic() - started
            if version in (model.get("refused") or {}):
                raise ModelUnavailable(
                    f"the service refused {kind} {version}: {model['refused'][version]}"
                )
            time.sleep(0.5)
        raise ModelUnavailable(f"the service did not swap {kind} to {version} in {timeout_s:.0f} s")


# -- the story's questions and their answers --------------------------------------------


@dataclass(frozen=True)
class AsrAnswer:
    """One probe transcribed with its hotwords (and once without)."""

    probe: str
    expected: str
    hotwords: tuple[str, ...]
    text: str
    found: tuple[str, ...]
    plain_text: str
    version: str

    @property
    def recognised(self) -> int:
        """How many of the probe's names the answer with hotwords contains."""
        return len(self.found)


@dataclass(frozen=True)
class AsrAnswers:
    """The answers to every ASR probe from one served version."""

    version: str
    answers: tuple[AsrAnswer, ...]

    @property
    def names(self) -> int:
        """Names asked for (one per hotword of every probe)."""
        return sum(len(a.hotwords) for a in self.answers)

    @property
    def recognised(self) -> int:
        """Names recognised with their hotwords."""
        return sum(a.recognised for a in self.answers)

    @property
    def recognised_plain(self) -> int:
        """Names that occur in the answers without hotwords."""
        return sum(sum(h in a.plain_text for h in a.hotwords) for a in self.answers)

    def cer(self, *, hotwords: bool = True) -> float:
        """Character error rate of the answers (with or without hotwords) against the
        transcripts (:mod:`speechloop.asr.metrics`, normalised characters)."""
        from speechloop.asr.metrics import score_corpus

        refs = [a.expected for a in self.answers]
        hyps = [a.text if hotwords else a.plain_text for a in self.answers]
        return score_corpus(refs, hyps).cer


def ask_asr(client: ServiceClient, probes: Sequence[AsrProbe]) -> AsrAnswers:
    """Transcribe every probe with and without its hotwords."""
    out: list[AsrAnswer] = []
    versions: set[str] = set()
    for probe in probes:
        biased = client.transcribe(probe.audio, probe.hotwords)
        plain = client.transcribe(probe.audio)
        versions |= {biased["model"]["version"], plain["model"]["version"]}
        out.append(AsrAnswer(probe.id, probe.text, probe.hotwords, biased["text"],
                             tuple(biased["hotwords_found"]), plain["text"],
                             biased["model"]["version"]))  # fmt: skip
    return AsrAnswers(_one_version(versions, "asr"), tuple(out))


@dataclass(frozen=True)
class Verification:
    """One verify call: two clips, same speaker or not, and the service's verdict."""

    pair: str
    same: bool
    score: float
    threshold: float
    accepted: bool

    @property
    def right(self) -> bool:
        """Whether the verdict is the truth."""
        return self.accepted == self.same


@dataclass(frozen=True)
class SpkAnswers:
    """Verify and identify answers from one served speaker version."""

    version: str
    verifications: tuple[Verification, ...]
    identified: tuple[tuple[str, str | None], ...] = field(default=())  # (truth, answer)

    @property
    def verify_right(self) -> int:
        """Verify verdicts that are right."""
        return sum(v.right for v in self.verifications)

    @property
    def identify_right(self) -> int:
        """Test clips identified as their own speaker."""
        return sum(truth == answer for truth, answer in self.identified)


def enrol_speakers(client: ServiceClient, probes: Sequence[SpkProbe]) -> list[str]:
    """Enrol every probe speaker with its enrolment clips (through the service)."""
    return [client.enroll(p.speaker, p.enrol)["speaker_id"] for p in probes]


def ask_spk(client: ServiceClient, probes: Sequence[SpkProbe]) -> SpkAnswers:
    """Verify same-speaker pairs (each speaker's enrolment clip against its test clips)
    and different-speaker pairs (against the next speaker's), and identify every test
    clip among the enrolled speakers."""
    checks: list[Verification] = []
    identified: list[tuple[str, str | None]] = []
    versions: set[str] = set()
    for i, probe in enumerate(probes):
        other = probes[(i + 1) % len(probes)]
        pairs = [(f"{probe.speaker} vs {probe.speaker}", True, clip) for clip in probe.test[:2]]
        if other.speaker != probe.speaker and other.test:
            pairs.append((f"{probe.speaker} vs {other.speaker}", False, other.test[0]))
        for name, same, clip in pairs:
            got = client.verify(probe.enrol[0], clip)
            versions.add(got["model"]["version"])
            score, threshold = float(got["score"]), float(got["threshold"])
            checks.append(Verification(name, same, score, threshold, bool(got["same_speaker"])))
        for clip in probe.test:
            got = client.identify(clip)
            versions.add(got["model"]["version"])
            identified.append((probe.speaker, got["speaker_id"]))
    return SpkAnswers(_one_version(versions, "spk"), tuple(checks), tuple(identified))


def _one_version(versions: set[str], kind: str) -> str:
    """The one version that answered (a swap in the middle of a series is an error)."""
    if len(versions) != 1:
        raise ServiceError(f"{kind} answers came from {sorted(versions)}: expected one version")
    return next(iter(versions))
