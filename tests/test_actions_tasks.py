"""create_task: assignee resolution, links, due dates, idempotency, tenant isolation."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time

import pytest
from fakes.crm import insert, make_contact, make_workspace, row, rows, run_step

from actions import ActionError
from actions.tasks import CREATE_TASK, due_of


@pytest.fixture
def ws(db):
    return make_workspace(db)


def test_create_task_is_assigned_to_the_record_owner_and_linked_to_the_record(db, ws):
    rep = ws.add_member(db)
    contact = make_contact(db, ws, owner_id=rep)
    step = ws.step(trigger_entity="contact", trigger_entity_id=contact)

    out = run_step(db, CREATE_TASK, {"title": "Call back", "priority": "high"}, step)

    task = row(db, "tasks", uuid.UUID(out["id"]))
    assert (task["title"], task["priority"], task["assigned_to"], task["contact_id"]) == (
        "Call back",
        "high",
        rep,
        contact,
    )
    assert task["workspace_id"] == ws.id


def test_create_task_for_an_unowned_record_falls_back_to_the_automation_creator(db, ws):
    author = ws.add_member(db, role="admin")
    automation = insert(
        db,
        "automations",
        workspace_id=ws.id,
        name="a",
        trigger_type="manual",
        trigger_config={},
        actions=[],
        created_by=author,
    )
    execution = insert(db, "automation_executions", automation_id=automation, status="running")
    contact = make_contact(db, ws)
    step = ws.step(trigger_entity="contact", trigger_entity_id=contact, execution_id=execution)

    out = run_step(db, CREATE_TASK, {"title": "Qualify"}, step)

    assert out["assigned_to"] == str(author)


def test_create_task_with_nobody_else_falls_back_to_the_workspace_owner(db, ws):
    out = run_step(db, CREATE_TASK, {"title": "Unlinked"}, ws.step())

    task = row(db, "tasks", uuid.UUID(out["id"]))
    assert task["assigned_to"] == ws.owner
    assert (task["contact_id"], task["deal_id"], task["company_id"]) == (None, None, None)


def test_create_task_refuses_an_assignee_from_another_workspace(db, ws):
    other = make_workspace(db, "other")

    with pytest.raises(ActionError, match="assigned_to") as caught:
        run_step(db, CREATE_TASK, {"title": "x", "assigned_to": str(other.owner)}, ws.step())

    assert caught.value.error_class == "not_found"
    assert rows(db, "SELECT 1 FROM tasks") == []


def test_create_task_on_another_workspaces_record_is_not_found(db, ws):
    other = make_workspace(db, "other")
    foreign = make_contact(db, other)
    params = {"title": "x", "record": {"entity": "contact", "id": str(foreign)}}

    with pytest.raises(ActionError) as caught:
        run_step(db, CREATE_TASK, params, ws.step())

    assert caught.value.error_class == "not_found"
    assert rows(db, "SELECT 1 FROM tasks") == []


def test_create_task_repeated_with_one_key_creates_one_task(db, ws):
    step = ws.step()

    first = run_step(db, CREATE_TASK, {"title": "Once"}, step)
    again = run_step(db, CREATE_TASK, {"title": "Once"}, step)

    assert (first["created"], again["created"], first["id"]) == (True, False, again["id"])
    assert len(rows(db, "SELECT 1 FROM tasks")) == 1


def test_due_in_counts_from_now_in_utc():
    now = datetime(2025, 3, 30, 23, 30, tzinfo=UTC)

    assert due_of({"due_in": {"hours": 2}}, now) == (date(2025, 3, 31), time(1, 30))


def test_due_date_and_time_are_taken_as_written():
    now = datetime(2025, 1, 1, tzinfo=UTC)

    assert due_of({"due_date": "2025-02-03", "due_time": "09:15"}, now) == (
        date(2025, 2, 3),
        time(9, 15),
    )


def test_a_malformed_due_date_is_a_validation_error():
    with pytest.raises(ActionError, match="due_date") as caught:
        due_of({"due_date": "next tuesday"}, datetime.now(UTC))

    assert caught.value.error_class == "validation"


def test_due_date_given_as_a_native_date_is_accepted() -> None:
    from datetime import UTC, date, datetime

    from actions.tasks import due_of

    assert due_of({"due_date": date(2026, 12, 1)}, datetime.now(UTC)) == (date(2026, 12, 1), None)
    assert due_of({"due_date": "2026-12-01"}, datetime.now(UTC)) == (date(2026, 12, 1), None)
