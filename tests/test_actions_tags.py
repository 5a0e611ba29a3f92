"""add_tag / remove_tag on contacts (contact_tags) and companies (companies.tags)."""

from __future__ import annotations

import pytest
from fakes.crm import insert, make_company, make_contact, make_workspace, row, rows, run_step

from actions import ActionError
from actions.tags import ADD_TAG, REMOVE_TAG

CONTACT_TAGS = """
SELECT t.name FROM contact_tags ct JOIN tags t ON t.id = ct.tag_id WHERE ct.contact_id = %s
"""


@pytest.fixture
def ws(db):
    return make_workspace(db)


def test_add_tag_creates_the_missing_tag_and_links_it_to_the_contact(db, ws):
    contact = make_contact(db, ws)
    step = ws.step(trigger_entity="contact", trigger_entity_id=contact)

    out = run_step(db, ADD_TAG, {"tag": "hot-lead"}, step)

    assert out["added"] is True
    assert rows(db, CONTACT_TAGS, contact) == [{"name": "hot-lead"}]
    assert rows(db, "SELECT workspace_id FROM tags WHERE name = 'hot-lead'") == [
        {"workspace_id": ws.id}
    ]


def test_add_tag_twice_leaves_one_row(db, ws):
    contact = make_contact(db, ws)
    step = ws.step(trigger_entity="contact", trigger_entity_id=contact)

    first = run_step(db, ADD_TAG, {"tag": "vip"}, step)
    second = run_step(
        db, ADD_TAG, {"tag": "vip"}, ws.step(trigger_entity="contact", trigger_entity_id=contact)
    )

    assert (first["added"], second["added"]) == (True, False)
    assert rows(db, CONTACT_TAGS, contact) == [{"name": "vip"}]
    assert len(rows(db, "SELECT 1 FROM tags WHERE name = 'vip'")) == 1


def test_add_tag_without_create_if_missing_fails_for_an_unknown_tag(db, ws):
    contact = make_contact(db, ws)
    step = ws.step(trigger_entity="contact", trigger_entity_id=contact)

    with pytest.raises(ActionError, match="'nope'") as caught:
        run_step(db, ADD_TAG, {"tag": "nope", "create_if_missing": False}, step)

    assert caught.value.error_class == "not_found"
    assert rows(db, "SELECT 1 FROM tags") == []


def test_add_tag_uses_this_workspaces_tag_not_another_of_the_same_name(db, ws):
    other = make_workspace(db, "other")
    insert(db, "tags", workspace_id=other.id, name="vip")
    contact = make_contact(db, ws)
    step = ws.step(trigger_entity="contact", trigger_entity_id=contact)

    with pytest.raises(ActionError) as caught:
        run_step(db, ADD_TAG, {"tag": "vip", "create_if_missing": False}, step)

    assert caught.value.error_class == "not_found"


def test_add_tag_to_another_workspaces_contact_is_not_found_and_links_nothing(db, ws):
    other = make_workspace(db, "other")
    foreign = make_contact(db, other)
    params = {"tag": "pwned", "record": {"entity": "contact", "id": str(foreign)}}

    with pytest.raises(ActionError) as caught:
        run_step(db, ADD_TAG, params, ws.step())

    assert caught.value.error_class == "not_found"
    assert rows(db, "SELECT 1 FROM contact_tags") == []


def test_add_tag_to_a_company_appends_to_its_tags_once(db, ws):
    company = make_company(db, ws, tags=["existing"])
    step = ws.step(trigger_entity="company", trigger_entity_id=company)

    run_step(db, ADD_TAG, {"tag": "partner"}, step)
    run_step(db, ADD_TAG, {"tag": "partner"}, step)

    assert row(db, "companies", company)["tags"] == ["existing", "partner"]


def test_remove_tag_unlinks_it_from_the_contact_and_keeps_the_tag(db, ws):
    contact = make_contact(db, ws)
    tag = insert(db, "tags", workspace_id=ws.id, name="cold")
    db.execute("INSERT INTO contact_tags (contact_id, tag_id) VALUES (%s, %s)", (contact, tag))
    step = ws.step(trigger_entity="contact", trigger_entity_id=contact)

    out = run_step(db, REMOVE_TAG, {"tag": "cold"}, step)

    assert out["removed"] is True
    assert rows(db, CONTACT_TAGS, contact) == []
    assert row(db, "tags", tag) is not None


def test_remove_tag_that_is_not_there_changes_nothing(db, ws):
    company = make_company(db, ws, tags=["a"])
    step = ws.step(trigger_entity="company", trigger_entity_id=company)

    out = run_step(db, REMOVE_TAG, {"tag": "b"}, step)

    assert out["removed"] is False
    assert row(db, "companies", company)["tags"] == ["a"]
