"""Naive vs two-stage fine-tuning of SeACo-Paraformer (the field's claim, reproduced).

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

Reported for the seed and both arms: CER on the old data (the "seen" eval set: seen
voices and names; forgetting) and on the new data (the "golden" eval set of the same
spec: held-out voices and names, never in the fine-tuning batches' sentences), each
without hotwords and with each utterance's hotwords, and hotword recall.

    .venv/bin/python -m benchmarks.bench_asr_finetune [--epochs 6] [--lr 5e-4] [--replay N]

``--replay N``: both arms also train on N rows of the old data (a fixed sample of the
seed's own training rows, from the corpus ``speechloop bootstrap asr`` made), as a
retraining flow that mixes older batches into new ones would.

Results: ``benchmarks/results/asr_finetune.json`` (table in docs/asr.md).
"""

from __future__ import annotations

import argparse
import copy
import platform
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks.results_io import write_results

RESULTS = Path(__file__).resolve().parent / "results" / "asr_finetune.json"


def new_data(work: Path, seed: int, rows_per_batch: int) -> tuple[list[Any], list[Any], list[Any]]:
    """Fine-tuning rows, old-data eval rows (seen set), new-data eval rows (golden set)."""
    from speechloop.asr.seed_recipe import ingested_rows
    from speechloop.config import get_settings
    from speechloop.data.dataset import load_asr_eval_set
    from speechloop.data.ingest import Ingestor
    from speechloop.data.synth.corpus import generate_corpus
    from speechloop.data.synth.spec import CorpusSpec
    from speechloop.storage.local import LocalStore

    spec = CorpusSpec.preset("finetune").model_copy(
        update={"seed": seed, "with_eval": True, "spk_per_batch": 0,
                "asr_per_batch": rows_per_batch, "asr_eval_golden": 80, "asr_eval_seen": 80}
    )  # fmt: skip
    store = LocalStore(work / "store")
    generate_corpus(store, "speech-data", spec, progress=True)
    settings = get_settings()
    Ingestor(store, "speech-data", work / "data", "asr", settings).run()
    asr_rows = ingested_rows(work)
    old = load_asr_eval_set(store, "speech-data", "seen", work / "data", settings)
    new = load_asr_eval_set(store, "speech-data", "golden", work / "data", settings)
    return asr_rows, old, new


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


def evaluate(loaded: Any, old: list[Any], new: list[Any]) -> dict[str, Any]:
    """CER / hotword recall on old and new data, without and with hotwords."""
    from speechloop.asr.evaluation import evaluate_rows
    from speechloop.asr.inference import Transcriber

    tr = Transcriber(loaded)
    out = {}
    for name, rows in (("old", old), ("new", new)):
        rep = evaluate_rows(tr, rows, modes=("none", "own"))
        out[name] = {mode: {k: rep[mode][k] for k in ("cer", "hotword_recall", "hotword_precision")}
                     for mode in ("none", "own")}  # fmt: skip
    return out


def main() -> None:
    """Run both arms and write the results file."""
    import torch

    from speechloop.asr.bootstrap import SEED_DIR
    from speechloop.asr.finetune import FinetuneConfig, finetune_model
    from speechloop.asr.model import load_from_dir

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rows-per-batch", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", type=Path, default=Path(".speechloop/work/bench-asr-finetune"))
    ap.add_argument("--model", type=Path, default=SEED_DIR, help="starting model directory")
    ap.add_argument("--hotword-lr-factor", type=float, default=10.0, help="stage 2 lr / lr")
    ap.add_argument("--out", type=Path, default=RESULTS, help="results file")
    ap.add_argument("--replay", type=int, default=0, help="old-data rows mixed into training")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    rows, old, new = new_data(args.work, args.seed, args.rows_per_batch)
    rows = rows + replay_rows(args.replay, args.seed) if args.replay else rows
    seed_model = load_from_dir(args.model, version="seed")
    results: dict[str, Any] = {"seed": evaluate(seed_model, old, new)}
    arms = {
        "naive": replace(
            FinetuneConfig.naive(args.epochs, args.lr, args.seed), num_threads=args.threads
        ),
        "two_stage": replace(
            FinetuneConfig.two_stage(args.epochs, args.lr, args.seed, args.hotword_lr_factor),
            num_threads=args.threads,
        ),
    }
    timings = {}
    for name, cfg in arms.items():
        loaded = copy.deepcopy(seed_model)
        t0 = time.perf_counter()
        run_dir = args.work / f"run-{name}-{time.time_ns()}"
        tuned = finetune_model(loaded, rows, cfg, work_dir=run_dir, progress=False)
        timings[name] = round(time.perf_counter() - t0, 1)
        results[name] = evaluate(tuned.loaded, old, new)
        results[name]["stages"] = tuned.summary()
    doc = {
        "benchmark": "asr_finetune",
        "what": "naive vs two-stage fine-tuning from the seed on new voices and new hotwords",
        "train_rows": len(rows), "old_eval_rows": len(old), "new_eval_rows": len(new),
        "epochs": args.epochs, "lr": args.lr, "stage2_lr": args.lr * args.hotword_lr_factor,
        "seed": args.seed, "replay_rows": args.replay,
        "results": results, "train_seconds": timings,
        "seconds": round(time.perf_counter() - started, 1),
        "machine": {"threads": args.threads, "platform": platform.platform()},
        "command": f"python -m benchmarks.bench_asr_finetune --epochs {args.epochs} --lr {args.lr} "
        f"--threads {args.threads} --hotword-lr-factor {args.hotword_lr_factor} "
        f"--replay {args.replay}",
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_results(args.out, doc)
    print(table(doc))


def table(doc: dict[str, Any]) -> str:
    """Markdown table of the results."""

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.1f}"

    lines = [
        "| model | old CER | old CER +hw | new CER | new CER +hw | new recall | new recall +hw |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name in ("seed", "naive", "two_stage"):
        r = doc["results"][name]
        lines.append(
            f"| {name} | {pct(r['old']['none']['cer'])} | {pct(r['old']['own']['cer'])} | "
            f"{pct(r['new']['none']['cer'])} | {pct(r['new']['own']['cer'])} | "
            f"{pct(r['new']['none']['hotword_recall'])} | "
            f"{pct(r['new']['own']['hotword_recall'])} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
