"""The Kubernetes deployer: model versions live in the serving Deployments' pod templates.

Deployments ``speechloop-asr`` and ``speechloop-spk`` (names configurable) carry
``SPEECHLOOP_ASR_VERSION`` / ``SPEECHLOOP_SPK_VERSION`` in their pod template env, with
a ``kubernetes.io/change-cause`` annotation. So:

- :meth:`KubernetesDeployer.redeploy` patches the env and the change-cause (one JSON
  patch guarded by the Deployment's ``resourceVersion``), waits for the rollout as
  ``kubectl rollout status`` does, and on failure (progress deadline or our timeout)
  undoes it, puts the registry alias back on what still serves, and raises
  :class:`~speechloop.deploy.model.RolloutFailed`;
- :meth:`~KubernetesDeployer.rollback` is ``kubectl rollout undo`` (an earlier
  ReplicaSet's template minus ``pod-template-hash``: the newest one serving another model
  version, so a ``kubectl rollout restart`` in between does not count), then moves the
  registry alias to the version that now runs;
- :meth:`~KubernetesDeployer.status` reports what each Deployment runs, its revision
  history, and drift from the registry alias (e.g. after a hand-made
  ``kubectl rollout undo``).

The client is the official ``kubernetes`` package, called with ``_preload_content=False``
so that objects stay the API server's JSON. RBAC needed (k8s/base/rbac.yaml): get, list,
patch, watch on deployments and replicasets in the namespace. Settings come from
``SPEECHLOOP_K8S_*`` (:class:`KubernetesSettings`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from speechloop.deploy import rollout
from speechloop.deploy.model import (
    VERSION_ENV,
    DeploymentStatus,
    DeployOutcome,
    RolloutFailed,
)
from speechloop.errors import Conflict, InvalidInput, NotFound, SpeechloopError
from speechloop.registry import KINDS, ModelRegistry
from speechloop.registry.model import check_kind, check_version

IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
Obj = dict[str, Any]


class ClusterUnavailable(SpeechloopError):
    """The Kubernetes API cannot be reached, or refused us (credentials, RBAC)."""

    http_status = 503


class KubernetesSettings(BaseSettings):
    """Where the serving Deployments are and how long a rollout may take."""

    model_config = SettingsConfigDict(env_prefix="SPEECHLOOP_K8S_", env_file=".env", extra="ignore")

    namespace: str | None = Field(
        default=None, description="default: the pod's own namespace in-cluster, else speechloop"
    )
    asr_deployment: str = "speechloop-asr"
    spk_deployment: str = "speechloop-spk"
    rollout_timeout_s: float = Field(default=900.0, gt=0, description="whole rollout wait")
    poll_interval_s: float = Field(default=2.0, gt=0)
    kubeconfig: Path | None = Field(default=None, description="outside the cluster only")
    context: str | None = None


def api_client(settings: KubernetesSettings) -> client.ApiClient:
    """An ApiClient from the in-cluster service account, else from the kubeconfig."""
    configuration = client.Configuration()
    try:
        try:
            config.load_incluster_config(client_configuration=configuration)
        except ConfigException:
            config.load_kube_config(
                config_file=str(settings.kubeconfig) if settings.kubeconfig else None,
                context=settings.context,
                client_configuration=configuration,
            )
    except (ConfigException, OSError) as exc:
        raise ClusterUnavailable(
            f"no Kubernetes credentials (in-cluster or kubeconfig): {exc}"
        ) from None
    return client.ApiClient(configuration)


def default_namespace(settings: KubernetesSettings) -> str:
    """The configured namespace, the service account's, or ``speechloop``."""
    if settings.namespace:
        return settings.namespace
    if IN_CLUSTER_NAMESPACE.is_file():
        return IN_CLUSTER_NAMESPACE.read_text().strip()
    return "speechloop"


