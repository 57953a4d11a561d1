"""One ASR engine interface over the torch and the ONNX Runtime backends.

The CLI, the service and the flows transcribe through :class:`AsrEngine` (built by
:func:`make_asr_engine`, or by :meth:`speechloop.context.AppContext.asr_engine`), as the
speaker side does through :class:`speechloop.speaker.embed.SpeakerEmbedder`:

- one result type, :class:`AsrOutput` (timestamps in seconds for both backends);
- one hotword policy: :meth:`AsrEngine.parse_hotwords` applies
  :func:`speechloop.asr.hotwords.parse_hotwords` with the policy's limits narrowed by
  the loaded model's :attr:`AsrEngine.capabilities` (:func:`~speechloop.asr.hotwords.limits_for`),
  and refuses, naming it, an entry the model cannot spell;
- one device rule: torch on CUDA with float16 autocast when CUDA is present, else CPU
  (:func:`speechloop.training.device.select_device`); ONNX on ``CUDAExecutionProvider``
  when onnxruntime has it, else CPU (:func:`speechloop.asr.onnx_infer.select_providers`);
  an explicit ``device="cuda"`` where there is none is an error, never a fallback;
- ``threads``: onnxruntime's intra-op threads, or torch's (process-wide) thread count.

Backends: ``"torch"`` (:class:`speechloop.asr.inference.Transcriber`, needs torch and
funasr), ``"onnx"`` and ``"onnx-int8"`` (:class:`speechloop.asr.onnx_infer.OnnxSeacoAsr`,
onnxruntime only). The ONNX graphs are read from the model directory (``onnx/`` inside
it, as registry versions carry them, or the directory itself); a directory without
graphs is exported once into ``export_cache`` when one is given (this needs torch),
else refused with a message naming the missing file.

Nothing heavy is imported at module level: importing this module pulls in neither torch
nor onnxruntime.

Beyond the interface agreed in the brief (``AsrEngine``, ``AsrOutput``, ``TokenStamp``,
``make_asr_engine``): ``transcribe_each`` (a list per utterance, for batched requests),
``limits``, ``describe()``, ``warmup()``, and ``make_asr_engine(export_cache=)``; the
concrete class is :class:`HotwordAsr`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt

from speechloop.asr.hotwords import (
    HotwordCapabilities,
    HotwordLimits,
    HotwordList,
    HotwordTokenizer,
    limits_for,
    parse_hotwords,
)
from speechloop.errors import InvalidInput, ModelUnavailable, NotFound

if TYPE_CHECKING:
    from speechloop.asr.inference import Transcriber
    from speechloop.asr.onnx_infer import OnnxSeacoAsr

log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
SAMPLE_RATE = 16000
BACKENDS = ("torch", "onnx", "onnx-int8")
ONNX_SUBDIR = "onnx"  # where a model directory (a registry version) keeps its graphs


@dataclass(frozen=True)
class TokenStamp:
    """One output token with its start and end time in seconds."""

    token: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class AsrOutput:
    """What one utterance decodes to, whichever backend decoded it."""

    text: str
    hotwords_found: list[str]
    timestamps: list[TokenStamp]  # seconds
    duration_s: float  # audio duration

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: timestamps as ``[token, start_s, end_s]`` triples."""
        return {
            "text": self.text,
            "hotwords_found": list(self.hotwords_found),
            "timestamps": [[s.token, s.start_s, s.end_s] for s in self.timestamps],
            "duration_s": self.duration_s,
        }


class AsrEngine(Protocol):
    """What callers transcribe through (see the module docstring)."""

    version: str  # registry version, "seed" or "local"
    backend: str  # "torch" | "onnx" | "onnx-int8"
    device: str  # "cpu", "cuda", "cuda:N"

    @property
    def capabilities(self) -> HotwordCapabilities:
        """What the loaded model can take per request."""
        ...

    @property
    def limits(self) -> HotwordLimits:
        """The limits :meth:`parse_hotwords` applies (policy narrowed by capabilities)."""
        ...

    def parse_hotwords(self, raw: Sequence[str] | None) -> HotwordList:
        """The one hotword policy; InvalidInput names the bad hotword."""
        ...

    def transcribe(
        self, waves: Sequence[npt.ArrayLike], hotwords: HotwordList | None = None
    ) -> list[AsrOutput]:
        """Transcribe 16 kHz mono float32 utterances with one hotword list for all."""
        ...

    def transcribe_each(
        self, waves: Sequence[npt.ArrayLike], hotwords: Sequence[HotwordList | None]
    ) -> list[AsrOutput]:
        """Transcribe utterances, each with its own hotword list (batched requests)."""
        ...


