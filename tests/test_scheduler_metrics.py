"""What the scheduler counts in Prometheus: fires by kind and outcome, delays woken,
maintenance runs by job and outcome, leadership. A real Scheduler (its pool, its passes)
on a real database with a fake clock; values read from this process's registry."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID

import psycopg
import pytest
from prometheus_client import REGISTRY

from engine.config import load_settings
from tests.fakes.crm import Workspace, make_deal, make_pipeline, make_workspace
from tests.fakes.executions import deploy_doc
from tests.fakes.scheduling import FakeClock, deal_date_doc, make_outbox, outbox_emit, time_doc
from triggers.scheduler import Scheduler, SchedulerOptions
from workers import maintenance

Conn = psycopg.Connection[Any]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def fires(kind: str, outcome: str) -> float:
    return sample("haste_schedule_fires_total", kind=kind, outcome=outcome)


def counted(read: Callable[[], float], act: Callable[[], Any]) -> float:
    """How much ``read`` grew while ``act`` ran."""
    before = read()
    act()
    return read() - before


@pytest.fixture
def ws(db: Conn) -> Workspace:
    make_outbox(db)
    return make_workspace(db)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(utc(2025, 1, 1, 9, 30))


@pytest.fixture
def scheduler(db_url: str, clock: FakeClock) -> Iterator[Scheduler]:
    made = Scheduler(
        db_url,
        settings=load_settings({}),
        options=SchedulerOptions(jobs=(), reaper=False, sync_interval=0.0),
        clock=clock,
        emit=outbox_emit,
        enqueue=lambda ids: None,
        name="metrics",
    )
    try:
        yield made
    finally:
        made.pool.close()


def deploy(db: Conn, ws: Workspace, doc: dict[str, Any]) -> UUID:
    return deploy_doc(db, ws, doc)[0]


def test_a_cron_fire_on_time_counts_as_cron_on_time(db, ws, scheduler, clock) -> None:
    deploy(db, ws, time_doc({"cron": "0 * * * *", "timezone": "UTC"}))
    scheduler.pass_schedules()  # 09:30: synced, nothing due
    clock.set(utc(2025, 1, 1, 10, 0, 5))
    assert counted(lambda: fires("cron", "on_time"), scheduler.pass_schedules) == 1


def test_a_fire_counts_one_time_based_event_emitted(db, ws, scheduler, clock) -> None:
    deploy(db, ws, time_doc({"cron": "0 * * * *", "timezone": "UTC"}))
    scheduler.pass_schedules()
    clock.set(utc(2025, 1, 1, 10, 0, 5))
    emitted = counted(
        lambda: sample("haste_events_emitted_total", source="time_based"),
        scheduler.pass_schedules,
    )
    assert emitted == 1


def test_a_catch_up_fire_after_downtime_counts_as_late(db, ws, scheduler, clock) -> None:
    deploy(db, ws, time_doc({"cron": "0 * * * *", "timezone": "UTC", "misfire": "run_once"}))
    scheduler.pass_schedules()
    clock.set(utc(2025, 1, 1, 10, 20))  # 20 minutes late, within the catch-up window
    assert counted(lambda: fires("cron", "late"), scheduler.pass_schedules) == 1


def test_fires_dropped_by_the_misfire_policy_count_as_misfired(db, ws, scheduler, clock) -> None:
    deploy(db, ws, time_doc({"cron": "*/5 * * * *", "timezone": "UTC", "misfire": "skip"}))
    scheduler.pass_schedules()
    clock.set(utc(2025, 1, 1, 9, 48))  # down through 09:35, 09:40, 09:45
    assert counted(lambda: fires("cron", "misfired"), scheduler.pass_schedules) == 3


def test_a_fire_skipped_because_the_last_run_is_live_counts_as_skipped(
    db, ws, scheduler, clock
) -> None:
    auto = deploy(db, ws, time_doc({"cron": "0 * * * *", "timezone": "UTC", "overlap": "skip"}))
    db.execute(
        "INSERT INTO automation_executions (automation_id, workspace_id, status, exclusive,"
        " triggered_by) VALUES (%s, %s, 'running', false, 'time_based')",
        (auto, ws.id),
    )
    scheduler.pass_schedules()
    clock.set(utc(2025, 1, 1, 10, 0, 5))
    assert counted(lambda: fires("cron", "skipped"), scheduler.pass_schedules) == 1


def test_a_one_off_at_fire_counts_as_kind_at(db, ws, scheduler, clock) -> None:
    deploy(db, ws, time_doc({"at": "2025-01-01T10:00:00+00:00"}))
    scheduler.pass_schedules()
    clock.set(utc(2025, 1, 1, 10, 0, 5))
    assert counted(lambda: fires("at", "on_time"), scheduler.pass_schedules) == 1


def test_a_buffered_fire_counts_once_when_it_goes_out(db, ws, scheduler, clock) -> None:
    auto = deploy(
        db, ws, time_doc({"cron": "0 * * * *", "timezone": "UTC", "overlap": "buffer_one"})
    )
    run = db.execute(
        "INSERT INTO automation_executions (automation_id, workspace_id, status, exclusive,"
        " triggered_by) VALUES (%s, %s, 'running', false, 'time_based') RETURNING id",
        (auto, ws.id),
    ).fetchone()[0]
    scheduler.pass_schedules()
    clock.set(utc(2025, 1, 1, 10, 0, 5))
    assert counted(lambda: fires("cron", "on_time"), scheduler.pass_schedules) == 0  # held
    db.execute("UPDATE automation_executions SET status = 'completed' WHERE id = %s", (run,))
    clock.set(utc(2025, 1, 1, 10, 5))  # the 10:00 fire goes out five minutes late
    assert counted(lambda: fires("cron", "late"), scheduler.pass_schedules) == 1


def test_a_date_field_fire_counts_as_kind_date_field(db, ws, scheduler, clock) -> None:
    make_deal(db, ws, make_pipeline(db, ws), expected_close_date=date(2025, 1, 4))
    config = {"offset": {"days": -3}, "time": "10:00", "timezone": "UTC"}
    deploy(db, ws, deal_date_doc(config))
    scheduler.pass_schedules()  # due 2025-01-01 10:00
    clock.set(utc(2025, 1, 1, 10, 0, 5))
    assert counted(lambda: fires("date_field", "on_time"), scheduler.pass_schedules) == 1


def test_delays_woken_by_the_scheduler_are_counted(db, ws, scheduler, clock) -> None:
    auto = deploy(db, ws, time_doc({"cron": "0 0 1 1 *", "timezone": "UTC"}))
    db.execute(
        "INSERT INTO automation_executions (automation_id, workspace_id, status, exclusive,"
        " resume_at) SELECT %s, %s, 'waiting', false, %s FROM generate_series(1, 3)",
        (auto, ws.id, utc(2025, 1, 1, 9, 29)),
    )
    scheduler.leading.set()  # the tick only loops while leading; nothing else is due
    woken = counted(lambda: sample("haste_delays_woken_total"), scheduler.tick_delays)
    assert woken == 3


def test_a_maintenance_run_by_the_scheduler_counts_ok_for_its_job(db, scheduler, clock) -> None:
    job = maintenance.BY_NAME["analyze"]
    maintenance.ensure_jobs(db, scheduler.settings, clock.now(), [job])
    clock.set(utc(2025, 1, 1, 10, 0, 5))  # analyze: hourly
    runs = counted(
        lambda: sample("haste_maintenance_runs_total", job="analyze", outcome="ok"),
        lambda: scheduler.tick_job(job),
    )
    assert runs == 1


def test_a_failed_maintenance_run_counts_failed_for_its_job(db, scheduler, clock) -> None:
    def boom(ctx: maintenance.JobContext) -> dict[str, Any]:
        ctx.conn.execute("SELECT 1/0")
        return {}

    job = maintenance.Job("metrics_boom", boom, "job_analyze", "fails")
    maintenance.ensure_jobs(db, scheduler.settings, clock.now(), [job])
    clock.set(utc(2025, 1, 1, 10, 0, 5))
    runs = counted(
        lambda: sample("haste_maintenance_runs_total", job="metrics_boom", outcome="failed"),
        lambda: scheduler.tick_job(job),
    )
    assert runs == 1


def test_the_leader_gauge_is_one_while_leading_and_back_to_zero_after(db_url, clock) -> None:
    replica = Scheduler(
        db_url,
        settings=load_settings({}),
        options=SchedulerOptions(tick=0.05, leader_retry=0.05, jobs=(), reaper=False),
        clock=clock,
        emit=outbox_emit,
        enqueue=lambda ids: None,
        name="gauge",
    )
    before = sample("haste_scheduler_leader")
    stop = threading.Event()
    thread = threading.Thread(target=replica.run, args=(stop,), daemon=True)
    thread.start()
    try:
        assert replica.leading.wait(10)
        deadline = time.monotonic() + 10
        while sample("haste_scheduler_leader") != before + 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sample("haste_scheduler_leader") == before + 1
    finally:
        stop.set()
        thread.join(timeout=20)
    assert sample("haste_scheduler_leader") == before
