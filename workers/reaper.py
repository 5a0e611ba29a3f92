"""The reaper: executions that nobody is working on get worked on again, or fail clearly.

Three sweeps, each one fenced UPDATE in batches of :data:`~engine.executions.REAP_BATCH`
with ``FOR UPDATE SKIP LOCKED`` (several scheduler replicas never double up):

* **unsent**: ``queued`` rows whose message is overdue — never sent (the listener's send
  failed), lost, or a back-off message that did not arrive — by more than
  ``HASTE_REAPER_GRACE`` after they became due: ``enqueued_at`` is bumped and a message
  sent. A duplicate message is harmless (the claim lets one worker in).
* **lost**: ``running`` rows whose heartbeat is older than ``HASTE_HEARTBEAT_TIMEOUT``
  (the worker was killed, froze, or lost its database): back to ``queued`` with
  ``recoveries + 1``, message sent. The next worker resumes from the first step without
  a final record; the fence on step records keeps a late write of the lost worker out.
* **given up**: the same, after ``HASTE_MAX_RECOVERIES`` recoveries: ``failed`` with a
  reason naming the worker and the limit, counted in the automation's ``error_count``.

With the defaults a SIGKILLed worker's execution is running again within heartbeat
timeout (30 s) + the reaper's interval (the scheduler runs it every few seconds).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import psycopg

from engine import metrics
from engine.config import Settings, load_settings
from engine.db import system_transaction
from engine.executions import REAP_BATCH
from engine.queries import query
from workers.broker import enqueue_executions


@dataclass(frozen=True)
class ReapResult:
    resent: list[UUID] = field(default_factory=list)
    recovered: list[UUID] = field(default_factory=list)
    failed: list[UUID] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.resent or self.recovered or self.failed)


def _sweep(conn: psycopg.Connection[Any], name: str, params: dict[str, Any]) -> list[UUID]:
    found: list[UUID] = []
    while True:
        with system_transaction(conn) as cur:
            batch = [row[0] for row in cur.execute(query(name), {**params, "limit": REAP_BATCH})]
        if name != "execution_fail_lost_many":
            enqueue_executions(batch)
        found.extend(batch)
        if len(batch) < REAP_BATCH:
            return found


def reap(
    conn: psycopg.Connection[Any],
    *,
    grace: float | None = None,
    heartbeat_timeout: float | None = None,
    max_recoveries: int | None = None,
    settings: Settings | None = None,
) -> ReapResult:
    """One pass of the three sweeps (module doc); arguments override the settings."""
    settings = settings or load_settings()
    timeout = settings.heartbeat_timeout if heartbeat_timeout is None else heartbeat_timeout
    limit = settings.max_recoveries if max_recoveries is None else max_recoveries
    lost = {"timeout": timeout, "max_recoveries": limit}
    failed = _sweep(conn, "execution_fail_lost_many", lost)
    recovered = _sweep(conn, "execution_recover_lost_many", lost)
    resent = _sweep(
        conn,
        "execution_reap_unsent_many",
        {"grace": settings.reaper_grace if grace is None else grace},
    )
    for kind, ids in (("resent", resent), ("recovered", recovered), ("failed", failed)):
        if ids:
            metrics.REAPER_RECOVERIES.labels(kind=kind).inc(len(ids))
    return ReapResult(resent=resent, recovered=recovered, failed=failed)
