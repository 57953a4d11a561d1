"""The data side of the loop's story: what is generated, dropped, probed and checked.

The story (``make demo``, ``tests/e2e``) runs on one partition of the synthetic corpus
(:mod:`speechloop.data.synth`):

- the **base corpus**: the golden evaluation sets (held-out voices and names, which the
  shipped seeds never heard), the **unseen-voices** speaker set (voices that neither the
  seeds nor any batch of the story contain: the speaker gate's open-set guard) and a few
  "old" batches from the seen pool (what the seeds already know; later runs replay them);
- **new batches**: labelled audio of the held-out voices saying the held-out names (new
  speakers, new names) -- what the retraining is for;
- a **mislabelled batch**: held-out audio whose transcripts are shifted to the next clip
  of the batch, so a candidate trained on it must not be promoted.

Every spec of the story shares the partition and the evaluation sizes, so the golden
sets are the same ones and no batch repeats a golden sentence (:mod:`.plan`).
Generation is idempotent (a set whose manifest exists is skipped), so a second run of
the story reuses what the first one wrote.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from speechloop.data.ledger import Ledger
from speechloop.data.synth import CorpusSpec, generate_corpus
from speechloop.errors import NotFound

if TYPE_CHECKING:
    from speechloop.context import AppContext
    from speechloop.data.synth.corpus import CorpusReport
    from speechloop.storage.base import ObjectStore

OLD_PREFIX = "old"
NEW_PREFIX = "new"
BAD_PREFIX = "mislabelled"


@dataclass(frozen=True)
class StorySizes:
    """How much data the story uses and how long it trains.

    ``voices_heldout`` / ``names_heldout``: the new speakers and names (the golden sets
    and the new batches draw from them). ``golden_asr`` utterances and
    ``spk_eval_utts`` per speaker make the golden sets both models are gated on;
    ``voices_unseen`` voices (``spk_eval_utts`` clips each) that no batch uses make the
    speaker gate's unseen-voices set (embedding time only: more voices, a steadier guard).
    """

    voices_heldout: int
    names_heldout: int
    golden_asr: int
    spk_eval_utts: int
    old_asr: int
    old_spk: int
    new_batches: int
    new_asr_per_batch: int
    new_spk_per_batch: int
    bad_asr: int
    asr_epochs: int
    spk_epochs: int
    bad_epochs: int = 1
    voices_unseen: int = 16
    #: gate overrides (None: the configured gate, 95% confidence, margins 0.005)
    gate_confidence: float | None = None
    gate_margin: float | None = None

    @classmethod
    def demo(cls) -> StorySizes:
        """``make demo``: golden sets big enough for the configured gate (95%, margins
        0.005): 100 ASR utterances, 8 new speakers with 10 clips each; 16 unseen voices
        with 10 clips each."""
        return cls(
            voices_heldout=8, names_heldout=20, golden_asr=100, spk_eval_utts=10,
            old_asr=100, old_spk=40, new_batches=2, new_asr_per_batch=150,
            new_spk_per_batch=200, bad_asr=100, asr_epochs=3, spk_epochs=8,
            voices_unseen=16,
        )  # fmt: skip

    @classmethod
    def small(cls) -> StorySizes:
        """The end-to-end test: smaller golden sets and old batches, and a gate at 80%
        confidence and margin 0 (as the flows' integration test): sets this small cannot
        show a short CPU run's gain at 95%, and the test is about the loop's plumbing, not
        the gate's statistics (the gate has its own tests)."""
        return cls(
            voices_heldout=8, names_heldout=15, golden_asr=60, spk_eval_utts=6,
            old_asr=40, old_spk=24, new_batches=2, new_asr_per_batch=150,
            new_spk_per_batch=160, bad_asr=60, asr_epochs=3, spk_epochs=8,
            gate_confidence=0.8, gate_margin=0.0, voices_unseen=12,
        )  # fmt: skip


def base_spec(sizes: StorySizes) -> CorpusSpec:
    """Golden sets, the unseen-voices set, and one "old" batch per kind from the seen pool."""
    return CorpusSpec.preset("demo").updated({
        "n_voices_heldout": sizes.voices_heldout, "n_names_heldout": sizes.names_heldout,
        "n_voices_unseen": sizes.voices_unseen,
        "asr_eval_golden": sizes.golden_asr, "asr_eval_seen": 0,
        "spk_eval_utts": sizes.spk_eval_utts, "batch_prefix": OLD_PREFIX, "batches": 1,
        "asr_per_batch": sizes.old_asr, "spk_per_batch": sizes.old_spk,
    })  # fmt: skip


def new_spec(sizes: StorySizes) -> CorpusSpec:
    """New speakers and names: held-out pool batches, no evaluation sets."""
    return base_spec(sizes).updated({
        "pool": "heldout", "with_eval": False, "batch_prefix": NEW_PREFIX, "seed": 1,
        "batches": sizes.new_batches, "asr_per_batch": sizes.new_asr_per_batch,
        "spk_per_batch": sizes.new_spk_per_batch,
    })  # fmt: skip


def bad_spec(sizes: StorySizes) -> CorpusSpec:
    """One held-out ASR batch (its transcripts are shifted after generation)."""
    return base_spec(sizes).updated({
        "pool": "heldout", "with_eval": False, "batch_prefix": BAD_PREFIX, "seed": 2,
        "batches": 1, "asr_per_batch": sizes.bad_asr, "spk_per_batch": 0,
    })  # fmt: skip


def generate_base(ctx: AppContext, sizes: StorySizes) -> CorpusReport:
    """Write the base corpus (sets already there are skipped and reported)."""
    return generate_corpus(ctx.store, ctx.settings.data_bucket, base_spec(sizes))


def drop_new_batches(ctx: AppContext, sizes: StorySizes) -> CorpusReport:
    """Write the new labelled batches (new speakers, new names)."""
    return generate_corpus(ctx.store, ctx.settings.data_bucket, new_spec(sizes))


def drop_mislabelled_batch(ctx: AppContext, sizes: StorySizes) -> CorpusReport:
    """Write the mislabelled ASR batch; its labels are shifted only when it is new."""
    bucket = ctx.settings.data_bucket
    report = generate_corpus(ctx.store, bucket, bad_spec(sizes))
    for batch_id in report.asr_batches:
        mislabel(ctx.store, bucket, f"asr/batches/{batch_id}/manifest.jsonl")
    return report


def mislabel(store: ObjectStore, bucket: str, key: str) -> None:
    """Give every row the transcript (and hotwords) of the next clip of the manifest."""
    rows = [json.loads(line) for line in store.get_bytes(bucket, key).decode().splitlines()]
    labels = [(r["text"], r.get("hotwords", [])) for r in rows]
    for row, (text, hotwords) in zip(rows, labels[1:] + labels[:1], strict=True):
        row["text"], row["hotwords"] = text, hotwords
    body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    store.put_bytes(bucket, key, body.encode())


# -- probes: clips the story sends to the service -----------------------------------------


@dataclass(frozen=True)
class AsrProbe:
    """A golden utterance with its transcript and hotwords (held-out names)."""

    id: str
    audio: bytes
    text: str
    hotwords: tuple[str, ...]


@dataclass(frozen=True)
class SpkProbe:
    """Golden clips of one new speaker: the first ones enrol, the rest test."""

    speaker: str
    enrol: tuple[bytes, ...]
    test: tuple[bytes, ...]


def _manifest(ctx: AppContext, prefix: str) -> list[dict[str, object]]:
    bucket = ctx.settings.data_bucket
    try:
        body = ctx.store.get_bytes(bucket, f"{prefix}/manifest.jsonl")
    except NotFound as exc:
        raise NotFound(f"no evaluation set at {prefix} (generate the base corpus first)") from exc
    return [json.loads(line) for line in body.decode().splitlines() if line.strip()]


def asr_probes(ctx: AppContext, count: int) -> list[AsrProbe]:
    """The first ``count`` golden utterances that carry hotwords (fixed order)."""
    bucket = ctx.settings.data_bucket
    out: list[AsrProbe] = []
    for row in _manifest(ctx, "asr/eval/golden"):
        hotwords = tuple(str(h) for h in row.get("hotwords") or [])  # type: ignore[attr-defined]
        if not hotwords:
            continue
        audio = ctx.store.get_bytes(bucket, f"asr/eval/golden/{row['audio']}")
        out.append(AsrProbe(str(row["id"]), audio, str(row["text"]), hotwords))
        if len(out) == count:
            break
    return out


def spk_probes(ctx: AppContext, speakers: int, enrol: int = 2) -> list[SpkProbe]:
    """Golden clips of the first ``speakers`` new speakers: ``enrol`` to enrol, the rest to
    test (speaker ids sorted, clips in manifest order)."""
    bucket = ctx.settings.data_bucket
    clips: dict[str, list[bytes]] = defaultdict(list)
    for row in _manifest(ctx, "spk/eval/golden"):
        clips[str(row["speaker"])].append(
            ctx.store.get_bytes(bucket, f"spk/eval/golden/{row['audio']}")
        )
    chosen = sorted(clips)[:speakers]
    return [SpkProbe(s, tuple(clips[s][:enrol]), tuple(clips[s][enrol:])) for s in chosen]


# -- the ledger ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LedgerLine:
    """One batch as the ledger has it."""

    kind: str
    batch_id: str
    state: str
    committed_by: str | None
    rows_in: int | None
    good: int | None
    quarantined: int | None


def ledger_lines(ctx: AppContext) -> list[LedgerLine]:
    """Every batch of both kinds with its state and, once committed, its row counts."""
    out: list[LedgerLine] = []
    for kind in ("asr", "spk"):
        ledger = Ledger(ctx.store, ctx.settings.data_bucket, kind)
        for status in ledger.scan(owners=True):
            counts: tuple[int | None, ...] = (None, None, None)
            if status.state == "committed":
                record = ledger.committed_record(status.batch_id)
                counts = (record.rows_in, record.good, record.quarantined)
            out.append(LedgerLine(kind, status.batch_id, status.state, status.committed_by,
                                  *counts))  # fmt: skip
    return out


def ledger_problems(lines: list[LedgerLine]) -> list[str]:
    """What is wrong with the ledger: a batch listed twice, not committed, or whose rows
    do not add up (every row is either good or quarantined with a reason)."""
    problems: list[str] = []
    seen: set[tuple[str, str]] = set()
    for line in lines:
        key = (line.kind, line.batch_id)
        if key in seen:
            problems.append(f"{line.kind}/{line.batch_id} listed twice")
        seen.add(key)
        if line.state != "committed":
            problems.append(f"{line.kind}/{line.batch_id} is {line.state}, not committed")
        elif line.rows_in != (line.good or 0) + (line.quarantined or 0):
            problems.append(
                f"{line.kind}/{line.batch_id}: {line.rows_in} rows in, {line.good} good + "
                f"{line.quarantined} quarantined"
            )
    return problems


# -- a batch with bad rows ----------------------------------------------------------------

FAULTY = "faulty-0001"


def drop_faulty_batches(ctx: AppContext) -> list[str]:
    """One ASR and one speaker batch, each with a few good rows (borrowed from the old
    batch) and one row of every common fault, uploaded like a producer (audio first,
    manifest last). Ingestion must quarantine exactly the bad rows, with their reasons.
    Idempotent: nothing is written when the batches exist. The kinds written."""
    bucket = ctx.settings.data_bucket
    written = []
    for kind in ("asr", "spk"):
        prefix = f"{kind}/batches/{FAULTY}"
        if ctx.store.exists(bucket, f"{prefix}/manifest.jsonl"):
            continue
        good = _borrowed(ctx, f"{kind}/batches/{OLD_PREFIX}-0001", 3)
        rows, audio = _faulty_rows(kind, good)
        for name, data in audio.items():
            ctx.store.put_bytes(bucket, f"{prefix}/{name}", data)
        body = "".join(json.dumps(r) + "\n" for r in rows).encode()
        ctx.store.put_bytes(bucket, f"{prefix}/manifest.jsonl", body)
        written.append(kind)
    return written


def _borrowed(ctx: AppContext, prefix: str, n: int) -> list[tuple[dict[str, object], bytes]]:
    """The first ``n`` rows of a generated batch and their audio."""
    bucket = ctx.settings.data_bucket
    rows = _manifest(ctx, prefix)[:n]
    return [(row, ctx.store.get_bytes(bucket, f"{prefix}/{row['audio']}")) for row in rows]


def _faulty_rows(
    kind: str, good: list[tuple[dict[str, object], bytes]]
) -> tuple[list[dict[str, object]], dict[str, bytes]]:
    """Good rows, then (ASR) a corrupt file, a too-short clip, an empty transcript and a
    path escaping the batch, or (speaker) a row without a speaker."""
    label = "text" if kind == "asr" else "speaker"
    rows: list[dict[str, object]] = []
    audio: dict[str, bytes] = {}
    for i, (row, data) in enumerate(good):
        rows.append({"id": f"faulty-ok-{i}", "audio": f"ok-{i}.wav", label: row[label]})
        audio[f"ok-{i}.wav"] = data
    if kind == "spk":
        rows.append({"id": "faulty-nospeaker", "audio": "ok-0.wav", "speaker": ""})
        return rows, audio
    clip = good[0][1]
    audio["corrupt.wav"] = clip[:20] + b"\xff" * 16 + clip[36:]
    audio["short.wav"] = _tone(0.12)
    rows += [
        {"id": "faulty-corrupt", "audio": "corrupt.wav", "text": "a corrupt file"},
        {"id": "faulty-short", "audio": "short.wav", "text": "far too short"},
        {"id": "faulty-empty", "audio": "ok-0.wav", "text": "   "},
        {"id": "faulty-escape", "audio": "../../spk/batches/secret.wav", "text": "sneaky"},
    ]
    return rows, audio


def _tone(seconds: float, freq: float = 220.0, rate: int = 16_000) -> bytes:
    """A plain tone as WAV bytes."""
    import io

    import numpy as np
    import soundfile as sf

    t = np.arange(int(seconds * rate)) / rate
    buf = io.BytesIO()
    sf.write(buf, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), rate, format="WAV")
    return buf.getvalue()
