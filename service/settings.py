"""The service's one typed settings class (environment prefix ``SPEECHLOOP_``).

It extends the core :class:`speechloop.config.Settings` (store, registry, model pins and
backends) with what only the HTTP service needs: API keys, limits, the alias watcher.
Built lazily by :func:`get_service_settings`; API keys are ``SecretStr`` and never
logged.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator

from speechloop.config import Settings
from speechloop.errors import InvalidInput


class ServiceSettings(Settings):
    """Settings of ``speechloop serve`` / ``bentoml serve service.app:Gateway``.

    Keys come from ``SPEECHLOOP_API_KEYS`` (comma-separated) and/or
    ``SPEECHLOOP_API_KEYS_FILE`` (one key per line, ``#`` comments); with neither the
    service refuses to start unless ``SPEECHLOOP_AUTH=off``.
    """

    api_keys: SecretStr | None = Field(default=None, description="comma-separated API keys")
    api_keys_file: Path | None = Field(default=None, description="file with one API key a line")
    auth: Literal["on", "off"] = Field(default="on", description="'off': no API keys (local dev)")
    max_body_bytes: int = Field(
        default=25 * 1024 * 1024, ge=1024, description="largest request body accepted (413 above)"
    )
    max_request_audio_s: float = Field(
        default=60.0, gt=0, description="longest audio accepted per file (413 above)"
    )
    min_request_audio_s: float = Field(
        default=0.1, gt=0, description="shortest audio accepted per file (400 below)"
    )
    max_enrol_files: int = Field(default=20, ge=1, description="recordings per enrolment request")
    watch_interval_s: float = Field(
        default=10.0, gt=0, description="how often the production alias is checked (hot swap)"
    )
    spk_threshold: float = Field(
        default=0.5,
        ge=-1.0,
        le=1.0,
        description="verification threshold when the speaker model carries no calibrated one",
    )
    export_onnx: bool = Field(
        default=False,
        description=(
            "export ONNX graphs for a model that carries none (the shipped seed); needs "
            "torch in the serving process. Registry versions carry their graphs."
        ),
    )
    log_level: str = Field(default="INFO", description="level of the service's JSON logs")

    @model_validator(mode="after")
    def _keys_or_auth_off(self) -> ServiceSettings:
        """Refuse to build without keys unless auth is explicitly off."""
        if self.auth == "on" and not self.key_list():
            raise InvalidInput(
                "no API keys: set SPEECHLOOP_API_KEYS (comma-separated) or "
                "SPEECHLOOP_API_KEYS_FILE, or SPEECHLOOP_AUTH=off for local development"
            )
        return self

    def key_list(self) -> list[str]:
        """Every configured API key (from both sources), stripped, without empties."""
        keys: list[str] = []
        if self.api_keys is not None:
            keys += [k.strip() for k in self.api_keys.get_secret_value().split(",")]
        if self.api_keys_file is not None:
            try:
                text = self.api_keys_file.read_text(encoding="utf-8")
            except OSError as exc:
                raise InvalidInput(f"cannot read SPEECHLOOP_API_KEYS_FILE: {exc}") from exc
            for line in text.splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    keys.append(line)
        return [k for k in keys if k]


@lru_cache(maxsize=1)
def get_service_settings() -> ServiceSettings:
    """The process-wide service settings, read once on first use."""
    return ServiceSettings()
