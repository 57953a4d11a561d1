"""``rollback``: serve the previous (or a named) version of a kind again."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.tasks import artifact_key, markdown_artifact
from speechloop.context import build_context
from speechloop.data.manifest import Kind
from speechloop.loop import rollback as rollback_use_case


@flow(name="rollback")
def rollback(kind: Kind, reason: str, to: str | None = None) -> dict[str, Any]:
    """Roll ``kind`` back through the configured deployer; history records ``reason``."""
    result = rollback_use_case(build_context(), kind, to, reason=reason)
    markdown = (
        f"### {kind} rollback\n\n{result.previous} -> **{result.version}**\n\n"
        f"Reason: {reason}\n\nVoiceprints re-enrolled: {len(result.reenrolled)}\n"
    )
    markdown_artifact(markdown, artifact_key(kind, "rollback", result.version), reason)
    return result.to_dict()
