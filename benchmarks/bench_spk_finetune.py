"""Fine-tuning recipes for the shipped seed speaker model: closed-set and open-set EER.

The question: which fine-tuning recipe makes the seed better on new voices (the ones it
is fine-tuned on) without making it worse on voices it never heard?

Data (all from the synthetic generator, partition 0, into local stores under
``.speechloop/bench_spk_ft``; skipped when already there):

- **new** rows: the ``finetune`` preset's speaker batches (held-out voices 0-7, 4 x 80
  utterances, ``pool="heldout"``), the voices the model is fine-tuned on;
- **seen** rows: the seed's own corpus (:func:`~speechloop.speaker.bootstrap.seed_corpus_spec`,
  the 24 seen voices, batches ``boot-0001``..``boot-0005``): the earlier committed
  batches a retraining run replays. A recipe's replay sample is drawn from them by the
  loop's own :func:`~speechloop.loop.training_set.sample_replay`, and the training and
  validation rows are split as the loop splits them (validation: the new batches' ``eval``
  rows), so a recipe here is what ``speechloop retrain spk`` would run;
- **closed** set: golden trials of the new voices 0-7 (other utterances): the model
  was fine-tuned on these voices, so it is a closed-set figure;
- **dev**: trials of held-out voices 8-15 (never trained on): recipes are chosen here,
  and the decision threshold is calibrated here (EER point);
- **test**: trials of held-out voices 16-23 (never trained on, never used for a choice or
  a threshold): the open-set result. Reported: EER and minDCF (threshold-free), and the
  false-accept / false-reject rates at the dev threshold (the decision users get).

Every set has 10 utterances per voice: 360 target and 360 non-target trials.

Selection rule (:func:`choose`, dev voices only, on the grid seed): among the recipes
whose closed-set EER is below the seed model's, the lowest dev EER; the test voices are
read only to report. The chosen recipe and the baseline are then run on further seeds
(``--confirm-seeds``) and reported as mean and range over seeds.

Intervals: 95% percentile bootstrap over trials (targets and non-targets resampled apart,
1,000 resamples) for EER, per run; Wilson intervals for the rates at the threshold.
Accuracy does not depend on machine load; the seconds do (the load average is recorded).

Each fine-tune runs in its own process with one torch thread (``--jobs`` at a time) and
writes ``runs/<recipe>-s<seed>/result.json`` (raw trial scores); a run already there is
reused unless ``--fresh``. Run::

    .venv/bin/python -m benchmarks.bench_spk_finetune --jobs 2

(a fine-tune takes 5-20 minutes on a busy 2-core machine). Writes
``benchmarks/results/spk_finetune.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.results_io import write_results

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".speechloop" / "bench_spk_ft"
RUNS = WORK / "runs"
RESULTS = ROOT / "benchmarks" / "results" / "spk_finetune.json"
#: Held-out voice ranges (partition 0) of the three trial sets.
SET_VOICES = {"closed": (0, 8), "dev": (8, 16), "test": (16, 24)}
EVAL_UTTS = 10  # per voice: 8 x C(10, 2) = 360 target trials per set
NEW_BATCHES = tuple(f"new-{i:04d}" for i in range(1, 5))
SEEN_BATCHES = tuple(f"boot-{i:04d}" for i in range(1, 6))
RESAMPLES = 1000
BASELINE = "current"


@dataclass(frozen=True)
class Recipe:
    """One fine-tuning recipe: seen rows replayed and the trainer's settings.

    Every setting that differs between recipes is spelled out (not left to
    ``finetune_config()``'s defaults), so a recipe means the same after the defaults move.
    """

    name: str
    about: str
    replay_rows: int = 0
    epochs: int = 8
    lr: float = 2e-4
    freeze_stages: int = 0
    warmup_epochs: float = 0.5
    margin_warmup_epochs: float = 1.0

    def train_config(self, seed: int) -> Any:
        """The trainer's config of this recipe for ``seed`` (one CPU thread)."""
        from speechloop.speaker.finetune.config import finetune_config

        return finetune_config(
            seed=seed, epochs=self.epochs, lr=self.lr, freeze_stages=self.freeze_stages,
            warmup_epochs=self.warmup_epochs, margin_warmup_epochs=self.margin_warmup_epochs,
            progress=False, threads=1,
        )  # fmt: skip


RECIPES = {
    r.name: r
    for r in (
        Recipe(BASELINE, "new rows only, finetune_config() defaults before issue 17"),
        Recipe("replay400", "+ 400 seen rows (~17 per seen voice)", replay_rows=400),
        Recipe("replay200", "+ 200 seen rows (the loop's default replay size)", replay_rows=200),
        Recipe("freeze2", "new rows only, stem and stages 1-2 frozen", freeze_stages=2),
        Recipe(
            "replay400-freeze2",
            "+ 400 seen rows, stem and stages 1-2 frozen",
            replay_rows=400,
            freeze_stages=2,
        ),
        Recipe(
            "replay200-gentle",
            "+ 200 seen rows, lr 1e-4, 4 epochs",
            replay_rows=200,
            epochs=4,
            lr=1e-4,
        ),
    )
}


@dataclass
class Data:
    """Everything a run reads: new rows, the seen batches' loader, the three trial sets."""

    new: list[Any]
    load_seen: Any
    sets: dict[str, Any] = field(default_factory=dict)


def eval_set(voices: tuple[int, int], where: Path, settings: Any) -> Any:
    """Golden speaker trials over held-out voices ``voices`` (partition 0)."""
    from speechloop.data.dataset import load_spk_eval_set
    from speechloop.data.synth.corpus import generate_corpus
    from speechloop.data.synth.voices import partition_voices
    from speechloop.speaker.bootstrap import BUCKET, seed_corpus_spec
    from speechloop.storage.local import LocalStore

    held = partition_voices(0).heldout[voices[0] : voices[1]]
    spec = seed_corpus_spec(
        batches=0, voices_heldout=tuple(v.id for v in held), n_voices_seen=2,
        spk_eval_utts=EVAL_UTTS,
    )  # fmt: skip
    store = LocalStore(where / "store", fsync=False)
    generate_corpus(store, BUCKET, spec, progress=False)
    return load_spk_eval_set(store, BUCKET, "golden", where, settings)


def prepare(settings: Any) -> Data:
    """Generate (once) and validate the new batches, the seen batches and the trial sets."""
    from speechloop.data.synth.corpus import generate_corpus
    from speechloop.speaker.bootstrap import BUCKET, seed_corpus_spec
    from speechloop.speaker.finetune.pipeline import batch_rows
    from speechloop.storage.local import LocalStore

    store = LocalStore(WORK / "store", fsync=False)
    new_spec = seed_corpus_spec(
        pool="heldout", batch_prefix="new", batches=len(NEW_BATCHES), spk_per_batch=80,
        with_eval=False,
    )  # fmt: skip
    seen_spec = seed_corpus_spec(batches=len(SEEN_BATCHES), with_eval=False)
    for spec in (new_spec, seen_spec):
        generate_corpus(store, BUCKET, spec, progress=False)

    def load_seen(batch_id: str) -> list[Any]:
        return batch_rows(store, BUCKET, [batch_id], WORK, settings)

    data = Data(batch_rows(store, BUCKET, list(NEW_BATCHES), WORK, settings), load_seen)
    data.sets = {
        n: eval_set(v, WORK / f"{n}-u{EVAL_UTTS}", settings) for n, v in SET_VOICES.items()
    }
    return data


def raw_scores(model: Any, sets: dict[str, Any]) -> dict[str, dict[str, list[Any]]]:
    """Trial scores and labels of ``model`` on every set (plain lists, for JSON)."""
    from speechloop.speaker.bootstrap import eval_set_metrics

    out: dict[str, dict[str, list[Any]]] = {}
    for name, s in sets.items():
        r = eval_set_metrics(model, s, None)
        out[name] = {"scores": [round(float(x), 6) for x in r["scores"]],
                     "labels": [bool(x) for x in r["labels"]]}  # fmt: skip
    return out


def run_one(recipe: Recipe, seed: int) -> dict[str, Any]:
    """Fine-tune the seed with ``recipe`` as the loop would; scores of the best epoch."""
    import copy
    import dataclasses

    import torch

    from speechloop.config import Settings
    from speechloop.loop.config import ReplayConfig
    from speechloop.loop.training_set import sample_replay
    from speechloop.speaker.finetune.pipeline import split_rows
    from speechloop.speaker.finetune.trainer import Trainer, ValidSet, all_pairs_trials
    from speechloop.speaker.loading import load_seed

    torch.set_num_threads(1)
    started = time.perf_counter()
    data = prepare(Settings(work_dir=WORK))
    replay_config = ReplayConfig(rows=recipe.replay_rows, batches=len(SEEN_BATCHES), seed=seed)
    replay, _ = sample_replay(SEEN_BATCHES, data.load_seen, replay_config)
    train, valid = split_rows(list(data.new) + list(replay))
    seed_model = load_seed()
    model = dataclasses.replace(seed_model, network=copy.deepcopy(seed_model.network))
    out = RUNS / f"{recipe.name}-s{seed}"
    shutil.rmtree(out, ignore_errors=True)
    config = recipe.train_config(seed)
    trainer = Trainer(model, train, ValidSet(valid, all_pairs_trials(valid)), out, config)
    result = trainer.fit(resume=False)
    return {
        "recipe": asdict(recipe),
        "seed": seed,
        "train_config": config.model_dump(mode="json"),
        "train_utterances": len(train),
        "train_speakers": len({r.speaker for r in train}),
        "replay_rows": len(replay),
        "replay_speakers": len({r.speaker for r in replay}),
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "seconds": round(time.perf_counter() - started, 1),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "raw": raw_scores(result.model, data.sets),
    }


def launch(name: str, seed: int, fresh: bool) -> Path:
    """Run one fine-tune in a child process (one thread) unless its result is there."""
    result = RUNS / f"{name}-s{seed}.json"
    if result.is_file() and not fresh:
        return result
    RUNS.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.bench_spk_finetune",
        "--one",
        name,
        "--seed",
        str(seed),
    ]
    with (RUNS / f"{name}-s{seed}.log").open("w") as log:
        done = subprocess.run(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode != 0:  # the others go on; the figures leave this run out
        print(f"{name} seed {seed} failed (rc {done.returncode}): see {log.name}", file=sys.stderr)
    return result


def seed_scores(data: Data) -> dict[str, Any]:
    """The seed model's scores on the three sets (cached like a run)."""
    from speechloop.speaker.loading import load_seed

    path = RUNS / "seed.json"
    if not path.is_file():
        RUNS.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"raw": raw_scores(load_seed(), data.sets)}))
    return dict(json.loads(path.read_text()))