class AsrBackend(Protocol):
    """Decodes a batch, each utterance with its own parsed hotword list."""

    name: str
    device: str
    tokenizer: HotwordTokenizer
    capabilities: HotwordCapabilities

    def decode(self, waves: list[F32], hotwords: list[HotwordList]) -> list[AsrOutput]:
        """One output per wave (``duration_s`` filled by the engine)."""
        ...


def seaco_capabilities() -> HotwordCapabilities:
    """What a SeACo-Paraformer takes per request: entries below funasr's ASF filter
    (above 50 entries funasr keeps only the top ones, which neither backend here does),
    and the hotword encoder's token maximum."""
    from speechloop.asr.onnx_export import MAX_HOTWORDS
    from speechloop.asr.onnx_infer import MAX_HOTWORD_TOKENS

    return HotwordCapabilities(max_hotwords=MAX_HOTWORDS, max_tokens=MAX_HOTWORD_TOKENS)


class TorchAsrBackend:
    """The torch :class:`~speechloop.asr.inference.Transcriber` (GPU + autocast if present)."""

    name = "torch"

    def __init__(
        self, model_dir: Path, *, version: str, device: str | None, threads: int | None
    ) -> None:
        import torch

        from speechloop.asr.inference import Transcriber
        from speechloop.asr.model import load_from_dir
        from speechloop.training.device import select_device

        if threads is not None:
            torch.set_num_threads(threads)  # process-wide: torch has no per-model setting
        plan = select_device(device)
        loaded = load_from_dir(model_dir, device=plan.device, version=version)
        self.transcriber: Transcriber = Transcriber(loaded, mixed_precision=plan.mixed_precision)
        self.device = plan.device
        self.tokenizer: HotwordTokenizer = loaded.tokenizer
        self.capabilities = seaco_capabilities()

    def decode(self, waves: list[F32], hotwords: list[HotwordList]) -> list[AsrOutput]:
        """Utterances sharing a list decode in one batch (the bias is per batch here)."""
        groups: dict[tuple[str, ...], list[int]] = {}
        for i, hl in enumerate(hotwords):
            groups.setdefault(tuple(hl.phrases), []).append(i)
        out: dict[int, AsrOutput] = {}
        for idx in groups.values():
            hl = hotwords[idx[0]]
            res = self.transcriber.transcribe([waves[i] for i in idx], hl if len(hl) else None)
            for i, t in zip(idx, res, strict=True):
                out[i] = AsrOutput(t.text, list(t.hotwords_found), list(t.timestamps), 0.0)
        return [out[i] for i in range(len(waves))]


class OnnxAsrBackend:
    """:class:`~speechloop.asr.onnx_infer.OnnxSeacoAsr` over a model directory's graphs."""

    def __init__(
        self,
        model_dir: Path,
        onnx_dir: Path,
        *,
        quantized: bool,
        device: str | None,
        threads: int | None,
    ) -> None:
        from speechloop.asr.onnx_infer import CMVN_FILE, TOKENS_FILE, OnnxSeacoAsr, load_tokenizer

        tokens = model_dir / TOKENS_FILE
        cmvn = model_dir / CMVN_FILE
        self.asr: OnnxSeacoAsr = OnnxSeacoAsr(
            onnx_dir,
            tokenizer=load_tokenizer(tokens) if tokens.is_file() else None,
            cmvn_file=cmvn if cmvn.is_file() else None,
            quantized=quantized,
            threads=threads,
            device=device,
        )
        self.name = "onnx-int8" if quantized else "onnx"
        first = self.asr.providers[0]
        provider = first[0] if isinstance(first, tuple) else first
        self.device = "cuda" if provider.startswith("CUDA") else "cpu"
        self.tokenizer: HotwordTokenizer = self.asr.tokenizer
        self.capabilities = self.asr.capabilities

    def decode(self, waves: list[F32], hotwords: list[HotwordList]) -> list[AsrOutput]:
        """See :class:`AsrBackend`; milliseconds become seconds here."""
        out = []
        for res in self.asr.transcribe_batch(waves, hotwords):
            stamps = [
                TokenStamp(tok, s / 1000.0, e / 1000.0)
                for tok, (s, e) in zip(res.tokens, res.timestamps, strict=False)
            ]
            out.append(AsrOutput(res.text, list(res.hotwords_found), stamps, 0.0))
        return out


