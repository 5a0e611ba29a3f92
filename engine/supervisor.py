"""``haste up``'s process supervisor: honcho, plus restarting a process that crashed.

honcho's :class:`~honcho.manager.Manager` starts the Procfile's processes, multiplexes
their output with coloured name prefixes and stops them all on Ctrl-C / SIGTERM; but when
one process exits it stops every other one, which is right for a development Procfile and
wrong for "run haste on this machine". :class:`Supervisor` keeps honcho's process
handling, printing and signal semantics and changes that one decision: a process that
exits while the supervisor is not stopping is started again after a back-off (1 s, doubling
to 30 s; back to 1 s once it has stayed up for a minute), so a crash loop cannot spin.

Stopping: SIGTERM to every process, then SIGKILL to those still running after
``HASTE_SHUTDOWN_TIMEOUT`` + 5 s (each haste process bounds its own graceful stop by
``HASTE_SHUTDOWN_TIMEOUT``; honcho's fixed 5 s would cut workers short).

State file: ``$HASTE_DATA_DIR/processes.json`` (name → pid, started_at, restarts, last exit
code), rewritten on every start and stop, read by ``haste status``.
"""

from __future__ import annotations

import datetime
import json
import multiprocessing
import os
import queue
import signal
from pathlib import Path
from typing import Any

from honcho.manager import SIGNALS, Manager

from engine.config import Settings

#: First and longest wait before restarting a crashed process, and how long it must stay
#: up for the wait to start again from the first.
RESTART_MIN = 1.0
RESTART_MAX = 30.0
STABLE_AFTER = 60.0


class Supervisor(Manager):
    """A honcho Manager that restarts crashed processes and records their state."""

    def __init__(self, *, state_file: Path | None = None, stop_timeout: float = 30.0) -> None:
        super().__init__()
        self.state_file = state_file
        self.stop_timeout = stop_timeout
        self._restarts: dict[str, int] = {}
        self._backoff: dict[str, float] = {}
        self._due: dict[str, datetime.datetime] = {}
        self._started_at: dict[str, datetime.datetime] = {}

    # --- starting -----------------------------------------------------------------------

    def _start_one(self, name: str) -> None:
        entry = self._processes[name]
        entry.pop("pid", None)
        entry.pop("returncode", None)
        entry["process"] = multiprocessing.Process(
            name=name, target=entry["obj"].run, args=(self.events, True)
        )
        entry["process"].start()

    def _start(self) -> None:
        for name in self._processes:
            self._restarts.setdefault(name, 0)
            self._backoff.setdefault(name, RESTART_MIN)
            self._start_one(name)

    # --- the loop -----------------------------------------------------------------------

    def loop(self) -> None:
        """Run until Ctrl-C / SIGTERM; restart what exits meanwhile."""

        def _terminate(signum: int, frame: Any) -> None:
            self._system_print(f"{SIGNALS[signum]['name']} received\n")
            self.returncode = SIGNALS[signum]["rc"]
            self.terminate()

        signal.signal(signal.SIGTERM, _terminate)
        signal.signal(signal.SIGINT, _terminate)
        self._start()
        stopping_since: datetime.datetime | None = None
        while True:
            try:
                msg = self.events.get(timeout=0.1)
            except queue.Empty:
                msg = None
            if msg is not None:
                self._handle(msg)
            now = self._clock.now()
            if self._terminating:
                if stopping_since is None:
                    stopping_since = now
                if all("returncode" in p or "pid" not in p for p in self._processes.values()):
                    break
                limit = datetime.timedelta(seconds=self.stop_timeout + 5)
                if now - stopping_since > limit:
                    self.kill()
                    stopping_since = now  # one SIGKILL round per limit
                continue
            for name, when in list(self._due.items()):
                if now >= when:
                    del self._due[name]
                    self._restarts[name] += 1
                    self._system_print(f"restarting {name} (restart {self._restarts[name]})\n")
                    self._start_one(name)
        self._write_state()

    def _handle(self, msg: Any) -> None:
        if msg.type == "line":
            self._printer.write(msg)
        elif msg.type == "start":
            self._processes[msg.name]["pid"] = msg.data["pid"]
            self._started_at[msg.name] = self._clock.now()
            self._system_print(f"{msg.name} started (pid={msg.data['pid']})\n")
            self._write_state()
        elif msg.type == "stop":
            code = msg.data["returncode"]
            self._processes[msg.name]["returncode"] = code
            self._processes[msg.name]["last_returncode"] = code
            self._system_print(f"{msg.name} stopped (rc={code})\n")
            if not self._terminating:
                self._schedule_restart(msg.name)
            self._write_state()

    def _schedule_restart(self, name: str) -> None:
        started = self._started_at.get(name)
        now = self._clock.now()
        if started is not None and (now - started).total_seconds() >= STABLE_AFTER:
            self._backoff[name] = RESTART_MIN
        wait = self._backoff[name]
        self._backoff[name] = min(RESTART_MAX, wait * 2)
        self._due[name] = now + datetime.timedelta(seconds=wait)
        self._system_print(f"{name} exited; restarting in {wait:.0f}s\n")

    def _killall(self, force: bool = False) -> None:
        """As honcho's, but a process waiting for its restart is not signalled (it has no
        pid any more) and its restart is cancelled."""
        self._due.clear()
        for name, entry in self._processes.items():
            if "returncode" in entry or "pid" not in entry:
                continue
            signame = "SIGKILL" if force else "SIGTERM"
            self._system_print(f"sending {signame} to {name} (pid {entry['pid']})\n")
            if force:
                self._procmgr.kill(entry["pid"])
            else:
                self._procmgr.terminate(entry["pid"])

    # --- state for `haste status` --------------------------------------------------------

    def _write_state(self) -> None:
        if self.state_file is None:
            return
        state = {
            "supervisor_pid": os.getpid(),
            "written_at": self._clock.now().astimezone().isoformat(timespec="seconds"),
            "processes": {
                name: {
                    "pid": entry.get("pid"),
                    "running": "pid" in entry and "returncode" not in entry,
                    "started_at": self._started_at[name].astimezone().isoformat(timespec="seconds")
                    if name in self._started_at
                    else None,
                    "restarts": self._restarts.get(name, 0),
                    "last_exit_code": entry.get("last_returncode"),
                }
                for name, entry in self._processes.items()
            },
        }
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_file)


def supervised_env(settings: Settings) -> dict[str, str]:
    """Environment added to every supervised process: the host's metrics directory
    (``PROMETHEUS_MULTIPROC_DIR``, default ``$HASTE_DATA_DIR/metrics``), emptied first, so
    the web process's /metrics sums every process of this machine."""
    from engine.metrics import prepare_multiprocess_dir

    directory = settings.metrics_dir or settings.data_dir / "metrics"
    return {"PROMETHEUS_MULTIPROC_DIR": str(prepare_multiprocess_dir(directory.resolve()))}


def read_state(state_file: Path) -> dict[str, Any] | None:
    """The state ``haste up`` last wrote, with each pid checked for being alive."""
    try:
        state = json.loads(state_file.read_text())
    except (OSError, ValueError):
        return None
    state["supervisor_alive"] = _alive(state.get("supervisor_pid"))
    for proc in state.get("processes", {}).values():
        proc["alive"] = bool(proc.get("running")) and _alive(proc.get("pid"))
    return state


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
