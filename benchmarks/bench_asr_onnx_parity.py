"""ONNX vs torch on the golden set: same tokens? And what int8 quantisation changes.

Takes a model directory (default: the shipped seed, ``speechloop/seeds/asr``) and a golden
ASR manifest (default: the demo store's ``asr/eval/golden``), exports the model to ONNX
(float and int8) under ``.speechloop/bench_asr/parity``, and decodes every utterance one
at a time (no batch padding, so any difference is the runtime's) three ways: funasr's torch
inference path (``encode``, ``calc_predictor``, ``_seaco_decode_with_ASF``, greedy), the
float ONNX graphs and the int8 ONNX graphs, without hotwords and with each utterance's own
hotwords. Then the two ONNX engines once more through their batch call (runs of 2 clips,
as the service calls them). Reports exact token-sequence agreement with torch (and, for
the batched runs, with the same engine one clip at a time), CER and hotword recall of each.

Run: ``.venv/bin/python -m benchmarks.bench_asr_onnx_parity [MODEL_DIR] [MANIFEST]``.
Writes ``benchmarks/results/asr_onnx_parity.json``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.results_io import write_results

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "speechloop" / "seeds" / "asr"
MANIFEST = ROOT / ".speechloop" / "demo-store" / "speech-data" / "asr" / "eval" / "golden"
OUT = ROOT / ".speechloop" / "bench_asr" / "parity"
RESULTS = ROOT / "benchmarks" / "results" / "asr_onnx_parity.json"


def _rows(folder: Path) -> list[dict[str, Any]]:
    path = folder / "manifest.jsonl"
    if not path.is_file():
        raise SystemExit(f"no golden manifest at {path}: run `make demo` or pass a manifest dir")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for row in rows:
        row["path"] = folder / row["audio"]
    return rows


def _torch_tokens(model: Any, fe: Any, wave: Any, hw: list[list[int]] | None) -> list[int]:
    import torch

    feats, lengths = fe.batch([wave])
    with torch.no_grad():
        enc, enc_len = model.encode(torch.from_numpy(feats), torch.from_numpy(lengths))
        emb, tl = model.calc_predictor(enc, enc_len)[:2]
        tl = tl.round().long()
        out = model._seaco_decode_with_ASF(enc, enc_len, emb, tl, hw_list=hw)
    skip = {model.blank_id, model.sos, model.eos}
    return [int(t) for t in out[0, : tl[0]].argmax(-1) if int(t) not in skip]


def _shown(path: Path) -> str:
    """The path relative to the repository when it lies inside it (results files are shared)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def main(argv: list[str]) -> int:
    """Export, decode the golden set three ways, write the agreement and scores."""
    import shutil

    import soundfile as sf
    import torch

    from speechloop.asr.features import Frontend
    from speechloop.asr.metrics import score_corpus
    from speechloop.asr.model import load_from_dir
    from speechloop.asr.onnx_export import export_onnx
    from speechloop.asr.onnx_infer import OnnxSeacoAsr

    torch.set_num_threads(2)
    model_dir = Path(argv[0]) if argv else MODEL
    rows = _rows(Path(argv[1]) if len(argv) > 1 else MANIFEST)
    loaded = load_from_dir(model_dir)
    model, tok = loaded.model, loaded.tokenizer
    export_onnx(model, OUT, quantize=True)
    shutil.copyfile(model_dir / "am.mvn", OUT / "am.mvn")
    fe = Frontend.from_am_mvn(OUT / "am.mvn")
    engines = {
        "onnx": OnnxSeacoAsr(OUT, tokenizer=tok, threads=2),
        "onnx_int8": OnnxSeacoAsr(OUT, tokenizer=tok, threads=2, quantized=True),
    }
    refs = [r["text"] for r in rows]
    own = [list(r.get("hotwords") or []) for r in rows]
    report: dict[str, Any] = {"model": _shown(model_dir), "utterances": len(rows)}
    waves = [sf.read(row["path"], dtype="float32")[0] for row in rows]
    for mode in ("none", "own"):
        ids: dict[str, list[list[int]]] = {"torch": [], "onnx": [], "onnx_int8": []}
        lists = [words if mode == "own" else [] for words in own]
        for wave, use in zip(waves, lists, strict=True):
            hw = [*map(tok.encode, use), [model.sos]] if use else None
            ids["torch"].append(_torch_tokens(model, fe, wave, hw))
            for name, asr in engines.items():
                ids[name].append(asr.transcribe(wave, use).token_ids)
        # the serving path's batch call (runs of 2 clips): padding, and for int8 one
        # dynamic activation scale shared by the clips of a run
        for name, asr in engines.items():
            ids[f"{name}_batched"] = [r.token_ids for r in asr.transcribe_batch(waves, lists)]
        for name, seqs in ids.items():
            hyps = [tok.decode(s) for s in seqs]
            scores = score_corpus(refs, hyps, own).as_dict()
            same = sum(a == b for a, b in zip(seqs, ids["torch"], strict=True))
            tokens_same = sum(
                sum(x == y for x, y in zip(a, b, strict=False))
                for a, b in zip(seqs, ids["torch"], strict=True)
            )
            tokens_all = sum(max(len(a), len(b)) for a, b in zip(seqs, ids["torch"], strict=True))
            report[f"{mode}/{name}"] = {
                "utterances_identical_to_torch": same,
                "token_agreement_with_torch": round(tokens_same / max(1, tokens_all), 4),
                "cer": round(scores["cer"] or 0.0, 4),
                "hotword_recall": scores["hotword_recall"],
            }
            if name.endswith("_batched"):
                alone = ids[name.removesuffix("_batched")]
                report[f"{mode}/{name}"]["utterances_identical_to_one_at_a_time"] = sum(
                    a == b for a, b in zip(seqs, alone, strict=True)
                )
            print(mode, name, report[f"{mode}/{name}"], flush=True)
    report["date_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    report["command"] = " ".join([".venv/bin/python -m benchmarks.bench_asr_onnx_parity", *argv])
    write_results(RESULTS, report)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
