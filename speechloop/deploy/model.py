"""What a deployer reports, and the one interface every deployer implements.

A *deployer* makes a registry version of a model kind serve. Two exist:

- :class:`~speechloop.deploy.embedded.EmbeddedDeployer` (laptop, CI): the service
  follows the registry ``production`` alias, so redeploying is moving the alias;
- :class:`~speechloop.deploy.kubernetes.KubernetesDeployer` (production): the
  Deployments ``speechloop-asr`` / ``speechloop-spk`` carry the version in their pod
  template env (``SPEECHLOOP_ASR_VERSION`` / ``SPEECHLOOP_SPK_VERSION``); redeploying
  patches it and waits for the rollout, and the alias is kept in step with what runs.

Order the loop uses: ``registry.promote(kind, version, decision=...)`` (the gate's
record), then ``deployer.redeploy(kind, version, reason=...)``. ``redeploy`` is
idempotent on the alias: it promotes only if the alias is not there yet. When a rollout
fails, the Kubernetes deployer undoes it, moves the alias back to the version still
serving (if the alias pointed at the failed one) and raises :class:`RolloutFailed`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

from speechloop.errors import SpeechloopError

#: The pod-template environment variable that pins each kind's model version.
VERSION_ENV = {"asr": "SPEECHLOOP_ASR_VERSION", "spk": "SPEECHLOOP_SPK_VERSION"}
#: The annotation that ``kubectl rollout history`` shows for each revision.
CHANGE_CAUSE = "kubernetes.io/change-cause"


class RolloutFailed(SpeechloopError):
    """A rollout did not complete (timeout, progress deadline); it was undone."""

    http_status = 503


@dataclass(frozen=True)
class RevisionInfo:
    """One revision of what served a kind: a ReplicaSet, or a registry history entry."""

    revision: int
    version: str | None
    change_cause: str | None = None
    name: str | None = None  # the ReplicaSet (Kubernetes), None for the registry
    replicas: int = 0
    current: bool = False


@dataclass(frozen=True)
class DeploymentStatus:
    """What one kind serves, what the registry says, and whether the two differ."""

    kind: str
    target: str  # "deployment/speechloop-asr" or "registry alias (embedded)"
    serving: str | None  # version pinned in the running template (embedded: the alias)
    alias: str | None  # the registry production alias
    revision: int | None = None
    rollout: str = "complete"  # "complete" | "progressing" | "failed" | "missing"
    ready: str = ""  # "2/2" ready replicas over desired (Kubernetes)
    change_cause: str | None = None
    history: tuple[RevisionInfo, ...] = ()

    @property
    def drift(self) -> bool:
        """True when the pods are pinned to a version other than the production alias.

        Unpinned pods (``serving`` None: empty version variable) load the alias when they
        start, so they show no drift.
        """
        return self.serving is not None and self.serving != self.alias

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict, with ``drift``."""
        out = asdict(self)
        out["drift"] = self.drift
        return out


@dataclass(frozen=True)
class DeployOutcome:
    """The result of a redeploy or rollback."""

    kind: str
    action: str  # "redeploy" | "rollback"
    version: str  # what serves now
    previous: str | None  # what served before
    target: str
    changed: bool = True  # False when it already served ``version``
    revision: int | None = None
    alias_moved: bool = False
    reason: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (for flow artifacts and ``--json`` output)."""
        return asdict(self)


@runtime_checkable
class Deployer(Protocol):
    """Makes registry versions serve; the flows and the CLI use only this."""

    def redeploy(self, kind: str, version: str, *, reason: str) -> DeployOutcome:
        """Serve ``version`` of ``kind``; raises RolloutFailed (after undoing) if it fails."""
        ...

    def rollback(self, kind: str, to: str | None = None, *, reason: str) -> DeployOutcome:
        """Serve the previous version (or ``to``) and move the production alias to match."""
        ...

    def status(self) -> list[DeploymentStatus]:
        """One entry per kind: what serves, the alias, revision history, drift."""
        ...
