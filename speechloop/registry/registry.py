"""The model registry: immutable versions, ``production``/``previous`` aliases, history.

Promotion and rollback verify every file of the target version (re-hashed from the
store) before the alias write, which is the commit point and carries the change's
history entry; racing writers are serialised by compare-and-swap on the alias object
(see :mod:`.aliases`). Every write carries a token (write id), so a write whose reply
was lost is recognised as the writer's own on retry (see :mod:`.cas`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from speechloop.errors import Conflict, InvalidInput, NotFound, StoreError
from speechloop.registry import aliases, history, versions
from speechloop.registry.cas import new_write_id
from speechloop.registry.model import (
    ALIASES,
    AliasInfo,
    VersionInfo,
    check_alias,
    check_kind,
    check_version,
    utc_now,
)
from speechloop.storage.base import ObjectStore

log = logging.getLogger(__name__)


class ModelRegistry:
    """Model versions of kinds ``asr`` and ``spk`` in one bucket of an object store."""

    def __init__(self, store: ObjectStore, bucket: str) -> None:
        self.store = store
        self.bucket = bucket

    def __repr__(self) -> str:
        return f"ModelRegistry({self.store!r}, {self.bucket!r})"

    # -- versions --------------------------------------------------------------------

    def publish(
        self,
        kind: str,
        src_dir: Path,
        *,
        metrics: dict[str, Any],
        lineage: dict[str, Any],
        version: str | None = None,
        run_id: str | None = None,
    ) -> VersionInfo:
        """Upload ``src_dir`` as a new immutable version (Conflict if it exists).

        The models bucket is created on the first publication, so a fresh store needs no
        setup step. With ``run_id`` and an explicit ``version``, a re-run of the same
        run finds the version it published and returns it.
        """
        self.store.ensure_bucket(self.bucket)
        return versions.publish(
            self.store,
            self.bucket,
            kind,
            src_dir,
            metrics=metrics,
            lineage=lineage,
            version=version,
            run_id=run_id,
        )

    def list_versions(self, kind: str) -> list[str]:
        """Complete versions of ``kind``, oldest first."""
        return versions.list_versions(self.store, self.bucket, kind)

    def show(self, kind: str, version: str) -> VersionInfo:
        """Manifest, metrics and lineage of one version (NotFound if absent or incomplete)."""
        return versions.show(self.store, self.bucket, kind, version)

    def verify(self, kind: str, version: str) -> VersionInfo:
        """Re-hash every file of a version from the store (IntegrityError names a bad one)."""
        return versions.verify(self.store, self.bucket, kind, version)

    def fetch(self, kind: str, version: str, dest_dir: Path) -> Path:
        """Download a version into ``dest_dir``, verified; files already right are kept."""
        return versions.fetch(self.store, self.bucket, kind, version, dest_dir)

    # -- aliases and history ---------------------------------------------------------

    def get_alias(self, kind: str, name: str) -> AliasInfo | None:
        """Where ``production`` or ``previous`` points (None if never set)."""
        check_kind(kind)
        check_alias(name)
        record = aliases.read_production(self.store, self.bucket, kind)
        if record is not None and name == "previous":
            record = record.get("previous")
        return AliasInfo.from_record(kind, name, record) if record else None

    def resolve(self, kind: str, ref: str) -> str:
        """The version named by ``ref``: an alias ("production", "previous") or a version."""
        if ref in ALIASES:
            alias = self.get_alias(kind, ref)
            if alias is None:
                raise NotFound(f"{kind} has no {ref} version yet")
            return alias.version
        return check_version(ref)

    def history(self, kind: str) -> list[dict[str, Any]]:
        """Every promotion, rejection and rollback of ``kind``, oldest first, each once.

        Includes the change committed with the production alias when a crash kept it
        from the log (``models repair`` writes it there).
        """
        check_kind(kind)
        production = aliases.read_production(self.store, self.bucket, kind)
        log = history.read_log(self.store, self.bucket, kind)
        return history.with_pending(log, production)

    def promote(
        self,
        kind: str,
        version: str,
        *,
        reason: str,
        decision: dict[str, Any] | None = None,
        run_id: str | None = None,
    ) -> AliasInfo:
        """Verify ``version``, then make it production; the old production becomes previous.

        ``run_id`` (e.g. the flow run's id) makes the call idempotent across re-runs: a
        second call with the same run id finds the promotion already made and returns it.
        """
        check_kind(kind)
        _check_reason(reason)
        self.verify(kind, version)

        def target(old: dict[str, Any] | None) -> str:
            return version

        write_id = new_write_id("promote", kind, version, run_id)
        return self._move(kind, target, "promote", reason, decision, write_id)

    def rollback(
        self,
        kind: str,
        to_version: str | None = None,
        *,
        reason: str,
        run_id: str | None = None,
    ) -> AliasInfo:
        """Point production back at ``previous`` (or at ``to_version``, verified first)."""
        check_kind(kind)
        _check_reason(reason)
        verified: set[str] = set()

        def target(old: dict[str, Any] | None) -> str:
            if old is None:
                raise NotFound(
                    f"{kind} has no production version: nothing to roll back "
                    "(if it is unreadable, name the version to restore with --to)"
                )
            name = to_version
            if name is None:
                previous = old.get("previous")
                if not previous:
                    raise NotFound(
                        f"{kind} has no previous version to roll back to "
                        f"(production is {old['version']})"
                    )
                name = str(previous["version"])
            if name not in verified:
                self.verify(kind, check_version(name))
                verified.add(name)
            return name

        write_id = new_write_id("rollback", kind, to_version or "previous", run_id)
        return self._move(kind, target, "rollback", reason, None, write_id)

    def reject(
        self,
        kind: str,
        version: str,
        *,
        reason: str,
        decision: dict[str, Any] | None = None,
        run_id: str | None = None,
    ) -> dict[str, Any]:
        """Record that ``version`` was not promoted, and why (history only)."""
        check_kind(kind)
        _check_reason(reason)
        self.show(kind, version)
        production = aliases.read_production(self.store, self.bucket, kind)
        history.catch_up(self.store, self.bucket, kind, production)
        record = _history_record("reject", kind, version, production, reason, decision)
        record["write_id"] = new_write_id("reject", kind, version, run_id)
        return history.append(self.store, self.bucket, kind, record)

    def _move(
        self,
        kind: str,
        target: Callable[[dict[str, Any] | None], str],
        action: str,
        reason: str,
        decision: dict[str, Any] | None,
        write_id: str,
    ) -> AliasInfo:
        """Commit production = ``target(old)`` with its history entry; then bring the
        mirror and the log up to date (a failure there is repaired by the next writer
        or ``models repair``, so the committed change is still reported)."""

        def build(old: dict[str, Any] | None) -> dict[str, Any]:
            version = target(old)
            if old is not None and old["version"] == version:
                raise Conflict(f"{kind}/{version} is already in production")
            change = _history_record(action, kind, version, old, reason, decision)
            change["write_id"] = write_id
            return {
                "version": version,
                "promoted_at": change["ts"],
                "reason": reason,
                "action": action,
                "decision": decision,
                "change": change,
            }

        record, _ = aliases.commit(self.store, self.bucket, kind, build, write_id)
        try:
            aliases.sync_previous(self.store, self.bucket, kind)
            history.catch_up(self.store, self.bucket, kind, record)  # once, by write id
        except StoreError as exc:
            log.warning(
                "%s %s/%s committed, but the previous mirror or history could not be "
                "updated (%s); the next change or `speechloop models repair` does it",
                action,
                kind,
                record["version"],
                exc,
            )
        return AliasInfo.from_record(kind, "production", record)


def _check_reason(reason: str) -> None:
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidInput("a reason is required (it goes to the history)")


def _history_record(
    action: str,
    kind: str,
    version: str,
    production: dict[str, Any] | None,
    reason: str,
    decision: dict[str, Any] | None,
) -> dict[str, Any]:
    return {
        "ts": utc_now(),
        "action": action,
        "kind": kind,
        "version": version,
        "from_version": production["version"] if production else None,
        "reason": reason,
        "decision": decision,
    }
