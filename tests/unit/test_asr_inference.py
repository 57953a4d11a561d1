"""Torch inference path: model directories, per-request hotwords, thread safety, timestamps.

Uses a tiny randomly initialised SeacoParaformer (d=32): its words are nonsense, but the
properties tested here (round trips, determinism, no shared hotword state, timestamps
within the audio) do not depend on training.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from speechloop.asr.features import Cmvn, write_am_mvn  # noqa: E402
from speechloop.asr.inference import (  # noqa: E402
    Transcriber,
    bias_embeddings,
    decode_features,
    encode,
)
from speechloop.asr.model import LoadedModel, build_seaco, load_from_dir, save_to_dir, seed_config  # noqa: E402
from speechloop.asr.tokenizer import Tokenizer  # noqa: E402
from speechloop.errors import InvalidInput, ModelUnavailable  # noqa: E402


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A saved tiny model directory (config.yaml, tokens.json, model.pt, am.mvn)."""
    tok = Tokenizer.build(["please call the doctor", "kalo venturi left"], never_whole=["kalo"])
    torch.manual_seed(0)
    config = seed_config(tok.vocab_size, tok.no_bias_id, d=32)
    model = build_seaco(config).eval()
    out = tmp_path_factory.mktemp("tiny")
    cmvn = write_am_mvn(Cmvn.from_mean_istd(np.zeros(560), np.full(560, 0.1)), out / "src.mvn")
    save_to_dir(LoadedModel(model, tok, config, None, cmvn), out / "model")
    return out / "model"


def _waves(n: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [(0.1 * rng.standard_normal(16000 + 4000 * i)).astype(np.float32) for i in range(n)]


def test_directory_round_trip_loads_same_weights(model_dir, tmp_path):
    """save_to_dir then load_from_dir gives identical weights; fp16 saving halves the file."""
    loaded = load_from_dir(model_dir)
    again = save_to_dir(loaded, tmp_path / "copy", half=True)
    assert (again / "model.pt").stat().st_size < 0.6 * (model_dir / "model.pt").stat().st_size
    reloaded = load_from_dir(model_dir)
    for (k, a), b in zip(
        loaded.model.state_dict().items(), reloaded.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), k


def test_missing_files_give_model_unavailable(model_dir, tmp_path):
    """A directory without model.pt is refused with a message naming the file."""
    import shutil

    for name in ("config.yaml", "tokens.json"):
        shutil.copyfile(model_dir / name, tmp_path / name)
    with pytest.raises(ModelUnavailable, match=r"model\.pt"):
        load_from_dir(tmp_path)


def test_concurrent_requests_with_different_hotwords_do_not_interfere(model_dir):
    """Threads sharing one Transcriber with different lists get their sequential results."""
    tr = Transcriber(load_from_dir(model_dir))
    waves = _waves(2)
    lists = [["kalo venturi"], ["doctor"], None, ["please", "kalo"]]
    expected = [[t.token_ids for t in tr.transcribe(waves, hw)] for hw in lists]
    got: dict[int, list[list[int]]] = {}

    def work(i: int) -> None:
        for _ in range(3):
            got[i] = [t.token_ids for t in tr.transcribe(waves, lists[i])]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(lists))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [got[i] for i in range(len(lists))] == expected
    assert not hasattr(tr.model, "hotword_list")  # funasr's shared state never set


def test_a_clip_predicts_the_same_tokens_alone_and_next_to_a_longer_one(model_dir):
    """Padding does not leak into the CIF predictor: a short clip's alphas and token count
    are the same alone and in a batch with a longer clip (its convolution reads past the
    clip's end, where the encoder's output on padding frames is not zero)."""
    loaded = load_from_dir(model_dir)
    tr = Transcriber(loaded)
    short, long_ = _waves(3)[0], _waves(3)[2]
    with torch.no_grad():
        alone = loaded.model.calc_predictor(*encode(loaded.model, *tr.features([short])))
        both = loaded.model.calc_predictor(*encode(loaded.model, *tr.features([short, long_])))
        raw = loaded.model.calc_predictor(*loaded.model.encode(*tr.features([short, long_])))
    n = alone[2].shape[1]
    torch.testing.assert_close(both[2][0, :n], alone[2][0])
    torch.testing.assert_close(both[1][0], alone[1][0])
    assert not torch.allclose(raw[2][0, :n], alone[2][0])  # what the zeroing prevents
    in_batch = tr.transcribe([short, long_])[0].token_ids
    assert in_batch == tr.transcribe([short])[0].token_ids


def test_hotword_path_changes_logits_only_with_a_list(model_dir):
    """Without a list the decoder's output stands; the list's embeddings are per call."""
    loaded = load_from_dir(model_dir)
    tr = Transcriber(loaded)
    speech, lengths = tr.features(_waves(1))
    plain = decode_features(loaded.model, speech, lengths, None)
    assert plain.fired == [0]
    emb = bias_embeddings(loaded.model, [loaded.tokenizer.encode("kalo venturi")])
    assert emb.shape == (2, 32)  # one hotword + the [sos] entry


