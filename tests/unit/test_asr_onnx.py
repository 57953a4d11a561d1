"""ONNX export and onnxruntime inference of SeACo-Paraformer against funasr's torch path.

A small randomly initialised SeacoParaformer (fixed seed, built with
speechloop.asr.model.build_seaco) is exported once per module; its hotword head's
NO_BIAS bias is calibrated so that about half of the positions keep the ASR output
and half take the hotword head's, so both sides of the SeACo merge are exercised.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from speechloop.asr.features import Frontend, compute_cmvn, write_am_mvn
from speechloop.asr.inference import encode
from speechloop.asr.onnx_infer import OnnxSeacoAsr, token_timestamps
from speechloop.errors import InvalidInput

torch = pytest.importorskip("torch")

TEXTS = ["the kitchen door is open", "call kalovenmar at noon", "open the door again"]
HOTWORDS = ["kalovenmar", "noon"]


def _torch_decode(model: Any, feats: np.ndarray, lengths: np.ndarray, hw: Any) -> list[list[int]]:
    """funasr's SeacoParaformer.inference path (encode, predictor, SeACo merge, argmax)."""
    with torch.no_grad():
        enc, enc_len = model.encode(torch.from_numpy(feats), torch.from_numpy(lengths))
        embeds, tok_len = model.calc_predictor(enc, enc_len)[:2]
        tok_len = tok_len.round().long()
        out = model._seaco_decode_with_ASF(enc, enc_len, embeds, tok_len, hw_list=hw)
    skip = {model.blank_id, model.sos, model.eos}
    return [
        [int(t) for t in out[b, : tok_len[b]].argmax(-1) if int(t) not in skip]
        for b in range(out.shape[0])
    ]


class _Torch:
    """funasr torch references on the batch of clips, each list computed once (torch is slow
    on the shared 2-core machine)."""

    def __init__(self, model: Any, tok: Any, feats: np.ndarray, lengths: np.ndarray) -> None:
        self.model, self.tok, self.feats, self.lengths = model, tok, feats, lengths
        self._memo: dict[tuple[str, ...] | None, list[list[int]]] = {}

    def tokens(self, words: list[str] | None) -> list[list[int]]:
        key = None if not words else tuple(words)
        if key not in self._memo:
            hw = None if key is None else [*map(self.tok.encode, key), [self.model.sos]]
            self._memo[key] = _torch_decode(self.model, self.feats, self.lengths, hw)
        return self._memo[key]


