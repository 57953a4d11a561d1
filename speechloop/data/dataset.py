"""Validated rows for trainers and the promotion gate: golden eval sets and local manifests.

Golden evaluation sets live in the data bucket in the batch format::

    asr/eval/<set>/manifest.jsonl (+ audio)
    spk/eval/<set>/manifest.jsonl (+ audio) and trials.txt   "<enrol_id> <test_id> target|nontarget"

They go through the same validation as batches (:mod:`speechloop.data.ingest`) and are
cached under ``<work_dir>/<kind>/eval/<set>/``. A golden set must be clean: a bad row,
or a trial naming an unknown utterance, is an :class:`~speechloop.errors.InvalidInput`
that lists every problem. Every row of an eval set has ``split == "eval"``.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from speechloop.config import Settings
from speechloop.data.ingest import Row, materialise
from speechloop.data.manifest import MANIFEST, Kind, is_safe_name, row_from_json
from speechloop.data.types import AsrRow, SpkEvalSet, SpkRow, Trial
from speechloop.errors import InvalidInput, NotFound
from speechloop.storage.base import ObjectStore

TRIALS = "trials.txt"
_SHOWN = 20


def list_eval_sets(store: ObjectStore, bucket: str, kind: Kind) -> list[str]:
    """Names of the complete eval sets of ``kind`` (those with a manifest), sorted."""
    head = f"{kind}/eval/"
    return sorted(
        info.key[len(head) :].split("/", 1)[0]
        for info in store.list(bucket, head)
        if info.key.count("/") == 3 and info.key.endswith(f"/{MANIFEST}")
    )


def _problems(what: str, messages: list[str]) -> InvalidInput:
    shown = messages[:_SHOWN]
    more = f"; and {len(messages) - _SHOWN} more" if len(messages) > _SHOWN else ""
    head = f"{what} must be clean but has {len(messages)} problem(s): "
    return InvalidInput(head + "; ".join(shown) + more)


def _load_eval_rows(
    store: ObjectStore,
    bucket: str,
    kind: Kind,
    name: str,
    work_dir: Path,
    settings: Settings,
) -> list[Row]:
    if not is_safe_name(name):
        raise InvalidInput(f"eval set name {name!r} is not a plain name")
    prefix = f"{kind}/eval/{name}"
    if not store.exists(bucket, f"{prefix}/{MANIFEST}"):
        raise NotFound(f"{kind} eval set {name!r} not found ({bucket}/{prefix}/{MANIFEST})")
    out_dir = Path(work_dir) / kind / "eval" / name
    outcome = materialise(store, bucket, prefix, kind, f"eval-{name}", out_dir, settings)
    if outcome.quarantined:
        raise _problems(f"{kind} eval set {name!r}", [q.message for q in outcome.quarantined])
    if not outcome.rows:
        raise InvalidInput(f"{kind} eval set {name!r} has no rows")
    return [replace(row, split="eval") for row in outcome.rows]


def load_asr_eval_set(
    store: ObjectStore,
    bucket: str,
    name: str,
    work_dir: Path,
    settings: Settings,
) -> list[AsrRow]:
    """The validated rows of golden ASR set ``name`` (local 16 kHz WAVs, normalised text)."""
    rows = _load_eval_rows(store, bucket, "asr", name, work_dir, settings)
    return [row for row in rows if isinstance(row, AsrRow)]


def parse_trials(data: bytes, ids: set[str], where: str) -> list[Trial]:
    """Parse Kaldi-style trial lines ``<enrol> <test> target|nontarget``.

    InvalidInput lists every bad line (wrong shape, other label, unknown utterance id).
    """
    trials: list[Trial] = []
    problems: list[str] = []
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{where} is not UTF-8 text: {exc}") from None
    for number, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 3 or parts[2] not in ("target", "nontarget"):
            problems.append(f"line {number}: {line.strip()!r} is not '<enrol> <test> <label>'")
            continue
        unknown = [p for p in parts[:2] if p not in ids]
        if unknown:
            problems.append(f"line {number}: unknown utterance id(s) {', '.join(unknown)}")
            continue
        trials.append(Trial(parts[0], parts[1], parts[2] == "target"))
    if problems:
        raise _problems(where, problems)
    if not trials:
        raise InvalidInput(f"{where} has no trials")
    return trials


def load_spk_eval_set(
    store: ObjectStore,
    bucket: str,
    name: str,
    work_dir: Path,
    settings: Settings,
) -> SpkEvalSet:
    """The validated rows and trials of golden speaker set ``name``."""
    rows = [
        row
        for row in _load_eval_rows(store, bucket, "spk", name, work_dir, settings)
        if isinstance(row, SpkRow)
    ]
    key = f"spk/eval/{name}/{TRIALS}"
    try:
        data = store.get_bytes(bucket, key)
    except NotFound:
        raise NotFound(f"spk eval set {name!r} has no {TRIALS} ({bucket}/{key})") from None
    trials = parse_trials(data, {row.id for row in rows}, f"spk eval set {name!r} {TRIALS}")
    return SpkEvalSet(rows=rows, trials=trials)


def read_local_rows(batch_dir: Path, kind: Kind) -> list[Row]:
    """The rows of a locally ingested batch (``<work_dir>/<kind>/batches/<id>``) or eval set."""
    path = Path(batch_dir) / MANIFEST
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise NotFound(f"no ingested rows at {path}") from None
    return [row_from_json(json.loads(line), kind, Path(batch_dir)) for line in lines if line]
