"""How long the S3 backend takes to fail when the store is dead, stalled or refuses us.

Every case uses the default settings (``Settings()``: connect/read timeouts, retries,
back-off and retry budget) against a real S3 server process on loopback (moto) or a
socket that stands in for a dead one:

- ``refused``: nothing listens on the port (a stopped MinIO on a live host);
- ``no_answer``: a listening socket whose accept queue is full, so the kernel drops our
  connection attempts (a host that is down or firewalled: connects time out);
- ``paused``: the moto server process SIGSTOP'd (accepts connections, never replies);
- ``paused_mid_run``: the server SIGSTOP'd when a run, past its ledger scan, fetches
  the first of 24 audio files with 8 threads (only the run is timed);
- ``bad_credentials``: moto with authentication on and an unknown key.

For each case it times one store operation (``get_bytes``), a whole ingestion run
(``Ingestor.run``: the ledger scan, then the batch) and the CLI (``speechloop data
ingest`` in a subprocess, Python start-up included: ``cli_startup_s`` is ``data --help``
alone), and records the error line the CLI printed and how many lines it wrote to stderr.

    .venv/bin/python -m benchmarks.bench_store_failures [--cases refused paused ...]

Results: ``benchmarks/results/store_failures.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import urllib3
from pydantic import SecretStr

from benchmarks.results_io import write_results
from speechloop.config import Settings
from speechloop.data.ingest import Ingestor
from speechloop.errors import SpeechloopError
from speechloop.storage.s3 import MinioStore
from tests.integration.conftest import _MOTO_SINGLE_THREADED, _wait_until_listening, free_port

RESULTS = Path(__file__).resolve().parent / "results" / "store_failures.json"
ROOT = Path(__file__).resolve().parent.parent
BUCKET = "speech-data"
KEY = "testing"
CASES = ("refused", "no_answer", "paused", "paused_mid_run", "bad_credentials")
MID_RUN_ROWS = 24


@contextlib.contextmanager
def moto_server() -> Iterator[subprocess.Popen[bytes]]:
    """A single-threaded moto S3 server on a free loopback port (``proc.port`` set)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", _MOTO_SINGLE_THREADED, "127.0.0.1", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_until_listening(port, proc, timeout_s=30)
        proc.port = port  # type: ignore[attr-defined]
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGCONT)
        proc.terminate()
        proc.wait(timeout=10)


@contextlib.contextmanager
def full_backlog() -> Iterator[str]:
    """An endpoint whose SYNs are dropped: a listener that never accepts, queue filled."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    fillers = []
    for _ in range(4):  # fill the accept queue (and the SYN queue's tolerance) first
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(server.getsockname())
        fillers.append(filler)
    time.sleep(0.2)
    try:
        yield f"127.0.0.1:{server.getsockname()[1]}"
    finally:
        for sock in [*fillers, server]:
            sock.close()


def _seed_batch(endpoint: str, rows: int = 1) -> None:
    """One ASR batch of ``rows`` rows in the bucket, so a run has something to fetch."""
    store = MinioStore(endpoint, access_key=KEY, secret_key=KEY)
    store.ensure_bucket(BUCKET)
    lines = []
    for i in range(rows):
        store.put_bytes(BUCKET, f"asr/batches/b1/u{i}.wav", b"RIFF")
        lines.append(f'{{"id":"u{i}","audio":"u{i}.wav","text":"hi"}}\n')
    store.put_bytes(BUCKET, "asr/batches/b1/manifest.jsonl", "".join(lines).encode())


class _PausingStore(MinioStore):
    """Stops the server process (SIGSTOP) on the first audio fetch."""

    pid = 0

    def get_bytes(self, bucket: str, key: str) -> bytes:
        if key.endswith(".wav") and self.pid:
            os.kill(self.pid, signal.SIGSTOP)
        return super().get_bytes(bucket, key)


def paused_mid_run(proc: subprocess.Popen[bytes], endpoint: str, work: Path) -> dict[str, Any]:
    """Time a run whose server stops once the run has listed and read the manifest."""
    settings = Settings(
        store="s3://",
        s3_endpoint=endpoint,
        s3_access_key=SecretStr(KEY),
        s3_secret_key=SecretStr(KEY),
    )
    store = _PausingStore.from_settings(settings)
    assert isinstance(store, _PausingStore)
    store.pid = proc.pid
    run = Ingestor(store, BUCKET, work, "asr", settings, workers=8)
    return {"ingest_run": _timed(run.run)}


def _timed(func: Callable[[], object]) -> dict[str, Any]:
    start = time.monotonic()
    try:
        func()
        outcome, message = "succeeded", ""
    except SpeechloopError as exc:
        outcome, message = type(exc).__name__, str(exc)
    return {"seconds": round(time.monotonic() - start, 2), "outcome": outcome, "error": message}


def _cli(endpoint: str, access_key: str, work: Path) -> dict[str, Any]:
    env = {
        **os.environ,
        "SPEECHLOOP_STORE": "s3://",
        "SPEECHLOOP_S3_ENDPOINT": f"http://{endpoint}",
        "SPEECHLOOP_S3_ACCESS_KEY": access_key,
        "SPEECHLOOP_S3_SECRET_KEY": access_key,
        "SPEECHLOOP_WORK_DIR": str(work),
    }
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "speechloop.cli.main", "data", "ingest", "--kind", "asr"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=work,
    )
    lines = proc.stderr.strip().splitlines()
    return {
        "seconds": round(time.monotonic() - start, 2),
        "exit_code": proc.returncode,
        "stderr_lines": len(lines),
        "stderr": proc.stderr.strip()[:400],
    }


def cli_startup() -> float:
    """Seconds ``speechloop data --help`` takes: the CLI's share of the CLI figures."""
    start = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "speechloop.cli.main", "data", "--help"],
        capture_output=True,
        check=True,
        timeout=300,
    )
    return round(time.monotonic() - start, 2)


