"""update_record / create_record against the migrated schema, under RLS."""

from __future__ import annotations

import uuid

import pytest
from fakes.crm import make_contact, make_pipeline, make_workspace, row, rows, run_step

from actions import ActionError
from actions.records import CREATE_RECORD, UPDATE_RECORD


@pytest.fixture
def ws(db):
    return make_workspace(db)


def test_update_record_sets_the_given_columns_on_the_trigger_record(db, ws):
    contact = make_contact(db, ws, score=10)
    step = ws.step(trigger_entity="contact", trigger_entity_id=contact)

    out = run_step(db, UPDATE_RECORD, {"fields": {"score": 90, "lifecycle_stage": "MQL"}}, step)

    saved = row(db, "contacts", contact)
    assert (saved["score"], saved["lifecycle_stage"]) == (90, "MQL")
    assert out == {
        "entity": "contact",
        "id": str(contact),
        "fields": ["lifecycle_stage", "score"],
        "custom_fields": [],
    }


def test_update_record_casts_rendered_strings_to_the_column_type(db, ws):
    contact = make_contact(db, ws)
    step = ws.step(trigger_entity="contact", trigger_entity_id=contact)

    run_step(db, UPDATE_RECORD, {"fields": {"score": "75"}}, step)

    assert row(db, "contacts", contact)["score"] == 75


def test_update_record_merges_custom_fields_instead_of_replacing_them(db, ws):
    contact = make_contact(db, ws, custom_fields={"plan": "free", "seats": 3})
    step = ws.step()
    params = {
        "record": {"entity": "contact", "id": str(contact)},
        "custom_fields": {"plan": "enterprise", "region": "eu"},
    }

    run_step(db, UPDATE_RECORD, params, step)

    assert row(db, "contacts", contact)["custom_fields"] == {
        "plan": "enterprise",
        "seats": 3,
        "region": "eu",
    }


def test_update_record_unknown_column_is_a_validation_error_naming_it(db, ws):
    contact = make_contact(db, ws, score=10)
    step = ws.step(trigger_entity="contact", trigger_entity_id=contact)

    with pytest.raises(ActionError) as caught:
        run_step(db, UPDATE_RECORD, {"fields": {"scroe": 90}}, step)

    assert caught.value.error_class == "validation"
    assert not caught.value.retryable
    assert "'scroe'" in caught.value.message and "did you mean 'score'" in caught.value.message
    assert row(db, "contacts", contact)["score"] == 10


def test_update_record_refuses_system_columns(db, ws):
    contact = make_contact(db, ws)
    step = ws.step(trigger_entity="contact", trigger_entity_id=contact)

    with pytest.raises(ActionError, match="workspace_id") as caught:
        run_step(db, UPDATE_RECORD, {"fields": {"workspace_id": str(uuid.uuid4())}}, step)

    assert caught.value.error_class == "validation"


def test_update_record_of_another_workspaces_record_is_not_found_and_changes_nothing(db, ws):
    other = make_workspace(db, "other")
    foreign = make_contact(db, other, score=5)
    params = {
        "record": {"entity": "contact", "id": str(foreign)},
        "fields": {"score": 99},
        "custom_fields": {"pwned": True},
    }

    with pytest.raises(ActionError) as caught:
        run_step(db, UPDATE_RECORD, params, ws.step())

    assert caught.value.error_class == "not_found"
    saved = row(db, "contacts", foreign)
    assert (saved["score"], saved["custom_fields"]) == (5, {})


def test_update_record_refuses_an_owner_from_another_workspace(db, ws):
    other = make_workspace(db, "other")
    contact = make_contact(db, ws)
    step = ws.step(trigger_entity="contact", trigger_entity_id=contact)

    with pytest.raises(ActionError, match="owner_id") as caught:
        run_step(db, UPDATE_RECORD, {"fields": {"owner_id": str(other.owner)}}, step)

    assert caught.value.error_class == "not_found"
    assert row(db, "contacts", contact)["owner_id"] is None


