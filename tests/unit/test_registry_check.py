"""``registry.check``: inspect reports what is wrong with a kind's versions, aliases and
history; repair fixes the derived and garbage parts, never an alias or a version."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
from pathlib import Path
from typing import Any

import pytest

from speechloop.errors import NotFound
from speechloop.registry import ModelRegistry
from speechloop.registry.check import Report, inspect, repair
from speechloop.storage.local import LocalStore
from tests.unit.test_registry import BUCKET, publish, tamper

HIST, PREV, PROD = "asr/history.jsonl", "asr/aliases/previous", "asr/aliases/production"


@pytest.fixture
def reg(tmp_path: Path) -> ModelRegistry:
    store = LocalStore(tmp_path / "store")
    store.ensure_bucket(BUCKET)
    return ModelRegistry(store, BUCKET)


def two_promoted(reg: ModelRegistry, tmp_path: Path) -> tuple[str, str]:
    v1, v2 = publish(reg, tmp_path, 1), publish(reg, tmp_path, 2)
    reg.promote("asr", v1, reason="first")
    reg.promote("asr", v2, reason="second")
    return v1, v2


def codes(report: Report) -> list[str]:
    return [f.code for f in report.findings]


def test_healthy_registry_has_no_findings(reg: ModelRegistry, tmp_path: Path) -> None:
    """Every version verified, aliases named, nothing to repair; an empty kind is fine."""
    v1, v2 = two_promoted(reg, tmp_path)
    report = inspect(reg, "asr")
    assert report.ok and report.verified == sorted([v1, v2])
    assert (report.production, report.previous) == (v2, v1)
    assert inspect(reg, "asr", version=v1).verified == [v1]
    assert inspect(reg, "spk").ok
    fixed = repair(reg, "asr")
    assert fixed.fixed == [] and fixed.left == []


def test_unknown_version_is_not_found(reg: ModelRegistry, tmp_path: Path) -> None:
    """--version of a version that does not exist is a NotFound naming it."""
    with pytest.raises(NotFound, match="asr/nope"):
        inspect(reg, "asr", version="nope")


def test_fresh_store_without_bucket(tmp_path: Path) -> None:
    """A store without the models bucket inspects and repairs as empty."""
    reg = ModelRegistry(LocalStore(tmp_path / "fresh"), BUCKET)
    assert inspect(reg, "asr").ok
    assert repair(reg, "asr").left == []


def test_mirror_out_of_sync_is_rewritten(reg: ModelRegistry, tmp_path: Path) -> None:
    """A stale, missing or unreadable previous mirror is reported and rewritten."""
    v1, _ = two_promoted(reg, tmp_path)
    for damage in (b'{"version": "stale"}', None, b"not json"):
        if damage is None:
            reg.store.delete(BUCKET, PREV)
        else:
            reg.store.put_bytes(BUCKET, PREV, damage)
        assert codes(inspect(reg, "asr")) == ["mirror_out_of_sync"]
        result = repair(reg, "asr")
        assert result.left == [] and result.fixed == [f"{PREV}: rewritten from production"]
        assert json.loads(reg.store.get_bytes(BUCKET, PREV))["version"] == v1
        assert inspect(reg, "asr").ok


def test_missing_history_line_is_appended(reg: ModelRegistry, tmp_path: Path) -> None:
    """History missing production's last change (a crash after the alias write) is
    reported and appended from the alias record, once."""
    v1, v2 = two_promoted(reg, tmp_path)
    lines = reg.store.get_bytes(BUCKET, HIST).decode().splitlines(keepends=True)
    reg.store.put_bytes(BUCKET, HIST, lines[0].encode())
    report = inspect(reg, "asr")
    assert codes(report) == ["history_missing_change"] and v2 in report.findings[0].problem
    assert len(repair(reg, "asr").fixed) == 1
    assert repair(reg, "asr").fixed == []
    stored = [json.loads(x) for x in reg.store.get_bytes(BUCKET, HIST).decode().splitlines()]
    assert [(h["version"], h["seq"]) for h in stored] == [(v1, 1), (v2, 2)]


def test_partial_version_pruned_only_when_asked(reg: ModelRegistry, tmp_path: Path) -> None:
    """Files without a manifest are reported; repair deletes them only with prune."""
    two_promoted(reg, tmp_path)
    reg.store.put_bytes(BUCKET, "asr/versions/half/files/model.pt", b"x")
    reg.store.put_bytes(BUCKET, "asr/versions/half/metrics.json", b"{}")
    assert codes(inspect(reg, "asr")) == ["partial_version"]
    kept = repair(reg, "asr")
    assert [f.code for f in kept.left] == ["partial_version"] and "--prune" in str(kept.left[0].fix)
    assert reg.store.exists(BUCKET, "asr/versions/half/files/model.pt")
    pruned = repair(reg, "asr", prune=True)
    assert pruned.left == [] and "deleted 2 object(s)" in pruned.fixed[0]
    assert not reg.store.exists(BUCKET, "asr/versions/half/files/model.pt")
    assert inspect(reg, "asr").ok


def test_corrupt_production_is_reported_not_fixed(reg: ModelRegistry, tmp_path: Path) -> None:
    """A tampered production version: corrupt version and an alias pointing at it, both
    left for a person; a previous whose version vanished is reported too."""
    v1, v2 = two_promoted(reg, tmp_path)
    tamper(reg, v2)
    reg.store.delete(BUCKET, f"asr/versions/{v1}/manifest.json")
    report = inspect(reg, "asr")
    assert sorted(codes(report)) == [
        "corrupt_version",
        "partial_version",
        "previous_bad_version",
        "production_bad_version",
    ]
    assert any("model.pt" in f.problem for f in report.findings)
    result = repair(reg, "asr")
    assert result.fixed == [] and len(result.left) == 4
    assert reg.get_alias("asr", "production").version == v2  # type: ignore[union-attr]


def test_unreadable_production_alias_is_reported(reg: ModelRegistry, tmp_path: Path) -> None:
    """Alias bytes that match no checksum record (torn by an old writer or tampered)
    are reported by verify, and repair says it cannot fix them."""
    two_promoted(reg, tmp_path)
    assert isinstance(reg.store, LocalStore)
    (reg.store.root / BUCKET / PROD).write_bytes(b'{"version": "x"')
    report = inspect(reg, "asr")
    assert codes(report) == ["alias_unreadable"] and "corrupt" in report.findings[0].problem
    result = repair(reg, "asr")
    assert PROD in [f.subject for f in result.left]


def _promote_and_die(root: str, version: str, nth: int) -> None:
    """Child process: promote ``version`` but die (no cleanup) before the nth rename onto
    the production alias (its bytes or its checksum record)."""
    calls = {"n": 0}
    real_replace = Path.replace

    def replace(self: Path, target: Any) -> Any:
        calls["n"] += "aliases/production" in str(target)
        if calls["n"] == nth:
            os._exit(9)
        return real_replace(self, target)

    Path.replace = replace  # type: ignore[method-assign]
    ModelRegistry(LocalStore(Path(root)), BUCKET).promote("asr", version, reason="killed")
    os._exit(0)


def test_promoter_killed_mid_commit_is_repaired(reg: ModelRegistry, tmp_path: Path) -> None:
    """A promoter killed after the alias bytes landed but before their checksum record
    settled (and before mirror and history): repair settles the store's interrupted
    write, rewrites the mirror and appends the history line; then verify is clean."""
    v1, v2 = publish(reg, tmp_path, 1), publish(reg, tmp_path, 2)
    reg.promote("asr", v1, reason="first")
    assert isinstance(reg.store, LocalStore)
    proc = mp.get_context("fork").Process(
        target=_promote_and_die, args=(str(reg.store.root), v2, 3)
    )
    proc.start()
    proc.join(timeout=60)
    assert proc.exitcode == 9
    reg = ModelRegistry(LocalStore(reg.store.root), BUCKET)
    result = repair(reg, "asr")
    assert result.left == [], result
    assert any(line.startswith(f"{PROD}: settled") for line in result.fixed), result.fixed
    assert f"{PREV}: rewritten from production" in result.fixed
    assert any(line.startswith(f"{HIST}: appended") for line in result.fixed)
    report = inspect(reg, "asr")
    assert report.ok and (report.production, report.previous) == (v2, v1)
    assert [(h["version"], h["seq"]) for h in reg.history("asr")] == [(v1, 1), (v2, 2)]
