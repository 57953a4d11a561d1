"""``speechloop models list|show|promote|rollback`` against a LocalStore named by
SPEECHLOOP_STORE (a file:// URL in a temp dir)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from speechloop.cli.main import app
from speechloop.config import get_settings
from speechloop.registry import ModelRegistry
from speechloop.storage import open_store
from tests.unit.test_registry import make_model

runner = CliRunner()


@pytest.fixture
def reg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModelRegistry]:
    """A registry in a temp local store that the CLI also reads (settings cache cleared)."""
    monkeypatch.setenv("SPEECHLOOP_STORE", f"file://{tmp_path / 'store'}")
    monkeypatch.setenv("SPEECHLOOP_MODELS_BUCKET", "speech-models")
    get_settings.cache_clear()
    store = open_store(get_settings())
    store.ensure_bucket("speech-models")
    yield ModelRegistry(store, "speech-models")
    get_settings.cache_clear()


def _publish(reg: ModelRegistry, tmp_path: Path, seed: int, kind: str = "asr") -> str:
    src = make_model(tmp_path / f"src-{kind}-{seed}", seed)
    return reg.publish(kind, src, metrics={"acc": 0.5 + seed / 10}, lineage={}).version


def test_list_show_promote_rollback(reg: ModelRegistry, tmp_path: Path) -> None:
    """The four commands drive the registry and print what they did."""
    v1, v2 = _publish(reg, tmp_path, 1), _publish(reg, tmp_path, 2)
    s1 = _publish(reg, tmp_path, 3, kind="spk")

    out = runner.invoke(app, ["models", "promote", "asr", v1, "--reason", "first"])
    assert out.exit_code == 0, out.output
    assert f"production -> {v1}" in out.output
    out = runner.invoke(app, ["models", "promote", "asr", v2, "--reason", "better"])
    assert out.exit_code == 0 and f"(previous: {v1})" in out.output

    out = runner.invoke(app, ["models", "list"], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    assert v1 in out.output and v2 in out.output and s1 in out.output
    assert "production" in out.output and "previous" in out.output and "acc=0.7" in out.output
    out = runner.invoke(app, ["models", "list", "spk"], env={"COLUMNS": "200"})
    assert s1 in out.output and v1 not in out.output

    out = runner.invoke(app, ["models", "show", "asr", v1], env={"COLUMNS": "200"})
    assert out.exit_code == 0 and "sub/tokens.json" in out.output and '"acc": 0.6' in out.output

    out = runner.invoke(app, ["models", "show", "asr", "previous"], env={"COLUMNS": "200"})
    assert out.exit_code == 0 and f"asr/{v1}" in out.output

    out = runner.invoke(app, ["models", "rollback", "asr", "--reason", "regressed"])
    assert out.exit_code == 0 and f"rolled back -> {v1}" in out.output
    assert reg.get_alias("asr", "production").version == v1  # type: ignore[union-attr]
    out = runner.invoke(app, ["models", "rollback", "asr", "--to", v2, "--reason", "again"])
    assert out.exit_code == 0 and f"-> {v2}" in out.output
    assert [h["action"] for h in reg.history("asr")] == [
        "promote",
        "promote",
        "rollback",
        "rollback",
    ]


def test_errors_are_one_line_without_traceback(reg: ModelRegistry, tmp_path: Path) -> None:
    """Unknown versions, a rollback with nothing to go back to and a missing reason exit
    non-zero with one readable line, no traceback."""
    out = runner.invoke(app, ["models", "show", "asr", "nope"])
    assert out.exit_code == 1 and "asr/nope does not exist" in out.output
    assert "Traceback" not in out.output and len(out.output.strip().splitlines()) == 1
    assert out.exception is None or isinstance(out.exception, SystemExit)
    out = runner.invoke(app, ["models", "rollback", "spk", "--reason", "x"])
    assert out.exit_code == 1 and "no production version" in out.output
    out = runner.invoke(app, ["models", "promote", "asr", "v9"])
    assert out.exit_code == 2  # typer: missing --reason
    out = runner.invoke(app, ["models", "promote", "tts", "v9", "--reason", "x"])
    assert out.exit_code == 2


def test_list_on_empty_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a fresh store (no models bucket yet) list says there is nothing, exit 0."""
    monkeypatch.setenv("SPEECHLOOP_STORE", f"file://{tmp_path / 'fresh'}")
    get_settings.cache_clear()
    try:
        out = runner.invoke(app, ["models", "list"])
    finally:
        get_settings.cache_clear()
    assert out.exit_code == 0 and "no model versions" in out.output


def test_verify_and_repair(reg: ModelRegistry, tmp_path: Path) -> None:
    """verify exits 0 on a healthy registry and 1 naming each problem; repair fixes the
    mirror and the history line, prunes a half-published version only with --prune,
    and exits 1 while something is left."""
    v1, v2 = _publish(reg, tmp_path, 1), _publish(reg, tmp_path, 2)
    reg.promote("asr", v1, reason="first")
    reg.promote("asr", v2, reason="second")
    out = runner.invoke(app, ["models", "verify"], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    assert f"asr: 2 version(s) verified; production {v2}, previous {v1}" in out.output
    assert "spk: 0 version(s) verified" in out.output

    reg.store.delete("speech-models", "asr/aliases/previous")
    history = reg.store.get_bytes("speech-models", "asr/history.jsonl").splitlines(True)
    reg.store.put_bytes("speech-models", "asr/history.jsonl", history[0])
    reg.store.put_bytes("speech-models", "asr/versions/half/files/model.pt", b"x")
    out = runner.invoke(app, ["models", "verify", "asr"], env={"COLUMNS": "200"})
    assert out.exit_code == 1
    for text in ("asr/aliases/previous", "misses the last change", "asr/versions/half"):
        assert text in out.output

    out = runner.invoke(app, ["models", "repair", "asr"], env={"COLUMNS": "200"})
    assert out.exit_code == 1 and "not fixed asr/versions/half" in out.output
    assert "fixed asr/aliases/previous: rewritten from production" in out.output
    assert "appended the last change" in out.output
    out = runner.invoke(app, ["models", "repair", "--prune"], env={"COLUMNS": "200"})
    assert out.exit_code == 0 and "deleted 1 object(s)" in out.output
    assert "spk: nothing to repair" in out.output
    out = runner.invoke(app, ["models", "verify", "asr", "--version", v1])
    assert out.exit_code == 0 and "1 version(s) verified" in out.output
    assert [h["version"] for h in reg.history("asr")] == [v1, v2]


def test_verify_errors(reg: ModelRegistry) -> None:
    """--version without a kind, or of a missing version, is one error line, exit 1."""
    out = runner.invoke(app, ["models", "verify", "--version", "v1"])
    assert out.exit_code == 1 and "--version needs a KIND" in out.output
    out = runner.invoke(app, ["models", "verify", "asr", "--version", "v1"])
    assert out.exit_code == 1 and "asr/v1 does not exist" in out.output
    assert "Traceback" not in out.output
