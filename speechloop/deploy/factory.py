"""Pick the deployer named by ``SPEECHLOOP_DEPLOYER`` (``embedded`` or ``kubernetes``)."""

from __future__ import annotations

from speechloop.config import Settings
from speechloop.deploy.embedded import EmbeddedDeployer
from speechloop.deploy.model import Deployer
from speechloop.errors import InvalidInput
from speechloop.registry import ModelRegistry

DEPLOYERS = ("embedded", "kubernetes")


def make_deployer(settings: Settings, registry: ModelRegistry) -> Deployer:
    """The deployer of this installation; the Kubernetes client is imported only when chosen."""
    name = settings.deployer
    if name == "embedded":
        return EmbeddedDeployer(registry)
    if name == "kubernetes":
        from speechloop.deploy.kubernetes import KubernetesDeployer

        return KubernetesDeployer.from_env(registry)
    raise InvalidInput(f"unknown deployer {name!r}: set SPEECHLOOP_DEPLOYER to one of {DEPLOYERS}")
