"""Settings of the flows deployable, from ``SPEECHLOOP_FLOWS_*`` environment variables."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class FlowSettings(BaseSettings):
    """Retries of I/O tasks and the names of the concurrency limits the flows take."""

    model_config = SettingsConfigDict(env_prefix="SPEECHLOOP_FLOWS_", extra="ignore")

    io_retries: int = Field(default=3, ge=0, description="retries of an I/O task")
    io_backoff_s: float = Field(default=2.0, gt=0, description="first retry delay (doubles)")
    gpu_limit: str = Field(default="gpu", description="global concurrency limit of GPU work")
    retrain_limit_prefix: str = Field(
        default="retrain-", description="global limit per kind: <prefix>asr, <prefix>spk"
    )


@lru_cache(maxsize=1)
def get_flow_settings() -> FlowSettings:
    """The process-wide flow settings, read once on first use."""
    return FlowSettings()
