"""The one ASR engine interface over torch and ONNX Runtime, on the shipped seed.

Spoken clips come from espeak-ng (the seed was trained on such speech), so the texts
are meaningful and both backends can be compared token by token.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from speechloop.asr.engine import (
    AsrOutput,
    HotwordAsr,
    TokenStamp,
    make_asr_engine,
    onnx_dir_for,
)
from speechloop.errors import InvalidInput, ModelUnavailable, NotFound
from tests.unit.asr_engine_support import seed_engine, spoken_clips

HOTWORDS = ["brakovan", "kalo venturi"]


def _cer(a: str, b: str) -> float:
    """Character edit distance over the longer length."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1] / max(len(a), len(b), 1)


@pytest.fixture(scope="module")
def outputs() -> dict[str, list[AsrOutput]]:
    """Each backend's outputs on the two clips, batched, with one hotword list."""
    clips = list(spoken_clips())
    out = {}
    for backend in ("torch", "onnx", "onnx-int8"):
        engine = seed_engine(backend)
        out[backend] = engine.transcribe(clips, engine.parse_hotwords(HOTWORDS))
    return out


def test_backends_give_one_result_type_in_seconds(outputs: dict[str, list[AsrOutput]]) -> None:
    """Every backend returns AsrOutput with TokenStamp timestamps in seconds: ordered,
    inside the audio, one per token; duration is the clip's length."""
    clips = spoken_clips()
    for backend, results in outputs.items():
        assert len(results) == len(clips)
        for res, clip in zip(results, clips, strict=True):
            assert type(res) is AsrOutput and res.text
            assert res.duration_s == pytest.approx(len(clip) / 16000, abs=1e-3)
            assert all(type(s) is TokenStamp for s in res.timestamps), backend
            starts = [s.start_s for s in res.timestamps]
            assert starts == sorted(starts)
            assert all(0 <= s.start_s < s.end_s <= res.duration_s + 0.1 for s in res.timestamps)
            assert set(res.hotwords_found) <= set(HOTWORDS)
            assert set(res.to_dict()) == {"text", "hotwords_found", "timestamps", "duration_s"}


def test_backends_agree_on_the_seed(outputs: dict[str, list[AsrOutput]]) -> None:
    """Float ONNX gives torch's text and found hotwords exactly, with token times within
    0.1 s; int8 stays close (character error against torch under 20%)."""
    for t, o, q in zip(outputs["torch"], outputs["onnx"], outputs["onnx-int8"], strict=True):
        assert o.text == t.text
        assert o.hotwords_found == t.hotwords_found
        assert [s.token for s in o.timestamps] == [s.token for s in t.timestamps]
        gaps = [abs(a.start_s - b.start_s) for a, b in zip(o.timestamps, t.timestamps, strict=True)]
        assert max(gaps) <= 0.1
        assert _cer(q.text, t.text) < 0.2, (q.text, t.text)


def test_each_utterance_can_carry_its_own_list() -> None:
    """transcribe_each (the batched-requests case) gives each clip what it gets alone with
    its own list, on both backends."""
    clips = list(spoken_clips())
    for backend in ("torch", "onnx"):
        engine = seed_engine(backend)
        lists = [engine.parse_hotwords(HOTWORDS), None]
        alone = [engine.transcribe([c], hl)[0] for c, hl in zip(clips, lists, strict=True)]
        together = engine.transcribe_each(clips, lists)
        assert [r.text for r in together] == [r.text for r in alone], backend


