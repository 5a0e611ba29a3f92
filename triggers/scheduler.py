"""``haste schedule``: one leader drives every tick of time; standbys wait to take over.

Leadership is a PostgreSQL session advisory lock (:data:`LOCK_KEY`) held on a dedicated
connection. The leader checks that connection every ``HASTE_SCHEDULER_LEADER_RETRY``
seconds; a standby tries the lock as often. When the leader's process dies its session
ends and the lock with it, so a standby leads within that interval. TCP keepalives on
the lock session (:data:`KEEPALIVE`) bound how long a vanished host (no FIN) keeps it.
The lock is only an optimisation of who does the work: every claim is ``FOR UPDATE SKIP
LOCKED`` or a guarded UPDATE, and each fire has a unique key, so a leader that lost its
lock but has not noticed yet (at most one check interval) cannot double anything.

APScheduler drives the ticks and nothing else — a handful of interval jobs:

* ``schedules`` (every ``HASTE_SCHEDULE_TICK``): sync deploys (every
  :data:`SYNC_INTERVAL`), fire due cron/at automations, buffered fires and due records,
  batch after batch; when the next due instant is closer than a tick, wait exactly until
  it, so on-time fires are not late by up to a tick;
* ``delays`` (same tick): wake executions whose delay is over;
* ``reaper`` (every ``HASTE_REAPER_INTERVAL``): :func:`workers.reaper.reap`;
* one per maintenance job (every :data:`MAINTENANCE_TICK`): run it if its row in
  ``scheduler_jobs`` is due.

Never one APScheduler job per automation: DESIGN.md measured 58–91 % of fires missed with
5,000 such jobs due together (default 1 s grace) and p99 lateness 1.3–1.6 s with a long
grace; ``bench/bench_schedule.py`` measures both in one run.

Time comes from a :class:`Clock`, so tests move a fake one instead of sleeping.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Protocol

import psycopg
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from psycopg_pool import ConnectionPool

from engine import metrics
from engine.config import Settings, load_settings
from engine.queries import query
from triggers import schedule
from workers import maintenance

log = logging.getLogger("haste.scheduler")

LOCK_KEY = 0x6861737465736368
"""Advisory lock of the scheduler leader ("hastesch"; the migrator's is "hastemig")."""
SYNC_INTERVAL = 5.0
"""Seconds between passes noticing deploys, enables and disables of time_based automations
(and refreshing next_run_at of date-field ones)."""
MAINTENANCE_TICK = 10.0
"""Seconds between checks of whether a maintenance job is due."""
KEEPALIVE = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 3}
"""Client-side TCP keepalive of the lock session (libpq parameters)."""
SERVER_KEEPALIVE = (
    "SET tcp_keepalives_idle = 5",
    "SET tcp_keepalives_interval = 2",
    "SET tcp_keepalives_count = 3",
)
"""Server-side keepalive: the server drops a vanished leader's session (and lock) in ~11 s."""


class Clock(Protocol):
    """Where the scheduler gets "now" (UTC, aware)."""

    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


def replica_name() -> str:
    """host:pid:random, shown in ``--list`` and recorded on fires and job runs."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Leadership:
    """The leader lock on its own connection (never used for work, so a long job cannot
    delay the heartbeat that proves the lock is still ours)."""

    def __init__(self, conninfo: str, name: str, key: int = LOCK_KEY) -> None:
        self.conninfo = conninfo
        self.name = name
        self.key = key
        self._conn: psycopg.Connection[Any] | None = None

    def acquire(self) -> bool:
        """Try the lock once; True if we hold it now."""
        try:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(
                    self.conninfo,
                    autocommit=True,
                    application_name=f"haste-scheduler-lock:{self.name}"[:63],
                    **KEEPALIVE,
                )
                for statement in SERVER_KEEPALIVE:
                    self._conn.execute(statement)
            row = self._conn.execute(query("scheduler_lock_try"), {"key": self.key}).fetchone()
            if row and row[0]:
                return True
        except psycopg.Error as exc:
            log.warning("scheduler lock: %s", exc)
            self.close()
        return False

    def held(self) -> bool:
        """Is the lock session alive (a live session keeps its session lock)?"""
        if self._conn is None or self._conn.closed:
            return False
        try:
            self._conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            self.close()
            return False

    def release(self) -> None:
        if self._conn is not None and not self._conn.closed:
            with contextlib.suppress(psycopg.Error):
                self._conn.execute(query("scheduler_lock_release"), {"key": self.key})
        self.close()

    def close(self) -> None:
        """Drop the lock session (and with it the lock): what a crash does."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()


