"""Chaos: under continuous CRM write load, break one part of the running engine on
purpose — a worker, the listener, Redis, PostgreSQL, the scheduler leader — and prove the
guarantees of DESIGN.md afterwards: every captured event processed, every run finished
(none left queued or running), each database side effect present exactly once, and the
automations' counters equal to their runs.

Real processes (``haste listen``, ``haste worker``, ``haste schedule``) run against this
module's own PostgreSQL and Redis (tests/chaos/conftest.py); the counts of each scenario
are printed (``python -m pytest tests/chaos -s`` or ``-rA``). See docs/operations.md, "Chaos suite".
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

import psycopg
import pytest

from engine.config import load_settings
from tests.chaos.cluster import Cluster
from tests.chaos.harness import (
    SEED_CONTACTS,
    Load,
    Tally,
    World,
    backlog,
    build_world,
    burst,
    db_now,
    deploy_one_offs,
    report,
    seconds_from,
    settle,
    tally,
)
from tests.chaos.processes import FAST_ENV, Proc
from tests.polling import wait_for
from triggers.capture_mode import switch_capture
from triggers.decoder import Decoder
from triggers.scheduler import Scheduler, SchedulerOptions

pytestmark = pytest.mark.slow


def count(cluster: Cluster, sql: str, *params: Any) -> int:
    row = cluster.db.execute(sql, params).fetchone()
    assert row is not None
    return int(row[0] or 0)


def running(cluster: Cluster) -> int:
    return count(cluster, "SELECT count(*) FROM automation_executions WHERE status = 'running'")


def start(cluster: Cluster, *, scheduler: bool = True) -> dict[str, Proc]:
    """listener + scheduler (the reaper) + worker; returns them by role."""
    procs = cluster.processes
    started = {"listener": procs.listener()}
    if scheduler:
        started["scheduler"] = procs.scheduler()
    started["worker"] = procs.worker()
    return started


def warm_up(cluster: Cluster) -> None:
    """The seeded contacts' created-runs all complete: every process is up and working."""
    wait_for(
        lambda: (
            count(cluster, "SELECT count(*) FROM automation_executions WHERE status = 'completed'")
            >= SEED_CONTACTS
        ),
        60,
        "the seeded contacts' runs (processes starting)",
        step=0.2,
    )


def in_step(cluster: Cluster, timeout: float = 20) -> None:
    """Return while some run is inside its HTTP step (a request just arrived; the fake
    receiver holds each one for HTTP_DELAY)."""
    seen = len(cluster.http.requests)
    wait_for(lambda: len(cluster.http.requests) > seen, timeout, "a run inside its HTTP step")


def finish(name: str, cluster: Cluster, world: World, **extra: Any) -> Tally:
    settle(cluster.db)
    t = tally(name, cluster.db, world, cluster.http)
    t.extra.update(extra)
    report(t)
    return t


def check(t: Tally, cluster: Cluster) -> None:
    """The guarantees, with the processes' last log lines when one does not hold."""
    why = f"{t.line()}\n{t.detail()}\n{cluster.processes.tails()}"
    assert t.events > 0 and t.executions > 0, why
    assert t.lost == 0, why
    assert t.duplicated == 0, why
    assert not t.counter_mismatches, why
    assert t.failed == 0, why  # nothing here is a reason for a run to fail


def lock_holder_pid(cluster: Cluster) -> int | None:
    """The OS pid of the scheduler holding the leader lock (its name is host:pid:random)."""
    row = cluster.db.execute(
        "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
        " WHERE l.locktype = 'advisory' AND l.granted"
        " AND a.application_name LIKE 'haste-scheduler-lock:%'"
    ).fetchone()
    return int(row[0].split(":")[-2]) if row else None


def test_a_worker_sigkilled_mid_step_loses_and_doubles_nothing(cluster: Cluster) -> None:
    world = build_world(cluster.db, cluster.http)
    procs = start(cluster)
    warm_up(cluster)
    with Load(cluster.db_url, world) as load:
        time.sleep(2)
        in_step(cluster)
        procs["worker"].kill()  # the whole group: Dramatiq's parent and its forked workers
        held = running(cluster)  # runs the dead worker held, with no heartbeat any more
        time.sleep(1)  # the load goes on with no worker at all
        cluster.processes.worker()
        time.sleep(3)
    t = finish(
        "worker SIGKILL mid-step", cluster, world, held_by_killed=held, writes=load.committed
    )
    assert held > 0, t.line()  # the kill did hit runs in the middle of a step
    assert t.recoveries >= held, t.line()  # the reaper took each of them back
    check(t, cluster)


