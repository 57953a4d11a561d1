"""Shared test configuration: markers by directory, paths to shared assets."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REALAUDIO = ROOT.parent / "shared" / "realaudio"

_MARK_BY_DIR = {
    "unit": pytest.mark.unit,
    "integration": pytest.mark.integration,
    "e2e": pytest.mark.e2e,
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test by the directory it lives in (tests/unit -> ``unit``, ...)."""
    for item in items:
        for part in Path(str(item.fspath)).parts:
            if part in _MARK_BY_DIR:
                item.add_marker(_MARK_BY_DIR[part])


@pytest.fixture(scope="session")
def realaudio() -> Path:
    """The folder of real recordings; tests that need it skip with the reason if absent."""
    if not REALAUDIO.is_dir():
        pytest.skip(f"real recordings not found at {REALAUDIO} (../shared/realaudio)")
    return REALAUDIO
