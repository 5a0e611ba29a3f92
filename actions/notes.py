"""add_note: a note on a contact, company, deal or task.

``notes.created_by`` is NOT NULL, so the note's author follows
:func:`actions.base.acting_user`'s rule, read together with the record
(``load_record(..., author=step)``, one round trip): the step's user, else the owner of the
record (for a task, its assignee), else the workspace's earliest-joined active owner. The
note is linked through ``entity_type``/``entity_id`` and, for contacts, companies and deals,
the matching ``contact_id``/``company_id``/``deal_id`` column (tasks have none). The row id
comes from the idempotency key: one note per step.
"""

from __future__ import annotations

from typing import Any

from actions.base import (
    ActionError,
    Cursor,
    DatabaseAction,
    Output,
    Params,
    RecordRef,
    StepContext,
    database_errors,
    insert_once,
    load_record,
    step_uuid,
    target,
)

__all__ = ["ADD_NOTE"]

NOTE_ENTITIES = ("contact", "company", "deal", "task")
LINK_COLUMNS = {"contact": "contact_id", "company": "company_id", "deal": "deal_id"}


def _plan(params: Params, step: StepContext) -> RecordRef:
    content = params.get("content")
    if not isinstance(content, str) or not content.strip():
        raise ActionError(
            "validation", f"content: {content!r} is empty", details={"field": "content"}
        )
    return target(params, step, NOTE_ENTITIES)


@database_errors()
def run(cur: Cursor, params: Params, step: StepContext) -> Output:
    ref = _plan(params, step)
    author = load_record(cur, ref, author=step)["author"]
    note_id = step_uuid(step)
    row: dict[str, Any] = {
        "id": note_id,
        "workspace_id": step.workspace_id,
        "content": params["content"],
        "content_html": params.get("content_html"),
        "is_pinned": bool(params.get("is_pinned", False)),
        "entity_type": ref.entity,
        "entity_id": ref.id,
        "created_by": author,
    }
    if ref.entity in LINK_COLUMNS:
        row[LINK_COLUMNS[ref.entity]] = ref.id
    created = insert_once(cur, ("notes", note_id), row)
    return {
        "id": str(note_id),
        "created": created,
        "record": ref.to_dict(),
        "created_by": str(author),
    }


def describe(params: Params, step: StepContext) -> Output:
    ref = _plan(params, step)
    return {
        "would": f"INSERT INTO notes on {ref.entity} {ref.id}: {params['content']!r}",
        "id": str(step_uuid(step)),
        "record": ref.to_dict(),
        "content": params["content"],
        "is_pinned": bool(params.get("is_pinned", False)),
    }


ADD_NOTE = DatabaseAction("add_note", run, describe)
