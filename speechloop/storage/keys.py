"""Names in the object store: what a bucket name and an object key may look like.

Shared by every backend so that a key accepted by one is accepted by all, and no key
can escape a bucket directory on the local backend.
"""

from __future__ import annotations

import re

from speechloop.errors import InvalidInput

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def validate_bucket(bucket: str) -> str:
    """Return ``bucket`` if it is a valid S3-style bucket name, else raise InvalidInput."""
    if not isinstance(bucket, str) or not _BUCKET_RE.match(bucket) or ".." in bucket:
        raise InvalidInput(f"invalid bucket name {bucket!r} (3-63 chars: a-z, 0-9, '.', '-')")
    return bucket


def validate_key(key: str) -> str:
    """Return ``key`` if it is a safe relative object key, else raise InvalidInput.

    Refused: empty keys, absolute paths, backslashes, NUL, and empty, ``.`` or ``..``
    segments (they would escape the bucket directory or alias another key).
    """
    if not isinstance(key, str) or not key:
        raise InvalidInput(f"invalid object key {key!r}: empty")
    if key.startswith("/") or "\\" in key or "\x00" in key:
        raise InvalidInput(f"invalid object key {key!r}: absolute path, backslash or NUL")
    for seg in key.split("/"):
        if seg in ("", ".", ".."):
            raise InvalidInput(f"invalid object key {key!r}: empty, '.' or '..' path segment")
    return key
