"""A stand-in for the listener, for worker tests: deploy an automation, then insert queued
executions the way the listener does (status ``queued``, pinned version, context
snapshot) and optionally send their messages."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb

from engine.automations import Workspace as DeployedWorkspace
from engine.automations import deploy
from tests.fakes.crm import Workspace

Conn = psycopg.Connection[Any]


def deploy_doc(
    db: Conn, ws: Workspace, doc: Mapping[str, Any], *, validate: bool = True
) -> tuple[UUID, int]:
    """Deploy ``doc`` in ``ws`` (validated, like ``haste deploy``): (automation id, version).
    ``validate=False`` stands for a document that was valid when deployed and no longer is
    (a field removed since)."""
    workspace = DeployedWorkspace(ws.id, f"ws-{ws.id.hex[:8]}", "ws")
    result = deploy(db, workspace, doc, validate=validate)
    return result.automation_id, result.version


def queue_executions(
    db: Conn,
    ws: Workspace,
    automation: tuple[UUID, int],
    records: Iterable[UUID | None],
    *,
    entity: str = "contact",
    context: Mapping[str, Any] | None = None,
) -> list[UUID]:
    """One queued execution per record (None: no record), in one statement."""
    automation_id, version = automation
    rows = [
        (
            uuid.uuid4(),
            automation_id,
            ws.id,
            version,
            entity if record else None,
            record,
            Jsonb(dict(context or {"event": {}, "previous": {}, "trigger": {}})),
        )
        for record in records
    ]
    with db.cursor() as cur:
        cur.executemany(
            "INSERT INTO automation_executions (id, automation_id, workspace_id,"
            " automation_version, trigger_entity_type, trigger_entity_id, context, status,"
            " exclusive, triggered_by) VALUES (%s, %s, %s, %s, %s, %s, %s, 'queued', false,"
            " 'event')",
            rows,
        )
    return [row[0] for row in rows]


def execution(db: Conn, execution_id: UUID) -> dict[str, Any]:
    cur = db.cursor(row_factory=psycopg.rows.dict_row)
    row = cur.execute(
        "SELECT * FROM automation_executions WHERE id = %s", (execution_id,)
    ).fetchone()
    assert row is not None
    return row


def steps(db: Conn, execution_id: UUID) -> dict[str, dict[str, Any]]:
    cur = db.cursor(row_factory=psycopg.rows.dict_row)
    rows = cur.execute(
        "SELECT * FROM automation_execution_steps WHERE execution_id = %s", (execution_id,)
    ).fetchall()
    return {row["step_id"]: row for row in rows}


def counters(db: Conn, automation_id: UUID) -> tuple[int, int, int]:
    row = db.execute(
        "SELECT run_count, success_count, error_count FROM automations WHERE id = %s",
        (automation_id,),
    ).fetchone()
    assert row is not None
    return row[0], row[1], row[2]
