"""`haste up`'s supervisor (honcho, restarting what crashes) and `haste status`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import psycopg
from click.testing import CliRunner

from engine.automations import deploy
from engine.cli import main
from engine.supervisor import read_state
from tests.fakes.crm import Workspace as FakeWorkspace
from tests.fakes.executions import queue_executions
from tests.web_support import MANUAL_DOC, engine_workspace

ROOT = Path(__file__).resolve().parents[1]

SUPERVISED = """
import sys
from pathlib import Path
from engine.supervisor import Supervisor

manager = Supervisor(state_file=Path(sys.argv[1]), stop_timeout=2)
crash = " -c 'import sys; print(1, flush=True); sys.exit(3)'"
manager.add_process("crashy", sys.executable + crash)
manager.add_process("steady", "sleep 600")
manager.loop()
print("supervisor done", manager.returncode, flush=True)
"""


def test_a_crashed_process_is_restarted_and_sigterm_stops_every_one(tmp_path: Path) -> None:
    state_file = tmp_path / "processes.json"
    proc = subprocess.Popen(
        [sys.executable, "-u", "-c", SUPERVISED, str(state_file)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    seen: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:  # the supervisor's own output is the signal we wait on
        seen.append(line)
        if "crashy started" in line and sum("crashy started" in s for s in seen) == 2:
            break
    state = read_state(state_file)
    assert state is not None
    steady_pid = state["processes"]["steady"]["pid"]

    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=30)

    output = "".join(seen) + rest
    assert "crashy stopped (rc=3)" in output and "restarting crashy (restart 1)" in output
    assert "supervisor done 143" in output
    final = read_state(state_file)
    assert final is not None and final["processes"]["crashy"]["restarts"] >= 1
    assert not final["processes"]["steady"]["alive"]
    assert not _alive(steady_pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_status_shows_executions_failures_queues_and_schedules(
    db: psycopg.Connection[Any], db_url: str, redis_url: str, tmp_path: Path
) -> None:
    ws = engine_workspace(db)
    automation = deploy(db, ws, MANUAL_DOC).automation_id
    fake = FakeWorkspace(ws.id, uuid.uuid4())
    failed, _queued = queue_executions(db, fake, (automation, 1), [None, None])
    db.execute(
        "UPDATE automation_executions SET status = 'failed', completed_at = now(),"
        " error_message = 'step boom failed' WHERE id = %s",
        (failed,),
    )
    env = {"DATABASE_URL": db_url, "REDIS_URL": redis_url, "HASTE_DATA_DIR": str(tmp_path)}

    as_json = CliRunner().invoke(main, ["status", "--json"], env=env)
    text = CliRunner().invoke(main, ["status"], env=env)

    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.stdout)
    assert data["processes"] is None
    assert data["executions"]["queued"]["count"] == 1
    assert data["failing_automations"][0]["automation"] == "enrich"
    assert data["failing_automations"][0]["last_error"] == "step boom failed"
    assert set(data["queues"]) == {"automations", "ai", "maintenance"}
    assert "listener" in data and "scheduler_leader" in data
    assert data["listener"]["capture"]["mode"] == "trigger"
    assert text.exit_code == 0, text.output
    for heading in ("processes", "listener", "executions", "failing automations", "queues"):
        assert heading in text.stdout
    assert "step boom failed" in text.stdout
    assert "capture: trigger" in text.stdout
