"""Fine-tuning throughput (utterances/s) on the seed config: our trainer vs funasr's.

Same rows (the bootstrap corpus's local WAVs), same model (the shipped seed), same
objective (the ASR objective), batch size and thread count:

- ours: :class:`speechloop.asr.finetune.trainer.StageTrainer`, stage ``asr``, ``--epochs``
  epochs (features computed once up front: that time is reported and included);
- funasr: ``AudioDataset`` (fbank on the fly through ``WavFrontend``) + its collator in a
  ``DataLoader``, trained by ``funasr.train_utils.trainer.Trainer.train_epoch`` (called
  once per epoch) on a wrapper whose ``forward`` is the ASR objective
  (``SeacoParaformer.forward`` would train the hotword head instead).

Throughput is utterances trained per second over the whole run (rows x epochs / time).
A fine-tuning run is several epochs (the default is 10); with ``--epochs 1`` our one-off
feature pass weighs on the single epoch in full.

    .venv/bin/python -m benchmarks.bench_asr_train_throughput [--rows 160] [--epochs 3]

Results: ``benchmarks/results/asr_train_throughput.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.results_io import write_results

RESULTS = Path(__file__).resolve().parent / "results" / "asr_train_throughput.json"


def rows_of(work: Path, n: int) -> list[Any]:
    """The first ``n`` ingested bootstrap rows (run ``speechloop bootstrap asr`` first)."""
    from speechloop.data.dataset import read_local_rows

    batches = work / "data" / "asr" / "batches"
    if not batches.is_dir():
        raise SystemExit(
            f"no ingested bootstrap corpus under {work}: run `speechloop bootstrap asr`"
        )
    rows: list[Any] = []
    for batch in sorted(b for b in batches.iterdir() if b.is_dir() and not b.name.startswith(".")):
        rows.extend(r for r in read_local_rows(batch, "asr") if r.split == "train")
    return rows[:n]


def ours(loaded: Any, rows: list[Any], batch: int, epochs: int = 1) -> dict[str, float]:
    """``epochs`` ASR-stage epochs of our trainer, feature extraction included."""
    from speechloop.asr.features import Frontend
    from speechloop.asr.finetune.config import StageConfig
    from speechloop.asr.finetune.data import prepare
    from speechloop.asr.finetune.trainer import StageTrainer

    t0 = time.perf_counter()
    utts = prepare(rows, loaded.tokenizer, Frontend.from_am_mvn(loaded.cmvn_file))
    t_feats = time.perf_counter() - t0
    cfg = StageConfig("asr", epochs=epochs, lr=5e-5, batch_size=batch, patience=epochs + 1)
    trainer = StageTrainer(loaded.model, loaded.tokenizer, cfg, progress=False)
    trainer.validate = lambda valid: {"score": 0.0}  # type: ignore[method-assign]
    t1 = time.perf_counter()
    trainer.run(utts, utts[:1])
    t_train = time.perf_counter() - t1
    total = t_feats + t_train
    return {"utt_per_s": len(rows) * epochs / total, "feature_s": t_feats, "train_s": t_train}


class _AsrObjective:
    """Built lazily (torch import): a Module whose forward is the ASR objective."""

    @staticmethod
    def wrap(model: Any) -> Any:
        import torch
        from funasr.models.bicif_paraformer.model import BiCifParaformer

        class Wrapper(torch.nn.Module):
            def __init__(self, inner: Any) -> None:
                super().__init__()
                self.inner = inner

            def forward(
                self, speech: Any, speech_lengths: Any, text: Any, text_lengths: Any
            ) -> Any:
                return BiCifParaformer.forward(
                    self.inner, speech, speech_lengths, text, text_lengths
                )

        return Wrapper(model)


def theirs(
    loaded: Any, rows: list[Any], batch: int, out: Path, epochs: int = 1
) -> dict[str, float]:
    """``epochs`` epochs of funasr's Trainer over funasr's AudioDataset."""
    import torch
    from funasr.datasets.audio_datasets.datasets import AudioDataset
    from funasr.frontends.wav_frontend import WavFrontend
    from funasr.train_utils.trainer import Trainer

    out.mkdir(parents=True, exist_ok=True)
    jsonl = out / "train.jsonl"
    with jsonl.open("w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps({"key": r.id, "source": str(r.audio), "target": r.text,
                                 "source_len": int(r.duration_s * 100), "target_len": 20}) + "\n")  # fmt: skip  # noqa: E501
    fe = WavFrontend(cmvn_file=str(loaded.cmvn_file), fs=16000, window="hamming", n_mels=80,
                     frame_length=25, frame_shift=10, lfr_m=7, lfr_n=6, dither=0.0)  # fmt: skip
    ds = AudioDataset(str(jsonl), index_ds="IndexDSJsonl", frontend=fe, tokenizer=loaded.tokenizer)

    class EpochBatches(torch.utils.data.BatchSampler):
        """funasr's Trainer calls ``batch_sampler.set_epoch`` (its samplers have it)."""

        def set_epoch(self, epoch: int) -> None:
            self.sampler.generator = torch.Generator().manual_seed(epoch)  # type: ignore[union-attr]

    sampler = EpochBatches(torch.utils.data.RandomSampler(ds), batch_size=batch, drop_last=False)
    loader = torch.utils.data.DataLoader(ds, batch_sampler=sampler, collate_fn=ds.collator)
    model = _AsrObjective.wrap(loaded.model)
    model.train()
    optim = torch.optim.Adam(model.parameters(), lr=5e-5)
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda s: 1.0)
    trainer = Trainer(local_rank=0, output_dir=str(out / "funasr"), max_epoch=epochs, device="cpu",
                      log_interval=10**9, validate_interval=10**9, save_checkpoint_interval=10**9)  # fmt: skip  # noqa: E501
    t0 = time.perf_counter()
    for epoch in range(epochs):
        trainer.train_epoch(model=model, optim=optim, scheduler=sched, scaler=None,
                            dataloader_train=loader, dataloader_val=None, epoch=epoch, writer=None)  # fmt: skip  # noqa: E501
    took = time.perf_counter() - t0
    return {"utt_per_s": len(rows) * epochs / took, "train_s": took}


