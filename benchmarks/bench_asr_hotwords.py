"""Hotword recall, precision and false alarms of an ASR model, as users pass lists.

Users send one list for many requests, not each utterance's own names. So every set is
decoded with:

- ``none``: no list;
- ``own``: each utterance's own names (name-free utterances: no list) -- the old headline;
- ``shared-N``: one list for every utterance: the set's own names first, then distractor
  names that no utterance speaks, N entries in all. N = the set's name count (30), 49 (the
  most the engine takes: funasr's ASF filter keeps the top 50 above 50), and 100 (the
  torch :class:`Transcriber` only, which has no filter; the engine refuses lists over 49
  with ``InvalidInput`` naming the count, so past capacity the service refuses rather than
  silently filters).

Scoring: every mode is scored against the same list of names that count (the 100-entry
shared list, a superset of all decoding lists), so a listed name written into a
hypothesis where the reference does not hold it is a false alarm in every mode. Recall:
recalled / reference name occurrences. Precision: recalled / listed names found in the
hypotheses. False alarms per 100 utterances, and the same on the name-free utterances
alone. CER over all utterances and over name-free ones. 95% intervals: percentile
bootstrap over utterances (2,000 resamples, seeded), so name occurrences of one
utterance stay together.

Sets (:mod:`benchmarks.asr_eval_sets`): ``tuning`` (the seed's golden set: many design
choices were read off it) and ``test`` (an untouched partition: other held-out voices and
names, new sentence seed, with name-free utterances).

Run: ``.venv/bin/python -m benchmarks.bench_asr_hotwords [--model-dir DIR] [--named 120
--name-free 60]`` (about 10 minutes on 2 loaded cores for the seed). Writes
``benchmarks/results/asr_hotwords.json``. Accuracy does not depend on machine load.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.asr_eval_sets import (
    TEST_SEED,
    EvalRow,
    distractor_names,
    golden_rows,
    test_rows,
)
from benchmarks.results_io import write_results

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "asr_hotwords.json"
LIST_SIZES = (30, 49, 100)
BOOTSTRAP = 2000
BATCH = 16


def shared_list(rows: Sequence[EvalRow], size: int) -> list[str]:
    """The set's own names (sorted), then distractors never spoken, ``size`` in all."""
    own = sorted({h for r in rows for h in r.hotwords})
    if size < len(own):
        raise ValueError(f"list of {size} cannot hold the set's {len(own)} names")
    return own + distractor_names(size - len(own))


def decode(
    transcriber: Any, rows: Sequence[EvalRow], mode: str, lists: dict[str, list[str]]
) -> list[str]:
    """Hypotheses of ``rows`` decoded in ``mode`` (none, own, shared-N)."""
    if mode == "own":
        return [
            transcriber.transcribe([r.wave], list(r.hotwords) or None, timestamps=False)[0].text
            for r in rows
        ]
    names = lists.get(mode)
    out: list[str] = []
    for i in range(0, len(rows), BATCH):
        waves = [r.wave for r in rows[i : i + BATCH]]
        out += [t.text for t in transcriber.transcribe(waves, names, timestamps=False)]
    return out


def _interval(values: np.ndarray, stat: Any, rng: np.random.Generator) -> list[float]:
    """95% percentile-bootstrap interval of ``stat`` over rows of ``values``."""
    n = len(values)
    picks = rng.integers(0, n, size=(BOOTSTRAP, n))
    draws = np.array([stat(values[p]) for p in picks])
    return [
        round(float(np.nanpercentile(draws, 2.5)), 4),
        round(float(np.nanpercentile(draws, 97.5)), 4),
    ]


def _ratio(a: np.ndarray, i: int, j: int) -> float:
    den = a[:, j].sum()
    return float(a[:, i].sum() / den) if den else float("nan")


