"""Stand-ins for scheduler tests: a clock the test moves, an outbox writer with the
signature of ``triggers.emit.emit_event`` that writes in the caller's transaction, and
builders of time_based documents."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

Conn = psycopg.Connection[Any]

OUTBOX_DDL = """
CREATE TABLE IF NOT EXISTS test_outbox (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id UUID NOT NULL,
    event_type TEXT NOT NULL,
    automation_id UUID,
    entity_type TEXT,
    entity_id UUID,
    payload JSONB,
    created_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
)
"""


class FakeClock:
    """``now()`` is whatever the test last set; thread-safe."""

    def __init__(self, start: datetime) -> None:
        self._now = start.astimezone(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, instant: datetime) -> None:
        with self._lock:
            self._now = instant.astimezone(UTC)

    def advance(self, delta: timedelta) -> datetime:
        with self._lock:
            self._now += delta
            return self._now


def outbox_emit(
    cur: psycopg.Cursor[Any],
    *,
    workspace_id: Any,
    event_type: str,
    automation_id: Any = None,
    entity_type: str | None = None,
    entity_id: Any = None,
    payload: dict[str, Any] | None = None,
) -> int:
    """``emit_event`` into ``test_outbox``, in the caller's transaction (so it commits or
    rolls back with the fire, as the real outbox row does)."""
    row = cur.execute(
        "INSERT INTO test_outbox (workspace_id, event_type, automation_id, entity_type,"
        " entity_id, payload) VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
        (workspace_id, event_type, automation_id, entity_type, entity_id, Jsonb(payload or {})),
    ).fetchone()
    assert row is not None
    return int(row[0])


def make_outbox(db: Conn) -> None:
    db.execute(OUTBOX_DDL)


def outbox(db: Conn) -> list[dict[str, Any]]:
    cur = db.cursor(row_factory=psycopg.rows.dict_row)
    return cur.execute("SELECT * FROM test_outbox ORDER BY id").fetchall()


def time_doc(config: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A time_based automation whose action needs no record."""
    return {
        "name": f"sched-{uuid.uuid4().hex[:6]}",
        "trigger_type": "time_based",
        "trigger_config": config,
        "actions": [
            {
                "id": "ping",
                "type": "http_request",
                "params": {"method": "POST", "url": "https://example.invalid/hook"},
            }
        ],
        **extra,
    }


def deal_date_doc(config: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A date-field automation on deals."""
    return {
        "name": f"date-{uuid.uuid4().hex[:6]}",
        "trigger_type": "time_based",
        "trigger_config": {"date_field": "deal.expected_close_date", **config},
        "actions": [
            {"id": "note", "type": "add_note", "params": {"content": "closing soon"}},
        ],
        **extra,
    }
