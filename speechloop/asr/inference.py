"""Hotword ASR inference in torch: batched, per-request hotwords, token timestamps.

Thread safety: funasr's ``AutoModel.generate(hotword=...)`` stores the parsed hotword
list on the shared model object, so concurrent requests with different lists race.
Here nothing is stored on the model: :func:`decode_features` takes the bias embeddings
computed for *this* request (:func:`bias_embeddings`) and calls the model's lower-level
methods (``encode``, ``calc_predictor``, ``decoder``, ``seaco_decoder``,
``hotword_output_layer``) under ``torch.no_grad`` with the model in eval mode. Several
threads may share one :class:`Transcriber`.

Fusion is funasr's (``_seaco_decode_with_ASF`` with ``seaco_weight`` 1): at each token
where the hotword head's best class is not NO_BIAS, its distribution replaces the
decoder's. No text-level post-correction.

Device: the model runs where its weights are; with ``mixed_precision`` on CUDA the
decoding runs under ``torch.autocast`` (float16). :mod:`speechloop.asr.engine` picks the
device (:func:`speechloop.training.device.select_device`) and wraps this class behind the
one ASR engine interface.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from speechloop.asr.engine import TokenStamp
from speechloop.asr.hotwords import HotwordList, found_in, parse_hotwords
from speechloop.asr.model import LoadedModel
from speechloop.errors import InvalidInput

if TYPE_CHECKING:
    import torch

FRAME_S = 0.06  # one LFR frame (6 x 10 ms); CIF timestamps are at a third of that


@dataclass
class Transcript:
    """What one utterance decodes to."""

    text: str
    tokens: list[str]
    timestamps: list[TokenStamp]
    hotwords_found: list[str] = field(default_factory=list)
    hotwords_fired: int = 0  # tokens where the hotword head overrode the decoder
    token_ids: list[int] = field(default_factory=list)


@dataclass
class Decoded:
    """Raw batch decoding: token ids, how many came from the hotword head, CIF alphas."""

    ids: list[list[int]]
    fired: list[int]
    us_alphas: torch.Tensor | None
    us_peaks: torch.Tensor | None
    enc_lens: list[int]


def bias_embeddings(model: Any, hotword_ids: list[list[int]]) -> torch.Tensor:
    """(N + 1, d) embeddings of one request's hotwords, plus the final ``[sos]`` entry."""
    from speechloop.asr.objectives import hotword_embeddings

    return hotword_embeddings(model, [*hotword_ids, [int(model.sos)]])


