"""k8s/: every overlay renders, validates against the schemas of Kubernetes 1.35
(kubernetes-validate, offline, strict), and keeps the security, probe, RBAC, resource,
secret and version-carrier rules.

Rendering uses ``kubectl kustomize`` when kubectl is on the PATH, else the small renderer
of tests/unit/k8s_render.py (checked against kubectl where both exist). No cluster is
involved: these are the objects ``kubectl apply -k`` would send.
"""

from __future__ import annotations

import base64
import json
import re
import shlex
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from speechloop.deploy import CHANGE_CAUSE, VERSION_ENV
from speechloop.deploy.kubernetes import KubernetesSettings
from tests.unit.k8s_render import render

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
KUBERNETES_VERSION = "1.35.0"  # the pinned schema set
OVERLAYS = ("cpu", "gpu", "local")
TARGETS = ("base", *OVERLAYS)
SERVING = {"asr": "speechloop-asr", "spk": "speechloop-spk"}
POD_OWNERS = {"Deployment", "StatefulSet", "Job", "DaemonSet"}
Obj = dict[str, Any]


def _dir(target: str) -> Path:
    return K8S / target if target == "base" else K8S / "overlays" / target


@cache
def rendered(target: str) -> tuple[Obj, ...]:
    """The objects of one kustomization (kubectl kustomize, else the python renderer)."""
    kubectl = shutil.which("kubectl")
    if kubectl:
        out = subprocess.run(
            [kubectl, "kustomize", str(_dir(target))], capture_output=True, text=True, check=True
        ).stdout
        return tuple(d for d in yaml.safe_load_all(out) if d)
    return tuple(render(_dir(target)))


def by_kind(objs: tuple[Obj, ...], kind: str) -> dict[str, Obj]:
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == kind}


def pod_specs(objs: tuple[Obj, ...]) -> dict[str, Obj]:
    """Every pod spec: workloads, plus the flow-run Job of the work pool's template."""
    specs = {
        f"{o['kind']}/{o['metadata']['name']}": o["spec"]["template"]["spec"]
        for o in objs
        if o["kind"] in POD_OWNERS
    }
    specs["work-pool job"] = pool_job(objs)["spec"]["template"]["spec"]
    return specs


def pool_template(objs: tuple[Obj, ...]) -> Obj:
    text = by_kind(objs, "ConfigMap")["prefect-work-pool"]["data"]["base-job-template.json"]
    template: Obj = json.loads(text)
    return template


def fill(value: Any, defaults: dict[str, Any]) -> Any:
    """Prefect's templating: "{{ x }}" alone takes x's value, inside text its string."""
    if isinstance(value, dict):
        return {k: fill(v, defaults) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, defaults) for v in value]
    if isinstance(value, str):
        whole = re.fullmatch(r"\{\{ *(\w+) *\}\}", value)
        if whole:
            return defaults[whole.group(1)]
        return re.sub(r"\{\{ *(\w+) *\}\}", lambda m: str(defaults[m.group(1)]), value)
    return value


def pool_job(objs: tuple[Obj, ...]) -> Obj:
    """The Job a flow run gets with the template's defaults (what the worker submits)."""
    template = pool_template(objs)
    props = template["variables"]["properties"]
    defaults = {k: v.get("default") for k, v in props.items()}
    defaults.update(name="retrain-asr-abc", labels={"app": "flow-run"}, env=[])
    defaults["command"] = fill(defaults["command"], defaults)
    job: Obj = fill(template["job_configuration"]["job_manifest"], defaults)
    job["metadata"]["name"] = job["metadata"].pop("generateName") + "x1"
    container = job["spec"]["template"]["spec"]["containers"][0]
    if isinstance(container["args"], str):  # the worker splits a string command
        container["args"] = shlex.split(container["args"])
    return job


def containers(spec: Obj) -> list[Obj]:
    return list(spec.get("initContainers", [])) + list(spec["containers"])


def env_of(container: Obj) -> dict[str, Obj]:
    return {e["name"]: e for e in container.get("env", [])}


