"""The AI housekeeping jobs (expired cache rows, the contacts ivfflat) are maintenance jobs
like the others: the scheduler ticks them, runs them when due on a real database, records
each run, and ``--list`` shows them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from psycopg.types.json import Jsonb

from engine.cli import main
from engine.config import load_settings
from tests.fakes.crm import Workspace, make_workspace, rows
from tests.fakes.scheduling import FakeClock
from triggers.scheduler import Scheduler, SchedulerOptions
from workers import maintenance
from workers.embeddings import MIN_TRAINING_ROWS

Conn = psycopg.Connection[Any]
START = datetime(2025, 1, 1, 1, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def scheduler(db_url: str, clock: FakeClock) -> Iterator[Scheduler]:
    """The scheduler with its default jobs (nothing else is ticked in these tests)."""
    made = Scheduler(
        db_url,
        settings=load_settings({}),
        options=SchedulerOptions(reaper=False),
        clock=clock,
        emit=lambda *a, **k: 0,
        enqueue=lambda ids: None,
        name="jobs",
    )
    try:
        yield made
    finally:
        made.pool.close()


@pytest.fixture
def ws(db: Conn) -> Workspace:
    return make_workspace(db)


def last_run(db: Conn, job: str) -> dict[str, Any]:
    [run] = rows(
        db,
        "SELECT r.status, r.runner, r.result, r.error FROM scheduler_jobs j"
        " JOIN scheduler_job_runs r ON r.id = j.last_run_id WHERE j.name = %s",
        job,
    )
    return run


def cache_row(db: Conn, ws: Workspace, key: str, expires_at: datetime) -> None:
    db.execute(
        "INSERT INTO ai_response_cache (workspace_id, input_hash, task_type, output,"
        " model_provider, model_name, expires_at) VALUES (%s, %s, 'summarize', %s, 'fake',"
        " 'fake-1', %s)",
        (ws.id, key, Jsonb({"summary": key}), expires_at),
    )


def test_the_scheduler_ticks_both_jobs_by_default(scheduler) -> None:
    ticked = {job.id for job in scheduler.aps.get_jobs()}
    assert {"job:ai_cache_purge", "job:vector_indexes"} <= ticked


def test_the_scheduler_purges_expired_ai_cache_rows_when_the_job_is_due(
    db, ws, scheduler, clock
) -> None:
    now = datetime.now(UTC)  # the purge compares expires_at with the database's clock
    cache_row(db, ws, "expired", now - timedelta(hours=1))
    cache_row(db, ws, "fresh", now + timedelta(days=1))
    job = maintenance.BY_NAME["ai_cache_purge"]
    maintenance.ensure_jobs(db, scheduler.settings, clock.now(), [job])
    clock.set(START.replace(hour=3, minute=45, second=5))  # default cron: 45 3 * * *

    outcome = scheduler.tick_job(job)

    assert outcome is not None and outcome["status"] == "succeeded"
    kept = rows(db, "SELECT input_hash FROM ai_response_cache")
    assert [r["input_hash"] for r in kept] == ["fresh"]
    run = last_run(db, "ai_cache_purge")
    assert (run["status"], run["runner"], run["result"]["deleted"]) == ("succeeded", "jobs", 1)


def test_the_vector_index_job_runs_on_the_spec_schema_and_records_its_run(
    db, scheduler, clock
) -> None:
    job = maintenance.BY_NAME["vector_indexes"]
    maintenance.ensure_jobs(db, scheduler.settings, clock.now(), [job])
    clock.set(START.replace(hour=4, minute=0, second=5))  # default cron: 0 4 * * *

    outcome = scheduler.tick_job(job)

    assert outcome is not None and outcome["status"] == "succeeded", outcome
    run = last_run(db, "vector_indexes")
    assert run["status"] == "succeeded" and run["error"] is None
    assert run["result"]["rebuilt"] is False and "vectors" in run["result"]


def test_the_vector_index_job_trains_the_index_once_there_are_enough_vectors(
    db, ws, scheduler, clock
) -> None:
    db.execute("DELETE FROM ai_vector_indexes")
    db.execute(
        "INSERT INTO contacts (workspace_id, first_name, embedding)"
        " SELECT %s, 'v' || i, (SELECT array_agg(random() - 0.5)"
        " FROM generate_series(1, 1536) WHERE i > 0)::vector FROM generate_series(1, %s) i",
        (ws.id, MIN_TRAINING_ROWS),
    )
    job = maintenance.BY_NAME["vector_indexes"]
    maintenance.ensure_jobs(db, scheduler.settings, clock.now(), [job])
    clock.set(START.replace(hour=4, minute=0, second=5))

    scheduler.tick_job(job)

    assert last_run(db, "vector_indexes")["result"]["rebuilt"] is True
    [built] = rows(
        db,
        "SELECT rows_at_build FROM ai_vector_indexes WHERE index_name = 'idx_contacts_embedding'",
    )
    assert built["rows_at_build"] == MIN_TRAINING_ROWS


def test_list_shows_both_jobs_with_their_daily_cron(db, db_url) -> None:
    maintenance.ensure_jobs(db, load_settings({}), datetime.now(UTC))
    result = CliRunner().invoke(main, ["schedule", "--list"], env={"DATABASE_URL": db_url})
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}
    assert "45 3 * * *" in lines["ai_cache_purge"]
    assert "0 4 * * *" in lines["vector_indexes"]
