"""Roll a model kind back: the deployer serves the previous (or a named) version again.

The CLI (``speechloop rollback``) and the ``rollback`` flow call this. The deployer moves
the production alias (embedded) or rolls the Deployment back and keeps the alias in step
(Kubernetes); history records the reason. Voiceprints are per speaker-model version, so
a speaker rollback rebuilds them for the version now serving (speakers enrolled since
that version was last in production would otherwise be unknown to it).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from speechloop.data.manifest import Kind
from speechloop.errors import InvalidInput
from speechloop.registry.model import check_kind

if TYPE_CHECKING:
    from speechloop.context import AppContext
    from speechloop.deploy import Deployer


@dataclass(frozen=True)
class RollbackResult:
    """What serves now, what served before, and the voiceprints rebuilt (speaker)."""

    kind: Kind
    version: str
    previous: str | None
    reason: str
    deploy: dict[str, Any] = field(default_factory=dict)
    reenrolled: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return asdict(self)


def rollback(
    ctx: AppContext,
    kind: Kind,
    to: str | None = None,
    *,
    reason: str,
    deployer: Deployer | None = None,
) -> RollbackResult:
    """Serve the previous version of ``kind`` again (or ``to``, verified first)."""
    check_kind(kind)
    if not reason or not reason.strip():
        raise InvalidInput("a rollback needs a reason (it goes to the history)")
    if deployer is None:
        from speechloop.deploy import make_deployer

        deployer = make_deployer(ctx.settings, ctx.registry)
    outcome = deployer.rollback(kind, to, reason=reason)
    reenrolled: list[str] = []
    if kind == "spk":
        reenrolled = list(ctx.voiceprints.reenroll(ctx.speaker_embedder(outcome.version)))
    return RollbackResult(
        kind, outcome.version, outcome.previous, reason, outcome.to_dict(), tuple(reenrolled)
    )