def measure(endpoint: str, access_key: str, work: Path) -> dict[str, Any]:
    """Time one operation, one ingestion run and the CLI against ``endpoint``."""
    settings = Settings(
        store="s3://",
        s3_endpoint=endpoint,
        s3_access_key=SecretStr(access_key),
        s3_secret_key=SecretStr(access_key),
        work_dir=work,
    )
    store = MinioStore.from_settings(settings)
    return {
        "get_bytes": _timed(lambda: store.get_bytes(BUCKET, "asr/batches/b1/manifest.jsonl")),
        "ingest_run": _timed(lambda: Ingestor(store, BUCKET, work, "asr", settings).run()),
        "cli_data_ingest": _cli(endpoint, access_key, work),
    }


def run_case(case: str, work: Path) -> dict[str, Any]:
    """Set up the fault of ``case`` and measure it."""
    if case == "refused":
        return measure(f"127.0.0.1:{free_port()}", KEY, work)
    if case == "no_answer":
        with full_backlog() as endpoint:
            return measure(endpoint, KEY, work)
    with moto_server() as proc:
        endpoint = f"127.0.0.1:{proc.port}"  # type: ignore[attr-defined]
        _seed_batch(endpoint, MID_RUN_ROWS if case == "paused_mid_run" else 1)
        if case == "paused_mid_run":
            return paused_mid_run(proc, endpoint, work)
        if case == "paused":
            os.kill(proc.pid, signal.SIGSTOP)
            return measure(endpoint, KEY, work)
        http = urllib3.PoolManager()
        http.request("POST", f"http://{endpoint}/moto-api/reset-auth", body=b"0")
        return measure(endpoint, "not-a-known-key", work)


def main() -> None:
    """Run the cases and write their figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    args = parser.parse_args()
    defaults = Settings()
    figures: dict[str, Any] = {
        "settings": {
            name: getattr(defaults, name)
            for name in (
                "store_connect_timeout_s",
                "store_read_timeout_s",
                "store_retries",
                "store_backoff_s",
                "store_retry_budget_s",
            )
        },
        "cli_startup_s": cli_startup(),
        "cases": {},
        "machine": platform.platform(),
        "python": platform.python_version(),
    }
    for case in args.cases:
        with tempfile.TemporaryDirectory(prefix=f"bench-{case}-") as tmp:
            figures["cases"][case] = result = run_case(case, Path(tmp))
        print(case, {k: v.get("seconds") for k, v in result.items()})
        print("   ", result.get("cli_data_ingest", result["ingest_run"]).get("stderr") or "")
    write_results(RESULTS, figures)


if __name__ == "__main__":
    main()
