"""Start-up time of `haste up` (warm venv): cold data dir (initdb) and warm (data kept).

Measures from process spawn to the "Press Ctrl-C" line (services up, migrations applied),
then the time to stop cleanly after SIGINT. Prints JSON and writes bench/results/startup.json.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def one_run(data_dir: Path) -> tuple[float, float]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update({"HASTE_DATA_DIR": str(data_dir), "HASTE_LOG_LEVEL": "WARNING"})
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "up"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if "Press Ctrl-C" in line:
            break
    up = time.perf_counter() - started
    stopping = time.perf_counter()
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    return up, time.perf_counter() - stopping


def main(runs: int = 3) -> dict[str, object]:
    cold, warm, stop = [], [], []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            up, down = one_run(Path(tmp))
            cold.append(up)
            stop.append(down)
            up, down = one_run(Path(tmp))
            warm.append(up)
            stop.append(down)
    result = {
        "benchmark": "haste up start-up (warm venv)",
        "runs": runs,
        "cold_data_dir_s": {"median": statistics.median(cold), "max": max(cold)},
        "existing_data_dir_s": {"median": statistics.median(warm), "max": max(warm)},
        "stop_after_sigint_s": {"median": statistics.median(stop), "max": max(stop)},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "startup.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
