"""Engines on the shipped ASR seed and spoken clips, built once per test process.

The ONNX graphs of the seed are exported once into a temporary cache (the seed ships
weights only); the torch, float ONNX and int8 ONNX engines are shared by the engine and
hotword-policy tests, which keeps their cost to one export.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from functools import cache, lru_cache
from pathlib import Path

import numpy as np
import pytest

from speechloop.asr.engine import HotwordAsr
from speechloop.context import seed_dir

SEED = seed_dir("asr")
CLIP_TEXTS = ("please call brakovan tonight", "the kitchen door is open again")


def require_seed() -> Path:
    """The seed directory, or skip when it was not trained."""
    if not (SEED / "model.pt").is_file():
        pytest.skip("no shipped ASR seed (run `speechloop bootstrap asr`)")
    return SEED


@lru_cache(maxsize=1)
def export_cache() -> Path:
    """A temporary ONNX export cache, removed at exit."""
    path = Path(tempfile.mkdtemp(prefix="speechloop-engine-test-"))
    atexit.register(shutil.rmtree, path, True)
    return path


@cache
def seed_engine(backend: str) -> HotwordAsr:
    """The seed behind ``backend`` (torch, onnx, onnx-int8), CPU, 2 threads."""
    pytest.importorskip("torch")
    from speechloop.asr.engine import make_asr_engine

    return make_asr_engine(
        require_seed(),
        backend=backend,
        version="seed",
        device="cpu",
        threads=2,
        export_cache=export_cache(),
    )


@lru_cache(maxsize=1)
def spoken_clips() -> tuple[np.ndarray, ...]:
    """Two espeak-ng clips of different lengths (skip when espeak-ng is missing)."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    from speechloop.data.synth.render import synthesize

    return tuple(
        synthesize("espeak", "en-us", "m3", text, 1.0, 0.0).astype(np.float32)
        for text in CLIP_TEXTS
    )
