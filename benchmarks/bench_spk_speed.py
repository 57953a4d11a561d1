"""Speed of the ONNX speaker-embedding path vs funasr's torch wrapper, full-size ERes2NetV2.

The published ERes2NetV2 configuration (17.9 M parameters, 192-dim embeddings) with
random weights (speed does not depend on the values) is built once into
``.speechloop/bench_spk/full`` (``model.pt``, ``config.json``, ``model.onnx``; never
committed).

Compared, on 3-second clips cut from the real recordings of ``../shared/realaudio``:

- ``funasr``: funasr's ``ERes2NetV2SV.inference`` (the path ``AutoModel.generate`` runs
  for this model: audio loading, torchaudio Kaldi fbank, mean normalisation, padded
  batch, forward), torch, ``no_grad``;
- ``onnx``: speechloop's :class:`SpeakerEmbedder` with :class:`OnnxBackend`
  (kaldi-native-fbank features in numpy, ONNX Runtime, length-aware graph).

Each (engine, batch) runs in its own subprocess so peak memory is clean: imports, model
load, one warm-up call, then timed calls for at least ``MIN_SECONDS`` (and at least 2
calls). Both use ``THREADS`` threads. Peak RSS is ``ru_maxrss`` of the subprocess;
``model_rss_mb`` is the RSS growth from after imports to the end. The machine is shared:
the load average is recorded with the figures.

Run: ``.venv/bin/python -m benchmarks.bench_spk_speed`` (about 3-5 minutes). Writes
``benchmarks/results/spk_speed.json``.
"""

from __future__ import annotations

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
MODEL_DIR = ROOT / ".speechloop" / "bench_spk" / "full"
RESULTS = ROOT / "benchmarks" / "results" / "spk_speed.json"
THREADS = 2
CLIP_S = 3.0
MIN_SECONDS = 8.0
RUNS = [("funasr", 1), ("onnx", 1), ("funasr", 16), ("onnx", 16)]


def _rss_mb() -> float:
    """Current resident set size (Linux /proc)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


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


def _timed(call: Any, batch: int) -> dict[str, float]:
    call()  # warm-up
    calls, started = 0, time.perf_counter()
    while calls < 2 or time.perf_counter() - started < MIN_SECONDS:
        call()
        calls += 1
    seconds = time.perf_counter() - started
    return {"calls": calls, "seconds": seconds, "embeddings_per_s": calls * batch / seconds}


def worker(engine: str, batch: int) -> dict[str, Any]:
    """One measurement (run in a subprocess)."""
    import numpy as np
    import torch

    torch.set_num_threads(THREADS)
    data = clips(batch)
    if engine == "funasr":
        from funasr.models.eres2net.model import ERes2NetV2SV

        base = _rss_mb()
        model = ERes2NetV2SV().eval()  # published defaults: the same network
        model.load_state_dict(
            {f"model.{k}": v for k, v in torch.load(MODEL_DIR / "model.pt").items()}
        )
        tensors = [torch.from_numpy(c) for c in data]

        def call() -> None:
            with torch.no_grad():
                model.inference(tensors, device="cpu")

    else:
        from speechloop.speaker.embed import OnnxBackend, SpeakerEmbedder

        base = _rss_mb()
        emb = SpeakerEmbedder(
            OnnxBackend(MODEL_DIR / "model.onnx", threads=THREADS), version="bench"
        )
        arrays = [np.asarray(c) for c in data]

        def call() -> None:
            emb.embed_batch(arrays)

    result = _timed(call, batch)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"engine": engine, "batch": batch, **result, "peak_rss_mb": round(peak, 1),
            "model_rss_mb": round(_rss_mb() - base, 1)}  # fmt: skip


def main() -> None:
    """Build the model, run every measurement in a subprocess, write the results."""
    build_model()
    load_before = os.getloadavg()
    rows = []
    for engine, batch in RUNS:
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.bench_spk_speed", "--worker", engine, str(batch)],
            check=True, capture_output=True, text=True, cwd=ROOT,
        )  # fmt: skip
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        print(json.dumps(row), flush=True)
        rows.append(row)
    speedup = {
        str(b): next(r for r in rows if r["engine"] == "onnx" and r["batch"] == b)[
            "embeddings_per_s"
        ]
        / next(r for r in rows if r["engine"] == "funasr" and r["batch"] == b)["embeddings_per_s"]
        for b in (1, 16)
    }
    out = {
        "model": "ERes2NetV2 published config (random weights), 17.9 M parameters",
        "clip_s": CLIP_S,
        "threads": THREADS,
        "runs": rows,
        "onnx_speedup": speedup,
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "cpu_count": os.cpu_count(),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    write_results(RESULTS, out)
    print(json.dumps({"onnx_speedup": speedup}))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        print(json.dumps(worker(sys.argv[2], int(sys.argv[3]))), flush=True)
    else:
        main()
