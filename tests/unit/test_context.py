"""The composition root's model resolution: pinned -> production -> seed (only on an
empty registry), and failures that raise naming why instead of falling back."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from speechloop.config import Settings
from speechloop.context import AppContext, ResolvedModel, build_context, seed_dir
from speechloop.errors import (
    IntegrityError,
    InvalidInput,
    ModelUnavailable,
    NotFound,
    StoreError,
)
from speechloop.storage.local import LocalStore

BUCKET = "speech-models"


def _settings(tmp_path: Path, asr_version: str | None = None) -> Settings:
    settings = Settings(store=f"file://{tmp_path / 'store'}", work_dir=tmp_path / "work")
    return settings.model_copy(update={"asr_version": asr_version}) if asr_version else settings


@pytest.fixture
def ctx(tmp_path: Path) -> AppContext:
    return build_context(_settings(tmp_path))


def _publish(ctx: AppContext, tmp_path: Path, tag: str, *, promote: bool = False) -> str:
    """A small fake model version (resolution fetches files; it does not load them)."""
    src = tmp_path / f"src-{tag}"
    src.mkdir()
    (src / "model.pt").write_bytes(tag.encode() * 512)
    (src / "config.yaml").write_text(f"tag: {tag}\n")
    version = ctx.registry.publish("asr", src, metrics={"acc": 0.5}, lineage={}).version
    if promote:
        ctx.registry.promote("asr", version, reason="test")
    return version


def _tamper(ctx: AppContext, version: str) -> None:
    """Change a stored file's bytes behind the store's back."""
    assert isinstance(ctx.store, LocalStore)
    (ctx.store.root / BUCKET / f"asr/versions/{version}/files/model.pt").write_bytes(b"evil")


def test_empty_registry_resolves_to_the_seed(ctx: AppContext) -> None:
    """No version of the kind at all (not even a models bucket): the shipped seed, named
    as such."""
    for kind in ("asr", "spk"):
        got = ctx.resolve_model(kind)
        assert got == ResolvedModel(kind, "seed", seed_dir(kind), "seed")


def test_production_alias_is_fetched_verified_into_the_layout(
    ctx: AppContext, tmp_path: Path
) -> None:
    """With a production alias the version is fetched into models/<kind>/<version>; a
    local copy changed on disk is restored from the store on the next resolution."""
    version = _publish(ctx, tmp_path, "v1", promote=True)
    got = ctx.resolve_model("asr")
    assert got.source == "production" and got.version == version
    assert got.directory == ctx.layout.model_dir("asr", version)
    assert (got.directory / "model.pt").read_bytes() == b"v1" * 512
    (got.directory / "model.pt").write_bytes(b"changed locally")
    assert (ctx.resolve_model("asr").directory / "model.pt").read_bytes() == b"v1" * 512


def test_pins_beat_the_alias(
    ctx: AppContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ref, or the settings pin (SPEECHLOOP_ASR_VERSION), wins over production; 'seed'
    names the shipped seed even when the registry has versions; 'previous' is an alias."""
    v1 = _publish(ctx, tmp_path, "v1", promote=True)
    v2 = _publish(ctx, tmp_path, "v2", promote=True)
    assert ctx.resolve_model("asr").version == v2
    assert ctx.resolve_model("asr", v1) == ResolvedModel(
        "asr", v1, ctx.layout.model_dir("asr", v1), "pinned"
    )
    assert ctx.resolve_model("asr", "previous").source == "previous"
    assert ctx.resolve_model("asr", "seed").source == "seed"
    monkeypatch.setenv("SPEECHLOOP_ASR_VERSION", v1)
    pinned = build_context(_settings(tmp_path))
    assert pinned.resolve_model("asr").version == v1
    assert pinned.resolve_model("asr").source == "pinned"
    assert build_context(_settings(tmp_path, asr_version="seed")).resolve_model("asr").source == (
        "seed"
    )


def test_versions_without_production_are_not_a_reason_for_the_seed(
    ctx: AppContext, tmp_path: Path
) -> None:
    """The registry has a version but nothing promoted: an error telling what to do."""
    _publish(ctx, tmp_path, "v1")
    with pytest.raises(ModelUnavailable, match=r"no production alias.*'seed'"):
        ctx.resolve_model("asr")


def test_alias_pointing_at_a_corrupt_version_raises_integrity_error(
    ctx: AppContext, tmp_path: Path
) -> None:
    """Production names a version whose file was changed in the store: IntegrityError
    naming the file and the step, never the seed."""
    version = _publish(ctx, tmp_path, "v1", promote=True)
    _tamper(ctx, version)
    with pytest.raises(IntegrityError, match=rf"production version {version}.*model\.pt"):
        ctx.resolve_model("asr")


