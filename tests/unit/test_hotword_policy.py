"""The one hotword policy: limits narrowed by the model's capabilities, the same verdicts
from the torch and the ONNX engines, errors that name the bad hotword."""

from __future__ import annotations

import json

import pytest

from speechloop.asr.hotwords import (
    DEFAULT_LIMITS,
    HotwordCapabilities,
    HotwordLimits,
    HotwordList,
    found_in,
    limits_for,
    parse_hotwords,
)
from speechloop.asr.tokenizer import ForeignTokenizer, Tokenizer
from speechloop.errors import InvalidInput
from tests.unit.asr_engine_support import SEED, require_seed, seed_engine

BACKENDS = ("torch", "onnx", "onnx-int8")


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    require_seed()
    return Tokenizer(json.loads((SEED / "tokens.json").read_text()))


def test_capabilities_narrow_the_policy_never_widen_it() -> None:
    """The graph's 49 entries / 32 tokens narrow the policy's 100 / 12 to 49 / 12; a model
    that takes more than the policy still gets the policy's limits."""
    graph = HotwordCapabilities(max_hotwords=49, max_tokens=32)
    assert limits_for(graph) == HotwordLimits(max_count=49, max_chars=40, max_tokens=12)
    assert limits_for(HotwordCapabilities(1000, 1000)) == DEFAULT_LIMITS
    assert limits_for(None) == DEFAULT_LIMITS


def test_limits_apply_with_messages_naming_the_entry(tok: Tokenizer) -> None:
    """Count, characters and tokens are checked against the given limits; each error names
    the offending entry (or the count)."""
    limits = HotwordLimits(max_count=3, max_chars=20, max_tokens=5)
    with pytest.raises(InvalidInput, match="4 hotwords given; at most 3"):
        parse_hotwords(["a", "b", "c", "d"], tok, limits)
    with pytest.raises(InvalidInput, match="'abcdefghijklmnopqrstuvw' is longer than 20"):
        parse_hotwords(["abcdefghijklmnopqrstuvw"], tok, limits)
    with pytest.raises(InvalidInput, match=r"'kalo venturi' is 6 tokens; at most 5"):
        parse_hotwords(["kalo venturi"], tok, limits)
    assert parse_hotwords(["kalo venturi"], tok, limits, max_tokens=6).phrases == ["kalo venturi"]


def test_dedup_oov_and_found(tok: Tokenizer) -> None:
    """Duplicates after normalisation merge and are reported; an entry with characters the
    vocabulary lacks is kept aside and refused by name; "found" is a whole-word match."""
    hl = parse_hotwords(["Brakovan", "brakovan!", "Zoë", "kalo venturi"], tok)
    assert hl.phrases == ["brakovan", "kalo venturi"]
    assert hl.duplicates == ["brakovan!"]
    assert hl.oov == {"Zoë": ["ë"]}
    with pytest.raises(InvalidInput, match="'Zoë' \\(ë\\)"):
        hl.require_representable()
    assert found_in("Please call Brakovan, tonight", hl) == ["brakovan"]
    assert found_in("brakovanski kalo", hl) == []


def test_malformed_lists_are_refused(tok: Tokenizer) -> None:
    """A bare string, a non-string entry and an entry empty after normalisation."""
    with pytest.raises(InvalidInput, match="list of strings"):
        parse_hotwords("brakovan", tok)
    with pytest.raises(InvalidInput, match="42 is not a string"):
        parse_hotwords(["ok", 42], tok)  # type: ignore[list-item]
    with pytest.raises(InvalidInput, match="empty after normalisation"):
        parse_hotwords(["?!"], tok)


def test_foreign_vocabulary_keeps_its_script() -> None:
    """For a foreign vocabulary (the pretrained model's characters) hotwords keep their
    CJK characters; a unit missing from the vocabulary is reported."""
    vocab = ["<blank>", "<s>", "</s>", "北", "京", "上", "海", "hello", "<unk>"]
    tok = ForeignTokenizer(vocab)
    hl = parse_hotwords(["北京", "Hello", "东京"], tok)
    assert hl.phrases == ["北京", "hello"]
    assert hl.ids == [[3, 4], [7]]
    assert hl.oov == {"东京": ["东"]}


# the same verdicts from every backend --------------------------------------------------

BAD_LISTS = {
    "too many": [f"name{chr(97 + i % 26)}{chr(97 + i // 26)}" for i in range(50)],
    "too long": ["a" * 41],
    "too many tokens": ["a b c d e f g h i j k l m"],
    "unspellable": ["Zoë", "brakovan"],
    "not a list": "brakovan",
    "empty entry": ["brakovan", "  "],
}


@pytest.mark.parametrize("case", sorted(BAD_LISTS))
def test_every_backend_refuses_the_same_lists_with_the_same_message(case: str) -> None:
    """torch, ONNX and int8 ONNX engines refuse each bad list with one and the same
    InvalidInput message (one policy, the graph's maximum as its limit)."""
    messages = set()
    for backend in BACKENDS:
        with pytest.raises(InvalidInput) as err:
            seed_engine(backend).parse_hotwords(BAD_LISTS[case])
        messages.add(str(err.value))
    assert len(messages) == 1, messages


def test_every_backend_accepts_the_same_lists_alike() -> None:
    """49 entries (the graph's maximum) pass everywhere and parse to the same ids; the
    engines report the same capabilities and limits."""
    words = [*BAD_LISTS["too many"][:47], "Brakovan", "brakovan"]
    parsed = {b: seed_engine(b).parse_hotwords(words) for b in BACKENDS}
    assert len({json.dumps([p.phrases, p.ids, p.duplicates]) for p in parsed.values()}) == 1
    assert len(parsed["onnx"]) == 48 and parsed["onnx"].duplicates == ["brakovan"]
    assert {seed_engine(b).limits for b in BACKENDS} == {HotwordLimits(49, 40, 12)}
    assert {seed_engine(b).capabilities for b in BACKENDS} == {HotwordCapabilities(49, 32)}


def test_a_list_parsed_elsewhere_is_rechecked_by_the_engine(tok: Tokenizer) -> None:
    """A HotwordList parsed under wider limits (60 entries) is refused at transcribe time,
    not silently cut: the engine checks lists against its own limits."""
    import numpy as np

    wide = parse_hotwords([f"w{chr(97 + i % 26)}{chr(97 + i // 26)}" for i in range(60)], tok)
    assert len(wide) == 60
    silence = np.zeros(16000, dtype=np.float32)
    for backend in ("torch", "onnx"):
        with pytest.raises(InvalidInput, match="60 hotwords given; at most 49"):
            seed_engine(backend).transcribe([silence], wide)
    with pytest.raises(InvalidInput, match="parse_hotwords"):
        seed_engine("onnx").transcribe([silence], ["raw"])  # type: ignore[arg-type]
    assert isinstance(seed_engine("onnx").parse_hotwords(None), HotwordList)
