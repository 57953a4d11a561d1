"""funasr's SeACo modules load without funasr's package ``__init__`` (CLI start-up)."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("torch")

_FOREIGN = """
import sys
from speechloop.asr.model import build_seaco, seed_config
build_seaco(seed_config(40, 4, d=32))
from funasr.register import tables
before = tables.frontend_classes.get("WavFrontend") is not None
from funasr.train_utils.trainer import Trainer  # not one of the cheaply loaded modules
ran = "import_submodules" in vars(sys.modules["funasr"])  # defined by the real __init__
print(before, tables.frontend_classes.get("WavFrontend") is not None, ran)
"""

_SCRIPT = """
import sys
from speechloop.asr.model import build_seaco, seed_config
model = build_seaco(seed_config(40, 4, d=32))
print(type(model).__module__)
print("AutoModel" in vars(sys.modules["funasr"]), "funasr.auto.auto_model" in sys.modules)
import funasr
seaco = funasr.models.seaco_paraformer.model.SeacoParaformer
print(hasattr(funasr, "AutoModel"), type(model) is seaco)
"""


def test_seaco_builds_without_funasr_init_and_real_package_still_imports():
    """Building a SeacoParaformer imports funasr's model modules but not the package
    ``__init__`` (which pulls in every submodule); a later ``import funasr`` is the real
    package, and its class is the very class the model was built from."""
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT], capture_output=True, text=True, timeout=300, check=True
    ).stdout.split("\n")
    assert out[0] == "funasr.models.seaco_paraformer.model"
    assert out[1] == "False False"
    assert out[2] == "True True"


def test_importing_another_funasr_submodule_completes_the_package_first():
    """A funasr submodule outside the cheap set (here funasr's trainer, which looks
    classes up by name) makes the real ``__init__`` run first, so funasr's registry
    tables are complete, as after ``import funasr``."""
    out = subprocess.run(
        [sys.executable, "-c", _FOREIGN], capture_output=True, text=True, timeout=300, check=True
    ).stdout.split("\n")
    assert out[0] == "False True True"
