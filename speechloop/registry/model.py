"""Names, layout and records of the model registry (bucket ``speech-models``).

Layout::

    <kind>/versions/<version>/files/<relpath>  the model's files, as published
    <kind>/versions/<version>/metrics.json     evaluation figures
    <kind>/versions/<version>/lineage.json     parent, data batches, training config, code
    <kind>/versions/<version>/manifest.json    written last: the commit point of a version
    <kind>/aliases/production                  {"version", "promoted_at", "reason", "action",
                                               "decision", "write_id", "change", "previous"}
    <kind>/aliases/previous                    mirror of production["previous"]
    <kind>/history.jsonl                       one JSON line per promote / reject / rollback
                                               (with "seq" and "write_id")
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from speechloop.errors import InvalidInput

KINDS = ("asr", "spk")
ALIASES = ("production", "previous")
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def check_kind(kind: str) -> str:
    """``kind`` if it is a model kind of the registry ("asr" or "spk"), else InvalidInput."""
    if kind not in KINDS:
        raise InvalidInput(f"unknown model kind {kind!r}: expected one of {', '.join(KINDS)}")
    return kind


def check_version(version: str) -> str:
    """``version`` if it is a safe version name (letters, digits, '.', '_', '-')."""
    if not isinstance(version, str) or not _VERSION_RE.match(version) or ".." in version:
        raise InvalidInput(f"invalid model version {version!r}: use letters, digits, '.', '_', '-'")
    return version


def check_alias(name: str) -> str:
    """``name`` if it is an alias of the registry ("production" or "previous")."""
    if name not in ALIASES:
        raise InvalidInput(f"unknown alias {name!r}: expected one of {', '.join(ALIASES)}")
    return name


def new_version_id(now: datetime | None = None) -> str:
    """A fresh version name that sorts by creation time: ``20261122-073012-ab12cd``."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def utc_now() -> str:
    """The current time as an ISO-8601 UTC string (what the registry records)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def version_prefix(kind: str, version: str) -> str:
    """Key prefix of one version's objects."""
    return f"{kind}/versions/{version}/"


def alias_key(kind: str, name: str) -> str:
    """Key of an alias object."""
    return f"{kind}/aliases/{name}"


def history_key(kind: str) -> str:
    """Key of a kind's history log."""
    return f"{kind}/history.jsonl"


def dumps(obj: Any) -> bytes:
    """Stable JSON bytes (sorted keys) for registry documents."""
    return json.dumps(obj, sort_keys=True, indent=1, ensure_ascii=False).encode() + b"\n"


@lru_cache(maxsize=1)
def code_version() -> str:
    """``git describe`` of the source tree when it is a checkout, else the package version."""
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--tags"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        if out.stdout.strip():
            return f"git:{out.stdout.strip()}"
    except (OSError, subprocess.SubprocessError):
        pass
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"speechloop=={version('speechloop')}"
    except PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class VersionInfo:
    """One published (complete) model version: its manifest, metrics and lineage."""

    kind: str
    version: str
    created_at: str
    files: dict[str, dict[str, Any]]
    metrics: dict[str, Any] = field(default_factory=dict)
    lineage: dict[str, Any] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def size(self) -> int:
        """Total bytes of the model files."""
        return sum(int(f["size"]) for f in self.files.values())


@dataclass(frozen=True)
class AliasInfo:
    """Where an alias points, when and why it was set."""

    kind: str
    name: str
    version: str
    promoted_at: str
    reason: str
    action: str = "promote"
    record: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_record(cls, kind: str, name: str, record: dict[str, Any]) -> AliasInfo:
        """Build from the alias JSON (``{"version", "promoted_at", "reason", ...}``)."""
        return cls(
            kind=kind,
            name=name,
            version=str(record["version"]),
            promoted_at=str(record.get("promoted_at", "")),
            reason=str(record.get("reason", "")),
            action=str(record.get("action", "promote")),
            record=record,
        )