@pytest.mark.parametrize("target", TARGETS)
def test_every_object_validates_against_the_pinned_schemas(target: str) -> None:
    """Each rendered object, and the work pool's Job, is valid Kubernetes 1.35 (strict)."""
    objs = rendered(target)
    assert len(objs) > 30
    for obj in (*objs, pool_job(objs)):
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_python_renderer_matches_kubectl() -> None:
    """The fallback renderer gives kubectl kustomize's objects for every overlay."""
    if not shutil.which("kubectl"):
        pytest.skip("kubectl is not installed: nothing to compare the python renderer with")

    def keyed(objs: Any) -> dict[tuple[str, str], Obj]:
        return {(o["kind"], o["metadata"]["name"]): o for o in objs}

    for target in TARGETS:
        assert keyed(render(_dir(target))) == keyed(rendered(target)), target


@pytest.mark.parametrize("target", TARGETS)
def test_pods_are_locked_down(target: str) -> None:
    """Non-root, RuntimeDefault seccomp, no privilege escalation, read-only root, no caps."""
    for where, spec in pod_specs(rendered(target)).items():
        pod = spec.get("securityContext", {})
        assert pod.get("runAsNonRoot") is True, where
        assert pod.get("seccompProfile") == {"type": "RuntimeDefault"}, where
        assert not spec.get("hostNetwork") and not spec.get("hostPID"), where
        assert all("hostPath" not in v for v in spec.get("volumes", [])), where
        for c in containers(spec):
            sc = c.get("securityContext", {})
            assert sc.get("allowPrivilegeEscalation") is False, (where, c["name"])
            assert sc.get("readOnlyRootFilesystem") is True, (where, c["name"])
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], (where, c["name"])
            assert not sc.get("privileged"), (where, c["name"])
            assert sc.get("runAsNonRoot", pod.get("runAsNonRoot")) is True


@pytest.mark.parametrize("target", TARGETS)
def test_every_container_requests_cpu_and_memory(target: str) -> None:
    """Requests (scheduling, HPA utilisation) and a memory limit on every container."""
    for where, spec in pod_specs(rendered(target)).items():
        for c in containers(spec):
            resources = c.get("resources", {})
            assert {"cpu", "memory"} <= set(resources.get("requests", {})), (where, c["name"])
            assert "memory" in resources.get("limits", {}), (where, c["name"])


@pytest.mark.parametrize("target", TARGETS)
def test_serving_probes_and_drain(target: str) -> None:
    """Startup sized to model load (>= 5 min), readiness /readyz, liveness /livez, preStop."""
    deployments = by_kind(rendered(target), "Deployment")
    for name in (*SERVING.values(), "speechloop-gateway"):
        spec = deployments[name]["spec"]["template"]["spec"]
        c = spec["containers"][0]
        startup, ready, live = c["startupProbe"], c["readinessProbe"], c["livenessProbe"]
        assert startup["httpGet"]["path"] == "/livez"
        assert ready["httpGet"]["path"] == "/readyz"
        assert live["httpGet"]["path"] == "/livez"
        budget = startup["periodSeconds"] * startup["failureThreshold"]
        assert budget >= (300 if name in SERVING.values() else 60), name
        pause = c["lifecycle"]["preStop"]["exec"]["command"]
        assert pause[0] == "sleep" and int(pause[1]) < spec["terminationGracePeriodSeconds"]


@pytest.mark.parametrize("target", TARGETS)
def test_model_versions_ride_in_the_pod_template(target: str) -> None:
    """Each serving Deployment carries its kind's version variable (and not the other's),
    a change-cause, and the names the deployer looks for by default."""
    deployments = by_kind(rendered(target), "Deployment")
    settings = KubernetesSettings()
    assert {"asr": settings.asr_deployment, "spk": settings.spk_deployment} == SERVING
    config = by_kind(rendered(target), "ConfigMap")["speechloop-config"]["data"]
    assert config["SPEECHLOOP_DEPLOYER"] == "kubernetes"
    assert config["SPEECHLOOP_K8S_ASR_DEPLOYMENT"] == SERVING["asr"]
    for kind, name in SERVING.items():
        dep = deployments[name]
        env = env_of(dep["spec"]["template"]["spec"]["containers"][0])
        assert VERSION_ENV[kind] in env and "value" in env[VERSION_ENV[kind]]
        other = VERSION_ENV["spk" if kind == "asr" else "asr"]
        assert other not in env
        assert CHANGE_CAUSE in dep["metadata"]["annotations"]
        assert dep["spec"]["revisionHistoryLimit"] >= 5  # rollback needs old ReplicaSets
        assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


