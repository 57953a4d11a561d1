"""SeACo-Paraformer inference with onnxruntime only: no torch, no funasr on this path.

:class:`OnnxSeacoAsr` loads a directory written by
:func:`speechloop.asr.onnx_export.export_onnx` (``model_asr.onnx``, ``model_head.onnx``,
``model_eb.onnx``, ``onnx_meta.json``; or the single ``model.onnx`` of registry versions
exported before revision 3) plus ``tokens.json`` and ``am.mvn``, computes features with
:mod:`speechloop.asr.features`, and decodes greedily, as funasr's
``SeacoParaformer.inference`` does:

- hotwords are per call and per utterance (a list of strings or a parsed
  :class:`~speechloop.asr.hotwords.HotwordList` each, ``[sos]`` appended as funasr
  does); strings go through the one hotword policy
  (:func:`speechloop.asr.hotwords.parse_hotwords`) with the graph's maximum
  (:attr:`OnnxSeacoAsr.capabilities`) as its limits; nothing is stored on the object,
  so concurrent calls cannot interfere (onnxruntime sessions are thread-safe);
- the execution provider is CUDA when onnxruntime has it (``device=None``), else CPU;
- an utterance without hotwords is decoded from the ASR decoder alone (funasr skips the
  hotword head when it has no list); with hotwords, from the SeACo-merged log-probs. With
  the split graphs a graph run whose utterances have no hotwords runs neither the
  hotword encoder nor the head (same tokens, less work); a run with any list runs the
  head over the whole run, as the single graph does;
- token timestamps come from the upsampled CIF peaks, re-implementing funasr's
  ``ts_prediction_lfr6_standard``;
- a hotword is "found" when it occurs, normalised, as whole words in the decoded text
  (:func:`speechloop.asr.hotwords.found_in`, as the torch path decides).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from speechloop.asr.features import Frontend, load_am_mvn
from speechloop.asr.hotwords import (
    HotwordCapabilities,
    HotwordList,
    HotwordTokenizer,
    found_in,
    limits_for,
    parse_hotwords,
)
from speechloop.asr.onnx_export import (
    ASR_FILE,
    EMBED_FILE,
    HEAD_FILE,
    MAX_HOTWORDS,
    MODEL_FILE,
    OnnxMeta,
    quant_name,
)
from speechloop.errors import InvalidInput, ModelUnavailable, NotFound

TOKENS_FILE = "tokens.json"
CMVN_FILE = "am.mvn"
MAX_HOTWORD_TOKENS = 32
# funasr's timestamp constants (funasr/utils/timestamp_tools.py)
_START_END_THRESHOLD = 5
_MAX_TOKEN_DURATION = 12
_FORCE_TIME_SHIFT = -1.5
_PEAK = 1.0 - 1e-4


class TokenizerLike(HotwordTokenizer, Protocol):
    """What the decoder needs from a tokenizer (speechloop.asr.tokenizer.Tokenizer fits)."""

    def decode(self, ids: Iterable[int]) -> str:
        """Text of token ids."""
        ...

    def pieces(self, ids: Iterable[int]) -> list[str]:
        """Token strings of ids (specials may be left out)."""
        ...


@dataclass(frozen=True)
class AsrResult:
    """One utterance's transcription: text, tokens with timestamps (ms), hotwords found."""

    text: str
    token_ids: list[int]
    tokens: list[str]
    timestamps: list[tuple[int, int]]
    hotwords_found: list[str] = field(default_factory=list)


def _cif_fires(alphas: npt.NDArray[np.float32], threshold: float) -> npt.NDArray[np.float32]:
    """funasr's ``cif_wo_hidden`` for one utterance: the running integral before each reset."""
    fires = np.zeros_like(alphas)
    acc = np.float32(0.0)
    for t, a in enumerate(alphas):
        acc = np.float32(acc + a)
        fires[t] = acc
        if acc >= threshold:
            acc = np.float32(acc - threshold)
    return fires


