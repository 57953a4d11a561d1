"""What both model services share: settings + context, the alias watcher, replies.

:class:`ModelRuntime` builds the one :class:`~speechloop.context.AppContext` of a model
service process and its :class:`~service.slots.ModelSlot`; :func:`guarded` turns a
failure into the error field of a reply, so a model service never raises to the
gateway.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

from service.errors import error_info
from service.logs import request_id_var, setup_logging
from service.schemas import ModelRef, ModelStatus
from service.settings import ServiceSettings, get_service_settings
from service.slots import Loaded, ModelSlot
from speechloop.context import AppContext, ResolvedModel, build_context
from speechloop.errors import SpeechloopError

T = TypeVar("T")
R = TypeVar("R")
log = logging.getLogger("service.runtime")
_WATCHED_PINS = {None: "production", "production": "production", "previous": "previous"}


def read_metrics(directory: Path) -> dict[str, Any]:
    """``metrics.json`` of a model directory ({} when absent or unreadable)."""
    path = directory / "metrics.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class ModelRuntime(Generic[T]):
    """Settings, context and the hot-swappable slot of one model kind."""

    def __init__(
        self,
        kind: str,
        build: Callable[[ResolvedModel, AppContext, ServiceSettings], tuple[T, str]],
        on_swap: Callable[[Loaded[T], Loaded[T] | None], None] | None = None,
        settings: ServiceSettings | None = None,
    ) -> None:
        """``build(resolved, ctx, settings)`` -> (warm model, backend name)."""
        self.settings = settings or get_service_settings()
        setup_logging(self.settings.log_level)
        self.kind = kind
        self.ctx = build_context(self.settings)
        self._build = build
        self.pin = self.ctx.pinned_version(kind)
        watched = _WATCHED_PINS.get(self.pin)
        self.watched = watched
        self.slot: ModelSlot[T] = ModelSlot(
            kind,
            self.load,
            alias=(lambda: self._alias(watched)) if watched else None,
            interval_s=self.settings.watch_interval_s,
            on_swap=on_swap,
        )

    def _alias(self, name: str) -> str | None:
        alias = self.ctx.registry.get_alias(self.kind, name)
        return alias.version if alias is not None else None

    def load(self, ref: str | None) -> Loaded[T]:
        """Resolve (download + verify), build, warm up: a model ready to swap in."""
        resolved = self.ctx.resolve_model(self.kind, ref)
        model, backend = self._build(resolved, self.ctx, self.settings)
        source = resolved.source if ref is None else (self.watched or resolved.source)
        return Loaded(
            model=model,
            kind=self.kind,
            version=resolved.version,
            source=source,
            backend=backend,
            metrics=read_metrics(resolved.directory),
        )

    def export_cache(self) -> Path | None:
        """Where graphs may be exported for a model without them (None: never export)."""
        return self.ctx.layout.exports(self.kind) if self.settings.export_onnx else None

    def status(self) -> ModelStatus:
        """The served model's status for ``GET /v1/models``."""
        slot = self.slot
        base: dict[str, Any] = {
            "kind": self.kind,
            "ready": slot.ready,
            "pinned": self.pin is not None and self.pin not in _WATCHED_PINS,
            "swaps": slot.swaps,
            "refused": dict(slot.refused),
            "last_error": slot.last_error,
            "torch_imported": "torch" in sys.modules,
            "pid": os.getpid(),
        }
        if slot.ready:
            cur = slot.current()
            base.update(
                version=cur.version,
                source=cur.source,
                backend=cur.backend,
                loaded_at=cur.loaded_at,
                metrics=cur.metrics,
            )
            describe = getattr(cur.model, "describe", None)
            if callable(describe):  # the ASR engine: device, hotword capabilities and limits
                base["details"] = describe()
        return ModelStatus(**base)


def model_ref(loaded: Loaded[Any]) -> ModelRef:
    """The :class:`ModelRef` of a loaded model."""
    return ModelRef(kind=loaded.kind, version=loaded.version, backend=loaded.backend)


def guarded(make_error: Callable[[Any], R], request_id: str | None, fn: Callable[[], R]) -> R:
    """``fn()``, or ``make_error(ErrorInfo)`` when it fails (logged; 5xx with a trace)."""
    token = request_id_var.set(request_id)
    try:
        return fn()
    except SpeechloopError as exc:
        info = error_info(exc)
        level = logging.ERROR if info.status >= 500 else logging.INFO
        log.log(level, "request refused", extra={"error": info.type, "why": str(exc)})
        return make_error(info)
    except Exception:
        log.exception("unexpected error in a model service")
        return make_error(error_info(RuntimeError()))
    finally:
        request_id_var.reset(token)
