"""Speed of the speaker-embedding paths on the full-size ERes2NetV2, side by side.

The published ERes2NetV2 configuration (17.9 M parameters, 192-dim embeddings) with
random weights (speed does not depend on the values) is built once into
``.speechloop/bench_spk/full`` (``model.pt``, ``config.json``, ``model.onnx``; never
committed).

Engines, on 3-second clips cut from the real recordings of ``../shared/realaudio``:

- ``funasr``: funasr's ``ERes2NetV2SV.inference`` (the path ``AutoModel.generate`` runs
  for this model: torchaudio Kaldi fbank, mean normalisation, padded batch, forward),
  torch, ``no_grad``;
- ``torch_plain``: the control: the same network's plain ``forward`` in torch on
  precomputed features (no wrapper, no masking): what torch itself costs;
- ``torch``: speechloop's :class:`SpeakerEmbedder` with :class:`TorchBackend` (our
  features, the length-masked network);
- ``onnx``: speechloop's :class:`SpeakerEmbedder` with :class:`OnnxBackend`.

Every engine runs ``THREADS`` threads. All cases (engine x batch size) are timed in ONE
process: after a warm-up, ``ROUNDS`` rounds each run every case once in a rotated order,
so a change of machine load hits all cases alike; the median round is reported and
ratios are medians of per-round ratios. A case embeds ``CLIPS_PER_CASE`` clips: one at a
time (batch 1) or in one call (batch 16). Peak memory is measured apart, each engine
alone in its own process (load + one batch of 16). The load average before and after is
recorded; a figure taken at a load average above the core count is marked as such.

Run: ``.venv/bin/python -m benchmarks.bench_spk_speed`` (about 5 minutes on a quiet
2-core machine). Writes ``benchmarks/results/spk_speed.json``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.results_io import write_results

ROOT = Path(__file__).resolve().parent.parent
AUDIO = ROOT.parent / "shared" / "realaudio"
CLIPS = ["zh_asr_example.wav", "sample_6s.wav", "zh_long_8s.wav", "zh_mid_5s.wav"]
MODEL_DIR = ROOT / ".speechloop" / "bench_spk" / "full"
RESULTS = ROOT / "benchmarks" / "results" / "spk_speed.json"
THREADS = 2
CLIP_S = 3.0
CLIPS_PER_CASE = 16
ROUNDS = 3
ENGINES = ("funasr", "torch_plain", "torch", "onnx")
BATCHES = (1, 16)


def clips(n: int) -> list[Any]:
    """``n`` 3 s clips cut round-robin from the real recordings."""
    from speechloop.audio import decode_audio

    audio = [decode_audio(AUDIO / c).samples for c in CLIPS]
    size = int(CLIP_S * 16000)
    out = []
    for i in range(n):
        src = audio[i % len(audio)]
        start = (i * 4000) % (len(src) - size)
        out.append(src[start : start + size].copy())
    return out


def build_model() -> None:
    """Random full-size model directory with its ONNX export (once)."""
    if (MODEL_DIR / "model.onnx").is_file():
        return
    import torch

    from speechloop.speaker.model import PUBLISHED_CONFIG, SpkModel, build_network, save_model_dir
    from speechloop.speaker.onnx_export import export_onnx

    torch.manual_seed(0)
    model = SpkModel(build_network(PUBLISHED_CONFIG).eval(), PUBLISHED_CONFIG, "bench-full")
    save_model_dir(model, MODEL_DIR)
    export_onnx(model, MODEL_DIR / "model.onnx")


def _engine(engine: str) -> Any:
    """A loaded engine: ``run(list of clips) -> None`` embeds them in one call."""
    import numpy as np
    import torch

    torch.set_num_threads(THREADS)
    if engine == "funasr":
        from funasr.models.eres2net.model import ERes2NetV2SV

        model = ERes2NetV2SV().eval()  # published defaults: the same network
        state = torch.load(MODEL_DIR / "model.pt")
        model.load_state_dict({f"model.{k}": v for k, v in state.items()})

        def run_funasr(items: list[Any]) -> None:
            with torch.no_grad():
                model.inference([torch.from_numpy(c) for c in items], device="cpu")

        return run_funasr
    from speechloop.speaker.embed import OnnxBackend, SpeakerEmbedder, TorchBackend
    from speechloop.speaker.loading import load_model_dir

    if engine == "onnx":
        emb = SpeakerEmbedder(
            OnnxBackend(MODEL_DIR / "model.onnx", threads=THREADS), version="bench"
        )
    else:
        spk = load_model_dir(MODEL_DIR)
        emb = SpeakerEmbedder(TorchBackend(spk, device="cpu"), version="bench")
    if engine == "torch_plain":
        net = spk.network.eval()

        def run_plain(items: list[Any]) -> None:
            feats = np.stack([emb.chunks(np.asarray(c), "clip")[0] for c in items])
            with torch.inference_mode():
                net(torch.from_numpy(feats))

        return run_plain

    def run_embedder(items: list[Any]) -> None:
        emb.embed_batch([np.asarray(c) for c in items])

    return run_embedder


def _case(run: Any, data: list[Any], batch: int) -> None:
    for i in range(0, len(data), batch):
        run(data[i : i + batch])


def timing_worker() -> dict[str, Any]:
    """Every case in this process, rotated rounds (see the module docstring)."""
    data = clips(CLIPS_PER_CASE)
    engines = {e: _engine(e) for e in ENGINES}
    cases = [(e, b) for b in BATCHES for e in ENGINES]
    for engine, batch in cases:
        _case(engines[engine], data[:batch], batch)  # warm-up
    walls: dict[str, list[float]] = {f"{e}_b{b}": [] for e, b in cases}
    for r in range(ROUNDS):
        for engine, batch in cases[r % len(cases) :] + cases[: r % len(cases)]:
            start = time.perf_counter()
            _case(engines[engine], data, batch)
            walls[f"{engine}_b{batch}"].append(time.perf_counter() - start)
    return {"walls": walls}


def memory_worker(engine: str) -> dict[str, Any]:
    """Load one engine alone, embed one batch of 16, report the peak memory (VmHWM)."""
    run = _engine(engine)
    run(clips(16))
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return {"engine": engine, "peak_rss_mb": round(int(line.split()[1]) / 1024)}
    raise RuntimeError("no VmHWM in /proc/self/status")


def _sub(args: list[str]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_spk_speed", *args],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise RuntimeError(f"{args} failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1][len("RESULT ") :])
    return result


def _median(xs: list[float]) -> float:
    s = sorted(xs)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def _git_commit() -> str:
    proc = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    return proc.stdout.strip()


def main() -> None:
    """Build the model, time every case in one process, measure memory, write results."""
    build_model()
    load_before = os.getloadavg()
    walls = _sub(["--timing"])["walls"]
    load_after = os.getloadavg()
    memory = {e: _sub(["--memory", e])["peak_rss_mb"] for e in ENGINES}
    rows = [
        {
            "engine": e,
            "batch": b,
            "embeddings_per_s": round(CLIPS_PER_CASE / _median(walls[f"{e}_b{b}"]), 2),
            "walls": [round(w, 2) for w in walls[f"{e}_b{b}"]],
            "peak_rss_mb": memory[e],
        }
        for b in BATCHES
        for e in ENGINES
    ]
    ratios = {}
    for b in BATCHES:
        for e in ("onnx", "torch", "torch_plain"):
            per_round = [
                f / x for x, f in zip(walls[f"{e}_b{b}"], walls[f"funasr_b{b}"], strict=True)
            ]
            ratios[f"{e} vs funasr, batch {b} (speed-up)"] = round(_median(per_round), 2)
    out = {
        "model": "ERes2NetV2 published config (random weights), 17.9 M parameters",
        "clip_s": CLIP_S,
        "clips_per_case": CLIPS_PER_CASE,
        "threads": THREADS,
        "rounds": ROUNDS,
        "method": "all cases in one process, rotated rounds, median round",
        "rows": rows,
        "ratios": ratios,
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in load_after],
        # quiet: nothing else ran before, and after the run the load is not above
        # what this benchmark's own threads account for
        "quiet": load_before[0] < 1.5 and load_after[0] < 1.5 + THREADS,
        "cpu_count": os.cpu_count(),
        "code_version": _git_commit(),
        "command": ".venv/bin/python -m benchmarks.bench_spk_speed",
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_results(RESULTS, out)
    print(json.dumps({"rows": rows, "ratios": ratios}, indent=1))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--timing"]:
        print("RESULT " + json.dumps(timing_worker()), flush=True)
    elif sys.argv[1:2] == ["--memory"]:
        print("RESULT " + json.dumps(memory_worker(sys.argv[2])), flush=True)
    else:
        main()
