"""Deterministic random streams: one independent generator per (seed, purpose) pair.

Python's ``hash`` is salted per process, so stream names are hashed with sha256; the
same seed and stream name give the same numbers in every process and on every run.
"""

from __future__ import annotations

import hashlib

import numpy as np


def stream_key(*parts: object) -> int:
    """A stable 64-bit integer for a tuple of names and numbers."""
    text = "\x1f".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def rng_for(seed: int, *stream: object) -> np.random.Generator:
    """A generator for ``stream`` under ``seed``, independent of every other stream."""
    return np.random.default_rng(np.random.SeedSequence([seed & 0xFFFFFFFF, stream_key(*stream)]))
