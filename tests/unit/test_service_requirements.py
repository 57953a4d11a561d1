"""The serving requirement files pin what requirements.lock pins (no drift)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().lower().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[name.strip().replace("_", "-")] = version.strip()
    return pins


@pytest.mark.parametrize("name", ["requirements.txt", "requirements-gpu.txt"])
def test_serving_pins_match_the_lock(name: str) -> None:
    """Every pin of service/<name> is the version requirements.lock resolves."""
    lock = _pins(ROOT / "requirements.lock")
    pins = _pins(ROOT / "service" / name)
    assert pins, name
    assert {k: v for k, v in pins.items() if lock.get(k) != v} == {}


def test_cpu_set_has_no_torch() -> None:
    """The CPU image's set carries neither torch nor funasr; the GPU one adds them."""
    cpu = _pins(ROOT / "service" / "requirements.txt")
    gpu = _pins(ROOT / "service" / "requirements-gpu.txt")
    assert not {"torch", "torchaudio", "funasr"} & set(cpu)
    assert set(gpu) - set(cpu) == {"torch", "torchaudio", "funasr"}
