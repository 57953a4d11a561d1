"""Pure functions on Deployment and ReplicaSet objects (JSON dicts, camelCase keys).

They say what a Deployment runs, how far its rollout is, what its revisions are and
which JSON patch moves it, following kubectl: ``rollout status`` (status.go),
``rollout undo`` (rollback.go: the target ReplicaSet's template minus its
``pod-template-hash`` label, its annotations minus the revision bookkeeping) and
``rollout history``. Kept free of I/O so that they are easy to test and to read.
"""

from __future__ import annotations

import copy
from typing import Any

from speechloop.deploy.model import CHANGE_CAUSE, RevisionInfo
from speechloop.errors import InvalidInput

REVISION = "deployment.kubernetes.io/revision"
TEMPLATE_HASH = "pod-template-hash"
#: Annotations ``kubectl rollout undo`` keeps from the Deployment instead of the ReplicaSet.
UNDO_SKIP = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        REVISION,
        "deployment.kubernetes.io/revision-history",
        "deployment.kubernetes.io/desired-replicas",
        "deployment.kubernetes.io/max-replicas",
        "deprecated.deployment.rollback.to",
    }
)

Obj = dict[str, Any]


def containers(obj: Obj) -> list[Obj]:
    """The containers of a Deployment's or ReplicaSet's pod template."""
    return list(obj.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []))


def template_version(obj: Obj, env_name: str) -> str | None:
    """The value of ``env_name`` in the pod template (first container that sets it).

    None when no container sets it or its value is empty: the pods are not pinned and
    load whatever the production alias named when they started.
    """
    for container in containers(obj):
        for entry in container.get("env") or []:
            if entry.get("name") == env_name:
                return str(entry.get("value") or "").strip() or None
    return None


def revision_of(obj: Obj) -> int:
    """The ``deployment.kubernetes.io/revision`` annotation as an int (0 if absent)."""
    raw = (obj.get("metadata", {}).get("annotations") or {}).get(REVISION, "0")
    try:
        return int(raw)
    except ValueError:
        return 0


def change_cause(obj: Obj) -> str | None:
    """The ``kubernetes.io/change-cause`` annotation, if any."""
    return (obj.get("metadata", {}).get("annotations") or {}).get(CHANGE_CAUSE)


def selector_of(deployment: Obj) -> str:
    """The Deployment's ``matchLabels`` as a label selector string (``a=b,c=d``)."""
    labels = deployment.get("spec", {}).get("selector", {}).get("matchLabels") or {}
    if not labels:
        name = deployment.get("metadata", {}).get("name")
        raise InvalidInput(f"deployment {name} has no spec.selector.matchLabels")
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def owned(deployment: Obj, replicasets: list[Obj]) -> list[Obj]:
    """The ReplicaSets controlled by ``deployment``, oldest revision first."""
    uid = deployment.get("metadata", {}).get("uid")
    mine = [
        rs
        for rs in replicasets
        if any(
            ref.get("uid") == uid and ref.get("controller")
            for ref in rs.get("metadata", {}).get("ownerReferences") or []
        )
    ]
    return sorted(mine, key=revision_of)


def rollout_state(deployment: Obj) -> tuple[str, str]:
    """``("complete"|"progressing"|"failed", message)``, as ``kubectl rollout status``."""
    meta, spec = deployment.get("metadata", {}), deployment.get("spec", {})
    status = deployment.get("status") or {}
    name = meta.get("name")
    if meta.get("generation", 0) > status.get("observedGeneration", 0):
        return "progressing", "waiting for the deployment spec update to be observed"
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return "failed", f"deployment {name} exceeded its progress deadline: " + str(
                cond.get("message", "")
            )
    want = int(spec.get("replicas", 1))
    updated = int(status.get("updatedReplicas", 0))
    total = int(status.get("replicas", 0))
    available = int(status.get("availableReplicas", 0))
    if updated < want:
        return "progressing", f"{updated} of {want} updated replicas are available"
    if total > updated:
        return "progressing", f"{total - updated} old replicas are pending termination"
    if available < updated:
        return "progressing", f"{available} of {updated} updated replicas are available"
    return "complete", f"deployment {name} successfully rolled out"


