"""The listener: outbox → decisions + queued executions, exactly once, in order, per tenant."""

from __future__ import annotations

import threading
from typing import Any
from uuid import UUID

import psycopg
import pytest

from engine.automations import Workspace, deploy, find_workspace
from tests.fakes.crm import make_contact, make_workspace
from triggers.listener import Listener

Conn = psycopg.Connection[Any]


class Sent:
    """Stands in for the Dramatiq send; records what would have been enqueued."""

    def __init__(self) -> None:
        self.ids: list[UUID] = []

    def __call__(self, ids: list[UUID]) -> None:
        self.ids.extend(ids)


def listener(db_url: str, sent: Sent | None = None, **kw: Any) -> Listener:
    return Listener(db_url, enqueue=sent or Sent(), hooks=[], **kw)


def workspace(db: Conn, name: str = "acme") -> tuple[Any, Workspace]:
    ws = make_workspace(db, name)
    return ws, find_workspace(
        db, db.execute("SELECT slug FROM workspaces WHERE id = %s", (ws.id,)).fetchone()[0]
    )


def automation(db: Conn, ws: Workspace, name: str, **doc: Any) -> UUID:
    body = {
        "name": name,
        "trigger_type": "contact_updated",
        "trigger_config": {"watch": ["score"]},
        "actions": [{"id": "t", "type": "add_tag", "params": {"tag": name}}],
        **doc,
    }
    return deploy(db, ws, body, validate=False).automation_id


def scalar(db: Conn, sql: str, *params: Any) -> Any:
    row = db.execute(sql, params).fetchone()
    assert row is not None
    return row[0]


def decisions(db: Conn) -> list[tuple[str, str]]:
    return [
        (r[0], r[1])
        for r in db.execute(
            "SELECT a.name, d.outcome FROM automation_decisions d"
            " JOIN automations a ON a.id = d.automation_id ORDER BY d.event_id, a.name"
        )
    ]


def test_score_update_queues_the_matching_automation_and_filters_the_other(
    db: Conn, db_url: str
) -> None:
    raw, ws = workspace(db)
    hot = automation(db, ws, "hot", conditions={"field": "contact.score", "op": "gte", "value": 80})
    automation(db, ws, "huge", conditions={"field": "contact.score", "op": "gte", "value": 95})
    contact = make_contact(db, raw, score=50)
    db.execute("UPDATE contacts SET score = 90 WHERE id = %s", (contact,))
    sent = Sent()

    listener(db_url, sent).drain(db)

    rows = db.execute(
        "SELECT automation_id, status, trigger_entity_id, workspace_id FROM automation_executions"
    ).fetchall()
    assert rows == [(hot, "queued", contact, raw.id)]
    assert sent.ids == [scalar(db, "SELECT id FROM automation_executions")]
    assert ("hot", "matched") in decisions(db) and ("huge", "filtered") in decisions(db)
    detail = scalar(db, "SELECT detail FROM automation_decisions WHERE outcome = 'filtered'")
    assert (detail["leaf"]["field"], detail["leaf"]["actual"]) == ("contact.score", 90)
    assert scalar(db, "SELECT count(*) FROM automation_events WHERE processed_at IS NULL") == 0


def test_claim_stores_an_updates_values_typed(db: Conn, db_url: str) -> None:
    raw, _ = workspace(db)
    contact = make_contact(db, raw, score=50)
    db.execute("UPDATE contacts SET score = 90 WHERE id = %s", (contact,))

    listener(db_url).drain(db)

    row = db.execute(
        "SELECT values_raw, old_values, new_values FROM automation_events"
        " WHERE event_type = 'contact_updated'"
    ).fetchone()
    assert row == (False, {"score": 50}, {"score": 90})


def test_reclaimed_event_after_a_crash_still_makes_one_execution(db: Conn, db_url: str) -> None:
    raw, ws = workspace(db)
    automation(db, ws, "hot")
    contact = make_contact(db, raw, score=50)
    db.execute("UPDATE contacts SET score = 90 WHERE id = %s", (contact,))
    crashed = listener(db_url)
    # Crash after matching committed but before the event was marked processed:
    with db.transaction():
        cur = db.cursor(row_factory=psycopg.rows.dict_row)
        rows = cur.execute(query_claim(), {"limit": 10, "claimed_by": "crashed"}).fetchall()
        from engine.matching import match_event
        from triggers.listener import as_event, trigger_types_of

        for row in rows:
            event = as_event(row)
            cur.execute("SET LOCAL ROLE haste_app")
            cur.execute("SELECT set_config('app.workspace_id', %s, true)", (str(raw.id),))
            match_event(cur, event, trigger_types_of(event), {"id": raw.id}, crashed.cache)
            cur.execute("RESET ROLE")

    listener(db_url).drain(db)

    assert scalar(db, "SELECT count(*) FROM automation_executions") == 1
    assert scalar(db, "SELECT count(*) FROM automation_events WHERE processed_at IS NULL") == 0


def query_claim() -> str:
    from engine.queries import query

    return query("event_claim_batch")


