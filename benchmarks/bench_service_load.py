"""Load on the HTTP service over loopback, side by side with ``funasr-server``.

Systems (each alone on the machine, one after the other; pick with ``--systems``):

- ``service``: ``bentoml serve service.app:Gateway`` as shipped (adaptive batching,
  ONNX float backend, ``SPEECHLOOP_THREADS`` = ``--threads``);
- ``service-nobatch``: the same with batching off (``max_batch_size=1`` on the ASR and
  speaker APIs, set by :mod:`benchmarks.service_nobatch` before BentoML reads them);
- ``service-int8``: the shipped service on the int8 ONNX graphs (batching on);
- ``funasr``: ``funasr-server --model-path DIR --device cpu`` (funasr 1.4.16) on the same
  model directory. Fair threads: funasr's ``AutoModel`` takes ``ncpu`` (torch threads,
  default 4, which oversubscribes 2 cores) from the model's ``config.yaml``, so its copy
  of the directory (symlinks) carries ``ncpu: --threads``. It has no verify endpoint and
  drops hotwords for Paraformer models, so the comparison is transcription without
  hotwords (our ``/v1/asr/transcribe`` vs its ``/v1/audio/transcriptions``).

Load: a closed loop of ``c`` concurrent clients (asyncio + httpx, in this process) for
``--duration`` seconds per level, ``c`` in ``--levels`` (1, 8, 32), cycling over the real
recordings of ``../shared/realaudio`` (verify: pairs of them). Requests/s, p50, p99,
audio seconds per second and errors per level. Then, for ``service``, a sustained mixed
run (transcribe and verify, concurrency 8) of ``--sustain`` seconds with the resident
memory (RSS) of all the server's processes before and after. Any failed request is an
error: the run exits 1 when there was one.

Models: ``--model full`` (default) is the full-size SeACo-Paraformer architecture with
random weights, built by :mod:`benchmarks.bench_asr_speed` (speed does not depend on the
values) and published with its ONNX graphs into a registry of its own under
``.speechloop/bench_service/`` (once; several minutes); ``--model seed`` uses the shipped
seed models (a fast smoke run). The speaker model is the shipped seed in both.

The machine's load average is recorded before and after every phase: figures taken
while other jobs run are not a fair comparison.

Run: ``.venv/bin/python -m benchmarks.bench_service_load`` (the record: 30 s per level,
5-minute sustained run; about 15 minutes plus the one-off model build), or a smoke run:
``... --model seed --duration 5 --sustain 20``. Writes
``benchmarks/results/service_load.json`` (``--out``) and the table in ``docs/results.md``
(between the ``service_load`` markers; ``--no-docs`` to skip).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from benchmarks.results_io import write_doc_block, write_results

ROOT = Path(__file__).resolve().parent.parent
AUDIO = ROOT.parent / "shared" / "realaudio"
CLIPS = ["zh_asr_example.wav", "sample_6s.wav", "zh_long_8s.wav", "zh_mid_5s.wav"]
WORK = ROOT / ".speechloop" / "bench_service"
RESULTS = ROOT / "benchmarks" / "results" / "service_load.json"
DOCS = ROOT / "docs" / "results.md"
DOC_BEGIN = "<!-- service_load:begin (written by benchmarks/bench_service_load.py) -->"
DOC_END = "<!-- service_load:end -->"
KEY = "bench-load-key-0123456789"
SYSTEMS = ("service", "service-nobatch", "service-int8", "funasr")


@dataclass
class Clip:
    """One recording: its bytes and duration."""

    name: str
    data: bytes
    seconds: float


def load_clips() -> list[Clip]:
    """The real recordings (WAV only: funasr-server and the service both take them)."""
    import soundfile as sf

    if not AUDIO.is_dir():
        raise SystemExit(f"real recordings not found at {AUDIO}")
    return [Clip(n, (AUDIO / n).read_bytes(), sf.info(AUDIO / n).duration) for n in CLIPS]


# -- models and stores ---------------------------------------------------------------------


def prepare(model: str, threads: int) -> tuple[Path, Path]:
    """(store dir whose production versions are the benchmark's models, ASR model dir)."""
    from speechloop.config import Settings
    from speechloop.context import build_context, seed_dir
    from speechloop.publishing import publish_model, publish_seed

    root = WORK / model
    store = root / "store"
    done = root / "READY"
    asr_dir = seed_dir("asr")
    if model == "full":
        from benchmarks import bench_asr_speed

        asr_dir = bench_asr_speed.MODEL_DIR
        if not (asr_dir / "READY").is_file():
            print("building the full-size model (once) ...", flush=True)
            bench_asr_speed.build_model_dir()
    if not done.is_file():
        shutil.rmtree(root, ignore_errors=True)
        ctx = build_context(Settings(store=f"file://{store}", work_dir=root / "work"))
        publish_seed(ctx, "spk")
        if model == "seed":
            publish_seed(ctx, "asr")
        else:
            print("publishing the full-size model with its ONNX graphs (once) ...", flush=True)
            info = publish_model(
                ctx, "asr", asr_dir, metrics={}, lineage={"source": "bench_service_load"}
            )
            ctx.registry.promote("asr", info.version, reason="benchmark model")
        shutil.rmtree(root / "work", ignore_errors=True)
        done.write_text("ok")
    return store, funasr_copy(asr_dir, root / "funasr_model", threads)


def funasr_copy(model_dir: Path, dest: Path, threads: int) -> Path:
    """``model_dir`` as symlinks, with ``ncpu: threads`` in its ``config.yaml``."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for path in model_dir.iterdir():
        if path.name != "config.yaml":
            (dest / path.name).symlink_to(path.resolve())
    config = (model_dir / "config.yaml").read_text()
    (dest / "config.yaml").write_text(config.rstrip("\n") + f"\nncpu: {threads}\n")
    return dest


# -- servers -------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _proc_table() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, VmRSS kB) of every process now."""
    table: dict[int, tuple[int, int]] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            rss = 0
            for line in (proc / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
            table[int(proc.name)] = (ppid, rss)
        except (OSError, ValueError, IndexError):
            continue
    return table


def tree_rss_mb(root: int) -> tuple[float, int]:
    """Resident memory (MiB) of ``root`` and all its descendants, and how many they are
    (BentoML's workers are children of its arbiter, in sessions of their own)."""
    table = _proc_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    todo, seen = [root], set()
    while todo:
        pid = todo.pop()
        if pid in seen or pid not in table:
            continue
        seen.add(pid)
        todo += children.get(pid, [])
    return round(sum(table[p][1] for p in seen) / 1024, 1), len(seen)


@dataclass
class Server:
    """A server process (its own process group) and where it answers."""

    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        """SIGTERM the group, SIGKILL after 30 s."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def rss_mb(self) -> float:
        """RSS of all the server's processes (MiB)."""
        return tree_rss_mb(self.process.pid)[0]

    def processes(self) -> int:
        """How many processes the server runs."""
        return tree_rss_mb(self.process.pid)[1]


def start(system: str, store: Path, funasr_dir: Path, threads: int) -> Server:
    """Start one system and wait until it is ready (model loaded)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPEECHLOOP_")}
    log = WORK / f"{system}.log"
    if system == "funasr":
        cmd = [str(Path(sys.executable).with_name("funasr-server")), "--host", "127.0.0.1",
               "--port", str(port), "--device", "cpu", "--model-path", str(funasr_dir)]  # fmt: skip
        ready = "/health"
    else:
        target = "benchmarks.service_nobatch:Gateway" if system == "service-nobatch" else None
        env.update(
            SPEECHLOOP_STORE=f"file://{store}",
            SPEECHLOOP_WORK_DIR=str(WORK / "work" / system),
            SPEECHLOOP_API_KEYS=KEY,
            SPEECHLOOP_THREADS=str(threads),
            SPEECHLOOP_ASR_BACKEND="onnx-int8" if system == "service-int8" else "onnx",
            SPEECHLOOP_LOG_LEVEL="WARNING",
            BENTOML_HOME=str(WORK / "bentoml"),
            BENTOML_DO_NOT_TRACK="true",
            PYTHONPATH=str(ROOT),
        )
        cmd = [sys.executable, "-m", "bentoml", "serve", target or "service.app:Gateway",
               "--host", "127.0.0.1", "--port", str(port), "--working-dir", str(ROOT)]  # fmt: skip
        ready = "/readyz"
    WORK.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = Server(system, f"http://127.0.0.1:{port}", proc, log)
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{system} exited:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            if httpx.get(server.url + ready, timeout=5).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(1.0)
    server.stop()
    raise RuntimeError(f"{system} not ready after 900 s; see {log}")


# -- load ----------------------------------------------------------------------------------


@dataclass
class Sample:
    """What one request took."""

    seconds: float
    ok: bool
    audio_s: float
    error: str = ""


@dataclass
class Request:
    """How to send one kind of request to one system."""

    path: str
    files: list[tuple[str, tuple[str, bytes, str]]]
    data: dict[str, str] = field(default_factory=dict)
    audio_s: float = 0.0


def make_request(system: str, endpoint: str, clips: list[Clip], i: int) -> Request:
    """The i-th request of ``endpoint`` (cycling over the clips)."""
    a, b = clips[i % len(clips)], clips[(i + 1) % len(clips)]
    if endpoint == "verify":
        files = [("audio", (a.name, a.data, "audio/wav")), ("audio", (b.name, b.data, "audio/wav"))]
        return Request("/v1/speaker/verify", files, audio_s=a.seconds + b.seconds)
    if system == "funasr":
        files = [("file", (a.name, a.data, "audio/wav"))]
        return Request("/v1/audio/transcriptions", files, {"model": "custom"}, a.seconds)
    return Request("/v1/asr/transcribe", [("audio", (a.name, a.data, "audio/wav"))], {}, a.seconds)


async def _one(client: httpx.AsyncClient, req: Request) -> Sample:
    started = time.perf_counter()
    try:
        resp = await client.post(req.path, files=req.files, data=req.data)
        ok = resp.status_code == 200
        error = "" if ok else f"{resp.status_code}: {resp.text[:200]}"
    except httpx.HTTPError as exc:
        ok, error = False, f"{type(exc).__name__}: {exc}"
    return Sample(time.perf_counter() - started, ok, req.audio_s if ok else 0.0, error)


async def run_load(
    server: Server, endpoints: list[str], concurrency: int, seconds: float, clips: list[Clip]
) -> tuple[list[Sample], float]:
    """``concurrency`` clients in a closed loop for ``seconds``; (samples, wall seconds).

    Clients take the endpoints in turn (client k sends ``endpoints[k % len]``)."""
    samples: list[Sample] = []
    headers = {"Authorization": f"Bearer {KEY}"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=server.url, headers=headers, timeout=600, limits=limits
    ) as client:
        started = time.perf_counter()
        stop_at = started + seconds

        async def worker(k: int) -> None:
            i = k
            endpoint = endpoints[k % len(endpoints)]
            while time.perf_counter() < stop_at:
                samples.append(await _one(client, make_request(server.name, endpoint, clips, i)))
                i += concurrency

        await asyncio.gather(*(worker(k) for k in range(concurrency)))
        return samples, time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (nearest rank) of ``values``."""
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * len(s) + 0.5) - 1))] if s else float("nan")


