"""``haste listen``: drain the outbox (``automation_events``) into decisions and executions.

Loop (one per replica; run as many as you like):

1. **claim** a batch of unprocessed events in id order with ``FOR UPDATE SKIP LOCKED``
   (``event_claim_batch``) — two replicas never hold the same event;
2. **match** each event under its workspace (``SET LOCAL ROLE haste_app`` + ``app.workspace_id``
   inside the batch transaction, so every CRM read is RLS-scoped), writing decisions and
   ``queued`` executions (:mod:`engine.matching`), each event in its own savepoint so one bad
   event cannot stall the batch;
3. **complete**: mark the batch processed in the same transaction, commit, *then* send the
   new execution ids to Dramatiq. If the send fails the rows are still ``queued`` and the
   reaper re-sends them; if the listener dies before commit, nothing happened and another
   replica (or the restarted one) claims the events again — unique indexes make a second
   matching of the same event a ``deduplicated`` no-op, never a second execution.

Wake-ups: LISTEN ``haste_events`` plus a jittered poll (``HASTE_LISTENER_POLL_MS``). A lost
notification costs at most one poll interval; a listener that was down catches up from the
table. Writers NOTIFY only while the listener has declared itself idle
(``haste_listener_idle``), because NOTIFY takes a database-wide lock at commit (see
docs/architecture.md and bench/README.md for the measured cost).

Logical capture (``haste capture logical``, :mod:`triggers.decoder`): each drain first
decodes the WAL written since the last one into the outbox (one replica at a time); the
rest of the loop is the same, and an idle listener is woken by the statement trigger's
NOTIFY instead of the row triggers'.

Ordering per record: events of one record are processed in id order. A batch skips any event
whose record still has an older unprocessed event held by another replica (it is claimed
again on the next round), so two replicas never process one record's events out of order.
Row locks on the CRM record make ids of one record's updates follow commit order.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row

from engine import metrics
from engine.logs import get_logger
from engine.matching import AutomationCache, match_event
from engine.queries import query
from triggers.decoder import DecodeError, Decoder

log = get_logger("haste.listener")

#: Events claimed per transaction.
BATCH_SIZE = int(os.environ.get("HASTE_LISTENER_BATCH", "200"))
#: Poll interval when no notification arrives (ms); a lost NOTIFY costs at most this.
POLL_MS = int(os.environ.get("HASTE_LISTENER_POLL_MS", "250"))
#: Failed processing attempts after which an event is parked with its error (never dropped).
MAX_EVENT_ATTEMPTS = int(os.environ.get("HASTE_LISTENER_MAX_ATTEMPTS", "5"))
CHANNEL = "haste_events"
RECONNECTED_AFTER_S = 5.0
"""A run that lasted longer than this had reconnected: its failure restarts the back-off."""

Enqueue = Callable[[list[UUID]], None]
EventHook = Callable[[psycopg.Cursor[Any], Mapping[str, Any]], None]


@dataclass
class BatchResult:
    claimed: int = 0
    processed: int = 0
    failed: int = 0
    execution_ids: list[UUID] = field(default_factory=list)
    decisions: dict[str, int] = field(default_factory=dict)


def default_enqueue(execution_ids: list[UUID]) -> None:
    """Send executions to the workers (imported lazily: the broker needs Redis)."""
    from workers.broker import enqueue_executions

    enqueue_executions(execution_ids)


def trigger_types_of(event: Mapping[str, Any]) -> frozenset[str]:
    from engine.events import trigger_types

    return trigger_types(event)


def default_hooks() -> list[EventHook]:
    """Per-event hooks of other subsystems (date-field schedules, embeddings)."""
    hooks: list[EventHook] = []
    try:
        from triggers.schedule import on_record_event

        hooks.append(on_record_event)
    except ImportError:
        pass
    try:
        from workers.embeddings import on_record_event as embed_on_event

        hooks.append(embed_on_event)
    except ImportError:
        pass
    return hooks


class Listener:
    """One listener replica; :meth:`run` until ``stop`` is set (SIGTERM sets it)."""

    def __init__(
        self,
        conninfo: str,
        *,
        name: str | None = None,
        batch_size: int = BATCH_SIZE,
        poll_ms: int = POLL_MS,
        enqueue: Enqueue | None = None,
        hooks: Iterable[EventHook] | None = None,
    ) -> None:
        self.conninfo = conninfo
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.batch_size = batch_size
        self.poll_ms = poll_ms
        self.enqueue = enqueue or default_enqueue
        self.hooks = list(default_hooks() if hooks is None else hooks)
        self.cache = AutomationCache()
        self.decoder = Decoder()
        self._workspaces: dict[UUID, dict[str, Any]] = {}

    # -- one batch ---------------------------------------------------------------------

    def process_batch(self, conn: psycopg.Connection[Any]) -> BatchResult:
        """Claim, match and complete one batch; enqueue after commit."""
        with metrics.LISTENER_BATCH.time():
            result = self._process_batch(conn)
        _count(result)
        return result

    def _process_batch(self, conn: psycopg.Connection[Any]) -> BatchResult:
        result = BatchResult()
        with conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            rows = cur.execute(
                query("event_claim_batch"), {"limit": self.batch_size, "claimed_by": self.name}
            ).fetchall()
            events = sorted((as_event(r) for r in rows), key=lambda e: e["id"])
            result.claimed = len(events)
            done: list[int] = []
            for workspace_id, group in _by_workspace(events):
                workspace = self._workspace(cur, workspace_id)
                cur.execute("SET LOCAL ROLE haste_app")
                cur.execute("SELECT set_config('app.workspace_id', %s, true)", (str(workspace_id),))
                for event in group:
                    if self._process_event(conn, cur, event, workspace, result):
                        done.append(event["id"])
                cur.execute("RESET ROLE")
                cur.execute("SELECT set_config('app.workspace_id', '', true)")
            if done:
                cur.execute(query("event_mark_processed"), {"ids": done})
                now = datetime.now(UTC)
                for event in events:
                    if event["id"] in done and event.get("created_at"):
                        metrics.LISTENER_LAG.observe((now - event["created_at"]).total_seconds())
            result.processed = len(done)
        if result.execution_ids:
            try:
                self.enqueue(result.execution_ids)
            except Exception as exc:  # rows stay queued; the reaper re-sends them
                metrics.ENQUEUE_FAILURES.labels(queue="automations").inc()
                log.warning(
                    "enqueue failed; reaper will re-send",
                    error=str(exc),
                    count=len(result.execution_ids),
                )
        return result

    def _process_event(
        self,
        conn: psycopg.Connection[Any],
        cur: psycopg.Cursor[Any],
        event: Mapping[str, Any],
        workspace: Mapping[str, Any],
        result: BatchResult,
    ) -> bool:
        try:
            with conn.transaction():  # savepoint: a failing event leaves the batch intact
                outcome = match_event(cur, event, trigger_types_of(event), workspace, self.cache)
                for hook in self.hooks:
                    hook(cur, event)
        except Exception as exc:
            result.failed += 1
            log.error(
                "event processing failed", event_id=event["id"], error=str(exc), exc_info=True
            )
            cur.execute("RESET ROLE")
            row = cur.execute(
                query("event_record_failure"),
                {
                    "id": event["id"],
                    "error": f"{type(exc).__name__}: {exc}",
                    "max": MAX_EVENT_ATTEMPTS,
                },
            ).fetchone()
            cur.execute("SET LOCAL ROLE haste_app")
            return bool(row and row["parked"])
        result.execution_ids.extend(outcome.execution_ids)
        for key, n in outcome.decisions.items():
            result.decisions[key] = result.decisions.get(key, 0) + n
        return True

    def _workspace(self, cur: psycopg.Cursor[Any], workspace_id: UUID) -> dict[str, Any]:
        if workspace_id not in self._workspaces:
            row = cur.execute(query("workspace_by_id"), {"id": workspace_id}).fetchone()
            settings = (row or {}).get("settings") or {}
            self._workspaces[workspace_id] = {
                "id": workspace_id,
                "slug": (row or {}).get("slug"),
                "name": (row or {}).get("name"),
                "timezone": settings.get("timezone") or "UTC",
            }
        return self._workspaces[workspace_id]

    def drain(self, conn: psycopg.Connection[Any]) -> BatchResult:
        """Process batches until the outbox is empty (or only locked rows remain); in
        logical capture mode, first decode the WAL written since the last drain."""
        self.decode(conn)
        total = BatchResult()
        while True:
            batch = self.process_batch(conn)
            total.claimed += batch.claimed
            total.processed += batch.processed
            total.failed += batch.failed
            total.execution_ids.extend(batch.execution_ids)
            if batch.claimed < self.batch_size:
                return total

    def decode(self, conn: psycopg.Connection[Any]) -> int:
        """Logical capture (:mod:`triggers.decoder`): WAL into the outbox. A failure is
        recorded (``haste capture``, metrics, log) and retried on the next drain; the
        trigger-written events still drain meanwhile."""
        try:
            return self.decoder.catch_up(conn)
        except psycopg.OperationalError:
            raise  # the connection is gone: the run loop reconnects
        except (DecodeError, psycopg.DatabaseError):
            return 0

    # -- the loop ----------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Drain, declare idle, wait for a wake-up or the poll interval; until ``stop``."""
        with (
            psycopg.connect(self.conninfo, autocommit=True) as listen_conn,
            psycopg.connect(self.conninfo, autocommit=True) as work_conn,
        ):
            listen_conn.execute(f"LISTEN {CHANNEL}")
            log.info("listener started", name=self.name, poll_ms=self.poll_ms)
            while not stop.is_set():
                work_conn.execute("SELECT haste_listener_idle(false)")
                self.drain(work_conn)
                work_conn.execute("SELECT haste_listener_idle(true)")
                # An event committed between the last claim and the idle flag sent no
                # NOTIFY: one more drain closes that window before we sleep.
                if self.drain(work_conn).claimed:
                    continue
                timeout = self.poll_ms / 1000 * random.uniform(0.8, 1.2)
                for _ in listen_conn.notifies(timeout=timeout, stop_after=1):
                    break
            work_conn.execute("SELECT haste_listener_idle(false)")
            log.info("listener stopped", name=self.name)


