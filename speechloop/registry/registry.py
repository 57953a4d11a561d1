"""The model registry: immutable versions, ``production``/``previous`` aliases, history.

Promotion and rollback verify every file of the target version (re-hashed from the
store) before the alias write, which is the commit point; racing writers are
serialised by compare-and-swap on the alias object (see :mod:`.aliases`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from speechloop.errors import Conflict, InvalidInput, NotFound
from speechloop.registry import aliases, versions
from speechloop.registry.model import (
    ALIASES,
    AliasInfo,
    VersionInfo,
    alias_key,
    check_alias,
    check_kind,
    check_version,
    dumps,
    utc_now,
)
from speechloop.storage.base import ObjectStore


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
    ) -> VersionInfo:
        """Upload ``src_dir`` as a new immutable version (Conflict if it exists).

        The models bucket is created on the first publication, so a fresh store needs no
        setup step.
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
        """Every promotion, rejection and rollback of ``kind``, oldest first."""
        return aliases.read_history(self.store, self.bucket, check_kind(kind))

    def promote(
        self, kind: str, version: str, *, reason: str, decision: dict[str, Any] | None = None
    ) -> AliasInfo:
        """Verify ``version``, then make it production; the old production becomes previous."""
        check_kind(kind)
        _check_reason(reason)
        self.verify(kind, version)

        def target(old: dict[str, Any] | None) -> str:
            return version

        return self._move(kind, target, action="promote", reason=reason, decision=decision)

    def rollback(self, kind: str, to_version: str | None = None, *, reason: str) -> AliasInfo:
        """Point production back at ``previous`` (or at ``to_version``, verified first)."""
        check_kind(kind)
        _check_reason(reason)
        verified: set[str] = set()

        def target(old: dict[str, Any] | None) -> str:
            if old is None:
                raise NotFound(f"{kind} has no production version: nothing to roll back")
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

        return self._move(kind, target, action="rollback", reason=reason, decision=None)

    def reject(
        self, kind: str, version: str, *, reason: str, decision: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Record that ``version`` was not promoted, and why (history only)."""
        check_kind(kind)
        _check_reason(reason)
        self.show(kind, version)
        production = aliases.read_production(self.store, self.bucket, kind)
        record = _history_record("reject", kind, version, production, reason, decision)
        aliases.append_history(self.store, self.bucket, kind, record)
        return record

    def _move(
        self,
        kind: str,
        target: Callable[[dict[str, Any] | None], str],
        *,
        action: str,
        reason: str,
        decision: dict[str, Any] | None,
    ) -> AliasInfo:
        """Compare-and-swap production to ``target(old)``; sync the mirror; log history."""
        seen: dict[str, dict[str, Any] | None] = {}
        key = alias_key(kind, "production")

        def update(current: bytes | None) -> bytes:
            old = aliases.parse_record(current, key)
            version = target(old)
            if old is not None and old["version"] == version:
                raise Conflict(f"{kind}/{version} is already in production")
            seen["old"] = old
            new = {
                "version": version,
                "promoted_at": utc_now(),
                "reason": reason,
                "action": action,
                "decision": decision,
                "previous": aliases.strip_previous(old) if old else None,
            }
            return dumps(new)

        written = aliases.cas_update(self.store, self.bucket, key, update)
        assert written is not None
        new = json.loads(written)
        aliases.sync_previous(self.store, self.bucket, kind)
        record = _history_record(action, kind, new["version"], seen["old"], reason, decision)
        record["ts"] = new["promoted_at"]
        aliases.append_history(self.store, self.bucket, kind, record)
        return AliasInfo.from_record(kind, "production", new)


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
