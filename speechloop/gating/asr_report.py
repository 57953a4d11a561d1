"""Per-utterance ASR scores of one model on one evaluation set (what the gate resamples).

Each utterance is decoded twice by the same model: without hotwords and with one
*shared* hotword list (every hotword of the set by default: the real names plus the
distractors the other utterances bring). Both decodings are scored on the utterance's
reference with :mod:`speechloop.asr.metrics` (normalised characters, minimum-edit
alignment), and every name of the shared list is counted on every utterance:

- ``hotword_ref[name]``: occurrences of the name in the reference;
- ``hits[name]``: of those, recalled at the aligned place in the hypothesis;
- ``false_alarms``: occurrences of listed names in the hypothesis that are not recalled
  reference occurrences (a name inserted where it was not said).

Corpus figures are ratios of sums (total edits over total reference characters), so a
bootstrap resample of utterances gives the corpus figure of that resample.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from speechloop.asr.metrics import align, char_units, hotword_counts
from speechloop.errors import InvalidInput

I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class DecodingScore:
    """One decoding of one utterance: character errors, hotword hits, false alarms."""

    errors: int  # substitutions + deletions + insertions
    hits: Mapping[str, int] = field(default_factory=dict)  # name -> recalled occurrences
    false_alarms: int = 0

    @property
    def hit_total(self) -> int:
        """Recalled hotword occurrences, all names together."""
        return sum(self.hits.values())


@dataclass(frozen=True)
class AsrUtterance:
    """Scores of one utterance, decoded with the shared list and without hotwords."""

    id: str
    ref_chars: int
    hotword_ref: Mapping[str, int]  # name -> occurrences in the reference (listed names)
    with_list: DecodingScore
    plain: DecodingScore

    @property
    def hotword_total(self) -> int:
        """Reference occurrences of listed names."""
        return sum(self.hotword_ref.values())

    def misses(self, decoding: str = "with_list") -> dict[str, int]:
        """Name -> reference occurrences not recalled in ``decoding`` (with_list | plain)."""
        dec = self.with_list if decoding == "with_list" else self.plain
        return {n: c - dec.hits.get(n, 0) for n, c in self.hotword_ref.items() if c}


def score_decoding(
    ref: str, hyp: str, names: Sequence[str]
) -> tuple[int, dict[str, int], DecodingScore]:
    """(reference characters, name -> reference occurrences, the decoding's score)."""
    ref_u, hyp_u = char_units(ref), char_units(hyp)
    ali = align(ref_u, hyp_u)
    refs: dict[str, int] = {}
    hits: dict[str, int] = {}
    false_alarms = 0
    for name in names:
        n_ref, n_rec, n_hyp = hotword_counts(ref_u, hyp_u, ali, char_units(name))
        if n_ref:
            refs[name] = n_ref
        if n_rec:
            hits[name] = n_rec
        false_alarms += max(0, n_hyp - n_rec)
    return len(ref_u), refs, DecodingScore(ali.edits, hits, false_alarms)


@dataclass(frozen=True)
class AsrReport:
    """Per-utterance scores of one model version on one evaluation set."""

    version: str
    hotword_list: tuple[str, ...]  # the shared list both decodings were scored with
    utterances: tuple[AsrUtterance, ...]
    eval_set: str = ""  # a name or digest of the evaluation set (for the record)

    kind: ClassVar[str] = "asr"

    def __post_init__(self) -> None:
        """Refuse an empty report: nothing to gate on."""
        if not self.utterances:
            raise InvalidInput(f"ASR report of {self.version!r} has no utterances")

    @property
    def ids(self) -> tuple[str, ...]:
        """Utterance ids in report order."""
        return tuple(u.id for u in self.utterances)

    def arrays(self) -> dict[str, I64]:
        """Per-utterance counts as integer arrays (the bootstrap's input)."""
        us = self.utterances

        def col(values: Any) -> I64:
            return np.fromiter(values, dtype=np.int64, count=len(us))

        return {
            "ref_chars": col(u.ref_chars for u in us),
            "errors": col(u.with_list.errors for u in us),
            "errors_plain": col(u.plain.errors for u in us),
            "hotword_ref": col(u.hotword_total for u in us),
            "hits": col(u.with_list.hit_total for u in us),
            "hits_plain": col(u.plain.hit_total for u in us),
            "false_alarms": col(u.with_list.false_alarms for u in us),
        }

    def summary(self) -> dict[str, Any]:
        """Corpus figures (see :func:`asr_metrics`) with the counts behind them, plus
        recall without hotwords and precision / F1 with the shared list (reports only)."""
        a = self.arrays()
        out: dict[str, Any] = {"utterances": len(self.utterances)}
        out.update({k: int(v.sum()) for k, v in a.items()})
        out.update(asr_metrics(a, np.arange(len(self.utterances))))
        out["hotword_recall_plain"] = _ratio(a["hits_plain"].sum(), a["hotword_ref"].sum())
        hits, fas = int(a["hits"].sum()), int(a["false_alarms"].sum())
        precision = _ratio(hits, hits + fas)
        recall = out["hotword_recall"]
        out["hotword_precision"] = precision
        out["hotword_f1"] = (
            None
            if precision is None or recall is None
            else 0.0
            if precision + recall == 0
            else 2 * precision * recall / (precision + recall)
        )
        return out

    def per_name(self) -> dict[str, dict[str, int]]:
        """Name -> reference occurrences, hits with the list, hits without (all utterances)."""
        out: dict[str, dict[str, int]] = {}
        for u in self.utterances:
            for name, n in u.hotword_ref.items():
                row = out.setdefault(name, {"ref": 0, "hits": 0, "hits_plain": 0})
                row["ref"] += n
                row["hits"] += u.with_list.hits.get(name, 0)
                row["hits_plain"] += u.plain.hits.get(name, 0)
        return dict(sorted(out.items()))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (inverse: :meth:`from_dict`)."""
        return {
            "kind": self.kind,
            "version": self.version,
            "eval_set": self.eval_set,
            "hotword_list": list(self.hotword_list),
            "utterances": [
                {
                    "id": u.id,
                    "ref_chars": u.ref_chars,
                    "hotword_ref": dict(u.hotword_ref),
                    "with_list": _decoding_dict(u.with_list),
                    "plain": _decoding_dict(u.plain),
                }
                for u in self.utterances
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AsrReport:
        """Rebuild a report written by :meth:`to_dict`."""
        try:
            utts = tuple(
                AsrUtterance(
                    id=str(u["id"]),
                    ref_chars=int(u["ref_chars"]),
                    hotword_ref={str(k): int(v) for k, v in u["hotword_ref"].items()},
                    with_list=_decoding_from(u["with_list"]),
                    plain=_decoding_from(u["plain"]),
                )
                for u in data["utterances"]
            )
            return cls(
                version=str(data["version"]),
                hotword_list=tuple(data["hotword_list"]),
                utterances=utts,
                eval_set=str(data.get("eval_set", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"not an ASR report: {exc!r}") from exc


def _decoding_dict(d: DecodingScore) -> dict[str, Any]:
    return {"errors": d.errors, "hits": dict(d.hits), "false_alarms": d.false_alarms}


def _decoding_from(data: Mapping[str, Any]) -> DecodingScore:
    hits = {str(k): int(v) for k, v in data.get("hits", {}).items()}
    return DecodingScore(int(data["errors"]), hits, int(data.get("false_alarms", 0)))


def _ratio(num: Any, den: Any) -> float | None:
    return float(num) / float(den) if den else None


def asr_metrics(a: Mapping[str, I64], idx: I64) -> dict[str, float | None]:
    """The gate's ASR figures over the utterances ``idx`` (indices may repeat).

    ``acc`` = 1 - CER with the shared list (primary); ``cer_plain`` = CER without
    hotwords; ``hotword_recall`` with the shared list; ``hotword_false_alarms`` per
    utterance with the shared list. None where undefined (no reference hotwords).
    """
    chars = a["ref_chars"][idx].sum()
    if chars == 0:
        raise InvalidInput("the evaluation utterances have no reference characters")
    return {
        "acc": 1.0 - float(a["errors"][idx].sum()) / float(chars),
        "cer": float(a["errors"][idx].sum()) / float(chars),
        "cer_plain": float(a["errors_plain"][idx].sum()) / float(chars),
        "hotword_recall": _ratio(a["hits"][idx].sum(), a["hotword_ref"][idx].sum()),
        "hotword_false_alarms": float(a["false_alarms"][idx].sum()) / float(len(idx)),
    }


def shared_list(hotwords: Sequence[Sequence[str]]) -> tuple[str, ...]:
    """The default shared list: every hotword of the set, sorted, once."""
    return tuple(sorted({h for hs in hotwords for h in hs if h.strip()}))


def build_asr_report(
    version: str,
    ids: Sequence[str],
    refs: Sequence[str],
    hyps_with_list: Sequence[str],
    hyps_plain: Sequence[str],
    hotword_list: Sequence[str],
    *,
    eval_set: str = "",
) -> AsrReport:
    """An :class:`AsrReport` from references and both decodings' hypotheses."""
    n = len(ids)
    if not (len(refs) == len(hyps_with_list) == len(hyps_plain) == n):
        raise InvalidInput(
            f"{n} ids, {len(refs)} references, {len(hyps_with_list)} hypotheses with the "
            f"list and {len(hyps_plain)} without: they must match one to one"
        )
    if len(set(ids)) != n:
        raise InvalidInput(f"duplicate utterance ids in the evaluation set of {version!r}")
    names = tuple(dict.fromkeys(hotword_list))
    utts = []
    for uid, ref, hyp_l, hyp_p in zip(ids, refs, hyps_with_list, hyps_plain, strict=True):
        chars, hw_ref, with_list = score_decoding(ref, hyp_l, names)
        _, _, plain = score_decoding(ref, hyp_p, names)
        utts.append(AsrUtterance(uid, chars, hw_ref, with_list, plain))
    return AsrReport(version, names, tuple(utts), eval_set)