def _count(result: BatchResult) -> None:
    """Prometheus counters of one batch (engine/metrics.py)."""
    metrics.EVENTS_PROCESSED.labels(result="processed").inc(result.processed)
    metrics.EVENTS_PROCESSED.labels(result="failed").inc(result.failed)
    metrics.EXECUTIONS_CREATED.inc(len(result.execution_ids))
    for outcome, n in result.decisions.items():
        metrics.DECISIONS.labels(outcome=outcome).inc(n)


def as_event(row: Mapping[str, Any]) -> dict[str, Any]:
    """An outbox row in the shape the matcher reads (``old``/``new``)."""
    event = dict(row)
    event["old"] = row.get("old_values") or {}
    event["new"] = row.get("new_values") or {}
    event["changed_fields"] = list(row.get("changed_fields") or [])
    return event


def _by_workspace(events: list[dict[str, Any]]) -> list[tuple[UUID, list[dict[str, Any]]]]:
    groups: dict[UUID, list[dict[str, Any]]] = {}
    for event in events:
        groups.setdefault(event["workspace_id"], []).append(event)
    return list(groups.items())


def run_until_signalled(conninfo: str) -> None:
    """Entry point of ``haste listen``: SIGTERM/SIGINT finish the current batch, then exit."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    backoff = 0.5
    while not stop.is_set():
        started = time.monotonic()
        try:
            Listener(conninfo).run(stop)
        except psycopg.OperationalError as exc:  # database restarting: retry, keep state
            if time.monotonic() - started > RECONNECTED_AFTER_S:
                backoff = 0.5  # it was up and working: a new outage starts the back-off over
            log.warning("database unavailable; retrying", error=str(exc), in_s=backoff)
            stop.wait(backoff)
            backoff = min(backoff * 2, 10)
        else:
            backoff = 0.5
