"""CER, alignment and hotword scoring (speechloop.asr.metrics), with hand-computed values."""

from __future__ import annotations

import random

import pytest

from speechloop.asr.metrics import (
    DEL,
    INS,
    MATCH,
    SUB,
    align,
    char_units,
    occurrences,
    score_corpus,
    score_utterance,
)
from speechloop.errors import InvalidInput


def test_identical_text_has_no_errors() -> None:
    """ref = hyp = "abc": 0 edits over 3 characters -> CER 0, acc 1."""
    s = score_corpus(["abc"], ["abc"])
    assert (s.substitutions, s.deletions, s.insertions, s.ref_chars) == (0, 0, 0, 3)
    assert s.cer == 0.0 and s.acc == 1.0


def test_kitten_sitting() -> None:
    """kitten -> sitting: k->s and e->i substituted, g inserted: S=2, D=0, I=1;
    CER = 3 / 6 = 0.5."""
    s = score_utterance("kitten", "sitting")
    assert (s.substitutions, s.deletions, s.insertions) == (2, 0, 1)
    assert s.cer == pytest.approx(0.5)


def test_deletion_and_space_counts_as_character() -> None:
    """ "hello world" (11 chars incl. the space) vs "hello word": one 'l' deleted: D=1,
    CER = 1/11; "helloworld" (missed word break) vs "hello world": one deletion of the space."""
    s = score_utterance("hello world", "hello word")
    assert (s.substitutions, s.deletions, s.insertions, s.ref_chars) == (0, 1, 0, 11)
    assert s.cer == pytest.approx(1 / 11)
    assert score_utterance("hello world", "helloworld").deletions == 1


def test_normalisation_before_scoring() -> None:
    """Case and punctuation do not count: "Hello, World!" vs "hello world" is 0 edits."""
    assert score_utterance("Hello, World!", "hello world").edits == 0


def test_cjk_spaces_ignored() -> None:
    """ "欢迎 大家" vs funasr-style "欢 迎 大 佳": units 欢迎大家 vs 欢迎大佳 -> S=1, CER = 1/4."""
    assert char_units("欢 迎 大 佳") == "欢迎大佳"
    s = score_utterance("欢迎 大家", "欢 迎 大 佳")
    assert (s.substitutions, s.deletions, s.insertions, s.ref_chars) == (1, 0, 0, 4)
    assert s.cer == pytest.approx(0.25)


def test_empty_hypothesis_and_many_insertions() -> None:
    """ "abc" vs "": D=3, CER 1.0; "a" vs "abc": I=2, CER 2/1 = 2.0, acc = 1 - 2 = -1."""
    s = score_utterance("abc", "")
    assert (s.deletions, s.cer) == (3, 1.0)
    c = score_corpus(["a"], ["abc"])
    assert (c.insertions, c.cer, c.acc) == (2, 2.0, -1.0)


def test_corpus_cer_is_total_edits_over_total_chars() -> None:
    """("abc","abd"): 1 edit / 3; ("abcdefg","abcdefg"): 0 / 7 -> corpus 1/10 = 0.1
    (the mean of per-utterance ratios would be 0.1667)."""
    c = score_corpus(["abc", "abcdefg"], ["abd", "abcdefg"])
    assert c.cer == pytest.approx(0.1)
    assert [u.cer for u in c.per_utterance] == pytest.approx([1 / 3, 0.0])


def test_hotword_recall_precision_f1_by_hand() -> None:
    """ref "call kalovenmar at noon", hyp "call kalovenmar at moon", hotwords kalovenmar, noon.
    Reference occurrences 2; recalled 1 (kalovenmar; noon became moon); hypothesis
    occurrences 1 -> recall 1/2, precision 1/1, F1 = 2*0.5*1/1.5 = 2/3. Edits: n->m, 1 of 23."""
    c = score_corpus(
        ["call kalovenmar at noon"], ["call kalovenmar at moon"], [["kalovenmar", "noon"]]
    )
    assert (c.hotword_ref, c.hotword_recalled, c.hotword_hyp) == (2, 1, 1)
    assert c.hotword_recall == pytest.approx(0.5)
    assert c.hotword_precision == pytest.approx(1.0)
    assert c.hotword_f1 == pytest.approx(2 / 3)
    assert c.cer == pytest.approx(1 / 23)


