"""The ASR model service: one hot-swappable engine, adaptive batching across requests.

Each item of a batch carries its own hotword list (the engine decodes every utterance
with its own list, :meth:`~speechloop.asr.engine.HotwordAsr.transcribe_each`). Items
whose hotwords the model refuses get a 422 reply and the rest of the batch goes on;
if the engine fails on a batch, its items are retried one by one so that one bad item
fails only itself.
"""

from __future__ import annotations

import logging
import time
from functools import partial
from typing import Any

import bentoml

from service.errors import ErrorInfo, HotwordError, error_info
from service.runtime import ModelRuntime, guarded, model_ref
from service.schemas import AsrItem, AsrReply, ModelStatus, TokenTime
from service.settings import ServiceSettings
from service.slots import Loaded
from service.uploads import from_pcm
from speechloop.context import AppContext, ResolvedModel
from speechloop.errors import InvalidInput, SpeechloopError

log = logging.getLogger("service.asr")
# One batch call at a time (threads=1), up to 4 clips: the ONNX engine cuts a call into
# length-sorted runs of 2 clips and keeps 2 runs in flight, which on 2 CPU cores beats
# one padded run and one clip at a time (docs/results-asr-speed.md). More concurrent
# calls would oversubscribe the cores. Float outputs do not depend on a clip's batch
# neighbours; int8 outputs do a little (docs/operations.md says which mode serves).
MAX_BATCH = 4
MAX_LATENCY_MS = 60_000  # BentoML sheds load (503) past this wait; the request timeout bounds it


def build_engine(
    resolved: ResolvedModel, ctx: AppContext, settings: ServiceSettings
) -> tuple[Any, str]:
    """The warm engine of a resolved model, with the configured backend."""
    from speechloop.asr.engine import make_asr_engine

    engine = make_asr_engine(
        resolved.directory,
        backend=settings.asr_backend,
        version=resolved.version,
        device=settings.device,
        threads=settings.threads,
        export_cache=ctx.layout.asr_exports if settings.export_onnx else None,
    )
    engine.warmup()
    return engine, engine.backend


def _error(info: ErrorInfo) -> AsrReply:
    return AsrReply(error=info)


@bentoml.service(
    name="speechloop-asr",
    workers=1,
    threads=1,
    traffic={"timeout": 120, "max_concurrency": 64},
)
class AsrService:
    """Transcribes decoded audio with the served ASR version (see the module docstring)."""

    def __init__(self) -> None:
        self.runtime: ModelRuntime[Any] = ModelRuntime("asr", build_engine)
        self.runtime.slot.start()

    def __is_ready__(self) -> bool:
        """Ready when a model is loaded and warm."""
        return self.runtime.slot.ready

    @bentoml.api(batchable=True, max_batch_size=MAX_BATCH, max_latency_ms=MAX_LATENCY_MS)
    def transcribe(self, items: list[AsrItem]) -> list[AsrReply]:
        """Transcribe a batch of utterances, each with its own hotwords."""
        try:
            loaded = self.runtime.slot.current()
        except SpeechloopError as exc:
            return [_error(error_info(exc)) for _ in items]
        started = time.perf_counter()
        replies = self._batch(loaded, items)
        _observe(items, replies, time.perf_counter() - started)
        return replies

    def _batch(self, loaded: Loaded[Any], items: list[AsrItem]) -> list[AsrReply]:
        engine = loaded.model
        replies: list[AsrReply | None] = [None] * len(items)
        todo: list[tuple[int, Any, Any]] = []
        for i, item in enumerate(items):
            try:
                hotwords = engine.parse_hotwords(item.hotwords or None)
            except InvalidInput as exc:
                replies[i] = _error(error_info(HotwordError(f"hotwords: {exc}")))
                continue
            try:
                todo.append((i, from_pcm(item.pcm), hotwords))
            except SpeechloopError as exc:
                replies[i] = _error(error_info(exc))
        if todo:
            try:
                outs = engine.transcribe_each([w for _, w, _ in todo], [h for _, _, h in todo])
                for (i, _, h), out in zip(todo, outs, strict=True):
                    replies[i] = _reply(loaded, out, h)
            except Exception:  # noqa: BLE001 - isolate the failing item(s) below
                for i, wave, h in todo:
                    one = partial(_transcribe_one, loaded, wave, h)
                    replies[i] = guarded(_error, items[i].request_id, one)
        return [r if r is not None else _error(error_info(RuntimeError())) for r in replies]

    @bentoml.api
    def info(self) -> ModelStatus:
        """Status of the served ASR model."""
        return self.runtime.status()


def _transcribe_one(loaded: Loaded[Any], wave: Any, hotwords: Any) -> AsrReply:
    return _reply(loaded, loaded.model.transcribe_each([wave], [hotwords])[0], hotwords)


def _reply(loaded: Loaded[Any], out: Any, hotwords: Any) -> AsrReply:
    return AsrReply(
        text=out.text,
        hotwords_found=list(out.hotwords_found),
        hotwords_ignored=list(getattr(hotwords, "duplicates", []) or []),
        timestamps=[
            TokenTime(token=s.token, start=round(s.start_s, 3), end=round(s.end_s, 3))
            for s in out.timestamps
        ],
        duration_s=out.duration_s,
        model=model_ref(loaded),
    )


def _observe(items: list[AsrItem], replies: list[AsrReply], elapsed: float) -> None:
    from service.metrics import metrics

    m = metrics()
    audio_s = sum(r.duration_s for r in replies if r.error is None)
    m.batch_size.labels(kind="asr").observe(len(items))
    if audio_s > 0:
        m.audio_seconds.labels(kind="asr").inc(audio_s)
        m.rtf.labels(kind="asr").observe(elapsed / audio_s)
    log.info(
        "batch",
        extra={
            "items": len(items),
            "request_ids": [i.request_id for i in items],
            "audio_s": round(audio_s, 3),
            "seconds": round(elapsed, 4),
        },
    )
