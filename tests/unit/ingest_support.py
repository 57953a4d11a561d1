"""Helpers for the ingestion tests: small audio clips and batches written into a store."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import soundfile as sf

from speechloop.storage.base import ObjectStore

BUCKET = "speech-data"


def clip(
    seconds: float = 0.5,
    rate: int = 16_000,
    channels: int = 1,
    fmt: str = "WAV",
    freq: float = 220.0,
) -> bytes:
    """A tone of ``seconds`` encoded as ``fmt`` (WAV, FLAC, MP3, OGG) at ``rate``."""
    t = np.arange(int(seconds * rate)) / rate
    tone = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    data = np.stack([tone] * channels, axis=1) if channels > 1 else tone
    buf = io.BytesIO()
    sf.write(buf, data, rate, format=fmt)
    return buf.getvalue()


def manifest_bytes(rows: Sequence[dict[str, Any] | str]) -> bytes:
    """JSON lines of ``rows``; a str row is written verbatim (for malformed lines)."""
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    return ("\n".join(lines) + "\n").encode()


def put_batch(
    store: ObjectStore,
    kind: str,
    batch_id: str,
    rows: Sequence[dict[str, Any] | str],
    audio: dict[str, bytes],
    bucket: str = BUCKET,
) -> None:
    """Upload a batch the way producers do: audio first, manifest last."""
    store.ensure_bucket(bucket)
    for name, data in audio.items():
        store.put_bytes(bucket, f"{kind}/batches/{batch_id}/{name}", data)
    store.put_bytes(bucket, f"{kind}/batches/{batch_id}/manifest.jsonl", manifest_bytes(rows))


def good_asr_batch(store: ObjectStore, batch_id: str, n: int = 3, bucket: str = BUCKET) -> None:
    """A clean ASR batch of ``n`` half-second clips, ids ``<batch>-u<i>``."""
    rows = [
        {"id": f"{batch_id}-u{i}", "audio": f"u{i}.wav", "text": f"hello number {i}"}
        for i in range(n)
    ]
    audio = {f"u{i}.wav": clip(0.5, freq=200.0 + 10 * i) for i in range(n)}
    put_batch(store, "asr", batch_id, rows, audio, bucket)
