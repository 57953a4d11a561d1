"""Object storage: one interface (:class:`ObjectStore`), local-directory and MinIO backends.

:func:`open_store` turns the configured store URL into a backend:

- ``file://<dir>``: :class:`~speechloop.storage.local.LocalStore` on ``<dir>``
  (``file:///abs/path`` or ``file://./rel/path``; a relative path is taken relative
  to the current working directory);
- ``s3://``: :class:`~speechloop.storage.s3.MinioStore` on ``settings.s3_endpoint``
  with the ``settings.s3_*`` credentials and the retry policy of the settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from speechloop.errors import InvalidInput
from speechloop.storage.base import ObjectInfo, ObjectStore

if TYPE_CHECKING:
    from speechloop.config import Settings

__all__ = ["ObjectInfo", "ObjectStore", "open_store", "store_path_from_url"]


def store_path_from_url(url: str) -> Path:
    """The local directory named by a ``file://`` URL (relative paths from the CWD)."""
    if not url.startswith("file://"):
        raise InvalidInput(f"not a file:// store URL: {url!r}")
    rest = url[len("file://") :]
    if not rest:
        raise InvalidInput(f"store URL {url!r} names no directory")
    return Path(rest).expanduser().resolve()


def open_store(settings: Settings) -> ObjectStore:
    """The object store named by ``settings.store``."""
    url = settings.store
    if url.startswith("file://"):
        from speechloop.storage.local import LocalStore

        return LocalStore(store_path_from_url(url))
    if url.startswith("s3://"):
        from speechloop.storage.s3 import MinioStore

        return MinioStore.from_settings(settings)
    raise InvalidInput(f"unsupported store URL {url!r}: use file://<dir> or s3://")