def test_unreadable_or_dangling_alias_raises(ctx: AppContext) -> None:
    """An alias that is not JSON is an IntegrityError; one naming a missing version is
    ModelUnavailable naming it."""
    ctx.store.ensure_bucket(BUCKET)
    ctx.store.put_bytes(BUCKET, "asr/aliases/production", b"{not json")
    with pytest.raises(IntegrityError, match="reading the production alias"):
        ctx.resolve_model("asr")
    ctx.store.put_bytes(BUCKET, "asr/aliases/production", b'{"version": "20990101-000000-abcdef"}')
    with pytest.raises(ModelUnavailable, match="20990101-000000-abcdef"):
        ctx.resolve_model("asr")


def test_missing_pinned_version_is_not_found(ctx: AppContext, tmp_path: Path) -> None:
    """A pinned version that does not exist is NotFound naming it."""
    _publish(ctx, tmp_path, "v1", promote=True)
    with pytest.raises(NotFound, match="asr/20990101-000000-abcdef"):
        ctx.resolve_model("asr", "20990101-000000-abcdef")


def _dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_store_down_raises_store_error(tmp_path: Path) -> None:
    """An S3 endpoint nobody listens on: StoreError naming the step, not the seed."""
    settings = Settings(
        store="s3://",
        s3_endpoint=f"127.0.0.1:{_dead_port()}",
        store_retries=0,
        work_dir=tmp_path / "work",
    )
    with pytest.raises(StoreError, match="reading the production alias"):
        build_context(settings).resolve_model("spk")


def test_local_directory_and_bad_kind(ctx: AppContext, tmp_path: Path) -> None:
    """model_dir wins and is labelled local; a missing one and an unknown kind are refused."""
    assert ctx.resolve_model("asr", model_dir=tmp_path) == ResolvedModel(
        "asr", "local", tmp_path, "local"
    )
    with pytest.raises(ModelUnavailable, match="does not exist"):
        ctx.resolve_model("asr", model_dir=tmp_path / "nope")
    with pytest.raises(InvalidInput, match="unknown model kind 'tts'"):
        ctx.resolve_model("tts")


def test_layout_and_lazy_parts(ctx: AppContext, tmp_path: Path) -> None:
    """One work-directory layout; the store is not opened until something needs it."""
    assert "store" not in vars(ctx)
    root = tmp_path / "work"
    assert ctx.layout.model_dir("spk", "v") == root / "models" / "spk" / "v"
    assert ctx.layout.exports("asr") == root / "onnx"
    assert ctx.layout.run_dir("r1") == root / "runs" / "r1"
    assert ctx.voiceprints.store is ctx.store is ctx.registry.store


def test_speaker_embedder_is_labelled_with_the_resolved_version(ctx: AppContext) -> None:
    """The seed's embedder says "seed"; a local directory keeps its config's version."""
    pytest.importorskip("torch")
    if not (seed_dir("spk") / "model.pt").is_file():
        pytest.skip("no shipped speaker seed")
    assert ctx.speaker_embedder(onnx=False).version == "seed"
    local = ctx.speaker_embedder(onnx=False, model_dir=seed_dir("spk"))
    assert local.version == json.loads((seed_dir("spk") / "config.json").read_text())["version"]


def test_cli_fails_naming_why_instead_of_using_the_seed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`asr transcribe` and `spk embed` with an unreadable production alias exit non-zero
    with one error line naming the alias (finding 5: no quiet seed)."""
    from speechloop.cli.main import app

    store = LocalStore(tmp_path / "store")
    store.ensure_bucket(BUCKET)
    for kind in ("asr", "spk"):
        store.put_bytes(BUCKET, f"{kind}/aliases/production", b"garbage")
    monkeypatch.setenv("SPEECHLOOP_STORE", f"file://{tmp_path / 'store'}")
    monkeypatch.setenv("SPEECHLOOP_WORK_DIR", str(tmp_path / "work"))
    clip = tmp_path / "clip.wav"
    for args in (["asr", "transcribe", str(clip)], ["spk", "embed", str(clip)]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code != 0, result.output
        assert "production alias" in result.output and "not JSON" in result.output


def test_a_server_can_refuse_to_export(ctx: AppContext) -> None:
    """With allow_export=False a model without ONNX graphs (the shipped seed) is refused,
    naming what is missing, instead of being exported."""
    with pytest.raises(NotFound, match="carries no ONNX graphs"):
        ctx.asr_engine("seed", backend="onnx", allow_export=False)
    with pytest.raises(ModelUnavailable, match="carries no ONNX graph"):
        ctx.speaker_embedder("seed", onnx=True, allow_export=False)
    assert not ctx.layout.asr_exports.exists() and not ctx.layout.spk_exports.exists()
