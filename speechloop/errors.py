"""The small exception family of speechloop.

Every error a caller can cause derives from :class:`SpeechloopError` and names the bad
input in its message. The service edge maps each class to one HTTP status
(``http_status``), so that bad input gets a 4xx, never a 5xx.
"""

from __future__ import annotations


class SpeechloopError(Exception):
    """Base of all speechloop errors."""

    http_status = 500


class InvalidInput(SpeechloopError):
    """The caller sent something unusable: bad audio, a bad manifest row, too many hotwords."""

    http_status = 400


class AudioError(InvalidInput):
    """Audio that cannot be decoded, is empty, too short or too long."""


class NotFound(SpeechloopError):
    """A key, bucket, model version, alias or speaker that does not exist."""

    http_status = 404


class Conflict(SpeechloopError):
    """A write that would overwrite something immutable, or lost a race."""

    http_status = 409


class IntegrityError(SpeechloopError):
    """Stored bytes do not match their recorded checksum: a tampered or torn object."""

    http_status = 422


class StoreError(SpeechloopError):
    """The object store failed: unreachable endpoint, bad credentials, server fault."""

    http_status = 503


class StoreUnavailable(StoreError):
    """The object-store endpoint cannot be reached (after retries)."""


class StoreAuthError(StoreError):
    """The object store refused the credentials."""

    http_status = 502


class ModelUnavailable(SpeechloopError):
    """A model cannot be loaded (offline hub, missing files, wrong checkpoint)."""

    http_status = 503
