"""Events that no CRM row change produced: webhooks, manual runs, schedules.

They go through the same outbox as captured changes, so the listener's matching, decision
log, de-duplication and re-enrollment rules apply to them unchanged. Each is aimed at one
automation (``automation_id``); ``payload`` is what templates see as ``trigger.*``.

Like the capture triggers, an emitter sends NOTIFY only while a listener has declared
itself idle (see schemas/sql/0030_outbox.sql): NOTIFY serialises commits database-wide.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb

from engine.queries import query
from engine.values import json_safe

#: Event types an emitter may use (the targeted trigger types).
EMITTED_TYPES = frozenset({"webhook", "manual", "time_based"})


def emit_event(
    cur: psycopg.Cursor[Any],
    *,
    workspace_id: UUID | str,
    event_type: str,
    automation_id: UUID | str | None = None,
    entity_type: str | None = None,
    entity_id: UUID | str | None = None,
    payload: Mapping[str, Any] | None = None,
) -> int:
    """Insert one event in the caller's transaction (as the owner); its outbox id."""
    if event_type not in EMITTED_TYPES:
        raise ValueError(f"event_type must be one of {sorted(EMITTED_TYPES)}, not {event_type!r}")
    row = cur.execute(
        query("event_emit"),
        {
            "workspace_id": workspace_id,
            "event_type": event_type,
            "automation_id": automation_id,
            "entity_type": entity_type,
            "entity_id": entity_id,
            "payload": Jsonb(json_safe(dict(payload or {}), cut=False)),
        },
    ).fetchone()
    assert row is not None
    return int(row[0] if not isinstance(row, Mapping) else row["id"])
