"""What both trainers share: the device rule, checkpoints, callbacks, one strategy per stage.

GPU presence is mocked (``torch.cuda.is_available``) where a test needs it: no GPU here.
The trainers run for real on a tiny SeACo-Paraformer and a tiny speaker network.
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
from speechloop.asr.finetune.stages import STRATEGIES, make_strategy  # noqa: E402
from speechloop.asr.finetune.strategy import StageContext  # noqa: E402
from speechloop.asr.finetune.trainer import StageTrainer  # noqa: E402
from speechloop.asr.model import build_seaco, seed_config  # noqa: E402
from speechloop.asr.tokenizer import Tokenizer  # noqa: E402
from speechloop.errors import Conflict, InvalidInput  # noqa: E402
from speechloop.training import CheckpointDir, Recorder, TrainingCallback, select_device  # noqa: E402

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


# -- device -----------------------------------------------------------------------------------


def test_device_rule_is_explicit():
    """auto: CUDA with mixed precision when present (mocked), else the CPU without; a GPU
    asked for but absent, or an unknown name, is an error naming it."""
    with mock.patch("torch.cuda.is_available", return_value=True):
        plan = select_device("auto")
        assert plan.device == "cuda" and plan.mixed_precision
        assert select_device("cuda:1", mixed_precision=False).mixed_precision is False
    with mock.patch("torch.cuda.is_available", return_value=False):
        assert select_device(None).device == "cpu"
        assert not select_device("auto").mixed_precision
        with pytest.raises(InvalidInput, match="'cuda:0' requested but CUDA is not available"):
            select_device("cuda:0")
    with pytest.raises(InvalidInput, match="unknown device 'tpu'"):
        select_device("tpu")


def test_float16_needs_a_grad_scaler_bfloat16_does_not():
    """On a GPU without bfloat16 autocast runs in float16 with loss scaling; with bfloat16
    (or on the CPU) no scaler is active. Plans are built directly: no GPU here."""
    from speechloop.training.device import DevicePlan

    fp16 = DevicePlan("cuda", mixed_precision=True, bf16=False)
    bf16 = DevicePlan("cuda", mixed_precision=True, bf16=True)
    assert fp16.autocast_dtype == "float16" and bf16.autocast_dtype == "bfloat16"
    with mock.patch("torch.cuda.is_available", return_value=True):
        assert bf16.grad_scaler().is_enabled() is False
    cpu = select_device("cpu")
    assert cpu.grad_scaler().is_enabled() is False
    with cpu.autocast():
        assert not torch.is_autocast_enabled("cpu")


# -- checkpoints ------------------------------------------------------------------------------


def test_checkpoint_round_trip_and_run_identity(tmp_path: Path):
    """A saved state loads back; a checkpoint of another run is refused, naming the
    difference; no directory means checkpointing is off."""
    ck = CheckpointDir(tmp_path, {"seed": 1, "train": 10})
    path = ck.save("last.pt", {"epoch": 3, "w": torch.arange(4)})
    assert path == tmp_path / "last.pt" and not (tmp_path / "last.pt.tmp").exists()
    state = ck.load("last.pt")
    assert state is not None and state["epoch"] == 3 and torch.equal(state["w"], torch.arange(4))
    with pytest.raises(Conflict, match="seed: 1 there, 2 here"):
        CheckpointDir(tmp_path, {"seed": 2, "train": 10}).load("last.pt")
    assert CheckpointDir(tmp_path).load("missing.pt") is None
    off = CheckpointDir(None)
    assert off.save("last.pt", {"epoch": 1}) is None and off.load("last.pt") is None


def test_checkpoint_write_is_atomic(tmp_path: Path):
    """A failure while writing leaves the previous checkpoint whole."""
    ck = CheckpointDir(tmp_path)
    ck.save("last.pt", {"epoch": 1})
    with mock.patch("torch.save", side_effect=OSError("disk full")), pytest.raises(OSError):
        ck.save("last.pt", {"epoch": 2})
    state = ck.load("last.pt")
    assert state is not None and state["epoch"] == 1


# -- the ASR trainer ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def asr_data() -> tuple[Tokenizer, list[Utterance]]:
    """Eight espeak-ng utterances, features normalised per utterance."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    from speechloop.asr.features import Frontend
    from speechloop.data.synth.render import synthesize

    tok = Tokenizer.build([s for s, _ in SENTENCES], never_whole=["brakovan", "zelmira"])
    fe = Frontend()
    utts = []
    for i, (text, hws) in enumerate(SENTENCES):
        feats = fe(synthesize("espeak", "en-us", "m3", text, 1.0, 0.0))
        feats = (feats - feats.mean(0)) / (feats.std(0) + 1e-3)
        utts.append(Utterance(f"u{i}", feats.astype(np.float32), tok.encode(text), text,
                              [tok.encode(h) for h in hws], hws))  # fmt: skip
    return tok, utts