# -- figures ----------------------------------------------------------------------------


def wilson(k: int, n: int) -> list[float]:
    """95% Wilson interval of a proportion k/n."""
    if n == 0:
        return [math.nan, math.nan]
    p, z = k / n, 1.96
    mid = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(mid - half, 4), round(mid + half, 4)]


def eer_interval(scores: np.ndarray, labels: np.ndarray, seed: int = 0) -> list[float]:
    """95% bootstrap interval of the EER (targets and non-targets resampled apart)."""
    from speechloop.speaker.metrics import compute_metrics

    rng = np.random.default_rng(seed)
    tgt, non = scores[labels], scores[~labels]
    y = np.concatenate([np.ones(len(tgt), bool), np.zeros(len(non), bool)])
    draws = []
    for _ in range(RESAMPLES):
        s = np.concatenate([rng.choice(tgt, len(tgt)), rng.choice(non, len(non))])
        draws.append(compute_metrics(s, y).eer)
    return [round(float(np.percentile(draws, 2.5)), 4), round(float(np.percentile(draws, 97.5)), 4)]


def figures(raw: dict[str, dict[str, list[Any]]]) -> dict[str, Any]:
    """EER, minDCF (with EER interval) on every set; the dev threshold applied to test."""
    from speechloop.speaker.calibration import calibrate
    from speechloop.speaker.metrics import compute_metrics

    out: dict[str, Any] = {}
    arrays = {
        n: (np.asarray(r["scores"], float), np.asarray(r["labels"], bool)) for n, r in raw.items()
    }
    for name, (s, y) in arrays.items():
        m = compute_metrics(s, y)
        out[name] = {"eer": round(m.eer, 4), "eer_ci95": eer_interval(s, y),
                     "min_dcf": round(m.min_dcf, 4), "n_target": m.n_target,
                     "n_nontarget": m.n_nontarget}  # fmt: skip
    threshold = calibrate(*arrays["dev"]).threshold
    s, y = arrays["test"]
    fa, fr = int((s[~y] >= threshold).sum()), int((s[y] < threshold).sum())
    out["test_at_dev_threshold"] = {
        "threshold": round(threshold, 4),
        "far": round(fa / int((~y).sum()), 4), "far_ci95": wilson(fa, int((~y).sum())),
        "frr": round(fr / int(y.sum()), 4), "frr_ci95": wilson(fr, int(y.sum())),
    }  # fmt: skip
    return out


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One recipe over its seeds: per-run figures, and mean / min / max EER per set."""
    per_run = [{"seed": r["seed"], **figures(r["raw"]),
                **{k: r[k] for k in ("best_epoch", "epochs_run", "seconds", "loadavg",
                                     "train_utterances", "train_speakers", "replay_rows",
                                     "replay_speakers")}}
               for r in runs]  # fmt: skip
    mean = {}
    for name in SET_VOICES:
        eers = [p[name]["eer"] for p in per_run]
        mean[name] = {"eer": round(float(np.mean(eers)), 4), "min": min(eers), "max": max(eers)}
    return {"recipe": runs[0]["recipe"], "seeds": [r["seed"] for r in runs], "mean": mean,
            "runs": per_run}  # fmt: skip


def choose(grid: dict[str, dict[str, Any]], seed_fig: dict[str, Any], seed: int) -> str:
    """The selection rule (dev voices only): among recipes whose closed-set EER (grid
    ``seed``) is below the seed model's, the lowest dev EER; the baseline when none is."""

    def run(name: str) -> dict[str, Any]:
        return next(r for r in grid[name]["runs"] if r["seed"] == seed)

    helps = [n for n in grid if run(n)["closed"]["eer"] < seed_fig["closed"]["eer"]]
    if not helps:
        return BASELINE
    return min(helps, key=lambda n: (run(n)["dev"]["eer"], run(n)["seconds"]))