def summarise(samples: list[Sample], wall: float) -> dict[str, Any]:
    """Requests/s, p50/p99 (ms), audio s/s, errors (with the first messages)."""
    good = [s.seconds for s in samples if s.ok]
    errors = [s.error for s in samples if not s.ok]
    return {
        "requests": len(samples),
        "errors": len(errors),
        "error_examples": sorted(set(errors))[:3],
        "wall_s": round(wall, 2),
        "rps": round(len(good) / wall, 3) if wall else 0.0,
        "p50_ms": round(1000 * percentile(good, 0.50), 1) if good else None,
        "p99_ms": round(1000 * percentile(good, 0.99), 1) if good else None,
        "audio_s_per_s": round(sum(s.audio_s for s in samples) / wall, 2) if wall else 0.0,
    }


def load_avg() -> list[float]:
    """The machine's 1, 5 and 15-minute load averages."""
    return [round(x, 2) for x in os.getloadavg()]


# -- the benchmark -------------------------------------------------------------------------


def bench_system(system: str, args: argparse.Namespace, store: Path, funasr_dir: Path,
                 clips: list[Clip]) -> dict[str, Any]:  # fmt: skip
    """Start one system, warm it, run every level (and the sustained run), stop it."""
    endpoints = ["transcribe"] if system == "funasr" else ["transcribe", "verify"]
    started = time.perf_counter()
    server = start(system, store, funasr_dir, args.threads)
    out: dict[str, Any] = {"system": system, "start_s": round(time.perf_counter() - started, 1)}
    rows = []
    try:
        for endpoint in endpoints:  # warm-up: every clip once, then a short burst
            asyncio.run(run_load(server, [endpoint], 1, 0.1 * len(clips), clips))
            asyncio.run(run_load(server, [endpoint], 4, 2.0, clips))
        out["rss_mb_warm"], out["processes"] = server.rss_mb(), server.processes()
        for endpoint in endpoints:
            for c in args.levels:
                before = load_avg()
                samples, wall = asyncio.run(run_load(server, [endpoint], c, args.duration, clips))
                row = {"system": system, "endpoint": endpoint, "concurrency": c}
                row |= summarise(samples, wall) | {"load_before": before, "load_after": load_avg()}
                print(_row_line(row), flush=True)
                rows.append(row)
        if system == "service" and args.sustain > 0:
            out["sustained"] = sustained(server, args.sustain, clips)
        out["rss_mb_end"] = server.rss_mb()
    finally:
        server.stop()
    out["rows"] = rows
    return out


