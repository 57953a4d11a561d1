"""Harness for the service tests: a real ``bentoml serve service.app:Gateway`` process.

Not a test module itself (it holds no tests); the ``test_service_*`` modules start one
server each with :func:`start_server` in a module-scoped fixture.

- :func:`seeded_template`: once per session, a local file store whose registry holds
  both shipped seeds as first versions (with their ONNX graphs, made by
  :func:`speechloop.publishing.publish_seed`) and promoted to production; each server
  gets its own copy.
- :class:`Server`: the process (its own session, stopped by its process group), its
  base URL, its keys, a log file, and helpers for the registry it serves from.
- A ``torch`` package that refuses to import is put first on the server's
  ``PYTHONPATH``, so any import of torch in any of its processes fails loudly.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile as sf

from speechloop.config import Settings
from speechloop.context import AppContext, build_context
from tests.integration.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
KEYS = ("key-alpha-0123456789", "key-beta-9876543210")
_TORCH_BLOCK = (
    "raise ImportError('torch is blocked in the serving process (tests/integration/"
    "test_service_support.py): the ONNX backend must not need it')\n"
)


def settings_for(root: Path) -> Settings:
    """Core settings on the local store under ``root`` (what the server is given too)."""
    return Settings(store=f"file://{root / 'store'}", work_dir=root / "work")


def seeded_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with ``store/`` holding both seeds published and promoted (cached)."""
    root = tmp_path_factory.getbasetemp() / "service-template"
    done = root / ".done"
    if done.is_file():
        return root
    from speechloop.publishing import publish_seed

    ctx = build_context(settings_for(root))
    for kind in ("asr", "spk"):
        publish_seed(ctx, kind)
    shutil.rmtree(root / "work", ignore_errors=True)  # servers fetch their own copies
    done.write_text("ok")
    return root


def wav_bytes(samples: np.ndarray, rate: int = 16_000, subtype: str = "PCM_16") -> bytes:
    """WAV bytes of float samples (mono 1-D or frames x channels)."""
    buf = io.BytesIO()
    sf.write(buf, samples, rate, format="WAV", subtype=subtype)
    return buf.getvalue()


@dataclass
class Server:
    """A running ``bentoml serve`` of the gateway."""

    root: Path
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str] = field(repr=False)

    def client(self, key: str | None = KEYS[0], timeout: float = 120.0) -> httpx.Client:
        """An HTTP client with ``Authorization: Bearer key`` (None: no header)."""
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def context(self) -> AppContext:
        """A context on the server's store (for publishing / promoting in tests), with a
        work directory of its own (the server fetches into ``root/work``)."""
        settings = settings_for(self.root).model_copy(update={"work_dir": self.root / "tests"})
        return build_context(settings)

    def log(self) -> str:
        """The server's output so far."""
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        """Whether the server process still runs."""
        return self.process.poll() is None

    def stop(self) -> None:
        """Stop the server's process group (SIGTERM, then SIGKILL)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def wait_until(self, check: Any, timeout_s: float, what: str) -> Any:
        """Poll ``check()`` until it returns something truthy (fails with the log)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                raise AssertionError(
                    f"server exited while waiting for {what}:\n{self.log()[-6000:]}"
                )
            value = check()
            if value:
                return value
            time.sleep(0.25)
        raise AssertionError(f"timed out waiting for {what}:\n{self.log()[-6000:]}")

    def models(self) -> dict[str, Any]:
        """``GET /v1/models`` by kind."""
        with self.client() as c:
            body = c.get("/v1/models").json()
        return {m["kind"]: m for m in body["models"]} | {"_gateway": body}


def start_server(
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    *,
    via_cli: bool = False,
    wait_for: str = "/readyz",
    **env: str,
) -> Server:
    """Copy the seeded store, start the gateway on a free port, wait for ``wait_for``
    to answer 200.

    ``via_cli``: start it with ``speechloop serve`` (which execs ``bentoml serve``)."""
    template = seeded_template(tmp_path_factory)
    root = tmp_path_factory.mktemp(name)
    shutil.copytree(template / "store", root / "store")
    block = root / "blocktorch" / "torch"
    block.mkdir(parents=True)
    (block / "__init__.py").write_text(_TORCH_BLOCK)
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SPEECHLOOP_")}
    full_env.update(
        SPEECHLOOP_STORE=f"file://{root / 'store'}",
        SPEECHLOOP_WORK_DIR=str(root / "work"),
        SPEECHLOOP_API_KEYS=",".join(KEYS),
        SPEECHLOOP_WATCH_INTERVAL_S="0.5",
        SPEECHLOOP_THREADS="1",
        BENTOML_HOME=str(root / "bentoml"),
        BENTOML_DO_NOT_TRACK="true",
        PYTHONPATH=os.pathsep.join([str(root / "blocktorch"), str(ROOT)]),
    )
    full_env.update(env)
    log_path = root / "server.log"
    cmd = [sys.executable, "-m", "bentoml", "serve", "service.app:Gateway",
           "--host", "127.0.0.1", "--port", str(port), "--working-dir", str(ROOT)]  # fmt: skip
    if via_cli:
        cmd = [sys.executable, "-m", "speechloop.cli.main", "serve",
               "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=root,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(root, f"http://127.0.0.1:{port}", proc, log_path, full_env)
    try:
        server.wait_until(lambda: _answers(server.url + wait_for), 240, wait_for)
    except BaseException:
        server.stop()
        raise
    return server


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False
