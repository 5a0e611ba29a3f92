"""create_task: a task for a person, linked to a contact, deal or company when there is one.

Assignee (``tasks.assigned_to`` is NOT NULL): ``assigned_to`` is ``"record_owner"`` (the
default) or a user uuid. ``record_owner`` is the owner of the linked record, else the creator
of the automation, else the workspace's earliest-joined active owner; a step with none of
them fails as ``config``. A uuid must be an active member of the workspace (``not_found``
otherwise), so a task cannot be handed to a user of another workspace. ``assigned_by`` is
the step's user (nullable: nobody is invented).

Due: ``due_in`` is counted from the moment the step runs, in UTC (``due_date`` and
``due_time`` of that instant); ``due_date`` / ``due_time`` are taken as written. The row id
comes from the idempotency key, so a repeated step creates one task.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any
from uuid import UUID

from actions.base import (
    ActionError,
    Cursor,
    DatabaseAction,
    Output,
    Params,
    RecordRef,
    StepContext,
    automation_creator,
    database_errors,
    insert_once,
    load_record,
    optional_target,
    require_member,
    step_uuid,
    workspace_owner,
)
from engine.definitions import parse_duration

__all__ = ["CREATE_TASK", "due_of"]

TASK_ENTITIES = ("contact", "deal", "company")
RECORD_OWNER = "record_owner"


def due_of(params: Params, now: datetime) -> tuple[date | None, time | None]:
    """``(due_date, due_time)``: ``due_in`` after ``now``, or ``due_date``/``due_time``."""
    if params.get("due_in"):
        try:
            due = now.astimezone(UTC) + parse_duration(params["due_in"])
        except ValueError as exc:
            raise ActionError("validation", f"due_in: {exc}", details={"field": "due_in"}) from exc
        return due.date(), due.time().replace(microsecond=0)
    due_date = due_time = None
    if params.get("due_date"):
        try:
            # A template that is exactly "{{ deal.expected_close_date }}" keeps its native
            # type: a date (or a timestamp, whose calendar day is meant) arrives as such.
            raw = params["due_date"]
            if isinstance(raw, datetime):
                due_date = raw.date()
            elif isinstance(raw, date):
                due_date = raw
            else:
                due_date = date.fromisoformat(str(raw))
        except ValueError as exc:
            raise ActionError(
                "validation",
                f"due_date: {params['due_date']!r} is not a date YYYY-MM-DD",
                details={"field": "due_date"},
            ) from exc
    if params.get("due_time"):
        if due_date is None:
            raise ActionError(
                "validation", "due_time needs due_date", details={"field": "due_time"}
            )
        try:
            due_time = time.fromisoformat(params["due_time"])
        except ValueError as exc:
            raise ActionError(
                "validation",
                f"due_time: {params['due_time']!r} is not a time HH:MM",
                details={"field": "due_time"},
            ) from exc
    return due_date, due_time


def _plan(params: Params, step: StepContext) -> tuple[RecordRef | None, str]:
    title = params.get("title")
    if not isinstance(title, str) or not title.strip():
        raise ActionError("validation", f"title: {title!r} is empty", details={"field": "title"})
    assignee = params.get("assigned_to") or RECORD_OWNER
    return optional_target(params, step, TASK_ENTITIES), assignee


def _assignee(cur: Cursor, step: StepContext, assigned_to: str, record_owner: UUID | None) -> UUID:
    if assigned_to != RECORD_OWNER:
        return require_member(cur, assigned_to, "assigned_to")
    for candidate in (record_owner, automation_creator(cur, step), workspace_owner(cur)):
        if candidate is not None:
            return candidate
    raise ActionError(
        "config",
        "assigned_to: record_owner found no one (no record owner, no automation creator,"
        " no active workspace owner)",
        details={"field": "assigned_to"},
    )


@database_errors()
def run(cur: Cursor, params: Params, step: StepContext) -> Output:
    ref, assigned_to = _plan(params, step)
    record = load_record(cur, ref) if ref else None
    assignee = _assignee(cur, step, assigned_to, record["owner_id"] if record else None)
    due_date, due_time = due_of(params, datetime.now(UTC))
    task_id = step_uuid(step)
    row: dict[str, Any] = {
        "id": task_id,
        "workspace_id": step.workspace_id,
        "title": params["title"],
        "description": params.get("description"),
        "type": params.get("type", "task"),
        "priority": params.get("priority", "medium"),
        "assigned_to": assignee,
        "assigned_by": step.user_id,
        "due_date": due_date,
        "due_time": due_time,
        "reminder_minutes": params.get("reminder_minutes"),
    }
    if ref is not None:
        row[f"{ref.entity}_id"] = ref.id
    created = insert_once(cur, ("tasks", task_id), row)
    return {
        "id": str(task_id),
        "created": created,
        "assigned_to": str(assignee),
        "record": ref.to_dict() if ref else None,
        "due_date": due_date.isoformat() if due_date else None,
        "due_time": due_time.isoformat() if due_time else None,
    }


def describe(params: Params, step: StepContext) -> Output:
    ref, assigned_to = _plan(params, step)
    due_date, due_time = due_of(params, datetime.now(UTC))
    linked = f" linked to {ref.entity} {ref.id}" if ref else ""
    return {
        "would": f"INSERT INTO tasks: {params['title']!r} assigned to {assigned_to}{linked}",
        "id": str(step_uuid(step)),
        "title": params["title"],
        "assigned_to": assigned_to,
        "record": ref.to_dict() if ref else None,
        "due_date": due_date.isoformat() if due_date else None,
        "due_time": due_time.isoformat() if due_time else None,
    }


CREATE_TASK = DatabaseAction("create_task", run, describe)
