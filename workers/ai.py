"""The Dramatiq actors of queue ``ai``: AI tasks and embedding refreshes.

Importing this module configures the broker (:func:`workers.broker.configure`) and
registers, on queue ``ai``:

* ``process_ai_task(ai_task_id: str)`` — one turn on one task (:func:`workers.ai_tasks.
  process_task`). A turn that had to wait longer than ``HASTE_AI_MAX_INLINE_WAIT`` (a long
  ``Retry-After``) leaves the task ``pending`` with ``not_before`` and re-sends this message
  with that delay. Dramatiq's own retries are off (``max_retries=0``): the row is the state,
  retries are the lifecycle's, recorded on the row.
* ``embed_pending()`` — refresh pending embeddings, batch by batch, for up to
  ``EMBED_TURN_S`` seconds, then re-send itself if work remains (so one long back-fill
  never holds a worker thread for long, and tasks interleave with it).

:class:`AiSweeper` (middleware, in processes that consume ``ai``) runs
:func:`workers.ai_tasks.sweep` every ``SWEEP_INTERVAL_S``: it re-sends tasks left pending
without a message (an executor process without this module, a lost message, a dead
worker's lease), releases orphaned budget reservations, wakes executions whose wake-up was
lost, and sends ``embed_pending`` when embeddings wait; about hourly it checks whether the
contacts vector index needs retraining. The table is the truth; messages are signals, as
everywhere in haste.

Per process (after Dramatiq forks): one connection pool and one
:class:`~workers.ai_tasks.AiRuntime` (providers with their HTTP clients, rate limiters on
the broker's Redis), built on first use.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware
from psycopg_pool import ConnectionPool

from engine.config import load_settings
from engine.db import make_pool
from workers.ai_tasks import AiRuntime, process_task, retry_delay_ms, sweep
from workers.broker import MAX_DELAY_MS, configure

log = logging.getLogger("haste.ai")

AI_QUEUE = "ai"
PROCESS_ACTOR = "process_ai_task"
EMBED_ACTOR = "embed_pending"
SWEEP_INTERVAL_S = 10.0
"""Seconds between two sweeps of one AI worker process."""
INDEX_CHECK_EVERY = 360
"""Sweeps between two checks of the contacts vector index (~hourly; a rebuild runs only when
its vectors have doubled: workers.embeddings.maintain_vector_indexes)."""
EMBED_TURN_S = 20.0
"""Longest time one ``embed_pending`` message keeps refreshing before handing over."""

_lock = threading.Lock()
_runtime: AiRuntime | None = None
_pool: ConnectionPool | None = None


def runtime() -> AiRuntime:
    """This process's AI runtime (providers, rate limiters), built on first use."""
    global _runtime
    with _lock:
        if _runtime is None:
            # The rate limiters share the broker's Redis (and its connection pool).
            client = getattr(broker, "client", None)
            _runtime = AiRuntime.from_settings(load_settings(), redis_client=client)
        return _runtime


def pool() -> ConnectionPool:
    """This process's database pool for AI work, built on first use (after the fork)."""
    global _pool
    with _lock:
        if _pool is None:
            settings = load_settings()
            if not settings.database_url:
                raise RuntimeError("DATABASE_URL is not set for the AI worker process")
            _pool = make_pool(
                settings.database_url,
                max_size=max(settings.db_pool_size, settings.worker_threads + 2),
                name="haste-ai",
            )
        return _pool


def use(rt: AiRuntime | None = None, connection_pool: ConnectionPool | None = None) -> None:
    """Install a runtime and/or pool (tests; a process that already has them)."""
    global _runtime, _pool
    with _lock:
        if rt is not None:
            _runtime = rt
        if connection_pool is not None:
            _pool = connection_pool


