"""Event capture (schemas/sql/0030_outbox.sql): CRM writes become outbox rows, in the same
transaction, typed, attributed, isolated per workspace, and with a NOTIFY only while the
listener is idle.

Every test runs in both capture modes (``capture_mode``): the row triggers, and logical
decoding (schemas/sql/0100_capture_logical.sql, triggers/decoder.py), where the helpers
that read the outbox first decode the WAL written so far. The same assertions passing in
both is what makes the two modes interchangeable; tests of the row triggers' own mechanics
(a NOTIFY only when a row made an event, re-running 0030) are marked ``trigger_only``.

Writes go through the owner connection (``db``, autocommit) unless a test is about tenant
code, which runs through engine.db.tenant_transaction exactly as the engine does.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from engine.db import tenant_transaction
from engine.events import Event, trigger_types
from schemas import SQL_DIR
from triggers.capture_mode import switch_capture
from triggers.decoder import Decoder

CHANNEL = "haste_events"
trigger_only = pytest.mark.trigger_only


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "capture_mode" in metafunc.fixturenames:
        marked = metafunc.definition.get_closest_marker("trigger_only")
        modes = ["trigger"] if marked else ["trigger", "logical"]
        metafunc.parametrize("capture_mode", modes, indirect=True)


@pytest.fixture(autouse=True)
def capture_mode(request: pytest.FixtureRequest, db: psycopg.Connection[Any]) -> str:
    if request.param == "logical":
        switch_capture(db, "logical")
    return str(request.param)


def decoded(db: psycopg.Connection[Any]) -> None:
    """In logical mode, the WAL written so far into the outbox (a no-op in trigger mode)."""
    Decoder().catch_up(db)


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def make_workspace(db: psycopg.Connection[Any], slug: str = "acme") -> uuid.UUID:
    row = db.execute(
        "INSERT INTO workspaces (name, slug) VALUES (%s, %s) RETURNING id", (slug, slug)
    ).fetchone()
    assert row is not None
    return row[0]


def make_user(db: psycopg.Connection[Any], email: str = "owner@acme.test") -> uuid.UUID:
    row = db.execute("INSERT INTO users (email) VALUES (%s) RETURNING id", (email,)).fetchone()
    assert row is not None
    return row[0]


def make_contact(db: psycopg.Connection[Any], ws: uuid.UUID, **values: Any) -> uuid.UUID:
    values = {"email": "ada@acme.test", "score": 50, **values}
    cols = ", ".join(values)
    marks = ", ".join(["%s"] * len(values))
    row = db.execute(
        f"INSERT INTO contacts (workspace_id, {cols}) VALUES (%s, {marks}) RETURNING id",
        (ws, *values.values()),
    ).fetchone()
    assert row is not None
    return row[0]


def make_deal(db: psycopg.Connection[Any], ws: uuid.UUID) -> tuple[uuid.UUID, uuid.UUID]:
    """A deal in stage 1 of a two-stage pipeline; returns (deal id, stage 2 id)."""
    owner = make_user(db)
    pipeline = db.execute(
        "INSERT INTO pipelines (workspace_id, name) VALUES (%s, 'Sales') RETURNING id", (ws,)
    ).fetchone()[0]  # type: ignore[index]
    stage1, stage2 = (
        db.execute(
            "INSERT INTO pipeline_stages (pipeline_id, name, order_index)"
            " VALUES (%s, %s, %s) RETURNING id",
            (pipeline, name, i),
        ).fetchone()[0]  # type: ignore[index]
        for i, name in enumerate(("Lead", "Proposal"))
    )
    deal = db.execute(
        "INSERT INTO deals (workspace_id, title, value, pipeline_id, stage_id, owner_id)"
        " VALUES (%s, 'Big one', 1000, %s, %s, %s) RETURNING id",
        (ws, pipeline, stage1, owner),
    ).fetchone()[0]  # type: ignore[index]
    return deal, stage2


def make_email(db: psycopg.Connection[Any], ws: uuid.UUID, *, is_sent: bool = False) -> uuid.UUID:
    row = db.execute(
        "INSERT INTO emails (workspace_id, message_id, from_email, to_emails, subject,"
        " body_text, body_html, is_sent)"
        " VALUES (%s, %s, 'bob@client.test', '{ada@acme.test}', 'Hello', 'Hi Ada',"
        " '<p>Hi Ada</p>', %s) RETURNING id",
        (ws, f"<{uuid.uuid4()}@client.test>", is_sent),
    ).fetchone()
    assert row is not None
    return row[0]


#: The outbox row as the listener's claim hands it over: an UPDATE's values typed.
TYPED_EVENTS = """
SELECT e.*,
       CASE WHEN values_raw THEN haste_capture_typed(entity_type, old_values)
            ELSE old_values END AS old_values,
       CASE WHEN values_raw THEN haste_capture_typed(entity_type, new_values)
            ELSE new_values END AS new_values