def test_backlog_written_while_the_listener_was_down_is_all_processed(
    db: Conn, db_url: str
) -> None:
    raw, ws = workspace(db)
    automation(db, ws, "hot", reenrollment="always")
    contacts = [make_contact(db, raw, score=0) for _ in range(50)]
    with db.transaction():
        for i in range(1000):
            db.execute("UPDATE contacts SET score = %s WHERE id = %s", (i + 1, contacts[i % 50]))

    listener(db_url).drain(db)

    assert (
        scalar(db, "SELECT count(*) FROM automation_events WHERE event_type = 'contact_updated'")
        == 1000
    )
    assert scalar(db, "SELECT count(*) FROM automation_events WHERE processed_at IS NULL") == 0
    assert scalar(db, "SELECT count(*) FROM automation_executions") == 1000


def test_two_listeners_on_one_backlog_process_each_event_once(db: Conn, db_url: str) -> None:
    raw, ws = workspace(db)
    automation(db, ws, "hot", reenrollment="always")
    contacts = [make_contact(db, raw, score=0) for _ in range(40)]
    for i in range(600):
        db.execute("UPDATE contacts SET score = %s WHERE id = %s", (i + 1, contacts[i % 40]))
    errors: list[BaseException] = []

    def run(name: str) -> None:
        try:
            with psycopg.connect(db_url, autocommit=True) as conn:
                for _ in range(50):
                    listener(db_url, name=name, batch_size=25).drain(conn)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(f"l{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert scalar(db, "SELECT count(*) FROM automation_events WHERE processed_at IS NULL") == 0
    assert scalar(db, "SELECT count(*) FROM automation_executions") == 600
    assert scalar(db, "SELECT count(DISTINCT event_id) FROM automation_executions") == 600


def test_events_of_one_record_wait_for_an_older_event_held_elsewhere(db: Conn, db_url: str) -> None:
    raw, ws = workspace(db)
    automation(db, ws, "hot", reenrollment="always")
    a, b = make_contact(db, raw, score=0), make_contact(db, raw, score=0)
    db.execute("UPDATE contacts SET score = 1 WHERE id = %s", (a,))
    db.execute("UPDATE contacts SET score = 2 WHERE id = %s", (a,))
    db.execute("UPDATE contacts SET score = 3 WHERE id = %s", (b,))
    first = scalar(
        db,
        "SELECT min(id) FROM automation_events"
        " WHERE entity_id = %s AND event_type = 'contact_updated'",
        a,
    )
    with psycopg.connect(db_url) as other:
        other.execute("SELECT 1 FROM automation_events WHERE id = %s FOR UPDATE", (first,))

        listener(db_url).process_batch(db)

        pending = [
            r[0]
            for r in db.execute(
                "SELECT entity_id FROM automation_events"
                " WHERE processed_at IS NULL AND event_type = 'contact_updated' ORDER BY id"
            )
        ]
        assert pending == [a, a]  # the held one, and the later one of the same record
        other.rollback()
    listener(db_url).drain(db)
    order = [
        r[0]
        for r in db.execute(
            "SELECT e.id FROM automation_executions x JOIN automation_events e ON e.id = x.event_id"
            " WHERE x.trigger_entity_id = %s ORDER BY x.queued_at, e.id",
            (a,),
        )
    ]
    assert order == sorted(order)


def test_workspace_a_automations_never_see_b_events(db: Conn, db_url: str) -> None:
    _, ws_a = workspace(db, "a")
    raw_b, _ = workspace(db, "b")
    automation(db, ws_a, "hot")
    contact_b = make_contact(db, raw_b, score=0)
    db.execute("UPDATE contacts SET score = 99 WHERE id = %s", (contact_b,))

    listener(db_url).drain(db)

    assert scalar(db, "SELECT count(*) FROM automation_executions") == 0
    assert scalar(db, "SELECT count(*) FROM automation_decisions") == 0


def test_run_once_blocks_a_second_run_for_the_same_record(db: Conn, db_url: str) -> None:
    raw, ws = workspace(db)
    automation(db, ws, "once", run_once=True, reenrollment="always")
    contact = make_contact(db, raw, score=0)
    db.execute("UPDATE contacts SET score = 1 WHERE id = %s", (contact,))
    db.execute("UPDATE contacts SET score = 2 WHERE id = %s", (contact,))

    listener(db_url).drain(db)

    assert decisions(db) == [("once", "matched"), ("once", "run_once_blocked")]


def test_active_execution_blocks_reenrollment_by_default(db: Conn, db_url: str) -> None:
    raw, ws = workspace(db)
    automation(db, ws, "default")
    contact = make_contact(db, raw, score=0)
    db.execute("UPDATE contacts SET score = 1 WHERE id = %s", (contact,))
    db.execute("UPDATE contacts SET score = 2 WHERE id = %s", (contact,))

    listener(db_url).drain(db)

    assert decisions(db) == [("default", "matched"), ("default", "reenrollment_blocked")]


def test_unwatched_change_is_a_trigger_config_mismatch(db: Conn, db_url: str) -> None:
    raw, ws = workspace(db)
    automation(db, ws, "hot")
    contact = make_contact(db, raw, score=0)
    db.execute("UPDATE contacts SET city = 'Berlin' WHERE id = %s", (contact,))

    listener(db_url).drain(db)

    assert decisions(db) == [("hot", "trigger_config_mismatch")]
    assert "none of the watched fields" in scalar(
        db, "SELECT detail->>'reason' FROM automation_decisions"
    )


def test_disabled_automation_is_logged_as_disabled(db: Conn, db_url: str) -> None:
    raw, ws = workspace(db)
    automation(db, ws, "off", enabled=False)
    contact = make_contact(db, raw, score=0)
    db.execute("UPDATE contacts SET score = 5 WHERE id = %s", (contact,))

    listener(db_url).drain(db)

    assert decisions(db) == [("off", "disabled")]


def test_condition_on_a_removed_field_is_an_error_not_a_crash(db: Conn, db_url: str) -> None:
    raw, ws = workspace(db)
    broken = automation(
        db, ws, "broken", conditions={"field": "contact.removed_col", "op": "eq", "value": 1}
    )
    automation(db, ws, "fine")
    contact = make_contact(db, raw, score=0)
    db.execute("UPDATE contacts SET score = 5 WHERE id = %s", (contact,))

    listener(db_url).drain(db)

    assert decisions(db) == [("broken", "error"), ("fine", "matched")]
    assert scalar(db, "SELECT error_count FROM automations WHERE id = %s", broken) == 1
    assert "contact.removed_col" in scalar(
        db, "SELECT detail->>'message' FROM automation_decisions WHERE outcome = 'error'"
    )


def test_soft_delete_does_not_fire_update_automations(db: Conn, db_url: str) -> None:
    raw, ws = workspace(db)
    automation(db, ws, "any-update", trigger_config={})
    contact = make_contact(db, raw, score=0)
    db.execute("UPDATE contacts SET deleted_at = now() WHERE id = %s", (contact,))

    listener(db_url).drain(db)

    assert scalar(db, "SELECT count(*) FROM automation_executions") == 0


def test_failed_send_leaves_executions_queued_for_the_reaper(db: Conn, db_url: str) -> None:
    raw, ws = workspace(db)
    automation(db, ws, "hot")
    contact = make_contact(db, raw, score=0)
    db.execute("UPDATE contacts SET score = 5 WHERE id = %s", (contact,))

    def broken_send(ids: list[UUID]) -> None:
        raise ConnectionError("redis is down")

    Listener(db_url, enqueue=broken_send, hooks=[]).drain(db)

    assert scalar(db, "SELECT status FROM automation_executions") == "queued"
    assert scalar(db, "SELECT count(*) FROM automation_events WHERE processed_at IS NULL") == 0


def test_causation_depth_beyond_the_limit_is_cut(db: Conn, db_url: str) -> None:
    raw, ws = workspace(db)
    automation(db, ws, "hot")
    contact = make_contact(db, raw, score=0)
    with db.transaction():
        db.execute("SELECT set_config('app.execution_id', %s, true)", (str(contact),))
        db.execute("SELECT set_config('app.causation_depth', '9', true)")
        db.execute("UPDATE contacts SET score = 5 WHERE id = %s", (contact,))

    listener(db_url).drain(db)

    assert decisions(db) == [("hot", "cycle_depth_exceeded")]


@pytest.mark.parametrize("stage_name", ["Won"])
def test_stage_trigger_fires_on_the_named_stage(db: Conn, db_url: str, stage_name: str) -> None:
    from tests.fakes.crm import make_deal, make_pipeline

    raw, ws = workspace(db)
    pipeline = make_pipeline(db, raw)
    automation(
        db,
        ws,
        "won-stage",
        trigger_type="deal_stage_changed",
        trigger_config={"pipeline": "Sales", "to_stage": stage_name},
        actions=[{"id": "n", "type": "add_note", "params": {"content": "moved"}}],
    )
    deal = make_deal(db, raw, pipeline, "Lead")
    db.execute(
        "UPDATE deals SET stage_id = %s WHERE id = %s", (pipeline.stages["Negotiation"], deal)
    )
    db.execute("UPDATE deals SET stage_id = %s WHERE id = %s", (pipeline.stages[stage_name], deal))

    listener(db_url).drain(db)

    assert decisions(db) == [("won-stage", "trigger_config_mismatch"), ("won-stage", "matched")]


def test_listener_counts_processed_events_and_decisions(db: Conn, db_url: str) -> None:
    from prometheus_client import REGISTRY

    def sample(name: str, labels: dict[str, str]) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    raw, ws = workspace(db)
    automation(db, ws, "hot")
    contact = make_contact(db, raw, score=0)
    db.execute("UPDATE contacts SET score = 5 WHERE id = %s", (contact,))
    processed = sample("haste_events_processed_total", {"result": "processed"})
    matched = sample("haste_decisions_total", {"outcome": "matched"})

    listener(db_url).drain(db)

    assert sample("haste_events_processed_total", {"result": "processed"}) >= processed + 2
    assert sample("haste_decisions_total", {"outcome": "matched"}) == matched + 1
