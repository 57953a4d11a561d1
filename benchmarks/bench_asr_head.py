"""Where the hotword head stands: its teacher-forced accuracy on name tokens, per row set.

For each set (a sample of the seed's training rows, its head-only rows, the "seen" and
the "golden" evaluation sets) the ASR part runs with the true token count (as in
training, so positions align with the transcript) and the head gets each utterance's own
hotwords. At every name-token position it reports how often the head's best class is
the right token, how often it is NO_BIAS, and how often the ASR decoder alone is right;
per name occurrence, how often every token is right. A head that memorised its training
utterances shows a wide gap between the training rows and the evaluation sets
(``docs/asr.md``, item 13).

For the evaluation sets it then decodes as at inference (own hotwords) and splits the
name occurrences by whether the CIF predictor gave their utterance the true token count:
hotword recall in each group, and on exact-count utterances (where decoding positions
align with the transcript) the head's accuracy on name tokens. This separates what the
head gets wrong from what the ASR part's token count makes impossible (item 15).

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


def decoded_names(loaded: Any, frontend: Any, rows: list[Any]) -> dict[str, Any]:
    """Inference-time figures: recall of names by whether their utterance's CIF count is
    exact, and the head's name-token accuracy where it is."""
    import torch

    from speechloop.asr import metrics
    from speechloop.asr.finetune.data import collate, prepare
    from speechloop.asr.inference import bias_embeddings, decode_features, encode
    from speechloop.asr.objectives import AsrStates, find_span, hotword_logits

    model, tok = loaded.model, loaded.tokenizer
    groups: dict[bool, tuple[list[str], list[str], list[list[str]]]] = {
        True: ([], [], []), False: ([], [], []),
    }  # fmt: skip
    errors: list[int] = []
    head_right = head_tokens = 0
    named = [r for r in rows if r.hotwords]
    for row, utt in zip(named, prepare(named, tok, frontend), strict=True):
        speech, lengths = collate([utt], "cpu")[:2]
        bias = bias_embeddings(model, utt.hotwords)
        with torch.no_grad():
            enc, enc_lens = encode(model, speech, lengths)
            acoustic, count = model.calc_predictor(enc, enc_lens)[:2]
            n = int(count.round().clamp(min=1)[0])
            hidden = model.decoder(
                enc, enc_lens, acoustic[:, :n], torch.tensor([n]), return_hidden=True
            )[0]
            head = hotword_logits(
                model, AsrStates(acoustic[:, :n], hidden, torch.tensor([n])), bias
            )
        exact = n == len(utt.ids) + int(model.predictor_bias)
        errors.append(n - len(utt.ids) - int(model.predictor_bias))
        hyp = tok.decode(decode_features(model, speech, lengths, bias, timestamps=False).ids[0])
        refs, hyps, hws = groups[exact]
        refs.append(row.text)
        hyps.append(hyp)
        hws.append(list(row.hotwords))
        if exact:
            best = head[0].argmax(-1).tolist()
            for hw in utt.hotwords:
                for start in find_span(utt.ids, hw):
                    head_tokens += len(hw)
                    head_right += sum(best[start + k] == t for k, t in enumerate(hw))
    out: dict[str, Any] = {
        "utterances": len(errors),
        "exact_count_share": round(sum(e == 0 for e in errors) / max(len(errors), 1), 3),
        "mean_abs_count_error": round(sum(abs(e) for e in errors) / max(len(errors), 1), 3),
        "head_token_acc_exact_count": round(head_right / max(head_tokens, 1), 3),
    }
    for exact, label in ((True, "exact_count"), (False, "wrong_count")):
        refs, hyps, hws = groups[exact]
        sc = metrics.score_corpus(refs, hyps, hws).as_dict() if refs else {}
        out[f"names_{label}"] = sum(len(h) for h in hws)
        out[f"recall_{label}"] = sc.get("hotword_recall")
    return out


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
    eval_sets = {
        k: v for k, v in row_sets(args.work, args.sample).items() if k in ("seen", "golden")
    }
    decoded = {name: decoded_names(loaded, frontend, rows) for name, rows in eval_sets.items()}
    for name, fig in decoded.items():
        print(name, "decoded", fig)
    doc = {
        "benchmark": "asr_head",
        "model": _shown(args.model),
        "sets": sets,
        "decoded": decoded,
        "command": "python -m benchmarks.bench_asr_head",
    }
    write_results(RESULTS, doc)


if __name__ == "__main__":
    main()