def test_timestamps_are_ordered_and_inside_the_audio(model_dir):
    """Token timestamps are non-decreasing and end before the audio does."""
    tr = Transcriber(load_from_dir(model_dir))
    for wave, res in zip(_waves(3), tr.transcribe(_waves(3)), strict=True):
        starts = [s.start_s for s in res.timestamps]
        assert starts == sorted(starts)
        assert all(s.end_s <= len(wave) / 16000 + 0.1 for s in res.timestamps)
        assert len(res.timestamps) == len(res.tokens)


def test_unrepresentable_hotwords_are_refused_by_name(model_dir):
    """A hotword with characters outside the vocabulary is an InvalidInput naming it."""
    tr = Transcriber(load_from_dir(model_dir))
    with pytest.raises(InvalidInput, match="Zoë"):
        tr.transcribe(_waves(1), ["Zoë"])


def test_specaugment_is_configured_and_masks_in_training_only():
    """The seed and the pretrained configs carry the real model's SpecAugLFR; it masks
    features in training, and in eval mode a model with it encodes exactly like the
    same weights without it."""
    import torch

    from speechloop.asr.model import pretrained_config

    assert pretrained_config()["specaug"] == "SpecAugLFR"
    tok = Tokenizer.build(["abc def"])
    with_aug = build_seaco(seed_config(tok.vocab_size, tok.no_bias_id, d=32))
    without = build_seaco(seed_config(tok.vocab_size, tok.no_bias_id, d=32, specaug=False))
    assert type(with_aug.specaug).__name__ == "SpecAugLFR" and without.specaug is None
    without.load_state_dict(with_aug.state_dict())
    torch.manual_seed(0)
    feats, lengths = torch.randn(2, 50, 560), torch.tensor([50, 40])
    with_aug.train()
    masked, _ = with_aug.specaug(torch.ones(2, 50, 560), lengths)
    assert (masked == 0).any()
    with_aug.eval(), without.eval()
    with torch.no_grad():
        a, _ = with_aug.encode(feats, lengths)
        b, _ = without.encode(feats, lengths)
    assert torch.equal(a, b)


def test_seed_config_builds_the_seaco_blocks_it_names():
    """The SeACo decoder has as many attention blocks as its config names (funasr builds
    ``att_layer_num`` of them, not ``num_blocks``), and the shipped seed loads with the
    config written today."""
    tok = Tokenizer.build(["abc def"])
    config = seed_config(tok.vocab_size, tok.no_bias_id, d=32)
    conf = config["seaco_decoder_conf"]
    model = build_seaco(config)
    assert len(model.seaco_decoder.decoders) == conf["num_blocks"] == conf["att_layer_num"]
    from speechloop.asr.bootstrap import SEED_DIR

    shipped = load_from_dir(SEED_DIR)
    assert len(shipped.model.seaco_decoder.decoders) == conf["num_blocks"]


def test_no_fired_token_decodes_to_no_token(model_dir):
    """Where the CIF predictor fires no token (silence on a real model, a clip of a few
    frames), decoding gives no token, as funasr does, instead of a decoder error on an
    empty sequence (forced here: the predictor's output bias pushes every weight to 0)."""
    loaded = load_from_dir(model_dir)
    with torch.no_grad():
        loaded.model.predictor.cif_output.bias.fill_(-30.0)
    tr = Transcriber(loaded)
    for hotwords in (None, ["kalo venturi"]):
        out = tr.transcribe(_waves(2), hotwords)
        assert [(t.token_ids, t.text, t.timestamps) for t in out] == [([], "", [])] * 2


def test_weights_that_do_not_fit_the_config_are_refused_by_key(model_dir, tmp_path):
    """Strict loading: a missing or unexpected key, or a tensor of another shape (a
    snapshot whose config.yaml does not match its model.pt), is ModelUnavailable naming
    the key, never a bare torch error or a model with random parts."""
    import shutil

    state = torch.load(model_dir / "model.pt", map_location="cpu")
    cases = {
        "missing": {k: v for k, v in state.items() if k != "bias_encoder.weight_hh_l0"},
        "unexpected": {**state, "extra.weight": torch.zeros(1)},
        "shapes": {**state, "bias_encoder.weight_hh_l0": torch.zeros(3, 3)},
    }
    for what, broken in cases.items():
        bad = tmp_path / what
        shutil.copytree(model_dir, bad)
        torch.save(broken, bad / "model.pt")
        with pytest.raises(ModelUnavailable, match=rf"{what} .*(bias_encoder|extra)"):
            load_from_dir(bad)
