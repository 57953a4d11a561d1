"""funasr's ERes2NetV2 class, without funasr's 30-second package import.

``import funasr`` imports every funasr submodule (transformers, scikit-learn, ...): about
35 s of CPU on the build machines, which the CLI and the tests cannot afford. The
ERes2NetV2 network itself is three small files of the installed funasr package
(``models/eres2net/eres2netv2.py``, ``models/eres2net/fusion.py``,
``models/sond/pooling/pooling_layers.py``) that need only torch. :func:`eres2netv2_class`
executes those files of the installed package under private module names, so the class
is funasr's code (real checkpoints load into it unchanged), and the real package stays
importable afterwards. When funasr is already imported, its own class is used.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from functools import lru_cache
from pathlib import Path

from speechloop.errors import ModelUnavailable

_PRIVATE = "speechloop.speaker._funasr"
_NEEDED = {
    "funasr.models.sond.pooling.pooling_layers": "models/sond/pooling/pooling_layers.py",
    "funasr.models.eres2net.fusion": "models/eres2net/fusion.py",
}
_CLASS_FILE = "models/eres2net/eres2netv2.py"


def _funasr_root() -> Path:
    """Directory of the installed funasr package (without importing it)."""
    spec = importlib.util.find_spec("funasr")
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailable("funasr is not installed: it provides the ERes2NetV2 class")
    return Path(next(iter(spec.submodule_search_locations)))


def _exec_file(name: str, path: Path) -> types.ModuleType:
    """Execute one source file as module ``name``."""
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ModelUnavailable(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@lru_cache(maxsize=1)
def eres2netv2_class() -> type:
    """funasr's ``ERes2NetV2`` class (see the module docstring)."""
    if "funasr.models.eres2net.eres2netv2" in sys.modules:
        return sys.modules["funasr.models.eres2net.eres2netv2"].ERes2NetV2
    root = _funasr_root()
    loaded = {
        real: _exec_file(f"{_PRIVATE}.{Path(rel).stem}", root / rel)
        for real, rel in _NEEDED.items()
    }
    # The class file imports its two helpers by their funasr names; answer those imports
    # from the private copies, with empty parent packages, only while it executes.
    stubs: dict[str, types.ModuleType] = {}
    for real in loaded:
        parts = real.split(".")
        for i in range(1, len(parts)):
            stubs.setdefault(".".join(parts[:i]), types.ModuleType(".".join(parts[:i])))
    saved = {k: sys.modules.get(k) for k in [*stubs, *loaded]}
    try:
        sys.modules.update(stubs)
        sys.modules.update(loaded)
        for real, module in loaded.items():
            parent, _, leaf = real.rpartition(".")
            setattr(sys.modules[parent], leaf, module)
        for name, stub in stubs.items():
            parent, _, leaf = name.rpartition(".")
            if parent:
                setattr(sys.modules[parent], leaf, stub)
        module = _exec_file(f"{_PRIVATE}.eres2netv2", root / _CLASS_FILE)
    finally:
        for key, value in saved.items():
            if value is None:
                sys.modules.pop(key, None)
            else:
                sys.modules[key] = value
    return module.ERes2NetV2