def token_timestamps(
    us_alphas: npt.NDArray[np.float32],
    us_peaks: npt.NDArray[np.float32],
    n_tokens: int,
    *,
    upsample: int = 3,
    lfr_n: int = 6,
) -> list[tuple[int, int]]:
    """Start and end (ms) of each of ``n_tokens`` tokens, as ``ts_prediction_lfr6_standard``.

    ``us_alphas``/``us_peaks`` are one utterance's upsampled CIF weights and integrals,
    trimmed to its valid frames. A token fires where the integral reaches 1; the frames
    between two fires are the former token's duration, capped at 12 upsampled frames
    (the rest is silence). If the fire count disagrees with the token count, the weights
    are rescaled to sum to ``n_tokens + 1`` and the fires recomputed, as funasr does.
    """
    if n_tokens == 0:
        return []
    rate = 10.0 * lfr_n / 1000 / upsample
    fire = np.nonzero(us_peaks >= _PEAK)[0] + _FORCE_TIME_SHIFT
    if len(fire) != n_tokens + 1:
        alphas = us_alphas / (us_alphas.sum() / (n_tokens + 1))
        peaks = _cif_fires(alphas.astype(np.float32), _PEAK)
        fire = np.nonzero(peaks >= _PEAK)[0] + _FORCE_TIME_SHIFT
    num_frames = len(us_peaks)
    spans: list[list[float]] = []
    is_token: list[bool] = []
    if len(fire) and fire[0] > _START_END_THRESHOLD:
        spans.append([0.0, fire[0] * rate])
        is_token.append(False)
    for i in range(len(fire) - 1):
        is_token.append(True)
        if fire[i + 1] - fire[i] <= _MAX_TOKEN_DURATION:
            spans.append([fire[i] * rate, fire[i + 1] * rate])
        else:
            split = fire[i] + _MAX_TOKEN_DURATION
            spans += [[fire[i] * rate, split * rate], [split * rate, fire[i + 1] * rate]]
            is_token.append(False)
    if len(fire) and num_frames - fire[-1] > _START_END_THRESHOLD:
        end = (num_frames + fire[-1]) * 0.5
        spans[-1][1] = end * rate
        spans.append([end * rate, num_frames * rate])
        is_token.append(False)
    elif spans:
        spans[-1][1] = num_frames * rate
    stamps = [
        (int(s[0] * 1000), int(s[1] * 1000)) for s, tok in zip(spans, is_token, strict=True) if tok
    ]
    return stamps[:n_tokens]


