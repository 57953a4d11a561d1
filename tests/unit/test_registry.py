"""The model registry on a LocalStore: immutable versions, verified fetch and promotion,
rollback, history, and racing promoters (threads and processes)."""

from __future__ import annotations

import json
import multiprocessing as mp
import re
import threading
from pathlib import Path
from typing import Any

import pytest

from speechloop.errors import Conflict, IntegrityError, InvalidInput, NotFound
from speechloop.registry import ModelRegistry
from speechloop.storage.local import LocalStore

BUCKET = "speech-models"


def make_model(root: Path, seed: int) -> Path:
    """A tiny model directory with a nested file; contents differ by seed."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "model.pt").write_bytes(bytes([seed % 256]) * 2048)
    (root / "config.yaml").write_text(f"seed: {seed}\n")
    (root / "sub").mkdir(exist_ok=True)
    (root / "sub" / "tokens.json").write_text(json.dumps(["a", "b", str(seed)]))
    return root


@pytest.fixture
def reg(tmp_path: Path) -> ModelRegistry:
    store = LocalStore(tmp_path / "store")
    store.ensure_bucket(BUCKET)
    return ModelRegistry(store, BUCKET)


def publish(reg: ModelRegistry, tmp_path: Path, seed: int, version: str | None = None) -> str:
    src = make_model(tmp_path / f"src{seed}", seed)
    info = reg.publish(
        "asr",
        src,
        metrics={"acc": 0.9 + seed / 1000},
        lineage={"parent": None, "data_batches": [f"b{seed}"]},
        version=version,
    )
    return info.version


def tamper(reg: ModelRegistry, version: str, rel: str = "model.pt") -> None:
    """Change a stored model file's bytes on disk, behind the store."""
    assert isinstance(reg.store, LocalStore)
    path = reg.store.root / BUCKET / f"asr/versions/{version}/files/{rel}"
    path.write_bytes(b"tampered")


def test_publish_writes_manifest_metrics_lineage(reg: ModelRegistry, tmp_path: Path) -> None:
    """A published version lists, and shows every file's sha256, its metrics and lineage."""
    version = publish(reg, tmp_path, 1)
    assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{6}", version)
    assert reg.list_versions("asr") == [version] and reg.list_versions("spk") == []
    info = reg.show("asr", version)
    assert sorted(info.files) == ["config.yaml", "model.pt", "sub/tokens.json"]
    assert info.files["model.pt"]["size"] == 2048 and len(info.files["model.pt"]["sha256"]) == 64
    assert info.metrics == {"acc": 0.901}
    assert info.lineage["data_batches"] == ["b1"] and info.lineage["parent"] is None
    assert info.lineage["code_version"] and "training_config" in info.lineage
    assert info.manifest["kind"] == "asr" and info.created_at


def test_incomplete_version_is_invisible(reg: ModelRegistry, tmp_path: Path) -> None:
    """Files without a manifest (an interrupted publish) are not a version."""
    reg.store.put_bytes(BUCKET, "asr/versions/half/files/model.pt", b"x")
    assert reg.list_versions("asr") == []
    with pytest.raises(NotFound, match="asr/half"):
        reg.show("asr", "half")


def test_version_never_overwritten(reg: ModelRegistry, tmp_path: Path) -> None:
    """Publishing an existing version is a Conflict and leaves the original intact."""
    publish(reg, tmp_path, 1, version="v1")
    before = reg.show("asr", "v1").files
    with pytest.raises(Conflict, match="v1"):
        publish(reg, tmp_path, 2, version="v1")
    assert reg.show("asr", "v1").files == before


def test_bad_kind_version_and_source_rejected(reg: ModelRegistry, tmp_path: Path) -> None:
    """Unknown kinds, unsafe version names and empty model directories are InvalidInput."""
    src = make_model(tmp_path / "m", 1)
    with pytest.raises(InvalidInput, match="tts"):
        reg.publish("tts", src, metrics={}, lineage={})
    with pytest.raises(InvalidInput, match=r"\.\./x"):
        reg.publish("asr", src, metrics={}, lineage={}, version="../x")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInput, match="no files"):
        reg.publish("asr", tmp_path / "empty", metrics={}, lineage={})


