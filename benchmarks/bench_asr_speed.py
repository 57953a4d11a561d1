"""Speed of the ONNX SeACo path vs funasr's ``AutoModel.generate`` on the full-size model.

The full-size SeACo-Paraformer architecture (the pretrained model's config: SANM encoder
50 blocks x 512, 4 heads, FFN 2048; decoder 16 blocks; SeACo decoder 6 blocks, FFN 1024,
kernel 21; CifPredictorV3; vocabulary 8404, NO_BIAS 8377) with random weights (speed does
not depend on the values) is built once into ``.speechloop/bench_asr/full``: the replica of
the ModelScope snapshot (:mod:`speechloop.asr.replica`: its files, weights from funasr's
own builder), ``am.mvn`` recomputed over the clips timed, plus the ONNX files (never
committed), so that ``AutoModel(model=<dir>, disable_update=True)`` loads it as it loads
the snapshot.

Clips: the four real WAV recordings of ``../shared/realaudio`` whole, and a cut of each
(55%, 65%, 75%, 85% of its length): 8 clips of mixed lengths, no clip twice, decoded one at
a time (batch 1) or 8 per call (batch 8). Threads: ``THREADS`` for onnxruntime and for
funasr, whose ``AutoModel`` sets torch's thread count to its ``ncpu`` argument at
construction and on every ``generate`` (default 4): the fair baseline passes
``ncpu=THREADS`` (case ``funasr_*``); funasr's default is timed too, labelled
``funasr_default_ncpu4_b1`` (on 2 cores it oversubscribes), in a process of its own, so
one process never changes torch's thread count between cases. (On 2026-12-01, under
contention from other jobs, funasr at ``ncpu=2`` took 33-150 s instead of about 4 s for
the 8 clips, with and without the default case in its process: only a quiet run is fair.)

The machine is shared with other jobs, whose load swings within minutes, so every case is
timed in ONE process: after a warm-up, ROUNDS rounds each run every case once in a
rotated order, and the median round is reported (ratios are the median of per-round
ratios). Peak memory is measured apart: each engine alone in its own
process (load + one batch of 8). The load average before and after is recorded; the
figures are fair only when the 1-minute load average was below 1.5 before the run
(``quiet`` in the results).

Cases include the configuration that serves: the split graphs of export revision 3 (a
call without hotwords runs the recogniser alone; they are exported into the model
directory when it holds only an older single graph) and ONNX int8 with
neighbour-independent runs (``max_batch=1, streams=2``: a clip's text does not depend on
the clips batched with it).
The peer a FunASR user would pick for CPU serving, ``funasr-onnx``'s ``SeacoParaformer``
(FunASR's own ONNX runtime), is timed in the same rounds (``funasr_onnx_b1`` and its int8,
``funasr_onnx_int8_b1``), set up as its users would: ``SeacoParaformer(model_dir,
batch_size=1, quantize=..., intra_op_num_threads=THREADS)``, one ``model(wav,
hotwords="")`` per clip, on graphs from FunASR's own exporter of the same model
(:mod:`benchmarks.funasr_onnx_peer`: how, and why one bias value of the hotword head
changes). funasr-onnx is optional: when it does not import, its cases are skipped and the
results say why.

A subset of the cases, for a quick check that leaves the record alone:
``.venv/bin/python -m benchmarks.bench_asr_speed --cases onnx_b1,funasr_onnx_b1 --rounds 2
--out /tmp/asr_speed_check.json`` (writes only that JSON; no docs).

Run: ``.venv/bin/python -m benchmarks.bench_asr_speed`` (about 10 minutes, plus about
4 minutes for the export the first time and 1-3 minutes for funasr's export of the
peer's graphs, cached in ``.speechloop/bench_asr/funasr_onnx``). Writes
``benchmarks/results/asr_speed.json`` and ``docs/results-asr-speed.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.results_io import write_results

ROOT = Path(__file__).resolve().parent.parent
AUDIO = ROOT.parent / "shared" / "realaudio"
CLIPS = ["zh_asr_example.wav", "sample_6s.wav", "zh_long_8s.wav", "zh_mid_5s.wav"]
MODEL_DIR = ROOT / ".speechloop" / "bench_asr" / "full"
RESULTS = ROOT / "benchmarks" / "results" / "asr_speed.json"
TABLE = ROOT / "docs" / "results-asr-speed.md"
THREADS = 2
ROUNDS = 3  # every case is timed once per round, in a rotated order
HOTWORDS = ["丁七万", "三上", "且丕世", "丘丙业", "丛东"]
# case -> (engine, batch size, hotwords)
CASES: dict[str, tuple[str, int, bool]] = {
    "funasr_b1": ("funasr", 1, False),
    "funasr_default_ncpu4_b1": ("funasr_default", 1, False),
    "funasr_b8": ("funasr", 8, False),
    "onnx_b1": ("onnx", 1, False),
    "onnx_b8": ("onnx", 8, False),
    "onnx_b8_one_run": ("onnx_one_run", 8, False),
    "onnx_int8_b1": ("onnx_int8", 1, False),
    "onnx_int8_b8": ("onnx_int8", 8, False),
    "onnx_int8_b8_independent": ("onnx_int8_independent", 8, False),
    "onnx_b8_hotwords": ("onnx", 8, True),
    "funasr_onnx_b1": ("funasr_onnx", 1, False),
    "funasr_onnx_int8_b1": ("funasr_onnx_int8", 1, False),
}
#: funasr-onnx's SeacoParaformer on graphs from FunASR's own exporter (optional peer).
PEER_DIR = MODEL_DIR.parent / "funasr_onnx"
PEER_ENGINES = ("funasr_onnx", "funasr_onnx_int8")


#: Share of each recording kept for the second half of the clips (mixed lengths).
CUTS = (0.55, 0.65, 0.75, 0.85)


def recordings() -> list[Any]:
    """The four real recordings as float32 arrays."""
    import soundfile as sf

    return [sf.read(AUDIO / name, dtype="float32")[0] for name in CLIPS]


def waves() -> list[Any]:
    """The 8 benchmark clips: each recording whole, then a cut of each (mixed lengths)."""
    clips = recordings()
    return clips + [c[: int(len(c) * share)].copy() for c, share in zip(clips, CUTS, strict=True)]


def build_model_dir() -> float:
    """Build the replica snapshot, its CMVN over the clips and its ONNX export; seconds."""
    import torch

    from speechloop.asr.features import compute_cmvn, write_am_mvn
    from speechloop.asr.model import load_from_dir
    from speechloop.asr.onnx_export import export_onnx
    from speechloop.asr.replica import write_replica

    start = time.perf_counter()
    torch.set_num_threads(THREADS)
    params = write_replica(MODEL_DIR, seed=0, threads=THREADS)
    print(f"full model: {params / 1e6:.1f} M parameters", flush=True)
    write_am_mvn(compute_cmvn(recordings()), MODEL_DIR / "am.mvn")
    export_onnx(load_from_dir(MODEL_DIR).model, MODEL_DIR, quantize=True)
    (MODEL_DIR / "READY").write_text(json.dumps({"parameters": params}))
    return time.perf_counter() - start


class _CharTokens:
    """Decode-only tokenizer over the dummy vocabulary (satisfies onnx_infer.TokenizerLike)."""

    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.index = {t: i for i, t in enumerate(tokens)}

    def encode(self, text: str) -> list[int]:
        return [self.index.get(ch, len(self.tokens) - 1) for ch in text if not ch.isspace()]

    def oov(self, text: str) -> list[str]:
        return []  # dummy vocabulary: every character maps to some id

    def normalise(self, text: str) -> str:
        return " ".join(text.split())

    def decode(self, ids: Any) -> str:
        return "".join(self.tokens[i] for i in ids)

    def pieces(self, ids: Any) -> list[str]:
        return [self.tokens[i] for i in ids]


def _engine(engine: str) -> Any:
    """A loaded engine: ``run(items, batch, hotwords) -> texts``."""
    if engine in PEER_ENGINES:
        from benchmarks.funasr_onnx_peer import load_engine

        return load_engine(PEER_DIR, THREADS, quantize=engine == "funasr_onnx_int8")
    if engine in ("funasr", "funasr_default"):
        import torch
        from funasr import AutoModel

        torch.set_num_threads(THREADS)
        # funasr sets torch's threads to ncpu on every generate (default 4)
        ncpu = {"ncpu": THREADS} if engine == "funasr" else {}
        model = AutoModel(
            model=str(MODEL_DIR), disable_update=True, disable_pbar=True, device="cpu", **ncpu
        )

        def run_funasr(items: list[Any], batch: int, hotwords: bool) -> list[str]:
            if batch == 1:
                out = [model.generate(input=c, batch_size=1, disable_pbar=True)[0] for c in items]
            else:
                out = model.generate(input=items, batch_size=batch, disable_pbar=True)
            return [r["text"].replace(" ", "") for r in out]

        return run_funasr
    from speechloop.asr.onnx_infer import OnnxSeacoAsr

    tokens = json.loads((MODEL_DIR / "tokens.json").read_text())
    # default: runs of 2 clips, 2 in flight; "onnx_one_run": the whole batch in one run
    runs = {
        "onnx_one_run": {"max_batch": 8, "streams": 1},
        "onnx_int8_independent": {"max_batch": 1, "streams": 2},
    }.get(engine, {})
    asr = OnnxSeacoAsr(
        MODEL_DIR,
        tokenizer=_CharTokens(tokens),
        quantized=engine.startswith("onnx_int8"),
        threads=THREADS,
        **runs,  # type: ignore[arg-type]
    )

    def run_onnx(items: list[Any], batch: int, hotwords: bool) -> list[str]:
        lists = [HOTWORDS if hotwords else [] for _ in items]
        out = []
        for i in range(0, len(items), batch):
            out += asr.transcribe_batch(items[i : i + batch], lists[i : i + batch])
        return [r.text for r in out]

    return run_onnx


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM; ru_maxrss would carry over the parent's
    peak across fork + exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_worker(engine: str) -> dict[str, Any]:
    """Load one engine alone, decode the 8 clips in one batch (funasr-onnx: one call each,
    how it is timed), report the peak memory."""
    run = _engine(engine)
    run(waves(), 1 if engine in PEER_ENGINES else 8, False)
    if engine.startswith("onnx") and "torch" in sys.modules:
        raise RuntimeError("the ONNX path imported torch")
    return {"engine": engine, "peak_rss_mb": round(peak_rss_mb())}


#: Timed in a process of its own (torch's thread count must not change within a process).
ALONE = ("funasr_default_ncpu4_b1",)


def timing_worker(selected: list[str], alone: bool = False, rounds: int = ROUNDS) -> dict[str, Any]:
    """The cases ``selected`` but :data:`ALONE` in one process (or only those, ``alone``);
    every round times each case once, in a rotated order, so a change of load hits all
    cases alike."""
    clips = waves()
    cases = {n: CASES[n] for n in selected if (n in ALONE) == alone}
    engines = {e: _engine(e) for e in dict.fromkeys(c[0] for c in cases.values())}
    texts: dict[str, list[str]] = {}
    for engine, batch, hot in cases.values():
        engines[engine](clips[:2], batch, hot)  # warm-up
    walls: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            engine, batch, hot = cases[name]
            start = time.perf_counter()
            texts[name] = engines[engine](clips, batch, hot)
            walls[name].append(time.perf_counter() - start)
    return {"walls": walls, "texts": texts, "audio_s": sum(len(c) for c in clips) / 16000}


def _agreement(a: list[str], b: list[str]) -> float:
    """Share of positions where two lists of texts have the same character."""
    same = total = 0
    for x, y in zip(a, b, strict=True):
        total += max(len(x), len(y))
        same += sum(p == q for p, q in zip(x, y, strict=False))
    return round(same / total, 4) if total else 1.0


def _git_commit() -> str:
    proc = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    return proc.stdout.strip()


def _sub(args: list[str]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_asr_speed", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not line:
        raise RuntimeError(f"{args} failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(line[-1][len("RESULT ") :])
    return result


def _median(xs: list[float]) -> float:
    s = sorted(xs)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


NOTES = [
    "## Reading the figures",
    "",
    "- Same output: the ONNX path gives funasr's text on every clip (character agreement "
    "1.0 at batch 1), so the comparison is like for like. Without hotwords the ONNX path "
    "runs the recogniser graph alone (export revision 3; funasr skips the hotword head "
    "too); the single graph of earlier exports ran the head on every call (see the "
    "levers below).",
    "- Where the time goes (onnxruntime profile, one 5.55 s clip): the 50-block encoder "
    "about 60%, the 16-block decoder about 14%, the timestamp BLSTM about 7%, the CIF loops "
    "about 7%, the SeACo decoder about 6%; MatMul is two thirds of all node time. The work "
    "is compute-bound GEMM on 2 cores, which bounds what any runtime can gain over torch.",
    "- How a batch call runs: `OnnxSeacoAsr.transcribe_batch` sorts the clips by length, "
    "cuts them into graph runs of 2 clips (`max_batch`) and keeps 2 runs in flight "
    "(`streams`; the session is thread-safe and releases the GIL). One padded run of all 8 "
    "(`onnx_b8_one_run`, `max_batch=8, streams=1`) is slower than one clip at a time on 2 "
    "cores: it pads to the longest clip (8 clips of 5-8 s: about 23% padded frames), and "
    "a GEMM over about 100 frames already runs near full speed. What a batch buys on CPU "
    "is two runs sharing the cores: inside one run the many small ops (layer norms, the "
    "FSMN memory, softmax) parallelise badly over 2 threads, and two runs in flight fill "
    "those gaps. Runs of similar lengths keep padding small. (This benchmark's clips are 4 "
    "recordings whole and cut, so runs of 2 pair neighbouring lengths and pad a little.) "
    "On a GPU one large run is the right choice.",
    "- funasr's threads: `AutoModel` calls `torch.set_num_threads(ncpu)` at construction "
    "and on every `generate`, default 4. On 2 cores that oversubscribes: the batch of 8 "
    "that took 113 s on 2026-11-29 took 2.85 s with `ncpu=2` (REFERENCE.md). The fair "
    "baseline passes `ncpu` equal to the threads of ours; the default is timed beside it, "
    "labelled.",
    "- The peer, funasr-onnx 0.3.2 `SeacoParaformer` (`funasr_onnx_*`; FunASR's own ONNX "
    "runtime): graphs from FunASR's own exporter of the same model (its SeACo export "
    "wrapper and int8 quantisation, run with torch's TorchScript exporter, `dynamo=False`: "
    "torch 2.9's default exporter fails on it; benchmarks/funasr_onnx_peer.py), set up as "
    "its users would (`batch_size=1`, `intra_op_num_threads` as ours, one `model(wav, "
    "hotwords='')` per clip: a list of clips at `batch_size=1` decodes only the first). "
    "Same output: its float text is funasr's on every clip but funasr's last token "
    "(it keeps `token_num - predictor_bias` tokens; on a trained model funasr drops the "
    "end-of-sentence token there instead). Its graph always runs the hotword head (with a "
    "pseudo-hotword for `hotwords=''`), which funasr and our split graphs skip without "
    "hotwords: a random head overrides almost every token, so the export raises the "
    "head's NO_BIAS output bias (one value; same graph, same work) so that, as a trained "
    "head does, it defers to the recogniser. Its sessions leave onnxruntime's thread "
    "spinning on (ours turn it off on shared cores) and its int8 is FunASR's: MatMul "
    "weights as uint8 (ours: signed int8, see int8 below). 0.4.3 (numpy<=1.26, "
    "not installable beside this lock) has the same `SeacoParaformer` inference path "
    "and session options; its changes (exceptions, mp3 input, the fbank object a local, "
    "not an attribute, a cached CMVN load) do not touch speed.",
    "- Thread spinning: onnxruntime's worker threads busy-wait by default; on shared cores "
    "that cost about 20% in one A/B here, so OnnxSeacoAsr turns spinning off (``spin=True`` for a "
    "dedicated machine).",
    "- int8 (dynamic: MatMul weights signed int8 per output channel, activations quantised "
    "to uint8 at run time; output layers and LSTMs kept float) is the largest speed lever on "
    "CPU. The signedness matters: onnxruntime's VNNI / AMX kernels take uint8 activations "
    "times int8 weights. With uint8 weights (this project's first int8 export) the graph "
    "ran no faster than float: 8 clips one at a time, same process, 2026-11-29, RTF 0.045 "
    "float, 0.045 uint8 weights, 0.026 int8 weights (a one-off A/B outside this benchmark: "
    "`quantize_int8` with `QuantType.QUInt8` against the shipped setting).",
    "- int8 and batching: dynamic quantisation picks one activation scale per tensor over the "
    "whole run, so a clip's int8 output depends a little on the clip it shares a run with "
    "(random weights, one-off run outside this benchmark: 0.82 character agreement between "
    "int8 runs of 2 and int8 one at a time; float runs of equal lengths agree exactly, "
    "`onnx_b8 vs onnx_b1` above). On a trained model the change is "
    "measured by the parity benchmark (below). Where a clip's text must not depend on its "
    "neighbours, call `OnnxSeacoAsr(max_batch=1, streams=2)`: two single-clip runs in flight.",
    "",
]


PARITY = ROOT / "benchmarks" / "results" / "asr_onnx_parity.json"


def _int8_note() -> list[str]:
    """int8's accuracy change, read from the parity benchmark's results (if it has run)."""
    if not PARITY.is_file():
        return ["- int8 accuracy: run `python -m benchmarks.bench_asr_onnx_parity`.", ""]
    p = json.loads(PARITY.read_text(encoding="utf-8"))
    n, t, q, f = p["utterances"], p["none/torch"], p["none/onnx_int8"], p["none/onnx"]
    return [
        f"- int8 accuracy ({p['model']}, {n} golden utterances, {p['date_utc'][:10]}, "
        "`python -m benchmarks.bench_asr_onnx_parity`): "
        f"{q['utterances_identical_to_torch']}/{n} utterances identical to torch, "
        f"{100 * q['token_agreement_with_torch']:.1f}% of tokens, CER "
        f"{100 * t['cer']:.1f}% -> {100 * q['cer']:.1f}%; float ONNX: "
        f"{f['utterances_identical_to_torch']}/{n} identical.",
        *_batched_note(p),
        "",
    ]


def _batched_note(p: dict[str, Any]) -> list[str]:
    """How the batch call changes int8 output on the trained model (parity results)."""
    b = p.get("none/onnx_int8_batched")
    if b is None:
        return []
    n, f = p["utterances"], p["none/onnx_batched"]
    same = f["utterances_identical_to_one_at_a_time"]
    return [
        f"  Through the batch call (runs of 2 clips of mixed lengths): int8 gives "
        f"{b['utterances_identical_to_one_at_a_time']}/{n} utterances as int8 one at a "
        f"time, CER {100 * b['cer']:.1f}%; float gives {same}/{n} as float one at a time"
        + ("." if same == n else " (the others differ by padding).")
    ]


def _verdict(meta: dict[str, Any]) -> list[str]:
    """The issue's two speed goals against this run's ratios."""
    r = meta["ratios"]
    fp32, int8 = r["onnx_b1 vs funasr_b1 (speed-up)"], r["onnx_int8_b1 vs funasr_b1 (speed-up)"]
    batch = r["onnx batch 8 vs batch 1 (throughput)"]
    batch8 = r["onnx int8 batch 8 vs batch 1 (throughput)"]

    def met(ok: bool) -> str:
        return "met" if ok else "NOT met"

    if not meta["quiet"]:
        return ["- Goals: not judged (the machine was not quiet during this run).", ""]
    return [
        f"- Goal ONNX >= 3x funasr at batch 1: {met(int8 >= 3)} with int8 ({int8}x), "
        f"{met(fp32 >= 3)} in float32 ({fp32}x).",
        f"- Goal batch 8 >= 1.5x the throughput of batch 1 (ONNX): {met(batch8 >= 1.5)} "
        f"with int8 ({batch8}x), {met(batch >= 1.5)} in float32 ({batch}x).",
        "",
    ]


def _machine(meta: dict[str, Any]) -> str:
    """How busy the machine was (the load average decides the wording)."""
    how = (
        "quiet (1-minute load average below 1.5 before the run)"
        if meta["quiet"]
        else "NOT quiet: shared with other jobs, so these figures are not a fair comparison"
    )
    return (
        f"Machine: {meta['cpus']} CPU cores, {how}; load average before "
        f"{meta['load_before']}, after {meta['load_after']}."
    )


def _table(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        "# ASR speed: ONNX path vs funasr AutoModel.generate (full-size SeACo-Paraformer)",
        "",
        f"Model: full-size SeACo-Paraformer architecture, random weights "
        f"({meta['parameters_m']} M parameters). Clips: 4 real recordings whole and cut "
        f"to 55-85%: 8 clips of mixed lengths, {meta['audio_s']} s of audio. {THREADS} "
        "threads for onnxruntime and torch (funasr `ncpu` the same, except the labelled "
        "default case). "
        f"All cases timed in one process, {ROUNDS} rounds, each round running every case "
        "once in a rotated order (load changes hit all cases alike); the table gives the "
        "median round. Peak RSS: each engine alone in its own process, load + one batch of 8 "
        "(funasr-onnx: the 8 clips one call each, as it is timed).",
        _machine(meta),
        "",
        "| case | engine | batch | hotwords | RTF | audio s / s | peak RSS (MB) | walls (s) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        if "skipped" in r:
            lines.append(
                f"| {r['name']} | {r['engine']} | {r['batch']} | {r['hotwords']} | "
                f"skipped: {r['skipped']} | | | |"
            )
            continue
        lines.append(
            f"| {r['name']} | {r['engine']} | {r['batch']} | {r['hotwords']} | {r['rtf']:.4f} | "
            f"{r['audio_s_per_s']:.2f} | {r['peak_rss_mb']} | {r['walls']} |"
        )
    lines += ["", "Ratios (median over rounds of the per-round ratio):", ""]
    lines += [f"- {k}: {v}" for k, v in meta["ratios"].items()]
    lines += ["", "Character agreement of the outputs:", ""]
    lines += [f"- {k}: {v}" for k, v in meta["character_agreement"].items()]
    lines += ["", f"Command: `{meta['command']}`", "", *NOTES, *_int8_note(), *_verdict(meta)]
    from benchmarks.bench_asr_levers import docs_lines

    return "\n".join([*lines, *docs_lines()])


#: (label, case a, case b): the median over rounds of b's wall / a's wall.
RATIOS = [
    ("onnx_b1 vs funasr_b1 (speed-up)", "onnx_b1", "funasr_b1"),
    (
        "funasr ncpu=2 vs its default ncpu=4 (own process), batch 1 (speed-up)",
        "funasr_b1",
        "funasr_default_ncpu4_b1",
    ),
    (
        "onnx_int8_b8_independent vs funasr_b1 (speed-up)",
        "onnx_int8_b8_independent",
        "funasr_b1",
    ),
    ("onnx_int8_b8 vs funasr_b8 (speed-up)", "onnx_int8_b8", "funasr_b8"),
    ("onnx_b8 vs funasr_b1 (speed-up)", "onnx_b8", "funasr_b1"),
    ("onnx_int8_b1 vs funasr_b1 (speed-up)", "onnx_int8_b1", "funasr_b1"),
    ("onnx_b8 vs funasr_b8 (speed-up)", "onnx_b8", "funasr_b8"),
    ("onnx batch 8 vs batch 1 (throughput)", "onnx_b8", "onnx_b1"),
    ("onnx batch 8 in one run vs batch 1 (throughput)", "onnx_b8_one_run", "onnx_b1"),
    ("onnx int8 batch 8 vs batch 1 (throughput)", "onnx_int8_b8", "onnx_int8_b1"),
    ("funasr batch 8 vs batch 1 (throughput)", "funasr_b8", "funasr_b1"),
    ("onnx_b1 vs funasr_onnx_b1 (speed-up)", "onnx_b1", "funasr_onnx_b1"),
    ("onnx_int8_b1 vs funasr_onnx_int8_b1 (speed-up)", "onnx_int8_b1", "funasr_onnx_int8_b1"),
    ("onnx_int8_b1 vs funasr_onnx_b1 (speed-up)", "onnx_int8_b1", "funasr_onnx_b1"),
    (
        "onnx_int8_b8_independent vs funasr_onnx_b1 (speed-up)",
        "onnx_int8_b8_independent",
        "funasr_onnx_b1",
    ),
    ("funasr_onnx_b1 vs funasr_b1 (speed-up)", "funasr_onnx_b1", "funasr_b1"),
    ("funasr-onnx int8 vs float, batch 1 (speed-up)", "funasr_onnx_int8_b1", "funasr_onnx_b1"),
]


def _ratios(walls: dict[str, list[float]]) -> dict[str, float]:
    """The ratios of :data:`RATIOS` whose two cases were both timed."""
    ratios = {}
    for label, a, b in RATIOS:
        if a in walls and b in walls:
            per_round = [y / x for x, y in zip(walls[a], walls[b], strict=True)]
            ratios[label] = round(_median(per_round), 2)
    return ratios


def _agreements(texts: dict[str, list[str]]) -> dict[str, float]:
    """Character agreement between the outputs of the cases that were timed."""
    pairs = {
        "onnx_b1 vs funasr_b1": ("onnx_b1", "funasr_b1"),
        "onnx_b8 vs onnx_b1": ("onnx_b8", "onnx_b1"),
        "onnx_int8_b1 vs onnx_b1 (int8 change)": ("onnx_int8_b1", "onnx_b1"),
        "funasr_onnx_int8_b1 vs funasr_onnx_b1 (funasr-onnx's int8 change)": (
            "funasr_onnx_int8_b1",
            "funasr_onnx_b1",
        ),
    }
    agree = {k: _agreement(texts[a], texts[b]) for k, (a, b) in pairs.items() if a in texts}
    peer, ref = texts.get("funasr_onnx_b1"), texts.get("funasr_b1")
    if peer is not None and ref is not None:
        # funasr-onnx keeps token_num - predictor_bias tokens: funasr's text but its last
        # token (benchmarks/funasr_onnx_peer.py); compared on funasr-onnx's length
        cut = [f[: len(p)] for p, f in zip(peer, ref, strict=True)]
        agree["funasr_onnx_b1 vs funasr_b1 (on funasr-onnx's length; it drops the last)"] = (
            _agreement(peer, cut)
        )
    return agree


def _skipped() -> dict[str, str]:
    """Cases that cannot run here, with the reason (funasr-onnx is optional)."""
    from benchmarks.funasr_onnx_peer import unavailable_reason

    reason = unavailable_reason()
    if reason is None:
        return {}
    return {n: reason for n, c in CASES.items() if c[0] in PEER_ENGINES}


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_asr_speed")
    parser.add_argument("--timing", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--timing-alone", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--memory", metavar="ENGINE", help=argparse.SUPPRESS)
    parser.add_argument(
        "--cases", help="comma-separated subset of the cases (a check; needs --out)"
    )
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="timed rounds")
    parser.add_argument("--out", type=Path, help="results JSON (then the docs are left alone)")
    args = parser.parse_args(argv)
    names = args.cases.split(",") if args.cases else list(CASES)
    unknown = [n for n in names if n not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {unknown}; known: {', '.join(CASES)}")
    worker = args.timing or args.timing_alone or args.memory
    if (args.cases or args.rounds != ROUNDS) and args.out is None and not worker:
        parser.error("--cases / --rounds time a check: give --out (the record keeps its own)")
    args.names = names
    return args


def _measure(names: list[str], rounds: int) -> dict[str, Any]:
    """Timed rounds of ``names`` (the ALONE cases in a process of their own)."""
    opts = ["--cases", ",".join(names), "--rounds", str(rounds)]
    timing = _sub(["--timing", *opts])
    if any(n in ALONE for n in names):
        alone = _sub(["--timing-alone", *opts])
        timing["walls"].update(alone["walls"])
        timing["texts"].update(alone["texts"])
    return timing


def main(argv: list[str]) -> int:
    """Build the model if needed, time all cases, measure memory per engine, write results."""
    args = _parse(argv)
    if args.timing or args.timing_alone:
        result = timing_worker(args.names, alone=args.timing_alone, rounds=args.rounds)
        print("RESULT " + json.dumps(result, ensure_ascii=False))
        return 0
    if args.memory:
        print("RESULT " + json.dumps(memory_worker(args.memory)))
        return 0
    load_before = os.getloadavg()
    build_s = 0.0 if (MODEL_DIR / "READY").is_file() else build_model_dir()
    from benchmarks.bench_asr_levers import ensure_layout

    ensure_layout("split")  # the graphs that serve (a directory built before revision 3)
    skipped = _skipped()
    names = [n for n in args.names if n not in skipped]
    peer_export_s = None
    if any(CASES[n][0] in PEER_ENGINES for n in names):
        from benchmarks.funasr_onnx_peer import export_funasr_onnx

        peer_export_s = round(export_funasr_onnx(MODEL_DIR, PEER_DIR, THREADS), 1)
    timing = _measure(names, args.rounds)
    load_after = os.getloadavg()  # right after the timed rounds, before the memory runs
    engines = dict.fromkeys(CASES[n][0] for n in names if n not in ALONE)
    memory = {e: _sub(["--memory", e])["peak_rss_mb"] for e in engines}
    audio_s = timing["audio_s"]
    walls = timing["walls"]
    rows: list[dict[str, Any]] = []
    for name in args.names:
        engine, batch, hot = CASES[name]
        row: dict[str, Any] = {"name": name, "engine": engine, "batch": batch}
        row["hotwords"] = len(HOTWORDS) if hot else 0
        if name in skipped:
            rows.append({**row, "skipped": skipped[name]})
            continue
        wall = _median(walls[name])
        row["rtf"] = round(wall / audio_s, 4)
        row["audio_s_per_s"] = round(audio_s / wall, 2)
        # funasr's default-ncpu case loads the same model as funasr
        row["peak_rss_mb"] = memory.get(engine, memory.get("funasr"))
        row["walls"] = [round(w, 2) for w in walls[name]]
        rows.append(row)
    meta = {
        "cpus": os.cpu_count(),
        "threads": THREADS,
        "funasr_ncpu": THREADS,
        "rounds": args.rounds,
        # quiet: nothing else ran before, and after the run the load is not above
        # what this benchmark's own threads account for
        "quiet": load_before[0] < 1.5 and load_after[0] < 1.5 + THREADS,
        "code_version": _git_commit(),
        "audio_s": round(audio_s, 2),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in load_after],
        "build_s": round(build_s, 1),
        "funasr_onnx_export_s": peer_export_s,
        "skipped": skipped,
        "parameters_m": round(json.loads((MODEL_DIR / "READY").read_text())["parameters"] / 1e6, 1),
        "ratios": _ratios(walls),
        "character_agreement": _agreements(timing["texts"]),
        "command": " ".join([".venv/bin/python -m benchmarks.bench_asr_speed", *argv]),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if args.out is not None:
        write_results(args.out, {"meta": meta, "rows": rows})
        print(json.dumps({"meta": meta, "rows": rows}, ensure_ascii=False, indent=1))
        return 0
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    write_results(RESULTS, {"meta": meta, "rows": rows})
    TABLE.write_text(_table(rows, meta))
    print(_table(rows, meta))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
