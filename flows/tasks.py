"""The core's steps as Prefect tasks, and decisions as markdown artifacts.

:class:`PrefectHooks` is the :class:`~speechloop.loop.hooks.RunHooks` of the flows: each
step of :func:`speechloop.loop.retrain` runs as a task named ``<kind>-<step>``. Only the
I/O steps (``plan``: ingestion; ``publish``: upload) are retried, with exponential
back-off and only on store and network faults; ``train`` and ``score`` hold a slot of
the ``gpu`` global concurrency limit; ``conclude`` (promote, redeploy, commit) is never
retried (it puts the alias back itself when it fails).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun
from prefect.concurrency.sync import concurrency
from prefect.tasks import Task, exponential_backoff

from flows.settings import FlowSettings, get_flow_settings
from speechloop.errors import StoreError
from speechloop.gating import GateDecision
from speechloop.loop.hooks import RunHooks

T = TypeVar("T")
IO_STEPS = frozenset({"plan", "publish"})
GPU_STEPS = frozenset({"train", "score"})


def artifact_key(*parts: str) -> str:
    """A Prefect artifact key: lowercase letters, digits and dashes only."""
    key = re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")
    return re.sub(r"-{2,}", "-", key)[:200]


def transient(task: Task[Any, Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Retry only faults that a retry can cure: the store or the network, not bad input."""
    exc = state.result(raise_on_failure=False)
    return isinstance(exc, StoreError | ConnectionError | TimeoutError)


def markdown_artifact(markdown: str, key: str, description: str) -> dict[str, str]:
    """Create the artifact; the link the registry history keeps (key, id, UI address)."""
    from prefect.settings import PREFECT_UI_URL

    artifact_id = create_markdown_artifact(markdown=markdown, key=key, description=description)
    link = {"artifact_key": key, "artifact_id": str(artifact_id)}
    ui = PREFECT_UI_URL.value()
    if ui:
        link["artifact_url"] = f"{ui.rstrip('/')}/artifacts/artifact/{artifact_id}"
    return link


class PrefectHooks(RunHooks):
    """Run the core's steps as tasks, log to the flow run, publish decisions as artifacts."""

    def __init__(self, kind: str, settings: FlowSettings | None = None) -> None:
        self.kind = kind
        self.settings = settings or get_flow_settings()

    def run(self, name: str, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` as the task ``<kind>-<name>`` (retries / GPU slot by step)."""
        options: dict[str, Any] = {"name": f"{self.kind}-{name}", "cache_policy": NO_CACHE}
        if name in IO_STEPS:
            options |= {
                "retries": self.settings.io_retries,
                "retry_delay_seconds": exponential_backoff(self.settings.io_backoff_s),
                "retry_condition_fn": transient,
            }
        step: Task[Any, T] = task(fn, **options)
        if name in GPU_STEPS:
            with concurrency(self.settings.gpu_limit, occupy=1):
                return step(*args)
        return step(*args)

    def step(self, kind: str, name: str, message: str) -> None:
        """Log the step to the flow run."""
        get_run_logger().info("%s %s: %s", kind, name, message)

    def epoch(self, kind: str, record: dict[str, Any]) -> None:
        """Log the epoch's figures to the flow run."""
        get_run_logger().info("%s epoch %s", kind, record)

    def decision(self, kind: str, decision: GateDecision) -> dict[str, Any]:
        """The decision as a markdown artifact; its link goes to the registry history."""
        verdict = "promote" if decision.promote else "reject"
        key = artifact_key(kind, "gate", decision.candidate_version)
        return markdown_artifact(
            decision.to_markdown(), key, f"{kind} gate: {verdict} {decision.candidate_version}"
        )
