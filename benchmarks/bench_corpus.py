"""Synthetic corpus generation rate in utterances per second (goal: >= 40 on 2 cores).

Generates a bootstrap-like corpus (``--batches`` batches of the ``bootstrap`` preset,
plus its golden evaluation sets unless ``--no-eval``) into a fresh LocalStore with
``spec.workers`` rendering processes, end to end: planning, espeak-ng/flite synthesis,
resampling, noise, encoding (WAV/FLAC/MP3 mix), upload, manifests. Also records the
CPU time per utterance of all processes (this one, the workers and the synthesiser
processes they run) and the load average: on a shared machine the wall-clock rate falls
with other processes' load, and ``cpu_bound_utt_per_s_on_2_cores`` is what two
otherwise idle cores would reach.

    .venv/bin/python -m benchmarks.bench_corpus [--batches 2] [--workers 2] [--no-eval]

Results: ``benchmarks/results/corpus.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

from benchmarks.results_io import write_results
from speechloop.data.synth import CorpusSpec, generate_corpus
from speechloop.storage.local import LocalStore

RESULTS = Path(__file__).resolve().parent / "results" / "corpus.json"
GOAL_UTT_PER_S = 40.0


def _cpu_s() -> float:
    """User + system CPU seconds of this process and its waited-for descendants."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    """Generate once, time it, write the results file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-eval", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    spec = CorpusSpec.preset("bootstrap").updated(
        {
            "batches": args.batches,
            "workers": args.workers,
            "seed": args.seed,
            "with_eval": not args.no_eval,
        }
    )
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-corpus-") as tmp:
        cpu_start = _cpu_s()
        report = generate_corpus(LocalStore(Path(tmp)), "speech-data", spec)
        cpu_s = _cpu_s() - cpu_start
    cpu_ms = 1000 * cpu_s / report.utterances
    figures = {
        "name": "corpus",
        "what": "synthetic corpus generation, end to end into a LocalStore",
        "command": f"python -m benchmarks.bench_corpus --batches {args.batches} "
        f"--workers {args.workers}" + (" --no-eval" if args.no_eval else ""),
        "spec": spec.model_dump(mode="json"),
        "utterances": report.utterances,
        "audio_seconds": report.audio_seconds,
        "seconds": report.seconds,
        "utt_per_s": round(report.utterances_per_s, 1),
        "audio_s_per_s": round(report.audio_seconds / report.seconds, 1),
        "cpu_ms_per_utt": round(cpu_ms, 1),
        "cpu_bound_utt_per_s_on_2_cores": round(2000 / cpu_ms, 1),
        "goal_utt_per_s": GOAL_UTT_PER_S,
        "meets_goal": report.utterances_per_s >= GOAL_UTT_PER_S,
        "load_avg_before": round(load, 2),
        "load_avg_after": round(os.getloadavg()[0], 2),
        "cpu_count": os.cpu_count(),
        "machine": platform.platform(),
        "python": platform.python_version(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_results(RESULTS, figures)
    keys = ("utterances", "seconds", "utt_per_s", "cpu_ms_per_utt",
            "cpu_bound_utt_per_s_on_2_cores", "load_avg_before", "meets_goal")  # fmt: skip
    print(json.dumps({k: figures[k] for k in keys}))


if __name__ == "__main__":
    main()