def encode(
    model: Any, speech: torch.Tensor, speech_lengths: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Encoder output with every padded frame zeroed, and its lengths.

    The CIF predictor's convolution reads a few frames past each clip's end. Alone, a clip
    has zeros there (the convolution's own padding); in a batch, the encoder's output on
    the padding frames, which is not zero. Without this, a clip's token count could
    depend on the clips it was batched with (4 of 120 golden utterances changed text).
    """
    import torch

    speech = speech[:, : int(speech_lengths.max())]  # the encoder masks need no extra padding
    enc, enc_lens = model.encode(speech, speech_lengths)
    frames = torch.arange(enc.shape[1], device=enc.device)
    valid = (frames[None, :] < enc_lens[:, None]).unsqueeze(-1)
    return enc * valid.to(enc.dtype), enc_lens


def decode_features(
    model: Any,
    speech: torch.Tensor,
    speech_lengths: torch.Tensor,
    bias_embed: torch.Tensor | None,
    *,
    timestamps: bool = True,
) -> Decoded:
    """Greedy non-autoregressive decoding of a feature batch, biased by ``bias_embed``.

    As funasr: an utterance where the CIF predictor fires no token (silence, a clip of a
    few frames) decodes to no token, and NO_BIAS is an ordinary token id of the ASR
    decoder's output (in the pretrained model's vocabulary it is a real token).
    """
    import torch

    from speechloop.asr.objectives import AsrStates, hotword_logits

    with torch.no_grad():
        enc, enc_lens = encode(model, speech, speech_lengths)
        acoustic, token_num = model.calc_predictor(enc, enc_lens)[:2]
        token_num = token_num.round().long()
        lens = [int(x) for x in enc_lens]
        if int(token_num.max()) < 1:  # no decoder run on zero tokens (funasr returns none)
            return Decoded([[] for _ in lens], [0 for _ in lens], None, None, lens)
        acoustic = acoustic[:, : int(token_num.max())]
        logits, hidden = model.decoder(
            enc, enc_lens, acoustic, token_num, return_hidden=True, return_both=True
        )[:2]
        pred = torch.log_softmax(logits, dim=-1)
        fired = torch.zeros_like(pred[..., 0], dtype=torch.bool)
        if bias_embed is not None:
            head = hotword_logits(model, AsrStates(acoustic, hidden, token_num), bias_embed)
            fired = head.argmax(-1) != model.NO_BIAS
            pred = torch.where(fired.unsqueeze(-1), torch.log_softmax(head, -1), pred)
        best = pred.argmax(-1)
        alphas = peaks = None
        if timestamps:
            alphas, peaks = model.calc_predictor_timestamp(enc, enc_lens, token_num)[2:4]
    specials = {int(model.sos), int(model.eos), int(model.blank_id)}  # funasr's filter
    ids, n_fired = [], []
    for b in range(best.shape[0]):
        n = int(token_num[b])
        seq = [int(t) for t in best[b, :n]]
        ids.append([t for t in seq if t not in specials])
        n_fired.append(int(fired[b, :n].sum()))
    return Decoded(ids, n_fired, alphas, peaks, lens)


def _stamps(tokens: list[str], alphas: torch.Tensor, peaks: torch.Tensor) -> list[TokenStamp]:
    """Token start/end times from CIF peaks (funasr's ``ts_prediction_lfr6_standard``)."""
    from speechloop.asr.funasr_modules import funasr_module

    ts_prediction_lfr6_standard = funasr_module(
        "funasr.utils.timestamp_tools"
    ).ts_prediction_lfr6_standard

    if not tokens:
        return []
    _, stamps = ts_prediction_lfr6_standard(alphas, peaks, list(tokens))
    return [
        TokenStamp(tok, round(s / 1000.0, 3), round(e / 1000.0, 3))
        for tok, (s, e) in zip(tokens, stamps, strict=False)
    ]


def found_hotwords(text: str, hotwords: HotwordList) -> list[str]:
    """Listed hotwords that occur as whole words in ``text`` (as the ONNX runner decides)."""
    return found_in(text, hotwords)


class Transcriber:
    """Batched transcription with per-request hotwords over one shared loaded model."""

    def __init__(
        self, loaded: LoadedModel, *, max_hotwords: int = 100, mixed_precision: bool = False
    ) -> None:
        """Wrap a model loaded by :mod:`speechloop.asr.model` (eval mode is enforced).

        ``max_hotwords`` bounds lists given as strings (evaluation passes long lists);
        ``mixed_precision`` decodes under float16 autocast when the model is on CUDA.
        """
        from speechloop.asr.features import Frontend

        self.loaded = loaded
        self.model = loaded.model.eval()
        self.frontend = Frontend.from_am_mvn(loaded.cmvn_file)
        self.max_hotwords = max_hotwords
        self.mixed_precision = mixed_precision

    @property
    def device(self) -> torch.device:
        """Where the model's weights are."""
        return next(self.model.parameters()).device

    def features(self, waves: list[npt.NDArray[np.float32]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded feature batch on the model's device."""
        import torch

        feats, lengths = self.frontend.batch(waves)
        return torch.from_numpy(feats).to(self.device), torch.from_numpy(lengths).to(self.device)

    def transcribe(
        self,
        waves: list[npt.NDArray[np.float32]],
        hotwords: HotwordList | list[str] | None = None,
        *,
        timestamps: bool = True,
    ) -> list[Transcript]:
        """Transcribe 16 kHz mono utterances with one hotword list for the whole batch.

        Raises InvalidInput (naming the entries) for hotwords with characters the
        vocabulary cannot represent; see :func:`speechloop.asr.hotwords.parse_hotwords`.
        """
        if not waves:
            raise InvalidInput("no audio to transcribe")
        if hotwords is not None and not isinstance(hotwords, HotwordList):
            hotwords = parse_hotwords(hotwords, self.loaded.tokenizer, max_count=self.max_hotwords)
        if hotwords is not None and hotwords.oov:
            raise InvalidInput(f"hotwords not representable by the model: {hotwords.oov}")
        speech, lengths = self.features(waves)
        bias = None
        if hotwords is not None and hotwords.ids:
            bias = bias_embeddings(self.model, hotwords.ids)
        with self._autocast():
            dec = decode_features(self.model, speech, lengths, bias, timestamps=timestamps)
        tok = self.loaded.tokenizer
        out = []
        for b, ids in enumerate(dec.ids):
            pieces = tok.pieces(ids)
            text = tok.decode(ids)
            stamps: list[TokenStamp] = []
            if timestamps and dec.us_alphas is not None and dec.us_peaks is not None:
                n = dec.enc_lens[b] * 3
                alphas, peaks = dec.us_alphas[b][:n].float(), dec.us_peaks[b][:n].float()
                stamps = _stamps(pieces, alphas, peaks)
            found = found_hotwords(text, hotwords) if hotwords is not None else []
            out.append(Transcript(text, pieces, stamps, found, dec.fired[b], ids))
        return out

    def _autocast(self) -> Any:
        """float16 autocast on CUDA when mixed precision is on, else a no-op context."""
        import contextlib

        import torch

        if self.mixed_precision and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def transcribe_files(
        self, paths: list[Path], hotwords: list[str] | None = None
    ) -> list[Transcript]:
        """Decode audio files (any format :func:`speechloop.audio.decode_audio` reads)."""
        from speechloop.audio import decode_audio

        waves = [decode_audio(Path(p), name=str(p)).samples for p in paths]
        return self.transcribe(waves, hotwords)
