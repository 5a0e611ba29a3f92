"""Gauges read at scrape time from PostgreSQL and Redis, by the web process's /metrics.

What no single process can count lives here: live executions by status and the age of the
oldest, the outbox backlog and its age (the listener's lag as an operator sees it), the
number of events ever captured (the outbox identity's last value: row triggers cannot
increment a Prometheus counter, but every captured row takes one id), Dramatiq queue
depths, and whether any scheduler holds the leader lock. Each is one cheap statement
(the live-execution and unprocessed-event counts run on partial indexes).

Results are kept for :data:`MIN_INTERVAL` seconds, so several Prometheus servers (or an
impatient operator's curl loop) cost the database one read per interval, not per scrape.
A dependency that does not answer within :data:`TIMEOUT` reports ``haste_dependency_up 0``
and its gauges are left out: a scrape never hangs, and never fails, on a sick database.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from psycopg_pool import ConnectionPool

from engine.logs import get_logger
from engine.queries import query

log = get_logger("haste.web.gauges")

#: Seconds a scrape's database and Redis readings are reused.
MIN_INTERVAL = 5.0
#: Seconds a scrape waits for a pooled connection or for Redis before reporting it down.
TIMEOUT = 2.0
#: Live execution states (finished ones are counted by the workers, not read here).
LIVE_STATUSES = ("queued", "running", "waiting")


class ScrapeGauges(Collector):
    """A prometheus_client collector over the shared state of a haste deployment."""

    def __init__(
        self,
        pool: ConnectionPool,
        redis_client: redis.Redis | None,
        queues: tuple[str, ...],
        *,
        namespace: str = "dramatiq",
        scheduler_lock_key: int | None = None,
    ) -> None:
        self.pool = pool
        self.redis = redis_client
        self.queues = queues
        self.namespace = namespace
        self.scheduler_lock_key = scheduler_lock_key
        self._lock = threading.Lock()
        self._cached: list[Metric] = []
        self._at = float("-inf")

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            if time.monotonic() - self._at >= MIN_INTERVAL:
                self._cached = list(self._read())
                self._at = time.monotonic()
            yield from self._cached

    def _read(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "haste_dependency_up",
            "1 when the web process could read the dependency at the last scrape.",
            labels=["dependency"],
        )
        try:
            yield from self._database()
            up.add_metric(["postgres"], 1)
        except (psycopg.Error, TimeoutError, OSError) as exc:
            log.warning("metrics: database unavailable", error=str(exc))
            up.add_metric(["postgres"], 0)
        try:
            yield from self._redis()
            up.add_metric(["redis"], 1)
        except (redis.RedisError, OSError) as exc:
            log.warning("metrics: redis unavailable", error=str(exc))
            up.add_metric(["redis"], 0)
        yield up

    def _database(self) -> Iterator[Metric]:
        with self.pool.connection(timeout=TIMEOUT) as conn, conn.transaction():
            cur = conn.cursor()
            # Transaction-local: the pooled connection goes back without the limit.
            cur.execute(
                "SELECT set_config('statement_timeout', %s, true)", (str(int(TIMEOUT * 1000)),)
            )
            live = {r[0]: (r[1], r[2]) for r in cur.execute(query("metrics_executions_live"))}
            backlog, oldest, captured = cur.execute(query("metrics_outbox")).fetchone() or (
                0,
                None,
                0,
            )
            retained = cur.execute(query("metrics_capture_slot")).fetchone()
            leader = None
            if self.scheduler_lock_key is not None:
                leader = cur.execute(
                    query("schedule_leader"), {"key": self.scheduler_lock_key}
                ).fetchone()
        executions = GaugeMetricFamily(
            "haste_executions",
            "Live executions by status (queued, running, waiting), read from PostgreSQL.",
            labels=["status"],
        )
        oldest_live = GaugeMetricFamily(
            "haste_executions_oldest_seconds",
            "Age of the oldest live execution per status (since it was queued).",
            labels=["status"],
        )
        for status in LIVE_STATUSES:
            count, age = live.get(status, (0, None))
            executions.add_metric([status], count)
            oldest_live.add_metric([status], float(age or 0))
        yield executions
        yield oldest_live
        yield GaugeMetricFamily(
            "haste_outbox_backlog",
            "Outbox events not processed yet by a listener.",
            value=backlog,
        )
        yield GaugeMetricFamily(
            "haste_outbox_oldest_seconds",
            "Age of the oldest unprocessed outbox event: the listener's lag (0 when empty).",
            value=float(oldest or 0),
        )
        yield CounterMetricFamily(
            "haste_events_captured",
            "Events ever written to the outbox (row triggers and emitters): the outbox"
            " identity's last value.",
            value=captured,
        )
        yield GaugeMetricFamily(
            "haste_capture_slot_retained_bytes",
            "WAL the logical capture slot keeps on the server's disk (0 in trigger mode):"
            " it grows while no listener decodes (docs/operations.md, Event capture).",
            value=float((retained or (0,))[0] or 0),
        )
        if self.scheduler_lock_key is not None:
            yield GaugeMetricFamily(
                "haste_scheduler_leader_present",
                "1 when some scheduler process holds the leader lock (from pg_locks).",
                value=1 if leader else 0,
            )

    def _redis(self) -> Iterator[Metric]:
        if self.redis is None:
            return
        pipe = self.redis.pipeline(transaction=False)
        for queue in self.queues:
            pipe.llen(f"{self.namespace}:{queue}")
            pipe.hlen(f"{self.namespace}:{queue}.DQ.msgs")
            pipe.hlen(f"{self.namespace}:{queue}.XQ.msgs")
        counts: list[Any] = pipe.execute()
        depth = GaugeMetricFamily(
            "haste_queue_messages",
            "Messages in a Dramatiq queue: ready (waiting for a worker), delayed (not due"
            " yet) or dead (Dramatiq gave up on them).",
            labels=["queue", "state"],
        )
        for index, queue in enumerate(self.queues):
            ready, delayed, dead = counts[3 * index : 3 * index + 3]
            depth.add_metric([queue, "ready"], int(ready))
            depth.add_metric([queue, "delayed"], int(delayed))
            depth.add_metric([queue, "dead"], int(dead))
        yield depth
