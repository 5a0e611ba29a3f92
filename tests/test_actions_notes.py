"""add_note: author fallbacks, links, idempotency, tenant isolation."""

from __future__ import annotations

import uuid

import pytest
from fakes.crm import make_contact, make_deal, make_pipeline, make_workspace, row, rows, run_step

from actions import ActionError
from actions.notes import ADD_NOTE


@pytest.fixture
def ws(db):
    return make_workspace(db)


def test_add_note_is_written_by_the_steps_user_on_the_trigger_contact(db, ws):
    writer = ws.add_member(db)
    contact = make_contact(db, ws)
    step = ws.step(trigger_entity="contact", trigger_entity_id=contact, user_id=writer)

    out = run_step(db, ADD_NOTE, {"content": "Met at the fair", "is_pinned": True}, step)

    note = row(db, "notes", uuid.UUID(out["id"]))
    assert (note["content"], note["is_pinned"], note["created_by"]) == (
        "Met at the fair",
        True,
        writer,
    )
    assert (note["entity_type"], note["entity_id"], note["contact_id"]) == (
        "contact",
        contact,
        contact,
    )


def test_add_note_without_a_user_is_written_by_the_record_owner(db, ws):
    pipeline = make_pipeline(db, ws)
    rep = ws.add_member(db)
    deal = make_deal(db, ws, pipeline, owner_id=rep)
    step = ws.step(trigger_entity="deal", trigger_entity_id=deal)

    out = run_step(db, ADD_NOTE, {"content": "Stalled"}, step)

    note = row(db, "notes", uuid.UUID(out["id"]))
    assert (note["created_by"], note["deal_id"]) == (rep, deal)


def test_add_note_without_user_or_owner_is_written_by_the_workspace_owner(db, ws):
    contact = make_contact(db, ws)
    step = ws.step(trigger_entity="contact", trigger_entity_id=contact)

    out = run_step(db, ADD_NOTE, {"content": "x"}, step)

    assert row(db, "notes", uuid.UUID(out["id"]))["created_by"] == ws.owner


def test_add_note_with_no_one_to_act_as_is_a_config_error_and_writes_nothing(db, ws):
    contact = make_contact(db, ws)
    db.execute("UPDATE workspace_members SET status = 'inactive' WHERE workspace_id = %s", (ws.id,))
    step = ws.step(trigger_entity="contact", trigger_entity_id=contact)

    with pytest.raises(ActionError, match="no user to act as") as raised:
        run_step(db, ADD_NOTE, {"content": "x"}, step)

    assert raised.value.error_class == "config"
    assert rows(db, "SELECT 1 FROM notes") == []


def test_add_note_on_another_workspaces_record_is_not_found_and_writes_nothing(db, ws):
    other = make_workspace(db, "other")
    foreign = make_contact(db, other)

    with pytest.raises(ActionError) as caught:
        run_step(
            db,
            ADD_NOTE,
            {"content": "x", "record": {"entity": "contact", "id": str(foreign)}},
            ws.step(),
        )

    assert caught.value.error_class == "not_found"
    assert rows(db, "SELECT 1 FROM notes") == []


def test_add_note_without_a_record_is_a_validation_error(db, ws):
    with pytest.raises(ActionError, match="record") as caught:
        run_step(db, ADD_NOTE, {"content": "x"}, ws.step(trigger_entity=None))

    assert caught.value.error_class == "validation"