def main() -> None:
    """Measure both and write the results file."""
    import torch

    from speechloop.asr.bootstrap import SEED_DIR
    from speechloop.asr.model import load_from_dir
    from speechloop.asr.seed_recipe import corpus_dir
    from speechloop.config import get_settings

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=160)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    default_work = corpus_dir(Path(get_settings().work_dir), "bootstrap", 0)
    ap.add_argument("--work", type=Path, default=default_work, help="an ingested corpus")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = rows_of(args.work, args.rows)
    seed = load_from_dir(SEED_DIR)
    with tempfile.TemporaryDirectory() as tmp:
        # warm-up of both paths (first-call costs: lazy imports, kernel and thread start-up)
        ours(copy.deepcopy(seed), rows[: args.batch], args.batch)
        theirs_fig: dict[str, Any] = {}
        try:
            theirs(copy.deepcopy(seed), rows[: args.batch], args.batch, Path(tmp) / "warm")
            theirs_fig = theirs(copy.deepcopy(seed), rows, args.batch, Path(tmp), args.epochs)
        except Exception as exc:  # noqa: BLE001 - report funasr's failure instead of crashing
            theirs_fig = {"error": f"{type(exc).__name__}: {exc}"}
        ours_fig = ours(copy.deepcopy(seed), rows, args.batch, args.epochs)
    doc = {
        "benchmark": "asr_train_throughput", "rows": len(rows), "batch": args.batch,
        "epochs": args.epochs,
        "threads": args.threads, "ours": ours_fig, "funasr": theirs_fig,
        "ratio": (ours_fig["utt_per_s"] / theirs_fig["utt_per_s"]) if "utt_per_s" in theirs_fig else None,  # noqa: E501
        "machine": platform.platform(),
        "command": f"python -m benchmarks.bench_asr_train_throughput --rows {args.rows} --epochs {args.epochs} --threads {args.threads}",  # noqa: E501
    }  # fmt: skip
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    write_results(RESULTS, doc)
    print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