def _model(tok: Tokenizer):
    torch.manual_seed(0)
    return build_seaco(seed_config(tok.vocab_size, tok.no_bias_id, d=32))


def test_one_strategy_per_stage_kind(asr_data):
    """Each stage kind has its strategy; the trainable sets partition the parameters
    (asr + hotword = everything = naive); an unknown kind is refused by name."""
    tok, _ = asr_data
    model = _model(tok)
    plan = select_device("cpu")
    names = [n for n, _ in model.named_parameters()]

    def trained(kind: str) -> set[str]:
        strategy = make_strategy(StageContext(model, tok, StageConfig(kind), plan))  # type: ignore[arg-type]
        assert strategy.kind == kind
        return {n for n in names if strategy.trainable(n)}

    assert set(STRATEGIES) == {"asr", "hotword", "naive"}
    asr, hot = trained("asr"), trained("hotword")
    assert asr and hot and not asr & hot and asr | hot == set(names) == trained("naive")
    with pytest.raises(InvalidInput, match="unknown stage kind 'joint'"):
        make_strategy(StageContext(model, tok, StageConfig("joint"), plan))  # type: ignore[arg-type]


def test_asr_trainer_reports_through_callbacks(asr_data, tmp_path: Path):
    """Per epoch: start (with its step count), one step event per batch, the checkpoint(s),
    then the epoch's record with its validation figures."""
    tok, utts = asr_data
    rec = Recorder()
    cfg = StageConfig("asr", epochs=2, lr=1e-3, warmup_steps=1, batch_size=4, patience=5)
    StageTrainer(_model(tok), tok, cfg, work_dir=tmp_path, progress=False,
                 callbacks=[rec]).run(utts[:6], utts[6:])  # fmt: skip
    starts, steps, ends = rec.of("epoch_start"), rec.of("step"), rec.of("epoch_end")
    assert [(e[1], e[2], e[3], e[4]) for e in starts] == [("asr", 1, 2, 2), ("asr", 2, 2, 2)]
    assert [(e[2], e[3]) for e in steps] == [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert all(np.isfinite(e[5]) for e in steps)
    assert [e[2] for e in ends] == [1, 2] and "valid_acc" in ends[-1][3]
    lasts = [e for e in rec.of("checkpoint") if not e[4]]
    assert [(e[2], e[3]) for e in lasts] == [
        (1, tmp_path / "asr" / "last.pt"),
        (2, tmp_path / "asr" / "last.pt"),
    ]
    kinds = [e[0] for e in rec.events]
    assert kinds.index("checkpoint") < kinds.index("epoch_end")


class _KillAt(TrainingCallback):
    """Raises in the middle of an epoch, as a killed process stops."""

    def __init__(self, epoch: int, step: int) -> None:
        self.at = (epoch, step)

    def on_step(self, stage: str, epoch: int, step: int, steps: int, loss: float) -> None:
        if (epoch, step) == self.at:
            raise KeyboardInterrupt


def test_killed_mid_epoch_resumes_from_the_last_checkpoint(asr_data, tmp_path: Path):
    """Killed during epoch 2, the re-run restarts epoch 2 from the epoch-1 checkpoint and
    ends with exactly the weights of an uninterrupted run."""
    tok, utts = asr_data
    cfg = StageConfig("hotword", epochs=2, lr=1e-3, warmup_steps=1, batch_size=4, patience=9)
    full = _model(tok)
    StageTrainer(full, tok, cfg, work_dir=tmp_path / "a", progress=False).run(utts[:6], utts[6:])
    with pytest.raises(KeyboardInterrupt):
        StageTrainer(_model(tok), tok, cfg, work_dir=tmp_path / "b", progress=False,
                     callbacks=[_KillAt(2, 1)]).run(utts[:6], utts[6:])  # fmt: skip
    rec = Recorder()
    resumed = _model(tok)
    StageTrainer(resumed, tok, cfg, work_dir=tmp_path / "b", progress=False,
                 callbacks=[rec]).run(utts[:6], utts[6:])  # fmt: skip
    assert [e[2] for e in rec.of("epoch_start")] == [2]
    for (name, p), q in zip(full.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(p, q), name


def test_checkpoint_of_another_run_is_refused(asr_data, tmp_path: Path):
    """A work directory holding another configuration's checkpoint is a Conflict, not a
    silent mix of two trainings."""
    tok, utts = asr_data
    cfg = StageConfig("asr", epochs=1, lr=1e-3, warmup_steps=1, batch_size=4)
    StageTrainer(_model(tok), tok, cfg, work_dir=tmp_path, progress=False).run(utts[:6], utts[6:])
    other = StageConfig("asr", epochs=1, lr=5e-4, warmup_steps=1, batch_size=4)
    with pytest.raises(Conflict, match="belongs to another run"):
        StageTrainer(_model(tok), tok, other, work_dir=tmp_path, progress=False).run(
            utts[:6], utts[6:]
        )


# -- the speaker trainer -----------------------------------------------------------------------


def test_speaker_trainer_reports_through_the_same_callbacks(tmp_path: Path):
    """The speaker trainer sends the same events under the stage name ``speaker``."""
    from speechloop.speaker.finetune.config import AugmentConfig, TrainConfig
    from speechloop.speaker.finetune.trainer import Trainer, ValidSet, all_pairs_trials
    from speechloop.speaker.model import SpkModel, SpkModelConfig, build_network
    from tests.unit.spk_support import tiny_spk_corpus

    rows = tiny_spk_corpus(tmp_path / "corpus", per_batch=24).train
    valid = [r for r in rows if r.id.endswith(("1", "5"))]
    train = [r for r in rows if r not in valid]
    tiny = SpkModelConfig(m_channels=8, num_blocks=(1, 1, 1, 1), embedding_size=32)
    cfg = TrainConfig(epochs=1, batch_size=8, crop_s=0.6, threads=1, progress=False,
                      device="cpu", augment=AugmentConfig(speed_prob=0, noise_prob=0))  # fmt: skip
    torch.manual_seed(0)
    model = SpkModel(build_network(tiny), tiny, "t")
    trainer = Trainer(model, train, ValidSet(valid, all_pairs_trials(valid)), tmp_path / "o", cfg)
    rec = Recorder()
    trainer.fit(resume=False, callbacks=[rec])
    steps = trainer.sampler.steps_per_epoch()
    assert rec.of("epoch_start") == [("epoch_start", "speaker", 1, 1, steps)]
    assert len(rec.of("step")) == steps
    end = rec.of("epoch_end")[0]
    assert end[1] == "speaker" and "valid_eer" in end[3]
    assert (
        "checkpoint",
        "speaker",
        1,
        tmp_path / "o" / "checkpoints" / "last.pt",
        False,
    ) in rec.events
    other = cfg.model_copy(update={"seed": 1})
    again = Trainer(model, train, ValidSet(valid, all_pairs_trials(valid)), tmp_path / "o", other)
    with pytest.raises(Conflict, match="another run"):
        again.load_checkpoint()
