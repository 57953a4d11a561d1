"""API-key checks: several keys, constant-time comparison, nothing logged.

Keys are compared as SHA-256 digests with :func:`hmac.compare_digest` against every
configured key (no early exit), so neither the position of a mismatch nor which key
matched shows in the timing. Keys never appear in logs, errors or ``repr``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence


class ApiKeys:
    """The set of accepted keys; empty and ``enabled=False`` means auth is off."""

    def __init__(self, keys: Sequence[str], *, enabled: bool = True) -> None:
        self.enabled = enabled
        self._digests = [hashlib.sha256(k.encode()).digest() for k in keys]
        if enabled and not self._digests:
            raise ValueError("auth is on but no API key is configured")

    def __repr__(self) -> str:
        return f"ApiKeys(<{len(self._digests)} keys>, enabled={self.enabled})"

    def accepts(self, key: str) -> bool:
        """Whether ``key`` is one of the configured keys (constant time in the key)."""
        probe = hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()
        found = False
        for digest in self._digests:
            found |= hmac.compare_digest(probe, digest)
        return found


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
