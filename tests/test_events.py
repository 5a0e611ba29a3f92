"""engine.events: the Event row, the derived trigger types, and the vocabulary kept in step
with the SQL that produces it (schemas/sql/0030_outbox.sql) and the spec's trigger types."""

from __future__ import annotations

import re
import uuid
from typing import Any

import psycopg
import pytest

from engine.events import (
    DERIVED_TRIGGER_TYPES,
    ENTITY_TYPES,
    EVENT_TYPES,
    TARGETED_EVENT_TYPES,
    Event,
    trigger_types,
)

WS = uuid.UUID("0000000a-0000-4000-8000-000000000000")


def row(event_type: str, **values: Any) -> dict[str, Any]:
    """An outbox row as a dict_row gives it; only what a test sets differs."""
    base: dict[str, Any] = {
        "id": 1,
        "workspace_id": WS,
        "entity_type": event_type.split("_", 1)[0],
        "entity_id": uuid.uuid4(),
        "operation": "update",
        "event_type": event_type,
        "old_values": None,
        "new_values": None,
        "changed_fields": None,
        "actor_user_id": None,
        "causation_execution_id": None,
        "depth": 0,
        "automation_id": None,
        "payload": None,
        "created_at": None,
        "processed_at": None,
        "claimed_by": None,
        "claimed_at": None,
        "attempts": 0,
        "error": None,
    }
    return base | values


def update(event_type: str, old: dict[str, Any], new: dict[str, Any]) -> Event:
    return Event.from_row(
        row(event_type, old_values=old, new_values=new, changed_fields=sorted(new))
    )


# ---------------------------------------------------------------------------
# Event.from_row
# ---------------------------------------------------------------------------


def test_from_row_reads_every_column() -> None:
    execution = uuid.uuid4()
    event = Event.from_row(
        row(
            "contact_updated",
            old_values={"score": 50},
            new_values={"score": 90},
            changed_fields=["score"],
            causation_execution_id=execution,
            depth=2,
            attempts=1,
            error="boom",
        )
    )

    assert (event.old_values, event.new_values, event.changed_fields) == (
        {"score": 50},
        {"score": 90},
        {"score"},
    )
    assert (event.causation_execution_id, event.depth, event.attempts, event.error) == (
        execution,
        2,
        1,
        "boom",
    )


def test_from_row_turns_null_values_into_empty_ones() -> None:
    event = Event.from_row(row("contact_created"))

    assert (event.old_values, event.new_values, event.changed_fields) == ({}, {}, frozenset())


def test_from_row_ignores_keys_the_listener_adds() -> None:
    listener_event = row("contact_updated") | {"old": {}, "new": {}, "trigger_types": ["x"]}

    assert Event.from_row(listener_event).event_type == "contact_updated"


# ---------------------------------------------------------------------------
# trigger_types
# ---------------------------------------------------------------------------


def test_a_plain_event_stands_for_its_own_type() -> None:
    assert trigger_types(update("contact_updated", {"score": 50}, {"score": 90})) == {
        "contact_updated"
    }


def test_a_stage_change_adds_deal_stage_changed() -> None:
    event = update("deal_updated", {"stage_id": "s1"}, {"stage_id": "s2"})

    assert trigger_types(event) == {"deal_updated", "deal_stage_changed"}


@pytest.mark.parametrize(("status", "derived"), [("won", "deal_won"), ("lost", "deal_lost")])
def test_status_changed_to_won_or_lost_adds_deal_won_or_lost(status: str, derived: str) -> None:
    event = update("deal_updated", {"status": "open"}, {"status": status})

    assert trigger_types(event) == {"deal_updated", derived}


def test_a_won_deal_moved_to_the_won_stage_stands_for_all_three() -> None:
    event = update(
        "deal_updated", {"stage_id": "s1", "status": "open"}, {"stage_id": "s9", "status": "won"}
    )

    assert trigger_types(event) == {"deal_updated", "deal_stage_changed", "deal_won"}


def test_a_deal_update_that_leaves_status_alone_is_not_won() -> None:
    event = Event.from_row(
        row(
            "deal_updated",
            old_values={"value": 1},
            new_values={"value": 2, "status": "won"},  # status not among the changed
            changed_fields=["value"],
        )
    )

    assert trigger_types(event) == {"deal_updated"}