FROM public.automation_events e WHERE id > %s ORDER BY id
"""


def events(db: psycopg.Connection[Any], since: int = 0) -> list[Event]:
    """Outbox rows after id ``since``, oldest first, read as the owner (all workspaces),
    with values typed as the listener's claim types them."""
    decoded(db)
    with db.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(TYPED_EVENTS, (since,)).fetchall()
    return [Event.from_row(r) for r in rows]


def raw_values(db: psycopg.Connection[Any], event_id: int) -> tuple[Any, ...]:
    """What the writer stored: (values_raw, old_values, new_values)."""
    row = db.execute(
        "SELECT values_raw, old_values, new_values FROM automation_events WHERE id = %s",
        (event_id,),
    ).fetchone()
    assert row is not None
    return tuple(row)


def last_event_id(db: psycopg.Connection[Any]) -> int:
    decoded(db)
    row = db.execute("SELECT COALESCE(max(id), 0) FROM automation_events").fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def ws(db: psycopg.Connection[Any]) -> uuid.UUID:
    return make_workspace(db)


@pytest.fixture
def contact(db: psycopg.Connection[Any], ws: uuid.UUID) -> Iterator[uuid.UUID]:
    """A contact with score 50, created before the test looks at the outbox."""
    yield make_contact(db, ws)