class OnnxSeacoAsr:
    """Hotword ASR over the two ONNX graphs; thread-safe, hotwords per call."""

    def __init__(
        self,
        directory: Path | str,
        *,
        tokenizer: TokenizerLike | None = None,
        cmvn_file: Path | str | None = None,
        quantized: bool = False,
        threads: int | None = None,
        max_batch: int = 2,
        streams: int = 2,
        spin: bool = False,
        device: str | None = None,
        hotword_cache: int = 64,
    ) -> None:
        """Load ``directory`` (ONNX files + ``onnx_meta.json``; ``tokens.json`` and
        ``am.mvn`` there unless a tokenizer / CMVN file is given). ``quantized`` picks
        the int8 graphs, ``threads`` onnxruntime's intra-op threads (None: its default).
        ``spin`` lets idle worker threads busy-wait: lower latency on a dedicated machine,
        but on shared cores it steals time from the threads doing work (off by default).
        ``device``: None picks CUDA when onnxruntime offers it, else CPU; ``"cpu"`` or
        ``"cuda"`` force one (asking for CUDA where there is none is an error).
        ``hotword_cache``: how many distinct hotword lists keep their embeddings (least
        recently used dropped first; 0: none), so a list repeated across requests runs
        the hotword encoder once (the cached array is what that run gave: same output).

        A batch of clips is sorted by length and cut into graph runs of at most
        ``max_batch`` clips, ``streams`` of which run at once (the session is
        thread-safe and releases the GIL). On CPU that beats one padded run of the whole
        batch: small ops parallelise badly inside one run, and similar lengths waste
        little on padding (``docs/results-asr-speed.md``)."""
        self.directory = Path(directory)
        self.meta = OnnxMeta.load(self.directory)
        self._spin = spin
        self.providers = select_providers(device)

        def graph(name: str) -> str:
            return quant_name(name) if quantized else name

        #: "split" (model_asr + model_head) when the directory has them, else "single"
        #: (model.onnx of versions exported before revision 3: hotword head always runs)
        split = all((self.directory / graph(n)).is_file() for n in (ASR_FILE, HEAD_FILE))
        self.layout = "split" if split else "single"
        self._asr = self._session(graph(ASR_FILE if split else MODEL_FILE), threads)
        self._head = self._session(graph(HEAD_FILE), threads) if split else None
        self._embed = self._session(graph(EMBED_FILE), threads)
        self.tokenizer = tokenizer if tokenizer is not None else self._load_tokenizer()
        cmvn = Path(cmvn_file) if cmvn_file is not None else self.directory / CMVN_FILE
        # an explicit CMVN file must exist (load_am_mvn raises NotFound); am.mvn is optional
        use = cmvn_file is not None or cmvn.is_file()
        self.frontend = Frontend(cmvn=load_am_mvn(cmvn) if use else None)
        self.max_batch = max(1, max_batch)
        self.streams = max(1, streams)
        self._cache: OrderedDict[tuple[tuple[int, ...], ...], npt.NDArray[np.float32]]
        self._cache = OrderedDict()
        self._cache_size = max(0, hotword_cache)
        self._cache_lock = threading.Lock()

    def _session(self, name: str, threads: int | None) -> Any:
        import onnxruntime as ort

        path = self.directory / name
        if not path.is_file():
            raise ModelUnavailable(f"ONNX file {path} missing (export with onnx_export)")
        opts = ort.SessionOptions()
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if self._spin else "0")
        if threads is not None:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        return ort.InferenceSession(str(path), opts, providers=self.providers)

    def _load_tokenizer(self) -> TokenizerLike:
        return load_tokenizer(self.directory / TOKENS_FILE)

    # hotwords -------------------------------------------------------------

    @property
    def capabilities(self) -> HotwordCapabilities:
        """The graphs' maximum per request: entries below funasr's ASF filter, and tokens
        per entry."""
        return HotwordCapabilities(max_hotwords=MAX_HOTWORDS, max_tokens=MAX_HOTWORD_TOKENS)

    def parse_hotwords(self, hotwords: Sequence[str] | HotwordList | None) -> HotwordList:
        """One request's hotwords through the one policy, limited by :attr:`capabilities`;
        InvalidInput names an entry the model cannot spell."""
        if isinstance(hotwords, HotwordList):
            return hotwords.require_representable()
        parsed = parse_hotwords(hotwords, self.tokenizer, limits_for(self.capabilities))
        return parsed.require_representable()

    def encode_hotwords(self, hotwords: Sequence[str]) -> list[list[int]]:
        """Token ids of each hotword, checked by :meth:`parse_hotwords`."""
        return self.parse_hotwords(hotwords).ids

    def hotword_embeddings(self, hotword_ids: Sequence[Sequence[int]]) -> npt.NDArray[np.float32]:
        """(N + 1, D) embeddings of the hotwords and funasr's trailing ``[sos]`` entry
        (read-only; from the cache when this list was embedded recently)."""
        key = tuple(tuple(int(t) for t in r) for r in hotword_ids)
        with self._cache_lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        out = self._embed_rows(key)
        out.flags.writeable = False
        if self._cache_size:
            with self._cache_lock:
                self._cache[key] = out
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return out

    def _embed_rows(self, hotword_ids: Sequence[Sequence[int]]) -> npt.NDArray[np.float32]:
        """One run of the hotword encoder over the list and the ``[sos]`` entry."""
        rows = [*hotword_ids, [self.meta.sos_id]]
        width = max(len(r) for r in rows)
        ids = np.zeros((len(rows), width), dtype=np.int32)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = r
        lengths = np.array([len(r) for r in rows], dtype=np.int32)
        out = self._embed.run(None, {"hotword": ids, "hotword_lengths": lengths})[0]
        return np.array(out, dtype=np.float32)

    # inference ------------------------------------------------------------

    def transcribe(
        self, samples: npt.ArrayLike, hotwords: Sequence[str] | HotwordList = ()
    ) -> AsrResult:
        """Transcribe one utterance (16 kHz mono float samples in [-1, 1])."""
        return self.transcribe_batch([samples], [hotwords])[0]

    def transcribe_batch(
        self,
        waves: Sequence[npt.ArrayLike],
        hotwords: Sequence[Sequence[str] | HotwordList | None] | None = None,
    ) -> list[AsrResult]:
        """Transcribe utterances in runs of ``max_batch`` (sorted by length to limit
        padding, ``streams`` runs at once); ``hotwords`` gives each utterance its own list
        (None: no hotwords), checked by :meth:`parse_hotwords` before any work."""
        if hotwords is not None and len(hotwords) != len(waves):
            raise InvalidInput(f"{len(hotwords)} hotword lists for {len(waves)} utterances")
        empty = HotwordList([], [])
        lists = [self.parse_hotwords(h) for h in hotwords] if hotwords else [empty for _ in waves]
        feats = [self.frontend(w) for w in waves]
        order = sorted(range(len(feats)), key=lambda i: feats[i].shape[0], reverse=True)
        chunks = [order[i : i + self.max_batch] for i in range(0, len(order), self.max_batch)]

        def run(chunk: list[int]) -> list[AsrResult]:
            return self._run([feats[i] for i in chunk], [lists[i] for i in chunk])

        if self.streams > 1 and len(chunks) > 1:  # longest runs first: balanced streams
            with ThreadPoolExecutor(min(self.streams, len(chunks))) as pool:
                outputs = list(pool.map(run, chunks))
        else:
            outputs = [run(c) for c in chunks]
        results: dict[int, AsrResult] = {}
        for chunk, batch in zip(chunks, outputs, strict=True):
            results.update(zip(chunk, batch, strict=True))
        return [results[i] for i in range(len(feats))]

    def _bias(
        self, lists: list[HotwordList]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int32]]:
        """Per-utterance bias embeddings padded to the longest list, with their lengths."""
        embs = [self.hotword_embeddings(h.ids) for h in lists]
        width = max(e.shape[0] for e in embs)
        bias = np.zeros((len(embs), width, self.meta.bias_dim), dtype=np.float32)
        for b, e in enumerate(embs):
            bias[b, : e.shape[0]] = e
        return bias, np.array([e.shape[0] for e in embs], dtype=np.int32)

    def _graphs(
        self,
        speech: npt.NDArray[np.float32],
        lengths: npt.NDArray[np.int32],
        lists: list[HotwordList],
    ) -> tuple[Any, ...]:
        """One graph run: SeACo-merged log-probs (None when no utterance has hotwords and
        the split graphs skip the head), ASR log-probs, token counts, upsampled CIF
        weights and peaks."""
        inputs = {"speech": speech, "speech_lengths": lengths}
        if self._head is None:  # the single graph: the head runs whatever the lists
            bias, bias_lengths = self._bias(lists)
            return tuple(
                self._asr.run(None, inputs | {"bias_embed": bias, "bias_lengths": bias_lengths})
            )
        asr_logits, token_num, us_alphas, us_peaks, embeds, hidden = self._asr.run(None, inputs)
        logits = None
        if any(len(h) for h in lists):
            bias, bias_lengths = self._bias(lists)
            head_in = {
                "bias_embed": bias,
                "bias_lengths": bias_lengths,
                "acoustic_embeds": embeds,
                "decoder_hidden": hidden,
                "token_num": token_num,
                "asr_logits": asr_logits,
            }
            logits = self._head.run(None, head_in)[0]
        return logits, asr_logits, token_num, us_alphas, us_peaks

    def _run(
        self, feats: list[npt.NDArray[np.float32]], lists: list[HotwordList]
    ) -> list[AsrResult]:
        lengths = np.array([f.shape[0] for f in feats], dtype=np.int32)
        speech = np.zeros((len(feats), int(lengths.max()), self.meta.feats_dim), dtype=np.float32)
        for b, f in enumerate(feats):
            speech[b, : f.shape[0]] = f
        logits, asr_logits, token_num, us_alphas, us_peaks = self._graphs(speech, lengths, lists)
        out = []
        up = self.meta.upsample_times
        for b in range(len(feats)):
            n = int(token_num[b])
            scores = logits[b, :n] if len(lists[b]) and logits is not None else asr_logits[b, :n]
            skip = {self.meta.blank_id, self.meta.sos_id, self.meta.eos_id}
            token_ids = [int(t) for t in scores.argmax(-1) if int(t) not in skip]
            frames = int(lengths[b]) * up
            stamps = token_timestamps(
                us_alphas[b, :frames],
                us_peaks[b, :frames],
                len(token_ids),
                upsample=up,
                lfr_n=self.meta.lfr_n,
            )
            text = self.tokenizer.decode(token_ids)
            found = found_in(text, lists[b])
            out.append(
                AsrResult(
                    text=text,
                    token_ids=token_ids,
                    tokens=self.tokenizer.pieces(token_ids),
                    timestamps=stamps,
                    hotwords_found=found,
                )
            )
        return out


