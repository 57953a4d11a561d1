"""The pretrained snapshot's vocabulary files: speechloop spells hotwords as funasr does.

The replica (:mod:`speechloop.asr.replica`) stands in for the ModelScope snapshot, which
cannot be reached here. These tests use its small files only (no weights): funasr's own
hotword parser (``SeacoParaformer.generate_hotwords_list``) and speechloop's one hotword
policy must give the same ids, English words going through ``seg_dict``; where funasr
silently puts ``<unk>``, speechloop refuses the hotword by name. (funasr's tokenizer is
replaced by its one-line ``tokens2ids`` rule to keep this test fast; the integration
test ``test_asr_pretrained_replica`` runs funasr's real ``AutoModel``.)
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from speechloop.asr import replica
from speechloop.asr.hotwords import parse_hotwords
from speechloop.asr.onnx_infer import load_tokenizer
from speechloop.asr.tokenizer import ForeignTokenizer, load_vocabulary, read_seg_dict
from speechloop.errors import InvalidInput

HOTWORDS = ["北京", "speechloop", "Paraformer", "丁七万", "阿里巴巴"]


@pytest.fixture(scope="module")
def snapshot_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The replica's files but ``model.pt``."""
    return replica.write_files(tmp_path_factory.mktemp("replica"))


def funasr_hotword_ids(directory: Path, hotwords: str) -> list[list[int]]:
    """funasr's parse of a hotword string for the model directory (its last entry, the
    ``[sos]`` "no hotword" entry, dropped)."""
    from speechloop.asr.funasr_modules import funasr_module

    seaco = funasr_module("funasr.models.seaco_paraformer.model").SeacoParaformer
    tokens = json.loads((directory / "tokens.json").read_text(encoding="utf-8"))
    index = {t: i for i, t in enumerate(tokens)}
    unk = index["<unk>"]
    # funasr's BaseTokenizer.tokens2ids: a token outside the vocabulary becomes <unk>
    tokenizer = SimpleNamespace(tokens2ids=lambda toks: [index.get(t, unk) for t in toks])
    frontend = SimpleNamespace(cmvn_file=str(directory / "am.mvn"))  # seg_dict sits beside it
    fake_model: Any = SimpleNamespace(sos=1)
    ids = seaco.generate_hotwords_list(fake_model, hotwords, tokenizer=tokenizer, frontend=frontend)
    assert ids[-1] == [1]
    return [list(x) for x in ids[:-1]]


def test_snapshot_files_have_the_real_layout(snapshot_files: Path) -> None:
    """8404 tokens with <blank> <s> </s> first and <unk> at 8403 (funasr's ONNX runtime
    hard-codes it); seg_dict maps English words to @@-pieces of the vocabulary and CJK
    characters to themselves; configuration.json names every file of the directory."""
    tokens = json.loads((snapshot_files / "tokens.json").read_text(encoding="utf-8"))
    assert len(tokens) == 8404 and tokens[:3] == ["<blank>", "<s>", "</s>"]
    assert tokens.index("<unk>") == 8403
    seg = read_seg_dict(snapshot_files / "seg_dict")
    assert seg["speechloop"][-1] in tokens and all(p.endswith("@@") for p in seg["speechloop"][:-1])
    assert len(seg["speechloop"]) > 1 and seg["北"] == ["北"]
    assert all(p in tokens for pieces in seg.values() for p in pieces)
    first = (snapshot_files / "seg_dict").read_text(encoding="utf-8").splitlines()[:2]
    assert first[0] == "<unk>\t<unk>" and "\t" in first[1]
    metas = json.loads((snapshot_files / "configuration.json").read_text())["file_path_metas"]
    named = [metas["init_param"], metas["config"], metas["frontend_conf"]["cmvn_file"]]
    named += list(metas["tokenizer_conf"].values())
    assert sorted([*named, "configuration.json"]) == sorted(replica.SNAPSHOT_FILES)


def test_hotword_ids_match_funasr_with_seg_dict(snapshot_files: Path) -> None:
    """Chinese hotwords character by character, English ones as their seg_dict BPE
    pieces: the same ids as funasr's parser, through both engines' tokenizer loaders."""
    expected = funasr_hotword_ids(snapshot_files, " ".join(HOTWORDS))
    for tok in (
        load_vocabulary(snapshot_files / "tokens.json"),  # torch path (load_from_dir)
        load_tokenizer(snapshot_files / "tokens.json"),  # ONNX path
    ):
        assert parse_hotwords(HOTWORDS, tok).require_representable().ids == expected
    english = expected[1]
    assert len(english) > 1 and len(set(english)) == len(english)  # pieces, not <unk>


def test_what_funasr_turns_into_unk_is_refused_by_name(snapshot_files: Path) -> None:
    """A word seg_dict lacks and a character it lacks: funasr puts <unk> silently;
    speechloop's policy reports each and the engines refuse the list naming it."""
    assert funasr_hotword_ids(snapshot_files, "zebra") == [[8403]]
    tok = load_vocabulary(snapshot_files / "tokens.json")
    hl = parse_hotwords(["zebra", "北京", "北京x"], tok)
    assert hl.phrases == ["北京"] and hl.oov == {"zebra": ["zebra"], "北京x": ["北京x"]}
    with pytest.raises(InvalidInput, match="'zebra' \\(zebra\\)"):
        hl.require_representable()
    tokens = json.loads((snapshot_files / "tokens.json").read_text(encoding="utf-8"))
    seg = read_seg_dict(snapshot_files / "seg_dict")
    del seg["北"]
    assert ForeignTokenizer(tokens, seg).oov("北京") == ["北"]


def test_without_seg_dict_english_words_are_whole_units() -> None:
    """A foreign vocabulary without seg_dict keeps the old rule: CJK characters singly,
    other words whole (and refused when the vocabulary lacks them)."""
    tok = ForeignTokenizer(["<blank>", "<s>", "</s>", "北", "京", "hello", "<unk>"])
    assert tok.encode("北京 hello") == [3, 4, 5]
    assert tok.oov("speechloop") == ["speechloop"]


def test_saving_a_pretrained_model_keeps_seg_dict_and_configuration(
    snapshot_files: Path, tmp_path: Path
) -> None:
    """save_to_dir (what fine-tuning writes) carries seg_dict and configuration.json:
    a fine-tuned pretrained model still spells English hotwords and still loads in
    funasr the way the snapshot did."""
    torch = pytest.importorskip("torch")
    from speechloop.asr.model import LoadedModel, save_to_dir

    tok = load_vocabulary(snapshot_files / "tokens.json")
    loaded = LoadedModel(torch.nn.Linear(2, 2), tok, {"model": "SeacoParaformer"}, snapshot_files)
    out = save_to_dir(loaded, tmp_path / "tuned")
    assert read_seg_dict(out / "seg_dict") == read_seg_dict(snapshot_files / "seg_dict")
    assert (out / "configuration.json").read_bytes() == (
        snapshot_files / "configuration.json"
    ).read_bytes()
    again = load_vocabulary(out / "tokens.json")
    assert again.encode("speechloop 北京") == tok.encode("speechloop 北京")