def test_hotword_at_wrong_place_is_not_recalled() -> None:
    """ref "noon and moon", hyp "moon and noon", hotword noon: the reference span [0, 4)
    aligns to hyp "moon" -> not recalled, although the hyp contains "noon" elsewhere.
    recall 0/1; precision 0/1 (one hyp occurrence, a false alarm); edits 2 of 13 chars."""
    c = score_corpus(["noon and moon"], ["moon and noon"], [["noon"]])
    assert (c.hotword_ref, c.hotword_recalled, c.hotword_hyp) == (1, 0, 1)
    assert c.hotword_recall == 0.0 and c.hotword_precision == 0.0 and c.hotword_f1 == 0.0
    assert c.cer == pytest.approx(2 / 13)


def test_hotword_false_alarm_and_undefined_ratios() -> None:
    """ref "see you at ten", hyp "see you at noon", hotword noon: no reference occurrence
    (recall undefined: None), one hypothesis occurrence not recalled: precision 0/1 = 0.
    Without any hotword, every hotword ratio is None."""
    c = score_corpus(["see you at ten"], ["see you at noon"], [["noon"]])
    assert c.hotword_recall is None and c.hotword_precision == 0.0 and c.hotword_f1 is None
    plain = score_corpus(["a b"], ["a b"])
    assert plain.hotword_recall is None and plain.hotword_precision is None


def test_hotword_with_deletion_inside_or_glued_neighbour() -> None:
    """ref "call kalo now": hyp "call kao now" (l deleted) and hyp "call kalox now"
    (x inserted right after, so no word boundary) both miss; "call kalo now" recalls."""
    for hyp, recalled in [("call kao now", 0), ("call kalox now", 0), ("call kalo now", 1)]:
        assert score_utterance("call kalo now", hyp, ["kalo"]).hotword_recalled == recalled, hyp


def test_whole_word_occurrences_only_for_spaced_scripts() -> None:
    """ "ann" is not in "anna"; "北京" is in "我去北京了" (no spaces in Chinese)."""
    assert occurrences("anna", "ann") == []
    assert occurrences("ann anna ann", "ann") == [(0, 3), (9, 12)]
    assert occurrences(char_units("我去北京了"), "北京") == [(2, 4)]


def test_cjk_hotword_recall() -> None:
    """ref 我去北京了 / hyp 我去背景了, hotword 北京: 2 substitutions of 5, not recalled;
    hyp 我去北京啦: recalled (1 substitution elsewhere)."""
    miss = score_utterance("我去北京了", "我去背景了", ["北京"])
    assert (miss.substitutions, miss.hotword_ref, miss.hotword_recalled) == (2, 1, 0)
    hit = score_utterance("我去北京了", "我去北京啦", ["北京"])
    assert (hit.substitutions, hit.hotword_recalled, hit.hotword_hyp) == (1, 1, 1)


def test_mismatched_lengths_are_refused() -> None:
    """Different numbers of references, hypotheses or hotword lists raise InvalidInput."""
    with pytest.raises(InvalidInput, match="hypotheses"):
        score_corpus(["a"], [])
    with pytest.raises(InvalidInput, match="hotword lists"):
        score_corpus(["a"], ["a"], [])


def _brute_distance(a: str, b: str) -> int:
    """Edit distance by exhaustive recursion over the three choices (no table)."""
    if not a:
        return len(b)
    if not b:
        return len(a)
    return min(
        _brute_distance(a[1:], b[1:]) + (a[0] != b[0]),
        _brute_distance(a[1:], b) + 1,
        _brute_distance(a, b[1:]) + 1,
    )


def test_alignment_is_minimal_and_consistent_property() -> None:
    """On 300 random pairs (alphabet "ab c", lengths 0-5): the alignment's edit count equals
    the brute-force distance, applying its operations turns ref into hyp, and
    hits + S + D = len(ref), hits + S + I = len(hyp)."""
    rng = random.Random(0)
    for _ in range(300):
        ref = "".join(rng.choice("ab c") for _ in range(rng.randint(0, 5)))
        hyp = "".join(rng.choice("ab c") for _ in range(rng.randint(0, 5)))
        ali = align(ref, hyp)
        assert ali.edits == _brute_distance(ref, hyp), (ref, hyp)
        rebuilt = "".join(
            hyp[j] for op, _, j in ali.ops if op in (MATCH, SUB, INS) and j is not None
        )
        assert rebuilt == hyp
        assert ali.count(MATCH) + ali.count(SUB) + ali.count(DEL) == len(ref)
        assert ali.count(MATCH) + ali.count(SUB) + ali.count(INS) == len(hyp)
        assert all(
            ref[i] == hyp[j]
            for op, i, j in ali.ops
            if op == MATCH and i is not None and j is not None
        )
