"""Naive vs two-stage fine-tuning of SeACo-Paraformer, on equal terms.

Start: the shipped seed (pre-trained on the "bootstrap" corpus: seen voices, seen names).
New data: the "finetune" corpus preset (held-out voices and held-out names, 4 x 100 rows),
generated into a private local store and ingested. Two arms from the same seed, same
data, same epochs and learning rate:

- naive: every parameter trained on one objective, the sum of the ASR loss and the
  SeACo head's loss (what summing the losses and training everything does: the head's
  gradients reach the ASR part);
- two-stage: stage 1 ASR part on the ASR objective (hotword modules frozen), stage 2
  hotword modules on the SeACo objective (ASR part frozen), hotwords from the manifests
  and sampled from the transcripts.

Equal terms (issue 17):

- arms: ``naive-N`` (N epochs), ``naive-2N`` (2N epochs: the same number of optimiser
  steps as two-stage), ``two-stage-N+N`` (N epochs of stage 1, N of stage 2). naive-N
  against two-stage compares equal ASR-part epochs; naive-2N equal update budgets;
- one selection rule for every stage of every arm: the LAST epoch (patience above the
  epoch count, so nothing stops early and no stage picks its epoch on its own
  validation score -- before, naive picked on token accuracy and stage 2 on the head's
  accuracy);
- several seeds (``--seeds``): each seed draws its own fine-tuning corpus and training
  order; tables give the mean and the spread (min-max) over seeds, and per seed a 95%
  bootstrap interval over utterances;
- old data = the seed's own "seen" evaluation set (seen voices and names), which the
  seed's corpus planner kept out of every training batch, minus any utterance whose
  text is also in the fine-tuning rows: eval texts are disjoint from all training text
  (checked, counts recorded). New data = the fine-tuning spec's golden set (held-out
  voices and names; the fine-tuning batches avoid its sentences).

Reported for the seed and each arm: CER on old and new data without hotwords and with
each utterance's own names, and name recall.

    .venv/bin/python -m benchmarks.bench_asr_finetune --epochs 4 --seeds 0 1 [--replay N]

``--replay N``: both arms also train on N rows of the old data (a fixed sample of the
seed's own training rows, from the corpus ``speechloop bootstrap asr`` made), as a
retraining flow that mixes older batches into new ones would.

Results: ``benchmarks/results/asr_finetune.json`` (table in docs/asr.md).
Accuracy figures do not depend on machine load.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks.asr_eval_sets import EvalRow, render_row, seed_spec
from benchmarks.results_io import write_results

RESULTS = Path(__file__).resolve().parent / "results" / "asr_finetune.json"


def new_data(work: Path, seed: int, rows_per_batch: int) -> tuple[list[Any], list[Any]]:
    """Fine-tuning rows and new-data eval rows (the spec's golden set)."""
    from speechloop.asr.seed_recipe import ingested_rows
    from speechloop.config import get_settings
    from speechloop.data.dataset import load_asr_eval_set
    from speechloop.data.ingest import Ingestor
    from speechloop.data.synth.corpus import generate_corpus
    from speechloop.data.synth.spec import CorpusSpec
    from speechloop.storage.local import LocalStore

    spec = CorpusSpec.preset("finetune").model_copy(
        update={"seed": seed, "with_eval": True, "spk_per_batch": 0,
                "asr_per_batch": rows_per_batch, "asr_eval_golden": 80, "asr_eval_seen": 0}
    )  # fmt: skip
    store = LocalStore(work / "store")
    generate_corpus(store, "speech-data", spec, progress=True)
    settings = get_settings()
    Ingestor(store, "speech-data", work / "data", "asr", settings).run()
    asr_rows = ingested_rows(work)
    new = load_asr_eval_set(store, "speech-data", "golden", work / "data", settings)
    return asr_rows, new


def replay_rows(count: int, seed: int) -> list[Any]:
    """``count`` training rows of the seed's corpus (old voices, old names), sampled by seed."""
    import random

    from speechloop.asr.seed_recipe import (
        SEED_HEAD_UPDATE,
        corpus_dir,
        ingested_rows,
        split_head_rows,
    )
    from speechloop.config import get_settings

    work = corpus_dir(Path(get_settings().work_dir), "bootstrap", 0)
    rows = [r for r in ingested_rows(work) if r.split == "train"]
    if not rows:
        raise SystemExit(f"no seed corpus at {work}: run `speechloop bootstrap asr` first")
    old, _ = split_head_rows(rows, SEED_HEAD_UPDATE)
    return random.Random(seed).sample(old, min(count, len(old)))


def old_rows(train_texts: set[str]) -> tuple[list[EvalRow], int]:
    """The seed's "seen" eval set minus rows whose text is in ``train_texts``; (rows,
    how many were dropped)."""
    from speechloop.data.synth.plan import plan_eval_sets

    [seen] = [s for s in plan_eval_sets(seed_spec()) if s.prefix == "asr/eval/seen"]
    keep = [r for r in seen.rows if r.text not in train_texts]
    rendered = [render_row(r) for r in keep]
    return rendered, len(seen.rows) - len(keep)


def as_eval_rows(rows: list[Any]) -> list[EvalRow]:
    """Ingested rows (audio files) as in-memory evaluation rows."""
    from speechloop.asr.finetune.data import read_wave

    return [EvalRow(r.id, r.text, tuple(r.hotwords), "", read_wave(r)) for r in rows]


def evaluate(loaded: Any, sets: dict[str, list[EvalRow]], seed: int) -> dict[str, Any]:
    """CER and name recall (with 95% bootstrap intervals) per set, without and with each
    utterance's own names."""
    from benchmarks.bench_asr_hotwords import decode, summarise
    from speechloop.asr.inference import Transcriber

    tr = Transcriber(loaded)
    out: dict[str, Any] = {}
    for name, rows in sets.items():
        names = sorted({h for r in rows for h in r.hotwords})
        out[name] = {}
        for mode in ("none", "own"):
            res = summarise(rows, decode(tr, rows, mode, {}), names, seed)
            keys = ("cer", "cer_ci95", "recall", "recall_ci95", "precision")
            out[name][mode] = {k: res[k] for k in keys}
    return out


def run_stage(loaded: Any, rows: list[Any], stage: Any, cfg: Any, work: Path) -> dict[str, Any]:
    """Train one stage and keep its LAST epoch (the one selection rule of every arm)."""
    from dataclasses import replace as dc_replace

    from speechloop.asr.finetune import finetune_model

    snapshots: dict[int, dict[str, Any]] = {}

    def keep(record: dict[str, Any]) -> None:
        state = loaded.model.state_dict()
        snapshots[int(record["epoch"])] = {k: v.detach().clone() for k, v in state.items()}

    one = dc_replace(cfg, stages=(dc_replace(stage, patience=stage.epochs + 1),))
    tuned = finetune_model(loaded, rows, one, work_dir=work, on_epoch=keep, progress=False)
    last = max(snapshots)
    loaded.model.load_state_dict(snapshots[last])
    loaded.model.eval()
    summary: dict[str, Any] = tuned.summary()[0]
    summary["kept_epoch"] = last
    return summary


def arms(epochs: int, lr: float, seed: int, factor: float, threads: int) -> dict[str, Any]:
    """The compared arms: their stages, in order."""
    from speechloop.asr.finetune import FinetuneConfig
    from speechloop.asr.finetune.config import StageConfig

    base = replace(FinetuneConfig(seed=seed), num_threads=threads)
    return {
        f"naive-{epochs}": (base, [StageConfig("naive", epochs=epochs, lr=lr)]),
        f"naive-{2 * epochs}": (base, [StageConfig("naive", epochs=2 * epochs, lr=lr)]),
        f"two-stage-{epochs}+{epochs}": (
            base,
            [StageConfig("asr", epochs=epochs, lr=lr),
             StageConfig("hotword", epochs=epochs, lr=lr * factor)],
        ),
    }  # fmt: skip


def one_seed(args: argparse.Namespace, seed: int, seed_model: Any) -> dict[str, Any]:
    """Every arm for one seed: its own corpus draw, eval sets checked disjoint."""
    rows, new = new_data(args.work / f"seed-{seed}", seed, args.rows_per_batch)
    rows = rows + replay_rows(args.replay, seed) if args.replay else rows
    train_texts = {r.text for r in rows}
    old, dropped = old_rows(train_texts)
    new_eval = [r for r in as_eval_rows(new) if r.text not in train_texts]
    sets = {"old": old, "new": new_eval}
    out: dict[str, Any] = {
        "train_rows": len(rows),
        "old_eval_rows": len(old),
        "old_dropped_for_text_overlap": dropped,
        "new_eval_rows": len(new_eval),
        "new_dropped_for_text_overlap": len(new) - len(new_eval),
        "results": {"seed": evaluate(seed_model, sets, seed)} if "seed" in args.arms else {},
        "stages": {},
    }
    every = arms(args.epochs, args.lr, seed, args.hotword_lr_factor, args.threads)
    for name, (cfg, stages) in every.items():
        if name not in args.arms:
            continue
        loaded = copy.deepcopy(seed_model)
        cfg = replace(cfg, seed=seed)
        summaries = []
        for stage in stages:
            work = args.work / f"run-{seed}-{name}-{stage.kind}-{time.time_ns()}"
            summaries.append(run_stage(loaded, rows, stage, cfg, work))
        out["stages"][name] = summaries
        out["results"][name] = evaluate(loaded, sets, seed)
        print(seed, name, json.dumps(out["results"][name]), flush=True)
    return out


COLUMNS = [("old", "none", "cer"), ("old", "own", "cer"), ("old", "own", "recall"),
           ("new", "none", "cer"), ("new", "own", "cer"), ("new", "none", "recall"),
           ("new", "own", "recall")]  # fmt: skip


def over_seeds(per_seed: dict[str, Any]) -> dict[str, Any]:
    """Mean, min and max over seeds of every reported figure, per model."""
    models = next(iter(per_seed.values()))["results"].keys()
    out: dict[str, Any] = {}
    for model in models:
        out[model] = {}
        for data, mode, metric in COLUMNS:
            vals = [s["results"][model][data][mode][metric] for s in per_seed.values()]
            out[model][f"{data}/{mode}/{metric}"] = {
                "mean": round(sum(vals) / len(vals), 4), "min": min(vals), "max": max(vals),
            }  # fmt: skip
    return out


def main() -> None:
    """Run every arm for every seed and write the results file."""
    import torch

    from speechloop.asr.bootstrap import SEED_DIR
    from speechloop.asr.model import load_from_dir

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=4, help="N: naive-N, naive-2N, two-stage N+N")
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--rows-per-batch", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", type=Path, default=Path(".speechloop/work/bench-asr-finetune"))
    ap.add_argument("--model", type=Path, default=SEED_DIR, help="starting model directory")
    ap.add_argument("--hotword-lr-factor", type=float, default=10.0, help="stage 2 lr / lr")
    ap.add_argument("--out", type=Path, default=RESULTS, help="results file")
    ap.add_argument("--replay", type=int, default=0, help="old-data rows mixed into training")
    ap.add_argument(
        "--arms",
        nargs="+",
        default=["seed", "naive-N", "naive-2N", "two-stage"],
        help="subset to run (several processes share the cores better)",
    )
    ap.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        default=None,
        help="combine the results files of runs with --arms subsets and stop",
    )
    args = ap.parse_args()
    if args.merge:
        merge(args.merge, args.out)
        return
    args.arms = [_arm_name(a, args.epochs) for a in args.arms]
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    seed_model = load_from_dir(args.model, version="seed")
    per_seed = {str(s): one_seed(args, s, seed_model) for s in args.seeds}
    doc = {
        "benchmark": "asr_finetune",
        "what": "naive vs two-stage from the seed on new voices and names, equal terms",
        "selection": "last epoch of every stage (patience above the epoch count)",
        "epochs": args.epochs, "lr": args.lr, "stage2_lr": args.lr * args.hotword_lr_factor,
        "seeds": args.seeds, "replay_rows": args.replay, "rows_per_batch": args.rows_per_batch,
        "over_seeds": over_seeds(per_seed), "per_seed": per_seed,
        "seconds": round(time.perf_counter() - started, 1),
        "machine": {"threads": args.threads, "platform": platform.platform(),
                    "loadavg_end": [round(x, 2) for x in os.getloadavg()]},
        "code_version": subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True,
                                       text=True, check=False).stdout.strip(),
        "command": "python -m benchmarks.bench_asr_finetune " + " ".join(sys.argv[1:]),
    }  # fmt: skip
    write_results(args.out, doc)
    print(table(doc))


