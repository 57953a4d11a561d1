"""``speechloop bootstrap spk``: the seed speaker model, trained from scratch, reproducibly.

1. The synthetic corpus (:mod:`speechloop.data.synth`, preset ``bootstrap``, speaker part
   only) is generated into a private local store under the work directory;
2. its speaker batches are validated into local rows (split ``train`` trains, split
   ``eval`` validates each epoch); the golden (held-out voices) and seen evaluation sets
   are loaded with their trials;
3. a tiny ERes2NetV2 (:data:`~speechloop.speaker.model.SEED_CONFIG`, the published class)
   is trained from scratch with AAM-softmax (:func:`pretrain_config`), seeded;
4. the best epoch is scored on both evaluation sets, its threshold calibrated at the EER
   point of the golden trials, and everything written to the output directory
   (``config.json``, ``model.pt``, ``calibration.json``, ``metrics.json`` with the
   command that made it).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from speechloop.config import Settings
from speechloop.data.synth.spec import CorpusSpec
from speechloop.data.types import SpkEvalSet, SpkRow
from speechloop.errors import InvalidInput
from speechloop.speaker.finetune.config import TrainConfig, pretrain_config
from speechloop.speaker.model import SEED_CONFIG, SpkModelConfig

BUCKET = "speech-data"


@dataclass
class SpkCorpus:
    """The speaker data a training run uses, as validated local rows."""

    train: list[SpkRow]
    valid: list[SpkRow]
    golden: SpkEvalSet
    seen: SpkEvalSet


def seed_corpus_spec(**updates: object) -> CorpusSpec:
    """The bootstrap preset, speaker part only (no ASR rows)."""
    base = CorpusSpec.preset("bootstrap").model_copy(
        update={"asr_per_batch": 0, "asr_eval_golden": 0, "asr_eval_seen": 0}
    )
    return CorpusSpec.model_validate({**base.model_dump(), **updates})


def prepare_corpus(spec: CorpusSpec, work_dir: Path, settings: Settings) -> SpkCorpus:
    """Generate ``spec`` into ``work_dir/store`` and validate its speaker data locally."""
    from speechloop.data.dataset import load_spk_eval_set
    from speechloop.data.ingest import materialise
    from speechloop.data.synth.corpus import generate_corpus
    from speechloop.storage.local import LocalStore

    store = LocalStore(work_dir / "store", fsync=False)
    report = generate_corpus(store, BUCKET, spec, progress=sys.stderr.isatty())
    rows: list[SpkRow] = []
    for prefix in sorted(store.list_prefixes(BUCKET, "spk/batches/")):
        outcome = materialise(
            store, BUCKET, f"spk/batches/{prefix}", "spk", prefix,
            work_dir / "spk" / "batches" / prefix, settings,
        )  # fmt: skip
        rows.extend(r for r in outcome.rows if isinstance(r, SpkRow))
    if not rows:
        raise InvalidInput(f"corpus {report.spk_batches} produced no speaker rows")
    from speechloop.speaker.finetune.pipeline import split_rows

    train, valid = split_rows(rows)
    return SpkCorpus(
        train=train,
        valid=valid,
        golden=load_spk_eval_set(store, BUCKET, "golden", work_dir, settings),
        seen=load_spk_eval_set(store, BUCKET, "seen", work_dir, settings),
    )


def train_seed(
    out_dir: Path,
    *,
    spec: CorpusSpec | None = None,
    train: TrainConfig | None = None,
    model_config: SpkModelConfig = SEED_CONFIG,
    work_dir: Path | None = None,
    version: str = "spk-seed-1",
    command: str = "",
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Steps 1-4 of the module docstring; returns the metrics written to ``metrics.json``.

    ``settings`` (audio bounds of the corpus; ``work_dir`` default under its work dir):
    default the settings' defaults, not the environment, so the seed is reproducible.
    """
    import torch

    from speechloop.speaker.calibration import calibrate, save_calibration
    from speechloop.speaker.finetune.trainer import Trainer, ValidSet, all_pairs_trials
    from speechloop.speaker.model import SpkModel, build_network

    started = time.perf_counter()
    settings = settings or Settings.model_construct()
    spec = spec or seed_corpus_spec()
    train = train or pretrain_config()
    work_dir = Path(work_dir or settings.work_dir / "bootstrap" / "spk")
    corpus = prepare_corpus(spec, work_dir, settings)
    torch.manual_seed(train.seed)
    model = SpkModel(build_network(model_config), model_config, version)
    valid = ValidSet(rows=corpus.valid, trials=all_pairs_trials(corpus.valid))
    result = Trainer(model, corpus.train, valid, work_dir / "run", train).fit(resume=False)
    golden = eval_set_metrics(result.model, corpus.golden, train.device)
    seen = eval_set_metrics(result.model, corpus.seen, train.device)
    calibration = calibrate(golden["scores"], golden["labels"])
    metrics: dict[str, Any] = {
        "version": version,
        "golden": golden["metrics"],
        "seen": seen["metrics"],
        "best_epoch": result.best_epoch,
        "valid_eer": result.best_eer,
        "history": [h.__dict__ for h in result.history],
        "train_speakers": len({r.speaker for r in corpus.train}),
        "train_utterances": len(corpus.train),
        "corpus_spec": spec.model_dump(mode="json"),
        "train_config": train.model_dump(mode="json"),
        "model_config": model_config.to_json(),
        "seconds": round(time.perf_counter() - started, 1),
        "command": result_command(command),
        "code_version": code_version(),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "model.pt"):
        shutil.copyfile(result.best_dir / name, out_dir / name)
    save_calibration(calibration, out_dir)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    return metrics


#: Options that say where files go, not what is trained: left out of the recorded command.
PLACEMENT_OPTIONS = ("--out", "--work-dir")


def result_command(command: str) -> str:
    """``command`` without its placement options (and their values), so the recorded
    command names no local path: the same command anywhere gives the same model."""
    import shlex

    words = shlex.split(command)
    kept: list[str] = []
    skip = False
    for word in words:
        if skip:
            skip = False
        elif word in PLACEMENT_OPTIONS:
            skip = True
        elif not word.startswith(tuple(f"{o}=" for o in PLACEMENT_OPTIONS)):
            kept.append(word)
    return shlex.join(kept)


def code_version() -> str:
    """The source tree's ``git describe`` (or the package version): with the command,
    what remakes the model."""
    from speechloop.registry.model import code_version as describe

    return describe()


def eval_set_metrics(model: Any, eval_set: SpkEvalSet, device: str | None) -> dict[str, Any]:
    """Scores, labels and metrics of ``model`` on a golden evaluation set."""
    from speechloop.speaker.device import select_device
    from speechloop.speaker.finetune.trainer import evaluate_scores
    from speechloop.speaker.metrics import compute_metrics

    where = select_device(device).device
    scores, labels = evaluate_scores(model, eval_set.rows, eval_set.trials, where)
    metrics = compute_metrics(scores, labels).to_json()
    return {"scores": scores, "labels": labels, "metrics": metrics}