def load_tokenizer(path: Path) -> TokenizerLike:
    """The tokenizer of a ``tokens.json``: ours, or a foreign vocabulary (the pretrained
    model's, with the ``seg_dict`` beside it), as :func:`speechloop.asr.model.load_from_dir`
    decides (both call :func:`speechloop.asr.tokenizer.load_vocabulary`)."""
    from speechloop.asr.tokenizer import load_vocabulary

    if not path.is_file():
        raise NotFound(f"{path} missing: give a tokenizer or put tokens.json there")
    return load_vocabulary(path)


def select_providers(device: str | None = None) -> list[Any]:
    """onnxruntime execution providers for ``device``: CUDA (with CPU for the ops it lacks)
    when available and not refused, else CPU. ``"cuda"`` without CUDA is InvalidInput."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    has_cuda = "CUDAExecutionProvider" in available
    if device is None:
        device = "cuda" if has_cuda else "cpu"
    if device.startswith("cuda"):
        if not has_cuda:
            raise InvalidInput(
                f"device {device!r} requested but onnxruntime has no CUDAExecutionProvider "
                f"(available: {', '.join(available)})"
            )
        index = device.partition(":")[2] or "0"
        if not index.isdigit():
            raise InvalidInput(f"unknown device {device!r} (use cpu, cuda or cuda:N)")
        return [("CUDAExecutionProvider", {"device_id": int(index)}), "CPUExecutionProvider"]
    if device != "cpu":
        raise InvalidInput(f"unknown device {device!r} (use cpu, cuda or cuda:N)")
    return ["CPUExecutionProvider"]
