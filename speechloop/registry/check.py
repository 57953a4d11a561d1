"""Check a kind's registry objects and repair what a crash or a fault left behind.

:func:`inspect` re-hashes versions and reads aliases and history, and reports each
problem as a :class:`Finding` (what is wrong, and what :func:`repair` would do about it,
if anything). :func:`repair` fixes only what is derived data or certainly garbage:

- store-level leftovers of killed writers: the store's own ``recover`` (the local
  store settles interrupted writes and removes dead writers' temp files; S3 has none);
- the ``previous`` mirror, rewritten from production's embedded ``previous`` (not while
  production is out of step with history: that would copy a stale record);
- the history line of production's last change, appended from the alias record;
- with ``prune`` only, the objects of a version without a manifest (an interrupted
  publish). Only while no publish runs: a publish in progress looks the same.

It never moves an alias or touches a version with a manifest: a corrupt version, or an
alias pointing at a missing or corrupt one, an unreadable production alias, or a
production put back to a record the history has moved past, is reported for a person
to decide (``models promote``/``rollback``, publish again).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from speechloop.errors import IntegrityError, NotFound
from speechloop.registry import aliases, history
from speechloop.registry.model import alias_key, check_kind, history_key, version_prefix
from speechloop.registry.registry import ModelRegistry

MIRROR = "mirror_out_of_sync"
HISTORY_MISSING = "history_missing_change"
PARTIAL = "partial_version"
OUT_OF_STEP = "production_out_of_step"


@dataclass(frozen=True)
class Finding:
    """One problem: the object (or version) concerned, what is wrong, how it is fixed.

    ``fix`` says what ``repair`` does about it; None means repair leaves it to a person.
    """

    code: str
    subject: str
    problem: str
    fix: str | None = None

    def __str__(self) -> str:
        return f"{self.subject}: {self.problem}"


@dataclass
class Report:
    """The state of one kind: versions verified, aliases, and every problem found."""

    kind: str
    verified: list[str] = field(default_factory=list)
    production: str | None = None
    previous: str | None = None
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether nothing is wrong."""
        return not self.findings


@dataclass
class RepairReport:
    """What :func:`repair` did (``fixed``) and what it left (``left``)."""

    kind: str
    fixed: list[str] = field(default_factory=list)
    left: list[Finding] = field(default_factory=list)


def _version_objects(reg: ModelRegistry, kind: str) -> dict[str, list[str]]:
    """Every version name under ``<kind>/versions/`` with the keys of its objects."""
    root = f"{kind}/versions/"
    found: dict[str, list[str]] = {}
    try:
        for info in reg.store.list(reg.bucket, root):
            name = info.key[len(root) :].split("/", 1)[0]
            found.setdefault(name, []).append(info.key)
    except NotFound:  # no models bucket yet
        return {}
    return found


def _check_versions(reg: ModelRegistry, report: Report, version: str | None) -> set[str]:
    """Re-hash every version (or only ``version``); the names with a manifest."""
    kind = report.kind
    objects = _version_objects(reg, kind)
    complete = {
        n for n, keys in objects.items() if version_prefix(kind, n) + "manifest.json" in keys
    }
    if version is not None and version not in complete:
        raise NotFound(f"model version {kind}/{version} does not exist (or is incomplete)")
    for name in sorted(objects) if version is None else [version]:
        subject = f"{kind}/versions/{name}"
        if name not in complete:
            count = len(objects[name])
            report.findings.append(
                Finding(
                    PARTIAL,
                    subject,
                    f"{count} object(s) without a manifest (an interrupted or running publish)",
                    f"--prune deletes its {count} object(s)",
                )
            )
            continue
        try:
            reg.verify(kind, name)
        except (IntegrityError, NotFound) as exc:
            report.findings.append(Finding("corrupt_version", subject, str(exc)))
            continue
        report.verified.append(name)
    return complete


def _check_production(
    reg: ModelRegistry, report: Report, complete: set[str]
) -> dict[str, Any] | None:
    """Read the production alias; note where it and its ``previous`` point."""
    kind, key = report.kind, alias_key(report.kind, "production")
    try:
        record = aliases.read_production(reg.store, reg.bucket, kind)
    except (IntegrityError, NotFound) as exc:
        report.findings.append(
            Finding(
                "alias_unreadable",
                key,
                f"{exc}; `models promote` (or `models rollback --to`) of a verified "
                "version replaces it, recorded in history",
            )
        )
        return None
    if record is None:
        return None
    report.production = str(record["version"])
    previous = record.get("previous")
    report.previous = str(previous["version"]) if isinstance(previous, dict) else None
    corrupt = {f.subject for f in report.findings if f.code == "corrupt_version"}
    for name, target in (("production", report.production), ("previous", report.previous)):
        if target is None:
            continue
        if target not in complete:
            problem = f"{name} points at {kind}/{target}, which is missing or incomplete"
        elif f"{kind}/versions/{target}" in corrupt:
            problem = f"{name} points at {kind}/{target}, which fails verification"
        else:
            continue
        report.findings.append(Finding(f"{name}_bad_version", key, problem))
    return record


