"""What one retraining run costs: planning time against the store's history, one cycle's steps.

Two measurements (issue 14, "Cost growth"):

1. **growth**: the ``plan`` step of :mod:`speechloop.loop.retrain` (ingest the new complete
   batches, list the earlier committed ones, draw the replay sample, resolve the parent),
   timed through :func:`~speechloop.loop.retrain.plan_run` with 10 and with 200 earlier
   committed ASR batches in the store and the same new data (``--new-batches`` batches of
   ``--new-rows`` one-second clips). The history is written like a producer writes
   (audio first, manifest last) and consumed through the real ingestion and ledger commit,
   ten batches per run. Both backends: the local store, and the S3 backend against moto's
   S3 server as a separate process on loopback (started as the integration tests start
   it). Each repetition resets what the plan wrote (the new batches' ledger claims and
   quarantine reports, their local copies), so every timed plan ingests the new data
   from the store; earlier batches stay validated in the work directory, as on a worker
   that ran the earlier retrainings. Configurations run in rotated order; medians, min
   and max per configuration. One untimed extra plan per configuration counts the store
   calls (lists, objects listed, reads, writes), and the ledger survey
   (:meth:`~speechloop.data.ledger.Ledger.survey`, the part that looks at the history) is
   timed alone. Goal: 200 vs 10 grows less than 1.3x.
2. **cycle**: one ``retrain-asr`` and one ``retrain-spk`` run on the demo corpus
   (``StorySizes.demo()``, the seeds published first, new and faulty batches dropped, the
   demo's ``RetrainOptions(small=True, epochs=...)``) through the core use-cases
   :func:`~speechloop.loop.retrain_asr` / :func:`~speechloop.loop.retrain_spk` on the
   local store (no Prefect: the flows add their task bookkeeping around the same steps),
   with the seconds and share of each step from ``RetrainResult.timings``.

The load average is recorded before and after each part: the build machine is shared,
and figures taken under load say so.

    .venv/bin/python -m benchmarks.bench_retrain_cost [--parts growth cycle] [--reps 7]
        [--history 10 200] [--backends local s3] [--new-batches 2] [--new-rows 25]

Results: ``benchmarks/results/retrain_cost.json`` and the block between the
``retrain_cost`` markers in ``docs/results.md`` (``--no-docs`` to skip).
"""

from __future__ import annotations

import argparse
import builtins
import contextlib
import io
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from benchmarks.results_io import write_doc_block, write_results
from speechloop.config import Settings
from speechloop.context import AppContext
from speechloop.data.ingest import Ingestor, data_dir
from speechloop.data.ledger import Ledger
from speechloop.data.manifest import Kind
from speechloop.loop.config import RetrainConfig
from speechloop.loop.retrain import plan_run
from speechloop.storage.base import ObjectInfo, ObjectStore

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "retrain_cost.json"
DOCS = HERE.parent / "docs" / "results.md"
DOC_BEGIN = "<!-- retrain_cost:begin (written by benchmarks/bench_retrain_cost.py) -->"
DOC_END = "<!-- retrain_cost:end -->"
GOAL_GROWTH = 1.3
RATE = 16_000
KIND: Kind = "asr"
HISTORY_PER_RUN = 10  # earlier batches committed by each history run
STEPS = ("plan", "train", "score", "gate", "publish", "conclude")


def load_avg() -> list[float]:
    """The 1, 5 and 15 minute load averages, rounded."""
    return [round(x, 2) for x in os.getloadavg()]


# -- data ---------------------------------------------------------------------------------