def sustained(server: Server, seconds: float, clips: list[Clip]) -> dict[str, Any]:
    """A mixed run (transcribe + verify, concurrency 8) with the RSS before and after."""
    rss_before = server.rss_mb()
    before = load_avg()
    samples, wall = asyncio.run(run_load(server, ["transcribe", "verify"], 8, seconds, clips))
    rss_after = server.rss_mb()
    result = summarise(samples, wall) | {
        "seconds": seconds,
        "concurrency": 8,
        "rss_mb_before": rss_before,
        "rss_mb_after": rss_after,
        "rss_growth_pct": round(100 * (rss_after - rss_before) / rss_before, 2),
        "load_before": before,
        "load_after": load_avg(),
    }
    print(f"sustained {seconds:.0f} s: {result}", flush=True)
    return result


def _row_line(row: dict[str, Any]) -> str:
    return (f"{row['system']:16} {row['endpoint']:10} c={row['concurrency']:<3} "
            f"{row['rps']:7.2f} req/s  p50 {row['p50_ms']} ms  p99 {row['p99_ms']} ms  "
            f"errors {row['errors']}  load {row['load_before']}")  # fmt: skip


def ratios(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """service vs funasr (transcribe): throughput ratio and p99s per concurrency, only
    where neither side had an error (a failing side's figures compare nothing)."""
    by = {(r["system"], r["endpoint"], r["concurrency"]): r for r in rows}
    out: dict[str, Any] = {}
    for (system, endpoint, c), row in by.items():
        base = by.get(("funasr", "transcribe", c))
        if system == "funasr" or endpoint != "transcribe" or not base:
            continue
        name = f"{system} vs funasr, c={c}"
        if row["errors"] or base["errors"] or not base["rps"]:
            out[name] = {"compared": False, "errors": [row["errors"], base["errors"]]}
            continue
        out[name] = {
            "compared": True,
            "throughput_x": round(row["rps"] / base["rps"], 2),
            "p99_ms": [row["p99_ms"], base["p99_ms"]],
        }
    return out


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--model", choices=("full", "seed"), default="full")
    p.add_argument("--systems", default=",".join(SYSTEMS), help=f"subset of {SYSTEMS}")
    p.add_argument("--levels", default="1,8,32", help="client concurrencies")
    p.add_argument("--duration", type=float, default=30.0, help="seconds per level")
    p.add_argument("--sustain", type=float, default=300.0, help="sustained run seconds (0: none)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 2, help="model threads")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--no-docs", action="store_true", help="do not rewrite docs/results.md")
    args = p.parse_args(argv)
    args.systems = [s for s in args.systems.split(",") if s]
    unknown = set(args.systems) - set(SYSTEMS)
    if unknown:
        p.error(f"unknown systems {sorted(unknown)}; choose from {SYSTEMS}")
    args.levels = [int(c) for c in args.levels.split(",")]
    return args


def main(argv: list[str]) -> int:
    """Run the benchmark; 1 when any request failed."""
    args = parse_args(argv)
    clips = load_clips()
    store, funasr_dir = prepare(args.model, args.threads)
    load_start = load_avg()
    systems = [bench_system(s, args, store, funasr_dir, clips) for s in args.systems]
    rows = [r for s in systems for r in s.pop("rows")]
    errors = sum(r["errors"] for r in rows) + sum(
        s.get("sustained", {}).get("errors", 0) for s in systems
    )
    doc = {
        "meta": {
            "command": "python -m benchmarks.bench_service_load " + " ".join(argv),
            "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "model": args.model,
            "clips": CLIPS,
            "cpus": os.cpu_count(),
            "threads": args.threads,
            "duration_s_per_level": args.duration,
            "load_avg_start": load_start,
            "load_avg_end": load_avg(),
            "errors_total": errors,
            "ratios": ratios(rows),
        },
        "systems": systems,
        "rows": rows,
    }
    write_results(args.out, doc)
    if not args.no_docs:
        write_docs(doc)
    print(f"wrote {args.out}; errors: {errors}")
    return 1 if errors else 0


# -- docs ----------------------------------------------------------------------------------


def table(doc: dict[str, Any]) -> str:
    """The markdown block for docs/results.md."""
    meta = doc["meta"]
    lines = [
        f"`{meta['command']}` — {meta['date_utc'][:16]}Z, model `{meta['model']}`, "
        f"{meta['cpus']} CPUs, {meta['threads']} model threads, "
        f"{meta['duration_s_per_level']:.0f} s per level; "
        f"load average {meta['load_avg_start']} at the start, "
        f"{meta['load_avg_end']} at the end.",
        "",
        "| system | endpoint | clients | req/s | p50 ms | p99 ms | audio s/s | errors "
        "| load (1 min) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in doc["rows"]:
        lines.append(
            f"| {r['system']} | {r['endpoint']} | {r['concurrency']} | {r['rps']:.2f} | "
            f"{r['p50_ms']} | {r['p99_ms']} | {r['audio_s_per_s']} | {r['errors']} | "
            f"{r['load_before'][0]} |"
        )
    for s in doc["systems"]:
        sus = s.get("sustained")
        if sus:
            lines += ["", f"Sustained ({s['system']}, {sus['seconds']:.0f} s, transcribe + verify, "
                      f"8 clients): {sus['requests']} requests, {sus['errors']} errors, "
                      f"{sus['rps']:.2f} req/s, p99 {sus['p99_ms']} ms; RSS of the serving "
                      f"processes {sus['rss_mb_before']} MiB -> {sus['rss_mb_after']} MiB "
                      f"({sus['rss_growth_pct']:+.1f}%)."]  # fmt: skip
    lines.append("")
    for name, r in meta["ratios"].items():
        if r["compared"]:
            lines.append(f"- {name}: {r['throughput_x']}x throughput, p99 {r['p99_ms'][0]} "
                         f"vs {r['p99_ms'][1]} ms")  # fmt: skip
        else:
            lines.append(f"- {name}: not compared, failed requests {r['errors'][0]} vs "
                         f"{r['errors'][1]}")  # fmt: skip
    return "\n".join(lines)


def write_docs(doc: dict[str, Any]) -> None:
    """Replace the block between the markers in docs/results.md (re-read just before)."""
    write_doc_block(DOCS, DOC_BEGIN, DOC_END, table(doc))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
