"""The ``speechloop`` command against a dead, paused or misnamed store, and an unreadable
production alias (issue 12, findings 5, 6, 7 and 8), each as a real process.

- No silent seed fallback (finding 5): ``asr transcribe`` and ``spk embed`` fail naming
  why when the store is unreachable or the production alias unreadable; they print no
  result and no seed label. Resolution itself is checked on :class:`AppContext`: the seed
  only for an empty registry, a store fault is an error naming the step.
- Fail fast, once (findings 6 and 8): ``data ingest`` on a dead store, or a paused one
  with small timeouts from the environment, exits 1 with exactly one ``error:`` line (no
  retry warnings, no traceback) naming the endpoint.
- A validated endpoint (finding 7): ``http://host:port`` works; with a path it is one
  clear line naming the setting.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from speechloop.config import Settings
from speechloop.errors import IntegrityError, ModelUnavailable, StoreError
from speechloop.storage.s3 import MinioStore
from tests.integration.conftest import S3Server, free_port, unique_bucket
from tests.integration.faultproxy import FaultProxy
from tests.unit.ingest_support import clip
from tests.unit.test_registry import make_model

CONTEXT = Path(__file__).resolve().parents[2] / "speechloop" / "context.py"
needs_context = pytest.mark.skipif(
    not CONTEXT.is_file(), reason="speechloop/context.py (no silent seed fallback) not landed"
)


def cli(env: dict[str, str], *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """Run ``speechloop ARGS`` in a fresh process with only ``env`` as SPEECHLOOP_* settings."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SPEECHLOOP_")}
    return subprocess.run(
        [sys.executable, "-m", "speechloop.cli.main", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def s3_env(endpoint: str, s3_server: S3Server, tmp_path: Path, **extra: str) -> dict[str, str]:
    """Settings for an S3 store at ``endpoint`` with fast retries and a scratch work dir."""
    return {
        "SPEECHLOOP_STORE": "s3://",
        "SPEECHLOOP_S3_ENDPOINT": endpoint,
        "SPEECHLOOP_S3_ACCESS_KEY": s3_server.access_key,
        "SPEECHLOOP_S3_SECRET_KEY": s3_server.secret_key,
        "SPEECHLOOP_STORE_RETRIES": "2",
        "SPEECHLOOP_STORE_BACKOFF_S": "0.01",
        "SPEECHLOOP_WORK_DIR": str(tmp_path / "work"),
        **extra,
    }


def assert_one_error_line(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    """The process failed with exactly one ``error:`` line on stderr containing ``needles``."""
    assert result.returncode != 0, f"exit 0:\n{result.stdout}"
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


@pytest.fixture
def wav(tmp_path: Path) -> Path:
    """A one-second clip to transcribe or embed."""
    path = tmp_path / "clip.wav"
    path.write_bytes(clip(1.0))
    return path


# -- no silent seed fallback (finding 5) ---------------------------------------------------


@needs_context
@pytest.mark.parametrize("command", [["asr", "transcribe"], ["spk", "embed"]])
def test_unreachable_store_is_an_error_not_the_seed(
    s3_server: S3Server, tmp_path: Path, wav: Path, command: list[str]
) -> None:
    """Nothing listens at the endpoint: the command fails naming the endpoint and prints
    no result (it does not quietly load the shipped seed)."""
    dead = f"127.0.0.1:{free_port()}"
    result = cli(s3_env(dead, s3_server, tmp_path), *command, str(wav))
    assert_one_error_line(result, dead)
    assert result.stdout.strip() == "" and "seed" not in result.stdout


@needs_context
@pytest.mark.parametrize("kind", ["asr", "spk"])
def test_unreadable_production_alias_is_an_error_not_the_seed(
    s3_server: S3Server, tmp_path: Path, wav: Path, kind: str
) -> None:
    """The production alias holds garbage: the command fails naming the alias, no result."""
    bucket = unique_bucket("models")
    store = MinioStore.from_settings(s3_server.settings())
    store.ensure_bucket(bucket)
    store.put_bytes(bucket, f"{kind}/aliases/production", b"\x00 not json")
    env = s3_env(s3_server.endpoint, s3_server, tmp_path, SPEECHLOOP_MODELS_BUCKET=bucket)
    command = ["asr", "transcribe"] if kind == "asr" else ["spk", "embed"]
    result = cli(env, *command, str(wav))
    assert_one_error_line(result, "production")
    assert result.stdout.strip() == "" and "seed" not in result.stdout


@needs_context
def test_resolution_uses_the_seed_only_for_an_empty_registry(
    s3_server: S3Server, fault_proxy: FaultProxy, tmp_path: Path
) -> None:
    """On an empty registry the seed is resolved. Once a version is published: a store
    resetting every request is a StoreError naming the step (also for a pinned version);
    a torn production alias or a tampered production version an IntegrityError naming it;
    versions without a production alias are ModelUnavailable. Never the seed."""
    from speechloop.context import AppContext

    bucket = unique_bucket("models")
    settings = s3_server.settings(
        s3_endpoint=fault_proxy.endpoint, models_bucket=bucket, work_dir=tmp_path / "work"
    )
    context = AppContext(settings)
    context.store.ensure_bucket(bucket)
    assert context.resolve_model("asr").source == "seed"
    src = make_model(tmp_path / "m", 1)
    version = context.registry.publish("asr", src, metrics={}, lineage={}).version
    context.registry.promote("asr", version, reason="first")
    assert context.resolve_model("asr").version == version

    fault_proxy.add_rule("* *", "reset", times=None)
    with pytest.raises(StoreError, match=r"asr model .*production alias"):
        AppContext(settings).resolve_model("asr")
    pinned = settings.model_copy(update={"asr_version": version})
    with pytest.raises(StoreError, match=version):
        AppContext(pinned).resolve_model("asr")
    fault_proxy.clear_rules()
    direct = MinioStore.from_settings(s3_server.settings())
    good_alias = direct.get_bytes(bucket, "asr/aliases/production")
    direct.put_bytes(bucket, "asr/aliases/production", b"{torn")
    with pytest.raises(IntegrityError, match="production"):
        AppContext(settings).resolve_model("asr")
    direct.put_bytes(bucket, "asr/aliases/production", good_alias)
    direct.put_bytes(bucket, f"asr/versions/{version}/files/model.pt", b"tampered")
    fresh = settings.model_copy(update={"work_dir": tmp_path / "fresh"})  # no cached copy
    with pytest.raises(IntegrityError, match=r"model\.pt"):
        AppContext(fresh).resolve_model("asr")
    direct.delete(bucket, "asr/aliases/production")
    with pytest.raises(ModelUnavailable, match="no production alias"):
        AppContext(settings).resolve_model("asr")


# -- fail fast, with one line (findings 6 and 8) ------------------------------------------


def test_ingest_on_a_dead_store_is_one_error_line(s3_server: S3Server, tmp_path: Path) -> None:
    """``data ingest`` with nothing listening: exit 1, one ``error:`` line naming the
    endpoint, no retry warnings."""
    dead = f"127.0.0.1:{free_port()}"
    result = cli(s3_env(dead, s3_server, tmp_path), "data", "ingest", "--kind", "asr")
    assert_one_error_line(result, dead)


@pytest.mark.timeout(120)
def test_ingest_on_a_paused_store_gives_up_as_configured(
    s3_server: S3Server, fault_proxy: FaultProxy, tmp_path: Path
) -> None:
    """A server that accepts but never answers, timeouts and retries set in the
    environment: ``data ingest`` exits 1 with one line naming the endpoint, after
    ``retries + 1`` attempts of its first request (the subprocess timeout only guards
    against a hang)."""
    fault_proxy.add_rule("* *", "stall", times=None, seconds=300)
    env = s3_env(
        fault_proxy.endpoint,
        s3_server,
        tmp_path,
        SPEECHLOOP_STORE_CONNECT_TIMEOUT_S="0.5",
        SPEECHLOOP_STORE_READ_TIMEOUT_S="0.5",
        SPEECHLOOP_STORE_RETRIES="1",
    )
    result = cli(env, "data", "ingest", "--kind", "asr", timeout=60)
    assert_one_error_line(result, fault_proxy.endpoint)
    assert fault_proxy.count("stall") == 2


# -- the endpoint setting (finding 7) ------------------------------------------------------


def test_endpoint_with_scheme_works(s3_server: S3Server, tmp_path: Path) -> None:
    """``SPEECHLOOP_S3_ENDPOINT=http://host:port`` reaches the server."""
    env = s3_env(f"http://{s3_server.endpoint}", s3_server, tmp_path)
    env["SPEECHLOOP_MODELS_BUCKET"] = unique_bucket("models")
    result = cli(env, "models", "list")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr


def test_endpoint_with_a_path_is_one_error_line(s3_server: S3Server, tmp_path: Path) -> None:
    """An endpoint with a path: the command fails with one line naming the setting."""
    env = s3_env("http://127.0.0.1:9000/some/path", s3_server, tmp_path)
    assert_one_error_line(cli(env, "models", "list"), "S3_ENDPOINT")


@pytest.mark.parametrize(
    "endpoint", ["http://127.0.0.1:9000/bucket", "127.0.0.1:notaport", "ftp://127.0.0.1:21"]
)
def test_settings_refuse_a_bad_endpoint(endpoint: str) -> None:
    """The settings class itself refuses an endpoint with a path, a bad port or scheme."""
    with pytest.raises(ValueError, match="endpoint"):
        Settings(s3_endpoint=endpoint)
