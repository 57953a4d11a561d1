"""The corpus's text side: normalisation, invented names, sentences, vocabulary."""

from __future__ import annotations

import numpy as np

from speechloop.data.synth import CHARSET, CorpusSpec, normalise_text, vocabulary
from speechloop.data.synth.grammar import make_sentence, vocabulary_words
from speechloop.data.synth.names import invent_names


def test_normalise_text_keeps_letters_spaces_and_inner_apostrophes() -> None:
    """Case is folded, punctuation and digits become spaces, edge apostrophes go."""
    assert normalise_text("  Don't CALL 'Zorvalek', ok?! 42 ") == "don't call zorvalek ok"
    assert normalise_text("It\u2019s  fine.") == "it's fine"
    assert set(normalise_text("Hello, World! It's 9 o'clock")) <= set(CHARSET)


def test_invented_names_are_deterministic_distinct_and_not_english() -> None:
    """Same seed, same names; a word is never shared by two names or in the vocabulary."""
    vocab = frozenset(vocabulary_words())
    names = invent_names(200, seed=3, avoid=vocab)
    assert names == invent_names(200, seed=3, avoid=vocab)
    assert names != invent_names(200, seed=4, avoid=vocab)
    words = [w.lower() for n in names for w in n.split()]
    assert len(words) == len(set(words))
    assert not set(words) & vocab
    assert any(" " in n for n in names), "some names must have two words"
    assert all(normalise_text(n) == n.lower() for n in names)


def test_sentence_hotwords_are_exactly_the_names_in_the_text() -> None:
    """A sentence with k names lists those k names, each present in the transcript."""
    rng = np.random.default_rng(0)
    for names in [(), ("Zorvalek",), ("Kalo Venturi", "Quintessa")]:
        for _ in range(20):
            s = make_sentence(rng, names)
            assert s.hotwords == tuple(normalise_text(n) for n in names)
            assert s.text == normalise_text(s.display)
            for hw in s.hotwords:
                assert f" {hw} " in f" {s.text} "


def test_vocabulary_separates_seen_and_heldout_names() -> None:
    """Seen and held-out hotwords are disjoint and have the requested sizes."""
    spec = CorpusSpec(n_names_seen=25, n_names_heldout=10)
    vocab = vocabulary(spec)
    assert len(vocab.seen_names) == 25
    assert len(vocab.heldout_names) == 10
    assert not set(vocab.seen_names) & set(vocab.heldout_names)
    assert vocab.charset == CHARSET
    assert all(set(n) <= set(CHARSET) for n in vocab.all_names)
    bigger = vocabulary(CorpusSpec(n_names_seen=50, n_names_heldout=20))
    assert bigger.seen_names[:25] == vocab.seen_names, "more names must not reshuffle pools"
