"""The embedded deployer (alias only) and the deployer factory, on a LocalStore registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from speechloop.config import Settings
from speechloop.deploy import Deployer, EmbeddedDeployer, make_deployer
from speechloop.errors import NotFound
from speechloop.registry import ModelRegistry
from speechloop.storage.local import LocalStore

BUCKET = "speech-models"


@pytest.fixture
def reg(tmp_path: Path) -> ModelRegistry:
    store = LocalStore(tmp_path / "store")
    store.ensure_bucket(BUCKET)
    return ModelRegistry(store, BUCKET)


def publish(reg: ModelRegistry, tmp_path: Path, kind: str, name: str) -> str:
    src = tmp_path / f"src-{kind}-{name}"
    src.mkdir()
    (src / "model.pt").write_bytes(name.encode() * 64)
    return reg.publish(kind, src, metrics={}, lineage={}, version=name).version


def test_redeploy_moves_alias_once(reg: ModelRegistry, tmp_path: Path) -> None:
    """redeploy promotes a version not yet in production; a second call changes nothing."""
    publish(reg, tmp_path, "asr", "v1")
    deployer = EmbeddedDeployer(reg)
    first = deployer.redeploy("asr", "v1", reason="first model")
    assert (first.version, first.previous, first.changed, first.alias_moved) == (
        "v1",
        None,
        True,
        True,
    )
    again = deployer.redeploy("asr", "v1", reason="loop already promoted")
    assert not again.changed and not again.alias_moved
    assert [r["action"] for r in reg.history("asr")] == ["promote"]


def test_rollback_and_status(reg: ModelRegistry, tmp_path: Path) -> None:
    """rollback moves the alias back to previous; status reports it with no drift."""
    for name in ("v1", "v2"):
        publish(reg, tmp_path, "asr", name)
    deployer = EmbeddedDeployer(reg)
    deployer.redeploy("asr", "v1", reason="r1")
    deployer.redeploy("asr", "v2", reason="r2")
    outcome = deployer.rollback("asr", reason="v2 misbehaves")
    assert (outcome.version, outcome.previous) == ("v1", "v2")
    by_kind = {s.kind: s for s in deployer.status()}
    asr = by_kind["asr"]
    assert (asr.serving, asr.alias, asr.drift) == ("v1", "v1", False)
    assert [r.version for r in asr.history] == ["v1", "v2", "v1"]
    assert asr.history[-1].current and asr.history[-1].change_cause == "rollback: v2 misbehaves"
    assert by_kind["spk"].serving is None and by_kind["spk"].rollout == "missing"


def test_rollback_without_previous_is_not_found(reg: ModelRegistry, tmp_path: Path) -> None:
    """Rolling back with nothing to go back to names the problem and changes nothing."""
    publish(reg, tmp_path, "spk", "s1")
    deployer = EmbeddedDeployer(reg)
    deployer.redeploy("spk", "s1", reason="first")
    with pytest.raises(NotFound, match="no previous version"):
        deployer.rollback("spk", reason="oops")
    assert reg.get_alias("spk", "production").version == "s1"  # type: ignore[union-attr]


def test_make_deployer_defaults_to_embedded(reg: ModelRegistry) -> None:
    """SPEECHLOOP_DEPLOYER unset gives the embedded deployer, which meets the protocol."""
    deployer = make_deployer(Settings(), reg)
    assert isinstance(deployer, EmbeddedDeployer)
    assert isinstance(deployer, Deployer)
