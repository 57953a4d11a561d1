"""``speechloop bootstrap asr``: corpus -> ingestion -> seed training -> golden evaluation.

The corpus is generated into a private local store under the work directory (so the
user's data bucket and its ingestion ledger are not touched), ingested with the same
validation as user data, and the seed is trained on it (:mod:`speechloop.asr.bootstrap`)
and evaluated on the golden set (held-out voices and held-out hotwords) with and
without hotwords. The result is written as a model directory with ``metrics.json``
holding those figures and the command that made it.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from speechloop.asr.bootstrap import SEED_DIR, BootstrapConfig, config_dict, train_seed, write_seed

#: Corpus for the seed: the bootstrap preset with every seen voice (250: the ASR part
#: generalises to held-out voices only if it heard many) and many distinct names (240 of
#: the partition's seen names plus 2,000 training-only ones, each heard a few times: the
#: hotword head generalises to unseen names only if it cannot memorise the few it saw).
SEED_CORPUS_UPDATE: dict[str, Any] = {
    "n_voices_seen": 250,
    "n_names_seen": 240,
    "n_names_extra": 2000,
    "hotword_rate": 0.75,
    "batches": 60,
}

#: The ASR and hotword stages read the first 30 batches (4,500 rows: the tokenizer and the
#: CMVN come from them); the refine stage reads all 60 (``BootstrapConfig.refine``).
SEED_BASE_BATCHES = 30

#: Hotword-stage-only batches for the seed: seen voices, names that the ASR stages never
#: hear (the "head" pool), one or two in every utterance. The head trains on the main
#: corpus and on these; on the main corpus alone it memorised the utterances it trained
#: on (teacher-forced name-token accuracy 0.98 there, 0.32 on held-out names). Two
#: corpora, in training order: the first head-only recipe (2,000 names, 20 batches), which
#: the shipped head trained on too, and 8,000 names in 80 batches. Their batch ids
#: overlap, so each has its own store.
SEED_HEAD_FIRST: dict[str, Any] = {
    "pool": "head",
    "n_names_head": 2000,
    "hotword_rate": 1.0,
    "batch_prefix": "hwboot",
    "batches": 20,
    "with_eval": False,
}
SEED_HEAD_UPDATE: dict[str, Any] = {**SEED_HEAD_FIRST, "n_names_head": 8000, "batches": 80}
SEED_HEAD_UPDATES: tuple[dict[str, Any], ...] = (SEED_HEAD_FIRST, SEED_HEAD_UPDATE)


def corpus_dir(
    work_root: Path,
    preset: str,
    seed: int,
    update: dict[str, Any] = SEED_CORPUS_UPDATE,
    head_updates: Sequence[dict[str, Any]] = SEED_HEAD_UPDATES,
) -> Path:
    """Where a seed corpus is generated and ingested: named by preset, seed and the
    corpus updates, so that a changed recipe never reuses an older corpus."""
    key = {**update, "heads": list(head_updates)} if head_updates else update
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    return work_root / "bootstrap-asr" / f"{preset}-{seed}-{digest[:8]}"


if TYPE_CHECKING:
    from speechloop.config import Settings


def recipe_settings() -> Settings:
    """The settings the recipe's private corpus is ingested with: the defaults, whatever
    the environment says, so that the seed's corpus does not depend on it."""
    from speechloop.config import Settings

    return Settings.model_construct()


def corpus_rows(
    preset: str,
    work_dir: Path,
    seed: int,
    update: dict[str, Any],
    eval_set: str = "golden",
    head_updates: Sequence[dict[str, Any]] = (),
) -> tuple[list[Any], list[Any]]:
    """Generate (or reuse) the corpus in a private store; (train rows, ``eval_set`` rows).

    With ``head_updates``, the hotword-stage-only batches are generated too: the first
    into the same store, each further one into ``work_dir/head-<i>`` (batch ids may
    repeat across them). Their rows are among the train rows, in that order
    (:func:`split_head_rows` picks them)."""
    from speechloop.data.ingest import Ingestor
    from speechloop.data.synth.corpus import generate_corpus
    from speechloop.data.synth.spec import CorpusSpec
    from speechloop.storage.local import LocalStore

    spec = CorpusSpec.preset(preset).model_copy(update={"seed": seed, "spk_per_batch": 0, **update})  # type: ignore[arg-type]
    bucket = "speech-data"
    jobs = [(work_dir, spec)] + [
        (work_dir if i == 0 else work_dir / f"head-{i}", spec.updated(head))
        for i, head in enumerate(head_updates)
    ]
    for where, job_spec in jobs:
        generate_corpus(LocalStore(where / "store"), bucket, job_spec, progress=True)
    for where in dict.fromkeys(where for where, _ in jobs):
        store = LocalStore(where / "store")
        Ingestor(store, bucket, where / "data", "asr", recipe_settings()).run()
    # every ingested batch, also those an earlier run ingested (run() returns new ones only)
    return ingested_rows(work_dir), eval_rows(work_dir, eval_set)


