"""The Kubernetes deployer, driven through the real ``kubernetes`` client.

No Kubernetes API server can run on the build machines, so these tests talk HTTP to a
FAKE API server on loopback (tests/unit/deploy_fakeapi.py): real requests, real JSON
patches, and a small deployment "controller" that creates ReplicaSets, numbers
revisions, copies the change-cause, and progresses or fails rollouts step by step.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from speechloop.deploy import CHANGE_CAUSE, RolloutFailed
from speechloop.deploy.kubernetes import ClusterUnavailable, KubernetesDeployer
from speechloop.errors import Conflict, NotFound
from speechloop.registry import ModelRegistry
from speechloop.storage.local import LocalStore
from tests.unit.deploy_fakeapi import (
    FakeCluster,
    kubectl_rollout_restart,
    kubectl_rollout_undo,
    make_deployment,
    serve,
)

NS = "speechloop"
ASR_ENV = "SPEECHLOOP_ASR_VERSION"


@pytest.fixture
def reg(tmp_path: Path) -> ModelRegistry:
    """A registry with asr v1..v3 and spk s1; production asr=v1, spk=s1."""
    store = LocalStore(tmp_path / "store")
    registry = ModelRegistry(store, "speech-models")
    for kind, name in [("asr", "v1"), ("asr", "v2"), ("asr", "v3"), ("spk", "s1")]:
        src = tmp_path / f"src-{kind}-{name}"
        src.mkdir()
        (src / "model.pt").write_bytes(name.encode() * 100)
        registry.publish(kind, src, metrics={}, lineage={}, version=name)
    registry.promote("asr", "v1", reason="first")
    registry.promote("spk", "s1", reason="first")
    return registry


@pytest.fixture
def cluster() -> FakeCluster:
    fake = FakeCluster(failing_versions={"v3"})
    fake.add_deployment(make_deployment("speechloop-asr", "speechloop-asr", {ASR_ENV: "v1"}))
    fake.add_deployment(
        make_deployment("speechloop-spk", "speechloop-spk", {"SPEECHLOOP_SPK_VERSION": "s1"})
    )
    return fake


@pytest.fixture
def base(cluster: FakeCluster) -> Iterator[str]:
    with serve(cluster) as url:
        yield url


def deployer_for(reg: ModelRegistry, url: str, **kwargs: object) -> KubernetesDeployer:
    configuration = client.Configuration()
    configuration.host = url
    apps = client.AppsV1Api(client.ApiClient(configuration))
    options: dict = {"timeout_s": 60.0, "poll_s": 0.0, "sleep": lambda s: None, **kwargs}
    return KubernetesDeployer(
        reg,
        apps,
        namespace=NS,
        deployments={"asr": "speechloop-asr", "spk": "speechloop-spk"},
        **options,
    )


def alias(reg: ModelRegistry, kind: str = "asr") -> str:
    info = reg.get_alias(kind, "production")
    assert info is not None
    return info.version


def test_redeploy_patches_env_and_change_cause(
    reg: ModelRegistry, cluster: FakeCluster, base: str
) -> None:
    """redeploy sets the version env and change-cause, waits for the rollout, moves the alias."""
    deployer = deployer_for(reg, base)
    outcome = deployer.redeploy("asr", "v2", reason="gate passed")
    assert (outcome.version, outcome.previous, outcome.changed) == ("v2", "v1", True)
    assert outcome.revision == 2 and outcome.alias_moved
    assert cluster.serving(NS, "speechloop-asr", ASR_ENV) == "v2"
    dep = cluster.deployments[(NS, "speechloop-asr")]
    assert dep["metadata"]["annotations"][CHANGE_CAUSE] == (
        "speechloop redeploy asr v2: gate passed"
    )
    patches = [r for r in cluster.requests if r[0] == "PATCH"]
    assert patches == [
        (
            "PATCH",
            f"/apis/apps/v1/namespaces/{NS}/deployments/speechloop-asr",
            "application/json-patch+json",
        )
    ]
    reads_after_patch = cluster.requests[cluster.requests.index(patches[0]) :]
    assert sum(1 for r in reads_after_patch if r[0] == "GET") >= 2  # it waited
    assert alias(reg) == "v2"
    status = {s.kind: s for s in deployer.status()}["asr"]
    assert (status.serving, status.alias, status.drift, status.rollout) == (
        "v2",
        "v2",
        False,
        "complete",
    )
    assert [(r.revision, r.version, r.current) for r in status.history] == [
        (1, "v1", False),
        (2, "v2", True),
    ]
    assert status.history[-1].change_cause == "speechloop redeploy asr v2: gate passed"


def test_redeploy_of_what_serves_changes_nothing(
    reg: ModelRegistry, cluster: FakeCluster, base: str
) -> None:
    """Redeploying the version already rolled out sends no patch and keeps the alias."""
    outcome = deployer_for(reg, base).redeploy("asr", "v1", reason="again")
    assert not outcome.changed and not outcome.alias_moved
    assert not [r for r in cluster.requests if r[0] == "PATCH"]


def test_failed_rollout_is_undone_and_alias_restored(
    reg: ModelRegistry, cluster: FakeCluster, base: str
) -> None:
    """A rollout that exceeds its progress deadline is undone; the alias goes back; it raises."""
    deployer = deployer_for(reg, base)
    deployer.redeploy("asr", "v2", reason="good one")
    reg.promote("asr", "v3", reason="gate passed")  # what the loop does before redeploying
    with pytest.raises(RolloutFailed, match=r"rollout of asr/v3 .* progress deadline"):
        deployer.redeploy("asr", "v3", reason="gate passed")
    assert cluster.serving(NS, "speechloop-asr", ASR_ENV) == "v2"
    assert alias(reg) == "v2"
    assert reg.history("asr")[-1]["action"] == "rollback"
    status = {s.kind: s for s in deployer.status()}["asr"]
    assert status.rollout == "complete" and not status.drift
    assert [r.version for r in status.history] == ["v1", "v3", "v2"]  # v2's RS reused


def test_rollout_timeout_is_a_failure(reg: ModelRegistry, cluster: FakeCluster, base: str) -> None:
    """A rollout still progressing when the timeout passes is undone like a failed one."""
    cluster.deadline_steps = 10**6  # the fake never reports the deadline itself
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += 5.0

    deployer = deployer_for(reg, base, timeout_s=30.0, sleep=sleep, clock=lambda: now[0])
    with pytest.raises(RolloutFailed, match="timed out after 30 s"):
        deployer.redeploy("asr", "v3", reason="try")
    assert cluster.serving(NS, "speechloop-asr", ASR_ENV) == "v1"
    assert alias(reg) == "v1"


def test_rollback_to_previous_revision_moves_alias(
    reg: ModelRegistry, cluster: FakeCluster, base: str
) -> None:
    """rollback copies the previous ReplicaSet's template back and moves the alias to it."""
    deployer = deployer_for(reg, base)
    deployer.redeploy("asr", "v2", reason="r2")
    outcome = deployer.rollback("asr", reason="v2 misbehaves")
    assert (outcome.version, outcome.previous, outcome.alias_moved) == ("v1", "v2", True)
    assert cluster.serving(NS, "speechloop-asr", ASR_ENV) == "v1"
    dep = cluster.deployments[(NS, "speechloop-asr")]
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert "pod-template-hash" not in labels
    assert dep["metadata"]["annotations"].get(CHANGE_CAUSE) is None  # v1's RS had none
    assert alias(reg) == "v1"
    assert reg.history("asr")[-1]["action"] == "rollback"
    status = {s.kind: s for s in deployer.status()}["asr"]
    assert [(r.revision, r.version) for r in status.history] == [(2, "v2"), (3, "v1")]


