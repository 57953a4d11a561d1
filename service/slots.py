"""A hot-swappable model: load, watch the registry alias, verify + warm up, swap.

A :class:`ModelSlot` holds the :class:`Loaded` model being served. Requests read
``slot.current()`` once and use that object to the end, so a swap (one attribute
assignment) never changes a model under a running request and drops none. A
background thread loads the first model (retrying until it succeeds, so the worker
answers ``/livez`` at once and ``/readyz`` turns true when the model is warm), then,
unless the version is pinned, polls the production alias; on a move it loads the new
version (the loader downloads, verifies checksums and warms up) and swaps it in. A
version that fails to load or verify is refused and logged, and the old one keeps
serving; it is not retried until the alias moves again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from speechloop.errors import ModelUnavailable, StoreError

T = TypeVar("T")
log = logging.getLogger("service.slots")


@dataclass(frozen=True)
class Loaded(Generic[T]):
    """A loaded, warm model and where it came from."""

    model: T
    kind: str
    version: str
    source: str  # "pinned" | "production" | "seed" | "local"
    backend: str
    metrics: dict[str, Any] = field(default_factory=dict)
    loaded_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))


Loader = Callable[[str | None], "Loaded[Any]"]
AliasReader = Callable[[], "str | None"]


class ModelSlot(Generic[T]):
    """The served model of one kind, swapped atomically when the alias moves."""

    def __init__(
        self,
        kind: str,
        loader: Callable[[str | None], Loaded[T]],
        *,
        alias: AliasReader | None,
        interval_s: float,
        on_swap: Callable[[Loaded[T], Loaded[T] | None], None] | None = None,
    ) -> None:
        self.kind = kind
        self._loader = loader
        self._alias = alias
        self._interval_s = interval_s
        self._on_swap = on_swap
        self._loaded: Loaded[T] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.refused: dict[str, str] = {}  # version -> why
        self.swaps = 0
        self.last_error: str | None = None

    # -- reading -----------------------------------------------------------------------

    def current(self) -> Loaded[T]:
        """The model being served (ModelUnavailable while none is loaded yet)."""
        loaded = self._loaded
        if loaded is None:
            why = f": {self.last_error}" if self.last_error else ""
            raise ModelUnavailable(f"the {self.kind} model is not loaded yet{why}")
        return loaded

    @property
    def ready(self) -> bool:
        """True once a model is loaded and warm."""
        return self._loaded is not None

    # -- loading and watching -------------------------------------------------------------

    def load_initial(self) -> bool:
        """Load the configured model (pin, alias or seed); False and logged on failure."""
        try:
            self._install(self._loader(None))
        except Exception as exc:  # noqa: BLE001 - any load failure is logged and retried
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.error("initial %s model load failed", self.kind, extra={"why": self.last_error})
            return False
        return True

    def check_once(self) -> str:
        """Follow the alias one step: 'unchanged', 'swapped', 'refused' or 'unreadable'."""
        if self._alias is None or self._loaded is None:
            return "unchanged"
        try:
            target = self._alias()
        except Exception as exc:  # noqa: BLE001 - store down: keep serving, retry later
            log.warning("cannot read the %s alias", self.kind, extra={"why": str(exc)})
            return "unreadable"
        if target is None or target == self._loaded.version or target in self.refused:
            return "unchanged"
        log.info("%s alias moved", self.kind, extra={"to": target, "from": self._loaded.version})
        try:
            new = self._loader(target)
            self._install(new)  # its swap hook (re-enrolment) failing refuses it too
        except StoreError as exc:  # transient: try again at the next check
            log.warning("cannot fetch %s %s", self.kind, target, extra={"why": str(exc)})
            return "unreadable"
        except Exception as exc:  # noqa: BLE001 - a bad version is refused, the old one serves
            why = f"{type(exc).__name__}: {exc}"
            self.refused[target] = why
            log.error(
                "refused %s version %s; still serving %s",
                self.kind,
                target,
                self._loaded.version,
                extra={"why": why},
            )
            _count_swap(self.kind, "refused")
            return "refused"
        return "swapped"

    def _install(self, new: Loaded[T]) -> None:
        old = self._loaded
        if self._on_swap is not None:
            self._on_swap(new, old)
        self._loaded = new  # the swap: one reference assignment
        self.last_error = None
        if old is not None:
            self.swaps += 1
            _count_swap(self.kind, "swapped")
        _set_info(new, old)
        log.info(
            "serving %s %s",
            self.kind,
            new.version,
            extra={"source": new.source, "backend": new.backend},
        )

    def start(self) -> None:
        """Load and then watch in a daemon thread."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name=f"{self.kind}-slot", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the watcher thread (the loaded model stays)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set() and not self.load_initial():
            self._stop.wait(self._interval_s)
        if self._alias is None:
            return
        while not self._stop.wait(self._interval_s):
            try:
                self.check_once()
            except Exception:  # the watcher must outlive any surprise; the model still serves
                log.exception("%s alias watcher step failed", self.kind)


def _count_swap(kind: str, outcome: str) -> None:
    from service.metrics import metrics

    metrics().swaps.labels(kind=kind, outcome=outcome).inc()


def _set_info(new: Loaded[Any], old: Loaded[Any] | None) -> None:
    from service.metrics import metrics

    gauge = metrics().model_info
    if old is not None:
        gauge.labels(kind=old.kind, version=old.version, backend=old.backend).set(0)
    gauge.labels(kind=new.kind, version=new.version, backend=new.backend).set(1)
