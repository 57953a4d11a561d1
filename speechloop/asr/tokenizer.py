"""Token units of the seed ASR model: whole common words plus syllable pieces.

Why this unit: the real SeACo-Paraformer biases Chinese hotwords of 2-4 characters.
With English letters as tokens, an invented name is 6-9 tokens and the hotword head
collapsed to NO_BIAS (``../shared/REFERENCE.md``). Here a common word is one token
(``"▁kitchen"``) and every other word, names above all, is cut into syllable pieces,
each an onset and a vowel run, leftover consonants alone (``"sharkrik"`` ->
``▁sha r kri k``): about 4 tokens per name from a few hundred units that unseen names
share with the training names (the hotword head can only copy tokens it was trained to
emit), and a piece matches one stretch of sound, which keeps the CIF token count
acoustically consistent.

Encoding needs only the token list (``tokens.json``, a JSON list of strings, the
format funasr's ``CharTokenizer`` reads), so the ONNX serving path can decode ids
without torch. A piece missing from the vocabulary falls back to a greedy longest
match over smaller pieces; single letters are always in the vocabulary, so the only
out-of-vocabulary input is a character outside :data:`CHARSET`, which
:meth:`Tokenizer.oov` reports and :meth:`Tokenizer.encode` refuses.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from speechloop.errors import InvalidInput, NotFound
from speechloop.text import normalize_text

WORD_START = "▁"
BLANK, SOS, EOS, UNK, NO_BIAS_TOKEN = "<blank>", "<s>", "</s>", "<unk>", "<no_bias>"
SPECIALS = (BLANK, SOS, EOS, UNK, NO_BIAS_TOKEN)
LETTERS = "abcdefghijklmnopqrstuvwxyz'"
CHARSET = " " + LETTERS
_VOWELS = frozenset("aeiouy")
_PUNCTUATION = frozenset('.,;:!?"-()[]/')  # dropped by normalisation, not out of vocabulary
_PIECE = re.compile(r"[^aeiouy]*[aeiouy]+")


_ONSET_PAIRS = frozenset(
    "bl br ch cl cr dr fl fr gl gr kl kr ph pl pr qu sc sh sk sl sm sn sp st sw th tr wh wr".split()  # noqa: SIM905
)


def syllables(word: str) -> list[str]:
    """Cut a lower-case word into pieces of consonant-vowel units, consonants left over alone.

    Each vowel run takes the consonants before it as its onset, at most a known
    two-letter onset (``kr``, ``th``, ...) or one consonant; other consonants, and those
    at the end of the word, become pieces of their own. A small set of units covers
    unseen names (as Chinese characters do for the real model):

    >>> syllables("sharkrik")
    ['sha', 'r', 'kri', 'k']
    >>> syllables("drofator")
    ['dro', 'fa', 'to', 'r']
    """
    runs = _PIECE.findall(word)
    if not runs:
        return [word] if word else []
    tail = word[sum(len(r) for r in runs) :]
    out: list[str] = []
    for i, run in enumerate(runs):
        vowel_at = len(run) - len(run.lstrip("bcdfghjklmnpqrstvwxz'"))
        onset, rest = run[:vowel_at], run[vowel_at:]
        if i > 0 and len(onset) >= 2:
            keep = 2 if onset[-2:] in _ONSET_PAIRS else 1
            out.extend(onset[:-keep])
            onset = onset[-keep:]
        out.append(onset + rest)
    out.extend(tail)
    return out


class Tokenizer:
    """Text <-> token ids for the seed model; ``tokens`` is the ordered vocabulary."""

    def __init__(self, tokens: Sequence[str]) -> None:
        """Wrap a token list; the first five entries must be :data:`SPECIALS`."""
        if tuple(tokens[: len(SPECIALS)]) != SPECIALS:
            raise InvalidInput(f"token list must start with {SPECIALS}, got {tokens[:5]}")
        if len(set(tokens)) != len(tokens):
            raise InvalidInput("token list has duplicates")
        self.tokens: list[str] = list(tokens)
        self._ids = {t: i for i, t in enumerate(self.tokens)}
        self._longest = max(len(t) for t in self.tokens)

    # ids of the special tokens (funasr: blank 0, sos 1, eos 2)
    blank_id = 0
    sos_id = 1
    eos_id = 2
    unk_id = 3
    no_bias_id = 4

    @property
    def vocab_size(self) -> int:
        """Number of tokens, the model's output size."""
        return len(self.tokens)

    @staticmethod
    def normalise(text: str) -> str:
        """Lower-case, keep letters and apostrophes, collapse spaces (the corpus's form)."""
        text = re.sub(r"[^a-z']+", " ", text.lower())
        return " ".join(text.split())

    def oov(self, text: str) -> list[str]:
        """Characters of ``text`` (lower-cased) the tokenizer cannot represent, in order.

        Punctuation that normalisation turns into spaces is not reported; digits and
        letters outside ``a``-``z`` are (the corpus writes numbers as words).
        """
        seen: list[str] = []
        for ch in text.lower():
            if ch in CHARSET or ch.isspace() or ch in _PUNCTUATION:
                continue
            if ch not in seen:
                seen.append(ch)
        return seen

    def _word_ids(self, word: str) -> list[int]:
        """Ids of one word: the whole word if known, else its syllable pieces."""
        whole = self._ids.get(WORD_START + word)
        if whole is not None:
            return [whole]
        ids: list[int] = []
        for k, piece in enumerate(syllables(word)):
            ids.extend(self._greedy(WORD_START + piece if k == 0 else piece))
        return ids

    def _greedy(self, piece: str) -> list[int]:
        """Greedy longest match of ``piece`` over the vocabulary (letters always match)."""
        ids: list[int] = []
        i = 0
        while i < len(piece):
            for j in range(min(len(piece), i + self._longest), i, -1):
                tid = self._ids.get(piece[i:j])
                if tid is not None:
                    ids.append(tid)
                    i = j
                    break
            else:
                ids.append(self.unk_id)
                i += 1
        return ids

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``; raises InvalidInput naming characters it cannot encode."""
        bad = self.oov(text)
        if bad:
            raise InvalidInput(f"cannot tokenise {text!r}: characters {bad} not in {CHARSET!r}")
        ids: list[int] = []
        for word in self.normalise(text).split():
            ids.extend(self._word_ids(word))
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """Text of token ids; special tokens (blank, sos, eos, no_bias) are skipped."""
        return "".join(self.pieces(ids)).replace(WORD_START, " ").strip()

    def pieces(self, ids: Iterable[int]) -> list[str]:
        """Token strings of ``ids``, specials except ``<unk>`` left out."""
        skip = {self.blank_id, self.sos_id, self.eos_id, self.no_bias_id}
        return [self.tokens[i] for i in ids if i not in skip]

    def save(self, path: Path | str) -> Path:
        """Write the vocabulary as ``tokens.json`` (a JSON list, funasr's format)."""
        path = Path(path)
        path.write_text(json.dumps(self.tokens, ensure_ascii=False, indent=0), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: Path | str) -> Tokenizer:
        """Read a ``tokens.json`` written by :meth:`save`."""
        return cls(_read_tokens(Path(path), non_empty=False))

    @classmethod
    def build(
        cls,
        texts: Iterable[str],
        *,
        keep_whole: int = 2,
        never_whole: Iterable[str] = (),
        extra_words: Iterable[str] = (),
    ) -> Tokenizer:
        """Build a vocabulary from training transcripts.

        A word seen at least ``keep_whole`` times becomes one token unless it is in
        ``never_whole`` (the words of hotwords: names must stay pieces so that unseen
        names are spelled with the same units). Every syllable piece of the other words
        and of ``extra_words`` (e.g. an invented-name lexicon) is added, and every
        letter, alone and word-initial, so that any word in :data:`CHARSET` encodes.
        """
        banned = {w.lower() for phrase in never_whole for w in phrase.split()}
        counts: Counter[str] = Counter(w for t in texts for w in cls.normalise(t).split())
        whole = sorted(w for w, c in counts.items() if c >= keep_whole and w not in banned)
        pieces: set[str] = set()
        pieced = [w for w in counts if w not in whole]
        pieced += [w for phrase in extra_words for w in cls.normalise(phrase).split()]
        for word in pieced:
            for k, p in enumerate(syllables(word)):
                pieces.add(WORD_START + p if k == 0 else p)
        letters = set(LETTERS) | {WORD_START + c for c in LETTERS}
        vocab = [WORD_START + w for w in whole]
        vocab += sorted((pieces | letters) - set(vocab))
        return cls([*SPECIALS, *vocab])


SEG_DICT_FILE = "seg_dict"
_CJK = re.compile(r"[\u4e00-\u9fa5]+")
_CJK_OR_DIGITS = re.compile(r"[\u4e00-\u9fa50-9]+")  # funasr: spelled character by character


def read_seg_dict(path: Path | str) -> dict[str, list[str]]:
    """A ``seg_dict`` file as funasr's ``load_seg_dict`` reads it: one word a line, then
    its pieces, whitespace-separated (the pretrained model's file: ``speechloop`` TAB
    ``spe@@ ech@@ loop``; its CJK characters map to themselves)."""
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"seg_dict file {path} does not exist")
    out: dict[str, list[str]] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 2:
            raise InvalidInput(f"seg_dict file {path} line {n}: {line!r} has no pieces")
        out[fields[0]] = fields[1:]
    return out