def test_rollback_skips_restarts_of_the_same_version(
    reg: ModelRegistry, cluster: FakeCluster, base: str
) -> None:
    """After `kubectl rollout restart` (a revision with the same model), rollback still
    goes back to the previous model version, not to the pre-restart copy of this one."""
    deployer = deployer_for(reg, base)
    deployer.redeploy("asr", "v2", reason="r2")
    kubectl_rollout_restart(base, NS, "speechloop-asr", "2026-12-01T05:00:00Z")
    for _ in range(3):
        cluster.get_deployment((NS, "speechloop-asr"))
    history = {s.kind: s for s in deployer.status()}["asr"].history
    assert [(r.revision, r.version) for r in history] == [(1, "v1"), (2, "v2"), (3, "v2")]
    outcome = deployer.rollback("asr", reason="v2 regressed")
    assert (outcome.version, outcome.previous, outcome.revision) == ("v1", "v2", 4)
    assert cluster.serving(NS, "speechloop-asr", ASR_ENV) == "v1" and alias(reg) == "v1"
    with pytest.raises(NotFound, match="no earlier revision serving another spk version"):
        deployer_for(reg, base).rollback("spk", reason="nothing before s1")


def test_rollback_to_named_version(reg: ModelRegistry, cluster: FakeCluster, base: str) -> None:
    """rollback --to a version that served reuses its ReplicaSet; one it never served patches."""
    deployer = deployer_for(reg, base)
    deployer.redeploy("asr", "v2", reason="r2")
    assert deployer.rollback("asr", "v1", reason="back").version == "v1"
    with pytest.raises(Conflict, match="already serves asr/v1"):
        deployer.rollback("asr", "v1", reason="again")
    assert reg.history("asr")[-1]["reason"] == "back"
    with pytest.raises(NotFound):
        deployer.rollback("asr", "v9", reason="no such version")
    assert cluster.serving(NS, "speechloop-asr", ASR_ENV) == "v1"


