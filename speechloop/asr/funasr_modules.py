"""funasr's SeACo-Paraformer modules, without running funasr's package ``__init__``.

``import funasr`` runs ``funasr/__init__.py``, which imports every funasr submodule
(transformers, scikit-learn, jieba, ...): about 25 s of CPU on the build machines before
the CLI can transcribe one file. SeACo-Paraformer itself needs a dozen of those modules
and torch. :func:`funasr_module` puts a bare ``funasr`` package object (the installed
package's path, nothing executed) in ``sys.modules`` and imports the modules it needs from
the installed package under their real names: the classes are funasr's own (checkpoints
load unchanged, the registry tables are the real ones). The package's ``__init__`` runs
the first time something asks the package for a name it lacks (``funasr.AutoModel``,
``from funasr import AutoModel``), in the same package object, so ``import funasr`` keeps
working as usual at its usual cost. When funasr is already imported this is a plain import.

funasr's ``load_utils`` prints an ffmpeg notice on import; it is swallowed here (the
serving path decodes audio itself, :mod:`speechloop.audio`).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import sys
import threading
import types
from typing import Any

from speechloop.errors import ModelUnavailable

#: What SeACo-Paraformer's training, inference and export use. Importing the model
#: module registers its classes; the encoder, decoder and predictor modules register
#: the classes its config names.
SEACO_MODULES = (
    "funasr.register",
    "funasr.models.sanm.encoder",
    "funasr.models.paraformer.decoder",
    "funasr.models.paraformer.cif_predictor",
    "funasr.models.bicif_paraformer.cif_predictor",
    "funasr.models.bicif_paraformer.model",
    "funasr.models.seaco_paraformer.model",
    "funasr.models.transformer.utils.add_sos_eos",
    "funasr.models.transformer.utils.nets_utils",
    "funasr.utils.timestamp_tools",
    "funasr.utils.torch_function",
)
_LOCK = threading.RLock()


def _bare_package() -> types.ModuleType:
    """A ``funasr`` package object with the installed package's path and no contents yet.

    Its module ``__getattr__`` runs the real ``__init__`` (once, in this same object) when
    code asks for a name the package does not have yet.
    """
    spec = importlib.util.find_spec("funasr")
    if spec is None or not spec.submodule_search_locations or spec.loader is None:
        raise ModelUnavailable("funasr is not installed: it provides SeacoParaformer")
    package = importlib.util.module_from_spec(spec)
    loader = spec.loader

    def run_init(attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        with _LOCK:
            if package.__dict__.pop("__getattr__", None) is not None:
                loader.exec_module(package)
        return getattr(package, attr)

    vars(package)["__getattr__"] = run_init
    return package


def _load_all() -> None:
    """Import :data:`SEACO_MODULES` under the bare ``funasr`` package."""
    sys.modules["funasr"] = _bare_package()
    with contextlib.redirect_stdout(io.StringIO()):
        for name in SEACO_MODULES:
            importlib.import_module(name)


def funasr_module(name: str) -> Any:
    """The funasr module ``name`` (one of :data:`SEACO_MODULES`), loaded cheaply once."""
    if name in sys.modules:
        return sys.modules[name]
    if "funasr" in sys.modules:  # the real package is imported: nothing to save
        return importlib.import_module(name)
    if name not in SEACO_MODULES:
        raise ValueError(f"{name} is not one of the funasr modules loaded cheaply")
    with _LOCK:
        if "funasr" not in sys.modules:
            _load_all()
    return sys.modules[name]