def write_seg_dict(seg_dict: dict[str, list[str]], path: Path | str) -> Path:
    """Write ``seg_dict`` in the pretrained model's layout (word TAB pieces)."""
    path = Path(path)
    lines = (f"{word}\t{' '.join(pieces)}\n" for word, pieces in seg_dict.items())
    path.write_text("".join(lines), encoding="utf-8")
    return path


def _read_tokens(path: Path, *, non_empty: bool) -> list[str]:
    """The JSON list of token strings in ``path``; NotFound / InvalidInput naming the file."""
    if not path.is_file():
        raise NotFound(f"tokens file {path} does not exist")
    try:
        tokens = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"tokens file {path} is not JSON: {exc}") from exc
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
        kind = "non-empty JSON list" if non_empty else "JSON list"
        raise InvalidInput(f"tokens file {path} must hold a {kind} of strings")
    if non_empty and not tokens:
        raise InvalidInput(f"tokens file {path} must hold a non-empty JSON list of strings")
    return tokens


def load_vocabulary(tokens_file: Path | str) -> Tokenizer:
    """The tokenizer of a model directory's ``tokens.json``: ours when it starts with
    :data:`SPECIALS`, else a :class:`ForeignTokenizer` with the ``seg_dict`` beside the
    file when there is one (as funasr reads a model directory)."""
    path = Path(tokens_file)
    tokens = _read_tokens(path, non_empty=True)
    if tuple(tokens[: len(SPECIALS)]) == SPECIALS:
        return Tokenizer(tokens)
    seg = path.parent / SEG_DICT_FILE
    return ForeignTokenizer(tokens, read_seg_dict(seg) if seg.is_file() else None)


