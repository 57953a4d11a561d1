"""Deployers: make a registry model version serve, roll it back, report what runs.

``make_deployer(settings, registry)`` returns the one chosen by ``SPEECHLOOP_DEPLOYER``:
``embedded`` (default; the service follows the registry alias) or ``kubernetes``
(patches the serving Deployments; see :mod:`speechloop.deploy.kubernetes`). The flows
and the CLI (``speechloop deploy ...``, ``speechloop rollback``) use only the
:class:`Deployer` protocol.
"""

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
    "RevisionInfo",
    "RolloutFailed",
    "make_deployer",
]
