"""Deployers: make a registry model version serve, roll it back, report what runs.

``make_deployer(settings, registry)`` returns the one chosen by ``SPEECHLOOP_DEPLOYER``:
``embedded`` (default; the service follows the registry alias) or ``kubernetes``
(patches the serving Deployments; see :mod:`speechloop.deploy.kubernetes`). The flows
and the CLI (``speechloop deploy ...``, ``speechloop rollback``) use only the
:class:`Deployer` protocol.
"""

from typing import Any

from speechloop.deploy.embedded import EmbeddedDeployer
from speechloop.deploy.factory import DEPLOYERS, make_deployer
from speechloop.deploy.model import (
    CHANGE_CAUSE,
    VERSION_ENV,
    Deployer,
    DeploymentStatus,
    DeployOutcome,
    RevisionInfo,
    RolloutFailed,
)

__all__ = [
    "CHANGE_CAUSE",
    "DEPLOYERS",
    "VERSION_ENV",
    "DeployOutcome",
    "Deployer",
    "DeploymentStatus",
    "EmbeddedDeployer",
    "KubernetesDeployer",
    "RevisionInfo",
    "RolloutFailed",
    "make_deployer",
]


def __getattr__(name: str) -> Any:
    """``KubernetesDeployer`` on first use: the Kubernetes client loads only when asked."""
    if name == "KubernetesDeployer":
        from speechloop.deploy.kubernetes import KubernetesDeployer

        return KubernetesDeployer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
