"""The service settings and API keys: sources, refusal without keys, constant-time check."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from service.auth import ApiKeys, bearer_token
from service.settings import ServiceSettings
from speechloop.errors import InvalidInput


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("SPEECHLOOP_API_KEYS", "SPEECHLOOP_API_KEYS_FILE", "SPEECHLOOP_AUTH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_refuses_to_build_without_keys() -> None:
    """With neither key source and auth on, the settings refuse, naming both variables."""
    with pytest.raises(InvalidInput, match=r"SPEECHLOOP_API_KEYS.*SPEECHLOOP_AUTH=off"):
        ServiceSettings()


def test_auth_off_needs_no_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """SPEECHLOOP_AUTH=off is the explicit way to serve without keys."""
    monkeypatch.setenv("SPEECHLOOP_AUTH", "off")
    assert ServiceSettings().key_list() == []


def test_keys_from_env_and_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Keys come from the comma-separated variable and the file (comments, blanks skipped)."""
    keys = tmp_path / "keys"
    keys.write_text("# ops keys\nfile-key-1\n\n  file-key-2  \n")
    monkeypatch.setenv("SPEECHLOOP_API_KEYS", " env-a, ,env-b")
    monkeypatch.setenv("SPEECHLOOP_API_KEYS_FILE", str(keys))
    settings = ServiceSettings()
    assert settings.key_list() == ["env-a", "env-b", "file-key-1", "file-key-2"]
    assert "env-a" not in repr(settings) and "env-a" not in str(settings.model_dump())


def test_unreadable_key_file_is_named(tmp_path: Path) -> None:
    """A key file that cannot be read is an error naming the variable."""
    with pytest.raises(InvalidInput, match="SPEECHLOOP_API_KEYS_FILE"):
        ServiceSettings(api_keys_file=tmp_path / "missing")


def test_api_keys_accept_only_configured_keys() -> None:
    """Every configured key is accepted; near misses, prefixes and empties are not; the
    keys never show in repr."""
    keys = ApiKeys(["alpha-key", "beta-key"])
    assert keys.accepts("alpha-key") and keys.accepts("beta-key")
    for wrong in ("alpha-ke", "alpha-key ", "", "ALPHA-KEY", "beta-keyx", "\udcff"):
        assert not keys.accepts(wrong)
    assert "alpha" not in repr(keys)
    with pytest.raises(ValueError, match="no API key"):
        ApiKeys([], enabled=True)


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer   abc  ", "abc"),
        ("Basic abc", None),
        ("Bearer", None),
        ("", None),
        (None, None),
    ],
)
def test_bearer_token(header: str | None, token: str | None) -> None:
    """Only a Bearer scheme with a token yields a key."""
    assert bearer_token(header) == token


def test_secret_is_secretstr() -> None:
    """The keys are a SecretStr in the settings."""
    assert isinstance(ServiceSettings(api_keys=SecretStr("x")).api_keys, SecretStr)
