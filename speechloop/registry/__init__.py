"""The model registry (bucket ``speech-models``): immutable versions with a sha256
manifest, lineage and metrics; ``production`` / ``previous`` aliases; a history log.

Use :class:`ModelRegistry` (``ModelRegistry(open_store(settings), settings.models_bucket)``, or
:attr:`speechloop.context.AppContext.registry`).
"""

from speechloop.registry.model import KINDS, AliasInfo, VersionInfo, new_version_id
from speechloop.registry.registry import ModelRegistry

__all__ = ["KINDS", "AliasInfo", "ModelRegistry", "VersionInfo", "new_version_id"]