@pytest.fixture(scope="module")
def setup(realaudio: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Tokenizer, calibrated small model, its ONNX export (+ int8) and 4 real clips cut to
    1.5-2.6 s (different lengths, so the batch is padded)."""
    from speechloop.asr.model import build_seaco, seed_config
    from speechloop.asr.onnx_export import export_onnx
    from speechloop.asr.tokenizer import Tokenizer

    torch.set_num_threads(2)
    tok = Tokenizer.build(TEXTS, keep_whole=2)
    cfg = seed_config(vocab_size=tok.vocab_size, no_bias=tok.no_bias_id, d=32)
    cfg["encoder_conf"]["num_blocks"] = 2
    torch.manual_seed(0)
    model = build_seaco(cfg).eval()
    paths = sorted(realaudio.glob("*.wav"))
    waves = [sf.read(p, dtype="float32")[0][: 24000 + 6000 * i] for i, p in enumerate(paths)]
    out = tmp_path_factory.mktemp("onnx")
    write_am_mvn(compute_cmvn(waves), out / "am.mvn")
    tok.save(out / "tokens.json")
    feats, lengths = Frontend.from_am_mvn(out / "am.mvn").batch(waves)
    _calibrate_no_bias(model, tok, feats, lengths)
    export_onnx(model, out, quantize=True)
    return {
        "model": model,
        "tok": tok,
        "dir": out,
        "waves": waves,
        "feats": (feats, lengths),
        "torch": _Torch(model, tok, feats, lengths),
    }


def _calibrate_no_bias(model: Any, tok: Any, feats: np.ndarray, lengths: np.ndarray) -> None:
    """Set the hotword head's NO_BIAS bias so that about half of the positions predict it,
    with the threshold in the widest gap of the middle half of the margins (no near-ties
    between NO_BIAS and the head's best other token)."""
    hw = [*map(tok.encode, HOTWORDS), [model.sos]]
    with torch.no_grad():
        enc, enc_len = encode(model, torch.from_numpy(feats), torch.from_numpy(lengths))
        emb, tl = model.calc_predictor(enc, enc_len)[:2]
        tl = tl.round().long()
        _, hidden, _ = model.decoder(enc, enc_len, emb, tl, return_hidden=True, return_both=True)
        pad = torch.nn.utils.rnn.pad_sequence([torch.tensor(h) for h in hw], batch_first=True)
        sel = model._hotword_representation(pad, torch.tensor([len(h) for h in hw]))
        ctx = sel[None].repeat(len(lengths), 1, 1)
        n = torch.full((len(lengths),), ctx.shape[1], dtype=torch.int32)
        att = model.seaco_decoder(ctx, n, emb, tl)[0] + model.seaco_decoder(ctx, n, hidden, tl)[0]
        layer = model.hotword_output_layer
        logits = layer(att)
        valid = torch.cat([logits[b, : tl[b]] for b in range(len(lengths))])
        others = valid.clone()
        others[:, tok.no_bias_id] = -1e9
        ranked = (others.max(-1).values - valid[:, tok.no_bias_id]).sort().values
        lo, hi = len(ranked) // 4, 3 * len(ranked) // 4
        gap = int((ranked[lo + 1 : hi + 1] - ranked[lo:hi]).argmax()) + lo
        layer.bias[tok.no_bias_id] += float(ranked[gap] + ranked[gap + 1]) / 2


def test_tokens_match_torch_without_hotwords(setup: dict[str, Any]) -> None:
    """Batched ONNX decoding of 4 real clips gives funasr's torch tokens, no hotwords."""
    asr = OnnxSeacoAsr(setup["dir"], threads=2)
    got = [r.token_ids for r in asr.transcribe_batch(setup["waves"])]
    want = setup["torch"].tokens(None)
    assert got == want
    assert sum(len(t) for t in want) > 20


def test_tokens_match_torch_with_hotwords_per_utterance(setup: dict[str, Any]) -> None:
    """With a different hotword list per utterance in one batch, each utterance's tokens equal
    funasr's torch output for the same batch run with that utterance's list (+ [sos]);
    and the hotword head changes some tokens but not all (both sides of the merge)."""
    ref = setup["torch"]
    lists = [HOTWORDS, ["door"], [], HOTWORDS]
    asr = OnnxSeacoAsr(setup["dir"], threads=2)
    got = [r.token_ids for r in asr.transcribe_batch(setup["waves"], lists)]
    for b, words in enumerate(lists):
        assert got[b] == ref.tokens(words)[b], (b, words)
    plain = ref.tokens(None)
    changed = kept = 0
    for b in (0, 1, 3):
        changed += sum(x != y for x, y in zip(got[b], plain[b], strict=False))
        kept += sum(x == y for x, y in zip(got[b], plain[b], strict=False))
    assert changed > 0 and kept > 0, (changed, kept)


def test_runs_and_streams_do_not_change_results_or_their_order(setup: dict[str, Any]) -> None:
    """However a batch call is cut into graph runs (``max_batch``) and however many runs
    are in flight (``streams``), each clip gets the tokens and text it gets alone, in the
    order the clips were given (runs are sorted by length internally)."""
    lists = [HOTWORDS, ["door"], [], HOTWORDS]
    waves = [setup["waves"][i] for i in (2, 0, 3, 1)]
    alone = OnnxSeacoAsr(setup["dir"], threads=1, max_batch=1, streams=1)
    want = [alone.transcribe(w, h) for w, h in zip(waves, lists, strict=True)]
    for max_batch, streams in ((1, 2), (2, 2), (3, 2), (4, 1)):
        asr = OnnxSeacoAsr(setup["dir"], threads=1, max_batch=max_batch, streams=streams)
        got = asr.transcribe_batch(waves, lists)
        assert [r.text for r in got] == [r.text for r in want], (max_batch, streams)
        assert [r.hotwords_found for r in got] == [r.hotwords_found for r in want]


def test_logits_close_to_torch(setup: dict[str, Any]) -> None:
    """Merged log-probs of ONNX (recogniser then hotword head) and torch (funasr's
    ``_seaco_decode_with_ASF`` on the encoder output zeroed past each clip's end, as
    ``inference.encode`` gives it) agree within 1e-3 on the valid token positions of a
    padded batch."""
    import onnxruntime as ort

    model, tok = setup["model"], setup["tok"]
    feats, lengths = setup["feats"]
    asr = OnnxSeacoAsr(setup["dir"], threads=2)
    hw = [tok.encode(h) for h in HOTWORDS]
    bias = np.repeat(asr.hotword_embeddings(hw)[None], len(lengths), axis=0)
    recogniser = ort.InferenceSession(str(setup["dir"] / "model_asr.onnx"))
    head = ort.InferenceSession(str(setup["dir"] / "model_head.onnx"))
    asr_logits, token_num, _, _, embeds, hidden = recogniser.run(
        None, {"speech": feats, "speech_lengths": lengths}
    )
    head_in = {
        "bias_embed": bias,
        "bias_lengths": np.full(len(lengths), bias.shape[1], dtype=np.int32),
        "acoustic_embeds": embeds,
        "decoder_hidden": hidden,
        "token_num": token_num,
        "asr_logits": asr_logits,
    }
    logits = head.run(None, head_in)[0]
    with torch.no_grad():
        enc, enc_len = encode(model, torch.from_numpy(feats), torch.from_numpy(lengths))
        emb, tl = model.calc_predictor(enc, enc_len)[:2]
        tl = tl.round().long()
        want = model._seaco_decode_with_ASF(enc, enc_len, emb, tl, hw_list=[*hw, [model.sos]])
    assert token_num.tolist() == tl.tolist()
    for b, n in enumerate(tl.tolist()):
        assert np.abs(logits[b, :n] - want[b, :n].numpy()).max() < 1e-3


def test_hotword_embeddings_match_funasr_representation(setup: dict[str, Any]) -> None:
    """model_eb.onnx gives funasr's _hotword_representation (packed LSTM, last valid state)."""
    model, tok = setup["model"], setup["tok"]
    asr = OnnxSeacoAsr(setup["dir"], threads=2)
    hw = [tok.encode(h) for h in [*HOTWORDS, "the kitchen door"]]
    got = asr.hotword_embeddings(hw)
    rows = [*hw, [model.sos]]
    pad = torch.nn.utils.rnn.pad_sequence([torch.tensor(r) for r in rows], batch_first=True)
    with torch.no_grad():
        want = model._hotword_representation(pad, torch.tensor([len(r) for r in rows]))
    assert got.shape == tuple(want.shape) == (4, 32)
    assert np.abs(got - want.numpy()).max() < 1e-5


def test_int8_variant_agrees_with_float(setup: dict[str, Any]) -> None:
    """The int8 graphs run and agree with float on at least 85% of tokens: measured 72 of
    76 (0.947) on the build machine; the margin is for int8 kernels that differ between
    CPU instruction sets (VNNI / AMX / plain AVX2), not for a loss of accuracy."""
    f32 = OnnxSeacoAsr(setup["dir"], threads=2).transcribe_batch(setup["waves"])
    i8 = OnnxSeacoAsr(setup["dir"], threads=2, quantized=True).transcribe_batch(setup["waves"])
    same = total = 0
    for a, b in zip(f32, i8, strict=True):
        total += max(len(a.token_ids), len(b.token_ids))
        same += sum(x == y for x, y in zip(a.token_ids, b.token_ids, strict=False))
    assert total > 0 and same / total >= 0.85, (same, total)


def test_int8_weights_are_signed(setup: dict[str, Any]) -> None:
    """The int8 graphs store MatMul weights as signed int8 (what onnxruntime's VNNI / AMX
    kernels take; uint8 weights ran no faster than float) and keep the output layers float,
    in the recogniser and in the hotword head."""
    import onnx

    for name in ("model_asr_quant.onnx", "model_head_quant.onnx"):
        graph = onnx.load(str(setup["dir"] / name)).graph
        kinds = {init.name: init.data_type for init in graph.initializer}
        quantised = [n for n in kinds if n.endswith("_quantized")]
        assert quantised, f"no quantised weights in {name}"
        assert all(kinds[n] == onnx.TensorProto.INT8 for n in quantised), quantised
        assert any("output_layer" in n.name and n.op_type == "MatMul" for n in graph.node)


def test_timestamps_match_funasr() -> None:
    """token_timestamps equals funasr's ts_prediction_lfr6_standard on random CIF weights,
    both when the fire count matches the tokens and when it must be re-normalised."""
    ts = pytest.importorskip("funasr.utils.timestamp_tools")
    rng = np.random.default_rng(0)
    for frames, n_tokens in [(300, 20), (300, 7), (90, 12), (50, 1)]:
        alphas = rng.uniform(0, 0.2, frames).astype(np.float32)
        alphas[:10] = 0
        peaks = ts.cif_wo_hidden(torch.from_numpy(alphas)[None], 1.0 - 1e-4)[0].numpy()
        _, want = ts.ts_prediction_lfr6_standard(
            torch.from_numpy(alphas), torch.from_numpy(peaks), ["x"] * n_tokens
        )
        got = token_timestamps(alphas, peaks, n_tokens)
        assert [list(t) for t in got] == want, (frames, n_tokens)


def test_timestamps_by_hand() -> None:
    """Fires at upsampled frames 10 and 14 (shifted -1.5 -> 8.5, 12.5) over 30 frames, one
    token: 20 ms per frame -> token [170, 250) ms, stretched to the tail midpoint
    (30 + 12.5) / 2 = 21.25 frames -> 425 ms, since 30 - 12.5 > 5 frames of silence."""
    peaks = np.zeros(30, dtype=np.float32)
    peaks[[10, 14]] = 1.0
    alphas = np.full(30, 2 / 30, dtype=np.float32)
    assert token_timestamps(alphas, peaks, 1) == [(170, 425)]


def test_concurrent_calls_with_different_hotwords_do_not_interfere(setup: dict[str, Any]) -> None:
    """Four threads transcribing with different hotword lists get the sequential results."""
    asr = OnnxSeacoAsr(setup["dir"], threads=1)
    lists = [[], HOTWORDS, ["door"], ["kitchen", "open"]]
    # the longest clip, where the lists lead to different outputs
    wave = setup["waves"][-1]
    want = [asr.transcribe(wave, h).token_ids for h in lists]
    got: dict[int, list[int]] = {}

    def work(i: int) -> None:
        for _ in range(3):
            got[i] = asr.transcribe(wave, lists[i]).token_ids

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [got[i] for i in range(4)] == want
    assert len({tuple(w) for w in want}) >= 2


def test_result_fields_and_hotwords_found(setup: dict[str, Any]) -> None:
    """A result has one timestamp per token, increasing; a hotword is reported found when its
    words occur in the text (checked with a word the model did output) and not otherwise."""
    asr = OnnxSeacoAsr(setup["dir"], threads=2)
    res = asr.transcribe(setup["waves"][1], HOTWORDS)
    assert len(res.timestamps) == len(res.token_ids) > 0
    starts = [s for s, _ in res.timestamps]
    assert starts == sorted(starts) and all(s < e for s, e in res.timestamps)
    assert res.text == setup["tok"].decode(res.token_ids)
    assert set(res.hotwords_found) <= set(HOTWORDS)
    again = asr.transcribe(setup["waves"][1], ["zzzz", "qqqq"])
    assert again.hotwords_found == []
    word = again.text.split()[0]
    third = asr.transcribe(setup["waves"][1], ["zzzz", "qqqq", word])
    assert (word in third.hotwords_found) == (word in third.text.split())


def test_bad_hotword_inputs_are_refused(setup: dict[str, Any]) -> None:
    """Too many hotwords, untokenisable ones and a list count mismatch raise InvalidInput."""
    asr = OnnxSeacoAsr(setup["dir"], threads=2)
    wave = setup["waves"][0]
    with pytest.raises(InvalidInput, match="at most"):
        asr.transcribe(wave, [f"w{i}" for i in range(60)])
    with pytest.raises(InvalidInput, match="北京"):
        asr.transcribe(wave, ["北京"])
    with pytest.raises(InvalidInput, match="hotword lists"):
        asr.transcribe_batch([wave, wave], [["door"]])


def test_onnx_path_imports_no_torch(setup: dict[str, Any]) -> None:
    """Importing speechloop.asr.onnx_infer and transcribing with hotwords pulls in neither
    torch nor funasr (checked in a fresh interpreter through sys.modules)."""
    wav = setup["dir"] / "clip.wav"
    sf.write(wav, setup["waves"][0], 16000)
    code = (
        "import sys, soundfile as sf\n"
        "import speechloop.asr.onnx_infer as oi\n"
        f"asr = oi.OnnxSeacoAsr({str(setup['dir'])!r}, threads=1)\n"
        f"r = asr.transcribe(sf.read({str(wav)!r}, dtype='float32')[0], ['noon'])\n"
        "bad = [m for m in ('torch', 'funasr', 'torchaudio') if m in sys.modules]\n"
        "print(len(r.token_ids), bad)\n"
        "sys.exit(1 if bad or not r.token_ids else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_meta_records_sizes_from_the_instance(setup: dict[str, Any]) -> None:
    """onnx_meta.json carries the model's own bias width, vocabulary and NO_BIAS id."""
    meta = json.loads((setup["dir"] / "onnx_meta.json").read_text())
    assert meta["bias_dim"] == 32
    assert meta["vocab_size"] == setup["tok"].vocab_size
    assert meta["no_bias_id"] == setup["tok"].no_bias_id
    assert (setup["dir"] / "model_asr_quant.onnx").is_file()
