"""One heartbeat thread per worker process, for every execution its threads are running.

Every ``HASTE_HEARTBEAT_INTERVAL`` seconds it refreshes ``heartbeat_at`` of all held
executions in one batch UPDATE (fenced by each claim's ``attempt``), on its own
connection so a pool exhausted by slow steps cannot starve it. An execution that the
UPDATE no longer finds (reaped after a long pause, cancelled) is marked lost, and its
executor stops before the next step. Rejected: a thread per execution (threads × idle
connections for nothing) and heart-beating from the step's own transaction (a long HTTP
call would then look dead).
"""

from __future__ import annotations

import logging
import threading
from uuid import UUID

import psycopg

from engine import executions

log = logging.getLogger("haste.heartbeat")


class Heartbeat:
    """The executions a process holds (id → claim attempt) and the thread that keeps them."""

    def __init__(self, database_url: str, interval: float) -> None:
        self.database_url = database_url
        self.interval = interval
        self._held: dict[UUID, int] = {}
        self._lost: set[UUID] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def hold(self, execution_id: UUID, attempt: int) -> None:
        with self._lock:
            self._held[execution_id] = attempt
            self._lost.discard(execution_id)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="haste-heartbeat", daemon=True
                )
                self._thread.start()

    def release(self, execution_id: UUID) -> None:
        with self._lock:
            self._held.pop(execution_id, None)
            self._lost.discard(execution_id)

    def lost(self, execution_id: UUID) -> bool:
        with self._lock:
            return execution_id in self._lost

    def stop(self) -> None:
        self._stop.set()

    def beat(self, conn: psycopg.Connection[object]) -> None:
        """One round: refresh every held execution, mark the ones no longer ours."""
        with self._lock:
            held = dict(self._held)
        if not held:
            return
        kept = executions.heartbeat(conn, held)
        with self._lock:
            for execution_id in held:
                if execution_id not in kept and execution_id in self._held:
                    self._lost.add(execution_id)

    def _run(self) -> None:
        conn: psycopg.Connection[object] | None = None
        while not self._stop.wait(self.interval):
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.database_url, autocommit=True)
                self.beat(conn)
            except psycopg.Error as exc:
                log.warning("heartbeat failed (will retry): %s", exc)
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()