def _arm_name(arm: str, epochs: int) -> str:
    """``naive-N`` / ``naive-2N`` / ``two-stage`` / ``seed`` as the arm names of ``arms``."""
    return {
        "naive-N": f"naive-{epochs}",
        "naive-2N": f"naive-{2 * epochs}",
        "two-stage": f"two-stage-{epochs}+{epochs}",
    }.get(arm, arm)


def merge(paths: list[Path], out: Path) -> None:
    """One results file from runs that each ran some arms (same epochs, seeds split)."""
    docs = [json.loads(p.read_text()) for p in paths]
    per_seed: dict[str, Any] = {}
    for doc in docs:
        for seed, part in doc["per_seed"].items():
            into = per_seed.setdefault(seed, {**part, "results": {}, "stages": {}})
            into["results"].update(part["results"])
            into["stages"].update(part["stages"])
    merged = {**docs[0], "per_seed": per_seed, "over_seeds": over_seeds(per_seed),
              "seeds": sorted(int(s) for s in per_seed),
              "merged_from": [d["command"] for d in docs],
              "seconds": max(d["seconds"] for d in docs)}  # fmt: skip
    write_results(out, merged)
    print(table(merged))


def table(doc: dict[str, Any]) -> str:
    """Markdown table: mean over seeds (min-max) of each figure, in %."""
    lines = [
        "| model | old CER | old CER +hw | old recall +hw | new CER | new CER +hw "
        "| new recall | new recall +hw |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for model, figs in doc["over_seeds"].items():
        cells = []
        for data, mode, metric in COLUMNS:
            f = figs[f"{data}/{mode}/{metric}"]
            cells.append(f"{100 * f['mean']:.1f} ({100 * f['min']:.1f}-{100 * f['max']:.1f})")
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