@pytest.mark.parametrize("target", TARGETS)
def test_rbac_is_namespaced_and_minimal(target: str) -> None:
    """The flows may only get/list/patch/watch the serving Deployments and read their
    ReplicaSets, in their namespace; no cluster-wide role exists."""
    objs = rendered(target)
    assert not [o for o in objs if o["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    role = by_kind(objs, "Role")["speechloop-deployer"]
    assert role["metadata"]["namespace"] == "speechloop"
    seen = set()
    for rule in role["rules"]:
        assert rule["apiGroups"] == ["apps"]
        assert set(rule["verbs"]) <= {"get", "list", "patch", "watch"}
        assert "*" not in rule["verbs"] and "*" not in rule["resources"]
        seen.update(rule["resources"])
        if "deployments" in rule["resources"]:
            assert sorted(rule["resourceNames"]) == sorted(SERVING.values())
        else:
            assert rule["resources"] == ["replicasets"] and "patch" not in rule["verbs"]
    assert seen == {"deployments", "replicasets"}
    binding = by_kind(objs, "RoleBinding")["speechloop-deployer"]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "speechloop-deployer",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "speechloop-flows", "namespace": "speechloop"}
    ]
    assert pool_job(objs)["spec"]["template"]["spec"]["serviceAccountName"] == "speechloop-flows"
    for name in (*SERVING.values(), "speechloop-gateway"):
        spec = by_kind(objs, "Deployment")[name]["spec"]["template"]["spec"]
        assert spec["automountServiceAccountToken"] is False


def _secret_refs(objs: tuple[Obj, ...]) -> set[tuple[str, str]]:
    refs = set()
    for spec in pod_specs(objs).values():
        for c in containers(spec):
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    refs.add((ref["name"], ref["key"]))
        for v in spec.get("volumes", []):
            if "secret" in v:
                refs.add((v["secret"]["secretName"], "*"))
    return refs


@pytest.mark.parametrize("target", TARGETS)
def test_secrets_are_referenced_never_inlined(target: str) -> None:
    """No real secret value in the manifests: only the local overlay defines Secrets, with
    placeholders; credentials reach pods only through secretKeyRef or secret volumes."""
    objs = rendered(target)
    secrets = by_kind(objs, "Secret")
    if target != "local":
        assert not secrets
    for secret in secrets.values():
        for key, value in secret.get("data", {}).items():
            text = base64.b64decode(value).decode()
            assert "change-me" in text or text == "speechloop-local", (secret, key)
        assert not secret.get("stringData")
    for where, spec in pod_specs(objs).items():
        for c in containers(spec):
            for name, entry in env_of(c).items():
                if re.search(r"KEY|SECRET|TOKEN|PASSWORD|ROOT_USER", name):
                    assert "valueFrom" in entry or name.endswith("_FILE"), (where, name)
    assert ("speechloop-s3", "secret-key") in _secret_refs(objs)
    assert ("speechloop-api-keys", "*") in _secret_refs(objs)


def test_local_overlay_generates_every_referenced_secret() -> None:
    """Every Secret key a pod refers to exists in the local overlay's placeholders."""
    objs = rendered("local")
    secrets = by_kind(objs, "Secret")
    for name, key in _secret_refs(objs):
        assert name in secrets, name
        assert key == "*" or key in secrets[name]["data"], (name, key)


@pytest.mark.parametrize("target", TARGETS)
def test_ingress_publishes_only_v1_and_ui(target: str) -> None:
    """/metrics, /docs, /livez, /readyz are not routed; only the gateway is a backend."""
    ingress = by_kind(rendered(target), "Ingress")["speechloop"]
    paths = [p for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]
    assert sorted(p["path"] for p in paths) == ["/ui", "/v1"]
    assert {p["backend"]["service"]["name"] for p in paths} == {"speechloop-gateway"}
    assert all(p["pathType"] == "Prefix" for p in paths)


