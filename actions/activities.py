"""log_activity: an entry on a record's timeline (the month-partitioned ``activities``).

The activity is linked through ``entity_type``/``entity_id`` and, for contacts, deals and
companies, the matching ``*_id`` column (emails and tasks have none in ``activities``).
``user_id`` is the step's user (nullable: nobody is invented). ``occurred_at`` defaults to
now; a row whose month has no partition lands in ``activities_default``.

The primary key is ``(id, occurred_at)`` (partitioning needs the partition key in it), so
``ON CONFLICT (id)`` is not available: the insert is guarded with ``NOT EXISTS`` on the id
derived from the idempotency key instead. The step record committing with the row is the
real guard against a repeat; this only keeps a replayed step from adding a second entry.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from actions.base import (
    ActionError,
    Cursor,
    DatabaseAction,
    Output,
    Params,
    RecordRef,
    StepContext,
    database_errors,
    load_record,
    step_uuid,
    target,
)

__all__ = ["LOG_ACTIVITY"]

ACTIVITY_ENTITIES = ("contact", "deal", "company", "email", "task")
LINK_COLUMNS = {"contact": "contact_id", "company": "company_id", "deal": "deal_id"}

ACTIVITY_INSERT_ONCE = """
INSERT INTO activities (id, workspace_id, type, title, description, entity_type, entity_id,
                        contact_id, deal_id, company_id, user_id, metadata, occurred_at)
SELECT %(id)s::uuid, %(workspace_id)s::uuid, %(type)s, %(title)s, %(description)s,
       %(entity_type)s, %(entity_id)s::uuid, %(contact_id)s::uuid, %(deal_id)s::uuid,
       %(company_id)s::uuid, %(user_id)s::uuid, %(metadata)s::jsonb,
       coalesce(%(occurred_at)s::timestamptz, now())
WHERE NOT EXISTS (SELECT 1 FROM activities WHERE id = %(id)s::uuid)
RETURNING id, occurred_at
"""


def occurred_at_of(params: Params) -> datetime | None:
    """The given instant (ISO-8601 with offset), or None for "now"."""
    raw = params.get("occurred_at")
    if raw in (None, ""):
        return None
    try:
        instant = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError as exc:
        raise ActionError(
            "validation",
            f"occurred_at: {raw!r} is not an ISO-8601 date-time",
            details={"field": "occurred_at"},
        ) from exc
    if instant.tzinfo is None:
        raise ActionError(
            "validation",
            f"occurred_at: {raw!r} has no UTC offset",
            details={"field": "occurred_at"},
        )
    return instant


def _plan(params: Params, step: StepContext) -> tuple[RecordRef, datetime | None]:
    for name in ("type", "title"):
        if not isinstance(params.get(name), str) or not params[name].strip():
            raise ActionError(
                "validation", f"{name}: {params.get(name)!r} is empty", details={"field": name}
            )
    return target(params, step, ACTIVITY_ENTITIES), occurred_at_of(params)


@database_errors()
def run(cur: Cursor, params: Params, step: StepContext) -> Output:
    ref, occurred_at = _plan(params, step)
    load_record(cur, ref)
    activity_id = step_uuid(step)
    row: dict[str, Any] = {
        "id": activity_id,
        "workspace_id": step.workspace_id,
        "type": params["type"],
        "title": params["title"],
        "description": params.get("description"),
        "entity_type": ref.entity,
        "entity_id": ref.id,
        "contact_id": None,
        "deal_id": None,
        "company_id": None,
        "user_id": step.user_id,
        "metadata": Jsonb(params.get("metadata") or {}),
        "occurred_at": occurred_at,
    }
    if ref.entity in LINK_COLUMNS:
        row[LINK_COLUMNS[ref.entity]] = ref.id
    cur.execute(ACTIVITY_INSERT_ONCE, row)
    inserted = cur.fetchone()
    return {
        "id": str(activity_id),
        "created": inserted is not None,
        "record": ref.to_dict(),
        "type": params["type"],
    }


def describe(params: Params, step: StepContext) -> Output:
    ref, occurred_at = _plan(params, step)
    return {
        "would": f"INSERT INTO activities: {params['type']} {params['title']!r}"
        f" on {ref.entity} {ref.id}",
        "id": str(step_uuid(step)),
        "record": ref.to_dict(),
        "type": params["type"],
        "title": params["title"],
        "occurred_at": occurred_at.isoformat() if occurred_at else "now",
    }


LOG_ACTIVITY = DatabaseAction("log_activity", run, describe)
