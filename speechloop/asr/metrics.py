"""ASR scoring: character error rate and hotword recall / precision / F1.

Text is normalised with :func:`speechloop.text.normalize_text` (the form the whole
project uses), then scored per character. A space between two words of a spaced
script is a character (a missed word break is an error); spaces next to a character of
a script written without spaces (CJK, Thai...) are dropped, so ``"欢 迎"`` and ``"欢迎"``
score the same.

Hotwords: a reference hotword occurrence (the hotword found in the reference as whole
words) is *recalled* when the hypothesis, at the place the alignment maps that span to,
holds exactly the hotword (with word boundaries there too). Precision is over hotword
occurrences found the same way in the hypothesis: true positives are the recalled
occurrences. The evaluator only sees hypotheses; to compare decoding with and without a
hotword list, the caller decodes twice and scores both.

Corpus CER is total edits over total reference characters (not a mean of ratios).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from speechloop.errors import InvalidInput
from speechloop.text import is_spaceless, normalize_text

MATCH, SUB, DEL, INS = "=", "S", "D", "I"


def char_units(text: str) -> str:
    """The scored characters of ``text``: normalised, spaces kept only between spaced words."""
    norm = normalize_text(text)
    out = []
    for i, ch in enumerate(norm):
        if ch == " " and (is_spaceless(norm[i - 1]) or is_spaceless(norm[i + 1])):
            continue
        out.append(ch)
    return "".join(out)


@dataclass(frozen=True)
class Alignment:
    """A minimum-edit alignment: ``ops`` are (op, ref index | None, hyp index | None)."""

    ops: tuple[tuple[str, int | None, int | None], ...]

    def count(self, op: str) -> int:
        """Number of operations of kind ``op`` (MATCH, SUB, DEL or INS)."""
        return sum(1 for o, _, _ in self.ops if o == op)

    @property
    def edits(self) -> int:
        """Substitutions + deletions + insertions."""
        return sum(1 for o, _, _ in self.ops if o != MATCH)

    def hyp_span(self, start: int, end: int) -> tuple[int, int]:
        """The hypothesis slice aligned to reference slice ``[start, end)`` (end > start).

        Insertions inside the span belong to it; those before its first or after its last
        reference character do not.
        """
        consumed = 0
        begin = stop = -1
        for op, i, _ in self.ops:
            if i == start and begin < 0:
                begin = consumed
            if op != DEL:
                consumed += 1
            if i == end - 1:
                stop = consumed
                break
        if begin < 0 or stop < 0:
            raise InvalidInput(f"reference span [{start}, {end}) is outside the alignment")
        return begin, stop


def align(ref: Sequence[str], hyp: Sequence[str]) -> Alignment:
    """Levenshtein alignment of ``ref`` to ``hyp`` (unit costs) with a backtrace.

    Ties are broken towards match/substitution, then deletion, then insertion, so the
    result is deterministic.
    """
    n, m = len(ref), len(hyp)
    dist = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(1, n + 1):
        dist[i][0] = i
    for j in range(1, m + 1):
        dist[0][j] = j
    for i in range(1, n + 1):
        row, prev, r = dist[i], dist[i - 1], ref[i - 1]
        for j in range(1, m + 1):
            row[j] = min(prev[j - 1] + (r != hyp[j - 1]), prev[j] + 1, row[j - 1] + 1)
    ops: list[tuple[str, int | None, int | None]] = []
    i, j = n, m
    while i > 0 or j > 0:
        if i > 0 and j > 0 and dist[i][j] == dist[i - 1][j - 1] + (ref[i - 1] != hyp[j - 1]):
            ops.append((MATCH if ref[i - 1] == hyp[j - 1] else SUB, i - 1, j - 1))
            i, j = i - 1, j - 1
        elif i > 0 and dist[i][j] == dist[i - 1][j] + 1:
            ops.append((DEL, i - 1, None))
            i -= 1
        else:
            ops.append((INS, None, j - 1))
            j -= 1
    return Alignment(ops=tuple(reversed(ops)))


def _edge_ok(text: str, start: int, end: int) -> bool:
    """Whether ``text[start:end]`` sits on word boundaries (needed only at spaced edges)."""
    left = start == 0 or text[start - 1] == " " or is_spaceless(text[start])
    right = end == len(text) or text[end] == " " or is_spaceless(text[end - 1])
    return left and right


def occurrences(text: str, phrase: str) -> list[tuple[int, int]]:
    """Non-overlapping spans of ``phrase`` in ``text`` (both scored units), whole words only."""
    spans: list[tuple[int, int]] = []
    if not phrase:
        return spans
    pos = text.find(phrase)
    while pos >= 0:
        end = pos + len(phrase)
        if _edge_ok(text, pos, end):
            spans.append((pos, end))
            pos = text.find(phrase, end)
        else:
            pos = text.find(phrase, pos + 1)
    return spans


@dataclass(frozen=True)
class UttScore:
    """Edit counts and hotword counts of one utterance."""

    ref_chars: int
    substitutions: int
    deletions: int
    insertions: int
    hotword_ref: int = 0  # reference hotword occurrences
    hotword_recalled: int = 0  # of those, present at the aligned place in the hypothesis
    hotword_hyp: int = 0  # hotword occurrences in the hypothesis

    @property
    def edits(self) -> int:
        """Substitutions + deletions + insertions."""
        return self.substitutions + self.deletions + self.insertions

    @property
    def cer(self) -> float:
        """Edits / reference characters (an empty reference: 0 if no edits, else 1)."""
        if self.ref_chars == 0:
            return float(self.edits > 0)
        return self.edits / self.ref_chars


def hotword_counts(ref_u: str, hyp_u: str, ali: Alignment, word: str) -> tuple[int, int, int]:
    """(reference occurrences, recalled, hypothesis occurrences) of one scored-unit
    ``word`` in scored texts ``ref_u`` / ``hyp_u`` aligned by ``ali``."""
    n_ref = n_rec = 0
    if not word:
        return 0, 0, 0
    for start, end in occurrences(ref_u, word):
        n_ref += 1
        h0, h1 = ali.hyp_span(start, end)
        n_rec += hyp_u[h0:h1] == word and _edge_ok(hyp_u, h0, h1)
    return n_ref, n_rec, len(occurrences(hyp_u, word))


def score_utterance(ref: str, hyp: str, hotwords: Iterable[str] = ()) -> UttScore:
    """Score one hypothesis against its reference, with the hotwords of this utterance."""
    ref_u, hyp_u = char_units(ref), char_units(hyp)
    ali = align(ref_u, hyp_u)
    n_ref = n_rec = n_hyp = 0
    for word in dict.fromkeys(char_units(w) for w in hotwords):
        w_ref, w_rec, w_hyp = hotword_counts(ref_u, hyp_u, ali, word)
        n_ref, n_rec, n_hyp = n_ref + w_ref, n_rec + w_rec, n_hyp + w_hyp
    return UttScore(
        ref_chars=len(ref_u),
        substitutions=ali.count(SUB),
        deletions=ali.count(DEL),
        insertions=ali.count(INS),
        hotword_ref=n_ref,
        hotword_recalled=n_rec,
        hotword_hyp=n_hyp,
    )


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


@dataclass(frozen=True)
class CorpusScore:
    """Totals over a set; ratios are None where undefined (no hotwords, nothing output)."""

    utterances: int
    ref_chars: int
    substitutions: int
    deletions: int
    insertions: int
    hotword_ref: int
    hotword_recalled: int
    hotword_hyp: int
    per_utterance: list[UttScore] = field(default_factory=list, repr=False)

    @property
    def edits(self) -> int:
        """Total substitutions + deletions + insertions."""
        return self.substitutions + self.deletions + self.insertions

    @property
    def cer(self) -> float:
        """Total edits / total reference characters."""
        return self.edits / self.ref_chars if self.ref_chars else float(self.edits > 0)

    @property
    def acc(self) -> float:
        """1 - CER (the gate's primary ASR metric; negative when insertions abound)."""
        return 1.0 - self.cer

    @property
    def hotword_recall(self) -> float | None:
        """Recalled / reference hotword occurrences."""
        return _ratio(self.hotword_recalled, self.hotword_ref)

    @property
    def hotword_precision(self) -> float | None:
        """Recalled / hotword occurrences in the hypotheses."""
        return _ratio(min(self.hotword_recalled, self.hotword_hyp), self.hotword_hyp)

    @property
    def hotword_f1(self) -> float | None:
        """Harmonic mean of recall and precision (0 when both are 0)."""
        r, p = self.hotword_recall, self.hotword_precision
        if r is None or p is None:
            return None
        return 0.0 if r + p == 0 else 2 * r * p / (r + p)

    def as_dict(self) -> dict[str, float | int | None]:
        """Figures for metrics.json and reports."""
        return {
            "utterances": self.utterances,
            "ref_chars": self.ref_chars,
            "substitutions": self.substitutions,
            "deletions": self.deletions,
            "insertions": self.insertions,
            "cer": self.cer,
            "acc": self.acc,
            "hotword_ref": self.hotword_ref,
            "hotword_recalled": self.hotword_recalled,
            "hotword_hyp": self.hotword_hyp,
            "hotword_recall": self.hotword_recall,
            "hotword_precision": self.hotword_precision,
            "hotword_f1": self.hotword_f1,
        }


def aggregate(scores: Sequence[UttScore]) -> CorpusScore:
    """Sum utterance scores into corpus figures (also used by the paired bootstrap)."""
    return CorpusScore(
        utterances=len(scores),
        ref_chars=sum(s.ref_chars for s in scores),
        substitutions=sum(s.substitutions for s in scores),
        deletions=sum(s.deletions for s in scores),
        insertions=sum(s.insertions for s in scores),
        hotword_ref=sum(s.hotword_ref for s in scores),
        hotword_recalled=sum(s.hotword_recalled for s in scores),
        hotword_hyp=sum(s.hotword_hyp for s in scores),
        per_utterance=list(scores),
    )


def score_corpus(
    refs: Sequence[str],
    hyps: Sequence[str],
    hotwords: Sequence[Sequence[str]] | None = None,
) -> CorpusScore:
    """Score a set: ``hotwords[i]`` are utterance i's hotwords (None: no hotword scoring)."""
    if len(refs) != len(hyps):
        raise InvalidInput(f"{len(refs)} references but {len(hyps)} hypotheses")
    if hotwords is not None and len(hotwords) != len(refs):
        raise InvalidInput(f"{len(hotwords)} hotword lists for {len(refs)} utterances")
    lists: Sequence[Sequence[str]] = hotwords if hotwords is not None else [()] * len(refs)
    return aggregate([score_utterance(r, h, w) for r, h, w in zip(refs, hyps, lists, strict=True)])
