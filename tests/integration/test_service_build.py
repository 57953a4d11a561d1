"""``bentoml build`` of bentofile.yaml (and of bentofile.gpu.yaml, the torch variant for
GPU nodes): the bento builds offline, holds the service and the core, installs no torch
(CPU variant), and carries no secret from the build environment; the serving process
refuses to start without keys and reports a model it cannot load."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SECRET = "build-env-secret-7f3a9c"


@pytest.mark.parametrize(
    ("bentofile", "name", "torch"),
    [("bentofile.yaml", "speechloop", False), ("bentofile.gpu.yaml", "speechloop-gpu", True)],
)
def test_bentoml_build(tmp_path: Path, bentofile: str, name: str, torch: bool) -> None:
    """The bento names the three services, includes service/ and speechloop/ (no seeds,
    no tests), pins the serving dependency set (torch only in the GPU variant), and no
    file in it contains the API key that was set in the build environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPEECHLOOP_")}
    env.update(
        BENTOML_HOME=str(tmp_path / "home"),
        BENTOML_DO_NOT_TRACK="true",
        SPEECHLOOP_API_KEYS=SECRET,
        SPEECHLOOP_S3_SECRET_KEY=SECRET,
    )
    out = subprocess.run(
        [sys.executable, "-m", "bentoml", "build", "-f", bentofile, str(ROOT), "--output", "tag"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    bentos = list((tmp_path / "home" / "bentos" / name).glob("*/bento.yaml"))
    assert len(bentos) == 1
    bento = bentos[0].parent
    meta = yaml.safe_load(bentos[0].read_text())
    assert meta["entry_service"] == "speechloop"
    assert {s["name"] for s in meta["services"]} == {
        "speechloop",
        "speechloop-asr",
        "speechloop-spk",
    }
    assert meta["envs"] == []
    src = bento / "src"
    assert (src / "service" / "app.py").is_file() and (src / "speechloop" / "context.py").is_file()
    assert not (src / "speechloop" / "seeds").exists() and not (src / "tests").exists()
    lines = (bento / "env" / "python" / "requirements.txt").read_text().lower().splitlines()
    pins = dict(ln.split("==", 1) for ln in lines if "==" in ln and not ln.startswith("#"))
    assert pins["bentoml"] == "1.4.39" and "onnxruntime" in pins
    assert ("torch" in pins) is torch and ("funasr" in pins) is torch
    assert "prefect" not in pins
    for path in bento.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_bentoml_serve_refuses_to_start_without_keys(tmp_path: Path) -> None:
    """Without API keys (and auth not off) the whole ``bentoml serve`` exits, its output
    naming both key variables, instead of serving or restarting workers forever."""
    from tests.integration.conftest import free_port

    env = {k: v for k, v in os.environ.items() if not k.startswith("SPEECHLOOP_")}
    env.update(
        BENTOML_HOME=str(tmp_path / "home"),
        BENTOML_DO_NOT_TRACK="true",
        SPEECHLOOP_STORE=f"file://{tmp_path / 'store'}",
        SPEECHLOOP_WORK_DIR=str(tmp_path / "work"),
    )
    cmd = [sys.executable, "-m", "bentoml", "serve", "service.app:Gateway", "--host",
           "127.0.0.1", "--port", str(free_port()), "--working-dir", str(ROOT)]  # fmt: skip
    out = subprocess.run(
        cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180, check=False
    )
    text = out.stdout + out.stderr
    assert "refusing to start" in text
    assert "SPEECHLOOP_API_KEYS" in text and "SPEECHLOOP_AUTH=off" in text


def test_speechloop_serve_refuses_without_keys(tmp_path: Path) -> None:
    """``speechloop serve`` checks the keys before starting anything: exit 1, one line."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPEECHLOOP_")}
    env["SPEECHLOOP_STORE"] = f"file://{tmp_path / 'store'}"
    out = subprocess.run(
        [sys.executable, "-m", "speechloop.cli.main", "serve", "--port", "1"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 1
    assert "no API keys" in out.stderr and "Traceback" not in out.stderr


def test_not_ready_while_a_model_cannot_load(
    tmp_path_factory: pytest.TempPathFactory, realaudio: Path
) -> None:
    """With the ASR pin naming a version the registry lacks, the server is alive but not
    ready, ASR requests get 503 naming the missing version, the speaker side serves, and
    /v1/models says why."""
    from tests.integration.test_service_support import start_server

    server = start_server(
        tmp_path_factory, "svc-notready", wait_for="/livez", SPEECHLOOP_ASR_VERSION="no-such-v1"
    )
    try:
        clip = {"audio": ("a.wav", (realaudio / "zh_mid_5s.wav").read_bytes())}
        with server.client() as c:
            server.wait_until(
                lambda: c.post("/v1/speaker/embed", files=clip).status_code == 200,
                120,
                "the speaker model",
            )
            assert c.get("/readyz").status_code == 503
            resp = c.post("/v1/asr/transcribe", files=clip)
            assert resp.status_code == 503
            assert "no-such-v1" in resp.json()["error"]["message"]
            asr = {m["kind"]: m for m in c.get("/v1/models").json()["models"]}["asr"]
        assert asr["ready"] is False and "no-such-v1" in asr["last_error"]
    finally:
        server.stop()
