"""Two-stage fine-tuning: freezing is exact, training moves what it should, resume works.

A tiny SeacoParaformer (d=32) on a dozen espeak-ng utterances keeps this fast; GPU
selection is tested by mocking ``torch.cuda.is_available`` (no GPU on the build machines).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from speechloop.asr.finetune.config import StageConfig  # noqa: E402
from speechloop.asr.finetune.data import Utterance  # noqa: E402
from speechloop.asr.finetune.trainer import (  # noqa: E402
    StageTrainer,
    is_hotword_param,
    pick_device,
)
from speechloop.asr.model import build_seaco, seed_config  # noqa: E402
from speechloop.asr.tokenizer import Tokenizer  # noqa: E402

SENTENCES = [
    ("please call brakovan tonight", ["brakovan"]),
    ("send the report to zelmira", ["zelmira"]),
    ("tell brakovan to walk the dog", ["brakovan"]),
    ("the report is on the table", []),
    ("zelmira left the key at the office", ["zelmira"]),
    ("call the doctor tonight", []),
    ("ask zelmira about the report", ["zelmira"]),
    ("walk the dog tonight", []),
]


@pytest.fixture(scope="module")
def data() -> tuple[Tokenizer, list[Utterance]]:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    from speechloop.asr.features import Frontend
    from speechloop.data.synth.render import synthesize

    tok = Tokenizer.build([s for s, _ in SENTENCES], never_whole=["brakovan", "zelmira"])
    fe = Frontend()
    utts = []
    for i, (text, hws) in enumerate(SENTENCES):
        wave = synthesize("espeak", "en-us", "m3", text, 1.0, 0.0)
        feats = fe(wave)
        feats = (feats - feats.mean(0)) / (feats.std(0) + 1e-3)
        utts.append(Utterance(f"u{i}", feats.astype(np.float32), tok.encode(text), text,
                              [tok.encode(h) for h in hws], hws))  # fmt: skip
    return tok, utts


def _model(tok: Tokenizer):
    torch.manual_seed(0)
    return build_seaco(seed_config(tok.vocab_size, tok.no_bias_id, d=32))


def _snapshot(model) -> dict:
    return {k: v.detach().clone() for k, v in model.named_parameters()}


@pytest.mark.parametrize("kind", ["asr", "hotword"])
def test_stage_freezes_exactly_and_trains_the_rest(data, kind):
    """After a stage, every frozen tensor is bit-identical and every trained one moved."""
    tok, utts = data
    model = _model(tok)
    before = _snapshot(model)
    cfg = StageConfig(kind, epochs=1, lr=1e-3, warmup_steps=1, batch_size=4, patience=5)
    StageTrainer(model, tok, cfg, progress=False).run(utts[:6], utts[6:])
    after = dict(model.named_parameters())
    frozen_moved, trained_still = [], []
    for name, old in before.items():
        same = torch.equal(old, after[name].detach())
        trained = is_hotword_param(name) == (kind == "hotword")
        if not trained and not same:
            frozen_moved.append(name)
        if trained and same and "predictor.blstm" not in name:
            trained_still.append(name)
    assert frozen_moved == []
    assert trained_still == []


def test_naive_stage_trains_everything_on_the_joint_objective(data, tmp_path: Path):
    """The naive baseline makes every parameter trainable and trains them on ASR loss +
    SeACo head loss at once: the ASR part and the hotword modules both move (compared
    on the epoch's checkpoint: the stage may restore the untrained weights as best)."""
    tok, utts = data
    model = _model(tok)
    before = _snapshot(model)
    seen: list[dict] = []
    cfg = StageConfig("naive", epochs=1, lr=1e-3, warmup_steps=1, batch_size=4)
    StageTrainer(model, tok, cfg, progress=False, on_epoch=seen.append,
                 work_dir=tmp_path).run(utts[:6], utts[6:])  # fmt: skip
    assert all(p.requires_grad for p in model.parameters())
    after = torch.load(tmp_path / "naive" / "last.pt", weights_only=False)["model"]
    moved = [n for n in before if not torch.equal(before[n], after[n])]
    assert any(n.startswith("encoder.") for n in moved)
    assert any(is_hotword_param(n) for n in moved)
    assert {"train_loss_att", "train_loss_seaco"} <= set(seen[-1])


def test_stage_glancing_applies_during_the_stage_and_is_restored(data):
    """A stage's ``glancing`` sets Paraformer's sampling ratio while it trains (seen by
    the objective at every step) and the model's own ratio is back afterwards."""
    tok, utts = data
    model = _model(tok)
    assert model.sampling_ratio == 0.75
    seen: list[float] = []
    trainer = StageTrainer(model, tok, StageConfig("asr", epochs=1, lr=1e-3, warmup_steps=1,
                           batch_size=4, glancing=0.0), progress=False)  # fmt: skip
    step = trainer.strategy.step

    def spy(*args, **kwargs):
        seen.append(model.sampling_ratio)
        return step(*args, **kwargs)

    trainer.strategy.step = spy  # type: ignore[method-assign]
    trainer.run(utts[:6], utts[6:])
    assert seen and set(seen) == {0.0}
    assert model.sampling_ratio == 0.75


def test_resume_after_kill_matches_uninterrupted_run(data, tmp_path: Path):
    """A run killed after epoch 1 and restarted resumes from its checkpoint and ends with
    exactly the weights of an uninterrupted run (per-epoch seeding)."""
    tok, utts = data
    cfg = StageConfig("asr", epochs=2, lr=1e-3, warmup_steps=1, batch_size=4, patience=9)
    full = _model(tok)
    StageTrainer(full, tok, cfg, work_dir=tmp_path / "a", progress=False).run(utts[:6], utts[6:])

    def kill(record: dict) -> None:
        if record["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        StageTrainer(_model(tok), tok, cfg, work_dir=tmp_path / "b", on_epoch=kill,
                     progress=False).run(utts[:6], utts[6:])  # fmt: skip
    assert torch.load(tmp_path / "b" / "asr" / "last.pt", weights_only=False)["epoch"] == 1
    resumed = _model(tok)
    out = StageTrainer(resumed, tok, cfg, work_dir=tmp_path / "b", progress=False).run(
        utts[:6], utts[6:]
    )
    assert [h["epoch"] for h in out.history] == [0, 1, 2]
    for (name, p), q in zip(full.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(p, q), name


def test_pick_device_prefers_cuda_when_available():
    """auto picks CUDA when torch reports it (mocked: no GPU here), CPU otherwise; CUDA
    asked for without one is an error, not a silent fall back (the shared rule of
    :func:`speechloop.training.select_device`)."""
    from speechloop.errors import InvalidInput

    with mock.patch("torch.cuda.is_available", return_value=True):
        assert pick_device("auto") == "cuda"
    with mock.patch("torch.cuda.is_available", return_value=False):
        assert pick_device("auto") == "cpu"
        with pytest.raises(InvalidInput, match="CUDA is not available"):
            pick_device("cuda")
    assert pick_device("cpu") == "cpu"


def test_candidates_add_a_transcript_span_only_when_asked():
    """Rows with manifest hotwords keep exactly those unless ``extra_span_rate`` asks for
    one more span of the transcript (never a duplicate); rows without get a span with
    ``span_rate``. At rate 0 the random stream is not touched (runs stay reproducible)."""
    import random

    from speechloop.asr.finetune.trainer import candidates

    tok = Tokenizer.build([s for s, _ in SENTENCES], never_whole=["brakovan", "zelmira"])
    feats = np.zeros((10, 560), dtype=np.float32)
    text = "please call brakovan tonight"
    named = Utterance("a", feats, tok.encode(text), text, [tok.encode("brakovan")], ["brakovan"])
    plain = Utterance("b", feats, tok.encode("walk the dog"), "walk the dog")

    def spans(span_rate: float, extra_span_rate: float) -> StageConfig:
        return StageConfig("hotword", span_rate=span_rate, extra_span_rate=extra_span_rate)

    rng = random.Random(0)
    assert candidates(named, tok, rng, spans(1.0, 0.0)) == [tok.encode("brakovan")]
    assert rng.random() == random.Random(0).random()
    for seed in range(20):
        got = candidates(named, tok, random.Random(seed), spans(0.0, 1.0))
        assert got[0] == tok.encode("brakovan") and len(got) <= 2
        assert all(_is_sub(tok.encode(text), span) for span in got)
        assert len(got) == len({tuple(s) for s in got})
    assert any(
        len(candidates(named, tok, random.Random(s), spans(0.0, 1.0))) == 2 for s in range(20)
    )
    assert candidates(plain, tok, random.Random(1), spans(0.0, 1.0)) == []
    assert any(candidates(plain, tok, random.Random(s), spans(1.0, 0.0)) for s in range(5))


def test_token_spans_are_runs_of_2_to_5_transcript_tokens():
    """With ``token_spans`` a sampled pseudo-hotword is 2-5 consecutive tokens of the
    transcript, not necessarily whole words (funasr's sampling)."""
    import random

    from speechloop.asr.finetune.data import sample_span

    tok = Tokenizer.build([s for s, _ in SENTENCES], never_whole=["brakovan", "zelmira"])
    text = "please call brakovan tonight at the station"
    utt = Utterance("a", np.zeros((10, 560), dtype=np.float32), tok.encode(text), text)
    spans = [sample_span(utt, tok, random.Random(s), by_tokens=True) for s in range(40)]
    assert all(s is not None and 2 <= len(s) <= 5 and _is_sub(utt.ids, s) for s in spans)
    assert len({tuple(s) for s in spans if s}) > 10
    short = Utterance("b", utt.feats, tok.encode("hi")[:1], "hi")
    assert sample_span(short, tok, random.Random(0), by_tokens=True) is None


def _is_sub(seq: list[int], sub: list[int]) -> bool:
    return any(seq[i : i + len(sub)] == sub for i in range(len(seq) - len(sub) + 1))


def test_utterance_lists_vary_in_length_when_asked():
    """With ``vary`` every list holds the utterance's listed hotwords, ``[sos]`` and
    0..n distractors, and lengths differ across utterances (requests come with lists of
    any length); without it every list has exactly n distractors. Labels mark exactly
    the listed hotwords' positions."""
    import random

    from speechloop.asr.objectives import build_utterance_lists

    texts = [[10, 11, 12, 13], [20, 21, 22], [30, 31, 32, 33]] * 10
    cands = [[[11, 12]], [], [[31, 32, 33]]] * 10
    distractors = [[40 + i, 50 + i] for i in range(12)]

    def build(vary: bool):
        return build_utterance_lists(texts, cands, distractors, no_bias=4, sos=1,
                                     rng=random.Random(3), p_include=1.0, n_distractors=6,
                                     vary=vary)  # fmt: skip

    fixed, varied = build(False), build(True)
    n_true = [len(c) for c in cands]
    assert [int(x) for x in fixed.lengths] == [t + 6 + 1 for t in n_true]
    extra = [int(x) - t - 1 for x, t in zip(varied.lengths, n_true, strict=True)]
    assert min(extra) >= 0 and max(extra) <= 6 and len(set(extra)) > 2
    assert varied.labels[0].tolist() == [4, 11, 12, 4]
    assert varied.labels[1].tolist()[:3] == [4, 4, 4]
    assert varied.index[0, int(varied.lengths[0]) - 1] == varied.hotwords.index([1])


def test_two_stage_config_sets_the_stage2_learning_rate_factor():
    """``two_stage`` runs the ASR stage then the hotword stage, with stage 2's lr scaled
    by ``hotword_lr_factor`` (10 by default; 1 keeps old names better, docs/asr.md), and
    the config survives its dict form (lineage files)."""
    from speechloop.asr.finetune.config import FinetuneConfig

    default = FinetuneConfig.two_stage(3, 1e-4)
    assert [s.kind for s in default.stages] == ["asr", "hotword"]
    assert default.stages[1].lr == pytest.approx(1e-3)
    assert FinetuneConfig.two_stage(3, 1e-4, hotword_lr_factor=1).stages[1].lr == 1e-4
    assert FinetuneConfig.from_dict(default.to_dict()) == default


def test_state_noise_is_a_share_of_each_vectors_rms():
    """``StageConfig.state_noise``: the noise added to a cached state vector is that share
    of the vector's RMS, whatever its scale; a share of 0 leaves states untouched."""
    from speechloop.asr.finetune.trainer import _noisy

    x = torch.randn(2, 400, 64) * torch.tensor([1.0, 10.0]).view(2, 1, 1)
    torch.manual_seed(0)
    noise = _noisy(x, 0.3) - x
    for b in range(2):
        ratio = noise[b].pow(2).mean().sqrt() / x[b].pow(2).mean().sqrt()
        assert abs(float(ratio) - 0.3) < 0.03
    assert torch.equal(_noisy(x, 0.0), x)
