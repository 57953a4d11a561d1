"""The split ONNX graphs (recogniser + hotword head, export revision 3) against the single
graph older registry versions carry, on the shipped ASR seed.

A run whose utterances have no hotwords skips the hotword encoder and head: its tokens
and timestamps must be exactly those of the single graph (float and int8), and a
directory holding only the single graph must still load and serve (the fallback).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from speechloop.asr.onnx_infer import AsrResult, OnnxSeacoAsr
from tests.unit.asr_engine_support import require_seed, spoken_clips

torch = pytest.importorskip("torch")

HOTWORDS = ["brakovan", "kitchen door"]


@pytest.fixture(scope="module")
def layouts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The seed exported twice, with int8 variants: split (what serves) and single
    (what versions published before revision 3 carry)."""
    from speechloop.asr.model import load_from_dir
    from speechloop.asr.onnx_export import export_onnx

    seed = require_seed()
    torch.set_num_threads(2)
    model = load_from_dir(seed).model
    out = {}
    for layout in ("split", "single"):
        path = tmp_path_factory.mktemp(layout)
        export_onnx(model, path, quantize=True, layout=layout)
        for name in ("tokens.json", "am.mvn"):
            shutil.copyfile(seed / name, path / name)
        out[layout] = path
    return out


@pytest.fixture(scope="module")
def clips(realaudio: Path) -> list[np.ndarray]:
    """Two spoken English clips (the seed's kind of speech) and two real recordings cut
    to different lengths."""
    real = [sf.read(p, dtype="float32")[0] for p in sorted(realaudio.glob("*.wav"))[:2]]
    return [*spoken_clips(), real[0][:40000], real[1][:56000]]


def _decode(
    directory: Path, clips: list[np.ndarray], lists: list[list[str]], **kw: Any
) -> tuple[OnnxSeacoAsr, list[AsrResult]]:
    asr = OnnxSeacoAsr(directory, threads=2, **kw)
    return asr, asr.transcribe_batch(clips, lists)


@pytest.mark.parametrize("quantized", [False, True], ids=["float", "int8"])
def test_split_graphs_give_the_single_graphs_output_without_hotwords(
    layouts: dict[str, Path], clips: list[np.ndarray], quantized: bool
) -> None:
    """Without hotwords the split recogniser gives the single graph's token ids and
    timestamps on every clip, in float and in int8 (each node is quantised alike)."""
    empty: list[list[str]] = [[] for _ in clips]
    split_asr, split = _decode(layouts["split"], clips, empty, quantized=quantized)
    single_asr, single = _decode(layouts["single"], clips, empty, quantized=quantized)
    assert (split_asr.layout, single_asr.layout) == ("split", "single")
    assert any(r.token_ids for r in single), "the seed decoded nothing: a vacuous comparison"
    for a, b in zip(split, single, strict=True):
        assert a.token_ids == b.token_ids
        assert a.timestamps == b.timestamps


def test_split_graphs_give_the_single_graphs_output_with_hotwords_and_mixed_runs(
    layouts: dict[str, Path], clips: list[np.ndarray]
) -> None:
    """With hotwords, and in runs mixing a list and no list (the head then runs over the
    whole run), the split graphs give the single graph's tokens and hotwords found."""
    lists = [HOTWORDS, [], HOTWORDS[:1], []]
    for max_batch in (1, 2):
        _, split = _decode(layouts["split"], clips, lists, max_batch=max_batch)
        _, single = _decode(layouts["single"], clips, lists, max_batch=max_batch)
        for a, b in zip(split, single, strict=True):
            assert (a.token_ids, a.hotwords_found) == (b.token_ids, b.hotwords_found)


class _Counting:
    """An onnxruntime session that counts its runs (to see which graphs a call used)."""

    def __init__(self, session: Any) -> None:
        self.session, self.runs = session, 0

    def run(self, *args: Any) -> Any:
        self.runs += 1
        return self.session.run(*args)


def test_a_run_without_hotwords_runs_neither_hotword_encoder_nor_head(
    layouts: dict[str, Path], clips: list[np.ndarray]
) -> None:
    """No list: only the recogniser runs; one list in the batch: the encoder and the head
    run for the run that holds it, and not for the other run."""
    asr = OnnxSeacoAsr(layouts["split"], threads=2, max_batch=2, streams=1)
    asr._embed, asr._head = _Counting(asr._embed), _Counting(asr._head)
    asr.transcribe_batch(clips)
    assert (asr._embed.runs, asr._head.runs) == (0, 0)
    asr.transcribe_batch(clips, [HOTWORDS, [], [], []])
    assert asr._head.runs == 1


def test_engine_serves_a_version_with_only_the_single_graph(
    layouts: dict[str, Path], clips: list[np.ndarray], tmp_path: Path
) -> None:
    """A registry version published before revision 3 (``onnx/model.onnx``, no split
    graphs, no model.pt to export from) still loads for ``onnx`` and ``onnx-int8`` and
    decodes as the split graphs do."""
    from speechloop.asr.engine import make_asr_engine

    version = tmp_path / "v-old"
    shutil.copytree(layouts["single"], version / "onnx")
    for name in ("tokens.json", "am.mvn"):
        shutil.copyfile(require_seed() / name, version / name)
    for backend, quantized in (("onnx", False), ("onnx-int8", True)):
        old = make_asr_engine(version, backend=backend, device="cpu", threads=2)
        assert old._backend.asr.layout == "single"  # type: ignore[attr-defined]
        got = [o.text for o in old.transcribe(clips)]
        _, want = _decode(layouts["split"], clips, [[] for _ in clips], quantized=quantized)
        assert got == [r.text for r in want]


def test_repeated_hotword_list_is_embedded_once_with_the_same_output(
    layouts: dict[str, Path], clips: list[np.ndarray]
) -> None:
    """A list seen before takes its embeddings from the LRU cache: the hotword encoder
    does not run again, the decoded tokens equal an uncached engine's, the cached array
    is read-only, and the least recently used list is dropped past the cache size."""
    cached = OnnxSeacoAsr(layouts["split"], threads=2, hotword_cache=2, streams=1)
    plain = OnnxSeacoAsr(layouts["split"], threads=2, hotword_cache=0)
    cached._embed = _Counting(cached._embed)
    lists = [HOTWORDS, HOTWORDS, HOTWORDS[:1], HOTWORDS]
    got = cached.transcribe_batch(clips, lists)
    assert cached._embed.runs == 2
    want = plain.transcribe_batch(clips, lists)
    assert [r.token_ids for r in got] == [r.token_ids for r in want]
    ids = cached.parse_hotwords(HOTWORDS).ids
    emb = cached.hotword_embeddings(ids)
    assert not emb.flags.writeable
    assert np.array_equal(emb, plain.hotword_embeddings(ids))
    cached.hotword_embeddings([[5]])  # a third list: the least recently used one goes
    assert cached._embed.runs == 3
    cached.hotword_embeddings(ids)  # used just before: still cached
    assert cached._embed.runs == 3
    cached.hotword_embeddings(cached.parse_hotwords(HOTWORDS[:1]).ids)  # dropped: again
    assert cached._embed.runs == 4
