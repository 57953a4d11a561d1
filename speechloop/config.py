"""Typed settings for the speechloop core, read from ``SPEECHLOOP_*`` environment variables.

Built lazily by :func:`get_settings`; nothing is read at import time.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from speechloop.errors import InvalidInput
from speechloop.storage.endpoint import parse_endpoint


class Settings(BaseSettings):
    """Settings shared by the CLI, the service and the flows.

    ``store`` is ``file:///abs/dir`` (embedded default: one directory per bucket) or
    ``s3://`` (MinIO or any S3-compatible server, reached at ``s3_endpoint``).
    """

    model_config = SettingsConfigDict(env_prefix="SPEECHLOOP_", env_file=".env", extra="ignore")

    store: str = Field(default="file://./.speechloop/store", description="object store URL")
    s3_endpoint: str = Field(
        default="127.0.0.1:9000",
        description="host:port of the S3 server, or http(s)://host:port (sets s3_secure)",
    )
    s3_secure: bool = Field(default=False, description="use HTTPS for the S3 endpoint")
    s3_region: str | None = Field(default=None, description="S3 region, if the server needs one")
    s3_access_key: SecretStr = Field(default=SecretStr("minioadmin"))
    s3_secret_key: SecretStr = Field(default=SecretStr("minioadmin"))
    data_bucket: str = Field(default="speech-data")
    models_bucket: str = Field(default="speech-models")
    work_dir: Path = Field(default=Path(".speechloop/work"), description="local scratch and caches")
    store_retries: int = Field(default=4, ge=0, description="retries on transient store faults")
    store_backoff_s: float = Field(default=0.2, gt=0, description="first back-off delay")
    store_connect_timeout_s: float = Field(
        default=3.0, gt=0, description="S3: seconds to wait for a TCP connection"
    )
    store_read_timeout_s: float = Field(
        default=10.0, gt=0, description="S3: seconds to wait for each reply or chunk of one"
    )
    store_retry_budget_s: float = Field(
        default=20.0, gt=0, description="S3: no retry starts later than this after the first try"
    )
    min_audio_s: float = Field(default=0.3, gt=0)
    max_audio_s: float = Field(default=30.0, gt=0)
    min_chars_per_s: float = Field(
        default=0.2, ge=0, description="ASR rows: fewest transcript characters per audio second"
    )
    max_chars_per_s: float = Field(
        default=35.0, gt=0, description="ASR rows: most transcript characters per audio second"
    )
    asr_version: str | None = Field(
        default=None, description="pinned ASR version or alias ('seed': the shipped seed)"
    )
    spk_version: str | None = Field(
        default=None, description="pinned speaker version or alias ('seed': the shipped seed)"
    )
    asr_backend: Literal["onnx", "onnx-int8", "torch"] = Field(
        default="onnx", description="ASR engine backend (speechloop.asr.engine)"
    )
    spk_backend: Literal["onnx", "torch"] = Field(
        default="onnx", description="speaker embedder backend"
    )
    device: str | None = Field(
        default=None, description="cpu, cuda or cuda:N (default: CUDA when present)"
    )
    threads: int | None = Field(default=None, ge=1, description="inference threads per model")
    seed: int = 0
    deployer: Literal["embedded", "kubernetes"] = Field(
        default="embedded", description="how model versions are made to serve (speechloop.deploy)"
    )

    @field_validator("s3_endpoint")
    @classmethod
    def _endpoint_is_host_port(cls, value: str) -> str:
        parse_endpoint(value)  # ValueError naming the problem
        return value.strip()

    @model_validator(mode="after")
    def _endpoint_scheme_sets_secure(self) -> Settings:
        """``http(s)://host:port`` becomes ``host:port`` with ``s3_secure`` from the scheme."""
        host_port, secure = parse_endpoint(self.s3_endpoint)
        if secure is not None:
            if "s3_secure" in self.model_fields_set and self.s3_secure != secure:
                raise ValueError(
                    f"SPEECHLOOP_S3_ENDPOINT={self.s3_endpoint!r} says "
                    f"{'https' if secure else 'http'} but SPEECHLOOP_S3_SECURE={self.s3_secure}"
                )
            self.s3_secure = secure
        self.s3_endpoint = host_port
        return self


def settings_error(exc: ValidationError) -> InvalidInput:
    """One line naming every bad ``SPEECHLOOP_*`` setting of a failed validation."""
    problems = []
    for error in exc.errors():
        name = "SPEECHLOOP_" + "_".join(str(part) for part in error["loc"]).upper()
        message = str(error["msg"]).removeprefix("Value error, ")
        problems.append(message if message.startswith("SPEECHLOOP_") else f"{name}: {message}")
    return InvalidInput("invalid settings: " + "; ".join(problems))


def load_settings() -> Settings:
    """Settings read from the environment now; InvalidInput (one line) if one is bad."""
    try:
        return Settings()
    except ValidationError as exc:
        raise settings_error(exc) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once on first use (InvalidInput if one is bad)."""
    return load_settings()
