"""Writers killed with SIGKILL at random moments, on both backends (issue 12, finding 4).

Each round starts writer processes (``python -c`` with :data:`WRITER`): two registry
writers racing promote / rollback / publish on one models bucket, and one writer putting
self-checking objects (the first 64 bytes are the sha256 of the rest) into a data
bucket. After a random moment all of them are killed with SIGKILL. After every round:
the production alias is readable and names a complete version that verifies, and every
object reads as one whole write. After the last round: ``speechloop models verify``
passes, or ``models repair --prune`` makes it pass; the history is one chained line per
change; and on the local store, no staging file is left once the store is opened again
(after the grace period in which a fresh staging file may not be locked yet).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from speechloop.cli.main import app
from speechloop.config import get_settings
from speechloop.registry import ModelRegistry
from speechloop.storage.base import ObjectStore
from speechloop.storage.local import LocalStore
from speechloop.storage.s3 import MinioStore
from tests.integration.conftest import S3Server, unique_bucket
from tests.integration.test_faults_registry import assert_registry_sound
from tests.unit.test_registry import make_model

ROUNDS = 6
#: How long writers run before the kill, by backend (a promotion on moto takes ~0.3 s).
WINDOW_S = {"local": (0.05, 0.8), "s3": (0.4, 2.4)}
#: Largest object the put writer writes, by backend (moto serves one request at a time).
MAX_PUT = {"local": 1_500_000, "s3": 200_000}
#: Imports once, then forks a writer per ``start`` command (fresh processes in
#: milliseconds: importing the SDKs per writer would cost seconds per round on 2 cores),
#: and SIGKILLs and reaps all its writers on ``kill``, answering their exit statuses.
#: A writer logs one line per operation to its own file (flushed, so it survives a kill).
WRITERS = r"""
import hashlib, json, os, random, signal, sys
from pathlib import Path
from speechloop.errors import IntegrityError, SpeechloopError
from speechloop.registry import ModelRegistry
from speechloop.storage.local import LocalStore
from speechloop.storage.s3 import MinioStore


def operate(spec, store, reg, rng, n):
    if spec["mode"] == "puts":
        body = os.urandom(rng.randrange(1, spec["max_put"]))
        data = hashlib.sha256(body).hexdigest().encode() + body
        store.put_bytes(spec["data"], f"obj/{rng.randrange(4)}", data)
        return "put"
    r = rng.random()
    if r < 0.1:
        reg.publish("asr", Path(spec["src"]), metrics={"n": n}, lineage={})
        return "publish"
    if r < 0.7:
        production = reg.get_alias("asr", "production")
        names = [v for v in reg.list_versions("asr")
                 if production is None or v != production.version]
        reg.promote("asr", rng.choice(names), reason=f"writer {spec['seed']} op {n}")
        return "promote"
    reg.rollback("asr", reason=f"writer {spec['seed']} op {n}")
    return "rollback"


def run(spec):
    if spec["backend"] == "local":
        store = LocalStore(Path(spec["root"]))
    else:
        store = MinioStore(spec["endpoint"], access_key=spec["access_key"],
                           secret_key=spec["secret_key"], retries=2, backoff_s=0.01)
    reg = ModelRegistry(store, spec["models"])
    rng = random.Random(spec["seed"])
    with open(spec["log"], "a", buffering=1) as log:
        for n in range(10**9):
            try:
                log.write(operate(spec, store, reg, rng, n) + "\n")
            except IntegrityError as exc:
                log.write(f"IntegrityError {exc}\n")
            except SpeechloopError as exc:  # a rival's Conflict, no previous version
                log.write(f"refused {type(exc).__name__}: {exc}\n")


children = []
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    command = json.loads(line)
    if command["op"] == "start":
        pid = os.fork()
        if pid == 0:
            try:
                run(command["spec"])
            finally:
                os._exit(3)
        children.append(pid)
        print(json.dumps({"pid": pid}), flush=True)
    elif command["op"] == "kill":
        statuses = []
        for pid in children:
            os.kill(pid, signal.SIGKILL)
            statuses.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
        children = []
        print(json.dumps({"statuses": statuses}), flush=True)
