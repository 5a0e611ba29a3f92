"""Build the evaluation context of one run: the record, one hop of related records,
previous values, trigger payload, workspace and now.

This is the I/O edge in front of the pure evaluator (:mod:`engine.conditions`) and
renderer (:mod:`engine.templating`): it runs inside the caller's tenant transaction, so
RLS decides what it can read. The shape is documented in ``docs/conditions.md``; the
field catalogue (:mod:`engine.fields`) lists the same paths, and validation refuses
paths this module would not provide.

Cost per run: one query for the record, one per non-null foreign key (one hop), one for a
contact's tags. Vector columns are never loaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql

from engine import fields

#: The record kinds that have a table (entity → table).
ENTITY_TABLES: Mapping[str, str] = fields.ENTITIES


def _select(entity: str) -> sql.Composed:
    virtual = fields.VIRTUAL_FIELDS.get(entity, {})
    names = [c for c in fields.columns(entity) if c not in virtual]
    return sql.SQL("SELECT {} FROM {} WHERE id = %s").format(
        sql.SQL(", ").join(sql.Identifier(c) for c in names),
        sql.Identifier(ENTITY_TABLES[entity]),
    )


def load_record(
    cur: psycopg.Cursor[Any], entity: str, record_id: UUID | str, *, related: bool = True
) -> dict[str, Any] | None:
    """The record as a dict (plus one hop of related records), or None if RLS hides it."""
    if entity not in ENTITY_TABLES:
        raise ValueError(f"unknown entity {entity!r}; expected one of {', '.join(ENTITY_TABLES)}")
    row = cur.execute(_select(entity), (str(record_id),)).fetchone()
    if row is None:
        return None
    record = dict(row) if isinstance(row, Mapping) else _as_dict(cur, row)
    if entity == "contact":
        record["tags"] = [
            r[0] if not isinstance(r, Mapping) else r["name"]
            for r in cur.execute(
                "SELECT t.name FROM contact_tags ct JOIN tags t ON t.id = ct.tag_id"
                " WHERE ct.contact_id = %s ORDER BY t.name",
                (str(record_id),),
            )
        ]
    if related:
        for relation, target in fields.relations(entity).items():
            fk = record.get(f"{relation}_id")
            if fk is not None:
                record[relation] = load_record(cur, target, fk, related=False)
    return record


def _as_dict(cur: psycopg.Cursor[Any], row: tuple[Any, ...]) -> dict[str, Any]:
    assert cur.description is not None
    return {col.name: value for col, value in zip(cur.description, row, strict=True)}


def build_context(
    cur: psycopg.Cursor[Any],
    workspace: Mapping[str, Any],
    *,
    entity: str | None = None,
    record_id: UUID | str | None = None,
    record: Mapping[str, Any] | None = None,
    previous: Mapping[str, Any] | None = None,
    event: Mapping[str, Any] | None = None,
    trigger: Mapping[str, Any] | None = None,
    steps: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The context dict the evaluator and renderer read (see module doc)."""
    now = now or datetime.now(UTC)
    context: dict[str, Any] = {
        "event": dict(event or {}),
        "previous": {},
        "trigger": dict(trigger or {}),
        "steps": dict(steps or {}),
        "workspace": dict(workspace),
        "now": now.isoformat(),
    }
    if entity is not None:
        if record is None and record_id is not None:
            record = load_record(cur, entity, record_id)
        if record is not None:
            context[entity] = dict(record)
        context["previous"] = {entity: dict(previous or {})}
    return context
