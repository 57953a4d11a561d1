"""The hot-swap slot: first load, following the alias, refusing bad versions, atomic swap."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pytest

from service.slots import Loaded, ModelSlot
from speechloop.errors import IntegrityError, ModelUnavailable, StoreUnavailable


@dataclass
class FakeModel:
    version: str


class Registry:
    """An alias and a loader whose failures are chosen per version."""

    def __init__(self) -> None:
        self.alias: str | None = "v1"
        self.fail: dict[str, Exception] = {}
        self.loads: list[str | None] = []
        self.alias_error: Exception | None = None

    def read_alias(self) -> str | None:
        if self.alias_error is not None:
            raise self.alias_error
        return self.alias

    def load(self, ref: str | None) -> Loaded[FakeModel]:
        self.loads.append(ref)
        version = ref or self.alias or "seed"
        if version in self.fail:
            raise self.fail[version]
        return Loaded(FakeModel(version), "asr", version, "production", "onnx")


def _slot(reg: Registry, **kwargs: object) -> ModelSlot[FakeModel]:
    return ModelSlot("asr", reg.load, alias=reg.read_alias, interval_s=0.01, **kwargs)  # type: ignore[arg-type]


def test_not_ready_until_loaded() -> None:
    """Before the first load, current() is ModelUnavailable naming the last error."""
    reg = Registry()
    reg.fail["v1"] = ModelUnavailable("no graphs")
    slot = _slot(reg)
    assert not slot.ready
    assert slot.load_initial() is False
    with pytest.raises(ModelUnavailable, match="no graphs"):
        slot.current()
    del reg.fail["v1"]
    assert slot.load_initial() and slot.ready and slot.current().version == "v1"


def test_follows_the_alias() -> None:
    """An alias move loads the new version and swaps it in; no move, no load."""
    reg = Registry()
    slot = _slot(reg)
    slot.load_initial()
    assert slot.check_once() == "unchanged" and reg.loads == [None]
    reg.alias = "v2"
    assert slot.check_once() == "swapped"
    assert slot.current().model.version == "v2" and slot.swaps == 1


def test_bad_version_refused_once_and_old_keeps_serving() -> None:
    """A version that fails verification is refused, not retried, and the old one serves;
    the next move is followed again."""
    reg = Registry()
    slot = _slot(reg)
    slot.load_initial()
    reg.alias = "v2"
    reg.fail["v2"] = IntegrityError("sha256 mismatch in onnx/model.onnx")
    assert slot.check_once() == "refused"
    assert slot.current().version == "v1"
    assert "sha256 mismatch" in slot.refused["v2"]
    assert slot.check_once() == "unchanged" and reg.loads.count("v2") == 1
    reg.alias = "v3"
    assert slot.check_once() == "swapped" and slot.current().version == "v3"


def test_store_outage_is_retried_not_refused() -> None:
    """A store that cannot be reached (alias or download) keeps the old model and is
    retried at the next check, not recorded as a refusal."""
    reg = Registry()
    slot = _slot(reg)
    slot.load_initial()
    reg.alias_error = StoreUnavailable("connection refused")
    assert slot.check_once() == "unreadable"
    reg.alias_error = None
    reg.alias = "v2"
    reg.fail["v2"] = StoreUnavailable("reset")
    assert slot.check_once() == "unreadable" and not slot.refused
    del reg.fail["v2"]
    assert slot.check_once() == "swapped"


def test_on_swap_runs_before_the_new_model_serves() -> None:
    """The swap hook (voiceprint re-enrolment) sees the new and old model before readers do."""
    reg = Registry()
    seen: list[tuple[str, str | None, str | None]] = []
    slot: ModelSlot[FakeModel]

    def hook(new: Loaded[FakeModel], old: Loaded[FakeModel] | None) -> None:
        current = slot.current().version if slot.ready else None
        seen.append((new.version, old.version if old else None, current))

    slot = _slot(reg, on_swap=hook)
    slot.load_initial()
    reg.alias = "v2"
    slot.check_once()
    assert seen == [("v1", None, None), ("v2", "v1", "v1")]


def test_readers_never_see_a_partial_swap() -> None:
    """Many readers during many swaps always get a whole Loaded whose model matches its
    version label."""
    reg = Registry()
    slot = _slot(reg)
    slot.load_initial()
    stop = threading.Event()
    bad: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            cur = slot.current()
            if cur.model.version != cur.version:
                bad.append(cur.version)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for i in range(2, 200):
        reg.alias = f"v{i}"
        slot.check_once()
    stop.set()
    for t in threads:
        t.join()
    assert not bad and slot.current().version == "v199"


def test_background_thread_loads_then_watches() -> None:
    """start() loads in the background and then follows the alias until stop()."""
    reg = Registry()
    slot = _slot(reg)
    slot.start()
    try:
        for _ in range(500):
            if slot.ready:
                break
            threading.Event().wait(0.01)
        assert slot.ready
        reg.alias = "v9"
        for _ in range(500):
            if slot.current().version == "v9":
                break
            threading.Event().wait(0.01)
        assert slot.current().version == "v9"
    finally:
        slot.stop()


def test_failing_swap_hook_refuses_the_version() -> None:
    """When the swap hook (re-enrolment) fails for a version, that version is refused and
    the old one keeps serving; the next version is followed again."""
    reg = Registry()

    def hook(new: Loaded[FakeModel], old: Loaded[FakeModel] | None) -> None:
        if new.version == "v2":
            raise IntegrityError("enrolment audio spk/enrolment/x/1.wav is corrupt")

    slot = _slot(reg, on_swap=hook)
    slot.load_initial()
    reg.alias = "v2"
    assert slot.check_once() == "refused" and slot.current().version == "v1"
    assert "corrupt" in slot.refused["v2"]
    reg.alias = "v3"
    assert slot.check_once() == "swapped" and slot.current().version == "v3"