def task_time_limit_ms() -> int:
    """Dramatiq's hard limit on one turn: every attempt timing out and waiting its longest,
    plus a minute (the lifecycle bounds itself well before this)."""
    settings = load_settings()
    per_attempt = settings.ai_timeout + settings.ai_max_inline_wait + 5
    return int((settings.ai_max_attempts * per_attempt + 60) * 1000)


broker = configure()


@dramatiq.actor(
    actor_name=PROCESS_ACTOR,
    queue_name=AI_QUEUE,
    max_retries=0,
    time_limit=task_time_limit_ms(),
)
def process_ai_task(ai_task_id: str) -> None:
    """Process AI task ``ai_task_id`` (see workers.ai_tasks)."""
    rt = runtime()
    with pool().connection() as conn:
        outcome = process_task(conn, ai_task_id, rt)
    if outcome.status == "deferred":
        delay = min(retry_delay_ms(outcome), MAX_DELAY_MS)
        process_ai_task.send_with_options(args=(str(ai_task_id),), delay=delay)
    log.info("ai task %s: %s %s", ai_task_id, outcome.status, outcome.reason or "")


@dramatiq.actor(actor_name=EMBED_ACTOR, queue_name=AI_QUEUE, max_retries=0)
def embed_pending() -> None:
    """Refresh pending embeddings for up to EMBED_TURN_S; re-send if more wait."""
    from workers.embeddings import embed_batch

    rt = runtime()
    deadline = time.monotonic() + EMBED_TURN_S
    more = False
    with pool().connection() as conn:
        while True:
            result = embed_batch(conn, rt)
            if result.claimed == 0 or result.failed == result.claimed:
                break
            if time.monotonic() > deadline:
                more = True
                break
    if more:
        embed_pending.send()


def send_task(task_id: Any, *, delay_ms: int | None = None) -> None:
    """Send ``process_ai_task(task_id)`` (after the commit that made it pending)."""
    process_ai_task.send_with_options(args=(str(task_id),), delay=delay_ms)


class AiSweeper(Middleware):
    """Runs the AI sweep in a thread of each worker process that consumes ``ai``."""

    def __init__(self, interval: float = SWEEP_INTERVAL_S) -> None:
        self.interval = interval
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def after_worker_boot(self, broker: Any, worker: Any) -> None:
        queues = getattr(worker, "consumer_whitelist", None)
        if queues and AI_QUEUE not in queues:
            return
        self.stop.clear()
        self.thread = threading.Thread(target=self._loop, name="haste-ai-sweeper", daemon=True)
        self.thread.start()

    def before_worker_shutdown(self, broker: Any, worker: Any) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=5)

    def _loop(self) -> None:
        sweeps = 0
        while not self.stop.wait(self.interval):
            sweeps += 1
            try:
                sweep_once(check_index=sweeps % INDEX_CHECK_EVERY == 0)
            except Exception:
                log.exception("AI sweep failed (next one in %.0fs)", self.interval)


def sweep_once(*, check_index: bool = False) -> dict[str, int]:
    """One sweep (see :func:`workers.ai_tasks.sweep`), sending what it found; counts."""
    from workers.embeddings import maintain_vector_indexes, pending_count

    rt = runtime()
    with pool().connection() as conn:
        result = sweep(conn, rt.settings)
        waiting = pending_count(conn)
        if check_index:
            maintain_vector_indexes(conn)
    for task_id in result.resend:
        send_task(task_id)
    if waiting:
        embed_pending.send()
    return {
        "resent": len(result.resend),
        "released": result.released,
        "woken": len(result.woken),
        "embeddings_pending": waiting,
    }


def bind(target: Any) -> None:
    """Declare this module's actors and sweeper on ``target`` (a broker configured after
    this module was imported, as tests do)."""
    for actor in (process_ai_task, embed_pending):
        actor.broker = target
        target.declare_actor(actor)
    if not any(isinstance(m, AiSweeper) for m in target.middleware):
        target.add_middleware(AiSweeper())


bind(broker)