@pytest.mark.parametrize("target", TARGETS)
def test_network_policies_keep_internal_ports_inside(target: str) -> None:
    """Default deny; model pods only from the gateway (and Prometheus); MinIO, Prefect and
    the event adapter only from inside; nobody reaches MinIO's console port."""
    policies = by_kind(rendered(target), "NetworkPolicy")
    deny = policies["default-deny-ingress"]["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress"]}
    models = policies["speechloop-models"]["spec"]
    sources = models["ingress"][0]["from"]
    assert {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "speechloop-gateway"}}} in (
        sources
    )
    assert all("ipBlock" not in s for p in policies.values() for r in
               p["spec"].get("ingress", []) for s in r.get("from", []))  # fmt: skip
    outside = [
        s
        for p in policies.values()
        for r in p["spec"].get("ingress", [])
        for s in r.get("from", [])
        if "namespaceSelector" in s
    ]
    allowed = {"ingress-nginx", "monitoring"}
    assert {
        s["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for s in outside
    } <= (allowed)
    ports = {p["port"] for pol in policies.values() for r in pol["spec"].get("ingress", [])
             for p in r.get("ports", [])}  # fmt: skip
    assert 9001 not in ports
    deployments = by_kind(rendered(target), "Deployment")
    labels = deployments["speechloop-asr"]["spec"]["template"]["metadata"]["labels"]
    assert models["podSelector"]["matchLabels"].items() <= labels.items()


def test_gpu_overlay_puts_models_on_gpus() -> None:
    """gpu: one nvidia.com/gpu per model pod, on GPU nodes (selector + toleration), torch
    from the GPU bento image (bentofile.gpu.yaml)."""
    deployments = by_kind(rendered("gpu"), "Deployment")
    for kind, name in SERVING.items():
        spec = deployments[name]["spec"]["template"]["spec"]
        c = spec["containers"][0]
        assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
        assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in (
            spec["tolerations"]
        )
        env = env_of(c)
        assert env["SPEECHLOOP_DEVICE"]["value"] == "cuda"
        assert env[f"SPEECHLOOP_{kind.upper()}_BACKEND"]["value"] == "torch"
        # the torch backend needs the GPU bento: the CPU image ships no torch
        assert c["image"].startswith("speechloop-gpu:")
    gateway = deployments["speechloop-gateway"]["spec"]["template"]["spec"]
    assert "nvidia.com/gpu" not in json.dumps(gateway)


@pytest.mark.parametrize("target", ("cpu", "local"))
def test_cpu_overlays_ask_for_no_gpu(target: str) -> None:
    """cpu and local: nothing asks for a GPU, not even the work pool's flow runs."""
    objs = rendered(target)
    assert "nvidia.com/gpu" not in json.dumps(objs)
    assert "torchrun" not in pool_template(objs)["variables"]["properties"]["command"]["default"]


@pytest.mark.parametrize("target", ("base", "gpu"))
def test_work_pool_job_asks_for_gpus_and_runs_torchrun(target: str) -> None:
    """The pool's flow-run Job asks for `gpus` GPUs and starts torchrun with one process
    per GPU; every template variable is referenced by the job configuration."""
    objs = rendered(target)
    template = pool_template(objs)
    job = pool_job(objs)
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    command = " ".join(container["args"])
    assert command.startswith("torchrun --standalone --nnodes=1 --nproc-per-node=1 ")
    assert command.endswith("prefect flow-run execute")
    default = template["variables"]["properties"]["command"]["default"]
    assert "--nproc-per-node={{ gpus }}" in default
    config_text = json.dumps(template["job_configuration"])
    for variable in template["variables"]["properties"]:
        assert "{{ " + variable + " }}" in config_text + default, variable
    assert job["spec"]["template"]["spec"]["tolerations"][0]["key"] == "nvidia.com/gpu"


@pytest.mark.parametrize("target", TARGETS)
def test_minio_storage_buckets_and_notifications(target: str) -> None:
    """MinIO keeps its data on a claim; the setup Job makes the configured buckets and
    subscribes the event adapter (Service port and path) to new manifests."""
    objs = rendered(target)
    minio = by_kind(objs, "StatefulSet")["minio"]
    assert minio["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    env = env_of(minio["spec"]["template"]["spec"]["containers"][0])
    endpoint = env["MINIO_NOTIFY_WEBHOOK_ENDPOINT_PRIMARY"]["value"]
    events = by_kind(objs, "Service")["speechloop-events"]
    assert endpoint == f"http://speechloop-events:{events['spec']['ports'][0]['port']}/minio"
    assert env["MINIO_NOTIFY_WEBHOOK_AUTH_TOKEN_PRIMARY"]["valueFrom"]["secretKeyRef"] == {
        "name": "speechloop-events",
        "key": "token",
    }
    adapter = by_kind(objs, "Deployment")["speechloop-events"]["spec"]["template"]["spec"]
    adapter_env = env_of(adapter["containers"][0])
    assert adapter_env["SPEECHLOOP_FLOWS_EVENTS_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "speechloop-events",
        "key": "token",
    }
    script = by_kind(objs, "Job")["minio-bucket-setup"]["spec"]["template"]["spec"]
    text = script["containers"][0]["args"][0]
    config = by_kind(objs, "ConfigMap")["speechloop-config"]["data"]
    for bucket in (config["SPEECHLOOP_DATA_BUCKET"], config["SPEECHLOOP_MODELS_BUCKET"]):
        assert f"local/{bucket}" in text
    assert "arn:minio:sqs::PRIMARY:webhook" in text and "--suffix manifest.jsonl" in text


@pytest.mark.parametrize("target", TARGETS)
def test_serving_scales_and_survives_drains(target: str) -> None:
    """Each serving Deployment has a PodDisruptionBudget, an HPA on CPU and a Service."""
    objs = rendered(target)
    pdbs, hpas = by_kind(objs, "PodDisruptionBudget"), by_kind(objs, "HorizontalPodAutoscaler")
    services = by_kind(objs, "Service")
    for name in (*SERVING.values(), "speechloop-gateway"):
        assert pdbs[name]["spec"]["maxUnavailable"] == 1
        hpa = hpas[name]["spec"]
        assert hpa["scaleTargetRef"]["name"] == name
        assert 1 <= hpa["minReplicas"] <= hpa["maxReplicas"]
        assert services[name]["spec"]["ports"][0]["port"] == 3000


def test_operations_doc_names_what_the_manifests_define() -> None:
    """docs/operations.md's kubectl and speechloop commands name real objects, Secret keys
    the pods read, and CLI commands that exist."""
    doc = (ROOT / "docs" / "operations.md").read_text()
    section = doc[doc.index("## Kubernetes: deploy, redeploy, roll back") :]
    objs = rendered("gpu")
    names = {(o["kind"], o["metadata"]["name"]) for o in objs}
    short = {"deployment": "Deployment", "statefulset": "StatefulSet", "job": "Job",
             "svc": "Service", "hpa": "HorizontalPodAutoscaler", "role": "Role",
             "serviceaccount": "ServiceAccount", "configmap": "ConfigMap"}  # fmt: skip
    mentioned = re.findall(r"\b(deployment|statefulset|job|svc|role|serviceaccount|configmap)/"
                           r"([a-z0-9-]+)", section)  # fmt: skip
    mentioned += re.findall(r"\b(hpa) ([a-z0-9-]+)", section)
    assert len(mentioned) > 20
    for kind, name in mentioned:
        assert (short[kind], name) in names, f"{kind}/{name}"
    refs = _secret_refs(objs) | _secret_refs(rendered("local"))
    secret_names = {name for name, _ in refs}
    for name, args in re.findall(r"create secret (?:generic|tls) ([a-z0-9-]+)(.*?)(?:\n\S|$)",
                                 section, re.S):  # fmt: skip
        if name == "speechloop-tls":
            ingress = by_kind(objs, "Ingress")["speechloop"]
            assert ingress["spec"]["tls"][0]["secretName"] == name
            continue
        assert name in secret_names, name
        for key in re.findall(r"--from-(?:literal|file)=([a-z-]+)=", args):
            assert (name, key) in refs or (name, "*") in refs, (name, key)
    for overlay in re.findall(r"k8s/overlays/([a-z]+)", section):
        assert overlay in OVERLAYS
    for label in re.findall(r"-l app\.kubernetes\.io/name=([a-z-]+)", section):
        assert label in json.dumps(pool_template(objs)) or label in json.dumps(objs)

    from typer.testing import CliRunner

    from speechloop.cli.main import app

    for command in set(re.findall(r"^speechloop ((?:deploy )?\w+)", section, re.M)):
        result = CliRunner().invoke(app, [*command.split(), "--help"])
        assert result.exit_code == 0, command
