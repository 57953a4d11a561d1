"""Bootstrap trains: on a small espeak-ng set, a short run's loss falls and accuracy rises.

The shipped seed (speechloop/seeds/asr) is made by the full run (docs/asr.md); CI only
checks that the recipe trains, on a d=64 model and ~30 utterances.
"""

from __future__ import annotations

import shutil
from dataclasses import replace

import numpy as np
import pytest

pytest.importorskip("torch")

from speechloop.asr.bootstrap import BootstrapConfig, build_tokenizer, train_seed
from speechloop.data.types import AsrRow

NAMES = ["brakovan", "zelmira", "tovashi"]
TEMPLATES = ["please call {} tonight", "send the report to {}", "{} left the key at the office",
             "ask {} about the blue folder", "the train leaves at seven"]  # fmt: skip


@pytest.fixture(scope="module")
def rows(tmp_path_factory) -> list[AsrRow]:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    import soundfile as sf

    from speechloop.data.synth.render import synthesize

    out = tmp_path_factory.mktemp("boot")
    rows = []
    for i in range(24):
        name = NAMES[i % 3]
        template = TEMPLATES[i % len(TEMPLATES)]
        text = template.format(name)
        variant = ("m1", "f2", "m3")[i % 3]
        wave = synthesize("espeak", "en-us", variant, text, 1.0 + 0.05 * (i % 4), 0.0)
        path = out / f"u{i}.wav"
        sf.write(path, wave, 16000)
        hws = (name,) if "{}" in template else ()
        split = "eval" if i % 8 == 7 else "train"
        rows.append(AsrRow(f"u{i}", path, text, len(wave) / 16000, hws, split))  # type: ignore[arg-type]
    return rows


def test_short_bootstrap_run_learns(rows, tmp_path):
    """Two ASR epochs and two hotword epochs: ASR loss falls, accuracy rises; head trains."""
    base = BootstrapConfig(seed=0, d_model=64, num_threads=2, asr_unseen_names=0.0)
    cfg = base.quick(asr_epochs=3, hotword_epochs=2)
    cfg = replace(cfg, asr=replace(cfg.asr, lr=3e-3, batch_size=8))
    result = train_seed(rows, tmp_path, cfg, progress=False)
    asr = [h for h in result.history if h.get("stage") == "asr" and not h.get("summary")]
    hot = [h for h in result.history if h.get("stage") == "hotword" and not h.get("summary")]
    assert len(asr) == 3 and len(hot) == 2
    assert asr[-1]["train_loss"] < asr[0]["train_loss"]
    assert asr[-1]["train_acc"] > asr[0]["train_acc"]
    assert hot[-1]["train_loss_seaco"] < hot[0]["train_loss_seaco"]
    assert np.isfinite(hot[-1]["valid_score"])
    assert (tmp_path / "am.mvn").is_file()


def test_head_rows_train_only_the_hotword_stage(rows, tmp_path):
    """Rows passed as ``head_rows`` join the hotword stage's training set and never the
    ASR stage's; the tokenizer comes from the main rows alone (a word only the head rows
    carry adds no token)."""
    cfg = BootstrapConfig(seed=0, d_model=32, num_threads=2, asr_unseen_names=0.0)
    cfg = cfg.quick(asr_epochs=1, hotword_epochs=1)
    main = rows[:16]
    head = [replace(r, text=f"{r.text} tolbezor") for r in rows[16:]]
    assert build_tokenizer(main).tokens != build_tokenizer(main + head).tokens
    result = train_seed(main, tmp_path, cfg, head_rows=head, progress=False)
    by_stage = {h["stage"]: h for h in result.history if "utterances" in h}
    n_main = sum(r.split == "train" for r in main)
    assert by_stage["asr"]["utterances"] == n_main
    assert by_stage["hotword"]["utterances"] == n_main + sum(r.split == "train" for r in head)
    assert result.loaded.tokenizer.tokens == build_tokenizer(main).tokens


def test_refine_stage_trains_the_asr_part_on_refine_rows_with_the_head_frozen(rows, tmp_path):
    """The refine stage (``refine_rows``) trains only the ASR part, on the larger set: the
    hotword modules end bit-identical to a run without it, the ASR tensors move, and the
    tokenizer still comes from the main rows."""
    import torch

    from speechloop.asr.finetune.trainer import is_hotword_param

    cfg = BootstrapConfig(seed=0, d_model=32, num_threads=2, asr_unseen_names=0.0)
    cfg = cfg.quick(asr_epochs=1, hotword_epochs=1, refine_epochs=1)
    main = rows[:16]
    plain = train_seed(main, tmp_path / "plain", cfg, progress=False)
    refined = train_seed(main, tmp_path / "refined", cfg, refine_rows=rows, progress=False)
    phases = {h["phase"]: h for h in refined.history if "utterances" in h}
    assert phases["refine"]["stage"] == "asr"
    assert phases["refine"]["utterances"] == sum(r.split == "train" for r in rows)
    assert "refine" not in {h["phase"] for h in plain.history}
    assert (tmp_path / "refined" / "refine" / "asr" / "last.pt").is_file()
    before = plain.loaded.model.state_dict()
    after = refined.loaded.model.state_dict()
    # the decoder's token embedding feeds only glancing's second pass, off in this stage
    unused = {"decoder.embed.0.weight"}
    for name, _ in refined.loaded.model.named_parameters():
        same = torch.equal(before[name], after[name])
        assert same if is_hotword_param(name) or name in unused else not same, name
    assert refined.loaded.tokenizer.tokens == build_tokenizer(main).tokens