"""


@dataclass
class Arena:
    """Where the writers write, how to reach it, and an observer on it."""

    backend: str
    store: ObjectStore
    models: str
    data: str
    spec: dict[str, Any]
    env: dict[str, str]

    @property
    def reg(self) -> ModelRegistry:
        """The registry as seen by the test process."""
        return ModelRegistry(self.store, self.models)


def _arena(backend: str, store: ObjectStore, spec: dict[str, Any], env: dict[str, str]) -> Arena:
    models, data = unique_bucket("models"), unique_bucket("data")
    store.ensure_bucket(models)
    store.ensure_bucket(data)
    spec = {**spec, "backend": backend, "models": models, "data": data}
    spec["max_put"] = MAX_PUT[backend]
    return Arena(backend, store, models, data, spec, {**env, "SPEECHLOOP_MODELS_BUCKET": models})


@pytest.fixture(params=["local", "s3"])
def arena(request: pytest.FixtureRequest, tmp_path: Path) -> Arena:
    """A fresh models and data bucket on one backend, with three published versions."""
    src = make_model(tmp_path / "src", 7)
    if request.param == "local":
        root = tmp_path / "store"
        spec = {"root": str(root), "src": str(src)}
        made = _arena("local", LocalStore(root), spec, {"SPEECHLOOP_STORE": f"file://{root}"})
    else:
        server: S3Server = request.getfixturevalue("s3_server")
        env = {
            "SPEECHLOOP_STORE": "s3://",
            "SPEECHLOOP_S3_ENDPOINT": server.endpoint,
            "SPEECHLOOP_S3_ACCESS_KEY": server.access_key,
            "SPEECHLOOP_S3_SECRET_KEY": server.secret_key,
        }
        spec = {
            "endpoint": server.endpoint,
            "access_key": server.access_key,
            "secret_key": server.secret_key,
            "src": str(src),
        }
        made = _arena("s3", MinioStore.from_settings(server.settings()), spec, env)
    for seed in range(3):
        model = make_model(tmp_path / f"v{seed}", seed)
        made.reg.publish("asr", model, metrics={"seed": seed}, lineage={})
    return made


# -- the rounds ----------------------------------------------------------------------------


class Writers:
    """The writer factory process (see :data:`WRITERS`)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WRITERS],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self._ask(None) == {"ready": True}

    def _ask(self, command: dict[str, Any] | None) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if command is not None:
            self.proc.stdin.write(json.dumps(command).encode() + b"\n")
            self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, f"writer factory died (status {self.proc.poll()})"
        answer: dict[str, Any] = json.loads(line)
        return answer

    def start(self, spec: dict[str, Any]) -> None:
        """Fork one writer running ``spec``."""
        self._ask({"op": "start", "spec": spec})

    def kill_all(self) -> list[int]:
        """SIGKILL every running writer; their exit statuses (-9 each)."""
        return list(self._ask({"op": "kill"})["statuses"])

    def close(self) -> None:
        """End the factory (its writers are killed first)."""
        with contextlib.suppress(AssertionError, OSError, ValueError):
            self.kill_all()
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def writers() -> Iterator[Writers]:
    """A writer factory, closed after the test."""
    factory = Writers()
    yield factory
    factory.close()


def kill_round(
    arena: Arena, writers: Writers, rng: random.Random, round_no: int, logs: Path
) -> list[str]:
    """Start the writers, let them run a random while, SIGKILL them; their log lines."""
    log = logs / f"round{round_no}.log"
    for i, mode in enumerate(["registry", "registry", "puts"]):
        spec = {**arena.spec, "mode": mode, "seed": 10 * round_no + i, "log": str(log)}
        writers.start(spec)
    time.sleep(rng.uniform(*WINDOW_S[arena.backend]))
    assert writers.kill_all() == [-signal.SIGKILL] * 3, "a writer died by itself"
    return log.read_text().splitlines() if log.exists() else []


def assert_objects_whole(store: ObjectStore, bucket: str) -> int:
    """Every object in ``bucket`` reads (checksum verified) as one whole write."""
    count = 0
    for info in store.list(bucket, "obj/"):
        data = store.get_bytes(bucket, info.key)
        assert data[:64].decode() == hashlib.sha256(data[64:]).hexdigest(), info.key
        count += 1
    return count


