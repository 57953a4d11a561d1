"""Unit tests of the seed tokenizer and per-request hotword parsing (no torch needed)."""

from __future__ import annotations

import pytest

from speechloop.asr.hotwords import parse_hotwords
from speechloop.asr.tokenizer import SPECIALS, Tokenizer, syllables
from speechloop.errors import InvalidInput, NotFound

TEXTS = ["please call the doctor tonight", "call kalo venturi tonight", "the doctor left"]


@pytest.fixture()
def tok() -> Tokenizer:
    return Tokenizer.build(TEXTS, never_whole=["kalo venturi"])


def test_syllables_split_names_into_consonant_vowel_units():
    """Names cut into onset+vowel units, stray consonants alone."""
    assert syllables("sharkrik") == ["sha", "r", "kri", "k"]
    assert syllables("drofator") == ["dro", "fa", "to", "r"]
    assert syllables("brr") == ["brr"]


def test_round_trip_and_whole_words(tok):
    """Common words are one token; names are pieces; decode(encode(x)) == x."""
    ids = tok.encode("please call kalo venturi")
    assert tok.pieces(ids)[0] != "▁please"  # seen once: below keep_whole=2, so pieces
    assert "▁call" in tok.pieces(ids)
    assert "▁kalo" not in tok.tokens  # hotword words never whole
    assert tok.decode(ids) == "please call kalo venturi"


def test_unseen_words_encode_through_letters(tok):
    """A word never seen is still encodable (letters are always in the vocabulary)."""
    ids = tok.encode("zyx qwerty")
    assert tok.unk_id not in ids
    assert tok.decode(ids) == "zyx qwerty"


def test_specials_and_ids(tok):
    """Specials come first with the ids funasr expects (blank 0, sos 1, eos 2)."""
    assert tok.tokens[:5] == list(SPECIALS)
    assert (tok.blank_id, tok.sos_id, tok.eos_id, tok.no_bias_id) == (0, 1, 2, 4)
    assert tok.decode([tok.sos_id, *tok.encode("call"), tok.eos_id, tok.no_bias_id]) == "call"


def test_oov_characters_reported_not_dropped(tok):
    """Digits and non a-z letters are reported and refused; punctuation is normalised away."""
    assert tok.oov("café 42") == ["é", "4", "2"]
    assert tok.oov("Kalo-Venturi!") == []
    with pytest.raises(InvalidInput, match="é"):
        tok.encode("café")


def test_save_load_round_trip(tok, tmp_path):
    """tokens.json written and read back gives the same vocabulary."""
    path = tok.save(tmp_path / "tokens.json")
    assert Tokenizer.load(path).tokens == tok.tokens
    with pytest.raises(NotFound):
        Tokenizer.load(tmp_path / "missing.json")


def test_hotword_phrases_stay_whole_and_limits(tok):
    """A multi-word hotword is one entry; duplicates and OOV entries are reported."""
    hl = parse_hotwords(["Kalo Venturi", "kalo venturi", "Zoë"], tok)
    assert hl.phrases == ["kalo venturi"]
    assert hl.ids == [tok.encode("kalo venturi")]
    assert hl.duplicates == ["kalo venturi"]
    assert hl.oov == {"Zoë": ["ë"]}
    with pytest.raises(InvalidInput, match="at most 2"):
        parse_hotwords(["a", "b", "c"], tok, max_count=2)
    with pytest.raises(InvalidInput, match="list of strings"):
        parse_hotwords("kalo venturi", tok)
    with pytest.raises(InvalidInput, match="empty"):
        parse_hotwords(["  ... "], tok)
    with pytest.raises(InvalidInput, match="characters"):
        parse_hotwords(["x" * 50], tok)
