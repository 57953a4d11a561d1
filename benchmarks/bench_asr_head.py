"""Where the hotword head stands: its teacher-forced accuracy on name tokens, per row set.

For each set (a sample of the seed's training rows, its head-only rows, the "seen" and
the "golden" evaluation sets) the ASR part runs with the true token count (as in
training, so positions align with the transcript) and the head gets each utterance's own
hotwords. At every name-token position it reports how often the head's best class is
the right token, how often it is NO_BIAS, and how often the ASR decoder alone is right;
per name occurrence, how often every token is right. A head that memorised its training
utterances shows a wide gap between the training rows and the evaluation sets
(``docs/asr.md``, item 13).

Run: ``.venv/bin/python -m benchmarks.bench_asr_head [--model DIR] [--work CORPUS_DIR]``
(defaults: the shipped seed and the seed recipe's corpus; ``speechloop bootstrap asr``
makes it). Writes ``benchmarks/results/asr_head.json``.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path
from typing import Any

from benchmarks.results_io import write_results

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "asr_head.json"


def name_accuracy(loaded: Any, frontend: Any, rows: list[Any]) -> dict[str, float]:
    """Teacher-forced name-token figures of ``loaded`` on the rows that carry names."""
    import torch

    from speechloop.asr.finetune.data import collate, prepare
    from speechloop.asr.inference import bias_embeddings
    from speechloop.asr.objectives import asr_states, find_span, hotword_logits

    model, no_bias = loaded.model, loaded.tokenizer.no_bias_id
    counts = dict.fromkeys(("tokens", "head", "no_bias", "decoder", "names", "whole"), 0)
    for utt in prepare([r for r in rows if r.hotwords], loaded.tokenizer, frontend):
        with torch.no_grad():
            states = asr_states(model, *collate([utt], "cpu"))
            head = hotword_logits(model, states, bias_embeddings(model, utt.hotwords))
            head_best = head[0].argmax(-1).tolist()
            dec_best = model.decoder.output_layer(states.hidden)[0].argmax(-1).tolist()
        for hw in utt.hotwords:
            for start in find_span(utt.ids, hw):
                right = [head_best[start + k] == tok for k, tok in enumerate(hw)]
                counts["tokens"] += len(hw)
                counts["head"] += sum(right)
                counts["no_bias"] += sum(head_best[start + k] == no_bias for k in range(len(hw)))
                counts["decoder"] += sum(dec_best[start + k] == t for k, t in enumerate(hw))
                counts["names"] += 1
                counts["whole"] += all(right)
    n_tok, n_names = max(counts["tokens"], 1), max(counts["names"], 1)
    return {
        "name_tokens": counts["tokens"],
        "names": counts["names"],
        "head_token_acc": round(counts["head"] / n_tok, 3),
        "head_no_bias_rate": round(counts["no_bias"] / n_tok, 3),
        "decoder_token_acc": round(counts["decoder"] / n_tok, 3),
        "head_whole_name_acc": round(counts["whole"] / n_names, 3),
    }


def row_sets(work: Path, sample: int) -> dict[str, list[Any]]:
    """Training rows (a sample each of the main and the head-only batches) and eval sets."""
    from speechloop.asr.seed_recipe import (
        SEED_HEAD_UPDATE,
        eval_rows,
        ingested_rows,
        split_head_rows,
    )

    rows = [r for r in ingested_rows(work) if r.split == "train" and r.hotwords]
    main, head = split_head_rows(rows, SEED_HEAD_UPDATE)
    random.Random(0).shuffle(main)
    random.Random(0).shuffle(head)
    return {
        "train": main[:sample],
        "train_head_only": head[:sample],
        "seen": eval_rows(work, "seen"),
        "golden": eval_rows(work, "golden"),
    }


def _shown(path: Path) -> str:
    """``path`` relative to the repository when inside it (results files name no machine)."""
    resolved = path.resolve()
    return str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else path.name


def main() -> None:
    """Measure every set and write the results file."""
    import torch

    from speechloop.asr.bootstrap import SEED_DIR
    from speechloop.asr.features import Frontend
    from speechloop.asr.model import load_from_dir
    from speechloop.asr.seed_recipe import corpus_dir
    from speechloop.config import get_settings

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=SEED_DIR)
    default_work = corpus_dir(Path(get_settings().work_dir), "bootstrap", 0)
    ap.add_argument("--work", type=Path, default=default_work, help="the seed's corpus")
    ap.add_argument("--sample", type=int, default=120, help="training rows per training set")
    args = ap.parse_args()
    torch.set_num_threads(2)
    loaded = load_from_dir(args.model)
    loaded.model.float().eval()
    frontend = Frontend.from_am_mvn(args.model / "am.mvn")
    sets = {
        name: name_accuracy(loaded, frontend, rows)
        for name, rows in row_sets(args.work, args.sample).items()
        if rows
    }
    for name, fig in sets.items():
        print(name, fig)
    doc = {
        "benchmark": "asr_head",
        "model": _shown(args.model),
        "sets": sets,
        "command": "python -m benchmarks.bench_asr_head",
    }
    write_results(RESULTS, doc)


if __name__ == "__main__":
    main()
