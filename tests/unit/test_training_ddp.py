"""The fine-tunes under torch DDP: ``torchrun`` with 2 CPU processes (gloo) vs one process.

Real processes: ``torchrun --standalone --nproc_per_node=2`` runs
:mod:`tests.unit.ddp_worker` (a tiny ASR stage, a tiny speaker training); the same
module runs once more as a single process. Two processes split every global batch
between them, so the figures are close but not bit-equal (each computes its share's
loss; batch norm sees half a batch): the test bounds the differences by a small share
of what training changed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[2]


def _run(cmd: list[str], cwd: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_two_processes_reach_the_figures_of_one(tmp_path: Path):
    """Both ranks end with identical weights (gradients are synchronised), and the
    2-process run's losses and EER match the single process within tolerance."""
    torchrun = Path(sys.executable).parent / "torchrun"
    if shutil.which("espeak-ng") is None or not torchrun.is_file():
        pytest.skip("needs espeak-ng and torchrun")
    from tests.unit.spk_support import tiny_spk_corpus

    rows = tiny_spk_corpus(tmp_path / "corpus", per_batch=40).train
    rows_file = tmp_path / "rows.json"
    rows_file.write_text(json.dumps([
        {"id": r.id, "audio": str(r.audio), "speaker": r.speaker, "duration_s": r.duration_s}
        for r in rows
    ]))  # fmt: skip
    worker = ["-m", "tests.unit.ddp_worker"]
    _run([sys.executable, *worker, str(tmp_path / "one.json"), str(rows_file)], ROOT)
    _run([str(torchrun), "--standalone", "--nproc_per_node=2", *worker,
          str(tmp_path / "two.json"), str(rows_file)], ROOT)  # fmt: skip
    one = json.loads((tmp_path / "one.json").read_text())
    two = json.loads((tmp_path / "two.json").read_text())
    assert (one["world"], two["world"]) == (1, 2)

    for name in ("asr", "spk"):
        r0 = torch.load(tmp_path / "world-2-rank-0" / f"{name}.pt")
        r1 = torch.load(tmp_path / "world-2-rank-1" / f"{name}.pt")
        assert all(torch.equal(r0[k], r1[k]) for k in r0), name

    learned = one["asr_init_loss"] - one["asr_loss"]
    assert learned > 0.3
    assert abs(two["asr_loss"] - one["asr_loss"]) < 0.1 * learned
    for a, b in zip(one["asr_train_losses"], two["asr_train_losses"], strict=True):
        assert b == pytest.approx(a, rel=0.05)

    fell = one["spk_losses"][0] - one["spk_losses"][-1]
    assert fell > 1.0
    assert abs(two["spk_losses"][-1] - one["spk_losses"][-1]) < 0.1 * fell
    assert two["spk_valid_eer"] == pytest.approx(one["spk_valid_eer"], abs=0.1)
