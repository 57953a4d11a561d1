"""Run every benchmark under ``benchmarks/`` (``make bench``), one subprocess each.

Each ``bench_*.py`` writes its figures to ``benchmarks/results/<name>.json``; this runner
only sequences them (so their peak-memory readings do not mix) and reports failures.
Pass names to run a subset: ``python -m benchmarks.run_all corpus ingest``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    """Run the selected benchmarks; return the number that failed."""
    scripts = sorted(HERE.glob("bench_*.py"))
    if argv:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in argv]
    failed = 0
    for script in scripts:
        start = time.perf_counter()
        print(f"== {script.stem}", flush=True)
        proc = subprocess.run([sys.executable, "-m", f"benchmarks.{script.stem}"], check=False)
        took = time.perf_counter() - start
        status = "ok" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
        print(f"== {script.stem}: {status} in {took:.0f} s", flush=True)
        failed += proc.returncode != 0
    print(f"results in {HERE / 'results'}")
    return failed


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
