"""Manual runs: an operator (or the CRM) starts a ``manual`` automation on records.

One implementation behind ``POST /api/v1/automations/{ref}/trigger`` and
``haste trigger``. Each record becomes one outbox event (``event_type`` manual, aimed at
the automation, ``payload`` = the input), so the listener's matching, decision log,
run_once and re-enrollment rules apply exactly as to any other event: triggering twice
on a record whose run is still active is answered by the decision log
(``reenrollment_blocked``), not here.

Checks, all before anything is written (a refused request writes nothing):
the automation exists in the caller's workspace (RLS) and is a ``manual`` one, enabled;
the request names at most ``HASTE_API_BULK_MAX`` records; the input satisfies the
trigger config's ``input_schema``; every record exists, is live and belongs to the
workspace (RLS again: another workspace's id is "not found", like a made-up one). The
events are then written in one transaction: all of them or none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg
from jsonschema import Draft202012Validator, SchemaError
from psycopg import sql

from engine import metrics
from engine.automations import Workspace, show_automation
from engine.context import ENTITY_TABLES
from engine.db import system_transaction, tenant_transaction
from engine.fields import columns
from engine.queries import query
from engine.web.responses import pointer
from triggers.emit import emit_event


class TriggerError(Exception):
    """A refused trigger: ``status`` is the HTTP answer, ``code`` is stable."""

    def __init__(
        self, status: int, code: str, detail: str, errors: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.errors = errors or []


@dataclass(frozen=True)
class Triggered:
    automation_id: UUID
    automation: str
    entity_type: str
    events: list[tuple[UUID, int]]  # (record id, outbox event id)


def _input_problems(schema: Any, value: Any) -> list[dict[str, Any]]:
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        return [
            {"pointer": "", "detail": f"the automation's input_schema is invalid: {exc.message}"}
        ]
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    found = sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
    return [
        {"pointer": "/input" + pointer(list(e.absolute_path)), "detail": e.message}
        for e in found[:20]
    ]


def visible_records(
    conn: psycopg.Connection[Any], workspace: Workspace, entity: str, ids: Sequence[UUID]
) -> set[UUID]:
    """The ids among ``ids`` that name a live record of ``entity`` in the workspace."""
    table = ENTITY_TABLES[entity]
    live = sql.SQL("AND deleted_at IS NULL" if "deleted_at" in columns(entity) else "")
    statement = sql.SQL(query("record_ids_visible")).format(table=sql.Identifier(table), live=live)
    with tenant_transaction(conn, workspace.id) as cur:
        return {row[0] for row in cur.execute(statement, {"ids": [str(i) for i in ids]})}


def trigger_manual(
    conn: psycopg.Connection[Any],
    workspace: Workspace,
    ref: str,
    record_ids: Sequence[UUID],
    input_: Mapping[str, Any] | None = None,
    *,
    max_records: int,
) -> Triggered:
    """Emit one manual event per record (deduplicated, in the given order)."""
    automation = show_automation(conn, workspace, ref)
    if automation is None:
        raise TriggerError(404, "not_found", f"no automation {ref!r}")
    if automation["trigger_type"] != "manual":
        raise TriggerError(
            409,
            "not_manual",
            f"automation {automation['name']!r} is triggered by {automation['trigger_type']},"
            " not manual",
        )
    if not automation["enabled"]:
        raise TriggerError(409, "disabled", f"automation {automation['name']!r} is disabled")
    ids = list(dict.fromkeys(record_ids))
    if not ids:
        raise TriggerError(422, "invalid_request", "name at least one record")
    if len(ids) > max_records:
        raise TriggerError(
            422,
            "too_many_records",
            f"{len(ids)} records; at most {max_records} per request (HASTE_API_BULK_MAX)",
            [{"pointer": "/record_ids", "detail": f"at most {max_records} items"}],
        )
    config = (automation["document"] or {}).get("trigger_config") or {}
    entity = config.get("entity_type")
    if entity not in ENTITY_TABLES:
        raise TriggerError(409, "misconfigured", "the automation's trigger_config names no entity")
    payload = dict(input_ or {})
    if config.get("input_schema") is not None:
        problems = _input_problems(config["input_schema"], payload)
        if problems:
            raise TriggerError(
                422, "invalid_input", "the input does not match input_schema", problems
            )
    found = visible_records(conn, workspace, entity, ids)
    missing = [i for i in ids if i not in found]
    if missing:
        shown = ", ".join(str(i) for i in missing[:10])
        raise TriggerError(
            404,
            "record_not_found",
            f"no {entity} {shown}"
            + (f" and {len(missing) - 10} more" if len(missing) > 10 else ""),
        )
    events: list[tuple[UUID, int]] = []
    with system_transaction(conn) as cur:
        for record_id in ids:
            event_id = emit_event(
                cur,
                workspace_id=workspace.id,
                event_type="manual",
                automation_id=automation["id"],
                entity_type=entity,
                entity_id=record_id,
                payload=payload,
            )
            events.append((record_id, event_id))
    metrics.EVENTS_EMITTED.labels("manual").inc(len(events))
    return Triggered(automation["id"], automation["name"], entity, events)