class ForeignTokenizer(Tokenizer):
    """The vocabulary of a model we did not train (the real model: Chinese characters + BPE).

    Encoding follows funasr's hotword parser (``SeacoParaformer.generate_hotwords_list``),
    word by word, after :func:`speechloop.text.normalize_text` (lower case, punctuation
    dropped; funasr keeps punctuation and gets ``<unk>``). With the model's ``seg_dict``: a
    word listed there becomes its pieces (English words: BPE pieces such as
    ``spe@@ ech@@ loop``); a word of CJK characters and digits is spelled character by
    character through ``seg_dict``. Without one: CJK characters one by one, other words
    whole. Where funasr silently puts ``<unk>`` (a word neither listed nor CJK, a
    character ``seg_dict`` lacks, a piece outside the vocabulary), :meth:`oov` reports
    the unit and :meth:`encode` refuses it. Decoding joins tokens, undoing ``@@`` BPE
    continuations.
    """

    def __init__(self, tokens: Sequence[str], seg_dict: dict[str, list[str]] | None = None) -> None:
        """Wrap a foreign token list (and its ``seg_dict``); specials found by name."""
        self.tokens = list(tokens)
        self.seg_dict = dict(seg_dict) if seg_dict is not None else None
        self._ids = {t: i for i, t in enumerate(self.tokens)}
        self._longest = max(len(t) for t in self.tokens)
        self.blank_id = self._ids.get(BLANK, 0)
        self.sos_id = self._ids.get(SOS, 1)
        self.eos_id = self._ids.get(EOS, 2)
        self.unk_id = self._ids.get(UNK, len(self.tokens) - 1)
        self.no_bias_id = len(self.tokens) - 27 if len(self.tokens) == 8404 else self.unk_id

    def _segment(self, text: str) -> tuple[list[str], list[str]]:
        """(units, unspellable): the vocabulary units of ``text`` and, in order, every
        word or character that has none (see the class docstring)."""
        units: list[str] = []
        bad: list[str] = []
        for word in normalize_text(text).split():
            if self.seg_dict is None:
                units.extend(list(word) if _CJK.fullmatch(word) else [word])
            elif word in self.seg_dict:
                units.extend(self.seg_dict[word])
            elif _CJK_OR_DIGITS.fullmatch(word):
                for ch in word:
                    if ch in self.seg_dict:
                        units.extend(self.seg_dict[ch])
                    else:
                        bad.append(ch)
            else:
                bad.append(word)
        bad.extend(u for u in units if u not in self._ids)
        return units, list(dict.fromkeys(bad))

    def units(self, text: str) -> list[str]:
        """The vocabulary units funasr would look up for ``text``."""
        return self._segment(text)[0]

    def oov(self, text: str) -> list[str]:
        """Words, characters or pieces of ``text`` the model cannot spell."""
        return self._segment(text)[1]

    def encode(self, text: str) -> list[int]:
        """Ids of ``text``; raises InvalidInput naming the units not in the vocabulary."""
        units, bad = self._segment(text)
        if bad:
            raise InvalidInput(f"cannot tokenise {text!r}: {bad} not in the vocabulary")
        return [self._ids[u] for u in units]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ids: CJK characters joined, BPE pieces (``@@``) glued, words spaced."""
        out = ""
        for tok in self.pieces(ids):
            if tok.endswith("@@"):
                out += tok[:-2]
            elif re.fullmatch(r"[\u4e00-\u9fa5]+", tok):
                out += tok
            else:
                out += tok + " "
        return out.strip()

    def pieces(self, ids: Iterable[int]) -> list[str]:
        """Token strings of ``ids`` without blank/sos/eos."""
        skip = {self.blank_id, self.sos_id, self.eos_id}
        return [self.tokens[i] for i in ids if i not in skip]
