"""log_activity: the timeline row in the partitioned activities table."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from fakes.crm import make_contact, make_workspace, rows, run_step

from actions import ActionError
from actions.activities import LOG_ACTIVITY

ACTIVITY = "SELECT * FROM activities WHERE id = %s"


@pytest.fixture
def ws(db):
    return make_workspace(db)


def test_log_activity_writes_the_activity_on_the_trigger_contact(db, ws):
    contact = make_contact(db, ws)
    user = ws.add_member(db)
    step = ws.step(trigger_entity="contact", trigger_entity_id=contact, user_id=user)
    params = {"type": "call_made", "title": "Intro call", "metadata": {"minutes": 12}}

    out = run_step(db, LOG_ACTIVITY, params, step)

    [saved] = rows(db, ACTIVITY, uuid.UUID(out["id"]))
    assert (saved["type"], saved["title"], saved["metadata"], saved["user_id"]) == (
        "call_made",
        "Intro call",
        {"minutes": 12},
        user,
    )
    assert (saved["entity_type"], saved["entity_id"], saved["contact_id"]) == (
        "contact",
        contact,
        contact,
    )


def test_log_activity_keeps_the_given_occurred_at(db, ws):
    contact = make_contact(db, ws)
    step = ws.step(trigger_entity="contact", trigger_entity_id=contact)
    params = {"type": "custom", "title": "Old", "occurred_at": "2024-01-15T10:00:00Z"}

    out = run_step(db, LOG_ACTIVITY, params, step)

    [saved] = rows(db, ACTIVITY, uuid.UUID(out["id"]))
    assert saved["occurred_at"] == datetime(2024, 1, 15, 10, tzinfo=UTC)


def test_log_activity_repeated_with_one_key_writes_one_row(db, ws):
    contact = make_contact(db, ws)
    step = ws.step(trigger_entity="contact", trigger_entity_id=contact)

    first = run_step(db, LOG_ACTIVITY, {"type": "custom", "title": "t"}, step)
    again = run_step(db, LOG_ACTIVITY, {"type": "custom", "title": "t"}, step)

    assert (first["created"], again["created"]) == (True, False)
    assert len(rows(db, "SELECT 1 FROM activities")) == 1


def test_log_activity_on_another_workspaces_record_is_not_found(db, ws):
    other = make_workspace(db, "other")
    foreign = make_contact(db, other)
    params = {"type": "custom", "title": "t", "record": {"entity": "contact", "id": str(foreign)}}

    with pytest.raises(ActionError) as caught:
        run_step(db, LOG_ACTIVITY, params, ws.step())

    assert caught.value.error_class == "not_found"
    assert rows(db, "SELECT 1 FROM activities") == []


def test_log_activity_occurred_at_without_offset_is_a_validation_error(db, ws):
    contact = make_contact(db, ws)
    step = ws.step(trigger_entity="contact", trigger_entity_id=contact)

    with pytest.raises(ActionError, match="occurred_at") as caught:
        run_step(
            db,
            LOG_ACTIVITY,
            {"type": "custom", "title": "t", "occurred_at": "2024-01-15T10:00:00"},
            step,
        )

    assert caught.value.error_class == "validation"
