"""Fine-tuning the shipped seed speaker model on new voices: closed-set and open-set EER.

Data (all from the synthetic generator, partition 0, into local stores under
``.speechloop/bench_spk_ft``; skipped when already there):

- **train**: the ``finetune`` preset's speaker batches (held-out voices 0-7, 4 x 80
  utterances, ``pool="heldout"``), the voices the model is fine-tuned on;
- **closed** set: the bootstrap corpus's golden speaker trials (the same voices 0-7,
  other utterances): the figure reported before issue 17. The model was fine-tuned on
  these voices, so it is a closed-set result;
- **dev**: trials of held-out voices 8-15 (never trained on): the decision threshold is
  calibrated here (EER point);
- **test**: trials of held-out voices 16-23 (never trained on, never used for a
  threshold): the open-set result. Reported: EER and minDCF (threshold-free), and the
  false-accept / false-reject rates at the dev threshold (the decision users get).

Seed and fine-tuned model are scored on the same trials in the same run. Intervals: 95%
percentile bootstrap over trials (targets and non-targets resampled apart, 1,000
resamples) for EER; Wilson intervals for the rates at the threshold. Accuracy figures do
not depend on machine load.

Run: ``.venv/bin/python -m benchmarks.bench_spk_finetune`` (about 10-15 minutes on a busy
2-core machine). Writes ``benchmarks/results/spk_finetune.json``.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.results_io import write_results

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".speechloop" / "bench_spk_ft"
RESULTS = ROOT / "benchmarks" / "results" / "spk_finetune.json"
#: Held-out voice ranges (partition 0) of the calibration and test trials.
DEV_VOICES = (8, 16)
TEST_VOICES = (16, 24)
RESAMPLES = 1000


def eval_set(voices: tuple[int, int] | None, where: Path, settings: Any) -> Any:
    """The golden speaker trials over held-out voices ``voices`` (None: voices 0-7)."""
    from speechloop.data.dataset import load_spk_eval_set
    from speechloop.data.synth.corpus import generate_corpus
    from speechloop.data.synth.voices import partition_voices
    from speechloop.speaker.bootstrap import BUCKET, seed_corpus_spec
    from speechloop.storage.local import LocalStore

    update: dict[str, Any] = {"batches": 0}
    if voices is not None:
        held = partition_voices(0).heldout[voices[0] : voices[1]]
        update.update(voices_heldout=tuple(v.id for v in held), n_voices_seen=8)
    store = LocalStore(where / "store", fsync=False)
    generate_corpus(store, BUCKET, seed_corpus_spec(**update), progress=False)
    return load_spk_eval_set(store, BUCKET, "golden", where, settings)


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
    draws = []
    for _ in range(RESAMPLES):
        s = np.concatenate([rng.choice(tgt, len(tgt)), rng.choice(non, len(non))])
        y = np.concatenate([np.ones(len(tgt), bool), np.zeros(len(non), bool)])
        draws.append(compute_metrics(s, y).eer)
    return [round(float(np.percentile(draws, 2.5)), 4), round(float(np.percentile(draws, 97.5)), 4)]


def score_model(model: Any, sets: dict[str, Any], device: str | None) -> dict[str, Any]:
    """EER (with interval) on every set; dev-calibrated threshold applied to test."""
    from speechloop.speaker.bootstrap import eval_set_metrics
    from speechloop.speaker.calibration import calibrate

    out: dict[str, Any] = {}
    raw = {name: eval_set_metrics(model, s, device) for name, s in sets.items()}
    for name, r in raw.items():
        s, y = np.asarray(r["scores"], float), np.asarray(r["labels"], bool)
        out[name] = {**r["metrics"], "eer_ci95": eer_interval(s, y)}
    threshold = calibrate(raw["dev"]["scores"], raw["dev"]["labels"]).threshold
    s, y = np.asarray(raw["test"]["scores"], float), np.asarray(raw["test"]["labels"], bool)
    fa, fr = int((s[~y] >= threshold).sum()), int((s[y] < threshold).sum())
    out["test_at_dev_threshold"] = {
        "threshold": round(threshold, 4),
        "far": round(fa / int((~y).sum()), 4), "far_ci95": wilson(fa, int((~y).sum())),
        "frr": round(fr / int(y.sum()), 4), "frr_ci95": wilson(fr, int(y.sum())),
    }  # fmt: skip
    return out


def main() -> None:
    """Generate the data, fine-tune, score seed and fine-tuned model, write the figures."""
    import logging

    from speechloop.config import Settings
    from speechloop.data.synth.corpus import generate_corpus
    from speechloop.speaker.bootstrap import BUCKET, seed_corpus_spec
    from speechloop.speaker.finetune.config import finetune_config
    from speechloop.speaker.finetune.pipeline import batch_rows, finetune_on_rows
    from speechloop.speaker.loading import load_model_dir, load_seed
    from speechloop.storage.local import LocalStore

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    settings = Settings(work_dir=WORK)
    store = LocalStore(WORK / "store", fsync=False)
    new_spec = seed_corpus_spec(
        pool="heldout", batch_prefix="new", batches=4, spk_per_batch=80, with_eval=False
    )
    generate_corpus(store, BUCKET, new_spec, progress=sys.stderr.isatty())
    sets = {
        "closed": eval_set(None, WORK, settings),
        "dev": eval_set(DEV_VOICES, WORK / "dev", settings),
        "test": eval_set(TEST_VOICES, WORK / "test", settings),
    }
    batches = [f"new-{i:04d}" for i in range(1, 5)]
    rows = batch_rows(store, BUCKET, batches, WORK, settings)
    config = finetune_config(progress=sys.stderr.isatty())
    seed = load_seed()
    metrics = finetune_on_rows(
        seed, rows, sets["closed"], WORK / "run", config, version="spk-ft-bench", resume=False
    )
    tuned = load_model_dir(WORK / "run" / "best")
    doc = {
        "what": "seed vs fine-tuned on held-out voices 0-7; closed set = voices 0-7 (trained "
        "on), open set: threshold from dev voices 8-15, applied to test voices 16-23",
        "seed": score_model(seed, sets, config.device),
        "finetuned": score_model(tuned, sets, config.device),
        "trials": {n: len(s.trials) for n, s in sets.items()},
        "train_utterances": metrics["train_utterances"],
        "train_speakers": metrics["train_speakers"],
        "best_epoch": metrics["best_epoch"],
        "seconds": metrics["seconds"],
        "batches": batches,
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "code_version": subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip(),
        "command": "python -m benchmarks.bench_spk_finetune",
    }
    write_results(RESULTS, doc)
    print(json.dumps({k: doc[k] for k in ("seed", "finetuned", "trials")}, indent=1))


if __name__ == "__main__":
    main()
