"""A seeded CRM workspace for action tests: rows written as the owner (RLS bypassed),
the way the CRM itself would have written them before an automation runs.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from actions import StepContext
from actions.base import ActionEnv

Conn = psycopg.Connection[Any]


def insert(db: Conn, table: str, **cols: Any) -> UUID:
    """INSERT one row (dict values as JSONB); its id."""
    cols.setdefault("id", uuid.uuid4())
    values = [Jsonb(v) if isinstance(v, dict) else v for v in cols.values()]
    db.execute(
        sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
            sql.Identifier(table),
            sql.SQL(", ").join(map(sql.Identifier, cols)),
            sql.SQL(", ").join(sql.Placeholder() * len(cols)),
        ),
        values,
    )
    return cols["id"]


def row(db: Conn, table: str, row_id: UUID) -> dict[str, Any] | None:
    cur = db.cursor(row_factory=psycopg.rows.dict_row)
    cur.execute(sql.SQL("SELECT * FROM {} WHERE id = %s").format(sql.Identifier(table)), (row_id,))
    return cur.fetchone()


def rows(db: Conn, query: str, *params: Any) -> list[dict[str, Any]]:
    cur = db.cursor(row_factory=psycopg.rows.dict_row)
    cur.execute(query, params)
    return cur.fetchall()


def make_user(db: Conn, name: str = "user") -> UUID:
    user_id = uuid.uuid4()
    return insert(
        db, "users", id=user_id, email=f"{name}-{user_id.hex[:8]}@example.com", first_name=name
    )


_joined = datetime(2024, 1, 1)


@dataclass
class Workspace:
    id: UUID
    owner: UUID
    members: list[UUID] = field(default_factory=list)

    def add_member(self, db: Conn, role: str = "member", status: str = "active") -> UUID:
        user = make_user(db, role)
        joined = _joined + timedelta(days=len(self.members) + 1)
        insert(
            db,
            "workspace_members",
            workspace_id=self.id,
            user_id=user,
            role=role,
            status=status,
            joined_at=joined,
        )
        self.members.append(user)
        return user

    def step(self, **kwargs: Any) -> StepContext:
        """A step of this workspace with a fresh idempotency key."""
        kwargs.setdefault("step_id", "s1")
        kwargs.setdefault("idempotency_key", f"exec-{uuid.uuid4()}:{kwargs['step_id']}")
        kwargs.setdefault("env", ActionEnv())
        return StepContext(workspace_id=self.id, **kwargs)


def make_workspace(db: Conn, name: str = "acme") -> Workspace:
    ws_id = insert(db, "workspaces", name=name, slug=f"{name}-{uuid.uuid4().hex[:8]}")
    owner = make_user(db, "owner")
    insert(
        db, "workspace_members", workspace_id=ws_id, user_id=owner, role="owner", joined_at=_joined
    )
    return Workspace(ws_id, owner)


def make_contact(db: Conn, ws: Workspace, **cols: Any) -> UUID:
    cols.setdefault("email", f"c-{uuid.uuid4().hex[:8]}@example.com")
    return insert(db, "contacts", workspace_id=ws.id, **cols)


def make_company(db: Conn, ws: Workspace, **cols: Any) -> UUID:
    cols.setdefault("name", "Initech")
    return insert(db, "companies", workspace_id=ws.id, **cols)


@dataclass
class Pipeline:
    id: UUID
    stages: dict[str, UUID]


def make_pipeline(
    db: Conn,
    ws: Workspace,
    name: str = "Sales",
    stages: tuple[tuple[str, float], ...] = (("Lead", 10), ("Negotiation", 60), ("Won", 100)),
) -> Pipeline:
    pipeline_id = insert(db, "pipelines", workspace_id=ws.id, name=name)
    ids = {
        stage: insert(
            db,
            "pipeline_stages",
            pipeline_id=pipeline_id,
            name=stage,
            order_index=i,
            probability=probability,
        )
        for i, (stage, probability) in enumerate(stages)
    }
    return Pipeline(pipeline_id, ids)


def make_deal(
    db: Conn, ws: Workspace, pipeline: Pipeline, stage: str = "Lead", **cols: Any
) -> UUID:
    cols.setdefault("title", "Big deal")
    cols.setdefault("owner_id", ws.owner)
    return insert(
        db,
        "deals",
        workspace_id=ws.id,
        pipeline_id=pipeline.id,
        stage_id=pipeline.stages[stage],
        **cols,
    )


def run_step(db: Conn, action: Any, params: dict[str, Any], step: StepContext) -> dict[str, Any]:
    """Run a database action the way the executor does: in one tenant transaction."""
    from engine.db import tenant_transaction

    with tenant_transaction(db, step.workspace_id, step.user_id, dict_rows=True) as cur:
        return action.run(cur, params, step)