class HotwordAsr:
    """The :class:`AsrEngine` implementation: one backend, one policy, one result type."""

    def __init__(self, backend: AsrBackend, *, version: str) -> None:
        self._backend = backend
        self.version = version
        self.backend = backend.name
        self.device = backend.device

    @property
    def capabilities(self) -> HotwordCapabilities:
        """See :class:`AsrEngine`."""
        return self._backend.capabilities

    @property
    def limits(self) -> HotwordLimits:
        """See :class:`AsrEngine`."""
        return limits_for(self._backend.capabilities)

    def describe(self) -> dict[str, Any]:
        """Version, backend, device and hotword limits (for ``/v1/models`` and logs)."""
        return {
            "version": self.version,
            "backend": self.backend,
            "device": self.device,
            "capabilities": self.capabilities.to_dict(),
            "hotword_limits": self.limits.to_dict(),
        }

    def parse_hotwords(self, raw: Sequence[str] | None) -> HotwordList:
        """See :class:`AsrEngine`."""
        return parse_hotwords(raw, self._backend.tokenizer, self.limits).require_representable()

    def transcribe(
        self, waves: Sequence[npt.ArrayLike], hotwords: HotwordList | None = None
    ) -> list[AsrOutput]:
        """See :class:`AsrEngine`."""
        return self.transcribe_each(waves, [hotwords] * len(waves))

    def transcribe_each(
        self, waves: Sequence[npt.ArrayLike], hotwords: Sequence[HotwordList | None]
    ) -> list[AsrOutput]:
        """See :class:`AsrEngine`."""
        if len(waves) == 0:
            raise InvalidInput("no audio to transcribe")
        if len(hotwords) != len(waves):
            raise InvalidInput(f"{len(hotwords)} hotword lists for {len(waves)} utterances")
        arrays = [_check_wave(w, i) for i, w in enumerate(waves)]
        lists = [self._checked(h) for h in hotwords]
        outputs = self._backend.decode(arrays, lists)
        return [
            AsrOutput(o.text, o.hotwords_found, o.timestamps, round(len(w) / SAMPLE_RATE, 4))
            for o, w in zip(outputs, arrays, strict=True)
        ]

    def warmup(self) -> None:
        """Run one short decoding with and without a hotword (first-call costs paid)."""
        silence = np.zeros(SAMPLE_RATE, dtype=np.float32)
        self.transcribe([silence])

    def _checked(self, hotwords: HotwordList | None) -> HotwordList:
        """A parsed list re-checked against this engine's limits (it may come from another)."""
        if hotwords is None:
            return HotwordList([], [])
        if not isinstance(hotwords, HotwordList):
            raise InvalidInput("hotwords must be parsed by the engine's parse_hotwords first")
        hotwords.require_representable()
        if len(hotwords) > self.limits.max_count:
            raise InvalidInput(
                f"{len(hotwords)} hotwords given; at most {self.limits.max_count} allowed"
            )
        for phrase, ids in zip(hotwords.phrases, hotwords.ids, strict=True):
            if len(ids) > self.limits.max_tokens:
                raise InvalidInput(
                    f"hotword {phrase!r} is {len(ids)} tokens; "
                    f"at most {self.limits.max_tokens} allowed"
                )
        return hotwords


def _check_wave(wave: npt.ArrayLike, index: int) -> F32:
    """One utterance as contiguous float32, refused when empty, not mono or not finite."""
    arr = np.ascontiguousarray(np.asarray(wave), dtype=np.float32)
    if arr.ndim != 1:
        raise InvalidInput(f"audio[{index}] must be mono samples (1-D), got shape {arr.shape}")
    if arr.size == 0:
        raise InvalidInput(f"audio[{index}] is empty")
    if not np.isfinite(arr).all():
        raise InvalidInput(f"audio[{index}] holds NaN or infinite samples")
    return arr


