"""``evaluate``: score any version of a kind on any golden set (a markdown artifact)."""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.concurrency.sync import concurrency

from flows.settings import get_flow_settings
from flows.tasks import artifact_key, markdown_artifact
from speechloop.context import build_context
from speechloop.data.manifest import Kind
from speechloop.loop import Evaluation, evaluate_version


@task(name="score", cache_policy=NO_CACHE)
def score(kind: Kind, version: str | None, eval_set: str) -> Evaluation:
    """The core's evaluation, under the GPU limit."""
    with concurrency(get_flow_settings().gpu_limit, occupy=1):
        return evaluate_version(build_context(), kind, version, eval_set)


@flow(name="evaluate")
def evaluate(kind: Kind, version: str | None = None, eval_set: str = "golden") -> dict[str, Any]:
    """Score ``version`` (a version, "production", "previous"; default: what serves)."""
    result = score(kind, version, eval_set)
    key = artifact_key(kind, "eval", result.version, eval_set)
    link = markdown_artifact(result.to_markdown(), key, f"{kind} {result.version} on {eval_set}")
    return result.to_dict() | {"links": link}
