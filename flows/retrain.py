"""``retrain-asr`` and ``retrain-spk``: the core's retraining use-case as a Prefect flow.

One retraining per kind at a time: the flow holds the ``retrain-<kind>`` global
concurrency limit (create it with limit 1; the deployments in ``prefect.yaml`` also
set a deployment concurrency limit of 1), and the core holds its store lease.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.concurrency.sync import concurrency
from prefect.runtime import flow_run

from flows.settings import get_flow_settings
from flows.tasks import PrefectHooks, artifact_key, markdown_artifact
from speechloop.context import build_context
from speechloop.data.manifest import Kind
from speechloop.errors import SpeechloopError
from speechloop.loop import RetrainResult, retrain
from speechloop.loop.config import RetrainOptions


class DeployFailed(SpeechloopError):
    """The candidate passed the gate but its redeploy failed (the alias was put back)."""


def run_retrain(kind: Kind, options: RetrainOptions) -> dict[str, Any]:
    """One run of ``kind``; the result as a dict (a failed redeploy fails the flow run)."""
    settings = get_flow_settings()
    run_id = f"prefect-{flow_run.get_id() or 'local'}"
    with concurrency(f"{settings.retrain_limit_prefix}{kind}", occupy=1):
        result = retrain(build_context(), kind, options.to_config(),
                         hooks=PrefectHooks(kind, settings), run_id=run_id)  # fmt: skip
    _summary_artifact(result)
    get_run_logger().info("%s retraining %s: %s", kind, result.status, result.message)
    if result.status == "deploy_failed":
        raise DeployFailed(result.message)
    return result.to_dict()


def _summary_artifact(result: RetrainResult) -> None:
    rows = [
        ("status", f"**{result.status}**: {result.message}"),
        ("batches", ", ".join(result.batches) or "-"),
        ("parent -> candidate", f"{result.parent} -> {result.candidate}"),
        ("production", f"{result.production_before} -> {result.production_after}"),
        ("committed", ", ".join(result.committed) or "-"),
        ("step seconds", ", ".join(f"{k} {v:.1f}" for k, v in result.timings.items())),
    ]
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    markdown = f"### {result.kind} retraining\n\n| what | value |\n|---|---|\n{table}\n"
    markdown_artifact(markdown, artifact_key(result.kind, "retrain", result.run_id),
                      f"{result.kind} retraining {result.status}")  # fmt: skip


@flow(name="retrain-asr")
def retrain_asr(options: RetrainOptions | None = None) -> dict[str, Any]:
    """Fine-tune ASR production on the new batches, gate, publish, promote, redeploy."""
    return run_retrain("asr", options or RetrainOptions())


@flow(name="retrain-spk")
def retrain_spk(options: RetrainOptions | None = None) -> dict[str, Any]:
    """Fine-tune the speaker model on the new batches, gate, publish, promote, re-enrol."""
    return run_retrain("spk", options or RetrainOptions())