def test_bad_audio_is_refused_by_name() -> None:
    """No audio, empty, stereo-shaped or non-finite samples: InvalidInput naming which."""
    engine = seed_engine("onnx")
    ok = np.zeros(8000, np.float32)
    with pytest.raises(InvalidInput, match="no audio"):
        engine.transcribe([])
    with pytest.raises(InvalidInput, match=r"audio\[1\] is empty"):
        engine.transcribe([ok, np.zeros(0, np.float32)])
    with pytest.raises(InvalidInput, match=r"audio\[0\] must be mono"):
        engine.transcribe([np.zeros((2, 8000), np.float32)])
    bad = ok.copy()
    bad[10] = np.nan
    with pytest.raises(InvalidInput, match="NaN"):
        engine.transcribe([bad])
    with pytest.raises(InvalidInput, match="1 hotword lists for 2"):
        engine.transcribe_each([ok, ok], [None])


def test_engine_reports_version_backend_device_and_threads() -> None:
    """describe() names version, backend, CPU device and limits; the thread setting reaches
    onnxruntime's session."""
    engine = seed_engine("onnx-int8")
    assert isinstance(engine, HotwordAsr)
    info = engine.describe()
    assert info["version"] == "seed" and info["backend"] == "onnx-int8"
    assert info["device"] == "cpu"
    assert info["hotword_limits"] == {"max_count": 49, "max_chars": 40, "max_tokens": 12}
    session = engine._backend.asr._asr  # type: ignore[attr-defined]
    assert session.get_session_options().intra_op_num_threads == 2
    assert session.get_providers() == ["CPUExecutionProvider"]


def test_device_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    """CUDA is picked when onnxruntime offers it, CPU otherwise; asking for CUDA where there
    is none is an error, not a fallback. (No GPU here: the provider list is faked, the
    only mock in this file.)"""
    import onnxruntime as ort

    from speechloop.asr.onnx_infer import select_providers

    real = ort.get_available_providers()
    if "CUDAExecutionProvider" not in real:
        assert select_providers(None) == ["CPUExecutionProvider"]
        with pytest.raises(InvalidInput, match="CUDAExecutionProvider"):
            select_providers("cuda")
    monkeypatch.setattr(
        ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    assert select_providers(None)[0] == ("CUDAExecutionProvider", {"device_id": 0})
    assert select_providers("cuda:1")[0] == ("CUDAExecutionProvider", {"device_id": 1})
    assert select_providers("cpu") == ["CPUExecutionProvider"]
    with pytest.raises(InvalidInput, match="unknown device"):
        select_providers("tpu")


def test_factory_refuses_what_it_cannot_load(tmp_path: Path) -> None:
    """Unknown backend, missing directory, and a directory without graphs or weights when
    no export cache is given: each error names the problem."""
    with pytest.raises(InvalidInput, match="unknown ASR backend 'tensorrt'"):
        make_asr_engine(tmp_path, backend="tensorrt")
    with pytest.raises(ModelUnavailable, match="does not exist"):
        make_asr_engine(tmp_path / "nope")
    with pytest.raises(NotFound, match=r"onnx_meta\.json"):
        make_asr_engine(tmp_path, backend="onnx")
    (tmp_path / "model.pt").write_bytes(b"weights")
    with pytest.raises(NotFound, match="carries no ONNX graphs"):
        onnx_dir_for(tmp_path, quantized=True)


def test_graphs_in_an_onnx_subdirectory_are_used_as_they_are(tmp_path: Path) -> None:
    """A version's own ``onnx/`` graphs are found first; nothing is exported."""
    sub = tmp_path / "onnx"
    sub.mkdir()
    (sub / "onnx_meta.json").write_text("{}")
    assert onnx_dir_for(tmp_path) == sub
    (tmp_path / "onnx_meta.json").write_text("{}")
    assert onnx_dir_for(tmp_path) == sub
    with pytest.raises(NotFound, match=r"model_asr_quant\.onnx"):
        onnx_dir_for(tmp_path, quantized=True)


def test_output_is_immutable() -> None:
    """Results are frozen values (a cache or a batcher can hand them out safely)."""
    out = AsrOutput("x", [], [TokenStamp("x", 0.0, 0.1)], 0.1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        out.text = "y"  # type: ignore[misc]
