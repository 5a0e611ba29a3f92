"""``haste schedule --list`` and ``--run-job``."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from click.testing import CliRunner

from engine.cli import main
from engine.config import load_settings
from tests.fakes.crm import make_workspace
from tests.fakes.executions import deploy_doc
from tests.fakes.scheduling import time_doc
from triggers import schedule
from workers import maintenance


def invoke(db_url: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env={"DATABASE_URL": db_url})
    return result.exit_code, result.stdout if result.exit_code == 0 else result.output


def test_list_shows_jobs_automations_and_backlog(db, db_url) -> None:
    ws = make_workspace(db)
    doc = time_doc({"cron": "0 9 * * 1-5", "timezone": "Europe/Paris"})
    deploy_doc(db, ws, doc)
    now = datetime.now(UTC)
    schedule.sync(db, now)
    maintenance.ensure_jobs(db, load_settings({}), now)

    code, out = invoke(db_url, "schedule", "--list")
    assert code == 0, out
    assert "leader: none" in out
    assert doc["name"] in out and "cron 0 9 * * 1-5 Europe/Paris" in out
    for job in ("partitions", "vacuum_full", "task_reminders"):
        assert job in out
    assert "records due: 0 pending" in out

    code, out = invoke(db_url, "schedule", "--list", "--json")
    data = json.loads(out)
    assert [a["name"] for a in data["automations"]] == [doc["name"]]
    assert {j["name"] for j in data["jobs"]} == set(maintenance.BY_NAME)


def test_run_job_runs_it_now_and_records_it(db, db_url) -> None:
    code, out = invoke(db_url, "schedule", "--run-job", "partitions")
    assert code == 0, out
    assert json.loads(out)["status"] == "succeeded"
    code, out = invoke(db_url, "schedule", "--run-job", "nope")
    assert code == 2 and "unknown job" in out
