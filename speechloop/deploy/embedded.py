"""The embedded deployer: the service follows the registry ``production`` alias.

Redeploying is promoting (when the alias is not there yet) and rolling back is the
registry's rollback; the running service notices the alias move and hot-swaps. There
is nothing to wait for and nothing that can drift.
"""

from __future__ import annotations

from typing import Any

from speechloop.deploy.model import DeploymentStatus, DeployOutcome, RevisionInfo
from speechloop.errors import NotFound
from speechloop.registry import KINDS, ModelRegistry
from speechloop.registry.model import check_kind, check_version

TARGET = "registry alias (embedded)"


class EmbeddedDeployer:
    """Deployer for the embedded default: moves the registry alias, nothing else."""

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry

    def __repr__(self) -> str:
        return f"EmbeddedDeployer({self.registry!r})"

    def _alias(self, kind: str) -> str | None:
        alias = self.registry.get_alias(kind, "production")
        return alias.version if alias else None

    def redeploy(self, kind: str, version: str, *, reason: str) -> DeployOutcome:
        """Make ``version`` production unless it already is (then nothing changes)."""
        check_kind(kind)
        check_version(version)
        before = self._alias(kind)
        if before == version:
            return DeployOutcome(
                kind, "redeploy", version, before, TARGET, changed=False, reason=reason
            )
        self.registry.promote(kind, version, reason=reason, decision={"redeploy": True})
        return DeployOutcome(
            kind, "redeploy", version, before, TARGET, alias_moved=True, reason=reason
        )

    def rollback(self, kind: str, to: str | None = None, *, reason: str) -> DeployOutcome:
        """The registry's rollback: production back to ``previous`` (or to ``to``, verified)."""
        check_kind(kind)
        before = self._alias(kind)
        alias = self.registry.rollback(kind, to_version=to, reason=reason)
        return DeployOutcome(
            kind, "rollback", alias.version, before, TARGET, alias_moved=True, reason=reason
        )

    def status(self) -> list[DeploymentStatus]:
        """Per kind: the alias (which is what serves) and the alias moves as revisions."""
        out = []
        for kind in KINDS:
            alias = self._alias(kind)
            history = _alias_moves(self._history(kind), alias)
            out.append(
                DeploymentStatus(
                    kind=kind,
                    target=TARGET,
                    serving=alias,
                    alias=alias,
                    revision=history[-1].revision if history else None,
                    rollout="complete" if alias else "missing",
                    change_cause=history[-1].change_cause if history else None,
                    history=tuple(history),
                )
            )
        return out

    def _history(self, kind: str) -> list[dict[str, Any]]:
        try:
            return self.registry.history(kind)
        except NotFound:  # the models bucket does not exist yet
            return []


def _alias_moves(records: list[dict[str, Any]], current: str | None) -> list[RevisionInfo]:
    """Promotions and rollbacks as numbered revisions, oldest first (rejections skipped)."""
    moves = [r for r in records if r.get("action") in ("promote", "rollback")]
    out = []
    for number, record in enumerate(moves, start=1):
        out.append(
            RevisionInfo(
                revision=number,
                version=str(record.get("version")),
                change_cause=f"{record.get('action')}: {record.get('reason', '')}",
                current=number == len(moves) and record.get("version") == current,
            )
        )
    return out