def summarise(
    rows: Sequence[EvalRow], hyps: list[str], names: list[str], seed: int
) -> dict[str, Any]:
    """CER, recall, precision, false alarms (with intervals) of one decoding."""
    from speechloop.asr.metrics import score_utterance

    scores = [score_utterance(r.text, h, names) for r, h in zip(rows, hyps, strict=True)]
    # columns: edits, ref chars, ref names, recalled, hyp names, false alarms, name-free
    table = np.array(
        [
            [s.substitutions + s.deletions + s.insertions, s.ref_chars, s.hotword_ref,
             s.hotword_recalled, s.hotword_hyp, max(0, s.hotword_hyp - s.hotword_recalled),
             int(not r.hotwords)]
            for s, r in zip(scores, rows, strict=True)
        ],
        dtype=float,
    )  # fmt: skip
    rng = np.random.default_rng(seed)
    free = table[table[:, 6] == 1]

    def fa100(a: np.ndarray) -> float:
        return float(100 * a[:, 5].sum() / len(a)) if len(a) else float("nan")

    out: dict[str, Any] = {
        "utterances": len(rows),
        "name_free_utterances": len(free),
        "name_occurrences": int(table[:, 2].sum()),
        "cer": round(_ratio(table, 0, 1), 4),
        "cer_ci95": _interval(table, lambda a: _ratio(a, 0, 1), rng),
        "recall": round(_ratio(table, 3, 2), 4),
        "recall_ci95": _interval(table, lambda a: _ratio(a, 3, 2), rng),
        "precision": round(_ratio(table, 3, 4), 4),
        "precision_ci95": _interval(table, lambda a: _ratio(a, 3, 4), rng),
        "false_alarms": int(table[:, 5].sum()),
        "false_alarms_per_100": round(fa100(table), 2),
        "false_alarms_per_100_ci95": _interval(table, fa100, rng),
    }
    if len(free):
        out["name_free_cer"] = round(_ratio(free, 0, 1), 4)
        out["name_free_false_alarms_per_100"] = round(fa100(free), 2)
    return out


def evaluate_set(transcriber: Any, rows: list[EvalRow], label: str) -> dict[str, Any]:
    """Every decoding mode of one set, scored against the largest shared list."""
    lists = {f"shared-{n}": shared_list(rows, n) for n in LIST_SIZES}
    scoring = lists[f"shared-{max(LIST_SIZES)}"]
    report: dict[str, Any] = {"rows": len(rows), "modes": {}}
    baseline: list[str] = []
    for mode in ("none", "own", *lists):
        started = time.perf_counter()
        hyps = decode(transcriber, rows, mode, lists)
        baseline = hyps if mode == "none" else baseline
        res = summarise(rows, hyps, scoring, seed=len(rows))
        free = [i for i, r in enumerate(rows) if not r.hotwords]
        if free and mode != "none":
            res["name_free_changed"] = sum(hyps[i] != baseline[i] for i in free)
        res["seconds"] = round(time.perf_counter() - started, 1)
        report["modes"][mode] = res
        print(
            label,
            mode,
            {k: res[k] for k in ("cer", "recall", "precision", "false_alarms_per_100")},
            flush=True,
        )
    return report


def _git_commit() -> str:
    proc = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    return proc.stdout.strip()


def main(argv: list[str]) -> int:
    """Render both sets, decode every mode, write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=None, help="default: the shipped seed")
    parser.add_argument("--named", type=int, default=120, help="test rows with names")
    parser.add_argument("--name-free", type=int, default=60, help="test rows without names")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    import torch

    from speechloop.asr.bootstrap import SEED_DIR
    from speechloop.asr.inference import Transcriber
    from speechloop.asr.model import load_from_dir

    torch.set_num_threads(args.threads)
    model_dir = args.model_dir or SEED_DIR
    transcriber = Transcriber(load_from_dir(model_dir), max_hotwords=max(LIST_SIZES))
    sets = {
        "tuning": golden_rows(),
        "test": test_rows(args.named, args.name_free),
    }
    result: dict[str, Any] = {
        "model": str(model_dir.resolve().relative_to(ROOT))
        if model_dir.resolve().is_relative_to(ROOT)
        else str(model_dir),
        "sets": {
            "tuning": "the seed's golden set (held-out voices 0-7, names 0-29 of partition 0)",
            "test": f"untouched: held-out voices 8-15, names 30-59, sentence seed {TEST_SEED}; "
            f"{args.named} rows with names, {args.name_free} without",
        },
        "list_sizes": list(LIST_SIZES),
        "scoring": "names that count: the 100-entry shared list (own names + distractors)",
        "intervals": f"95% percentile bootstrap over utterances, {BOOTSTRAP} resamples",
        "threads": args.threads,
        "code_version": _git_commit(),
        "command": "python -m benchmarks.bench_asr_hotwords " + " ".join(argv),
    }
    for label, rows in sets.items():
        result[label] = evaluate_set(transcriber, rows, label)
    write_results(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
