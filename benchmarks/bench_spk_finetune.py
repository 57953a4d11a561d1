"""Fine-tuning the shipped seed speaker model on new (held-out) voices: golden EER before/after.

1. The golden speaker set of the bootstrap corpus (the seed never saw its 8 held-out
   voices) and the ``finetune`` preset's speaker batches (the same 8 voices, other
   utterances: ``pool="heldout"``) are generated into a local store under
   ``.speechloop/bench_spk_ft`` (skipped when already there);
2. :func:`speechloop.speaker.finetune.pipeline.finetune_on_rows` fine-tunes the seed
   (fresh AAM-softmax head for the 8 voices, lr 1/10 of pre-training, warm-up then
   cosine, augmentation, early stopping on the batches' own validation rows) and scores
   the seed and the fine-tuned model on the same golden trials in the same run.

Run: ``.venv/bin/python -m benchmarks.bench_spk_finetune`` (about 8-12 minutes on a busy
2-core machine). Writes ``benchmarks/results/spk_finetune.json``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from benchmarks.results_io import write_results

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".speechloop" / "bench_spk_ft"
RESULTS = ROOT / "benchmarks" / "results" / "spk_finetune.json"


def main() -> None:
    """Generate the data, fine-tune, write the figures."""
    import logging

    from speechloop.config import Settings
    from speechloop.data.dataset import load_spk_eval_set
    from speechloop.data.synth.corpus import generate_corpus
    from speechloop.speaker.bootstrap import BUCKET, seed_corpus_spec
    from speechloop.speaker.finetune.config import finetune_config
    from speechloop.speaker.finetune.pipeline import batch_rows, finetune_on_rows
    from speechloop.speaker.loading import load_seed
    from speechloop.storage.local import LocalStore

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    settings = Settings(work_dir=WORK)
    store = LocalStore(WORK / "store", fsync=False)
    golden_spec = seed_corpus_spec(batches=0)  # the bootstrap corpus's eval sets only
    new_spec = seed_corpus_spec(
        pool="heldout", batch_prefix="new", batches=4, spk_per_batch=80, with_eval=False
    )
    for spec in (golden_spec, new_spec):
        generate_corpus(store, BUCKET, spec, progress=sys.stderr.isatty())
    batches = [f"new-{i:04d}" for i in range(1, 5)]
    rows = batch_rows(store, BUCKET, batches, WORK, settings)
    golden = load_spk_eval_set(store, BUCKET, "golden", WORK, settings)
    config = finetune_config(progress=sys.stderr.isatty())
    metrics = finetune_on_rows(
        load_seed(), rows, golden, WORK / "run", config, version="spk-ft-bench", resume=False
    )
    metrics["command"] = "python -m benchmarks.bench_spk_finetune"
    metrics["batches"] = batches
    metrics["loadavg"] = os.getloadavg()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    write_results(RESULTS, metrics)
    keys = ("base_golden", "golden", "eer_relative_change", "best_epoch", "seconds")
    print(json.dumps({k: metrics[k] for k in keys}, indent=1))


if __name__ == "__main__":
    main()