def test_update_record_value_refused_by_a_check_is_a_validation_error(db, ws):
    contact = make_contact(db, ws)
    step = ws.step(trigger_entity="contact", trigger_entity_id=contact)

    with pytest.raises(ActionError) as caught:
        run_step(db, UPDATE_RECORD, {"fields": {"lifecycle_stage": "bogus"}}, step)

    assert caught.value.error_class == "validation"
    assert caught.value.details["constraint"] == "valid_lifecycle"


def test_update_record_refuses_a_deal_stage_of_another_pipeline(db, ws):
    from fakes.crm import make_deal

    sales, hiring = make_pipeline(db, ws), make_pipeline(db, ws, "Hiring")
    deal = make_deal(db, ws, sales)
    step = ws.step(trigger_entity="deal", trigger_entity_id=deal)

    with pytest.raises(ActionError, match="stage_id") as caught:
        run_step(db, UPDATE_RECORD, {"fields": {"stage_id": str(hiring.stages["Won"])}}, step)

    assert caught.value.error_class == "validation"
    assert row(db, "deals", deal)["stage_id"] == sales.stages["Lead"]


def test_create_record_inserts_fields_and_custom_fields_in_the_workspace(db, ws):
    step = ws.step()
    params = {
        "entity": "company",
        "fields": {"name": "Globex", "domain": "globex.example"},
        "custom_fields": {"tier": "gold"},
    }

    out = run_step(db, CREATE_RECORD, params, step)

    saved = row(db, "companies", uuid.UUID(out["id"]))
    assert out["created"] is True
    assert (saved["workspace_id"], saved["name"], saved["domain"], saved["custom_fields"]) == (
        ws.id,
        "Globex",
        "globex.example",
        {"tier": "gold"},
    )


def test_create_record_twice_with_one_idempotency_key_creates_one_row(db, ws):
    step = ws.step()
    params = {"entity": "contact", "fields": {"email": "once@example.com"}}

    first = run_step(db, CREATE_RECORD, params, step)
    again = run_step(db, CREATE_RECORD, params, step)

    assert first["id"] == again["id"]
    assert (first["created"], again["created"]) == (True, False)
    assert len(rows(db, "SELECT 1 FROM contacts WHERE email = 'once@example.com'")) == 1


def test_create_record_without_a_required_column_names_it(db, ws):
    with pytest.raises(ActionError) as caught:
        run_step(
            db, CREATE_RECORD, {"entity": "company", "fields": {"domain": "x.example"}}, ws.step()
        )

    assert caught.value.error_class == "validation"
    assert caught.value.details["column"] == "name"


def test_create_record_refuses_a_link_to_another_workspaces_record(db, ws):
    other = make_workspace(db, "other")
    foreign_contact = make_contact(db, other)
    pipeline = make_pipeline(db, ws)
    params = {
        "entity": "deal",
        "fields": {
            "title": "Sneaky",
            "pipeline_id": str(pipeline.id),
            "stage_id": str(pipeline.stages["Lead"]),
            "owner_id": str(ws.owner),
            "contact_id": str(foreign_contact),
        },
    }

    with pytest.raises(ActionError, match="contact_id") as caught:
        run_step(db, CREATE_RECORD, params, ws.step())

    assert caught.value.error_class == "not_found"
    assert rows(db, "SELECT 1 FROM deals WHERE title = 'Sneaky'") == []


def test_update_record_an_object_for_a_scalar_column_is_a_validation_error(db, ws):
    contact = make_contact(db, ws)
    step = ws.step(trigger_entity="contact", trigger_entity_id=contact)

    with pytest.raises(ActionError, match=r"fields\.city") as caught:
        run_step(db, UPDATE_RECORD, {"fields": {"city": {"name": "Paris"}}}, step)

    assert caught.value.error_class == "validation"