@pytest.fixture
def listener(db_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A second connection LISTENing on the wake-up channel."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(f"LISTEN {CHANNEL}")
        yield conn


def wake_ups(db: psycopg.Connection[Any], listener: psycopg.Connection[Any]) -> int:
    """Notifications on the channel so far. A sentinel NOTIFY committed after the writes
    marks the end (notifications arrive in commit order), so no sleeping is needed."""
    db.execute("SELECT pg_notify(%s, 'sentinel')", (CHANNEL,))
    for count, note in enumerate(listener.notifies(timeout=10)):
        if note.payload == "sentinel":
            return count
    raise AssertionError("the sentinel notification never arrived")


# ---------------------------------------------------------------------------
# Contacts
# ---------------------------------------------------------------------------


def test_inserting_a_contact_records_contact_created_with_its_values(
    db: psycopg.Connection[Any], ws: uuid.UUID
) -> None:
    contact = make_contact(db, ws, first_name="Ada")

    [event] = events(db)

    assert (event.event_type, event.operation, event.entity_type) == (
        "contact_created",
        "insert",
        "contact",
    )
    assert (event.workspace_id, event.entity_id) == (ws, contact)
    assert event.old_values == {}
    assert event.new_values["first_name"] == "Ada"
    assert event.new_values["score"] == 50
    assert "first_name" in event.changed_fields


def test_updating_score_records_old_and_new_of_that_column_only(
    db: psycopg.Connection[Any], contact: uuid.UUID
) -> None:
    since = last_event_id(db)

    db.execute("UPDATE contacts SET score = 90 WHERE id = %s", (contact,))

    [event] = events(db, since)
    assert (event.event_type, event.operation, event.entity_id) == (
        "contact_updated",
        "update",
        contact,
    )
    assert event.old_values == {"score": 50}
    assert event.new_values == {"score": 90}
    assert event.changed_fields == {"score"}


def test_a_rolled_back_write_records_no_event(
    db: psycopg.Connection[Any], contact: uuid.UUID
) -> None:
    since = last_event_id(db)

    with pytest.raises(RuntimeError), db.transaction():
        db.execute("UPDATE contacts SET score = 90 WHERE id = %s", (contact,))
        raise RuntimeError("abort")

    assert events(db, since) == []


def test_an_update_that_changes_nothing_records_no_event(
    db: psycopg.Connection[Any], contact: uuid.UUID
) -> None:
    since = last_event_id(db)

    db.execute("UPDATE contacts SET score = 50, email = email WHERE id = %s", (contact,))

    assert events(db, since) == []


def test_an_update_of_updated_at_only_records_no_event(
    db: psycopg.Connection[Any], contact: uuid.UUID
) -> None:
    since = last_event_id(db)

    db.execute(
        "UPDATE contacts SET updated_at = NOW() + interval '1 hour' WHERE id = %s", (contact,)
    )

    assert events(db, since) == []


def test_an_embedding_only_update_records_no_event(
    db: psycopg.Connection[Any], contact: uuid.UUID
) -> None:
    since = last_event_id(db)

    db.execute(
        "UPDATE contacts SET embedding = array_fill(0.5, ARRAY[1536])::vector WHERE id = %s",
        (contact,),
    )

    assert events(db, since) == []


def test_the_embedding_is_never_copied_into_an_event(
    db: psycopg.Connection[Any], ws: uuid.UUID
) -> None:
    contact = make_contact(db, ws)
    db.execute(
        "UPDATE contacts SET embedding = array_fill(0.5, ARRAY[1536])::vector,"
        " score = 60 WHERE id = %s",
        (contact,),
    )
    db.execute("DELETE FROM contacts WHERE id = %s", (contact,))

    for event in events(db):
        assert "embedding" not in event.old_values
        assert "embedding" not in event.new_values
        assert "embedding" not in event.changed_fields


def test_soft_delete_records_contact_deleted(
    db: psycopg.Connection[Any], contact: uuid.UUID
) -> None:
    since = last_event_id(db)

    db.execute("UPDATE contacts SET deleted_at = NOW() WHERE id = %s", (contact,))

    [event] = events(db, since)
    assert (event.event_type, event.operation) == ("contact_deleted", "delete")
    assert event.old_values == {"deleted_at": None}
    assert event.changed_fields == {"deleted_at"}


def test_a_soft_deleted_record_records_no_more_updates(
    db: psycopg.Connection[Any], contact: uuid.UUID
) -> None:
    db.execute("UPDATE contacts SET deleted_at = NOW() WHERE id = %s", (contact,))
    since = last_event_id(db)

    db.execute("UPDATE contacts SET score = 1 WHERE id = %s", (contact,))
    db.execute("DELETE FROM contacts WHERE id = %s", (contact,))

    assert events(db, since) == []


def test_hard_delete_records_contact_deleted_with_the_old_values(
    db: psycopg.Connection[Any], contact: uuid.UUID
) -> None:
    since = last_event_id(db)

    db.execute("DELETE FROM contacts WHERE id = %s", (contact,))

    [event] = events(db, since)
    assert (event.event_type, event.operation, event.entity_id) == (
        "contact_deleted",
        "delete",
        contact,
    )
    assert event.old_values["email"] == "ada@acme.test"
    assert event.new_values == {}


def test_values_are_typed_as_to_jsonb_types_them(
    db: psycopg.Connection[Any], contact: uuid.UUID
) -> None:
    since = last_event_id(db)

    db.execute(
        'UPDATE contacts SET custom_fields = \'{"plan": "pro", "seats": [1, 2]}\','
        " last_contacted_at = '2024-05-01 10:00:00+02', lifecycle_stage = 'MQL'"
        " WHERE id = %s",
        (contact,),
    )

    [event] = events(db, since)
    expected = db.execute(
        "SELECT jsonb_build_object('custom_fields', c.custom_fields,"
        " 'last_contacted_at', to_jsonb(c.last_contacted_at),"
        " 'lifecycle_stage', c.lifecycle_stage)"
        " FROM contacts c WHERE id = %s",
        (contact,),
    ).fetchone()[0]  # type: ignore[index]
    assert event.new_values == expected
    assert event.new_values["custom_fields"] == {"plan": "pro", "seats": [1, 2]}


# ---------------------------------------------------------------------------
# Tags, emails, tracking, deals and the other record tables
# ---------------------------------------------------------------------------


def test_tagging_a_contact_records_contact_tagged_with_the_tag_name(
    db: psycopg.Connection[Any], ws: uuid.UUID, contact: uuid.UUID
) -> None:
    tag = db.execute(
        "INSERT INTO tags (workspace_id, name) VALUES (%s, 'vip') RETURNING id", (ws,)
    ).fetchone()[0]  # type: ignore[index]
    since = last_event_id(db)

    db.execute("INSERT INTO contact_tags (contact_id, tag_id) VALUES (%s, %s)", (contact, tag))

    [event] = events(db, since)
    assert (event.event_type, event.entity_type, event.entity_id, event.workspace_id) == (
        "contact_tagged",
        "contact",
        contact,
        ws,
    )
    assert event.new_values == {"tag_id": str(tag), "tag_name": "vip"}


def test_untagging_a_contact_records_contact_untagged(
    db: psycopg.Connection[Any], ws: uuid.UUID, contact: uuid.UUID
) -> None:
    tag = db.execute(
        "INSERT INTO tags (workspace_id, name) VALUES (%s, 'vip') RETURNING id", (ws,)
    ).fetchone()[0]  # type: ignore[index]
    db.execute("INSERT INTO contact_tags (contact_id, tag_id) VALUES (%s, %s)", (contact, tag))
    since = last_event_id(db)

    db.execute("DELETE FROM contact_tags WHERE contact_id = %s", (contact,))

    [event] = events(db, since)
    assert (event.event_type, event.entity_id) == ("contact_untagged", contact)
    assert event.old_values == {"tag_id": str(tag), "tag_name": "vip"}


def test_tagging_twice_with_on_conflict_records_one_event(
    db: psycopg.Connection[Any], ws: uuid.UUID, contact: uuid.UUID
) -> None:
    tag = db.execute(
        "INSERT INTO tags (workspace_id, name) VALUES (%s, 'vip') RETURNING id", (ws,)
    ).fetchone()[0]  # type: ignore[index]
    since = last_event_id(db)

    for _ in range(2):
        db.execute(
            "INSERT INTO contact_tags (contact_id, tag_id) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (contact, tag),
        )

    assert [e.event_type for e in events(db, since)] == ["contact_tagged"]


@pytest.mark.parametrize(
    ("is_sent", "event_type"), [(False, "email_received"), (True, "email_sent")]
)
def test_an_inserted_email_records_received_or_sent(
    db: psycopg.Connection[Any], ws: uuid.UUID, is_sent: bool, event_type: str
) -> None:
    email = make_email(db, ws, is_sent=is_sent)

    [event] = events(db)
    assert (event.event_type, event.entity_type, event.entity_id) == (event_type, "email", email)
    assert event.new_values["subject"] == "Hello"
    assert event.new_values["to_emails"] == ["ada@acme.test"]


def test_an_email_body_html_is_not_copied(db: psycopg.Connection[Any], ws: uuid.UUID) -> None:
    make_email(db, ws)

    [event] = events(db)
    assert "body_html" not in event.new_values
    assert event.new_values["body_text"] == "Hi Ada"


@pytest.mark.parametrize(
    ("tracking", "event_type"), [("open", "email_opened"), ("click", "email_clicked")]
)
def test_a_tracking_event_records_an_event_of_the_email(
    db: psycopg.Connection[Any], ws: uuid.UUID, tracking: str, event_type: str
) -> None:
    email = make_email(db, ws)
    since = last_event_id(db)

    db.execute(
        "INSERT INTO email_tracking_events (email_id, event_type, link_url)"
        " VALUES (%s, %s, 'https://acme.test/pricing')",
        (email, tracking),
    )

    [event] = events(db, since)
    assert (event.event_type, event.entity_type, event.entity_id, event.workspace_id) == (
        event_type,
        "email",
        email,
        ws,
    )
    assert event.new_values["link_url"] == "https://acme.test/pricing"


def test_a_deal_stage_change_records_deal_updated_with_the_stage_ids(
    db: psycopg.Connection[Any], ws: uuid.UUID
) -> None:
    deal, stage2 = make_deal(db, ws)
    stage1 = db.execute("SELECT stage_id FROM deals WHERE id = %s", (deal,)).fetchone()[0]  # type: ignore[index]
    since = last_event_id(db)

    db.execute("UPDATE deals SET stage_id = %s WHERE id = %s", (stage2, deal))

    [event] = events(db, since)
    assert event.event_type == "deal_updated"
    assert event.old_values == {"stage_id": str(stage1)}
    assert event.new_values == {"stage_id": str(stage2)}
    assert trigger_types(event) == {"deal_updated", "deal_stage_changed"}


def test_a_deal_set_to_won_stands_for_deal_won(db: psycopg.Connection[Any], ws: uuid.UUID) -> None:
    deal, _ = make_deal(db, ws)
    since = last_event_id(db)

    db.execute("UPDATE deals SET status = 'won', value = 1250.50 WHERE id = %s", (deal,))

    [event] = events(db, since)
    assert event.new_values == {"status": "won", "value": 1250.50}
    assert trigger_types(event) == {"deal_updated", "deal_won"}


RECORD_TABLES = {
    # table: (entity, INSERT ... RETURNING id with %(ws)s, SET clause of a real change)
    "companies": (
        "company",
        "INSERT INTO companies (workspace_id, name) VALUES (%(ws)s, 'Acme') RETURNING id",
        "industry = 'Software'",
    ),
    "tasks": (
        "task",
        "INSERT INTO tasks (workspace_id, title, assigned_to)"
        " VALUES (%(ws)s, 'Call Ada', %(user)s) RETURNING id",
        "status = 'completed'",
    ),
    "notes": (
        "note",
        "INSERT INTO notes (workspace_id, content, entity_type, entity_id, created_by)"
        " VALUES (%(ws)s, 'Met at the fair', 'contact', gen_random_uuid(), %(user)s)"
        " RETURNING id",
        "is_pinned = true",
    ),
}


@pytest.mark.parametrize("table", sorted(RECORD_TABLES))
def test_a_record_table_records_created_updated_and_deleted(
    db: psycopg.Connection[Any], ws: uuid.UUID, table: str
) -> None:
    entity, insert, change = RECORD_TABLES[table]
    user = make_user(db)

    record = db.execute(insert, {"ws": ws, "user": user}).fetchone()[0]  # type: ignore[index]
    db.execute(f"UPDATE {table} SET {change} WHERE id = %s", (record,))
    db.execute(f"UPDATE {table} SET deleted_at = NOW() WHERE id = %s", (record,))

    assert [(e.event_type, e.entity_type, e.entity_id) for e in events(db)] == [
        (f"{entity}_created", entity, record),
        (f"{entity}_updated", entity, record),
        (f"{entity}_deleted", entity, record),
    ]


def test_an_activity_records_activity_created(db: psycopg.Connection[Any], ws: uuid.UUID) -> None:
    contact = make_contact(db, ws)
    since = last_event_id(db)

    db.execute(
        "INSERT INTO activities (workspace_id, type, title, entity_type, entity_id, contact_id)"
        " VALUES (%s, 'call_made', 'Called Ada', 'contact', %s, %s)",
        (ws, contact, contact),
    )

    [event] = events(db, since)
    assert (event.event_type, event.entity_type) == ("activity_created", "activity")
    assert event.new_values["type"] == "call_made"


# ---------------------------------------------------------------------------
# Actor and causation
# ---------------------------------------------------------------------------


def test_the_actor_is_app_user_id(db: psycopg.Connection[Any], contact: uuid.UUID) -> None:
    user = make_user(db)
    since = last_event_id(db)

    with db.transaction():
        db.execute("SELECT set_config('app.user_id', %s, true)", (str(user),))
        db.execute("UPDATE contacts SET score = 90 WHERE id = %s", (contact,))

    [event] = events(db, since)
    assert event.actor_user_id == user


def test_causation_comes_from_the_execution_with_depth_plus_one(
    db: psycopg.Connection[Any], contact: uuid.UUID
) -> None:
    execution = uuid.uuid4()
    since = last_event_id(db)

    with db.transaction():
        db.execute("SELECT set_config('app.execution_id', %s, true)", (str(execution),))
        db.execute("SELECT set_config('app.causation_depth', '2', true)")
        db.execute("UPDATE contacts SET score = 90 WHERE id = %s", (contact,))

    [event] = events(db, since)
    assert (event.causation_execution_id, event.depth) == (execution, 3)


def test_a_human_change_has_no_causation_and_depth_zero(
    db: psycopg.Connection[Any], contact: uuid.UUID
) -> None:
    since = last_event_id(db)

    db.execute("UPDATE contacts SET score = 90 WHERE id = %s", (contact,))

    [event] = events(db, since)
    assert (event.actor_user_id, event.causation_execution_id, event.depth) == (None, None, 0)


# ---------------------------------------------------------------------------
# Tenants
# ---------------------------------------------------------------------------


def test_writes_through_tenant_transaction_record_events(
    db: psycopg.Connection[Any], ws: uuid.UUID, contact: uuid.UUID
) -> None:
    user = make_user(db)
    since = last_event_id(db)

    with tenant_transaction(
        db, ws, user, settings={"app.execution_id": str(uuid.uuid4()), "app.causation_depth": "0"}
    ) as cur:
        cur.execute("UPDATE contacts SET score = 90 WHERE id = %s", (contact,))

    [event] = events(db, since)
    assert (event.event_type, event.workspace_id, event.actor_user_id, event.depth) == (
        "contact_updated",
        ws,
        user,
        1,
    )


def test_tagging_and_tracking_through_tenant_transaction_record_events(
    db: psycopg.Connection[Any], ws: uuid.UUID, contact: uuid.UUID
) -> None:
    email = make_email(db, ws)
    since = last_event_id(db)

    with tenant_transaction(db, ws) as cur:
        cur.execute("INSERT INTO tags (workspace_id, name) VALUES (%s, 'vip') RETURNING id", (ws,))
        tag = cur.fetchone()[0]  # type: ignore[index]
        cur.execute("INSERT INTO contact_tags (contact_id, tag_id) VALUES (%s, %s)", (contact, tag))
        cur.execute(
            "INSERT INTO email_tracking_events (email_id, event_type) VALUES (%s, 'open')",
            (email,),
        )

    assert [e.event_type for e in events(db, since)] == ["contact_tagged", "email_opened"]


def test_tenant_code_cannot_write_the_outbox(db: psycopg.Connection[Any], ws: uuid.UUID) -> None:
    with pytest.raises(errors.InsufficientPrivilege), tenant_transaction(db, ws) as cur:
        cur.execute(
            "INSERT INTO automation_events (workspace_id, event_type) VALUES (%s, 'manual')",
            (ws,),
        )


def test_a_workspace_sees_only_its_own_events(db: psycopg.Connection[Any]) -> None:
    a, b = make_workspace(db, "a"), make_workspace(db, "b")
    make_contact(db, a, email="a@a.test")
    make_contact(db, b, email="b@b.test")
    decoded(db)

    with tenant_transaction(db, b) as cur:
        seen = cur.execute("SELECT workspace_id, new_values->>'email' FROM automation_events")
        rows = seen.fetchall()

    assert rows == [(b, "b@b.test")]


def test_capture_ignores_the_callers_search_path_and_temp_tables(
    db: psycopg.Connection[Any], ws: uuid.UUID, contact: uuid.UUID
) -> None:
    since = last_event_id(db)

    with tenant_transaction(db, ws) as cur:
        cur.execute(
            "CREATE TEMP TABLE automation_events (LIKE public.automation_events) ON COMMIT DROP"
        )
        cur.execute("SET LOCAL search_path = pg_temp, pg_catalog")
        cur.execute("UPDATE public.contacts SET score = 90 WHERE id = %s", (contact,))
        cur.execute("SELECT count(*) FROM pg_temp.automation_events")
        in_temp = cur.fetchone()

    assert in_temp == (0,)
    assert [e.event_type for e in events(db, since)] == ["contact_updated"]


# ---------------------------------------------------------------------------
# Wake-ups
# ---------------------------------------------------------------------------


def test_one_notify_per_statement_while_the_listener_is_idle(
    db: psycopg.Connection[Any], ws: uuid.UUID, listener: psycopg.Connection[Any]
) -> None:
    for i in range(3):
        make_contact(db, ws, email=f"c{i}@acme.test")
    db.execute("SELECT haste_listener_idle(true)")
    wake_ups(db, listener)  # drop the ones the inserts sent

    db.execute("UPDATE contacts SET score = score + 1")  # three rows, one statement

    assert wake_ups(db, listener) == 1


def test_no_notify_while_the_listener_is_busy(
    db: psycopg.Connection[Any], contact: uuid.UUID, listener: psycopg.Connection[Any]
) -> None:
    db.execute("SELECT haste_listener_idle(false)")

    db.execute("UPDATE contacts SET score = 90 WHERE id = %s", (contact,))

    assert wake_ups(db, listener) == 0


@trigger_only  # logical mode's wake-up is a statement trigger: it cannot see the rows
def test_no_notify_when_no_event_was_recorded(
    db: psycopg.Connection[Any], contact: uuid.UUID, listener: psycopg.Connection[Any]
) -> None:
    db.execute("SELECT haste_listener_idle(true)")

    db.execute("UPDATE contacts SET score = 50 WHERE id = %s", (contact,))

    assert wake_ups(db, listener) == 0


def test_the_listener_state_view_shows_the_flag(db: psycopg.Connection[Any]) -> None:
    states = []
    for idle in (False, True):
        db.execute("SELECT haste_listener_idle(%s)", (idle,))
        states.append(db.execute("SELECT idle FROM automation_listener_state").fetchone())

    assert states == [(False,), (True,)]


def test_tenant_code_cannot_flip_the_listener_flag(
    db: psycopg.Connection[Any], ws: uuid.UUID
) -> None:
    with pytest.raises(errors.InsufficientPrivilege), tenant_transaction(db, ws) as cur:
        cur.execute("SELECT haste_listener_idle(true)")


# ---------------------------------------------------------------------------
# Schema evolution and ordering
# ---------------------------------------------------------------------------


def test_a_new_column_is_typed_without_regenerating_the_trigger(
    db: psycopg.Connection[Any], contact: uuid.UUID
) -> None:
    db.execute("ALTER TABLE contacts ADD COLUMN nps integer")
    db.execute("UPDATE contacts SET nps = 7 WHERE id = %s", (contact,))

    (event,) = events(db)[-1:]
    assert (event.old_values, event.new_values) == ({"nps": None}, {"nps": 7})


def test_an_update_stores_text_forms_for_the_listener_to_type(
    db: psycopg.Connection[Any], contact: uuid.UUID
) -> None:
    since = last_event_id(db)
    db.execute(
        'UPDATE contacts SET score = 90, custom_fields = \'{"plan": "pro"}\' WHERE id = %s',
        (contact,),
    )

    (event,) = events(db, since)
    stored = raw_values(db, event.id)
    assert stored == (
        True,
        {"score": "50", "custom_fields": "{}"},
        {"score": "90", "custom_fields": '{"plan": "pro"}'},
    )
    assert (event.old_values, event.new_values) == (
        {"score": 50, "custom_fields": {}},
        {"score": 90, "custom_fields": {"plan": "pro"}},
    )


def test_typing_keeps_the_text_of_a_column_dropped_since_the_capture(
    db: psycopg.Connection[Any],
) -> None:
    typed = db.execute(
        "SELECT haste_capture_typed('contact', %s)",
        (Jsonb({"score": "7", "gone": "x", "lifecycle_stage": None}),),
    ).fetchone()

    assert typed == ({"score": 7, "gone": "x", "lifecycle_stage": None},)


def test_event_ids_are_not_cached_so_one_records_events_follow_its_commits(
    db: psycopg.Connection[Any],
) -> None:
    cache = db.execute(
        "SELECT s.seqcache FROM pg_sequence s"
        " WHERE s.seqrelid = pg_get_serial_sequence('automation_events', 'id')::regclass"
    ).fetchone()

    assert cache == (1,)


@trigger_only
def test_the_migration_can_run_again(db: psycopg.Connection[Any], contact: uuid.UUID) -> None:
    with db.transaction():
        db.execute((SQL_DIR / "0030_outbox.sql").read_text().encode())
    since = last_event_id(db)
    db.execute("UPDATE contacts SET score = 90 WHERE id = %s", (contact,))

    assert [e.event_type for e in events(db, since)] == ["contact_updated"]
    assert events(db, 0)[0].event_type == "contact_created"  # earlier events are kept
