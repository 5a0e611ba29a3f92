"""Maintenance jobs do their job, once, and every run is recorded."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from engine.config import Settings, load_settings
from tests.fakes.crm import (
    Workspace,
    insert,
    make_contact,
    make_deal,
    make_pipeline,
    make_workspace,
    rows,
)
from tests.fakes.smtp_server import smtp_server
from workers import maintenance
from workers.maintenance import JobContext, partitions, reminders, reports, rotting

Conn = psycopg.Connection[Any]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def ctx(db: Conn, now: datetime, settings: Settings | None = None) -> JobContext:
    return JobContext(db, now, settings or load_settings({}), "test")


@pytest.fixture
def ws(db: Conn) -> Workspace:
    return make_workspace(db)


def test_partitions_exist_for_this_month_and_the_coming_ones(db) -> None:
    result = partitions.run(ctx(db, utc(2031, 11, 20)))
    expected = [
        "activities_2031_11",
        "activities_2031_12",
        "activities_2032_01",
        "activities_2032_02",
    ]
    assert result["created"] == expected
    found = rows(
        db,
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'activities'::regclass AND c.relname LIKE 'activities_203%%'"
        " ORDER BY 1",
    )
    assert [r["relname"] for r in found] == expected
    assert partitions.run(ctx(db, utc(2031, 11, 21)))["created"] == []


def test_engagement_view_is_refreshed(db, ws) -> None:
    contact = make_contact(db, ws)
    insert(
        db,
        "activities",
        workspace_id=ws.id,
        type="meeting_held",
        title="Kick-off",
        entity_type="contact",
        entity_id=contact,
        contact_id=contact,
    )
    before = rows(db, "SELECT * FROM contact_engagement_scores WHERE id = %s", contact)
    assert before == []
    assert maintenance.BY_NAME["refresh_engagement"].run(ctx(db, utc(2025, 1, 1)))["rows"] >= 1
    [after] = rows(db, "SELECT * FROM contact_engagement_scores WHERE id = %s", contact)
    assert (after["activity_count"], after["engagement_score"]) == (1, 10)


def test_analyze_and_vacuum_run_outside_a_transaction(db) -> None:
    run = ctx(db, utc(2025, 1, 1))
    maintenance.BY_NAME["analyze"].run(run)
    assert maintenance.BY_NAME["vacuum"].run(run)["vacuumed"] == [
        "emails",
        "activities",
        "email_tracking_events",
    ]
    db.execute("SELECT pg_stat_clear_snapshot()")
    stats = rows(
        db,
        "SELECT relname, last_vacuum, last_analyze FROM pg_stat_user_tables"
        " WHERE relname IN ('emails', 'email_tracking_events') ORDER BY 1",
    )
    assert all(s["last_vacuum"] and s["last_analyze"] for s in stats)


def test_vacuum_full_is_off_unless_configured(db) -> None:
    settings = load_settings({})
    assert maintenance.job_cron(maintenance.BY_NAME["vacuum_full"], settings) is None
    on = load_settings({"HASTE_JOB_VACUUM_FULL": "0 3 * * 0"})
    assert maintenance.job_cron(maintenance.BY_NAME["vacuum_full"], on) == "0 3 * * 0"


def test_deal_rotting_counts_idle_days_past_the_pipeline_threshold(db, ws) -> None:
    now = utc(2025, 3, 1, 12)
    rotting_on = make_pipeline(db, ws, "On")
    rotting_off = make_pipeline(db, ws, "Off")
    db.execute("UPDATE pipelines SET rotting_days = 10 WHERE id = %s", (rotting_on.id,))
    db.execute("UPDATE pipelines SET rotting_enabled = false WHERE id = %s", (rotting_off.id,))
    idle = now - timedelta(days=15, hours=1)
    stale = make_deal(db, ws, rotting_on, stage_entered_at=idle)
    touched = make_deal(
        db, ws, rotting_on, stage_entered_at=idle, last_activity_at=now - timedelta(days=2)
    )
    won = make_deal(db, ws, rotting_on, stage_entered_at=idle, status="won")
    elsewhere = make_deal(db, ws, rotting_off, stage_entered_at=idle, rotting_days=7)

    result = rotting.run(ctx(db, now))
    got = {
        r["id"]: r["rotting_days"]
        for r in rows(db, "SELECT id, rotting_days FROM deals WHERE workspace_id = %s", ws.id)
    }
    assert got == {stale: 5, touched: 0, won: 0, elsewhere: 0}
    assert result["deals_changed"] == 2
    assert rotting.run(ctx(db, now))["deals_changed"] == 0  # nothing rewritten


def test_a_task_reminder_is_created_once_before_the_task_is_due(db, ws) -> None:
    db.execute("UPDATE users SET timezone = 'Europe/Berlin' WHERE id = %s", (ws.owner,))
    contact = make_contact(db, ws)
    task = insert(
        db,
        "tasks",
        workspace_id=ws.id,
        title="Call Ada",
        assigned_to=ws.owner,
        contact_id=contact,
        due_date=date(2025, 7, 1),
        due_time=time(15, 0),  # 13:00 UTC in CEST
        reminder_minutes=30,
    )
    assert reminders.run(ctx(db, utc(2025, 7, 1, 12, 29)))["sent"] == 0
    assert reminders.run(ctx(db, utc(2025, 7, 1, 12, 31)))["sent"] == 1
    assert reminders.run(ctx(db, utc(2025, 7, 1, 12, 32)))["sent"] == 0
    [activity] = rows(db, "SELECT * FROM activities WHERE entity_id = %s", task)
    assert (activity["type"], activity["entity_type"], activity["contact_id"]) == (
        "custom",
        "task",
        contact,
    )
    assert activity["user_id"] == ws.owner
    assert activity["metadata"]["kind"] == "task_reminder"
    assert activity["metadata"]["due_at"] == "2025-07-01T13:00:00+00:00"

    # Moved to another day: a new reminder for the new due time; completed: none.
    db.execute("UPDATE tasks SET due_date = '2025-07-02' WHERE id = %s", (task,))
    assert reminders.run(ctx(db, utc(2025, 7, 2, 12, 31)))["sent"] == 1
    db.execute(
        "UPDATE tasks SET due_date = '2025-07-03', status = 'completed' WHERE id = %s", (task,)
    )
    assert reminders.run(ctx(db, utc(2025, 7, 3, 12, 31)))["sent"] == 0
    assert len(rows(db, "SELECT id FROM activities WHERE entity_id = %s", task)) == 2


@pytest.fixture
def smtp() -> Iterator[Any]:
    with smtp_server() as server:
        yield server


def test_a_scheduled_report_is_cached_and_emailed_once(db, ws, smtp) -> None:
    pipeline = make_pipeline(db, ws)
    make_deal(db, ws, pipeline, value=1000, probability=50)
    make_deal(db, ws, pipeline, "Negotiation", value=500)
    report = insert(
        db,
        "reports",
        workspace_id=ws.id,
        name="Pipeline daily",
        type="pipeline",
        config={},
        schedule_enabled=True,
        schedule_cron="0 8 * * *",
        schedule_timezone="Europe/Berlin",
        recipients=Jsonb(["boss@example.com", str(ws.owner)]),
        created_by=ws.owner,
        created_at=utc(2025, 1, 1, 12),
    )
    settings = dataclasses.replace(
        load_settings({}), smtp_url=smtp.url, email_from="reports@haste.example"
    )
    assert reports.run(ctx(db, utc(2025, 1, 2, 6, 59), settings))["generated"] == 0
    first = reports.run(ctx(db, utc(2025, 1, 2, 7, 0, 30), settings))  # 08:00 CET
    assert (first["generated"], first["sent"]) == (1, 1)
    again = reports.run(ctx(db, utc(2025, 1, 2, 7, 5), settings))
    assert (again["generated"], again["sent"]) == (0, 0)

    [row] = rows(db, "SELECT cached_data, last_generated_at FROM reports WHERE id = %s", report)
    assert row["last_generated_at"] == utc(2025, 1, 2, 7, 0, 30)
    [stages] = [p["stages"] for p in row["cached_data"]["pipelines"]]
    assert [(s["stage"], s["deals"]) for s in stages] == [
        ("Lead", 1),
        ("Negotiation", 1),
        ("Won", 0),
    ]
    assert row["cached_data"]["scheduled_for"] == "2025-01-02T07:00:00+00:00"
    [message] = smtp.messages
    assert sorted(message.rcpt_tos)[0] == "boss@example.com"
    assert len(message.rcpt_tos) == 2
    assert "Pipeline daily" in message.message["Subject"]
    [run] = rows(db, "SELECT delivery, message_id FROM report_runs WHERE report_id = %s", report)
    assert run["delivery"] == "sent" and run["message_id"] == message.message["Message-ID"]


@pytest.mark.parametrize("kind", ["activity", "email", "revenue", "custom"])
def test_every_report_type_computes(db, ws, kind: str) -> None:
    from engine.db import tenant_transaction

    make_deal(
        db, ws, make_pipeline(db, ws), status="won", value=10, actual_close_date=date(2025, 1, 5)
    )
    config = {"entity": "deal", "group_by": "status"} if kind == "custom" else {}
    with tenant_transaction(db, ws.id, dict_rows=True) as cur:
        data = reports.compute(cur, kind, config, utc(2025, 1, 10))
    key = {"activity": "by_type", "email": "sent", "revenue": "won_by_month", "custom": "counts"}
    assert key[kind] in data
    if kind == "custom":
        assert data["counts"] == {"won": 1}
    if kind == "revenue":
        assert data["won_total"] == 10


# --- the runner ----------------------------------------------------------------------------


def test_jobs_run_when_due_once_and_each_run_is_recorded(db) -> None:
    settings = load_settings({"HASTE_JOB_ANALYZE": "0 * * * *"})
    analyze = maintenance.BY_NAME["analyze"]
    maintenance.ensure_jobs(db, settings, utc(2025, 1, 1, 9, 30), [analyze])
    assert maintenance.run_if_due(ctx(db, utc(2025, 1, 1, 9, 59), settings), analyze) is None
    done = maintenance.run_if_due(ctx(db, utc(2025, 1, 1, 10, 0, 5), settings), analyze)
    assert done is not None and done["status"] == "succeeded"
    assert maintenance.run_if_due(ctx(db, utc(2025, 1, 1, 10, 0, 6), settings), analyze) is None
    [job] = rows(db, "SELECT * FROM scheduler_jobs WHERE name = 'analyze'")
    assert job["next_run_at"] == utc(2025, 1, 1, 11)
    [run] = rows(db, "SELECT * FROM scheduler_job_runs WHERE id = %s", job["last_run_id"])
    assert run["status"] == "succeeded" and run["finished_at"] >= run["started_at"]
    assert "seconds" in run["result"]


def test_a_failing_job_is_recorded_with_its_error(db) -> None:
    def boom(ctx: JobContext) -> dict[str, Any]:
        ctx.conn.execute("SELECT 1/0")
        return {}

    job = maintenance.Job("boom", boom, "job_analyze", "fails")
    outcome = maintenance.run_now(ctx(db, utc(2025, 1, 1)), job)
    assert outcome["status"] == "failed"
    assert "division by zero" in outcome["error"]
    [run] = rows(
        db, "SELECT status, error FROM scheduler_job_runs WHERE id = %s", outcome["run_id"]
    )
    assert run["status"] == "failed"


def test_a_new_leader_closes_runs_a_dead_one_left_running(db) -> None:
    db.execute("INSERT INTO scheduler_job_runs (job, runner) VALUES ('vacuum', 'dead')")
    assert maintenance.abandon_runs(db) == 1
    assert rows(db, "SELECT status FROM scheduler_job_runs")[0]["status"] == "abandoned"


def test_prune_keeps_what_is_recent(db, ws) -> None:
    from workers.maintenance import prune

    db.execute(
        "INSERT INTO scheduler_job_runs (job, started_at, status) VALUES"
        " ('vacuum', '2020-01-01', 'succeeded'), ('vacuum', '2025-01-01', 'succeeded')"
    )
    result = prune.run(ctx(db, utc(2025, 1, 10)))
    assert result["job_runs"] == 1
    assert len(rows(db, "SELECT id FROM scheduler_job_runs")) == 1