def test_fetch_verifies_and_caches(reg: ModelRegistry, tmp_path: Path) -> None:
    """fetch writes the files; a second fetch keeps intact local copies and repairs bad ones."""
    version = publish(reg, tmp_path, 3)
    dest = reg.fetch("asr", version, tmp_path / "cache")
    assert (dest / "sub" / "tokens.json").read_text() == json.dumps(["a", "b", "3"])
    stamp = (dest / "model.pt").stat().st_mtime_ns
    (dest / "config.yaml").write_text("corrupted locally")
    reg.fetch("asr", version, dest)
    assert (dest / "model.pt").stat().st_mtime_ns == stamp  # not downloaded again
    assert (dest / "config.yaml").read_text() == "seed: 3\n"  # repaired


def test_tampered_artifact_refused_on_fetch_and_promote(reg: ModelRegistry, tmp_path: Path) -> None:
    """Bytes changed in the store fail fetch and promote with IntegrityError naming the
    file; production stays where it was."""
    good, bad = publish(reg, tmp_path, 1), publish(reg, tmp_path, 2)
    reg.promote("asr", good, reason="first")
    tamper(reg, bad)
    with pytest.raises(IntegrityError, match=r"model\.pt"):
        reg.fetch("asr", bad, tmp_path / "dl")
    assert not (tmp_path / "dl" / "model.pt").exists()
    with pytest.raises(IntegrityError, match=r"model\.pt"):
        reg.promote("asr", bad, reason="should fail")
    production = reg.get_alias("asr", "production")
    assert production is not None and production.version == good
    assert [r["version"] for r in reg.history("asr")] == [good]


def test_consistently_replaced_file_caught_by_manifest(reg: ModelRegistry, tmp_path: Path) -> None:
    """A file rewritten through the store (its own checksum record consistent) still
    fails against the version manifest."""
    version = publish(reg, tmp_path, 1)
    reg.store.put_bytes(BUCKET, f"asr/versions/{version}/files/config.yaml", b"seed: 666\n")
    with pytest.raises(IntegrityError, match=r"config\.yaml.*manifest"):
        reg.verify("asr", version)


def test_promote_sets_previous_mirror_and_history(reg: ModelRegistry, tmp_path: Path) -> None:
    """Promoting twice: production is the second, previous the first, both in history."""
    v1, v2 = publish(reg, tmp_path, 1), publish(reg, tmp_path, 2)
    assert reg.get_alias("asr", "production") is None
    reg.promote("asr", v1, reason="first model", decision={"acc": 0.9})
    alias = reg.promote("asr", v2, reason="better", decision={"delta": 0.01})
    assert alias.version == v2 and alias.reason == "better"
    previous = reg.get_alias("asr", "previous")
    assert previous is not None and previous.version == v1 and previous.reason == "first model"
    mirror = json.loads(reg.store.get_bytes(BUCKET, "asr/aliases/previous"))
    assert mirror["version"] == v1
    hist = reg.history("asr")
    assert [(h["action"], h["version"], h["from_version"]) for h in hist] == [
        ("promote", v1, None),
        ("promote", v2, v1),
    ]
    assert hist[1]["decision"] == {"delta": 0.01} and hist[1]["reason"] == "better"
    assert all(h["ts"] for h in hist)
    with pytest.raises(Conflict, match="already in production"):
        reg.promote("asr", v2, reason="again")


def test_reject_only_records(reg: ModelRegistry, tmp_path: Path) -> None:
    """A rejection goes to history with its decision and moves no alias."""
    v1, v2 = publish(reg, tmp_path, 1), publish(reg, tmp_path, 2)
    reg.promote("asr", v1, reason="first")
    reg.reject("asr", v2, reason="CER worse", decision={"cer_delta": 0.02})
    assert reg.get_alias("asr", "production").version == v1  # type: ignore[union-attr]
    last = reg.history("asr")[-1]
    assert (last["action"], last["version"], last["from_version"]) == ("reject", v2, v1)
    assert last["decision"] == {"cer_delta": 0.02}


