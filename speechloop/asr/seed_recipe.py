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
from pathlib import Path
from typing import Any

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
    "batches": 30,
}


def corpus_dir(
    work_root: Path, preset: str, seed: int, update: dict[str, Any] = SEED_CORPUS_UPDATE
) -> Path:
    """Where a seed corpus is generated and ingested: named by preset, seed and the
    corpus update, so that a changed recipe never reuses an older corpus."""
    digest = hashlib.sha256(json.dumps(update, sort_keys=True).encode()).hexdigest()
    return work_root / "bootstrap-asr" / f"{preset}-{seed}-{digest[:8]}"


def corpus_rows(
    preset: str, work_dir: Path, seed: int, update: dict[str, Any], eval_set: str = "golden"
) -> tuple[list[Any], list[Any]]:
    """Generate (or reuse) the corpus in a private store; (train rows, ``eval_set`` rows)."""
    from speechloop.config import get_settings
    from speechloop.data.ingest import Ingestor
    from speechloop.data.synth.corpus import generate_corpus
    from speechloop.data.synth.spec import CorpusSpec
    from speechloop.storage.local import LocalStore

    spec = CorpusSpec.preset(preset).model_copy(update={"seed": seed, "spk_per_batch": 0, **update})  # type: ignore[arg-type]
    store = LocalStore(work_dir / "store")
    bucket = "speech-data"
    generate_corpus(store, bucket, spec, progress=True)
    settings = get_settings()
    ingestor = Ingestor(store, bucket, work_dir / "data", "asr", settings)
    rows = list(ingestor.run().rows)
    if not rows:  # already ingested by an earlier run: read the local copies
        from speechloop.data.dataset import read_local_rows

        for batch in sorted(
            b
            for b in (work_dir / "data" / "asr" / "batches").iterdir()
            if (b / "manifest.jsonl").exists()
        ):
            rows.extend(read_local_rows(batch, "asr"))
    return rows, eval_rows(work_dir, eval_set)


def eval_rows(work_dir: Path, which: str) -> list[Any]:
    """An evaluation set ("golden": held-out voices and names; "seen") of the private store."""
    from speechloop.config import get_settings
    from speechloop.data.dataset import load_asr_eval_set
    from speechloop.storage.local import LocalStore

    store = LocalStore(work_dir / "store")
    return load_asr_eval_set(store, "speech-data", which, work_dir / "data", get_settings())


def make_seed(
    out: Path | None,
    *,
    preset: str = "bootstrap",
    quick: bool = False,
    seed: int = 0,
    threads: int = 2,
    argv: list[str] | None = None,
) -> dict[str, Any]:
    """Make the seed model; returns the figures written to ``metrics.json``."""
    from speechloop.asr.evaluation import evaluate_rows
    from speechloop.asr.inference import Transcriber
    from speechloop.config import get_settings

    started = time.perf_counter()
    work_dir = corpus_dir(Path(get_settings().work_dir), preset, seed)
    rows, golden = corpus_rows(preset, work_dir, seed, SEED_CORPUS_UPDATE)
    cfg = BootstrapConfig(seed=seed, num_threads=threads)
    cfg = cfg.quick() if quick else cfg
    result = train_seed(rows, work_dir / ("train-quick" if quick else "train"), cfg)
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
        "command": " ".join(argv or ["speechloop", "bootstrap", "asr"]),
    }
    write_seed(result, out or SEED_DIR, metrics)
    return json.loads(json.dumps(metrics))