def ingested_rows(work_dir: Path) -> list[Any]:
    """The ASR rows of every batch ingested under ``work_dir`` (then under each of its
    ``head-<i>`` stores, in order), in batch-id order within each."""
    from speechloop.data.dataset import read_local_rows
    from speechloop.data.types import AsrRow

    heads = sorted(work_dir.glob("head-*"), key=lambda p: int(p.name.split("-")[1]))
    rows: list[Any] = []
    for where in [work_dir, *heads]:
        batches = where / "data" / "asr" / "batches"
        if batches.is_dir():
            done = sorted(b for b in batches.iterdir() if (b / "manifest.jsonl").exists())
            rows += [r for b in done for r in read_local_rows(b, "asr") if isinstance(r, AsrRow)]
    return rows


def split_head_rows(rows: list[Any], head_update: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    """(main corpus rows, hotword-stage-only rows), told apart by their batch prefix."""
    prefix = f"{head_update['batch_prefix']}-"
    head = [r for r in rows if r.batch_id.startswith(prefix)]
    return [r for r in rows if not r.batch_id.startswith(prefix)], head


def base_rows(rows: list[Any], batches: int) -> list[Any]:
    """The rows of the first ``batches`` batches (by batch id) of ``rows``."""
    first = set(sorted({r.batch_id for r in rows})[:batches])
    return [r for r in rows if r.batch_id in first]


def eval_rows(work_dir: Path, which: str) -> list[Any]:
    """An evaluation set ("golden": held-out voices and names; "seen") of the private store."""
    from speechloop.data.dataset import load_asr_eval_set
    from speechloop.storage.local import LocalStore

    store = LocalStore(work_dir / "store")
    return load_asr_eval_set(store, "speech-data", which, work_dir / "data", recipe_settings())


def recorded_command(argv: Sequence[str] | None) -> str:
    """``speechloop bootstrap asr`` with the options of ``argv`` (the process's argv: its
    program path is dropped), less ``--out`` (where the files go, not what they are): the
    recorded command names no local path."""
    import shlex

    opts = list(argv[3:]) if argv and len(argv) > 3 else []
    kept: list[str] = []
    skip = False
    for word in opts:
        if skip:
            skip = False
        elif word == "--out":
            skip = True
        elif not word.startswith("--out="):
            kept.append(word)
    return shlex.join(["speechloop", "bootstrap", "asr", *kept])


def code_version() -> str:
    """The source tree's ``git describe`` (or the package version) the seed was made with."""
    from speechloop.registry.model import code_version as describe

    return describe()


def make_seed(
    out: Path | None,
    *,
    preset: str = "bootstrap",
    quick: bool = False,
    seed: int = 0,
    threads: int = 2,
    argv: list[str] | None = None,
    work_root: Path,
) -> dict[str, Any]:
    """Make the seed model (corpus and training under ``work_root``, the work dir);
    returns the figures written to ``metrics.json``."""
    from speechloop.asr.evaluation import evaluate_rows
    from speechloop.asr.inference import Transcriber

    started = time.perf_counter()
    work_dir = corpus_dir(Path(work_root), preset, seed)
    rows, golden = corpus_rows(
        preset, work_dir, seed, SEED_CORPUS_UPDATE, head_updates=SEED_HEAD_UPDATES
    )
    all_rows, head_rows = split_head_rows(rows, SEED_HEAD_UPDATE)
    rows = base_rows(all_rows, SEED_BASE_BATCHES)
    cfg = BootstrapConfig(seed=seed, num_threads=threads)
    cfg = cfg.quick() if quick else cfg
    train_dir = work_dir / ("train-quick" if quick else "train")
    result = train_seed(rows, train_dir, cfg, head_rows=head_rows, refine_rows=all_rows)
    report = evaluate_rows(Transcriber(result.loaded), golden)
    seen = eval_rows(work_dir, "seen")
    metrics = {
        "golden": report,
        "seen": evaluate_rows(Transcriber(result.loaded), seen),
        "train_rows": len(rows),
        "golden_rows": len(golden),
        "train_seconds": round(result.seconds, 1),
        "total_seconds": round(time.perf_counter() - started, 1),
        "config": config_dict(cfg),
        "corpus": {"preset": preset, "seed": seed, **SEED_CORPUS_UPDATE},
        "head_corpora": list(SEED_HEAD_UPDATES),
        "head_rows": len(head_rows),
        "refine_rows": len(all_rows),
        "command": recorded_command(argv),
        "code_version": code_version(),
    }
    write_seed(result, out or SEED_DIR, metrics)
    return json.loads(json.dumps(metrics))
