"""docker-compose.yaml and the training image, checked without a docker engine (none can
run on the build machines): the compose file's structure, references and secrets, and
the Dockerfile's agreement with the lock, the manifests and the package version."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yaml"
DOCKERFILE = ROOT / "docker" / "training.Dockerfile"
TOP_LEVEL = {"name", "services", "volumes", "networks", "configs", "secrets"}
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
SECRETISH = re.compile(r"KEY|SECRET|PASSWORD|TOKEN|ROOT_USER")


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load(COMPOSE)


def test_compose_structure(compose: dict[str, Any]) -> None:
    """Top-level keys of the compose spec; the five parts; pinned images; valid
    depends_on conditions; every named volume declared; ports as host:container."""
    assert {k for k in compose if not k.startswith("x-")} <= TOP_LEVEL
    services = compose["services"]
    expected = {"minio", "minio-setup", "prefect-server", "prefect-worker", "events", "service"}
    assert set(services) == expected
    declared = set(compose.get("volumes") or {})
    for name, svc in services.items():
        image = svc["image"]
        assert ":" in image and not image.endswith(":latest"), name
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in services and cond["condition"] in CONDITIONS, (name, dep)
        for volume in svc.get("volumes", []):
            source = volume.split(":", 1)[0]
            assert source.startswith((".", "/")) or source in declared, (name, volume)
        for port in svc.get("ports", []):
            assert re.fullmatch(r"\d+:\d+", port), (name, port)
    for name in ("minio", "prefect-server", "service"):
        assert services[name]["healthcheck"]["test"][0] == "CMD", name


def test_compose_takes_secrets_from_env_only(compose: dict[str, Any]) -> None:
    """Credentials are ${VAR:?...} references (required), each listed in the example env."""
    example = (ROOT / "docker" / "compose.env.example").read_text()
    names = set(re.findall(r"^([A-Z_]+)=", example, re.M))
    for svc_name, svc in compose["services"].items():
        for key, value in (svc.get("environment") or {}).items():
            if SECRETISH.search(key):
                ref = re.fullmatch(r"\$\{([A-Z_]+):\?[^}]+\}", str(value))
                assert ref, (svc_name, key, value)
                assert ref.group(1) in names, ref.group(1)
    for value in re.findall(r"^[A-Z_]+=(.*)$", example, re.M):
        assert value in ("speechloop",) or "change-me" in value


def test_compose_wiring(compose: dict[str, Any]) -> None:
    """MinIO notifies the event adapter where it listens; the worker and the service use
    the same store and buckets; the GPU override names existing services."""
    services = compose["services"]
    minio_env = services["minio"]["environment"]
    events_cmd = services["events"]["command"]
    port = events_cmd[events_cmd.index("--port") + 1]
    assert minio_env["MINIO_NOTIFY_WEBHOOK_ENDPOINT_PRIMARY"] == f"http://events:{port}/minio"
    setup = services["minio-setup"]["command"][0]
    worker, service = services["prefect-worker"]["environment"], services["service"]["environment"]
    for key in ("SPEECHLOOP_STORE", "SPEECHLOOP_S3_ENDPOINT", "SPEECHLOOP_MODELS_BUCKET"):
        assert worker[key] == service[key]
    for bucket in (worker["SPEECHLOOP_DATA_BUCKET"], worker["SPEECHLOOP_MODELS_BUCKET"]):
        assert f"local/{bucket}" in setup
    gpu = load(ROOT / "docker" / "compose.gpu.yaml")
    assert set(gpu["services"]) <= set(services)


def test_training_image_matches_lock_manifests_and_version() -> None:
    """The Dockerfile installs the locked torch, copies what exists, runs as a numeric
    non-root user, and builds the tag the manifests and compose use."""
    text = DOCKERFILE.read_text()
    lock = (ROOT / "requirements.lock").read_text()
    torch = re.search(r"^torch==(\S+)", lock, re.M)
    assert torch and f"torch=={torch.group(1)}" in text
    for line in re.findall(r"^COPY (.+) \S+$", text, re.M):
        for src in line.split():
            assert (ROOT / src).exists(), src
    user = re.findall(r"^USER (\S+)$", text, re.M)
    assert user and user[-1].isdigit() and int(user[-1]) != 0
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    image = f"speechloop-training:{version}"
    assert image in text
    manifests = "\n".join(p.read_text() for p in (ROOT / "k8s").rglob("*.y*ml"))
    assert image in manifests and f"speechloop:{version}" in manifests
    assert "SPEECHLOOP_ROOT=/opt/speechloop" in text
    prefect = re.search(r"^prefect==(\S+)", lock, re.M)
    assert prefect and f"prefect[kubernetes]=={prefect.group(1)}" in text
    assert f"prefecthq/prefect:{prefect.group(1)}-python3.11" in manifests
    assert f"prefecthq/prefect:{prefect.group(1)}-python3.11" in COMPOSE.read_text()
