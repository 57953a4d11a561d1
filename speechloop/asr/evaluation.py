"""Evaluate a transcriber on labelled rows, with and without hotwords.

Three decodings of the same rows by the same model: without hotwords, with each
utterance's own hotwords (its manifest list, the per-request case), and with one shared
list of every hotword of the set (a harder list full of distractors). Scores come from
:mod:`speechloop.asr.metrics` (CER with S/D/I, ``acc`` = 1 - CER, hotword recall,
precision, F1). Any gain with hotwords comes from the model's hotword path: there is no
text post-correction here.

:func:`evaluate_report` is the gate's input: per-utterance scores of two decodings
(without hotwords, and with one shared list) as a :class:`speechloop.gating.AsrReport`,
whose ``summary()`` gives the same aggregates. It takes any ``decode(waves, hotwords)``
function: :func:`transcriber_decoder` and :func:`engine_decoder` adapt the two kinds of
model objects.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt

from speechloop.asr.finetune.data import read_wave
from speechloop.asr.inference import Transcriber
from speechloop.data.types import AsrRow

if TYPE_CHECKING:
    from speechloop.gating.asr_report import AsrReport

Waves = list[npt.NDArray[np.float32]]
# (16 kHz mono waves, hotword list or None) -> one hypothesis text per wave
Decode = Callable[[Waves, list[str] | None], list[str]]

MODES = ("none", "own", "all")


def decode_rows(
    transcriber: Transcriber, rows: Sequence[AsrRow], mode: str, batch_size: int = 16
) -> list[str]:
    """Hypotheses for ``rows``: ``mode`` none / own (per-utterance list) / all (set list)."""
    every = sorted({h for r in rows for h in r.hotwords})
    hyps: list[str] = []
    if mode == "own":
        for row in rows:
            res = transcriber.transcribe(
                [read_wave(row)], list(row.hotwords) or None, timestamps=False
            )
            hyps.append(res[0].text)
        return hyps
    lst = every if mode == "all" else None
    for i in range(0, len(rows), batch_size):
        chunk = rows[i : i + batch_size]
        res = transcriber.transcribe([read_wave(r) for r in chunk], lst, timestamps=False)
        hyps.extend(t.text for t in res)
    return hyps


def score(
    refs: Sequence[str], hyps: Sequence[str], hotwords: Sequence[Sequence[str]]
) -> dict[str, Any]:
    """CER, acc and hotword recall/precision/F1 of one decoding (via ``metrics``)."""
    from speechloop.asr import metrics

    return dict(metrics.score_corpus(refs, hyps, hotwords).as_dict())


def evaluate_rows(
    transcriber: Transcriber, rows: Sequence[AsrRow], modes: Sequence[str] = MODES
) -> dict[str, Any]:
    """Scores per mode, plus the gains of the per-request mode over no hotwords."""
    refs = [r.text for r in rows]
    hws = [list(r.hotwords) for r in rows]
    report: dict[str, Any] = {}
    for mode in modes:
        report[mode] = score(refs, decode_rows(transcriber, rows, mode), hws)
    if "none" in report and "own" in report:
        report["recall_gain_own"] = (
            report["own"]["hotword_recall"] - report["none"]["hotword_recall"]
        )
        report["cer_change_own"] = report["own"]["cer"] - report["none"]["cer"]
    return report


class _Engine(Protocol):
    """What :func:`engine_decoder` needs of an ASR engine (speechloop.asr.engine)."""

    def parse_hotwords(self, raw: Sequence[str]) -> Any:
        """The engine's hotword policy."""
        ...

    def transcribe(self, waves: Sequence[Any], hotwords: Any = None) -> Sequence[Any]:
        """Outputs with a ``text``."""
        ...


def transcriber_decoder(transcriber: Transcriber) -> Decode:
    """``decode`` over a torch :class:`Transcriber` (no timestamps)."""

    def decode(waves: Waves, hotwords: list[str] | None) -> list[str]:
        return [t.text for t in transcriber.transcribe(waves, hotwords, timestamps=False)]

    return decode


def engine_decoder(engine: _Engine) -> Decode:
    """``decode`` over an engine with ``parse_hotwords`` and ``transcribe`` (any backend)."""

    def decode(waves: Waves, hotwords: list[str] | None) -> list[str]:
        parsed = engine.parse_hotwords(hotwords) if hotwords else None
        return [o.text for o in engine.transcribe(waves, parsed)]

    return decode


def evaluate_report(
    decode: Decode,
    rows: Sequence[AsrRow],
    *,
    version: str,
    hotword_list: Sequence[str] | None = None,
    eval_set: str = "",
    batch_size: int = 16,
) -> AsrReport:
    """Per-utterance scores of one model on ``rows``, decoded without hotwords and with
    ``hotword_list`` (default: every hotword of the rows), for the promotion gate."""
    from speechloop.gating.asr_report import build_asr_report, shared_list

    names = (
        list(hotword_list)
        if hotword_list is not None
        else list(shared_list([r.hotwords for r in rows]))
    )
    with_list: list[str] = []
    plain: list[str] = []
    for i in range(0, len(rows), batch_size):
        waves = [read_wave(r) for r in rows[i : i + batch_size]]
        with_list.extend(decode(waves, names or None))
        plain.extend(decode(waves, None))
    return build_asr_report(
        version, [r.id for r in rows], [r.text for r in rows], with_list, plain, names,
        eval_set=eval_set,
    )  # fmt: skip