def test_a_deal_created_as_won_is_only_deal_created() -> None:
    event = Event.from_row(
        row(
            "deal_created",
            operation="insert",
            new_values={"status": "won"},
            changed_fields=["status"],
        )
    )

    assert trigger_types(event) == {"deal_created"}


def test_a_soft_deleted_deal_is_only_deal_deleted() -> None:
    event = update(
        "deal_deleted", {"deleted_at": None}, {"deleted_at": "2024-05-01T00:00:00+00:00"}
    )

    assert trigger_types(event) == {"deal_deleted"}


def test_a_draft_that_is_sent_adds_email_sent() -> None:
    event = update(
        "email_updated", {"is_sent": False, "is_draft": True}, {"is_sent": True, "is_draft": False}
    )

    assert trigger_types(event) == {"email_updated", "email_sent"}


def test_a_completed_task_adds_task_completed() -> None:
    event = update("task_updated", {"status": "pending"}, {"status": "completed"})

    assert trigger_types(event) == {"task_updated", "task_completed"}


def test_trigger_types_accepts_the_listeners_mapping() -> None:
    listener_event = row(
        "deal_updated",
        old_values={"stage_id": "s1"},
        new_values={"stage_id": "s2"},
        changed_fields=["stage_id"],
    ) | {"old": {"stage_id": "s1"}, "new": {"stage_id": "s2"}}

    assert trigger_types(listener_event) == {"deal_updated", "deal_stage_changed"}


def test_trigger_types_needs_no_ids() -> None:
    synthetic = {
        "event_type": "deal_updated",
        "new": {"status": "lost"},
        "changed_fields": ["status"],
    }

    assert trigger_types(synthetic) == {"deal_updated", "deal_lost"}


# ---------------------------------------------------------------------------
# The vocabulary agrees with the SQL and with the spec
# ---------------------------------------------------------------------------

_EVENT_LITERAL = re.compile(r"'((?:" + "|".join(sorted(ENTITY_TYPES)) + r")_(?!id')[a-z_]+)'")


def emitted_event_types(db: psycopg.Connection[Any]) -> set[str]:
    """Every event type the capture functions can write: from automation_capture_tables for
    the generated ones, and from the source text of all haste_capture_* functions."""
    found: set[str] = set()
    for entity, created, operations in db.execute(
        "SELECT entity_type, created_event, operations FROM automation_capture_tables"
    ):
        if "insert" in operations and created is None:
            found.add(f"{entity}_created")
        if "update" in operations:
            found.add(f"{entity}_updated")
        if "update" in operations or "delete" in operations:
            found.add(f"{entity}_deleted")
    for (source,) in db.execute(
        "SELECT prosrc FROM pg_proc WHERE proname LIKE 'haste\\_capture\\_%'"
        " AND prorettype = 'trigger'::regtype"
    ):
        found.update(_EVENT_LITERAL.findall(source))
    for (created,) in db.execute(
        "SELECT created_event FROM automation_capture_tables WHERE created_event IS NOT NULL"
    ):
        found.update(_EVENT_LITERAL.findall(created))
    return found


def test_every_event_type_the_triggers_write_is_known(db: psycopg.Connection[Any]) -> None:
    assert emitted_event_types(db) - EVENT_TYPES == set()


def test_every_known_crm_event_type_is_written_by_some_trigger(
    db: psycopg.Connection[Any],
) -> None:
    assert (EVENT_TYPES - TARGETED_EVENT_TYPES) - emitted_event_types(db) == set()


def test_every_captured_entity_type_is_known(db: psycopg.Connection[Any]) -> None:
    entities = {e for (e,) in db.execute("SELECT entity_type FROM automation_capture_tables")}

    assert entities <= ENTITY_TYPES


def test_every_spec_trigger_type_can_come_from_an_event(db: psycopg.Connection[Any]) -> None:
    check = db.execute(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conrelid = 'automations'::regclass AND conname = 'valid_trigger_type'"
    ).fetchone()
    assert check is not None
    spec_types = set(re.findall(r"'([a-z_]+)'", check[0]))

    assert spec_types - (EVENT_TYPES | DERIVED_TRIGGER_TYPES) == set()