# -- the run ------------------------------------------------------------------------------


def parse(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipes", default=",".join(RECIPES), help="comma-separated grid")
    p.add_argument("--seed", type=int, default=0, help="the grid's seed")
    p.add_argument("--confirm-seeds", default="1", help="more seeds: chosen and baseline")
    p.add_argument("--jobs", type=int, default=2, help="fine-tunes at a time")
    p.add_argument("--fresh", action="store_true", help="rerun runs already there")
    p.add_argument("--one", choices=sorted(RECIPES), help="internal: run one recipe, write it")
    return p.parse_args(argv)


def run_all(names: list[str], seeds: list[int], jobs: int, fresh: bool) -> None:
    """Every (recipe, seed) run, ``jobs`` child processes at a time."""
    pairs = [(n, s) for s in seeds for n in names]
    with ThreadPoolExecutor(max(1, jobs)) as pool:
        list(pool.map(lambda p: launch(p[0], p[1], fresh), pairs))


def load_runs(name: str, seeds: list[int]) -> list[dict[str, Any]]:
    """The results of ``name`` at ``seeds`` that exist."""
    paths = [RUNS / f"{name}-s{s}.json" for s in seeds]
    return [json.loads(p.read_text()) for p in paths if p.is_file()]


def main(argv: list[str] | None = None) -> None:
    """Run the grid, choose on dev, confirm on more seeds, write the figures."""
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args = parse(argv)
    if args.one:
        doc = run_one(RECIPES[args.one], args.seed)
        RUNS.mkdir(parents=True, exist_ok=True)
        write_results(RUNS / f"{args.one}-s{args.seed}.json", doc)
        return
    started, load_start = time.time(), [round(x, 2) for x in os.getloadavg()]
    names = [n for n in args.recipes.split(",") if n]
    from speechloop.config import Settings

    seed_fig = figures(seed_scores(prepare(Settings(work_dir=WORK)))["raw"])  # data made once
    run_all(names, [args.seed], args.jobs, args.fresh)
    names = [n for n in names if load_runs(n, [args.seed])]
    grid = {n: summarise(load_runs(n, [args.seed])) for n in names}
    chosen = choose(grid, seed_fig, args.seed)
    more = [int(s) for s in args.confirm_seeds.split(",") if s]
    run_all(sorted({chosen, BASELINE}), more, args.jobs, args.fresh)
    every = [args.seed, *more]
    recipes = {n: summarise(load_runs(n, every if n in (chosen, BASELINE) else [args.seed]))
               for n in names}  # fmt: skip
    doc = {
        "what": "fine-tuning recipes for the seed speaker model on held-out voices 0-7 (new "
        "rows), with seen-voice replay drawn from the seed corpus; closed set = voices 0-7, "
        "dev = voices 8-15 (choice, threshold), test = voices 16-23 (report only)",
        "selection": "dev only: among recipes whose closed-set EER (grid seed) is below the "
        "seed model's, the lowest dev EER",
        "grid_seed": args.seed,
        "chosen": chosen,
        "baseline": BASELINE,
        "seed_model": seed_fig,
        "recipes": recipes,
        "eval_utts_per_voice": EVAL_UTTS,
        "new_batches": list(NEW_BATCHES),
        "seen_batches": list(SEEN_BATCHES),
        "loadavg_start": load_start,
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "wall_s": round(time.time() - started, 1),
        "code_version": subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip(),
        "command": " ".join(["python -m benchmarks.bench_spk_finetune", *(argv or sys.argv[1:])]),
    }
    write_results(RESULTS, doc)
    table = {n: r["mean"] for n, r in recipes.items()}
    print(json.dumps({"chosen": chosen, "seed_model": {k: seed_fig[k]["eer"] for k in SET_VOICES},
                      "recipes": table}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