def clip(rng: np.random.Generator, seconds: float = 1.0) -> bytes:
    """A short noisy tone as 16 kHz mono 16-bit WAV (ingestion decodes and checks it)."""
    t = np.arange(int(seconds * RATE)) / RATE
    tone = np.sin(2 * np.pi * rng.uniform(120, 300) * t) + 0.05 * rng.standard_normal(t.size)
    buf = io.BytesIO()
    sf.write(buf, (0.3 * tone).astype(np.float32), RATE, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def write_batch(store: ObjectStore, bucket: str, batch_id: str, rows: int, seed: int) -> None:
    """One ASR batch as a producer uploads it: audio first, manifest last."""
    rng = np.random.default_rng(seed)
    prefix = f"{KIND}/batches/{batch_id}"
    lines = []
    for i in range(rows):
        store.put_bytes(bucket, f"{prefix}/u{i}.wav", clip(rng))
        lines.append(json.dumps({"id": f"{batch_id}-u{i}", "audio": f"u{i}.wav",
                                 "text": f"order number {i} for batch {batch_id}"}))  # fmt: skip
    store.put_bytes(bucket, f"{prefix}/manifest.jsonl", ("\n".join(lines) + "\n").encode())


def new_batch_ids(n: int) -> list[str]:
    """The new data's batch ids (the same in every configuration)."""
    return [f"new-{i:04d}" for i in range(n)]


# -- stores -------------------------------------------------------------------------------


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """moto's S3 server as a separate single-threaded process on loopback; its endpoint."""
    from benchmarks.bench_store_failures import moto_server as moto_process

    with moto_process() as proc:
        yield f"127.0.0.1:{proc.port}"  # type: ignore[attr-defined]


def settings_for(backend: str, root: Path, endpoint: str | None) -> Settings:
    """Settings of one configuration: its own buckets (S3) or store directory (local)."""
    values: dict[str, object] = {"work_dir": root / "work"}
    if backend == "local":
        values["store"] = f"file://{root / 'store'}"
    else:
        suffix = uuid.uuid4().hex[:10]
        values |= {
            "store": "s3://", "s3_endpoint": endpoint, "s3_access_key": "testing",
            "s3_secret_key": "testing", "data_bucket": f"data-{suffix}",
            "models_bucket": f"models-{suffix}",
        }  # fmt: skip
    return Settings.model_validate(values)


class CountingStore(ObjectStore):
    """Delegates to ``inner`` and counts calls by method (and objects listed)."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()

    def ensure_bucket(self, bucket: str) -> None:
        self.calls["ensure_bucket"] += 1
        self.inner.ensure_bucket(bucket)

    def put_bytes(self, bucket: str, key: str, data: bytes, *, if_none_match: bool = False,
                  if_match: str | None = None) -> ObjectInfo:  # fmt: skip
        self.calls["put"] += 1
        return self.inner.put_bytes(bucket, key, data, if_none_match=if_none_match,
                                    if_match=if_match)  # fmt: skip

    def put_file(self, bucket: str, key: str, path: Path) -> ObjectInfo:
        self.calls["put"] += 1
        return self.inner.put_file(bucket, key, path)

    def get_bytes(self, bucket: str, key: str) -> bytes:
        self.calls["get"] += 1
        return self.inner.get_bytes(bucket, key)

    def get_file(self, bucket: str, key: str, dest: Path) -> ObjectInfo:
        self.calls["get"] += 1
        return self.inner.get_file(bucket, key, dest)

    def stat(self, bucket: str, key: str) -> ObjectInfo:
        self.calls["stat"] += 1
        return self.inner.stat(bucket, key)

    def exists(self, bucket: str, key: str) -> bool:
        self.calls["stat"] += 1
        return self.inner.exists(bucket, key)

    def list(
        self, bucket: str, prefix: str = "", *, start_after: str | None = None
    ) -> Iterator[ObjectInfo]:
        self.calls["list"] += 1
        for info in self.inner.list(bucket, prefix, start_after=start_after):
            self.calls["objects_listed"] += 1
            yield info

    def list_keys(self, bucket: str, prefix: str = "") -> builtins.list[str]:
        self.calls["list"] += 1
        keys = self.inner.list_keys(bucket, prefix)
        self.calls["objects_listed"] += len(keys)
        return keys

    def list_prefixes(self, bucket: str, prefix: str) -> builtins.list[str]:
        self.calls["list"] += 1
        names = self.inner.list_prefixes(bucket, prefix)
        self.calls["objects_listed"] += len(names)  # one entry per prefix
        return names

    def delete(self, bucket: str, key: str) -> None:
        self.calls["delete"] += 1
        self.inner.delete(bucket, key)


# -- part 1: growth -----------------------------------------------------------------------


@dataclass
class Setup:
    """One configuration: a backend and a history size, with its own store and work dir."""

    backend: str
    history: int
    settings: Settings
    new_ids: list[str]

    @property
    def name(self) -> str:
        return f"{self.backend}/{self.history}"

    def context(self, store: ObjectStore | None = None) -> AppContext:
        """A fresh context (as a run builds one), its store connected."""
        ctx = AppContext(self.settings, store=store)
        ctx.store.ensure_bucket(self.settings.data_bucket)
        return ctx


def build_setup(backend: str, history: int, root: Path, endpoint: str | None,
                new_batches: int, new_rows: int, history_rows: int) -> Setup:  # fmt: skip
    """Write and commit ``history`` earlier batches (ten per ingestion run), then drop
    the new batches (uncommitted)."""
    settings = settings_for(backend, root, endpoint)
    ctx = AppContext(settings)
    store, bucket = ctx.store, settings.data_bucket
    store.ensure_bucket(bucket)
    store.ensure_bucket(settings.models_bucket)
    ingestor = Ingestor(store, bucket, data_dir(settings), KIND, settings)
    for start in range(0, history, HISTORY_PER_RUN):
        ids = [f"hist-{i:04d}" for i in range(start, min(history, start + HISTORY_PER_RUN))]
        for batch_id in ids:
            write_batch(store, bucket, batch_id, history_rows, seed=int(batch_id[5:]))
        result = ingestor.run(f"run-history-{start:04d}", batch_ids=ids)
        ingestor.commit(result)
    committed = [s for s in ingestor.ledger.scan() if s.state == "committed"]
    if len(committed) != history:
        raise SystemExit(f"{backend}: {len(committed)} committed batches, expected {history}")
    ids = new_batch_ids(new_batches)
    for i, batch_id in enumerate(ids):
        write_batch(store, bucket, batch_id, new_rows, seed=10_000 + i)
    return Setup(backend, history, settings, ids)


def reset_plan(setup: Setup) -> None:
    """Undo what a plan wrote: the new batches' claims and quarantine reports in the store
    and their validated local copies (so the next plan ingests them from the store)."""
    ctx = setup.context()
    bucket = setup.settings.data_bucket
    for batch_id in setup.new_ids:
        for prefix in (f"{KIND}/ledger/{batch_id}/", f"{KIND}/quarantine/{batch_id}/"):
            for info in list(ctx.store.list(bucket, prefix)):
                ctx.store.delete(bucket, info.key)
        shutil.rmtree(data_dir(setup.settings) / KIND / "batches" / batch_id, ignore_errors=True)


def plan_once(setup: Setup, config: RetrainConfig, new_rows: int,
              store: ObjectStore | None = None) -> dict[str, Any]:  # fmt: skip
    """One timed plan on a reset state; checks it took exactly the new data."""
    reset_plan(setup)
    ctx = setup.context(store)
    load = os.getloadavg()[0]
    started = time.perf_counter()
    plan = plan_run(ctx, KIND, config)
    seconds = time.perf_counter() - started
    want_replay = min(config.replay.batches, setup.history)
    if (plan.ingest.batch_ids != setup.new_ids
            or len(plan.training.new) != new_rows * len(setup.new_ids)
            or len(plan.training.replay_batches) != want_replay):  # fmt: skip
        raise SystemExit(f"{setup.name}: unexpected plan {plan.training.summary()}")
    return {"seconds": round(seconds, 4), "load_1min": round(load, 2),
            "replay_rows": len(plan.training.replay)}  # fmt: skip


def survey_seconds(setup: Setup, reps: int) -> dict[str, float]:
    """The ledger survey alone (the part of the plan that looks at the history)."""
    ledger = Ledger(setup.context().store, setup.settings.data_bucket, KIND)
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        ledger.survey()
        times.append(time.perf_counter() - started)
    return spread(times)


def spread(values: list[float]) -> dict[str, float]:
    """Median, min and max of ``values`` (seconds)."""
    return {"median": round(statistics.median(values), 4), "min": round(min(values), 4),
            "max": round(max(values), 4), "n": len(values)}  # fmt: skip


def growth(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """Part 1: plan time per backend and history size, for each replay arm."""
    arms = {"small": RetrainConfig.small(), "default": RetrainConfig()}
    before = load_avg()
    with contextlib.ExitStack() as stack:
        endpoint = stack.enter_context(moto_server()) if "s3" in args.backends else None
        setups: list[Setup] = []
        build_s: dict[str, float] = {}
        for backend in args.backends:
            for history in args.history:
                started = time.perf_counter()
                where = root / f"{backend}-{history}"
                setups.append(build_setup(backend, history, where, endpoint, args.new_batches,
                                          args.new_rows, args.history_rows))  # fmt: skip
                build_s[f"{backend}/{history}"] = round(time.perf_counter() - started, 1)
                print(f"built {backend}/{history} in {build_s[f'{backend}/{history}']} s",
                      flush=True)  # fmt: skip
        cases = [(s, arm) for s in setups for arm in arms]
        for setup, arm in cases:  # warm-up: imports, connections, seed resolution
            plan_once(setup, arms[arm], args.new_rows)
        runs: dict[str, list[dict[str, Any]]] = {f"{s.name}/{a}": [] for s, a in cases}
        for rep in range(args.reps):
            shift = rep % len(cases)
            for setup, arm in cases[shift:] + cases[:shift]:
                runs[f"{setup.name}/{arm}"].append(plan_once(setup, arms[arm], args.new_rows))
            print(f"repetition {rep + 1}/{args.reps} done", flush=True)
        survey = {s.name: survey_seconds(s, args.reps) for s in setups}
        calls = {}
        for setup, arm in cases:
            counting = CountingStore(setup.context().store)
            plan_once(setup, arms[arm], args.new_rows, store=counting)
            calls[f"{setup.name}/{arm}"] = dict(sorted(counting.calls.items()))
    return {
        "what": "plan step (ingest new batches, list committed, replay sample, parent)",
        "new_batches": args.new_batches,
        "new_rows_per_batch": args.new_rows,
        "history_rows_per_batch": args.history_rows,
        "history_sizes": args.history,
        "backends": args.backends,
        "s3_server": "moto (single-threaded process on loopback)" if endpoint else None,
        "arms": {
            name: {"replay_rows": c.replay.rows, "replay_batches": c.replay.batches}
            for name, c in arms.items()
        },
        "reps": args.reps,
        "build_s": build_s,
        "seconds": {k: spread([r["seconds"] for r in v]) for k, v in runs.items()},
        "runs": runs,
        "store_calls": calls,
        "survey_s": survey,
        "ratios": ratios(runs, args),
        "load_avg_before": before,
        "load_avg_after": load_avg(),
    }


def ratios(runs: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> dict[str, Any]:
    """Largest vs smallest history per backend and arm: ratio of medians, and the range of
    per-repetition ratios (repetition i of one against repetition i of the other)."""
    small, large = min(args.history), max(args.history)
    out: dict[str, Any] = {}
    for key in runs:
        backend, history, arm = key.split("/")
        if int(history) != small:
            continue
        lo = [r["seconds"] for r in runs[key]]
        hi = [r["seconds"] for r in runs[f"{backend}/{large}/{arm}"]]
        per_rep = [h / low for h, low in zip(hi, lo, strict=True)]
        ratio = statistics.median(hi) / statistics.median(lo)
        out[f"{backend}/{arm}"] = {
            "ratio_of_medians": round(ratio, 3),
            "per_rep_min": round(min(per_rep), 3),
            "per_rep_max": round(max(per_rep), 3),
            "meets_goal": ratio < GOAL_GROWTH,
        }
    return out


# -- part 2: one cycle --------------------------------------------------------------------


def cycle(root: Path) -> dict[str, Any]:
    """Part 2: one retrain-asr and one retrain-spk run on the demo corpus (local store)."""
    from speechloop.demo.story import (
        StorySizes,
        drop_faulty_batches,
        drop_new_batches,
        generate_base,
    )
    from speechloop.loop import retrain_asr, retrain_spk
    from speechloop.loop.config import RetrainOptions
    from speechloop.publishing import publish_seed

    sizes = StorySizes.demo()
    settings = Settings.model_validate({"store": f"file://{root / 'store'}",
                                        "work_dir": root / "work"})  # fmt: skip
    ctx = AppContext(settings)
    started = time.perf_counter()
    generate_base(ctx, sizes)
    for kind in ("asr", "spk"):
        publish_seed(ctx, kind)
    drop_new_batches(ctx, sizes)
    drop_faulty_batches(ctx)
    setup_s = time.perf_counter() - started
    out: dict[str, Any] = {"corpus": "StorySizes.demo()", "setup_s": round(setup_s, 1),
                           "runs": {}}  # fmt: skip
    for kind, epochs, run in (("asr", sizes.asr_epochs, retrain_asr),
                              ("spk", sizes.spk_epochs, retrain_spk)):  # fmt: skip
        options = RetrainOptions(small=True, epochs=epochs, reason=f"bench: retrain-{kind}")
        before = load_avg()
        started = time.perf_counter()
        result = run(ctx, options.to_config())
        wall = time.perf_counter() - started
        out["runs"][kind] = cycle_figures(result.to_dict(), wall, epochs, before)
        print(f"retrain-{kind}: {json.dumps(out['runs'][kind])}", flush=True)
    return out


def cycle_figures(result: dict[str, Any], wall: float, epochs: int,
                  before: list[float]) -> dict[str, Any]:  # fmt: skip
    """Wall time, seconds and share of each step; what the run trained on and decided."""
    timings = {step: result["timings"].get(step, 0.0) for step in STEPS}
    other = max(0.0, wall - sum(timings.values()))
    return {
        "wall_s": round(wall, 1),
        "steps_s": timings,
        "other_s": round(other, 2),  # the lease, the result, outside every step
        "shares": {step: round(s / wall, 3) for step, s in timings.items()},
        "status": result["status"],
        "epochs": epochs,
        "training": {k: result["training"].get(k) for k in ("new_rows", "replay_rows")},
        "quarantined": result["quarantined"],
        "load_avg_before": before,
        "load_avg_after": load_avg(),
    }


# -- output -------------------------------------------------------------------------------


def command(args: argparse.Namespace) -> str:
    """The command line that reproduces the figures."""
    return (f"python -m benchmarks.bench_retrain_cost --parts {' '.join(args.parts)} "
            f"--reps {args.reps} --history {' '.join(map(str, args.history))} "
            f"--backends {' '.join(args.backends)} --new-batches {args.new_batches} "
            f"--new-rows {args.new_rows} --history-rows {args.history_rows}")  # fmt: skip


def markdown(doc: dict[str, Any]) -> str:
    """The docs/results.md block: the growth table and the cycle table."""
    lines: list[str] = []
    g = doc.get("growth")
    if g:
        lines += [
            f"`{g['command']}` — {g['measured_at']}, {doc['cpu_count']} CPUs.",
            "",
            f"Plan step, {g['new_batches']} new batches x {g['new_rows_per_batch']} rows, "
            f"history batches of {g['history_rows_per_batch']} rows, {g['reps']} repetitions "
            f"in rotated order; load average {g['load_avg_before']} before, "
            f"{g['load_avg_after']} after.",
            "",
            "| backend | replay cap (rows / batches) | history | median s | min-max s | "
            "survey ms | objects listed | lists | reads |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for key, s in g["seconds"].items():
            backend, history, arm = key.split("/")
            cap = g["arms"][arm]
            calls = g["store_calls"][key]
            lines.append(
                f"| {backend} | {arm} ({cap['replay_rows']} / {cap['replay_batches']}) | "
                f"{history} | {s['median']:.3f} | {s['min']:.3f}-{s['max']:.3f} | "
                f"{1000 * g['survey_s'][f'{backend}/{history}']['median']:.1f} | "
                f"{calls.get('objects_listed', 0)} | {calls.get('list', 0)} | "
                f"{calls.get('get', 0)} |"
            )
        lines.append("")
        for key, r in g["ratios"].items():
            verdict = "meets" if r["meets_goal"] else "misses"
            lines.append(f"- {key}: {max(g['history_sizes'])} vs {min(g['history_sizes'])} "
                         f"batches {r['ratio_of_medians']}x (per repetition "
                         f"{r['per_rep_min']}-{r['per_rep_max']}x); {verdict} the "
                         f"< {GOAL_GROWTH}x goal")  # fmt: skip
    c = doc.get("cycle")
    if c:
        lines += [
            "",
            f"`{c['command']}` — {c['measured_at']}, {doc['cpu_count']} CPUs.",
            "",
            f"One cycle each on the demo corpus ({c['corpus']}; corpus, seeds and batches "
            f"written in {c['setup_s']} s beforehand), core use-case on the local store:",
            "",
            "| run | wall s | " + " | ".join(STEPS) + " | status | load before / after |",
            "| --- | ---: | " + " | ".join("---:" for _ in STEPS) + " | --- | --- |",
        ]
        for kind, r in c["runs"].items():
            cells = " | ".join(f"{r['steps_s'][s]:.1f} ({100 * r['shares'][s]:.0f}%)"
                               for s in STEPS)  # fmt: skip
            lines.append(f"| retrain-{kind} | {r['wall_s']} | {cells} | {r['status']} | "
                         f"{r['load_avg_before'][0]} / {r['load_avg_after'][0]} |")  # fmt: skip
    return "\n".join(lines).strip()


def write_docs(doc: dict[str, Any]) -> None:
    """Replace the block between the markers in docs/results.md (re-read just before)."""
    write_doc_block(DOCS, DOC_BEGIN, DOC_END, markdown(doc))


def main(argv: list[str]) -> int:
    """Run the selected parts, write the results file (merged with earlier parts) and docs."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--parts", nargs="+", choices=("growth", "cycle"),
                        default=["growth", "cycle"])  # fmt: skip
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--history", type=int, nargs=2, default=[10, 200])
    parser.add_argument("--backends", nargs="+", choices=("local", "s3"), default=["local", "s3"])
    parser.add_argument("--new-batches", type=int, default=2)
    parser.add_argument("--new-rows", type=int, default=25)
    parser.add_argument("--history-rows", type=int, default=3)
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args(argv)
    doc: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    doc |= {"name": "retrain_cost", "command": command(args), "cpu_count": os.cpu_count(),
            "machine": platform.platform(), "python": platform.python_version(),
            "measured_at": time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime())}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-retrain-cost-") as tmp:
        if "growth" in args.parts:
            doc["growth"] = growth(args, Path(tmp) / "growth")
            doc["growth"] |= {"command": command(args), "measured_at": doc["measured_at"]}
            print(json.dumps(doc["growth"]["ratios"]), flush=True)
        if "cycle" in args.parts:
            doc["cycle"] = cycle(Path(tmp) / "cycle")
            doc["cycle"] |= {"command": command(args), "measured_at": doc["measured_at"]}
    write_results(RESULTS, doc)
    if not args.no_docs:
        write_docs(doc)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