def listener_in_batch(cluster: Cluster) -> bool:
    """The listener's work session is inside a batch transaction that has written (claimed
    events, inserted decisions or runs): it has a transaction id."""
    return bool(
        count(
            cluster,
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'chaos-listener'"
            " AND backend_xid IS NOT NULL AND pid <> pg_backend_pid()",
        )
    )


def test_a_listener_sigkilled_mid_batch_is_caught_up_by_its_successor(cluster: Cluster) -> None:
    world = build_world(cluster.db, cluster.http)
    procs = start(cluster)
    warm_up(cluster)
    with Load(cluster.db_url, world) as load:
        time.sleep(1.5)
        burst(cluster.db, world, rounds=4)  # a bulk update: a backlog of batches
        wait_for(lambda: listener_in_batch(cluster), 20, "the listener inside a batch", 0.002)
        procs["listener"].kill()
        left, _ = backlog(cluster.db)
        time.sleep(1.5)  # events keep being captured with no listener
        cluster.processes.listener()
        time.sleep(2)
    t = finish(
        "listener SIGKILL mid-batch", cluster, world, backlog_at_kill=left, writes=load.committed
    )
    assert left > 0, t.line()  # the dead listener left work behind
    check(t, cluster)


def human_writes_captured(cluster: Cluster, world: World) -> int:
    """Contact events of the world's workspace caused by no execution: the Load's writes."""
    return count(
        cluster,
        "SELECT count(*) FROM automation_events WHERE workspace_id = %s"
        " AND event_type IN ('contact_created', 'contact_updated')"
        " AND causation_execution_id IS NULL",
        world.ws.id,
    )


def test_logical_capture_a_listener_sigkilled_under_load_loses_and_doubles_nothing(
    cluster: Cluster,
) -> None:
    world = build_world(cluster.db, cluster.http)
    switch_capture(cluster.db, "logical")
    procs = start(cluster)
    warm_up(cluster)
    before = human_writes_captured(cluster, world)
    with Load(cluster.db_url, world) as load:
        time.sleep(1.5)
        procs["listener"].kill()
        time.sleep(1.5)  # writes go on: their WAL waits in the slot, not in the outbox
        cluster.processes.listener()
        time.sleep(2)
    Decoder().catch_up(cluster.db)  # what the new listener has not read yet
    t = finish("logical capture: listener SIGKILL", cluster, world, writes=load.committed)
    # Every committed write is exactly one event, its causation (none) carried through WAL;
    # the runs' own writes carry theirs, or they would be counted here too.
    assert human_writes_captured(cluster, world) - before == load.committed, t.line()
    check(t, cluster)


def test_redis_restarted_empty_every_run_still_finishes(cluster: Cluster) -> None:
    world = build_world(cluster.db, cluster.http)
    procs = start(cluster)
    warm_up(cluster)
    with Load(cluster.db_url, world) as load:
        time.sleep(2)
        in_step(cluster)
        down_at = db_now(cluster.db)
        dropped = cluster.services.wipe_redis()  # queued and in-flight messages vanish
        time.sleep(1.5)  # runs created now cannot be sent at all
        cluster.services.redis.start()
        up_at = db_now(cluster.db)
        time.sleep(3)
    unsent = count(
        cluster,
        "SELECT count(*) FROM automation_executions WHERE queued_at BETWEEN %s AND %s",
        down_at,
        up_at,
    )
    t = finish(
        "Redis restart (messages lost)",
        cluster,
        world,
        messages_dropped=dropped,
        runs_created_while_down=unsent,
        writes=load.committed,
    )
    assert unsent > 0, t.line()  # runs whose only message never existed: the reaper's job
    assert all(p.alive() for p in procs.values()), cluster.processes.tails()
    check(t, cluster)


def test_postgres_restarted_under_load_processes_reconnect(cluster: Cluster) -> None:
    world = build_world(cluster.db, cluster.http)
    procs = start(cluster)
    warm_up(cluster)
    with Load(cluster.db_url, world) as load:
        time.sleep(2)
        in_step(cluster)
        cluster.close()
        cluster.services.restart_postgres(down=1.5)
        wait_for(
            lambda: lock_holder_pid(cluster) == procs["scheduler"].pid,
            30,
            "the scheduler to lead again",
        )
        time.sleep(3)
    t = finish(
        "PostgreSQL restart",
        cluster,
        world,
        writes=load.committed,
        writes_refused=load.failed,
    )
    assert load.failed > 0, t.line()  # the outage was real for the CRM too
    # Nobody restarted them: each process reconnected on its own.
    assert all(p.alive() for p in procs.values()), cluster.processes.tails()
    check(t, cluster)