def _check_mirror(reg: ModelRegistry, report: Report, record: dict[str, Any] | None) -> None:
    if record is None or not record.get("previous"):
        return
    if not aliases.mirror_in_sync(reg.store, reg.bucket, report.kind):
        report.findings.append(
            Finding(
                MIRROR,
                alias_key(report.kind, "previous"),
                "differs from the previous version recorded in production",
                "rewrite it from production",
            )
        )


def _check_history(reg: ModelRegistry, report: Report, record: dict[str, Any] | None) -> None:
    kind, key = report.kind, history_key(report.kind)
    try:
        log = history.read_log(reg.store, reg.bucket, kind)
    except IntegrityError as exc:
        report.findings.append(Finding("history_unreadable", key, str(exc)))
        return
    tokens = [str(r["write_id"]) for r in log if r.get("write_id")]
    if len(tokens) != len(set(tokens)):
        dup = len(tokens) - len(set(tokens))
        report.findings.append(
            Finding("history_duplicate", key, f"{dup} line(s) repeat a change (read once)")
        )
    change = history.pending_change(record)
    if change is not None and not history.has_write(log, str(change["write_id"])):
        report.findings.append(
            Finding(
                HISTORY_MISSING,
                key,
                f"misses the last change ({change.get('action')} {kind}/{change.get('version')})",
                "append it from the production alias",
            )
        )
    elif change is not None and record is not None:
        _check_step(report, record, change, log)


def _check_step(
    report: Report,
    record: dict[str, Any],
    change: dict[str, Any],
    log: list[dict[str, Any]],
) -> None:
    """Report production when its change is not the history's last alias change (put
    back to an older record, e.g. by a restore): the log and the alias disagree."""
    last = history.last_alias_change(log)
    if last is None or last.get("write_id") == change["write_id"]:
        return
    mine = next((r for r in log if r.get("write_id") == change["write_id"]), {})
    kind = report.kind
    report.findings.append(
        Finding(
            OUT_OF_STEP,
            alias_key(kind, "production"),
            f"out of step with history: production is {kind}/{record['version']} "
            f"(history seq {mine.get('seq', '?')}, write_id {change['write_id']}), but "
            f"the history's last alias change is seq {last.get('seq')} "
            f"({last.get('action')} -> {kind}/{last.get('version')}, write_id "
            f"{last.get('write_id')}); promote or roll back to settle it",
        )
    )


def inspect(reg: ModelRegistry, kind: str, *, version: str | None = None) -> Report:
    """Re-hash the versions of ``kind`` (or only ``version``), check aliases and history."""
    report = Report(check_kind(kind))
    complete = _check_versions(reg, report, version)
    record = _check_production(reg, report, complete)
    _check_mirror(reg, report, record)
    _check_history(reg, report, record)
    return report


def _recover_store(reg: ModelRegistry, kind: str, out: RepairReport) -> None:
    """Let the store settle what killed writers left (a no-op on S3)."""
    try:
        result = reg.store.recover(reg.bucket, f"{kind}/")
    except NotFound:  # no models bucket yet
        return
    out.fixed.extend(f"{item.key}: {item.action}" for item in result.fixed)
    out.left.extend(Finding("torn_object", item.key, item.action) for item in result.unfixable)
    if result.temp_files_removed:
        out.fixed.append(f"removed {result.temp_files_removed} temp file(s) of dead writers")


def _prune(reg: ModelRegistry, kind: str, finding: Finding) -> str:
    """Delete the objects of a version without a manifest (re-checked first)."""
    name = finding.subject.rsplit("/", 1)[1]
    keys = _version_objects(reg, kind).get(name, [])
    if version_prefix(kind, name) + "manifest.json" in keys:
        return f"{finding.subject}: kept (its manifest appeared: the publish completed)"
    for key in keys:
        reg.store.delete(reg.bucket, key)
    return f"{finding.subject}: deleted {len(keys)} object(s) of an incomplete version"


def repair(reg: ModelRegistry, kind: str, *, prune: bool = False) -> RepairReport:
    """Fix what can be fixed safely (see the module docstring); report the rest."""
    out = RepairReport(check_kind(kind))
    _recover_store(reg, kind, out)
    torn = {f.subject for f in out.left}
    findings = inspect(reg, kind).findings
    out_of_step = any(f.code == OUT_OF_STEP for f in findings)
    for finding in findings:
        if finding.code == MIRROR and out_of_step:
            out.left.append(
                Finding(MIRROR, finding.subject, f"{finding.problem} (kept: production is stale)")
            )
        elif finding.code == MIRROR:
            aliases.sync_previous(reg.store, reg.bucket, kind)
            out.fixed.append(f"{finding.subject}: rewritten from production")
        elif finding.code == HISTORY_MISSING:
            record = aliases.read_production(reg.store, reg.bucket, kind)
            history.catch_up(reg.store, reg.bucket, kind, record)
            out.fixed.append(f"{finding.subject}: appended the last change from production")
        elif finding.code == PARTIAL and prune:
            out.fixed.append(_prune(reg, kind, finding))
        elif finding.subject not in torn:
            out.left.append(finding)
    return out
