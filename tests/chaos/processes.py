"""Real haste processes for the chaos suite: ``haste listen``, ``haste worker``, ``haste
schedule`` spawned as subprocesses, each in its own process group (like
tests/test_worker.py does), with its output in a log file, so a test can SIGKILL one
(forked Dramatiq children included) and start another.

The environment shortens every interval the recovery paths wait on (heartbeat, reaper,
leader retry, polls, shutdown) so that a scenario takes seconds, not minutes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

HASTE = str(Path(sys.executable).with_name("haste"))

#: Intervals of engine/config.py (and the listener's module settings) for chaos runs.
FAST_ENV: dict[str, str] = {
    "HASTE_LOG_LEVEL": os.environ.get("HASTE_CHAOS_LOG_LEVEL", "WARNING"),
    "HASTE_LOG_FORMAT": "console",
    "HASTE_HEARTBEAT_INTERVAL": "0.3",
    "HASTE_HEARTBEAT_TIMEOUT": "2",
    "HASTE_REAPER_GRACE": "2",
    "HASTE_REAPER_INTERVAL": "0.5",
    "HASTE_MAX_RECOVERIES": "3",
    "HASTE_SCHEDULER_LEADER_RETRY": "0.3",
    "HASTE_SCHEDULE_TICK": "0.25",
    "HASTE_SHUTDOWN_TIMEOUT": "3",
    "HASTE_WORKER_POLL_MS": "100",
    "HASTE_DB_POOL_SIZE": "6",
    "HASTE_LISTENER_POLL_MS": "100",
    "HASTE_LISTENER_BATCH": "50",
    # No maintenance job competes with the scenario for the two cores.
    **{
        f"HASTE_JOB_{job}": "off"
        for job in (
            "PARTITIONS",
            "REFRESH_ENGAGEMENT",
            "ANALYZE",
            "VACUUM",
            "VACUUM_FULL",
            "DEAL_ROTTING",
            "TASK_REMINDERS",
            "REPORTS",
            "PRUNE",
        )
    },
    # Dramatiq restarts a consumer that lost Redis after this many ms (default 3000).
    "dramatiq_restart_delay": "500",
}


def process_env(database_url: str, redis_url: str, data_dir: Path, role: str) -> dict[str, str]:
    """The environment of one chaos process: this run's servers and the fast intervals.

    ``PGAPPNAME`` names the process's sessions in ``pg_stat_activity`` (libpq reads it),
    so a test can see when a listener is inside a batch transaction."""
    inherited = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HASTE_", "PG"))
        and k not in ("DATABASE_URL", "REDIS_URL")
        and k != "PROMETHEUS_MULTIPROC_DIR"
    }
    return {
        **inherited,
        **FAST_ENV,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "HASTE_DATA_DIR": str(data_dir),
        "PGAPPNAME": f"chaos-{role}",
    }


@dataclass
class Proc:
    """One spawned haste command (the leader of its own process group)."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole group: the process and everything it forked, at once."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=10)

    def terminate(self) -> None:
        """SIGTERM the group (a graceful stop); :meth:`reap` waits for it."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)

    def reap(self, timeout: float) -> None:
        """Wait up to ``timeout`` for the group leader, then SIGKILL whatever is left."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)  # forked children too
        self.popen.wait(timeout=10)

    def tail(self, lines: int = 25) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Processes:
    """Every process a scenario started, so teardown stops them all."""

    env: Callable[[str], Mapping[str, str]]
    log_dir: Path
    started: list[Proc] = field(default_factory=list)

    def spawn(self, role: str, *args: str) -> Proc:
        index = sum(1 for p in self.started if p.name.startswith(role))
        name = f"{role}-{index}"
        log = self.log_dir / f"{name}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                [HASTE, *args],
                env=dict(self.env(role)),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        proc = Proc(name, popen, log)
        self.started.append(proc)
        return proc

    def listener(self) -> Proc:
        return self.spawn("listener", "listen")

    def worker(self, processes: int = 2, threads: int = 4) -> Proc:
        return self.spawn(
            "worker", "worker", "--processes", str(processes), "--threads", str(threads)
        )

    def scheduler(self) -> Proc:
        return self.spawn("scheduler", "schedule")

    def stop_all(self, timeout: float = 6.0) -> None:
        for proc in self.started:
            proc.terminate()
        deadline = time.monotonic() + timeout
        for proc in self.started:
            proc.reap(max(0.1, deadline - time.monotonic()))

    def tails(self, lines: int = 25) -> str:
        return "\n".join(f"--- {p.name} ({p.log}) ---\n{p.tail(lines)}" for p in self.started)