@dataclass
class SchedulerOptions:
    """Tunables of one scheduler replica (``from_settings`` reads the environment's)."""

    tick: float = 1.0
    batch: int = schedule.DEFAULT_BATCH
    grace: timedelta = schedule.DEFAULT_GRACE
    leader_retry: float = 2.0
    reaper_interval: float = 5.0
    maintenance_tick: float = MAINTENANCE_TICK
    sync_interval: float = SYNC_INTERVAL
    claimers: int = 2
    """Connections claiming due schedules in parallel during a burst (see _drain)."""
    jobs: Sequence[maintenance.Job] = field(default_factory=lambda: maintenance.JOBS)
    reaper: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> SchedulerOptions:
        return cls(
            tick=settings.schedule_tick,
            batch=settings.schedule_batch,
            grace=timedelta(seconds=settings.schedule_misfire_grace),
            leader_retry=settings.scheduler_leader_retry,
            reaper_interval=settings.reaper_interval,
        )


Observer = Callable[[list[schedule.Fire], datetime], None]
"""Called after each committed batch with its fires and the commit time (real clock)."""


class Scheduler:
    """One replica: :meth:`run` blocks, leading when it holds the lock."""

    def __init__(
        self,
        conninfo: str,
        *,
        settings: Settings | None = None,
        options: SchedulerOptions | None = None,
        clock: Clock | None = None,
        emit: schedule.Emit | None = None,
        emit_many: schedule.EmitMany | None = None,
        enqueue: Callable[[Sequence[Any]], Any] | None = None,
        reap: Callable[[psycopg.Connection[Any]], Any] | None = None,
        name: str | None = None,
        on_fired: Observer | None = None,
    ) -> None:
        self.settings = settings or load_settings()
        self.options = options or SchedulerOptions.from_settings(self.settings)
        self.clock: Clock = clock or SystemClock()
        self.name = name or replica_name()
        self._emit = emit
        self._emit_many = emit_many
        self._default_emit = emit is None
        self._enqueue = enqueue
        self._reap = reap
        self.on_fired = on_fired
        self.leadership = Leadership(conninfo, self.name)
        self.leading = threading.Event()
        self.stopping = threading.Event()
        self.terms = 0
        """How many times this replica became the leader."""
        self._next_sync = 0.0
        workers = 3 + len(self.options.jobs) + self.options.claimers
        self.pool = ConnectionPool(
            conninfo,
            min_size=1,
            max_size=workers + 1,
            kwargs={"autocommit": True, "application_name": f"haste-scheduler:{self.name}"[:63]},
            name=f"scheduler-{self.name}",
            # A database restart leaves every pooled session dead; without a check each one
            # failed a tick (or a take-over: one leader_retry each) before being discarded.
            check=ConnectionPool.check_connection,
            open=True,
        )
        self.aps = BackgroundScheduler(
            timezone=UTC,
            executors={"default": ThreadPoolExecutor(max_workers=workers)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        self._add_jobs()

    # --- wiring -----------------------------------------------------------------------

    @property
    def emit(self) -> schedule.Emit:
        if self._emit is None:
            self._emit = schedule.default_emit()
            if self._emit_many is None and self._default_emit:
                self._emit_many = schedule.default_emit_many()
        return self._emit

    def _add_jobs(self) -> None:
        opts = self.options
        ticks: list[tuple[str, Callable[[], Any], float]] = [
            ("schedules", self.tick_schedules, opts.tick),
            ("delays", self.tick_delays, opts.tick),
        ]
        if opts.reaper:
            ticks.append(("reaper", self.tick_reaper, opts.reaper_interval))
        for job in opts.jobs:
            ticks.append((f"job:{job.name}", partial(self.tick_job, job), opts.maintenance_tick))
        for name, fn, seconds in ticks:
            # First run as soon as this replica leads, then every interval.
            self.aps.add_job(
                self._guard(fn),
                "interval",
                seconds=seconds,
                id=name,
                next_run_time=datetime.now(UTC),
            )

    def _guard(self, fn: Callable[[], Any]) -> Callable[[], None]:
        """Ticks run only while leading, and never raise into APScheduler (its log line
        would be the only trace): errors are logged and the next tick tries again."""

        def tick() -> None:
            if not self.leading.is_set() or self.stopping.is_set():
                return
            try:
                fn()
            except Exception:
                log.exception("scheduler tick %s failed", getattr(fn, "__name__", fn))

        return tick

    # --- leader loop ------------------------------------------------------------------

    def run(self, stop: threading.Event | None = None) -> None:
        """Lead when possible until ``stop`` is set (then release the lock and return)."""
        stop = stop or self.stopping
        self.aps.start(paused=True)
        try:
            while not stop.is_set() and not self.stopping.is_set():
                if not self.leading.is_set():
                    if self.leadership.acquire():
                        try:
                            self._lead()
                            continue
                        except psycopg.Error as exc:  # database gone mid-start: let go
                            log.warning("scheduler %s could not start leading: %s", self.name, exc)
                            self.leadership.close()
                    stop.wait(self.options.leader_retry)
                    continue
                if not self.leadership.held():
                    log.warning("scheduler %s lost the leader lock", self.name)
                    self._follow()
                    continue
                stop.wait(self.options.leader_retry)
        finally:
            self.stopping.set()
            self._follow()
            self.aps.shutdown(wait=True)
            self.leadership.release()
            self.pool.close()

    def _lead(self) -> None:
        log.info("scheduler %s is the leader", self.name)
        with self.pool.connection() as conn:
            abandoned = maintenance.abandon_runs(conn)
            if abandoned:
                log.warning("closed %d job runs left running by a previous leader", abandoned)
            maintenance.ensure_jobs(conn, self.settings, self.clock.now(), self.options.jobs)
        self._next_sync = 0.0
        self.terms += 1
        self.leading.set()
        metrics.SCHEDULER_LEADER.inc()
        self.aps.resume()

    def _follow(self) -> None:
        if self.leading.is_set():
            state = "stopped" if self.stopping.is_set() else "is a standby"
            log.info("scheduler %s %s", self.name, state)
            metrics.SCHEDULER_LEADER.dec()
        self.leading.clear()
        if self.aps.running:
            self.aps.pause()

    def stop(self) -> None:
        self.stopping.set()

    # --- ticks ------------------------------------------------------------------------

    def _observe(self, result: schedule.PassResult) -> None:
        """After each committed batch: count it, then tell the observer."""
        for (kind, outcome), count in result.tally.items():
            metrics.SCHEDULE_FIRES.labels(kind, outcome).inc(count)
        if result.emitted:
            metrics.EVENTS_EMITTED.labels(schedule.EVENT_TYPE).inc(len(result.emitted))
            if self.on_fired is not None:
                self.on_fired(result.emitted, datetime.now(UTC))

    def pass_schedules(self) -> schedule.PassResult:
        """Everything due now, batch by batch, while we lead."""
        total = schedule.PassResult()
        opts = self.options
        with self.pool.connection() as conn:
            if time.monotonic() >= self._next_sync:
                schedule.sync(conn, self.clock.now(), batch=opts.batch)
                schedule.refresh_date_field_next_runs(conn)
                self._next_sync = time.monotonic() + opts.sync_interval
        for step in (
            schedule.fire_due_schedules,
            schedule.fire_buffered,
            schedule.fire_due_records,
        ):
            total.add(self._drain(step))
        if total.emitted or total.skipped:
            log.info(
                "schedules: %d fired, %d skipped, %d buffered, %d moved, %d cancelled",
                len(total.emitted),
                total.skipped,
                total.buffered,
                total.moved,
                total.cancelled,
            )
        return total

    def _batch(self, step: Callable[..., schedule.PassResult], conn: Any) -> schedule.PassResult:
        opts = self.options
        result = step(
            conn,
            self.clock.now(),
            emit=self.emit,
            emit_many=self._emit_many,
            batch=opts.batch,
            grace=opts.grace,
            fired_by=self.name,
        )
        self._observe(result)
        return result

    def _drain(self, step: Callable[..., schedule.PassResult]) -> schedule.PassResult:
        """Batches of ``step`` until one comes back short. When the first batch is full (a
        burst: thousands due in the same second), ``options.claimers`` connections claim in
        parallel (SKIP LOCKED keeps their batches apart): while one waits on PostgreSQL,
        another plans its fires."""
        total = schedule.PassResult()
        lock = threading.Lock()

        def loop(first: schedule.PassResult | None = None) -> None:
            with self.pool.connection() as conn:
                result = first or self._batch(step, conn)
                while True:
                    with lock:
                        total.add(result)
                    if result.claimed < self.options.batch or not self.leading.is_set():
                        return
                    result = self._batch(step, conn)

        with self.pool.connection() as conn:
            first = self._batch(step, conn)
        if first.claimed < self.options.batch or step is schedule.fire_buffered:
            total.add(first)
            return total
        helpers = [threading.Thread(target=loop) for _ in range(self.options.claimers - 1)]
        for helper in helpers:
            helper.start()
        loop(first)
        for helper in helpers:
            helper.join()
        return total

    def _wait_for(self, instant: datetime | None) -> bool:
        """Sleep until ``instant`` if it comes within one tick; False when it does not (the
        next tick will see it) or we stop leading."""
        if instant is None:
            return False
        delay = (instant - self.clock.now()).total_seconds()
        if delay > self.options.tick:
            return False
        if delay > 0:
            self.stopping.wait(delay)
        return self.leading.is_set() and not self.stopping.is_set()

    def tick_schedules(self) -> None:
        while self.leading.is_set():
            result = self.pass_schedules()
            with self.pool.connection() as conn:
                upcoming = _earliest(conn, ("schedule_next_due", "schedule_next_record_due"))
            if upcoming is not None and upcoming <= self.clock.now() and not result.claimed:
                return  # due but not claimable (locked elsewhere): the next tick retries
            if not self._wait_for(upcoming):
                return

    def tick_delays(self) -> None:
        enqueue = self._enqueue
        while self.leading.is_set():
            with self.pool.connection() as conn:
                woken = schedule.wake_due_delays(
                    conn, self.clock.now(), batch=self.options.batch, enqueue=enqueue
                )
                if woken:
                    metrics.DELAYS_WOKEN.inc(len(woken))
                    log.info("delays: %d executions woken", len(woken))
                upcoming = _earliest(conn, ("schedule_next_delay",))
            if upcoming is not None and upcoming <= self.clock.now() and not woken:
                return
            if not self._wait_for(upcoming):
                return

    def tick_reaper(self) -> None:
        with self.pool.connection() as conn:
            if self._reap is not None:
                self._reap(conn)
                return
            from workers.reaper import reap

            result = reap(conn, settings=self.settings)
            if result:
                log.info(
                    "reaper: resent %d, recovered %d, failed %d",
                    len(result.resent),
                    len(result.recovered),
                    len(result.failed),
                )

    def tick_job(self, job: maintenance.Job) -> dict[str, Any] | None:
        with self.pool.connection() as conn:
            ctx = maintenance.JobContext(conn, self.clock.now(), self.settings, self.name)
            return maintenance.run_if_due(ctx, job)


def _earliest(conn: psycopg.Connection[Any], names: Sequence[str]) -> datetime | None:
    with conn.cursor() as cur:
        found = [cur.execute(query(name)).fetchone()[0] for name in names]
    present = [f for f in found if f is not None]
    return min(present) if present else None