def test_drift_after_hand_made_rollout_undo(
    reg: ModelRegistry, cluster: FakeCluster, base: str
) -> None:
    """After someone runs `kubectl rollout undo`, status reports what runs and the drift."""
    deployer = deployer_for(reg, base)
    deployer.redeploy("asr", "v2", reason="r2")
    kubectl_rollout_undo(base, NS, "speechloop-asr")
    for _ in range(3):  # let the fake controller finish the rollout
        cluster.get_deployment((NS, "speechloop-asr"))
    status = {s.kind: s for s in deployer.status()}
    asr, spk = status["asr"], status["spk"]
    assert (asr.serving, asr.alias, asr.drift) == ("v1", "v2", True)
    assert asr.to_dict()["drift"] is True and not spk.drift
    # way out 1: move the alias to what runs (the cluster is not touched)
    patches = len([r for r in cluster.requests if r[0] == "PATCH"])
    outcome = deployer.rollback("asr", "v1", reason="keep the hand undo")
    assert (outcome.version, outcome.changed, outcome.alias_moved) == ("v1", False, True)
    assert alias(reg) == "v1"
    assert len([r for r in cluster.requests if r[0] == "PATCH"]) == patches
    with pytest.raises(Conflict, match="nothing to roll back"):
        deployer.rollback("asr", "v1", reason="again")
    # way out 2: bring the cluster to a version (and the alias with it)
    deployer.redeploy("asr", "v2", reason="v2 after all")
    assert cluster.serving(NS, "speechloop-asr", ASR_ENV) == "v2"
    assert not {s.kind: s for s in deployer.status()}["asr"].drift


def test_unpinned_template_gets_pinned(reg: ModelRegistry, base: str) -> None:
    """A template with an empty version variable (follows the alias) shows no drift and
    is pinned by the first redeploy."""
    fake = FakeCluster()
    fake.add_deployment(make_deployment("speechloop-asr", "speechloop-asr", {ASR_ENV: ""}))
    with serve(fake) as url:
        deployer = deployer_for(reg, url)
        before = {s.kind: s for s in deployer.status()}["asr"]
        assert before.serving is None and not before.drift
        outcome = deployer.redeploy("asr", "v2", reason="pin it")
        assert outcome.previous is None
        assert fake.serving(NS, "speechloop-asr", ASR_ENV) == "v2"
        assert [
            e["name"]
            for e in fake.deployments[(NS, "speechloop-asr")]["spec"]["template"]["spec"][
                "containers"
            ][0]["env"]
        ] == [ASR_ENV]


def test_unknown_version_and_missing_deployment(
    reg: ModelRegistry, cluster: FakeCluster, base: str
) -> None:
    """A version the registry lacks is refused before any patch; a missing Deployment is named."""
    deployer = deployer_for(reg, base)
    with pytest.raises(NotFound, match="v9"):
        deployer.redeploy("asr", "v9", reason="typo")
    assert not [r for r in cluster.requests if r[0] == "PATCH"]
    del cluster.deployments[(NS, "speechloop-spk")]
    with pytest.raises(NotFound, match="deployment/speechloop-spk"):
        deployer.redeploy("spk", "s1", reason="x")
    assert {s.kind: s for s in deployer.status()}["spk"].rollout == "missing"


def test_unreachable_api_server(reg: ModelRegistry) -> None:
    """No API server at the address: a ClusterUnavailable error naming the Deployment."""
    with serve(FakeCluster()) as url:
        pass  # closed again: nothing listens there now
    deployer = deployer_for(reg, url)
    deployer.apps.api_client.configuration.retries = 0
    with pytest.raises(ClusterUnavailable, match="deployment/speechloop-asr"):
        deployer.status()
