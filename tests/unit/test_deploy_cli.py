"""``speechloop deploy status|redeploy|rollback`` and ``speechloop rollback``.

Embedded: a LocalStore registry named by SPEECHLOOP_STORE. Kubernetes: the deployer
built from the environment (SPEECHLOOP_DEPLOYER=kubernetes, a kubeconfig file) talks
to the FAKE apps/v1 API server of tests/unit/deploy_fakeapi.py on loopback, since no
Kubernetes API server can run on the build machines.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from speechloop.cli import deploy as deploy_cli
from speechloop.cli.main import app
from speechloop.config import get_settings
from speechloop.registry import ModelRegistry
from speechloop.storage import open_store
from tests.unit.deploy_fakeapi import FakeCluster, kubectl_rollout_undo, make_deployment, serve

runner = CliRunner()
ENV = "SPEECHLOOP_ASR_VERSION"


@pytest.fixture
def reg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModelRegistry]:
    """asr v1, v2 published, v1 in production, in a store the CLI reads too."""
    monkeypatch.setenv("SPEECHLOOP_STORE", f"file://{tmp_path / 'store'}")
    monkeypatch.setenv("SPEECHLOOP_WORK_DIR", str(tmp_path / "work"))
    monkeypatch.delenv("SPEECHLOOP_DEPLOYER", raising=False)
    get_settings.cache_clear()
    registry = ModelRegistry(open_store(get_settings()), get_settings().models_bucket)
    for name in ("v1", "v2"):
        src = tmp_path / f"src-{name}"
        src.mkdir()
        (src / "model.pt").write_bytes(name.encode() * 50)
        registry.publish("asr", src, metrics={}, lineage={}, version=name)
    registry.promote("asr", "v1", reason="first")
    yield registry
    get_settings.cache_clear()


def production(reg: ModelRegistry) -> str | None:
    alias = reg.get_alias("asr", "production")
    return alias.version if alias else None


def test_both_rollback_commands_are_one() -> None:
    """`speechloop rollback` and `speechloop deploy rollback` run the same function."""
    top = {c.name: c.callback for c in app.registered_commands}
    sub = {c.name: c.callback for c in deploy_cli.app.registered_commands}
    assert top["rollback"] is sub["rollback"] is deploy_cli.rollback


def test_embedded_redeploy_status_rollback(reg: ModelRegistry) -> None:
    """Embedded: redeploy promotes, status shows the alias as what serves, rollback returns."""
    out = runner.invoke(app, ["deploy", "redeploy", "asr", "v2", "--reason", "try v2"])
    assert out.exit_code == 0, out.output
    assert "redeployed: v2" in out.output and production(reg) == "v2"
    out = runner.invoke(app, ["deploy", "status", "--json", "--check"])
    assert out.exit_code == 0, out.output
    asr = next(s for s in json.loads(out.output) if s["kind"] == "asr")
    assert (asr["serving"], asr["alias"], asr["drift"]) == ("v2", "v2", False)
    out = runner.invoke(app, ["rollback", "asr", "--reason", "v2 regressed"])
    assert out.exit_code == 0, out.output
    assert "rolled back -> v1 (previous: v2)" in out.output and production(reg) == "v1"
    out = runner.invoke(app, ["deploy", "rollback", "asr", "--to", "v9", "--reason", "x"])
    assert out.exit_code == 1 and "v9" in out.output and production(reg) == "v1"


def test_kubernetes_drift_then_align(
    reg: ModelRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kubernetes: a hand-made `kubectl rollout undo` shows as drift (exit 3 with --check);
    `speechloop rollback asr --to <what runs>` moves the alias to it."""
    cluster = FakeCluster()
    cluster.add_deployment(make_deployment("speechloop-asr", "speechloop-asr", {ENV: "v1"}))
    cluster.add_deployment(
        make_deployment("speechloop-spk", "speechloop-spk", {"SPEECHLOOP_SPK_VERSION": ""})
    )
    with serve(cluster) as url:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "fake", "cluster": {"server": url}}],
                    "users": [{"name": "me", "user": {}}],
                    "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "me"}}],
                    "current-context": "fake",
                }
            )
        )
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        monkeypatch.setenv("SPEECHLOOP_DEPLOYER", "kubernetes")
        monkeypatch.setenv("SPEECHLOOP_K8S_KUBECONFIG", str(kubeconfig))
        monkeypatch.setenv("SPEECHLOOP_K8S_NAMESPACE", "speechloop")
        monkeypatch.setenv("SPEECHLOOP_K8S_POLL_INTERVAL_S", "0.01")
        get_settings.cache_clear()

        out = runner.invoke(app, ["deploy", "redeploy", "asr", "v2", "--reason", "try v2"])
        assert out.exit_code == 0, out.output
        assert "deployment/speechloop-asr" in out.output
        assert cluster.serving("speechloop", "speechloop-asr", ENV) == "v2"

        kubectl_rollout_undo(url, "speechloop", "speechloop-asr")
        out = runner.invoke(app, ["deploy", "status", "--check"])
        assert out.exit_code == 3, out.output
        assert "DRIFT" in out.output and "speechloop rollback asr --to v1" in out.output
        assert "speechloop redeploy asr v2" in out.output.replace("deploy redeploy", "redeploy")

        out = runner.invoke(app, ["rollback", "asr", "--to", "v1", "--reason", "keep it"])
        assert out.exit_code == 0, out.output
        assert production(reg) == "v1"
        out = runner.invoke(app, ["deploy", "status", "--json", "--check"])
        assert out.exit_code == 0, out.output
        spk = next(s for s in json.loads(out.output) if s["kind"] == "spk")
        assert spk["serving"] is None and spk["drift"] is False
