"""The speaker model service: embeddings, verification, enrolment, identification.

Voiceprints are specific to a speaker-model version (:mod:`speechloop.speaker.enrol`):
before a new version is swapped in, every enrolled speaker without a voiceprint for it
is re-enrolled from the stored enrolment audio, so verification against an enrolled
speaker keeps working across a swap. Each call reads the served embedder once and uses
it to the end, so a score is never computed across two versions.
"""

from __future__ import annotations

import logging
import time
from functools import partial
from typing import Any

import bentoml
import numpy as np

from service.errors import ErrorInfo, error_info
from service.runtime import ModelRuntime, guarded, model_ref
from service.schemas import (
    Candidate,
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
from service.settings import ServiceSettings
from service.slots import Loaded
from service.uploads import from_pcm
from speechloop.audio import SAMPLE_RATE, encode_wav
from speechloop.context import AppContext, ResolvedModel
from speechloop.errors import NotFound, SpeechloopError
from speechloop.speaker.embed import SpeakerEmbedder, cosine
from speechloop.speaker.enrol import ENROL_PREFIX, VoiceprintStore, check_speaker

log = logging.getLogger("service.speaker")
MAX_BATCH = 8
MAX_LATENCY_MS = 60_000  # BentoML sheds load (503) past this wait; the request timeout bounds it


def build_embedder(
    resolved: ResolvedModel, ctx: AppContext, settings: ServiceSettings
) -> tuple[SpeakerEmbedder, str]:
    """The warm embedder of a resolved model, with the configured backend."""
    from speechloop.speaker.loading import open_embedder

    onnx = settings.spk_backend == "onnx"
    embedder = open_embedder(
        resolved.directory,
        onnx=onnx,
        version=resolved.version,
        device=settings.device,
        threads=settings.threads,
        export_cache=ctx.layout.spk_exports if settings.export_onnx else None,
    )
    rng = np.random.default_rng(0)
    embedder.embed(rng.normal(0, 0.1, SAMPLE_RATE).astype(np.float32), name="warm-up")
    return embedder, "onnx" if onnx else "torch"


def sync_voiceprints(voiceprints: VoiceprintStore, embedder: SpeakerEmbedder) -> list[str]:
    """Re-enrol every speaker with stored enrolment audio but no voiceprint for
    ``embedder``'s version (all of them for a new version); returns who was re-enrolled."""
    store, bucket = voiceprints.store, voiceprints.bucket
    try:
        enrolled = set(store.list_prefixes(bucket, f"{ENROL_PREFIX}/"))
        have = set(voiceprints.speakers(embedder.version))
    except NotFound:  # no data bucket yet: nobody is enrolled
        return []
    if not enrolled - have:
        return []
    return voiceprints.reenroll(embedder)


@bentoml.service(
    name="speechloop-spk",
    workers=1,
    threads=2,
    traffic={"timeout": 120, "max_concurrency": 64},
)
class SpeakerService:
    """Speaker embeddings and voiceprints with the served version (see module docstring)."""

    def __init__(self) -> None:
        self.runtime: ModelRuntime[SpeakerEmbedder] = ModelRuntime(
            "spk", build_embedder, on_swap=self._before_swap
        )
        self.runtime.slot.start()

    def _before_swap(
        self, new: Loaded[SpeakerEmbedder], old: Loaded[SpeakerEmbedder] | None
    ) -> None:
        done = sync_voiceprints(self.runtime.ctx.voiceprints, new.model)
        if done:
            log.info("re-enrolled speakers", extra={"version": new.version, "count": len(done)})

    def __is_ready__(self) -> bool:
        """Ready when a model is loaded and warm."""
        return self.runtime.slot.ready

    def _threshold(self, embedder: SpeakerEmbedder) -> float:
        if embedder.threshold is not None:
            return float(embedder.threshold)
        return self.runtime.settings.spk_threshold

    @bentoml.api(batchable=True, max_batch_size=MAX_BATCH, max_latency_ms=MAX_LATENCY_MS)
    def embed(self, items: list[SpkItem]) -> list[EmbedReply]:
        """Embeddings of a batch of utterances (one failing item fails only itself)."""
        try:
            loaded = self.runtime.slot.current()
        except SpeechloopError as exc:
            return [EmbedReply(error=error_info(exc)) for _ in items]
        started = time.perf_counter()
        waves = [from_pcm(i.pcm) for i in items]
        try:
            vectors = loaded.model.embed_batch(waves)
            replies = [
                EmbedReply(embedding=[float(x) for x in v], model=model_ref(loaded))
                for v in vectors
            ]
        except Exception:  # noqa: BLE001 - isolate the failing item(s)
            replies = [
                guarded(_embed_error, item.request_id, partial(_embed_one, loaded, w))
                for item, w in zip(items, waves, strict=True)
            ]
        _observe(waves, time.perf_counter() - started)
        return replies

    @bentoml.api
    def verify(self, req: VerifyRequest) -> VerifyReply:
        """Score two utterances, or one against an enrolled speaker's voiceprint."""
        return guarded(lambda e: VerifyReply(error=e), req.request_id, lambda: self._verify(req))

    def _verify(self, req: VerifyRequest) -> VerifyReply:
        loaded = self.runtime.slot.current()
        embedder = loaded.model
        probe = from_pcm(req.pcm_a)
        started = time.perf_counter()
        if req.speaker_id is not None:
            check_speaker(req.speaker_id)
            voiceprints = self.runtime.ctx.voiceprints
            try:
                score = voiceprints.verify(embedder, probe, req.speaker_id)
            except NotFound:  # enrolled on the old version during a swap: catch up once
                if not sync_voiceprints(voiceprints, embedder):
                    raise
                score = voiceprints.verify(embedder, probe, req.speaker_id)
            waves = [probe]
        else:
            assert req.pcm_b is not None
            other = from_pcm(req.pcm_b)
            a, b = embedder.embed_batch([probe, other], ["audio[0]", "audio[1]"])
            score = cosine(a, b)
            waves = [probe, other]
        _observe(waves, time.perf_counter() - started)
        threshold = self._threshold(embedder)
        return VerifyReply(
            score=round(float(score), 6),
            threshold=round(threshold, 6),
            same_speaker=bool(score >= threshold),
            model=model_ref(loaded),
        )

    @bentoml.api
    def enroll(self, req: EnrollRequest) -> EnrollReply:
        """Store recordings of a speaker and rebuild its voiceprint."""
        return guarded(lambda e: EnrollReply(error=e), req.request_id, lambda: self._enroll(req))

    def _enroll(self, req: EnrollRequest) -> EnrollReply:
        loaded = self.runtime.slot.current()
        check_speaker(req.speaker_id)
        voiceprints = self.runtime.ctx.voiceprints
        voiceprints.store.ensure_bucket(voiceprints.bucket)
        wavs = [encode_wav(from_pcm(p)) for p in req.pcms]
        vp = voiceprints.enroll(loaded.model, req.speaker_id, wavs, req.names)
        return EnrollReply(
            speaker_id=vp.speaker, n_utterances=vp.n_utterances, model=model_ref(loaded)
        )

    @bentoml.api
    def identify(self, req: IdentifyRequest) -> IdentifyReply:
        """Rank the enrolled speakers against one utterance."""
        return guarded(
            lambda e: IdentifyReply(error=e), req.request_id, lambda: self._identify(req)
        )

    def _identify(self, req: IdentifyRequest) -> IdentifyReply:
        loaded = self.runtime.slot.current()
        voiceprints = self.runtime.ctx.voiceprints
        threshold = self._threshold(loaded.model)
        found = voiceprints.identify(
            loaded.model, from_pcm(req.pcm), threshold=threshold, top_k=req.top_k
        )
        return IdentifyReply(
            speaker_id=found.speaker,
            candidates=[Candidate(speaker_id=c.speaker, score=c.score) for c in found.candidates],
            threshold=round(threshold, 6),
            model=model_ref(loaded),
        )

    @bentoml.api
    def info(self) -> ModelStatus:
        """Status of the served speaker model."""
        return self.runtime.status()


def _embed_one(loaded: Loaded[SpeakerEmbedder], wave: Any) -> EmbedReply:
    vector = loaded.model.embed(wave)
    return EmbedReply(embedding=[float(x) for x in vector], model=model_ref(loaded))


def _embed_error(info: ErrorInfo) -> EmbedReply:
    return EmbedReply(error=info)


def _observe(waves: list[Any], elapsed: float) -> None:
    from service.metrics import metrics

    m = metrics()
    audio_s = sum(len(w) for w in waves) / SAMPLE_RATE
    m.batch_size.labels(kind="spk").observe(len(waves))
    if audio_s > 0:
        m.audio_seconds.labels(kind="spk").inc(audio_s)
        m.rtf.labels(kind="spk").observe(elapsed / audio_s)
