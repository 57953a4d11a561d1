"""Voiceprints: enrolment, verification against a speaker, identification, re-enrolment.

Layout in the data bucket (through the :class:`ObjectStore` interface)::

    spk/enrolment/<speaker>/<sha256[:16]>.wav        the enrolment audio (16 kHz WAV)
    spk/voiceprints/<model_version>/<speaker>.json   one voiceprint per model version

A voiceprint is the L2-normalised mean of the L2-normalised embeddings of the
enrolment utterances, and is only comparable with embeddings of the model version that
made it. When a new speaker model is promoted, :meth:`VoiceprintStore.reenroll`
recomputes every speaker's voiceprint from the stored enrolment audio.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from speechloop.audio import decode_audio, encode_wav
from speechloop.errors import InvalidInput, NotFound
from speechloop.speaker.embed import SpeakerEmbedder, l2_normalise
from speechloop.storage.base import ObjectStore

_SPEAKER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
ENROL_PREFIX = "spk/enrolment"
PRINT_PREFIX = "spk/voiceprints"


def check_speaker(speaker: str) -> str:
    """A speaker id usable as a key part (letters, digits, ``_ . -``; up to 64)."""
    if not _SPEAKER.match(speaker) or ".." in speaker:
        raise InvalidInput(f"speaker id {speaker!r} must match {_SPEAKER.pattern}")
    return speaker


def _version_part(version: str) -> str:
    """A model version as one key component."""
    return re.sub(r"[^A-Za-z0-9_.@-]+", "_", version)


@dataclass(frozen=True)
class Voiceprint:
    """A speaker's voiceprint for one model version."""

    speaker: str
    model_version: str
    embedding: list[float]
    n_utterances: int
    enrolment: list[str] = field(default_factory=list)
    created_at: str = ""

    def vector(self) -> np.ndarray:
        """The embedding as a float32 array."""
        return np.asarray(self.embedding, dtype=np.float32)


@dataclass(frozen=True)
class Candidate:
    """One enrolled speaker and its cosine score against a probe."""

    speaker: str
    score: float


@dataclass(frozen=True)
class Identification:
    """Top-k candidates; ``speaker`` is the best one if it passes the threshold, else None."""

    speaker: str | None
    candidates: list[Candidate]
    threshold: float
    model_version: str

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def voiceprint_of(embeddings: np.ndarray) -> np.ndarray:
    """Mean of the L2-normalised embeddings, normalised again."""
    if embeddings.ndim != 2 or len(embeddings) == 0:
        raise InvalidInput("enrolment needs at least one embedding")
    return l2_normalise(l2_normalise(embeddings).mean(axis=0))


class VoiceprintStore:
    """Voiceprints and enrolment audio in ``bucket`` of an object store."""

    def __init__(self, store: ObjectStore, bucket: str) -> None:
        self.store = store
        self.bucket = bucket

    def print_key(self, speaker: str, version: str) -> str:
        """Key of a voiceprint."""
        return f"{PRINT_PREFIX}/{_version_part(version)}/{check_speaker(speaker)}.json"

    def enroll(
        self,
        embedder: SpeakerEmbedder,
        speaker: str,
        audios: Sequence[bytes],
        names: Sequence[str] | None = None,
    ) -> Voiceprint:
        """Store the enrolment audio (16 kHz WAV) and the voiceprint of ``speaker``.

        Adds to audio already enrolled for the speaker: the voiceprint covers all of it.
        """
        check_speaker(speaker)
        if not audios:
            raise InvalidInput(f"enrolment of {speaker!r} needs at least one recording")
        names = list(names) if names is not None else [f"audio[{i}]" for i in range(len(audios))]
        for data, name in zip(audios, names, strict=True):
            samples = decode_audio(data, name=name, min_s=embedder.config.min_duration_s).samples
            wav = encode_wav(samples)
            key = f"{ENROL_PREFIX}/{speaker}/{hashlib.sha256(wav).hexdigest()[:16]}.wav"
            if not self.store.exists(self.bucket, key):
                self.store.put_bytes(self.bucket, key, wav)
        return self._build(embedder, speaker)

    def _build(self, embedder: SpeakerEmbedder, speaker: str) -> Voiceprint:
        """Voiceprint of ``speaker`` from all its stored enrolment audio, saved."""
        keys = self.enrolment_keys(speaker)
        if not keys:
            raise NotFound(f"speaker {speaker!r} has no enrolment audio")
        samples = [decode_audio(self.store.get_bytes(self.bucket, k), name=k).samples for k in keys]
        vectors = embedder.embed_batch(samples, keys)
        vp = Voiceprint(
            speaker=speaker,
            model_version=embedder.version,
            embedding=[float(x) for x in voiceprint_of(vectors)],
            n_utterances=len(keys),
            enrolment=keys,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        data = json.dumps(asdict(vp)).encode()
        self.store.put_bytes(self.bucket, self.print_key(speaker, embedder.version), data)
        return vp

    def enrolment_keys(self, speaker: str) -> list[str]:
        """Keys of a speaker's stored enrolment audio, sorted."""
        prefix = f"{ENROL_PREFIX}/{check_speaker(speaker)}/"
        return [i.key for i in self.store.list(self.bucket, prefix)]

    def get(self, speaker: str, version: str) -> Voiceprint:
        """The voiceprint of ``speaker`` for model ``version`` (NotFound if not enrolled)."""
        key = self.print_key(speaker, version)
        try:
            data = self.store.get_bytes(self.bucket, key)
        except NotFound:
            raise NotFound(f"speaker {speaker!r} is not enrolled for model {version}") from None
        return Voiceprint(**json.loads(data))

    def speakers(self, version: str) -> list[str]:
        """Speakers with a voiceprint for ``version``."""
        prefix = f"{PRINT_PREFIX}/{_version_part(version)}/"
        return [
            i.key[len(prefix) : -len(".json")]
            for i in self.store.list(self.bucket, prefix)
            if i.key.endswith(".json")
        ]

    def identify(
        self, embedder: SpeakerEmbedder, samples: np.ndarray, *, threshold: float, top_k: int = 5
    ) -> Identification:
        """Rank the enrolled speakers (this model version) by cosine against ``samples``."""
        if top_k < 1:
            raise InvalidInput(f"top_k must be >= 1, got {top_k}")
        names = self.speakers(embedder.version)
        if not names:
            raise NotFound(f"no speakers are enrolled for model {embedder.version}")
        prints = np.stack([self.get(s, embedder.version).vector() for s in names])
        probe = l2_normalise(embedder.embed(samples, name="probe"))
        scores = prints @ probe
        order = np.argsort(-scores, kind="stable")[:top_k]
        cands = [Candidate(names[i], round(float(scores[i]), 6)) for i in order]
        best = cands[0].speaker if cands[0].score >= threshold else None
        return Identification(best, cands, threshold, embedder.version)

    def verify(self, embedder: SpeakerEmbedder, samples: np.ndarray, speaker: str) -> float:
        """Cosine score of ``samples`` against ``speaker``'s voiceprint."""
        vp = self.get(speaker, embedder.version)
        return float(vp.vector() @ l2_normalise(embedder.embed(samples, name="probe")))

    def reenroll(self, embedder: SpeakerEmbedder) -> list[str]:
        """Rebuild every speaker's voiceprint for ``embedder``'s model from stored audio."""
        done = []
        for speaker in self.store.list_prefixes(self.bucket, f"{ENROL_PREFIX}/"):
            self._build(embedder, speaker)
            done.append(speaker)
        return done
