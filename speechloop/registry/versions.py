"""Immutable model versions: publish, list, show, verify and fetch.

A version is uploaded file by file, then ``metrics.json`` and ``lineage.json``, and
last ``manifest.json`` (sha256 and size of every file, and the publication's write id)
with ``if_none_match``: the manifest is the commit point, so a half-uploaded version is
invisible and an existing version can never be overwritten. Every read checks bytes
against the manifest.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

from speechloop.errors import Conflict, IntegrityError, InvalidInput, NotFound
from speechloop.registry.cas import new_write_id, put_checked
from speechloop.registry.model import (
    VersionInfo,
    check_kind,
    check_version,
    code_version,
    dumps,
    new_version_id,
    utc_now,
    version_prefix,
)
from speechloop.storage.base import ObjectStore
from speechloop.storage.keys import validate_key

DOCUMENTS = ("metrics.json", "lineage.json")


def _lineage(lineage: dict[str, Any]) -> dict[str, Any]:
    full = {"parent": None, "data_batches": [], "training_config": {}, **lineage}
    full.setdefault("code_version", code_version())
    return full


def publish(
    store: ObjectStore,
    bucket: str,
    kind: str,
    src_dir: Path,
    *,
    metrics: dict[str, Any],
    lineage: dict[str, Any],
    version: str | None = None,
    run_id: str | None = None,
) -> VersionInfo:
    """Upload every file under ``src_dir`` as a new version; the manifest goes last.

    The manifest carries the publication's ``write_id``: if the reply to its
    conditional put is lost and the retry meets the manifest, the token tells our own
    publication (success) from a rival's (Conflict).
    """
    check_kind(kind)
    version = check_version(version) if version is not None else new_version_id()
    write_id = new_write_id("publish", kind, version, run_id)
    src_dir = Path(src_dir)
    files = sorted(p for p in src_dir.rglob("*") if p.is_file()) if src_dir.is_dir() else []
    if not files:
        raise InvalidInput(f"model directory {src_dir} is missing or has no files")
    prefix = version_prefix(kind, version)
    if _published_by(store, bucket, kind, version, write_id):
        return show(store, bucket, kind, version)  # a re-run of the same run: done
    if store.exists(bucket, prefix + "manifest.json"):
        raise Conflict(f"model version {kind}/{version} already exists; versions are immutable")
    entries: dict[str, dict[str, Any]] = {}
    for path in files:
        rel = validate_key(path.relative_to(src_dir).as_posix())
        info = store.put_file(bucket, f"{prefix}files/{rel}", path)
        entries[rel] = {"sha256": info.sha256, "size": info.size}
    documents: dict[str, dict[str, Any]] = {}
    for name, doc in (("metrics.json", metrics), ("lineage.json", _lineage(lineage))):
        info = store.put_bytes(bucket, prefix + name, dumps(doc))
        documents[name] = {"sha256": info.sha256, "size": info.size}
    manifest = {
        "version": version,
        "kind": kind,
        "created_at": utc_now(),
        "files": entries,
        "documents": documents,
        "write_id": write_id,
    }

    def landed() -> bool:
        return _published_by(store, bucket, kind, version, write_id)

    if not put_checked(
        store, bucket, prefix + "manifest.json", dumps(manifest), etag=None, landed=landed
    ):
        raise Conflict(f"model version {kind}/{version} already exists; versions are immutable")
    return show(store, bucket, kind, version)


def _published_by(store: ObjectStore, bucket: str, kind: str, version: str, write_id: str) -> bool:
    """Whether the manifest of ``kind/version`` exists and carries ``write_id``."""
    key = version_prefix(kind, version) + "manifest.json"
    try:
        manifest = json.loads(store.get_bytes(bucket, key))
    except (NotFound, IntegrityError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("write_id") == write_id


def list_versions(store: ObjectStore, bucket: str, kind: str) -> list[str]:
    """Complete versions of ``kind`` (those with a manifest), oldest first."""
    root = f"{check_kind(kind)}/versions/"
    found = []
    for info in store.list(bucket, root):
        rest = info.key[len(root) :]
        name, _, tail = rest.partition("/")
        if tail == "manifest.json":
            found.append(name)
    return sorted(found)


def _manifest(store: ObjectStore, bucket: str, kind: str, version: str) -> dict[str, Any]:
    key = version_prefix(check_kind(kind), check_version(version)) + "manifest.json"
    try:
        manifest: dict[str, Any] = json.loads(store.get_bytes(bucket, key))
    except NotFound:
        raise NotFound(
            f"model version {kind}/{version} does not exist (or is incomplete)"
        ) from None
    except ValueError as exc:
        raise IntegrityError(f"manifest of {kind}/{version} is not JSON: {exc}") from None
    if manifest.get("version") != version or manifest.get("kind") != kind:
        raise IntegrityError(f"manifest of {kind}/{version} names another version")
    return manifest


def _document(store: ObjectStore, bucket: str, manifest: dict[str, Any], name: str) -> Any:
    kind, version = manifest["kind"], manifest["version"]
    data = store.get_bytes(bucket, version_prefix(kind, version) + name)
    expected = manifest.get("documents", {}).get(name, {}).get("sha256")
    if expected is not None and hashlib.sha256(data).hexdigest() != expected:
        raise IntegrityError(f"{kind}/{version}/{name} does not match its manifest checksum")
    return json.loads(data)


def show(store: ObjectStore, bucket: str, kind: str, version: str) -> VersionInfo:
    """A complete version's manifest, metrics and lineage (checksums of the JSON checked)."""
    manifest = _manifest(store, bucket, kind, version)
    return VersionInfo(
        kind=kind,
        version=version,
        created_at=str(manifest.get("created_at", "")),
        files=dict(manifest.get("files", {})),
        metrics=_document(store, bucket, manifest, "metrics.json"),
        lineage=_document(store, bucket, manifest, "lineage.json"),
        manifest=manifest,
    )


