"""assign_owner: round-robin among active members, fair under concurrency, tenant-safe."""

from __future__ import annotations

import threading
from collections import Counter

import psycopg
import pytest
from fakes.crm import make_contact, make_workspace, row, run_step

from actions import ActionError
from actions.owners import ASSIGN_OWNER


@pytest.fixture
def ws(db):
    return make_workspace(db)


def test_assign_owner_distributes_nine_records_evenly_across_three_members(db, ws):
    members = [ws.add_member(db) for _ in range(3)]
    contacts = [make_contact(db, ws) for _ in range(9)]

    for contact in contacts:
        step = ws.step(trigger_entity="contact", trigger_entity_id=contact)
        run_step(db, ASSIGN_OWNER, {"roles": ["member"]}, step)

    owners = Counter(row(db, "contacts", c)["owner_id"] for c in contacts)
    assert owners == Counter({m: 3 for m in members})


def test_assign_owner_stays_even_when_steps_run_concurrently(db, db_url, ws):
    members = [ws.add_member(db) for _ in range(3)]
    contacts = [make_contact(db, ws) for _ in range(9)]
    start = threading.Barrier(len(contacts))
    failures: list[BaseException] = []

    def assign(contact):
        try:
            with psycopg.connect(db_url, autocommit=True) as conn:
                start.wait()
                step = ws.step(trigger_entity="contact", trigger_entity_id=contact)
                run_step(conn, ASSIGN_OWNER, {"roles": ["member"]}, step)
        except BaseException as exc:  # reported below, not lost in the thread
            failures.append(exc)

    threads = [threading.Thread(target=assign, args=(c,)) for c in contacts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert failures == []
    owners = Counter(row(db, "contacts", c)["owner_id"] for c in contacts)
    assert owners == Counter({m: 3 for m in members})


def test_assign_owner_skips_inactive_members(db, ws):
    active = ws.add_member(db)
    ws.add_member(db, status="suspended")
    contacts = [make_contact(db, ws) for _ in range(2)]

    for contact in contacts:
        step = ws.step(trigger_entity="contact", trigger_entity_id=contact)
        run_step(db, ASSIGN_OWNER, {"roles": ["member"]}, step)

    assert {row(db, "contacts", c)["owner_id"] for c in contacts} == {active}


def test_assign_owner_only_if_unassigned_leaves_an_owned_record_alone(db, ws):
    ws.add_member(db)
    contact = make_contact(db, ws, owner_id=ws.owner)
    step = ws.step(trigger_entity="contact", trigger_entity_id=contact)

    out = run_step(db, ASSIGN_OWNER, {"roles": ["member"], "only_if_unassigned": True}, step)

    assert out["changed"] is False
    assert row(db, "contacts", contact)["owner_id"] == ws.owner


def test_assign_owner_among_users_of_another_workspace_finds_no_one(db, ws):
    other = make_workspace(db, "other")
    contact = make_contact(db, ws)
    step = ws.step(trigger_entity="contact", trigger_entity_id=contact)

    with pytest.raises(ActionError) as caught:
        run_step(db, ASSIGN_OWNER, {"users": [str(other.owner)]}, step)

    assert caught.value.error_class == "not_found"
    assert row(db, "contacts", contact)["owner_id"] is None


def test_assign_owner_of_another_workspaces_record_is_not_found_and_changes_nothing(db, ws):
    ws.add_member(db)
    other = make_workspace(db, "other")
    foreign = make_contact(db, other)

    with pytest.raises(ActionError) as caught:
        run_step(db, ASSIGN_OWNER, {"record": {"entity": "contact", "id": str(foreign)}}, ws.step())

    assert caught.value.error_class == "not_found"
    assert row(db, "contacts", foreign)["owner_id"] is None