def history(deployment: Obj, replicasets: list[Obj], env_name: str) -> list[RevisionInfo]:
    """The Deployment's revisions (one per owned ReplicaSet), oldest first."""
    current = revision_of(deployment)
    return [
        RevisionInfo(
            revision=revision_of(rs),
            version=template_version(rs, env_name),
            change_cause=change_cause(rs),
            name=rs.get("metadata", {}).get("name"),
            replicas=int((rs.get("status") or {}).get("replicas", 0)),
            current=revision_of(rs) == current,
        )
        for rs in owned(deployment, replicasets)
    ]


def previous_model_replicaset(deployment: Obj, replicasets: list[Obj], env_name: str) -> Obj | None:
    """The newest earlier revision that served another model version.

    ``kubectl rollout undo`` takes the second-newest revision whatever it holds; after a
    ``kubectl rollout restart`` (or a resource change) that revision serves the same
    model, so a model rollback skips revisions whose version is the current one or none.
    """
    current = revision_of(deployment)
    serving = template_version(deployment, env_name)
    earlier = [
        rs
        for rs in owned(deployment, replicasets)
        if 0 < revision_of(rs) < current and template_version(rs, env_name) not in (None, serving)
    ]
    return earlier[-1] if earlier else None


def current_replicaset(deployment: Obj, replicasets: list[Obj]) -> Obj | None:
    """The ReplicaSet of the Deployment's current revision."""
    current = revision_of(deployment)
    for rs in owned(deployment, replicasets):
        if revision_of(rs) == current:
            return rs
    return None


def _strip_hash(template: Obj) -> Obj:
    clean = copy.deepcopy(template)
    (clean.get("metadata") or {}).get("labels", {}).pop(TEMPLATE_HASH, None)
    return clean


def same_template(replicaset: Obj, deployment: Obj) -> bool:
    """True when the ReplicaSet's template is the Deployment's, ignoring the hash label."""
    return _strip_hash(replicaset["spec"]["template"]) == _strip_hash(
        deployment["spec"]["template"]
    )


def undo_patch(deployment: Obj, replicaset: Obj) -> list[Obj]:
    """The JSON patch ``kubectl rollout undo`` sends to go back to ``replicaset``."""
    dep_ann = deployment.get("metadata", {}).get("annotations") or {}
    annotations = {k: v for k, v in dep_ann.items() if k in UNDO_SKIP}
    rs_ann = replicaset.get("metadata", {}).get("annotations") or {}
    annotations.update({k: v for k, v in rs_ann.items() if k not in UNDO_SKIP})
    return [
        _guard(deployment),
        {
            "op": "replace",
            "path": "/spec/template",
            "value": _strip_hash(replicaset["spec"]["template"]),
        },
        {"op": "replace", "path": "/metadata/annotations", "value": annotations},
    ]


def version_patch(deployment: Obj, env_name: str, version: str, cause: str) -> list[Obj]:
    """A JSON patch setting ``env_name=version`` in the pod template and the change-cause.

    The variable is set in every container that has it, or in the first container when
    none does; other variables keep their order.
    """
    found = [
        i
        for i, c in enumerate(containers(deployment))
        if any(e.get("name") == env_name for e in c.get("env") or [])
    ]
    if not containers(deployment):
        name = deployment.get("metadata", {}).get("name")
        raise InvalidInput(f"deployment {name} has no containers in its pod template")
    ops = [_guard(deployment)]
    for index in found or [0]:
        env = [dict(e) for e in containers(deployment)[index].get("env") or []]
        for entry in env:
            if entry.get("name") == env_name:
                entry.clear()
                entry.update(name=env_name, value=version)
        if not found:
            env.append({"name": env_name, "value": version})
        path = f"/spec/template/spec/containers/{index}/env"
        ops.append({"op": "add", "path": path, "value": env})
    annotations = dict(deployment.get("metadata", {}).get("annotations") or {})
    annotations[CHANGE_CAUSE] = cause
    ops.append({"op": "add", "path": "/metadata/annotations", "value": annotations})
    return ops


def _guard(deployment: Obj) -> Obj:
    """A JSON-patch ``test`` that fails (422) if someone changed the Deployment meanwhile."""
    version = deployment.get("metadata", {}).get("resourceVersion", "")
    return {"op": "test", "path": "/metadata/resourceVersion", "value": version}