def test_rollback_to_previous_and_to_named(reg: ModelRegistry, tmp_path: Path) -> None:
    """Rollback swaps production and previous; a named target is verified and used."""
    v1, v2, v3 = (publish(reg, tmp_path, i) for i in (1, 2, 3))
    with pytest.raises(NotFound, match="no production"):
        reg.rollback("asr", reason="nothing yet")
    reg.promote("asr", v1, reason="first")
    with pytest.raises(NotFound, match="no previous version"):
        reg.rollback("asr", reason="no previous")
    reg.promote("asr", v2, reason="second")
    assert reg.rollback("asr", reason="v2 regressed").version == v1
    assert reg.get_alias("asr", "previous").version == v2  # type: ignore[union-attr]
    assert reg.rollback("asr", to_version=v3, reason="jump").version == v3
    assert reg.get_alias("asr", "previous").version == v1  # type: ignore[union-attr]
    with pytest.raises(NotFound, match="nope"):
        reg.rollback("asr", to_version="nope", reason="missing")
    tamper(reg, v2)
    with pytest.raises(IntegrityError):
        reg.rollback("asr", to_version=v2, reason="tampered")
    hist = [(h["action"], h["version"], h["from_version"]) for h in reg.history("asr")]
    assert hist[2:] == [("rollback", v1, v2), ("rollback", v3, v1)]
    assert json.loads(reg.store.get_bytes(BUCKET, "asr/aliases/previous"))["version"] == v1


def assert_consistent(reg: ModelRegistry, kind: str, promoted: set[str]) -> None:
    """After racing promotions: one history record per promotion, forming one chain in
    commit order (each line replaces the one before it, seq 1, 2, ...), ending at
    production, with previous = the version production replaced, and the mirror equal
    to it; the stored log holds every line."""
    full = reg.history(kind)
    assert [h["seq"] for h in full] == list(range(1, len(full) + 1))
    hist = [h for h in full if h["action"] == "promote"]
    assert sorted(h["version"] for h in hist) == sorted(promoted)
    froms = [h["from_version"] for h in hist]
    assert froms == [None] + [h["version"] for h in hist[:-1]]
    stored = reg.store.get_bytes(reg.bucket, f"{kind}/history.jsonl").decode().splitlines()
    assert len(stored) == len(full)
    assert froms.count(None) == 1 and len(set(froms)) == len(froms)
    assert set(froms) - {None} <= promoted
    production = reg.get_alias(kind, "production")
    previous = reg.get_alias(kind, "previous")
    assert production is not None and previous is not None
    assert production.version in promoted and production.version not in froms
    by_version = {h["version"]: h["from_version"] for h in hist}
    assert previous.version == by_version[production.version]
    mirror = json.loads(reg.store.get_bytes(reg.bucket, f"{kind}/aliases/previous"))
    assert mirror["version"] == previous.version


def race_threads(reg: ModelRegistry, versions: list[str]) -> None:
    """Promote every version from its own thread, all released at once."""
    barrier = threading.Barrier(len(versions))
    errors: list[Exception] = []

    def run(version: str) -> None:
        barrier.wait()
        try:
            reg.promote("asr", version, reason=f"race {version}")
        except Exception as exc:  # noqa: BLE001 - re-raised in the test thread below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(v,)) for v in versions]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []


def test_racing_promoters_threads(reg: ModelRegistry, tmp_path: Path) -> None:
    """Eight threads promoting eight versions at once leave a consistent chain."""
    versions = [publish(reg, tmp_path, i) for i in range(8)]
    race_threads(reg, versions)
    assert_consistent(reg, "asr", set(versions))


def _promote_in_process(root: str, versions: list[str], barrier: Any, out: Any) -> None:
    reg = ModelRegistry(LocalStore(Path(root)), BUCKET)
    barrier.wait()
    for version in versions:
        reg.promote("asr", version, reason=f"proc {version}")
    out.put(len(versions))


def test_racing_promoters_processes(reg: ModelRegistry, tmp_path: Path) -> None:
    """Three processes promoting three versions each, concurrently, leave a consistent chain."""
    assert isinstance(reg.store, LocalStore)
    versions = [publish(reg, tmp_path, i) for i in range(9)]
    ctx = mp.get_context("spawn")  # a fresh interpreter: no state inherited from earlier tests
    barrier, out = ctx.Barrier(3), ctx.Queue()
    procs = [
        ctx.Process(
            target=_promote_in_process,
            args=(str(reg.store.root), versions[i::3], barrier, out),
        )
        for i in range(3)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=60)
    assert [proc.exitcode for proc in procs] == [0, 0, 0]
    assert sum(out.get(timeout=5) for _ in procs) == 9
    assert_consistent(reg, "asr", set(versions))


def test_first_publication_creates_the_models_bucket(tmp_path: Path) -> None:
    """Publishing into a store without the models bucket creates it, then lists the version."""
    reg = ModelRegistry(LocalStore(tmp_path / "fresh"), BUCKET)
    version = publish(reg, tmp_path, seed=3)
    assert reg.list_versions("asr") == [version]