def make_asr_engine(
    model_dir: Path,
    *,
    backend: str = "onnx",
    version: str = "local",
    device: str | None = None,
    threads: int | None = None,
    export_cache: Path | None = None,
) -> HotwordAsr:
    """An engine over ``model_dir`` with ``backend`` (see the module docstring).

    ``export_cache``: where ONNX graphs are exported when ``model_dir`` carries none
    (None: refuse such a directory instead; a server passes None and never exports).
    """
    if backend not in BACKENDS:
        raise InvalidInput(f"unknown ASR backend {backend!r}: expected one of {BACKENDS}")
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelUnavailable(f"ASR model directory {model_dir} does not exist")
    if backend == "torch":
        impl: AsrBackend = TorchAsrBackend(
            model_dir, version=version, device=device, threads=threads
        )
    else:
        quantized = backend == "onnx-int8"
        onnx_dir = onnx_dir_for(model_dir, quantized=quantized, cache_dir=export_cache)
        impl = OnnxAsrBackend(
            model_dir, onnx_dir, quantized=quantized, device=device, threads=threads
        )
    return HotwordAsr(impl, version=version)


# -- where a model directory's ONNX graphs are --------------------------------------


def _graphs_in(directory: Path, *, quantized: bool) -> bool:
    """Whether ``directory`` holds exported graphs (with ``quantized``, int8 ones too):
    the split recogniser of revision 3 or the single ``model.onnx`` of older exports."""
    from speechloop.asr.onnx_export import ASR_FILE, META_FILE, MODEL_FILE, quant_name

    if not (directory / META_FILE).is_file():
        return False
    return not quantized or any(
        (directory / quant_name(name)).is_file() for name in (ASR_FILE, MODEL_FILE)
    )


def onnx_dir_for(
    directory: Path, *, quantized: bool = False, cache_dir: Path | None = None
) -> Path:
    """The directory holding ``directory``'s ONNX graphs (with ``quantized``, the int8
    ones too): its ``onnx/`` sub-directory, or itself; else, with ``cache_dir``, graphs
    exported once from ``model.pt`` into ``cache_dir/<digest>`` (needs torch).

    NotFound names the missing file when there are no graphs and none can be exported.
    """
    from speechloop.asr.onnx_export import (
        ASR_FILE,
        EXPORT_REVISION,
        META_FILE,
        export_onnx,
        quant_name,
        quantize_int8,
    )

    directory = Path(directory)
    for candidate in (directory / ONNX_SUBDIR, directory):
        if _graphs_in(candidate, quantized=quantized):
            return candidate
    int8_file = quant_name(ASR_FILE)
    wanted = int8_file if quantized else META_FILE
    if not (directory / "model.pt").is_file():
        raise NotFound(f"{directory} has no {wanted}, and no model.pt to export it from")
    if cache_dir is None:
        raise NotFound(
            f"{directory} carries no ONNX graphs ({wanted}); publish it with "
            "speechloop.publishing.publish_model, or use the torch backend"
        )
    try:
        import torch  # noqa: F401  (exporting needs it; a torch-free server never gets here)
    except ImportError as exc:
        raise ModelUnavailable(
            f"{directory} carries no ONNX graphs ({wanted}) and torch is not installed to "
            f"export them: publish the model with speechloop.publishing ({exc})"
        ) from exc
    from speechloop.asr.model import load_from_dir

    weights = (directory / "model.pt").read_bytes()
    digest = hashlib.sha256(weights + f"rev{EXPORT_REVISION}".encode()).hexdigest()[:16]
    out = Path(cache_dir) / digest
    if not (out / META_FILE).is_file():
        log.warning("exporting ONNX graphs of %s into %s (the directory has none)", directory, out)
        tmp = out.with_name(f"{digest}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        export_onnx(load_from_dir(directory).model, tmp, quantize=quantized)
        shutil.copyfile(directory / "tokens.json", tmp / "tokens.json")
        try:
            tmp.rename(out)  # atomic: a concurrent exporter's complete copy wins
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
    if quantized and not (out / int8_file).is_file():
        quantize_int8(out)
    return out
