"""One tiny ASR stage and one tiny speaker fine-tune, run alone or under ``torchrun``.

    python -m tests.unit.ddp_worker OUT.json SPK_ROWS.json
    torchrun --standalone --nproc_per_node=2 -m tests.unit.ddp_worker OUT.json SPK_ROWS.json

Rank 0 writes the final figures to OUT.json (the ASR stage's validation token accuracy,
its loss before and after, the speaker model's validation EER and target/non-target
score gap), every rank its final weights to ``world-W-rank-R/{asr,spk}.pt``. Used by
tests/unit/test_training_ddp.py to compare one process with two (gloo).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

SENTENCES = [
    "please call brakovan tonight",
    "send the report to zelmira",
    "tell brakovan to walk the dog",
    "the report is on the table",
    "zelmira left the key at the office",
    "call the doctor tonight",
    "ask zelmira about the report",
    "walk the dog tonight",
]


def asr_figures(out_dir: Path) -> dict[str, Any]:
    """Train a d=32 SeACo-Paraformer's ASR stage for 2 epochs; validation figures."""
    from speechloop.asr.features import Frontend
    from speechloop.asr.finetune.config import StageConfig
    from speechloop.asr.finetune.data import Utterance, collate
    from speechloop.asr.finetune.trainer import StageTrainer
    from speechloop.asr.model import build_seaco, seed_config
    from speechloop.asr.objectives import asr_loss
    from speechloop.asr.tokenizer import Tokenizer
    from speechloop.data.synth.render import synthesize

    tok = Tokenizer.build(SENTENCES, never_whole=["brakovan", "zelmira"])
    fe = Frontend()
    utts = []
    for i, text in enumerate(SENTENCES):
        feats = fe(synthesize("espeak", "en-us", "m3", text, 1.0, 0.0))
        feats = (feats - feats.mean(0)) / (feats.std(0) + 1e-3)
        utts.append(Utterance(f"u{i}", feats.astype(np.float32), tok.encode(text), text))
    torch.manual_seed(0)
    model = build_seaco(seed_config(tok.vocab_size, tok.no_bias_id, d=32))
    model.eval()
    with torch.no_grad():
        init_loss, _ = asr_loss(model, *collate(utts, "cpu"))
    cfg = StageConfig("asr", epochs=3, lr=2e-3, warmup_steps=1, batch_size=4, patience=9)
    result = StageTrainer(model, tok, cfg, progress=False).run(utts[:6], utts[6:])
    model.eval()
    with torch.no_grad():
        loss, _ = asr_loss(model, *collate(utts, "cpu"))
    torch.save(model.state_dict(), out_dir / "asr.pt")
    return {
        "asr_valid_acc": result.history[-1]["valid_acc"],
        "asr_train_losses": [h.get("train_loss") for h in result.history[1:]],
        "asr_loss": float(loss),
        "asr_init_loss": float(init_loss),
    }


def spk_figures(rows_file: Path, train_dir: Path, out_dir: Path) -> dict[str, Any]:
    """Train a tiny speaker network 2 epochs from a fixed init; validation figures."""
    from speechloop.data.types import SpkRow
    from speechloop.speaker.finetune.config import AugmentConfig, TrainConfig
    from speechloop.speaker.finetune.trainer import (
        Trainer,
        ValidSet,
        all_pairs_trials,
        evaluate_scores,
    )
    from speechloop.speaker.model import SpkModel, SpkModelConfig, build_network

    rows = [SpkRow(r["id"], Path(r["audio"]), r["speaker"], r["duration_s"])
            for r in json.loads(rows_file.read_text())]  # fmt: skip
    valid = [r for r in rows if r.id.endswith(("1", "5"))]
    train = [r for r in rows if r not in valid]
    tiny = SpkModelConfig(m_channels=8, num_blocks=(1, 1, 1, 1), embedding_size=32)
    torch.manual_seed(0)
    model = SpkModel(build_network(tiny), tiny, "t")
    cfg = TrainConfig(epochs=2, batch_size=8, crop_s=1.0, lr=5e-3, warmup_epochs=0.5,
                      margin=0.1, margin_warmup_epochs=1.0, patience=5, threads=1,
                      progress=False, device="cpu",
                      augment=AugmentConfig(speed_prob=0.0, noise_prob=0.0))  # fmt: skip
    trials = all_pairs_trials(valid)
    scores, labels = evaluate_scores(model, valid, trials, "cpu")
    init_gap = float(scores[labels].mean() - scores[~labels].mean())
    result = Trainer(model, train, ValidSet(valid, trials), train_dir, cfg).fit(resume=False)
    scores, labels = evaluate_scores(result.model, valid, trials, "cpu")
    gap = float(scores[labels].mean() - scores[~labels].mean())
    torch.save(result.model.network.state_dict(), out_dir / "spk.pt")
    return {
        "spk_losses": [h.loss for h in result.history],
        "spk_valid_eer": result.history[-1].valid_eer,
        "spk_score_gap": gap,
        "spk_init_gap": init_gap,
    }


def main(argv: list[str]) -> None:
    """Run both, write the figures (rank 0)."""
    from speechloop.training.distributed import from_env

    out, rows_file = Path(argv[0]), Path(argv[1])
    torch.set_num_threads(1)
    info = from_env()
    figures: dict[str, Any] = {"world": info.world}
    out_dir = out.parent / f"world-{info.world}-rank-{info.rank}"
    out_dir.mkdir(parents=True, exist_ok=True)
    figures.update(asr_figures(out_dir))
    # the training directory is shared by the processes (rank 0 writes it)
    figures.update(spk_figures(rows_file, out.parent / f"spk-train-{info.world}", out_dir))
    if info.is_main:
        out.write_text(json.dumps(figures))
    if info.active:
        import torch.distributed as dist

        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1:])
