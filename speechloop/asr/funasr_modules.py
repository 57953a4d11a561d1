"""funasr's SeACo-Paraformer modules, without running funasr's package ``__init__``.

``import funasr`` runs ``funasr/__init__.py``, which imports every funasr submodule
(transformers, scikit-learn, jieba, ...): about 25 s of CPU on the build machines before
the CLI can transcribe one file. SeACo-Paraformer itself needs a dozen of those modules
and torch. :func:`funasr_module` puts a bare ``funasr`` package object (the installed
package's path, nothing executed) in ``sys.modules`` and imports the modules it needs from
the installed package under their real names: the classes are funasr's own (checkpoints
load unchanged, the registry tables are the real ones). The package's ``__init__`` runs
the first time something asks the package for a name it lacks (``funasr.AutoModel``,
``from funasr import AutoModel``) or imports another funasr submodule (its registry
tables need every module), in the same package object, so ``import funasr`` keeps
working as usual at its usual cost. When funasr is already imported this is a plain import.

funasr's ``load_utils`` prints an ffmpeg notice on import; it is swallowed here (the
serving path decodes audio itself, :mod:`speechloop.audio`).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.abc
import importlib.util
import io
import sys
import threading
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
    "funasr.models.specaug.mask_along_axis",
    "funasr.models.specaug.time_warp",
    "funasr.models.specaug.specaug",
    "funasr.models.transformer.utils.add_sos_eos",
    "funasr.models.transformer.utils.nets_utils",
    "funasr.utils.timestamp_tools",
    "funasr.utils.torch_function",
)
_LOCK = threading.RLock()


class _Bare:
    """The stand-in ``funasr`` package and the switch that completes it.

    The real ``__init__`` runs (once, in the same package object) when code asks the
    package for a name it lacks (``funasr.AutoModel``) or imports any funasr submodule
    outside :data:`SEACO_MODULES` (e.g. ``funasr.train_utils.trainer``, whose classes
    are looked up in registry tables that only the full ``__init__`` fills).
    """

    def __init__(self) -> None:
        spec = importlib.util.find_spec("funasr")
        if spec is None or not spec.submodule_search_locations or spec.loader is None:
            raise ModelUnavailable("funasr is not installed: it provides SeacoParaformer")
        self.package = importlib.util.module_from_spec(spec)
        self.loader = spec.loader
        self.loading = True  # importing SEACO_MODULES: no completion yet
        self.complete = False
        vars(self.package)["__getattr__"] = self._getattr

    def _getattr(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        self.run_init()
        return getattr(self.package, attr)

    def run_init(self) -> None:
        """Execute funasr's ``__init__`` in the package object, once."""
        with _LOCK:
            if self.complete:
                return
            self.complete = True
            vars(self.package).pop("__getattr__", None)
            self.loader.exec_module(self.package)


class _CompleteOnForeignImport(importlib.abc.MetaPathFinder):
    """Runs the real ``__init__`` before a funasr submodule we did not load is imported."""

    def __init__(self, bare: _Bare) -> None:
        self.bare = bare

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        """Never finds anything itself; only completes the package first when needed."""
        bare = self.bare
        if name.startswith("funasr.") and not (bare.loading or bare.complete):
            bare.run_init()
        return


def _load_all() -> None:
    """Import :data:`SEACO_MODULES` under the bare ``funasr`` package."""
    bare = _Bare()
    sys.modules["funasr"] = bare.package
    sys.meta_path.insert(0, _CompleteOnForeignImport(bare))
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            for name in SEACO_MODULES:
                importlib.import_module(name)
    finally:
        bare.loading = False


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