def assert_production_usable(reg: ModelRegistry) -> None:
    """The production alias reads, and names a complete version that verifies."""
    production = reg.get_alias("asr", "production")
    if production is not None:
        assert production.version in reg.list_versions("asr")
        reg.verify("asr", production.version)


# -- after the last round ------------------------------------------------------------------


@pytest.fixture
def cli_env(arena: Arena, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The CLI's settings pointed at the arena (settings cache cleared around)."""
    for name, value in arena.env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def models_cli(*args: str) -> tuple[int, str]:
    """Run ``speechloop models ARGS`` in-process: exit code and output."""
    result = CliRunner().invoke(app, ["models", *args])
    return result.exit_code, result.output


def leftover_temp_files(root: Path) -> list[Path]:
    """Files under the local store's staging area after it is opened in a new process,
    past the grace period (every staging entry is aged two minutes first)."""
    old = time.time() - 120
    for entry in (root / ".tmp").rglob("*"):
        os.utime(entry, (old, old), follow_symlinks=False)
    code = "import sys; from speechloop.storage.local import LocalStore; LocalStore(sys.argv[1])"
    subprocess.run([sys.executable, "-c", code, str(root)], check=True, timeout=60)
    return [p for p in (root / ".tmp").rglob("*") if p.is_file()]


@pytest.mark.timeout(120)
def test_writers_killed_at_random_moments(
    arena: Arena, writers: Writers, cli_env: None, tmp_path: Path
) -> None:
    """SIGKILLed registry and put writers, ROUNDS times: production stays usable and
    objects whole after every round; afterwards verify passes (after repair if needed),
    the history is one chained line per change, and no staging file is left."""
    rng = random.Random(20261201)
    done: list[str] = []
    for round_no in range(ROUNDS):
        lines = kill_round(arena, writers, rng, round_no, tmp_path)
        assert not [line for line in lines if "IntegrityError" in line], lines
        done += lines
        assert_production_usable(arena.reg)
        assert_objects_whole(arena.store, arena.data)
    assert done.count("promote") >= 2, "the writers hardly promoted anything"
    assert done.count("put") >= ROUNDS, "the put writer hardly wrote anything"

    code, output = models_cli("verify", "asr")
    if code != 0:
        code, output = models_cli("repair", "asr", "--prune")
        assert code == 0, f"models repair left problems:\n{output}"
        code, output = models_cli("verify", "asr")
    assert code == 0, f"models verify still fails after repair:\n{output}"
    assert_registry_sound(arena.reg)
    assert assert_objects_whole(arena.store, arena.data) > 0
    if arena.backend == "local":
        assert isinstance(arena.store, LocalStore)
        assert leftover_temp_files(arena.store.root) == []


def test_torn_production_alias_from_an_old_writer_has_a_way_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A production alias torn before the crash-safe commit existed (bytes that match no
    checksum record; finding 4 saw this in 4 of 4 kill runs): ``models repair`` rebuilds
    it, or at least ``models promote`` of a good version replaces it; either way the
    registry ends with production on a verified version and verify passing."""
    root = tmp_path / "store"
    store = LocalStore(root)
    store.ensure_bucket("speech-models")
    reg = ModelRegistry(store, "speech-models")
    v0, v1 = (
        reg.publish("asr", make_model(tmp_path / f"s{i}", i), metrics={}, lineage={}).version
        for i in range(2)
    )
    reg.promote("asr", v0, reason="first")
    reg.promote("asr", v1, reason="second")
    (root / "speech-models" / "asr" / "aliases" / "production").write_bytes(b'{"version": "x')
    monkeypatch.setenv("SPEECHLOOP_STORE", f"file://{root}")
    monkeypatch.setenv("SPEECHLOOP_MODELS_BUCKET", "speech-models")
    get_settings.cache_clear()
    try:
        assert models_cli("verify", "asr")[0] != 0
        models_cli("repair", "asr")
        if models_cli("verify", "asr")[0] != 0:
            code, output = models_cli("promote", "asr", v0, "--reason", "restore")
            assert code == 0, f"no way out of a torn production alias:\n{output}"
        code, output = models_cli("verify", "asr")
        assert code == 0, output
    finally:
        get_settings.cache_clear()
    assert_production_usable(reg)
