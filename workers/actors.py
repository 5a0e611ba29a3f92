"""The Dramatiq actors of haste, and the message contracts between processes.

Importing this module configures the broker (:func:`workers.broker.configure`) and
registers the actors on it; ``haste worker`` hands it to Dramatiq's worker CLI.

Message contracts (a message names a row; the row is the truth):

* queue ``automations``, actor ``run_execution(execution_ids: str | list[str])`` — one
  id, or a list of up to :data:`workers.broker.BATCH_MAX` run one after the other (see
  :func:`workers.broker.batches`); sent by the listener after it commits new executions,
  by :mod:`engine.executions` after wake / rerun / back-off, and by the reaper. Any
  number of duplicates is harmless: the claim lets one worker in; the others find
  nothing queued and ack.
* queue ``ai``, actor ``process_ai_task(ai_task_id: str)`` — **registered by the AI
  worker** (issue 8), not here. An ``ai_task`` step inserts an ``ai_tasks`` row (status
  ``pending``, ``user_id`` NULL, id = uuid5 of the step's idempotency key, ``type`` = the
  task type, ``model_provider`` / ``model_name`` = what the step asked for, or NULL) with
  ``input`` = ``{"execution_id", "step_id", "idempotency_key", "input": <rendered
  params.input>, "write_back": bool, "record": {"entity", "id"} | null, "provider",
  "model"}``, puts the execution in ``waiting`` (``resume_at`` NULL), and after commit
  sends this message when the actor is registered in the sending process (else the task
  stays pending for the AI worker's own sweep of pending rows). When the task is
  completed or failed, the AI worker calls ``engine.executions.wake(conn,
  [execution_id])``; the step's output is then ``ai_tasks.output``, or it fails with
  ``ai_tasks.error_message`` (class ``provider_error``, not retried by the executor: the
  AI worker does its own retries). A cancelled execution cancels its pending tasks.
* queue ``maintenance`` — the scheduler's jobs (issue 7).

Per process (created after Dramatiq forks the worker processes): one connection pool
(threads + 2), one heartbeat thread, one :class:`~workers.executor.Executor`.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import dramatiq
import psycopg
from dramatiq.middleware import Middleware
from psycopg_pool import ConnectionPool

from actions import ActionEnv
from engine.config import load_settings
from workers.broker import EXECUTION_ACTOR, EXECUTION_QUEUE, configure, enqueue_executions
from workers.executor import Executor
from workers.heartbeat import Heartbeat

log = logging.getLogger("haste.worker")

DB_RETRY_DELAY_MS = 1_000
"""Delay of a message sent again because the database connection was lost."""
RUN_TIME_LIMIT_MS = 3_600_000
"""Dramatiq's time limit for one ``run_execution`` (steps bound themselves with their
``timeout``; this only stops a run that is stuck for an hour)."""

_lock = threading.Lock()
_executor: Executor | None = None


def executor() -> Executor:
    """This process's executor, built on first use (after the fork)."""
    global _executor
    with _lock:
        if _executor is None:
            settings = load_settings()
            if not settings.database_url:
                raise RuntimeError("DATABASE_URL is not set for the worker process")
            pool = ConnectionPool(
                settings.database_url,
                min_size=1,
                max_size=max(settings.db_pool_size, settings.worker_threads + 2),
                kwargs={"autocommit": True},
                configure=_bookkeeping_session,
                name="haste-worker",
                open=True,
            )
            _executor = Executor(
                pool=pool,
                heartbeat=Heartbeat(settings.database_url, settings.heartbeat_interval),
                env=ActionEnv(smtp_url=settings.smtp_url, email_from=settings.email_from),
            )
        return _executor


def _bookkeeping_session(conn: psycopg.Connection[Any]) -> None:
    """Claims, heartbeats, finishes and attempt records do not wait for the disk (see
    engine.executions._statement); step transactions set ``synchronous_commit = on``."""
    conn.execute("SET synchronous_commit = off")


class GracefulStop(Middleware):
    """On worker shutdown, runs hand their execution back after the current step instead
    of holding the shutdown until the whole run is done."""

    def before_worker_shutdown(self, broker: Any, worker: Any) -> None:
        if _executor is not None:
            _executor.stopping.set()
            _executor.heartbeat.stop()


broker = configure()
if not any(isinstance(m, GracefulStop) for m in broker.middleware):
    broker.add_middleware(GracefulStop())


@dramatiq.actor(
    actor_name=EXECUTION_ACTOR,
    queue_name=EXECUTION_QUEUE,
    max_retries=0,
    time_limit=RUN_TIME_LIMIT_MS,
)
def run_execution(execution_ids: str | list[str]) -> None:
    """Run each execution named (one id, or a batch of them) as far as it can go now, one
    after the other (see workers.executor).

    A lost database connection (PostgreSQL restarting: the pool still holds connections to
    the old server) sends the message again shortly instead of dropping it: the reaper
    would recover the runs anyway, but only after ``HASTE_REAPER_GRACE`` (a duplicate
    of a run that did finish finds nothing to claim). The executions of a batch are
    claimed together (see :meth:`workers.executor.Executor.run_many`); on worker
    shutdown the ones not started yet are handed back at their first step."""
    ids = [execution_ids] if isinstance(execution_ids, str) else [str(i) for i in execution_ids]
    try:
        executor().run_many(ids)
    except psycopg.OperationalError as exc:
        log.warning("database unavailable for %s; sending them again: %s", ids, exc)
        enqueue_executions(ids, delay_ms=DB_RETRY_DELAY_MS)
