"""Operator commands over real executions: list, show, rerun, redrive, cancel, reap."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from engine.cli import main
from engine.cli_operations import parse_since
from engine.db import make_pool
from tests.fakes.crm import make_contact, make_workspace
from tests.fakes.executions import deploy_doc, execution, queue_executions
from workers import broker as broker_module
from workers.executor import Executor
from workers.heartbeat import Heartbeat

DOC = {
    "name": "ops",
    "trigger_type": "manual",
    "trigger_config": {"entity_type": "contact"},
    "actions": [
        {"id": "note", "type": "add_note", "params": {"content": "hello"}},
        {
            "id": "steal",
            "type": "add_tag",
            "params": {
                "tag": "x",
                "record": {"entity": "contact", "id": "00000000-0000-4000-8000-000000000000"},
            },
        },
    ],
}


@pytest.fixture
def failed_runs(db: psycopg.Connection[Any], db_url: str, redis_url: str) -> Iterator[Any]:
    broker_module.configure(redis_url)
    ws = make_workspace(db)
    db.execute("UPDATE workspaces SET slug = 'ops' WHERE id = %s", (ws.id,))
    runs = queue_executions(
        db, ws, deploy_doc(db, ws, DOC), [make_contact(db, ws) for _ in range(2)]
    )
    pool = make_pool(db_url, max_size=2, name="test-ops")
    executor = Executor(pool=pool, heartbeat=Heartbeat(db_url, 5.0))
    for run in runs:
        assert executor.run(str(run)) == "failed"
    yield runs
    executor.heartbeat.stop()
    pool.close()


def haste(db_url: str, redis_url: str, *args: str) -> Any:
    return CliRunner().invoke(
        main, list(args), env={"DATABASE_URL": db_url, "REDIS_URL": redis_url}
    )


def test_executions_lists_and_filters(db_url, redis_url, failed_runs) -> None:
    result = haste(db_url, redis_url, "executions", "--workspace", "ops", "--status", "failed")

    assert result.exit_code == 0, result.output
    assert all(str(run) in result.output for run in failed_runs)
    assert "ops/ops" in result.output and "step 'steal' (add_tag) failed" in result.output
    rows = json.loads(
        haste(db_url, redis_url, "executions", "--status", "completed", "--json").output
    )
    assert rows == []


def test_execution_shows_each_step_with_input_output_and_error(db_url, redis_url, failed_runs):
    result = haste(db_url, redis_url, "execution", str(failed_runs[0]))

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"execution {failed_runs[0]}: failed"
    assert "step note (add_note): completed, 1 attempt(s)" in result.output
    assert "step steal (add_tag): failed, 1 attempt(s)" in result.output
    assert '"class": "not_found"' in result.output
    assert haste(db_url, redis_url, "execution", "not-an-id").exit_code == 1


def test_rerun_from_step_and_cancel(db, db_url, redis_url, failed_runs) -> None:
    run = failed_runs[0]

    result = haste(db_url, redis_url, "rerun", str(run), "--from-step", "steal")

    assert result.exit_code == 0, result.output
    row = execution(db, run)
    assert (row["status"], row["reruns"]) == ("queued", 1)
    steps = [
        r[0]
        for r in db.execute(
            "SELECT step_id FROM automation_execution_steps WHERE execution_id = %s", (run,)
        )
    ]
    assert steps == ["note"]  # kept: it will not run again
    assert haste(db_url, redis_url, "rerun", str(run)).exit_code == 1  # not finished
    assert haste(db_url, redis_url, "cancel", str(run)).exit_code == 0
    assert execution(db, run)["status"] == "cancelled"
    assert haste(db_url, redis_url, "cancel", str(run)).exit_code == 1


def test_redrive_counts_first_and_needs_yes(db, db_url, redis_url, failed_runs) -> None:
    args = ("redrive", "--automation", "ops", "--status", "failed", "--since", "1h")

    dry = haste(db_url, redis_url, *args)
    assert dry.exit_code == 1 and "2 failed execution(s) of ops" in dry.output
    assert {execution(db, r)["status"] for r in failed_runs} == {"failed"}

    done = haste(db_url, redis_url, *args, "--yes")
    assert done.exit_code == 0, done.output
    assert "2 execution(s) queued again" in done.output
    assert {execution(db, r)["status"] for r in failed_runs} == {"queued"}


def test_reap_reports_what_it_did(db_url, redis_url, failed_runs) -> None:
    result = haste(db_url, redis_url, "reap")

    assert result.exit_code == 0, result.output
    assert result.output.strip() == "resent 0, recovered 0, failed 0"


def test_since_accepts_iso_times_and_relative_ones() -> None:
    now = parse_since("2025-01-31T09:00:00+01:00")
    assert now.isoformat() == "2025-01-31T09:00:00+01:00"
    assert parse_since("2025-01-31").tzinfo is not None
    assert (parse_since("2h", now) - now).total_seconds() == -7200
