"""`make bench`: run every bench/bench_*.py in turn (each writes bench/results/<name>.json),
then bench/report.py, which puts every goal figure beside its anchor in
bench/results/summary.md and summary.json, with the machine described.

Run them on an otherwise idle machine: on a shared one, neighbours move the latency and
throughput figures more than any change does (the CPU-per-unit figures hold up better)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

if __name__ == "__main__":
    failed = []
    for script in sorted(HERE.glob("bench_*.py")):
        print(f"== {script.name}", flush=True)
        if subprocess.call([sys.executable, str(script)], cwd=HERE.parent) != 0:
            failed.append(script.name)
    subprocess.call([sys.executable, str(HERE / "report.py")], cwd=HERE.parent)
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")
