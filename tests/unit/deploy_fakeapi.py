"""A fake Kubernetes API server (apps/v1 Deployments and ReplicaSets) on loopback.

No Kubernetes API server can run on the build machines, so the deployer tests drive the
real ``kubernetes`` client against this small real HTTP server. It is a FAKE: it serves
only the endpoints the deployer calls, and a built-in "deployment controller" that
mimics what kube-controller-manager does on a template change:

- a template change bumps ``metadata.generation``; the controller finds the ReplicaSet
  whose template matches (same ``pod-template-hash``) or creates one, gives it the next
  revision (``deployment.kubernetes.io/revision``) and copies the Deployment's
  annotations onto it (so ``kubernetes.io/change-cause`` shows in the history);
- the rollout progresses one step each time a client reads the Deployment (no clocks):
  observed, half the replicas updated, all updated with old pods terminating, done;
- pods of a template whose model version is in ``failing_versions`` never become ready:
  after ``deadline_steps`` reads the Progressing condition turns False with reason
  ``ProgressDeadlineExceeded``, as a real Deployment's ``progressDeadlineSeconds`` does.

JSON patches (``application/json-patch+json``, what the client sends for a list body)
are applied with ``jsonpatch``, ``test`` operations included; a failed test is a 422 and
a stale ``metadata.resourceVersion`` in a patch is a 409, as on a real server.
:func:`kubectl_rollout_undo` reproduces ``kubectl rollout undo`` over plain HTTP.
"""

from __future__ import annotations

import copy
import hashlib
import json
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jsonpatch

REVISION = "deployment.kubernetes.io/revision"
HASH = "pod-template-hash"
UNDO_SKIP = {
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    "deployment.kubernetes.io/revision-history",
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
}


def make_deployment(
    name: str, app: str, env: dict[str, str], replicas: int = 2, namespace: str = "speechloop"
) -> dict[str, Any]:
    """A Deployment as ``kubectl apply`` would create it (one container ``service``)."""
    labels = {"app.kubernetes.io/name": app}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels, "annotations": {}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "progressDeadlineSeconds": 600,
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {
                    "containers": [
                        {
                            "name": "service",
                            "image": "speechloop-service:test",
                            "env": [{"name": k, "value": v} for k, v in env.items()],
                        }
                    ]
                },
            },
        },
    }


def template_hash(template: dict[str, Any]) -> str:
    """A stable hash of a pod template without its hash label (the real one is FNV)."""
    clean = copy.deepcopy(template)
    clean.get("metadata", {}).get("labels", {}).pop(HASH, None)
    return hashlib.sha256(json.dumps(clean, sort_keys=True).encode()).hexdigest()[:10]


@dataclass
class _Rollout:
    step: int = 0
    failing: bool = False


