"""The ModelScope path is real code that fails offline with instructions (hub mocked)."""

from __future__ import annotations

import sys
import types
from unittest import mock

import pytest

from speechloop.asr import hub
from speechloop.errors import ModelUnavailable


def test_offline_download_says_what_to_do():
    """A network failure inside snapshot_download becomes ModelUnavailable naming the model,
    the pinned revision and the --model-dir alternative. (The hub is mocked: no network.)"""

    def offline(model_id: str, revision: str) -> str:
        raise ConnectionError("name resolution failed")

    fake = types.ModuleType("modelscope.hub.snapshot_download")
    fake.snapshot_download = offline  # type: ignore[attr-defined]
    modules = {"modelscope.hub.snapshot_download": fake}
    with mock.patch.dict(sys.modules, modules), pytest.raises(ModelUnavailable) as err:
        hub.download()
    msg = str(err.value)
    assert hub.MODEL_ID in msg and hub.REVISION in msg and "--model-dir" in msg


def test_incomplete_snapshot_is_refused(tmp_path):
    """A snapshot directory lacking model files is refused, naming what is missing."""
    (tmp_path / "config.yaml").write_text("model: SeacoParaformer\n")
    fake = types.ModuleType("modelscope.hub.snapshot_download")
    fake.snapshot_download = lambda model_id, revision: str(tmp_path)  # type: ignore[attr-defined]
    modules = {"modelscope.hub.snapshot_download": fake}
    with mock.patch.dict(sys.modules, modules), pytest.raises(ModelUnavailable, match="model"):
        hub.download()
