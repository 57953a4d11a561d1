"""Background servers of the story: the service and a local Prefect server.

Each runs as its own process group (so stopping it stops its workers), writes its
output to a log file and its pid to a pid file; a later run finds it through the pid
file and reuses it while it is alive and answering. Nothing here imports BentoML or
Prefect: they are started as commands (``speechloop serve``, ``prefect server start``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from speechloop.errors import ModelUnavailable

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Background:
    """A server started in the background: its name, address, log and pid files."""

    name: str
    url: str
    health: str  # path answering 200 when the server is up
    log: Path
    pidfile: Path

    def pid(self) -> int | None:
        """The pid recorded for this server, if that process is still alive."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:  # alive, someone else's: not ours to reuse
            return None
        return pid

    def healthy(self) -> bool:
        """Whether the health path answers 200."""
        try:
            return httpx.get(self.url + self.health, timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def running(self) -> bool:
        """Ours, alive and answering."""
        return self.pid() is not None and self.healthy()

    def start(self, cmd: list[str], env: Mapping[str, str], cwd: Path) -> int:
        """Start ``cmd`` in its own session with output to the log; its pid."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            proc = subprocess.Popen(
                cmd, cwd=cwd, env=dict(env), stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        self.pidfile.write_text(f"{proc.pid}\n")
        return proc.pid

    def wait_healthy(self, timeout_s: float, tick: Callable[[float], None] | None = None) -> float:
        """Wait until the server answers its health path; the seconds it took.
        ModelUnavailable (with the log's tail) if it exits or does not answer in time."""
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            if self.healthy():
                return time.monotonic() - started
            if self.pid() is None:
                raise ModelUnavailable(f"{self.name} exited while starting:\n{self.tail()}")
            if tick is not None:
                tick(time.monotonic() - started)
            time.sleep(0.5)
        raise ModelUnavailable(
            f"{self.name} did not answer {self.url}{self.health} in {timeout_s:.0f} s:\n"
            f"{self.tail()}"
        )

    def tail(self, lines: int = 25) -> str:
        """The last lines of the log."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout_s: float = 10.0) -> bool:
        """Stop the process group (SIGTERM, then SIGKILL); False if it was not running."""
        pid = self.pid()
        self.pidfile.unlink(missing_ok=True)
        if pid is None:
            return False
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            return False
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            time.sleep(0.2)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        return True


def service_command(port: int) -> list[str]:
    """``speechloop serve`` on loopback (it publishes seeds into an empty registry)."""
    return [str(BIN / "speechloop"), "serve", "--host", "127.0.0.1", "--port", str(port)]


def prefect_command(port: int) -> list[str]:
    """A local Prefect server (API and UI) on loopback."""
    return [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]


def port_free(port: int) -> bool:
    """Whether nothing listens on ``127.0.0.1:port``."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0
