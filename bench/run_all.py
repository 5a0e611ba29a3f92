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

#: Second runs of a bench with other arguments.
EXTRA_RUNS = (("bench_e2e.py", "--capture", "logical"),)

if __name__ == "__main__":
    failed = []
    runs = [(script.name,) for script in sorted(HERE.glob("bench_*.py"))] + list(EXTRA_RUNS)
    for name, *args in runs:
        print(f"== {name} {' '.join(args)}", flush=True)
        if subprocess.call([sys.executable, str(HERE / name), *args], cwd=HERE.parent) != 0:
            failed.append(" ".join([name, *args]))
    subprocess.call([sys.executable, str(HERE / "report.py")], cwd=HERE.parent)
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")