@dataclass
class FakeCluster:
    """The objects of the fake API server and its controller's progress."""

    failing_versions: set[str] = field(default_factory=set)
    deadline_steps: int = 3
    deployments: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    replicasets: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    rollouts: dict[tuple[str, str], _Rollout] = field(default_factory=dict)
    requests: list[tuple[str, str, str]] = field(default_factory=list)  # method, path, ctype
    lock: threading.RLock = field(default_factory=threading.RLock)
    _counter: int = 0

    def _next_rv(self) -> str:
        self._counter += 1
        return str(self._counter)

    def add_deployment(self, deployment: dict[str, Any]) -> None:
        """Create a Deployment and let its first rollout complete."""
        with self.lock:
            dep = copy.deepcopy(deployment)
            meta = dep["metadata"]
            key = (meta["namespace"], meta["name"])
            meta.update(uid=f"uid-{meta['name']}", generation=1, resourceVersion=self._next_rv())
            dep["status"] = {"observedGeneration": 0}
            self.deployments[key] = dep
            self._sync(key)
            while self.rollouts[key].step < 3:
                self._progress(key)

    # -- the "controller" ------------------------------------------------------------

    def _owned(self, key: tuple[str, str]) -> list[dict[str, Any]]:
        uid = self.deployments[key]["metadata"]["uid"]
        return [
            rs
            for (ns, _), rs in self.replicasets.items()
            if ns == key[0] and rs["metadata"]["ownerReferences"][0]["uid"] == uid
        ]

    def _sync(self, key: tuple[str, str]) -> None:
        """A new generation: pick or create the ReplicaSet for the template, bump revision."""
        dep = self.deployments[key]
        owned = self._owned(key)
        top = max((int(rs["metadata"]["annotations"][REVISION]) for rs in owned), default=0)
        digest = template_hash(dep["spec"]["template"])
        name = f"{key[1]}-{digest}"
        rs = self.replicasets.get((key[0], name))
        annotations = dict(dep["metadata"].get("annotations", {}))
        if rs is None:
            template = copy.deepcopy(dep["spec"]["template"])
            template["metadata"].setdefault("labels", {})[HASH] = digest
            rs = {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "metadata": {
                    "name": name,
                    "namespace": key[0],
                    "uid": f"uid-{name}",
                    "labels": dict(template["metadata"]["labels"]),
                    "annotations": {},
                    "ownerReferences": [
                        {
                            "apiVersion": "apps/v1",
                            "kind": "Deployment",
                            "name": key[1],
                            "uid": dep["metadata"]["uid"],
                            "controller": True,
                        }
                    ],
                },
                "spec": {
                    "replicas": 0,
                    "selector": {"matchLabels": dict(template["metadata"]["labels"])},
                    "template": template,
                },
                "status": {"replicas": 0},
            }
            self.replicasets[(key[0], name)] = rs
        current = int(rs["metadata"]["annotations"].get(REVISION, "0"))
        revision = current if current == top and current else top + 1
        annotations[REVISION] = str(revision)
        rs["metadata"]["annotations"] = annotations
        rs["metadata"]["resourceVersion"] = self._next_rv()
        dep["metadata"].setdefault("annotations", {})[REVISION] = str(revision)
        dep["status"]["observedGeneration"] = dep["metadata"]["generation"]
        version_values = {e.get("value") for c in _containers(dep) for e in c.get("env", [])}
        failing = bool(version_values & self.failing_versions)
        self.rollouts[key] = _Rollout(step=0, failing=failing)
        self._set_status(key)

    def _progress(self, key: tuple[str, str]) -> None:
        rollout = self.rollouts[key]
        rollout.step += 1
        self._set_status(key)

    def _set_status(self, key: tuple[str, str]) -> None:
        dep = self.deployments[key]
        want = int(dep["spec"].get("replicas", 1))
        rollout = self.rollouts[key]
        new_name = f"{key[1]}-{template_hash(dep['spec']['template'])}"
        if rollout.failing:
            updated, ready_new, old = min(1, want), 0, want
        else:
            updated = want if rollout.step >= 2 else max(1, want // 2)
            ready_new = updated if rollout.step >= 2 else 0
            old = 0 if rollout.step >= 3 else want - ready_new if rollout.step < 2 else 1
        for rs in self._owned(key):
            is_new = rs["metadata"]["name"] == new_name
            count = updated if is_new else 0
            ready = ready_new if is_new else 0
            rs["spec"]["replicas"] = count
            rs["status"] = {"replicas": count, "readyReplicas": ready, "availableReplicas": ready}
        total = updated + old
        available = ready_new + (old if rollout.failing or rollout.step < 2 else 0)
        deadline = rollout.failing and rollout.step >= self.deadline_steps
        dep["status"].update(
            replicas=total,
            updatedReplicas=updated,
            readyReplicas=available,
            availableReplicas=available,
            conditions=[
                {
                    "type": "Progressing",
                    "status": "False" if deadline else "True",
                    "reason": "ProgressDeadlineExceeded" if deadline else "ReplicaSetUpdated",
                    "message": (
                        f'ReplicaSet "{new_name}" has timed out progressing.'
                        if deadline
                        else f'ReplicaSet "{new_name}" is progressing.'
                    ),
                }
            ],
        )

    # -- API operations ------------------------------------------------------------------

    def get_deployment(self, key: tuple[str, str]) -> dict[str, Any]:
        """What a GET returns; each read moves the rollout one step on."""
        with self.lock:
            self._progress(key)
            return copy.deepcopy(self.deployments[key])

    def patch_deployment(self, key: tuple[str, str], ops: list[dict[str, Any]]) -> dict[str, Any]:
        """Apply a JSON patch; a changed template starts a rollout."""
        with self.lock:
            dep = self.deployments[key]
            patched = jsonpatch.apply_patch(dep, ops)  # raises JsonPatchConflict on a failed test
            if patched["metadata"]["resourceVersion"] != dep["metadata"]["resourceVersion"]:
                raise _Stale(key[1])
            patched["metadata"]["resourceVersion"] = self._next_rv()
            template_changed = patched["spec"] != dep["spec"]
            if template_changed:
                patched["metadata"]["generation"] += 1
            self.deployments[key] = patched
            if template_changed:
                self._sync(key)
            return copy.deepcopy(patched)

    def list_replicasets(self, namespace: str, selector: str) -> dict[str, Any]:
        """ReplicaSets of a namespace matching an ``a=b,c=d`` label selector."""
        wanted = dict(part.split("=", 1) for part in selector.split(",") if part)
        with self.lock:
            items = [
                copy.deepcopy(rs)
                for (ns, _), rs in sorted(self.replicasets.items())
                if ns == namespace
                and all(rs["metadata"]["labels"].get(k) == v for k, v in wanted.items())
            ]
        return {"apiVersion": "apps/v1", "kind": "ReplicaSetList", "metadata": {}, "items": items}

    def serving(self, namespace: str, name: str, env: str) -> str | None:
        """The value of ``env`` in the Deployment's current template."""
        with self.lock:
            dep = self.deployments[(namespace, name)]
        for c in _containers(dep):
            for e in c.get("env", []):
                if e["name"] == env:
                    return str(e["value"])
        return None


class _Stale(Exception):
    """A patch carried an old resourceVersion."""


def _containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return list(obj["spec"]["template"]["spec"]["containers"])


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def _handler(cluster: FakeCluster) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, code: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _route(self) -> tuple[str, list[str], dict[str, list[str]]]:
            url = urllib.parse.urlsplit(self.path)
            cluster.requests.append((self.command, url.path, self.headers.get("Content-Type", "")))
            return url.path, url.path.strip("/").split("/"), urllib.parse.parse_qs(url.query)

        def do_GET(self) -> None:
            path, parts, query = self._route()
            # /apis/apps/v1/namespaces/<ns>/<resource>[/<name>]
            if parts[:4] != ["apis", "apps", "v1", "namespaces"] or len(parts) < 6:
                self._send(404, _status(404, "NotFound", f"the fake serves no {path}"))
                return
            ns, resource = parts[4], parts[5]
            if resource == "deployments" and len(parts) == 7:
                key = (ns, parts[6])
                if key not in cluster.deployments:
                    msg = f'deployments.apps "{parts[6]}" not found'
                    self._send(404, _status(404, "NotFound", msg))
                    return
                self._send(200, cluster.get_deployment(key))
            elif resource == "replicasets" and len(parts) == 6:
                selector = query.get("labelSelector", [""])[0]
                self._send(200, cluster.list_replicasets(ns, selector))
            else:
                self._send(404, _status(404, "NotFound", f"the fake serves no {path}"))

        def do_PATCH(self) -> None:
            _, parts, _ = self._route()
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
            if self.headers.get("Content-Type") != "application/json-patch+json":
                msg = "the fake takes only application/json-patch+json"
                self._send(415, _status(415, "UnsupportedMediaType", msg))
                return
            key = (parts[4], parts[6])
            if parts[5] != "deployments" or key not in cluster.deployments:
                self._send(404, _status(404, "NotFound", f'deployments.apps "{key[1]}" not found'))
                return
            try:
                self._send(200, cluster.patch_deployment(key, body))
            except jsonpatch.JsonPatchTestFailed as exc:
                self._send(422, _status(422, "Invalid", f"the server rejected our request: {exc}"))
            except _Stale:
                msg = f'Operation cannot be fulfilled on deployments.apps "{key[1]}": modified'
                self._send(409, _status(409, "Conflict", msg))

    return Handler


@contextmanager
def serve(cluster: FakeCluster) -> Iterator[str]:
    """Serve ``cluster`` on 127.0.0.1 (a free port); yields the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(cluster))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _http(method: str, url: str, body: Any = None, ctype: str = "") -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if ctype:
        req.add_header("Content-Type", ctype)
    with urllib.request.urlopen(req) as resp:
        return json.loads(resp.read())


def kubectl_rollout_undo(base: str, namespace: str, name: str, to_revision: int = 0) -> None:
    """What ``kubectl rollout undo deployment/<name> [--to-revision N]`` sends, over HTTP.

    Written from kubectl's rollback.go, independently of the deployer: the target
    ReplicaSet's template minus ``pod-template-hash`` and its annotations minus the
    revision bookkeeping, as one JSON patch.
    """
    prefix = f"{base}/apis/apps/v1/namespaces/{namespace}"
    dep = _http("GET", f"{prefix}/deployments/{name}")
    selector = ",".join(f"{k}={v}" for k, v in dep["spec"]["selector"]["matchLabels"].items())
    query = urllib.parse.urlencode({"labelSelector": selector})
    sets = _http("GET", f"{prefix}/replicasets?{query}")["items"]
    by_rev = {int(rs["metadata"]["annotations"][REVISION]): rs for rs in sets}
    if to_revision == 0:
        to_revision = sorted(by_rev)[-2]
    rs = by_rev[to_revision]
    template = copy.deepcopy(rs["spec"]["template"])
    template["metadata"]["labels"].pop(HASH, None)
    annotations = {k: v for k, v in rs["metadata"]["annotations"].items() if k not in UNDO_SKIP}
    ops = [
        {"op": "replace", "path": "/spec/template", "value": template},
        {"op": "replace", "path": "/metadata/annotations", "value": annotations},
    ]
    _http("PATCH", f"{prefix}/deployments/{name}", ops, "application/json-patch+json")


def kubectl_rollout_restart(base: str, namespace: str, name: str, stamp: str) -> None:
    """``kubectl rollout restart deployment/<name>``: a new pod-template annotation.

    kubectl sends it as a strategic merge patch; this fake takes JSON patches only, so
    the same change goes as one (the resulting template is the same).
    """
    prefix = f"{base}/apis/apps/v1/namespaces/{namespace}"
    dep = _http("GET", f"{prefix}/deployments/{name}")
    annotations = dict(dep["spec"]["template"]["metadata"].get("annotations") or {})
    annotations["kubectl.kubernetes.io/restartedAt"] = stamp
    ops = [{"op": "add", "path": "/spec/template/metadata/annotations", "value": annotations}]
    _http("PATCH", f"{prefix}/deployments/{name}", ops, "application/json-patch+json")
