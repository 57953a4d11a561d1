"""Object storage: one interface (:class:`ObjectStore`), local-directory and MinIO backends."""

from speechloop.storage.base import ObjectInfo, ObjectStore

__all__ = ["ObjectInfo", "ObjectStore"]
