"""Training objectives for SeACo-Paraformer: the ASR objective and the hotword (SeACo) one.

ASR objective: ``BiCifParaformer.forward`` called on the ``SeacoParaformer`` instance
(decoder cross-entropy + both CIF predictor losses, and ``acc``).
``SeacoParaformer.forward`` is *not* used for it: its loss is the hotword head's alone
(``../shared/REFERENCE.md``).

SeACo objective: the hotword head's cross-entropy, computed the way
``SeacoParaformer._calc_seaco_loss`` does (acoustic embeddings and decoder states
attend over the hotword embeddings through ``seaco_decoder``, summed, through
``hotword_output_layer``) but split in two so that stage 2 can cache the frozen ASR
part's outputs (:func:`asr_states`) and train the hotword modules on them alone
(:func:`hotword_logits`), with a batch-level hotword list that mixes the utterances'
true hotwords with distractors (:func:`build_bias_batch`, as the SeACo paper trains).
Labels are the hotword's tokens where a listed hotword occurs in the transcript, NO_BIAS
everywhere else, so the head learns to match the list, not to re-transcribe.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


@dataclass
class AsrStates:
    """Outputs of the (frozen) ASR part for one batch, what the hotword head reads."""

    acoustic: torch.Tensor  # (B, L, d) CIF acoustic embeddings, L = tokens + 1 (eos)
    hidden: torch.Tensor  # (B, L, d) decoder hidden states
    lengths: torch.Tensor  # (B,) L per utterance


def pad_ids(seqs: Sequence[Sequence[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded (B, T) long tensor and (B,) lengths of id sequences."""
    import torch

    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.int32)
    out = torch.full((len(seqs), max(1, int(lengths.max()))), pad, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.tensor(list(s), dtype=torch.long)
    return out, lengths


def asr_loss(
    model: Any,
    speech: torch.Tensor,
    speech_lengths: torch.Tensor,
    text: torch.Tensor,
    text_lengths: torch.Tensor,
) -> tuple[torch.Tensor, dict[str, float]]:
    """ASR objective of a SeacoParaformer: decoder CE + CIF losses; stats with ``acc``."""
    from speechloop.asr.funasr_modules import funasr_module

    bicif = funasr_module("funasr.models.bicif_paraformer.model").BiCifParaformer
    loss, stats, _ = bicif.forward(model, speech, speech_lengths, text, text_lengths)
    out = {k: float(v) for k, v in stats.items() if v is not None}
    return loss, out


def asr_states(
    model: Any,
    speech: torch.Tensor,
    speech_lengths: torch.Tensor,
    text: torch.Tensor,
    text_lengths: torch.Tensor,
) -> AsrStates:
    """Teacher-forced acoustic embeddings and decoder states (as ``_calc_seaco_loss``)."""
    from speechloop.asr.funasr_modules import funasr_module

    add_sos_eos = funasr_module("funasr.models.transformer.utils.add_sos_eos").add_sos_eos
    make_pad_mask = funasr_module("funasr.models.transformer.utils.nets_utils").make_pad_mask

    encoder_out, encoder_out_lens = model.encode(speech, speech_lengths)
    _, ys_pad = add_sos_eos(text, model.sos, model.eos, model.ignore_id)
    ys_lengths = text_lengths + model.predictor_bias
    mask = (~make_pad_mask(encoder_out_lens, maxlen=encoder_out.size(1))[:, None, :]).to(
        encoder_out.device
    )
    acoustic = model.predictor(encoder_out, ys_pad, mask, ignore_id=model.ignore_id)[0]
    hidden, _ = model.decoder(
        encoder_out, encoder_out_lens, acoustic, ys_lengths, return_hidden=True
    )
    return AsrStates(acoustic, hidden, ys_lengths)


def hotword_embeddings(model: Any, hotwords: Sequence[Sequence[int]]) -> torch.Tensor:
    """(N, d) embeddings of hotword id lists, the last one conventionally ``[sos]``."""
    pad, lengths = pad_ids(hotwords, 0)
    device = next(model.parameters()).device
    return model._hotword_representation(pad.to(device), lengths)


def hotword_logits(
    model: Any,
    states: AsrStates,
    bias_embed: torch.Tensor,
    bias_lengths: torch.Tensor | None = None,
) -> torch.Tensor:
    """Hotword-head logits (B, L, V) of ASR states attending over the hotword embeddings.

    ``bias_embed``: (N, d), one list shared by the batch (funasr's inference and
    training), or (B, N, d) with ``bias_lengths`` (B,), one list per utterance (the
    seaco decoder masks each utterance's list by its length).
    """
    import torch

    batch = states.hidden.shape[0]
    if bias_embed.dim() == 2:
        context = bias_embed.unsqueeze(0).expand(batch, -1, -1)
        ctx_len = torch.full((batch,), bias_embed.shape[0], dtype=torch.int32)
    else:
        context = bias_embed
        ctx_len = (
            bias_lengths if bias_lengths is not None else torch.full((batch,), bias_embed.shape[1])
        )
    ctx_len = ctx_len.to(dtype=torch.int32, device=context.device)
    cif_att, _ = model.seaco_decoder(context, ctx_len, states.acoustic, states.lengths)
    dec_att, _ = model.seaco_decoder(context, ctx_len, states.hidden, states.lengths)
    return model.hotword_output_layer(cif_att + dec_att)


def find_span(seq: Sequence[int], sub: Sequence[int]) -> list[int]:
    """Start positions where ``sub`` occurs in ``seq``."""
    n = len(sub)
    return [i for i in range(len(seq) - n + 1) if n and list(seq[i : i + n]) == list(sub)]


@dataclass
class BiasBatch:
    """A batch's hotword lists and per-position head labels.

    ``hotwords``: the distinct hotwords (last entry ``[sos]``). Shared list: every
    utterance sees all of them (``index`` is None). Per-utterance lists: ``index`` (B, N)
    picks each utterance's entries from ``hotwords`` (-1 = padding), ``lengths`` (B,).
    """

    hotwords: list[list[int]]
    labels: torch.Tensor  # (B, T) hotword token, NO_BIAS, or -1 (padding)
    n_hot: int  # positions labelled with a hotword token
    index: torch.Tensor | None = None
    lengths: torch.Tensor | None = None

    def context(self, embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(N, d) shared or (B, N, d) per-utterance embeddings, and the lengths."""
        if self.index is None:
            return embeddings, None
        gathered = embeddings[self.index.clamp(min=0).to(embeddings.device)]
        return gathered, self.lengths


def _label_row(
    row: torch.Tensor, seq: Sequence[int], listed: Sequence[Sequence[int]], no_bias: int
) -> int:
    """Label one transcript in place: NO_BIAS, then each listed hotword's tokens where it
    occurs. Returns the number of hotword positions labelled."""
    import torch

    row[: len(seq)] = no_bias
    n_hot = 0
    for hw in listed:
        for start in find_span(seq, hw):
            row[start : start + len(hw)] = torch.tensor(hw)
            n_hot += len(hw)
    return n_hot


def build_bias_batch(
    texts: Sequence[Sequence[int]],
    candidates: Sequence[Sequence[Sequence[int]]],
    distractors: Sequence[Sequence[int]],
    *,
    no_bias: int,
    sos: int,
    rng: random.Random,
    p_include: float = 0.8,
    list_size: int = 16,
) -> BiasBatch:
    """Sample the batch list and label the transcripts.

    ``candidates[i]``: hotword id lists that occur in utterance ``i`` (from the manifest
    or sampled spans). Each is listed with probability ``p_include``; when left out, its
    positions keep NO_BIAS (the head must not fire for words not in the list).
    ``distractors`` fill the list up to ``list_size`` (plus the final ``[sos]`` entry).
    """
    import torch

    listed: list[list[int]] = []
    for cands in candidates:
        for hw in cands:
            if rng.random() < p_include and list(hw) not in listed:
                listed.append(list(hw))
    pool = [list(d) for d in distractors if list(d) not in listed]
    rng.shuffle(pool)
    listed += pool[: max(0, list_size - len(listed))]
    rng.shuffle(listed)
    width = max(1, max(len(t) for t in texts))
    labels = torch.full((len(texts), width), -1, dtype=torch.long)
    n_hot = sum(_label_row(labels[i], seq, listed, no_bias) for i, seq in enumerate(texts))
    return BiasBatch([*listed, [sos]], labels, n_hot)


def build_utterance_lists(
    texts: Sequence[Sequence[int]],
    candidates: Sequence[Sequence[Sequence[int]]],
    distractors: Sequence[Sequence[int]],
    *,
    no_bias: int,
    sos: int,
    rng: random.Random,
    p_include: float = 0.8,
    n_distractors: int = 1,
    vary: bool = False,
) -> BiasBatch:
    """One short list per utterance: its true hotwords (each with ``p_include``), a few
    distractors, ``[sos]``. The curriculum's easy setting: the head learns to copy from
    the list before it must pick among many entries.

    ``vary``: each utterance draws its number of distractors from 0..``n_distractors``.
    Requests come with lists of any length (often just the one name); a head trained on
    one list length learns to fire only at that length (seen here: the seed's head, trained
    with 4 distractors always, never fired when given only the true hotwords)."""
    import torch

    uniq: dict[tuple[int, ...], int] = {}

    def slot(hw: Sequence[int]) -> int:
        return uniq.setdefault(tuple(hw), len(uniq))

    rows: list[list[int]] = []
    width = max(1, max(len(t) for t in texts))
    labels = torch.full((len(texts), width), -1, dtype=torch.long)
    n_hot = 0
    for i, (seq, cands) in enumerate(zip(texts, candidates, strict=True)):
        listed = [list(hw) for hw in cands if rng.random() < p_include]
        pool = [list(d) for d in distractors if list(d) not in cands]
        k = rng.randint(0, n_distractors) if vary else n_distractors
        listed += rng.sample(pool, min(k, len(pool)))
        rng.shuffle(listed)
        n_hot += _label_row(labels[i], seq, listed, no_bias)
        rows.append([slot(hw) for hw in listed] + [slot([sos])])
    n = max(len(r) for r in rows)
    index = torch.full((len(rows), n), -1, dtype=torch.long)
    for i, r in enumerate(rows):
        index[i, : len(r)] = torch.tensor(r)
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.int32)
    return BiasBatch([list(k) for k in uniq], labels, n_hot, index, lengths)


def seaco_loss(
    logits: torch.Tensor, labels: torch.Tensor, *, no_bias: int, no_bias_weight: float = 1.0
) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy of the head over the text positions, NO_BIAS weighted; accuracy stats.

    ``logits`` (B, L, V) include the eos position, dropped here as funasr does.
    Stats: ``acc_hot`` (right hotword token at hotword positions), ``acc_nobias``
    (NO_BIAS where there is no listed hotword), ``fire_rate`` (non-NO_BIAS argmax at
    those positions) under teacher forcing.
    """
    import torch

    logits = logits[:, : labels.shape[1]].float()
    weight = torch.ones(logits.shape[-1], device=logits.device)
    weight[no_bias] = no_bias_weight
    flat, gold = logits.reshape(-1, logits.shape[-1]), labels.reshape(-1).to(logits.device)
    loss = torch.nn.functional.cross_entropy(
        flat, gold, weight=weight, ignore_index=-1, label_smoothing=0.05
    )
    with torch.no_grad():
        pred = flat.argmax(-1)
        hot, nob = (gold >= 0) & (gold != no_bias), gold == no_bias
        stats = {
            "loss_seaco": float(loss),
            "acc_hot": float((pred[hot] == gold[hot]).float().mean()) if hot.any() else 0.0,
            "acc_nobias": float((pred[nob] == no_bias).float().mean()) if nob.any() else 0.0,
            "n_hot": float(hot.sum()),
            "n_nobias": float(nob.sum()),
        }
    return loss, stats
