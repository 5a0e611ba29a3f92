"""Scheduler replicas: one leads, a standby takes over when the leader dies, and no fire
is lost or doubled — even when the leader dies in the middle of a fire. Two real
Scheduler instances in threads, each with its own connections; a fake clock."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from engine.config import load_settings
from tests.fakes.crm import make_workspace, rows
from tests.fakes.executions import deploy_doc
from tests.fakes.scheduling import FakeClock, make_outbox, outbox, outbox_emit, time_doc
from tests.polling import wait_for
from triggers.scheduler import Scheduler, SchedulerOptions

START = datetime(2025, 1, 1, 9, 0, 30, tzinfo=UTC)
FAST = SchedulerOptions(tick=0.05, leader_retry=0.1, jobs=(), reaper=False, sync_interval=0.05)


class Replica:
    """A Scheduler running in a thread, as a process would run it."""

    def __init__(self, db_url: str, name: str, clock: FakeClock, emit: Any = outbox_emit) -> None:
        self.scheduler = Scheduler(
            db_url,
            settings=load_settings({}),
            options=FAST,
            clock=clock,
            emit=emit,
            enqueue=lambda ids: None,
            name=name,
        )
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.scheduler.run, args=(self.stop,), daemon=True)
        self.thread.start()

    def kill(self, db: psycopg.Connection[Any]) -> None:
        """Process death: every session of the replica ends at once, then it stops."""
        db.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE %s",
            (f"haste-scheduler%:{self.scheduler.name}",),
        )
        self.stop.set()

    def join(self) -> None:
        self.stop.set()
        self.thread.join(timeout=20)
        assert not self.thread.is_alive()


@pytest.fixture
def replicas(db_url: str) -> Iterator[list[Replica]]:
    made: list[Replica] = []
    yield made
    for replica in made:
        replica.join()


def fired(db: psycopg.Connection[Any]) -> list[tuple[datetime, str]]:
    return [
        (r["scheduled_for"], r["fired_by"])
        for r in rows(
            db, "SELECT scheduled_for, fired_by FROM schedule_fires ORDER BY scheduled_for"
        )
    ]


def test_one_replica_leads_and_a_standby_takes_over_without_losing_or_doubling_a_fire(
    db, db_url, replicas
) -> None:
    make_outbox(db)
    ws = make_workspace(db)
    deploy_doc(db, ws, time_doc({"cron": "* * * * *", "timezone": "UTC"}))
    clock = FakeClock(START)

    in_fire, release = threading.Event(), threading.Event()

    def leader_emit(cur: Any, **kwargs: Any) -> int:
        if kwargs["payload"]["scheduled_for"] == "2025-01-01T09:04:00+00:00":
            in_fire.set()  # the leader holds the claim of 09:04 in an open transaction...
            release.wait(10)  # ...and dies before it commits
        return outbox_emit(cur, **kwargs)

    a = Replica(db_url, "A", clock, emit=leader_emit)
    replicas.append(a)
    wait_for(a.scheduler.leading.is_set)
    b = Replica(db_url, "B", clock)
    replicas.append(b)
    time.sleep(0.3)  # B tries the lock a few times meanwhile
    assert not b.scheduler.leading.is_set()

    for minute in (1, 2, 3):
        clock.set(START + timedelta(minutes=minute))
        wait_for(lambda m=minute: len(fired(db)) == m)
    clock.set(START + timedelta(minutes=4))
    assert in_fire.wait(10)
    killed_at = time.monotonic()
    a.kill(db)
    release.set()
    wait_for(b.scheduler.leading.is_set)
    takeover = time.monotonic() - killed_at
    wait_for(lambda: len(fired(db)) == 4)
    for minute in (5, 6):
        clock.set(START + timedelta(minutes=minute))
        wait_for(lambda m=minute: len(fired(db)) == m)

    minutes = [START.replace(second=0) + timedelta(minutes=m) for m in range(1, 7)]
    assert fired(db) == [(t, "A" if t.minute < 4 else "B") for t in minutes]
    events = [e["payload"]["scheduled_for"] for e in outbox(db)]
    assert sorted(events) == [t.isoformat() for t in minutes]  # A's 09:04 rolled back
    assert takeover < 3.0


def test_a_leader_that_loses_its_lock_session_steps_down(db, db_url, replicas) -> None:
    clock = FakeClock(START)
    a = Replica(db_url, "A", clock)
    replicas.append(a)
    wait_for(a.scheduler.leading.is_set)
    b = Replica(db_url, "B", clock)
    replicas.append(b)
    a.scheduler.leadership.close()  # the lock session dies; A's process lives on
    # A notices and steps down; then one of the two (whoever tries first) leads again.
    wait_for(lambda: a.scheduler.terms + b.scheduler.terms == 2)

    def one_leader() -> str | None:
        leading = [r.scheduler.name for r in (a, b) if r.scheduler.leading.is_set()]
        holders = rows(
            db,
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
            " WHERE l.locktype = 'advisory' AND l.granted",
        )
        names = [h["application_name"] for h in holders]
        if len(leading) == 1 and names == [f"haste-scheduler-lock:{leading[0]}"]:
            return leading[0]
        return None

    assert wait_for(one_leader) in ("A", "B")


def test_the_leader_drives_delays_the_reaper_and_due_maintenance_jobs(db, db_url, replicas) -> None:
    from workers import maintenance

    ws = make_workspace(db)
    automation_id, _ = deploy_doc(db, ws, time_doc({"cron": "0 0 1 1 *", "timezone": "UTC"}))
    db.execute(
        "INSERT INTO automation_executions (automation_id, workspace_id, status, exclusive,"
        " resume_at) VALUES (%s, %s, 'waiting', false, %s)",
        (automation_id, ws.id, START + timedelta(minutes=5)),
    )
    clock = FakeClock(START)
    reaped = threading.Event()
    sent: list[str] = []
    scheduler = Scheduler(
        db_url,
        settings=load_settings({"HASTE_JOB_PARTITIONS": "0 * * * *"}),
        options=SchedulerOptions(
            tick=0.05,
            leader_retry=0.1,
            reaper_interval=0.05,
            maintenance_tick=0.05,
            jobs=(maintenance.BY_NAME["partitions"],),
        ),
        clock=clock,
        emit=outbox_emit,
        enqueue=sent.extend,
        reap=lambda conn: reaped.set(),
        name="solo",
    )
    stop = threading.Event()
    thread = threading.Thread(target=scheduler.run, args=(stop,), daemon=True)
    thread.start()
    try:
        assert reaped.wait(10)
        # Never run before: partitions run at the first start, then at each cron instant.
        done = "SELECT count(*) AS n FROM scheduler_job_runs WHERE status = 'succeeded'"
        wait_for(lambda: rows(db, done)[0]["n"] == 1)
        clock.set(START + timedelta(hours=1))
        wait_for(lambda: rows(db, done)[0]["n"] == 2)
        wait_for(lambda: len(sent) == 1)  # the delay, due at 09:05, woken by the 10:00 tick
        runs = rows(db, "SELECT status, runner FROM scheduler_job_runs ORDER BY id")
        assert runs == [{"status": "succeeded", "runner": "solo"}] * 2
    finally:
        stop.set()
        thread.join(timeout=20)
