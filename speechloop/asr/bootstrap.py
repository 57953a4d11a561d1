"""The seed ASR model: a small SeacoParaformer trained from scratch on the synthetic corpus.

Bootstrap plays the part of pre-training, so it must leave both halves working: the
ASR part (stage ``asr``, from scratch, larger learning rate) and the hotword path (stage
``hotword`` on the frozen ASR part). The recipe, what was tried and what it showed are
in ``docs/asr.md``. In short, what makes the hotword head bias instead of collapsing
to NO_BIAS: syllable-piece tokens (a name is ~4 tokens from a few hundred shared
units, see :mod:`speechloop.asr.tokenizer`), many distinct training names, batch lists
mixing true hotwords with distractors and leaving some true ones out (labels NO_BIAS
then), many cheap epochs of the head on the cached ASR outputs, and utterances whose
names the ASR stage never heard (``head_rows``), where the head learns to correct it.
A third stage (``refine``) then trains the ASR part again on a larger corpus with the
head frozen: the head can only spell a name where the CIF predictor gives it the right
number of tokens, and more data gets more of them right.

Deterministic by seed on one machine type (CPU or one GPU model).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from speechloop.asr.finetune.config import StageConfig
from speechloop.asr.model import CMVN_FILE, LoadedModel, build_seaco, save_to_dir, seed_config
from speechloop.asr.tokenizer import Tokenizer
from speechloop.data.types import AsrRow
from speechloop.errors import InvalidInput

log = logging.getLogger(__name__)

SEED_DIR = Path(__file__).resolve().parent.parent / "seeds" / "asr"


SEED_ASR_STAGE = StageConfig(
    "asr", epochs=20, lr=1.5e-3, warmup_steps=300, batch_size=8, patience=4, glancing=0.0
)
SEED_HOTWORD_STAGE = StageConfig(
    "hotword", epochs=16, lr=3e-3, warmup_steps=30, batch_size=32, patience=8,
    list_size=8, easy_epochs=3, p_include=0.8, no_bias_weight=0.5, vary_list_size=True,
    span_rate=1.0, extra_span_rate=1.0, token_spans=True, state_noise=0.3,
)  # fmt: skip
#: After both stages, the ASR part trains on a corpus twice the size with the hotword
#: modules frozen (stage 1 of two-stage fine-tuning). Better CIF token counts on unheard
#: voices are what the head needs: it can spell a name only where the predictor gives it
#: the right number of tokens (docs/asr.md, item 15).
SEED_REFINE_STAGE = StageConfig(
    "asr", epochs=8, lr=5e-4, warmup_steps=200, batch_size=8, patience=4, glancing=0.0
)


@dataclass(frozen=True)
class BootstrapConfig:
    """How the seed is made."""

    seed: int = 0
    d_model: int = 128
    asr: StageConfig = field(default_factory=lambda: SEED_ASR_STAGE)
    hotword: StageConfig = field(default_factory=lambda: SEED_HOTWORD_STAGE)
    # the ASR part again, head frozen, on ``refine_rows`` (None: no third stage)
    refine: StageConfig | None = field(default_factory=lambda: SEED_REFINE_STAGE)
    # share of training names whose utterances the ASR stage never sees, so that the
    # hotword stage also trains where the ASR part mishears names (as on unseen names)
    asr_unseen_names: float = 0.35
    # CTC branch on the encoder during the ASR stage (from scratch it learns alignments
    # sooner: 0.49 vs 0.44 validation token accuracy at epoch 6, not a controlled run,
    # docs/asr.md)
    ctc_weight: float = 0.3
    # SpecAugment during the ASR stage (the real model's SpecAugLFR settings). Off: at this
    # budget it slowed learning more than it helped (golden CER 35.0% with it, 30.0%
    # without, 14 epochs, docs/asr.md)
    specaug: bool = False
    num_threads: int = 2
    device: str = "auto"

    def quick(
        self, asr_epochs: int = 2, hotword_epochs: int = 2, refine_epochs: int = 1
    ) -> BootstrapConfig:
        """A short run (CI: loss falls and accuracy rises)."""
        refine = self.refine and replace(self.refine, epochs=refine_epochs, warmup_steps=10)
        return replace(
            self,
            asr=replace(self.asr, epochs=asr_epochs, warmup_steps=10),
            hotword=replace(self.hotword, epochs=hotword_epochs, easy_epochs=0, warmup_steps=5),
            refine=refine,
        )


@dataclass
class BootstrapResult:
    """The trained seed and what training recorded."""

    loaded: LoadedModel
    history: list[dict[str, Any]]
    seconds: float


def build_tokenizer(rows: Sequence[AsrRow], whole_words: bool = False) -> Tokenizer:
    """Vocabulary from the training transcripts; words of hotwords always stay pieces.

    By default every word is syllable pieces (no whole-word tokens): each unit is then
    frequent, and the CIF predictor fires at one rate for plain words and names alike,
    so its token count for an unseen name matches the name's tokenisation.
    """
    hotwords = {h for r in rows for h in r.hotwords}
    keep = 2 if whole_words else 10**9
    return Tokenizer.build([r.text for r in rows], never_whole=sorted(hotwords), keep_whole=keep)


def train_seed(
    rows: Sequence[AsrRow],
    work_dir: Path,
    cfg: BootstrapConfig | None = None,
    *,
    head_rows: Sequence[AsrRow] = (),
    refine_rows: Sequence[AsrRow] = (),
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    progress: bool = True,
) -> BootstrapResult:
    """Train the seed on ``rows`` (split "eval" rows validate). Checkpoints in ``work_dir``.

    ``head_rows`` join the hotword stage only (their "eval" rows validate, the rest
    train; none is held back otherwise): utterances whose names the ASR stage never
    heard, so the head learns on the states of an ASR part that mishears the name, as it
    will at inference on every new hotword. ``refine_rows`` (a larger corpus, normally
    ``rows`` and more) feed the ``cfg.refine`` stage, which trains the ASR part again
    with the head frozen. The tokenizer and the CMVN come from ``rows`` alone.
    """
    import torch

    from speechloop.asr.features import Frontend, compute_cmvn, write_am_mvn
    from speechloop.asr.finetune.data import prepare, read_wave
    from speechloop.asr.finetune.trainer import StageTrainer, pick_device

    cfg = cfg or BootstrapConfig()
    if not rows:
        raise InvalidInput("no ASR rows to train the seed on")
    started = time.perf_counter()
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.num_threads)
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    device = pick_device(cfg.device)
    tok = build_tokenizer(rows)
    cmvn_path = work_dir / CMVN_FILE
    train_rows = [r for r in rows if r.split == "train"]
    write_am_mvn(compute_cmvn(read_wave(r) for r in train_rows[:400]), cmvn_path)
    frontend = Frontend.from_am_mvn(cmvn_path)
    train, valid = _split(prepare(rows, tok, frontend), rows, cfg.seed)
    head = prepare(head_rows, tok, frontend)
    head_train = [u for u, r in zip(head, head_rows, strict=True) if r.split != "eval"]
    head_valid = [u for u, r in zip(head, head_rows, strict=True) if r.split == "eval"]
    stages = [
        ("asr", cfg.asr, (asr_subset(train, cfg.asr_unseen_names, cfg.seed), valid)),
        ("hotword", cfg.hotword, (train + head_train, valid + head_valid)),
    ]
    if cfg.refine is not None and refine_rows:
        more, more_valid = _split(prepare(refine_rows, tok, frontend), refine_rows, cfg.seed)
        more = asr_subset(more, cfg.asr_unseen_names, cfg.seed)
        stages.append(("refine", cfg.refine, (more, more_valid)))
    config = seed_config(tok.vocab_size, tok.no_bias_id, cfg.d_model, cfg.ctc_weight, cfg.specaug)
    model = build_seaco(config).to(device)
    history: list[dict[str, Any]] = []
    for phase, stage, (stage_train, stage_valid) in stages:

        def record(rec: dict[str, Any], phase: str = phase) -> None:
            history.append({**rec, "phase": phase})
            if on_epoch is not None:
                on_epoch(rec)

        trainer = StageTrainer(
            model, tok, stage, seed=cfg.seed, device=device,
            work_dir=work_dir / "refine" if phase == "refine" else work_dir,
            on_epoch=record, progress=progress,
        )  # fmt: skip
        result = trainer.run(stage_train, stage_valid)
        summary = {"stage": stage.kind, "phase": phase, "summary": True,
                   "best_epoch": result.best_epoch, "best_score": result.best_score,
                   "seconds": round(result.seconds, 1)}  # fmt: skip
        history.append(summary)
    model.cpu().eval()
    loaded = LoadedModel(model, tok, config, None, cmvn_path, "seed")
    return BootstrapResult(loaded, history, time.perf_counter() - started)


def _split(utts: list[Any], rows: Sequence[AsrRow], seed: int) -> tuple[list[Any], list[Any]]:
    """(training, validation) utterances by the rows' split; 10% held back if none is "eval"."""
    from speechloop.asr.finetune.data import split_valid

    train = [u for u, r in zip(utts, rows, strict=True) if r.split == "train"]
    valid = [u for u, r in zip(utts, rows, strict=True) if r.split == "eval"]
    if not valid:
        train, valid = split_valid(train, 0.1, seed)
    return train, valid


def asr_subset(train: Sequence[Any], share: float, seed: int) -> list[Any]:
    """Training utterances minus those carrying a name of a held-back share of names."""
    import random

    names = sorted({h for u in train for h in u.hotword_text})
    random.Random(seed).shuffle(names)
    held = set(names[: round(len(names) * share)])
    return [u for u in train if not held.intersection(u.hotword_text)]


def write_seed(result: BootstrapResult, out_dir: Path, extra: dict[str, Any]) -> Path:
    """Save the seed (float16 weights) with ``metrics.json`` and ``training.json``."""
    out = save_to_dir(result.loaded, out_dir, half=True)
    (out / "metrics.json").write_text(json.dumps(extra, indent=2) + "\n", encoding="utf-8")
    training = {"seconds": round(result.seconds, 1), "history": result.history}
    (out / "training.json").write_text(json.dumps(training, indent=1) + "\n", encoding="utf-8")
    return out


def config_dict(cfg: BootstrapConfig) -> dict[str, Any]:
    """The bootstrap config as plain data (for metrics.json)."""
    return asdict(cfg)