class KubernetesDeployer:
    """Deployer over the apps/v1 API: patch, wait, undo, and keep the alias in step."""

    def __init__(
        self,
        registry: ModelRegistry,
        apps: client.AppsV1Api,
        *,
        namespace: str,
        deployments: dict[str, str],
        timeout_s: float = 900.0,
        poll_s: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.apps = apps
        self.namespace = namespace
        self.deployments = {check_kind(k): v for k, v in deployments.items()}
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        self._sleep = sleep
        self._clock = clock

    @classmethod
    def from_env(cls, registry: ModelRegistry) -> KubernetesDeployer:
        """Built from ``SPEECHLOOP_K8S_*`` and the in-cluster or kubeconfig credentials."""
        settings = KubernetesSettings()
        return cls(
            registry,
            client.AppsV1Api(api_client(settings)),
            namespace=default_namespace(settings),
            deployments={"asr": settings.asr_deployment, "spk": settings.spk_deployment},
            timeout_s=settings.rollout_timeout_s,
            poll_s=settings.poll_interval_s,
        )

    def __repr__(self) -> str:
        return f"KubernetesDeployer(namespace={self.namespace!r}, {self.deployments})"

    # -- the Deployer protocol ---------------------------------------------------------

    def redeploy(self, kind: str, version: str, *, reason: str) -> DeployOutcome:
        """Patch ``kind``'s Deployment to serve ``version``, wait; undo and raise on failure."""
        env, target = self._target(kind)
        check_version(version)
        _check_reason(reason)
        self.registry.show(kind, version)  # NotFound before anything changes
        dep = self._read(kind)
        before = rollout.template_version(dep, env)
        if before == version and rollout.rollout_state(dep)[0] == "complete":
            moved = self._align_alias(kind, version, reason, action="redeploy")
            return DeployOutcome(
                kind,
                "redeploy",
                version,
                before,
                target,
                changed=False,
                revision=rollout.revision_of(dep),
                alias_moved=moved,
                reason=reason,
            )
        back_to = rollout.current_replicaset(dep, self._replicasets(dep))
        cause = f"speechloop redeploy {kind} {version}: {reason}"
        ops = rollout.version_patch(dep, env, version, cause)
        return self._roll(kind, "redeploy", version, before, back_to, ops, reason)

    def rollback(self, kind: str, to: str | None = None, *, reason: str) -> DeployOutcome:
        """``kubectl rollout undo`` to the newest earlier revision serving another version
        (or the newest revision serving ``to``).

        With ``to`` that no revision of the Deployment served, the template is patched
        to it as a redeploy would. Then the registry alias moves to what now runs.
        """
        env, _ = self._target(kind)
        _check_reason(reason)
        dep = self._read(kind)
        sets = self._replicasets(dep)
        before = rollout.template_version(dep, env)
        if to is not None and check_version(to) == before:
            return self._align_only(kind, to, reason)
        dest = self._rollback_target(kind, dep, sets, to)
        version = rollout.template_version(dest, env) if dest is not None else to
        if version is None:
            raise InvalidInput(
                f"revision {rollout.revision_of(dest or {})} of "
                f"deployment/{self.deployments[kind]} sets no {env}"
            )
        self.registry.show(kind, version)  # refuse a version the registry does not hold
        back_to = rollout.current_replicaset(dep, sets)
        if dest is not None:
            ops = rollout.undo_patch(dep, dest)
        else:
            cause = f"speechloop rollback {kind} {version}: {reason}"
            ops = rollout.version_patch(dep, env, version, cause)
        return self._roll(kind, "rollback", version, before, back_to, ops, reason)

    def _roll(
        self,
        kind: str,
        action: str,
        version: str,
        before: str | None,
        back_to: Obj | None,
        ops: list[Obj],
        reason: str,
    ) -> DeployOutcome:
        """Patch, wait for the rollout, undo it if it fails, else align the alias."""
        self._patch(kind, ops)
        state, message, dep = self._wait(kind)
        if state != "complete":
            self._fail(kind, version, before, back_to, message)
        moved = self._align_alias(kind, version, reason, action=action)
        return DeployOutcome(
            kind,
            action,
            version,
            before,
            f"deployment/{self.deployments[kind]}",
            revision=rollout.revision_of(dep),
            alias_moved=moved,
            reason=reason,
        )

    def _align_only(self, kind: str, version: str, reason: str) -> DeployOutcome:
        """``to`` already runs (say after a hand-made undo): move only the alias to it.

        A rollout still in progress towards it is waited for first.
        """
        name = self.deployments[kind]
        state, message, dep = self._wait(kind)
        if state != "complete":
            raise Conflict(
                f"deployment/{name} does not finish rolling out {kind}/{version} "
                f"({message}): fix the Deployment, or roll back to another version"
            )
        self.registry.show(kind, version)
        if not self._align_alias(kind, version, reason, action="rollback"):
            raise Conflict(
                f"deployment/{name} already serves {kind}/{version}, "
                "which is the production alias: nothing to roll back"
            )
        return DeployOutcome(
            kind,
            "rollback",
            version,
            version,
            f"deployment/{name}",
            changed=False,
            revision=rollout.revision_of(dep),
            alias_moved=True,
            reason=reason,
        )

    def status(self) -> list[DeploymentStatus]:
        """Per kind: the version in the template, the alias, rollout state, history."""
        return [self._status(kind) for kind in KINDS if kind in self.deployments]

    # -- steps ---------------------------------------------------------------------------

    def _target(self, kind: str) -> tuple[str, str]:
        check_kind(kind)
        if kind not in self.deployments:
            raise InvalidInput(f"no Deployment configured for model kind {kind!r}")
        return VERSION_ENV[kind], f"deployment/{self.deployments[kind]}"

    def _rollback_target(self, kind: str, dep: Obj, sets: list[Obj], to: str | None) -> Obj | None:
        env = VERSION_ENV[kind]
        if to is None:
            previous = rollout.previous_model_replicaset(dep, sets, env)
            if previous is None:
                raise NotFound(
                    f"deployment/{self.deployments[kind]} has no earlier revision serving "
                    f"another {kind} version to roll back to"
                )
            return previous
        serving_to = [
            rs for rs in rollout.owned(dep, sets) if rollout.template_version(rs, env) == to
        ]
        return serving_to[-1] if serving_to else None

    def _status(self, kind: str) -> DeploymentStatus:
        env, target = self._target(kind)
        alias = self.registry.get_alias(kind, "production")
        try:
            dep = self._read(kind)
        except NotFound:
            return DeploymentStatus(
                kind, target, None, alias.version if alias else None, rollout="missing"
            )
        state, _ = rollout.rollout_state(dep)
        ready = int((dep.get("status") or {}).get("readyReplicas", 0))
        want = int(dep.get("spec", {}).get("replicas", 1))
        return DeploymentStatus(
            kind=kind,
            target=target,
            serving=rollout.template_version(dep, env),
            alias=alias.version if alias else None,
            revision=rollout.revision_of(dep),
            rollout=state,
            ready=f"{ready}/{want}",
            change_cause=rollout.change_cause(dep),
            history=tuple(rollout.history(dep, self._replicasets(dep), env)),
        )

    def _wait(self, kind: str) -> tuple[str, str, Obj]:
        """Poll until the rollout completes, fails, or ``timeout_s`` passes."""
        deadline = self._clock() + self.timeout_s
        while True:
            dep = self._read(kind)
            state, message = rollout.rollout_state(dep)
            if state != "progressing":
                return state, message, dep
            if self._clock() >= deadline:
                return "failed", f"timed out after {self.timeout_s:g} s: {message}", dep
            self._sleep(self.poll_s)

    def _fail(
        self, kind: str, version: str, before: str | None, back_to: Obj | None, why: str
    ) -> None:
        """Undo a failed rollout, put the alias back on what serves, raise RolloutFailed."""
        name = self.deployments[kind]
        notes = [f"rollout of {kind}/{version} on deployment/{name} failed: {why}"]
        if back_to is None:
            notes.append("no earlier revision to undo to: left as it is")
        else:
            self._patch(kind, rollout.undo_patch(self._read(kind), back_to))
            state, message, _ = self._wait(kind)
            notes.append(
                f"undone to revision {rollout.revision_of(back_to)} ({before}): {message}"
                if state == "complete"
                else f"undo did not complete either: {message}"
            )
        alias = self.registry.get_alias(kind, "production")
        if alias is not None and alias.version == version:
            if before is not None and self._held(kind, before):
                self.registry.rollback(kind, to_version=before, reason=notes[0])
                notes.append(f"registry production alias moved back to {before}")
            else:
                notes.append(
                    f"registry production alias left on {version}: what serves "
                    f"({before or 'unpinned'}) is not a registry version"
                )
        raise RolloutFailed("; ".join(notes))

    def _held(self, kind: str, version: str) -> bool:
        """True when the registry has ``version`` of ``kind``."""
        try:
            self.registry.show(kind, version)
        except (NotFound, InvalidInput):
            return False
        return True

    def _align_alias(self, kind: str, version: str, reason: str, *, action: str) -> bool:
        """Point the production alias at ``version`` if it is elsewhere; True if moved."""
        alias = self.registry.get_alias(kind, "production")
        if alias is not None and alias.version == version:
            return False
        if alias is None or action == "redeploy":
            self.registry.promote(kind, version, reason=reason, decision={action: True})
        else:
            self.registry.rollback(kind, to_version=version, reason=reason)
        return True

    # -- API calls -----------------------------------------------------------------------

    def _read(self, kind: str) -> Obj:
        name = self.deployments[kind]
        return self._call(
            f"deployment/{name}",
            lambda: self.apps.read_namespaced_deployment(
                name, self.namespace, _preload_content=False
            ),
        )

    def _replicasets(self, dep: Obj) -> list[Obj]:
        selector = rollout.selector_of(dep)
        found = self._call(
            "replicasets",
            lambda: self.apps.list_namespaced_replica_set(
                self.namespace, label_selector=selector, _preload_content=False
            ),
        )
        return list(found.get("items") or [])

    def _patch(self, kind: str, ops: list[Obj]) -> Obj:
        name = self.deployments[kind]
        return self._call(
            f"deployment/{name}",
            lambda: self.apps.patch_namespaced_deployment(
                name, self.namespace, ops, _preload_content=False
            ),
        )

    def _call(self, what: str, request: Callable[[], Any]) -> Obj:
        """Run one API request; map its failures onto the speechloop error family."""
        where = f"{what} in namespace {self.namespace}"
        try:
            response = request()
        except ApiException as exc:
            detail = _api_message(exc)
            if exc.status == 404:
                raise NotFound(f"{where} not found: {detail}") from None
            if exc.status in (409, 422):
                raise Conflict(
                    f"{where} changed meanwhile or refused the patch: {detail}"
                ) from None
            if exc.status in (401, 403):
                raise ClusterUnavailable(
                    f"{where}: access refused ({exc.status}), check the "
                    f"service account's Role: {detail}"
                ) from None
            raise ClusterUnavailable(
                f"{where}: API server answered {exc.status}: {detail}"
            ) from None
        except urllib3.exceptions.HTTPError as exc:
            raise ClusterUnavailable(f"{where}: Kubernetes API unreachable: {exc}") from None
        data: Obj = json.loads(response.data)
        return data


def _api_message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.reason)
    except (ValueError, AttributeError):
        return str(exc.reason)


def _check_reason(reason: str) -> None:
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidInput("a reason is required (it goes to the change-cause and the history)")