def test_the_standby_scheduler_takes_over_fires_and_reaping(cluster: Cluster) -> None:
    world = build_world(cluster.db, cluster.http)
    procs = cluster.processes
    listener = procs.listener()
    leader = procs.scheduler()
    wait_for(lambda: lock_holder_pid(cluster) == leader.pid, 30, "the first scheduler to lead")
    standby = procs.scheduler()
    worker = procs.worker()
    warm_up(cluster)
    # One-off schedules every 1.5 s, from before the leader dies to well after; the first
    # one after the leader's next sync of deploys (every 5 s).
    instants = [seconds_from(cluster.db, 7 + 1.5 * i) for i in range(8)]
    one_offs = deploy_one_offs(cluster.db, world, instants)

    def fired() -> int:
        return count(
            cluster, "SELECT count(*) FROM schedule_fires WHERE automation_id = ANY(%s)", one_offs
        )

    with Load(cluster.db_url, world) as load:
        wait_for(lambda: fired() >= 3, 30, "three fires by the first leader", 0.1)
        in_step(cluster)
        leader.kill()  # with the reaper it runs...
        worker.kill()  # ...and a worker whose runs only a reaper can recover now
        held = running(cluster)
        cluster.processes.worker()
        wait_for(lambda: lock_holder_pid(cluster) == standby.pid, 30, "the standby to lead")
        wait_for(lambda: db_now(cluster.db) > instants[-1], 30, "the last one-off instant")
        time.sleep(2)
    settle(cluster.db)
    firers = {
        str(row[0]).split(":")[-2]
        for row in cluster.db.execute(
            "SELECT DISTINCT fired_by FROM schedule_fires WHERE automation_id = ANY(%s)",
            (one_offs,),
        )
    }
    t = tally("scheduler leader SIGKILL", cluster.db, world, cluster.http, one_offs)
    t.extra.update(
        one_offs=len(one_offs),
        fired=fired(),
        fired_by_replicas=len(firers),
        held_by_killed=held,
        writes=load.committed,
    )
    report(t)
    assert firers == {str(leader.pid), str(standby.pid)}, t.line()  # both fired: a takeover
    assert held > 0 and t.recoveries >= held, t.line()  # the new leader's reaper did it
    assert listener.alive() and standby.alive(), cluster.processes.tails()
    check(t, cluster)


def test_the_first_take_over_after_a_postgres_restart_succeeds(cluster: Cluster) -> None:
    """A PostgreSQL restart leaves every pooled session of a scheduler dead. Its pool checks
    a session before lending it, so the first take-over after the restart works; without
    the check each dead session failed one attempt (one HASTE_SCHEDULER_LEADER_RETRY, 2 s by
    default, each) before the pool discarded it: up to ~30 s without cron, delays or the
    reaper. A Scheduler in a thread here, on this module's PostgreSQL."""
    scheduler = Scheduler(
        cluster.db_url,
        settings=load_settings(FAST_ENV),
        # Ticks far apart: after the restart nothing but the take-over touches the pool.
        options=SchedulerOptions(tick=60, leader_retry=0.1, jobs=(), reaper=False),
        enqueue=lambda ids: None,
        name="pool-check",
    )
    failures: list[BaseException] = []
    lead = scheduler._lead

    def counted_lead() -> Any:
        try:
            return lead()
        except psycopg.Error as exc:
            failures.append(exc)
            raise

    scheduler._lead = counted_lead  # type: ignore[method-assign]
    stop = threading.Event()
    thread = threading.Thread(target=scheduler.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(scheduler.leading.is_set, 30, "the scheduler to lead")
        with contextlib.ExitStack() as held:  # three sessions in the pool, as busy ticks leave
            for _ in range(3):
                held.enter_context(scheduler.pool.connection())
        time.sleep(0.3)
        cluster.close()
        cluster.services.restart_postgres(down=0.5)
        wait_for(lambda: scheduler.terms >= 2 and scheduler.leading.is_set(), 30, "a new term")
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()
    assert failures == []
