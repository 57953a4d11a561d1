"""The demo's framework-free pieces (speechloop.demo): the journal, the mislabelling,
the batch with bad rows (ingested for real: exactly the bad rows are quarantined), the
ledger check, the background-process bookkeeping."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from speechloop.config import Settings
from speechloop.context import AppContext
from speechloop.data.ingest import Ingestor, data_dir
from speechloop.data.manifest import Kind
from speechloop.demo.journal import Journal
from speechloop.demo.processes import Background
from speechloop.demo.story import (
    FAULTY,
    OLD_PREFIX,
    LedgerLine,
    drop_faulty_batches,
    ledger_lines,
    ledger_problems,
    mislabel,
)
from speechloop.errors import IntegrityError
from tests.unit.ingest_support import clip, put_batch


@pytest.fixture
def ctx(tmp_path: Path) -> AppContext:
    """A context on a fresh local store."""
    return AppContext(Settings(store=f"file://{tmp_path / 'store'}", work_dir=tmp_path / "work"))


def test_journal_records_steps_and_survives_a_reload(tmp_path: Path) -> None:
    """A recorded step is seen by a new journal on the same file; a corrupt file is an
    IntegrityError that says how to start over."""
    path = tmp_path / "journal.json"
    journal = Journal(path)
    assert journal.empty and journal.done("retrain-asr") is None
    journal.record("retrain-asr", {"result": {"status": "promoted"}})
    again = Journal(path)
    assert again.done("retrain-asr")["result"] == {"status": "promoted"}  # type: ignore[index]
    assert again.when("retrain-asr") and not again.empty
    path.write_text("{not json")
    with pytest.raises(IntegrityError, match="delete it"):
        Journal(path)


def test_mislabel_shifts_every_transcript_to_the_next_clip(ctx: AppContext) -> None:
    """Row i gets row i+1's text and hotwords (the last gets the first's); audio stays."""
    rows = [
        {"id": f"r{i}", "audio": f"a{i}.wav", "text": f"text {i}", "hotwords": [f"h{i}"]}
        for i in range(3)
    ]
    put_batch(ctx.store, "asr", "b1", rows, {f"a{i}.wav": clip() for i in range(3)})
    key = "asr/batches/b1/manifest.jsonl"
    mislabel(ctx.store, "speech-data", key)
    got = [json.loads(line) for line in ctx.store.get_bytes("speech-data", key).splitlines()]
    assert [r["audio"] for r in got] == ["a0.wav", "a1.wav", "a2.wav"]
    assert [r["text"] for r in got] == ["text 1", "text 2", "text 0"]
    assert [r["hotwords"] for r in got] == [["h1"], ["h2"], ["h0"]]


def test_the_faulty_batches_quarantine_exactly_their_bad_rows(ctx: AppContext) -> None:
    """Ingesting the demo's faulty batches keeps the good rows and quarantines the four
    bad ASR rows and the speaker row without a speaker, each with a reason; a second
    drop writes nothing."""
    for kind, label in (("asr", "text"), ("spk", "speaker")):
        rows = [{"id": f"o{i}", "audio": f"o{i}.wav", label: f"label {i}"} for i in range(3)]
        audio = {f"o{i}.wav": clip(1.0, freq=200.0 + 50 * i) for i in range(3)}
        put_batch(ctx.store, kind, f"{OLD_PREFIX}-0001", rows, audio)
    assert drop_faulty_batches(ctx) == ["asr", "spk"]
    assert drop_faulty_batches(ctx) == []
    settings = ctx.settings
    cases: tuple[tuple[Kind, int], ...] = (("asr", 4), ("spk", 1))
    for kind, bad in cases:
        ingestor = Ingestor(ctx.store, "speech-data", data_dir(settings), kind, settings)
        result = ingestor.run("unit", batch_ids=[FAULTY])
        (report,) = [b for b in result.batches if b.batch_id == FAULTY]
        assert (report.good, report.quarantined) == (3, bad), report


def test_ledger_problems_name_what_is_wrong() -> None:
    """Uncommitted, doubled and rows that do not add up are each named; a clean ledger
    has no problem."""
    ok = LedgerLine("asr", "b1", "committed", "run-1", 10, 9, 1)
    assert ledger_problems([ok]) == []
    problems = ledger_problems([
        ok, ok,
        LedgerLine("spk", "b2", "staged", None, None, None, None),
        LedgerLine("spk", "b3", "committed", "run-2", 10, 8, 1),
    ])  # fmt: skip
    assert problems == [
        "asr/b1 listed twice",
        "spk/b2 is staged, not committed",
        "spk/b3: 10 rows in, 8 good + 1 quarantined",
    ]


def test_ledger_lines_of_an_empty_store_are_empty(ctx: AppContext) -> None:
    """No batch, no line (and no error for a store without a data bucket yet)."""
    ctx.store.ensure_bucket("speech-data")
    assert ledger_lines(ctx) == []


def test_background_process_start_health_and_stop(tmp_path: Path) -> None:
    """A started server is found by its pid file, answers its health path, and stop()
    ends its whole process group; a stale pid file means not running."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = Background("http.server", f"http://127.0.0.1:{port}", "/", tmp_path / "log",
                        tmp_path / "pid")  # fmt: skip
    assert server.pid() is None and not server.running()
    cmd = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    server.start(cmd, {"PATH": "/usr/bin:/bin"}, tmp_path)
    try:
        assert server.wait_healthy(30) >= 0
        assert server.running()
    finally:
        assert server.stop()
    assert server.pid() is None and not server.healthy()
    (tmp_path / "pid").write_text("999999\n")
    assert server.pid() is None
