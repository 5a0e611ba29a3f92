"""Events: the rows of the outbox ``automation_events`` and the trigger types they stand for.

Who writes what (schemas/sql/0030_outbox.sql): row triggers on the CRM tables insert one
row per committed change, in the writer's transaction; webhook, manual and schedule
triggers insert events aimed at one automation (``automation_id`` + ``payload``). The
listener owns every later state: unprocessed → claimed (``claimed_by``/``claimed_at``,
``attempts``/``error`` on failure) → processed (``processed_at``).

Captured vocabulary (``event_type``), one per row:

* record tables — ``<entity>_created`` / ``_updated`` / ``_deleted`` for contact, company,
  deal, task, note (a soft delete, ``deleted_at`` set from NULL, is ``_deleted``);
  ``activity_created`` (activities are an append-only log);
* emails — inserted as ``email_received``, ``email_sent`` (``is_sent``) or ``email_drafted``
  (``is_draft``: a draft is not mail someone received), then ``email_updated`` /
  ``email_deleted``;
* ``contact_tagged`` / ``contact_untagged`` on the contact, with ``tag_id`` and ``tag_name``;
* ``email_opened`` / ``email_clicked`` / ``email_bounced`` / ``email_complained`` /
  ``email_unsubscribed`` on the email, from ``email_tracking_events``;
* ``webhook`` / ``manual`` / ``time_based``, aimed at one automation.

Derived trigger types (:func:`trigger_types`) are computed here, not in SQL: a deal update
that moves the stage and sets ``status = 'won'`` is one row but stands for
``deal_updated``, ``deal_stage_changed`` and ``deal_won``. Keeping that in the trigger
would cost every writer more per row (the trigger's share is measured in
bench/bench_capture.py) and would freeze the rules into the database; here they are a pure
function with tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

#: ``automation_events.operation`` of CRM events (targeted events have none).
OPERATIONS = frozenset({"insert", "update", "delete"})

#: ``automation_events.entity_type``: the record kinds whose changes are captured.
ENTITY_TYPES = frozenset({"contact", "company", "deal", "email", "task", "note", "activity"})

#: Events aimed at one automation (``automation_id`` set), never produced by CRM writes.
TARGETED_EVENT_TYPES = frozenset({"webhook", "manual", "time_based"})

#: Every ``event_type`` the outbox holds. The database has no CHECK for it on purpose: a
#: CHECK is re-read from the catalogue on every INSERT and cost the writer ~38 us per row
#: (more than the whole diff); tests/test_events.py keeps this list and the SQL in step.
EVENT_TYPES = frozenset(
    {
        "contact_created", "contact_updated", "contact_deleted",
        "contact_tagged", "contact_untagged",
        "company_created", "company_updated", "company_deleted",
        "deal_created", "deal_updated", "deal_deleted",
        "email_received", "email_sent", "email_drafted", "email_updated", "email_deleted",
        "email_opened", "email_clicked", "email_bounced", "email_complained",
        "email_unsubscribed",
        "task_created", "task_updated", "task_deleted",
        "note_created", "note_updated", "note_deleted",
        "activity_created",
    }
    | TARGETED_EVENT_TYPES
)  # fmt: skip

#: Trigger types that no row carries, only :func:`trigger_types` derives.
DERIVED_TRIGGER_TYPES = frozenset({"deal_stage_changed", "deal_won", "deal_lost", "task_completed"})


@dataclass(frozen=True)
class Event:
    """One outbox row. ``old_values``/``new_values`` hold only the changed columns (every
    non-NULL column for an insert or a delete), typed as ``to_jsonb`` types them."""

    id: int
    workspace_id: UUID
    event_type: str
    entity_type: str | None = None
    entity_id: UUID | None = None
    operation: str | None = None
    old_values: Mapping[str, Any] = field(default_factory=dict)
    new_values: Mapping[str, Any] = field(default_factory=dict)
    changed_fields: frozenset[str] = frozenset()
    actor_user_id: UUID | None = None
    causation_execution_id: UUID | None = None
    depth: int = 0
    automation_id: UUID | None = None
    payload: Mapping[str, Any] | None = None
    created_at: datetime | None = None
    processed_at: datetime | None = None
    claimed_by: str | None = None
    claimed_at: datetime | None = None
    attempts: int = 0
    error: str | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Event:
        """From a ``dict_row`` of ``automation_events``; other keys (the listener adds
        ``old``/``new``/``trigger_types``) are ignored, so any event mapping will do."""
        return cls(
            id=row["id"],
            workspace_id=row["workspace_id"],
            event_type=row["event_type"],
            entity_type=row.get("entity_type"),
            entity_id=row.get("entity_id"),
            operation=row.get("operation"),
            old_values=dict(row.get("old_values") or {}),
            new_values=dict(row.get("new_values") or {}),
            changed_fields=frozenset(row.get("changed_fields") or ()),
            actor_user_id=row.get("actor_user_id"),
            causation_execution_id=row.get("causation_execution_id"),
            depth=int(row.get("depth") or 0),
            automation_id=row.get("automation_id"),
            payload=row.get("payload"),
            created_at=row.get("created_at"),
            processed_at=row.get("processed_at"),
            claimed_by=row.get("claimed_by"),
            claimed_at=row.get("claimed_at"),
            attempts=int(row.get("attempts") or 0),
            error=row.get("error"),
        )


def trigger_types(event: Event | Mapping[str, Any]) -> frozenset[str]:
    """Every trigger type ``event`` stands for: its own ``event_type`` plus the derived ones.

    Derived only from updates (an insert does not *change* a status; a deal created as won
    is ``deal_created``, and an import should not fire "deal won" automations):

    * ``deal_updated``: ``deal_stage_changed`` if ``stage_id`` changed; ``deal_won`` /
      ``deal_lost`` if ``status`` changed to ``won`` / ``lost``;
    * ``email_updated``: ``email_sent`` if ``is_sent`` changed to true (a draft went out);
    * ``task_updated``: ``task_completed`` if ``status`` changed to ``completed``.

    Accepts an :class:`Event` or any event mapping with ``event_type`` (an outbox row, the
    listener's dict, a dry-run's synthetic event: ids are not needed).
    """
    if isinstance(event, Event):
        event_type, changed, new = event.event_type, event.changed_fields, event.new_values
    else:
        event_type = event["event_type"]
        changed = frozenset(event.get("changed_fields") or ())
        new = event.get("new_values") or event.get("new") or {}

    def changed_to(column: str, value: Any) -> bool:
        return column in changed and new.get(column) == value

    types = {event_type}
    if event_type == "deal_updated":
        if "stage_id" in changed:
            types.add("deal_stage_changed")
        if changed_to("status", "won"):
            types.add("deal_won")
        if changed_to("status", "lost"):
            types.add("deal_lost")
    elif event_type == "email_updated":
        if changed_to("is_sent", True):
            types.add("email_sent")
    elif event_type == "task_updated" and changed_to("status", "completed"):
        types.add("task_completed")
    return frozenset(types)
