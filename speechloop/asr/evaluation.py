"""Evaluate a transcriber on labelled rows, with and without hotwords.

Three decodings of the same rows by the same model: without hotwords, with each
utterance's own hotwords (its manifest list, the per-request case), and with one shared
list of every hotword of the set (a harder list full of distractors). Scores come from
:mod:`speechloop.asr.metrics` (CER with S/D/I, ``acc`` = 1 - CER, hotword recall,
precision, F1). Any gain with hotwords comes from the model's hotword path: there is no
text post-correction here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from speechloop.asr.finetune.data import read_wave
from speechloop.asr.inference import Transcriber
from speechloop.data.types import AsrRow

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
