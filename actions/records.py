"""update_record and create_record: set columns and custom fields of contacts, companies, deals.

Which columns a step may set is :func:`engine.fields.writable_columns` (read from the
migrations, the same list ``haste validate`` checks against), minus ``custom_fields``: that
one is only ever *merged* (``custom_fields || %s::jsonb``, top-level keys; other keys are
kept), through the ``custom_fields`` param. Column names are checked against that list before
any SQL is composed, and composed with :class:`psycopg.sql.Identifier` only. The list was
preferred to asking ``information_schema`` on each step: no query, and ``describe`` can refuse
an unknown column without a database.

Reference columns (``owner_id``, ``contact_id``, ``pipeline_id``, ...) are checked for
visibility under RLS before the write (:data:`REFERENCES`), because PostgreSQL checks foreign
keys without RLS and would let a crafted id link a record to another workspace. A deal's
``stage_id`` must belong to its (new or current) pipeline.

create_record's row id is derived from the idempotency key, so a repeated step finds its row
instead of creating a second one (output ``created: false``). A NOT NULL column left out
(``companies.name``; ``deals.title``, ``pipeline_id``, ``stage_id``, ``owner_id``) fails as a
``validation`` error naming the column; nothing is defaulted. Moving a deal between stages
with update_record writes no deal_history: change_deal_stage is the action for that.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from functools import cache
from typing import Any

from psycopg import sql
from psycopg.types.json import Jsonb

from actions.base import (
    ActionError,
    Cursor,
    DatabaseAction,
    Output,
    Params,
    RecordRef,
    StepContext,
    as_uuid,
    database_errors,
    insert_once,
    literal,
    not_found,
    require_member,
    require_visible,
    step_uuid,
    target,
)
from engine.fields import writable_columns

__all__ = ["CREATE_RECORD", "REFERENCES", "UPDATE_RECORD", "settable_columns"]

RECORD_ENTITIES = ("contact", "company", "deal")

#: Reference column -> what its value must name: a table whose row must be visible under
#: RLS, or "member" (an active member of the workspace). A test keeps this in step with the
#: foreign keys of the tables.
REFERENCES: Mapping[str, Mapping[str, str]] = {
    "contact": {"owner_id": "member"},
    "company": {"owner_id": "member", "parent_company_id": "companies"},
    "deal": {
        "owner_id": "member",
        "contact_id": "contacts",
        "company_id": "companies",
        "pipeline_id": "pipelines",
        "stage_id": "pipeline_stages",
    },
}


@cache
def settable_columns(entity: str) -> dict[str, str]:
    """Column -> field type of what ``fields`` may set on an entity."""
    cols = dict(writable_columns(entity))
    cols.pop("custom_fields", None)
    return cols


def check_fields(entity: str, fields: Mapping[str, Any]) -> None:
    """Every key is a settable column of the entity; the error names the first that is not."""
    allowed = settable_columns(entity)
    for name in fields:
        if name in allowed:
            continue
        if name == "custom_fields":
            hint = "; use the 'custom_fields' param, which merges keys instead of replacing"
        else:
            close = difflib.get_close_matches(name, list(allowed), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ActionError(
            "validation",
            f"fields.{name}: unknown or read-only column '{name}' on {entity}{hint}",
            details={"field": f"fields.{name}", "entity": entity},
        )


def _adapt(entity: str, column: str, value: Any) -> Any:
    """JSON columns take any JSON value; the rest go as given and PostgreSQL casts them."""
    kind = settable_columns(entity)[column]
    if kind == "json" and value is not None:
        return Jsonb(value)
    if kind != "array" and isinstance(value, Mapping | list):
        raise ActionError(
            "validation",
            f"fields.{column}: a {kind} column takes a single value, got {literal(value)}",
            details={"field": f"fields.{column}"},
        )
    return value


def _custom_fields(params: Params) -> dict[str, Any]:
    merged = params.get("custom_fields") or {}
    if not isinstance(merged, Mapping):
        raise ActionError("validation", "custom_fields must be an object")
    return dict(merged)


def _fields(params: Params, entity: str) -> dict[str, Any]:
    fields = params.get("fields") or {}
    if not isinstance(fields, Mapping):
        raise ActionError("validation", "fields must be an object")
    check_fields(entity, fields)
    return dict(fields)


def _check_references(cur: Cursor, entity: str, fields: Mapping[str, Any]) -> None:
    for column, kind in REFERENCES[entity].items():
        value = fields.get(column)
        if value is None:
            continue
        if kind == "member":
            require_member(cur, value, f"fields.{column}")
        else:
            require_visible(cur, kind, value, f"fields.{column}")


def _check_deal_stage(cur: Cursor, pipeline_id: Any, stage_id: Any) -> None:
    """A deal's stage must be a stage of the deal's pipeline."""
    cur.execute(
        "SELECT 1 FROM pipeline_stages WHERE id = %s AND pipeline_id = %s",
        (as_uuid(stage_id, "fields.stage_id"), as_uuid(pipeline_id, "fields.pipeline_id")),
    )
    if cur.fetchone() is None:
        raise ActionError(
            "validation",
            f"fields.stage_id: stage {stage_id} is not a stage of pipeline {pipeline_id}",
            details={"field": "fields.stage_id", "value": str(stage_id)},
        )


# --- update_record -----------------------------------------------------------------------


def _update_plan(params: Params, step: StepContext) -> tuple[RecordRef, dict[str, Any], dict]:
    ref = target(params, step, RECORD_ENTITIES)
    fields = _fields(params, ref.entity)
    custom = _custom_fields(params)
    if not fields and not custom:
        raise ActionError("validation", "nothing to update: give 'fields' or 'custom_fields'")
    return ref, fields, custom


def update_statement(ref: RecordRef, fields: Mapping[str, Any], custom: Mapping) -> sql.Composed:
    """The UPDATE of one live record; only checked column names reach it."""
    assignments = [sql.SQL("{} = %s").format(sql.Identifier(column)) for column in fields]
    if custom:
        assignments.append(
            sql.SQL("custom_fields = coalesce(custom_fields, '{}'::jsonb) || %s::jsonb")
        )
    assignments.append(sql.SQL("updated_at = now()"))
    return sql.SQL(
        "UPDATE {table} SET {assignments} WHERE id = %s AND deleted_at IS NULL RETURNING id"
    ).format(table=sql.Identifier(ref.table), assignments=sql.SQL(", ").join(assignments))


@database_errors()
def run_update(cur: Cursor, params: Params, step: StepContext) -> Output:
    ref, fields, custom = _update_plan(params, step)
    _check_references(cur, ref.entity, fields)
    if ref.entity == "deal" and ("stage_id" in fields or "pipeline_id" in fields):
        cur.execute(
            "SELECT pipeline_id, stage_id FROM deals WHERE id = %s AND deleted_at IS NULL",
            (ref.id,),
        )
        current = cur.fetchone()
        if current is None:
            raise not_found(ref)
        _check_deal_stage(
            cur,
            fields.get("pipeline_id") or current["pipeline_id"],
            fields.get("stage_id") or current["stage_id"],
        )
    values = [_adapt(ref.entity, column, value) for column, value in fields.items()]
    if custom:
        values.append(Jsonb(custom))
    cur.execute(update_statement(ref, fields, custom), (*values, ref.id))
    if cur.fetchone() is None:
        raise not_found(ref)
    return {
        **ref.to_dict(),
        "fields": sorted(fields),
        "custom_fields": sorted(custom),
    }


def describe_update(params: Params, step: StepContext) -> Output:
    ref, fields, custom = _update_plan(params, step)
    parts = [f"{column} = {literal(value)}" for column, value in fields.items()]
    if custom:
        parts.append(f"custom_fields = custom_fields || {literal(custom)}")
    return {
        "would": f"UPDATE {ref.table} SET {', '.join(parts)} WHERE id = '{ref.id}'",
        "record": ref.to_dict(),
        "set": dict(fields),
        "merge_custom_fields": custom,
    }


UPDATE_RECORD = DatabaseAction("update_record", run_update, describe_update)


# --- create_record -----------------------------------------------------------------------


def _create_plan(params: Params) -> tuple[str, dict[str, Any], dict]:
    entity = params.get("entity")
    if entity not in RECORD_ENTITIES:
        raise ActionError(
            "validation",
            f"entity must be one of {', '.join(RECORD_ENTITIES)}, got {entity!r}",
            details={"field": "entity", "value": entity},
        )
    return entity, _fields(params, entity), _custom_fields(params)


@database_errors()
def run_create(cur: Cursor, params: Params, step: StepContext) -> Output:
    entity, fields, custom = _create_plan(params)
    _check_references(cur, entity, fields)
    if entity == "deal" and fields.get("stage_id") and fields.get("pipeline_id"):
        _check_deal_stage(cur, fields["pipeline_id"], fields["stage_id"])
    ref = RecordRef(entity, step_uuid(step))
    row: dict[str, Any] = {
        "id": ref.id,
        "workspace_id": step.workspace_id,
        "created_by": step.user_id,
        **{column: _adapt(entity, column, value) for column, value in fields.items()},
    }
    if custom:
        row["custom_fields"] = Jsonb(custom)
    created = insert_once(cur, ref, row)
    return {**ref.to_dict(), "created": created}


def describe_create(params: Params, step: StepContext) -> Output:
    entity, fields, custom = _create_plan(params)
    values = {**fields, **({"custom_fields": custom} if custom else {})}
    table = RecordRef(entity, step_uuid(step)).table
    return {
        "would": f"INSERT INTO {table} {literal(values)}",
        "entity": entity,
        "id": str(step_uuid(step)),
        "values": values,
    }


CREATE_RECORD = DatabaseAction("create_record", run_create, describe_create)
