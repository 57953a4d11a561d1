"""The speaker run's open-set set: voices no training batch contains, checked at plan time.

A speaker candidate fine-tuned on a few new voices can score better on those voices (the
golden set) and worse on every voice it never heard (docs/speaker.md, "Fine-tuning"),
and verification is an open-set task: future users are voices no model has heard. So a
speaker run also scores both models on ``spk/eval/<RetrainConfig.spk_unseen_set>`` and
the gate guards those figures (:func:`speechloop.gating.gate.open_set_checks`).

Checked when a run plans, before anything is staged or trained: the set must be in the
store (manifest and trials; :func:`require_unseen_set` raises NotFound naming the
missing prefix) and, once the training set is known, share no voice with its rows
(:func:`check_unseen_disjoint`), else the guard would measure nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING

from speechloop.data.dataset import TRIALS
from speechloop.data.manifest import MANIFEST, is_safe_name
from speechloop.data.types import SpkRow
from speechloop.errors import InvalidInput, NotFound

if TYPE_CHECKING:
    from speechloop.storage.base import ObjectStore


def unseen_prefix(name: str) -> str:
    """Where the unseen-voices set ``name`` lives in the data bucket."""
    return f"spk/eval/{name}"


def require_unseen_set(store: ObjectStore, bucket: str, name: str) -> frozenset[str]:
    """The speakers of the unseen-voices set ``name``; NotFound naming what is missing.

    Reads the manifest only (no audio): cheap enough for every planned run.
    """
    if not is_safe_name(name):
        raise InvalidInput(f"unseen-voices set name {name!r} is not a plain name")
    prefix = unseen_prefix(name)
    fix = (
        "put a speaker set of voices that no training batch contains there "
        "(docs/operations.md), or run with spk_unseen_set=None to skip the open-set check"
    )
    for part in (MANIFEST, TRIALS):
        if not store.exists(bucket, f"{prefix}/{part}"):
            raise NotFound(
                f"the speaker gate's unseen-voices set {bucket}/{prefix}/ is missing "
                f"({part} not found): {fix}"
            )
    body = store.get_bytes(bucket, f"{prefix}/{MANIFEST}").decode("utf-8", errors="replace")
    try:
        rows = [json.loads(line) for line in body.splitlines() if line.strip()]
        speakers = frozenset(str(r["speaker"]) for r in rows)
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidInput(
            f"{bucket}/{prefix}/{MANIFEST} is not a speaker manifest: {exc!r}"
        ) from exc
    if len(speakers) < 2:
        raise InvalidInput(f"{bucket}/{prefix}/ needs at least 2 speakers, has {len(speakers)}")
    return speakers


def check_unseen_disjoint(name: str, unseen: frozenset[str], rows: Iterable[object]) -> None:
    """Refuse a training set that contains a voice of the unseen set (InvalidInput naming
    the voices): a guard on voices the candidate trained on would measure nothing."""
    shared = sorted(unseen & {r.speaker for r in rows if isinstance(r, SpkRow)})
    if shared:
        raise InvalidInput(
            f"the training rows share {len(shared)} voice(s) with the unseen-voices set "
            f"{unseen_prefix(name)}: {', '.join(shared[:5])}; replace that set with voices "
            "no batch contains"
        )
