"""Add one deliberately faulty ASR batch and one speaker batch to the configured store (demo).

``make demo`` runs this after generating the synthetic corpus, so that ingestion has
something to quarantine. The ASR batch ``demo-faulty`` holds a few good rows (clips
copied from a generated batch, or plain tones if there is none) and one row of each
common fault: a corrupt audio file, a too-short clip, an empty transcript and a path
escaping the batch. The speaker batch ``demo-faulty`` adds a row without a speaker.

    SPEECHLOOP_STORE=file://... .venv/bin/python scripts/demo_faults.py
"""

from __future__ import annotations

import io
import json

import numpy as np
import soundfile as sf

from speechloop.config import get_settings
from speechloop.storage import open_store
from speechloop.storage.base import ObjectStore

BATCH = "demo-faulty"
Row = dict[str, str]


def tone(seconds: float, freq: float = 220.0, rate: int = 16_000) -> bytes:
    """A plain tone as WAV (stand-in audio when no generated clip is available)."""
    t = np.arange(int(seconds * rate)) / rate
    buf = io.BytesIO()
    sf.write(buf, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), rate, format="WAV")
    return buf.getvalue()


def borrowed_rows(store: ObjectStore, bucket: str, kind: str, n: int) -> list[tuple[Row, bytes]]:
    """Up to ``n`` rows and their audio from the first generated batch of ``kind``."""
    head = f"{kind}/batches/"
    for info in store.list(bucket, head):
        if info.key.endswith("/manifest.jsonl") and f"/{BATCH}/" not in info.key:
            prefix = info.key.rsplit("/", 1)[0]
            lines = store.get_bytes(bucket, info.key).decode().splitlines()[:n]
            rows = [json.loads(line) for line in lines if line.strip()]
            return [(row, store.get_bytes(bucket, f"{prefix}/{row['audio']}")) for row in rows]
    return []


def put(
    store: ObjectStore, bucket: str, kind: str, rows: list[dict], audio: dict[str, bytes]
) -> None:
    """Upload like a producer: audio first, manifest last."""
    for name, data in audio.items():
        store.put_bytes(bucket, f"{kind}/batches/{BATCH}/{name}", data)
    manifest = "".join(json.dumps(row) + "\n" for row in rows).encode()
    store.put_bytes(bucket, f"{kind}/batches/{BATCH}/manifest.jsonl", manifest)


def asr_batch(store: ObjectStore, bucket: str) -> None:
    """Three good rows, then one row per fault."""
    good = borrowed_rows(store, bucket, "asr", 3) or [
        ({"text": f"a plain tone number {i}"}, tone(1.0, 200.0 + 40 * i)) for i in range(3)
    ]
    rows: list[Row] = []
    audio: dict[str, bytes] = {}
    for i, (row, data) in enumerate(good):
        rows.append({"id": f"faulty-ok-{i}", "audio": f"ok-{i}.wav", "text": row["text"]})
        audio[f"ok-{i}.wav"] = data
    clip = good[0][1]
    audio["corrupt.wav"] = clip[:20] + b"\xff" * 16 + clip[36:]
    audio["short.wav"] = tone(0.12)
    rows += [
        {"id": "faulty-corrupt", "audio": "corrupt.wav", "text": "a corrupt file"},
        {"id": "faulty-short", "audio": "short.wav", "text": "far too short"},
        {"id": "faulty-empty", "audio": "ok-0.wav", "text": "   "},
        {"id": "faulty-escape", "audio": "../../spk/batches/secret.wav", "text": "sneaky"},
    ]
    put(store, bucket, "asr", rows, audio)


def spk_batch(store: ObjectStore, bucket: str) -> None:
    """Two good rows and one without a speaker."""
    good = borrowed_rows(store, bucket, "spk", 2) or [
        ({"speaker": "tone-a"}, tone(1.0, 180.0)),
        ({"speaker": "tone-b"}, tone(1.0, 260.0)),
    ]
    rows = [
        {"id": f"faulty-ok-{i}", "audio": f"ok-{i}.wav", "speaker": row["speaker"]}
        for i, (row, _) in enumerate(good)
    ]
    audio = {f"ok-{i}.wav": data for i, (_, data) in enumerate(good)}
    rows.append({"id": "faulty-nospeaker", "audio": "ok-0.wav", "speaker": ""})
    put(store, bucket, "spk", rows, audio)


def main() -> None:
    """Write both faulty batches into the configured store's data bucket."""
    settings = get_settings()
    store = open_store(settings)
    store.ensure_bucket(settings.data_bucket)
    asr_batch(store, settings.data_bucket)
    spk_batch(store, settings.data_bucket)
    print(f"added batch {BATCH!r} (asr: 4 faulty rows, spk: 1) to {settings.data_bucket}")


if __name__ == "__main__":
    main()