def _check_entry(info: VersionInfo, rel: str, sha: str, size: int) -> None:
    entry = info.files[rel]
    if sha != entry["sha256"] or size != int(entry["size"]):
        raise IntegrityError(
            f"model file {info.kind}/{info.version}/{rel} is corrupt: sha256 {sha} "
            f"(size {size}) != manifest {entry['sha256']} (size {entry['size']})"
        )


def verify(store: ObjectStore, bucket: str, kind: str, version: str) -> VersionInfo:
    """Re-hash every file of a version from the store; IntegrityError names a bad file."""
    info = show(store, bucket, kind, version)
    prefix = version_prefix(kind, version) + "files/"
    with tempfile.TemporaryDirectory(prefix="speechloop-verify-") as tmp:
        for rel in sorted(info.files):
            dest = Path(tmp) / "f"
            try:
                got = store.get_file(bucket, prefix + validate_key(rel), dest)
            except IntegrityError as exc:
                raise IntegrityError(f"model file {kind}/{version}/{rel}: {exc}") from None
            except NotFound:
                raise IntegrityError(f"model file {kind}/{version}/{rel} is missing") from None
            _check_entry(info, rel, got.sha256, got.size)
            dest.unlink()
    return info


def _local_sha(path: Path) -> str | None:
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(store: ObjectStore, bucket: str, kind: str, version: str, dest_dir: Path) -> Path:
    """Download a version's files into ``dest_dir``, verified against the manifest.

    Files already there with the right sha256 are not downloaded again (a cache); a
    file that fails verification is removed and IntegrityError names it.
    """
    info = show(store, bucket, kind, version)
    dest_dir = Path(dest_dir)
    prefix = version_prefix(kind, version) + "files/"
    for rel, entry in sorted(info.files.items()):
        target = dest_dir / validate_key(rel)
        if _local_sha(target) == entry["sha256"]:
            continue
        try:
            got = store.get_file(bucket, prefix + rel, target)
        except IntegrityError as exc:
            raise IntegrityError(f"model file {kind}/{version}/{rel}: {exc}") from None
        except NotFound:
            raise IntegrityError(f"model file {kind}/{version}/{rel} is missing") from None
        try:
            _check_entry(info, rel, got.sha256, got.size)
        except IntegrityError:
            target.unlink(missing_ok=True)
            raise
    return dest_dir
