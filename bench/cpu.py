"""CPU time of process trees: the figure that holds up on a shared machine.

Latency and throughput move with whatever else runs on the box; CPU seconds per unit of
work (per transaction, per event, per execution) barely do, so the benchmarks report both.
"""

from __future__ import annotations

from pathlib import Path

import psutil


def tree_cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds of these processes and all their descendants, including
    children already exited and reaped (a PostgreSQL backend whose client disconnected)."""
    total = 0.0
    for pid in pids:
        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for proc in procs:
            try:
                t = proc.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += t.user + t.system + t.children_user + t.children_system
    return total


def postmaster_pid(pgdata: Path) -> int:
    """The postmaster of the cluster in ``pgdata`` (other clusters may run on the machine)."""
    return int((pgdata / "postmaster.pid").read_text().split()[0])
