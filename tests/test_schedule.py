"""time_based automations in PostgreSQL: sync, fire, advance; misfire and overlap after
downtime; date-field schedules kept right by the listener's hook. The clock is fake:
tests move it, nothing sleeps."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
import pytest

from engine.db import tenant_transaction
from tests.fakes.crm import Workspace, make_deal, make_pipeline, make_user, make_workspace, rows
from tests.fakes.executions import deploy_doc
from tests.fakes.scheduling import deal_date_doc, make_outbox, outbox, outbox_emit, time_doc
from triggers import schedule

Conn = psycopg.Connection[Any]
GRACE = timedelta(seconds=60)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture
def ws(db: Conn) -> Workspace:
    make_outbox(db)
    return make_workspace(db)


def deploy(db: Conn, ws: Workspace, doc: dict[str, Any]) -> UUID:
    return deploy_doc(db, ws, doc)[0]


def tick(db: Conn, now: datetime) -> schedule.PassResult:
    """What one leader pass does at ``now``."""
    total = schedule.PassResult()
    schedule.sync(db, now)
    for step in (schedule.fire_due_schedules, schedule.fire_due_records):
        while True:
            result = step(db, now, emit=outbox_emit, grace=GRACE, fired_by="test")
            total.add(result)
            if result.claimed < schedule.DEFAULT_BATCH:
                break
    total.add(schedule.fire_buffered(db, now, emit=outbox_emit, fired_by="test"))
    return total


def fires(db: Conn, automation: UUID, outcome: str | None = "emitted") -> list[datetime]:
    found = rows(
        db,
        "SELECT scheduled_for FROM schedule_fires WHERE automation_id = %s"
        " AND (%s::text IS NULL OR outcome = %s) ORDER BY scheduled_for",
        automation,
        outcome,
        outcome,
    )
    return [r["scheduled_for"] for r in found]


def automation(db: Conn, automation_id: UUID) -> dict[str, Any]:
    return rows(db, "SELECT * FROM automations WHERE id = %s", automation_id)[0]


# --- cron across DST ---------------------------------------------------------------------


def test_cron_in_berlin_fires_at_the_right_utc_instants_across_both_dst_changes(db, ws) -> None:
    nine = deploy(db, ws, time_doc({"cron": "0 9 * * *", "timezone": "Europe/Berlin"}))
    gap = deploy(db, ws, time_doc({"cron": "30 2 * * *", "timezone": "Europe/Berlin"}))
    for start, days in ((utc(2025, 3, 28, 12), 4), (utc(2025, 10, 24, 12), 4)):
        now = start
        schedule.sync(db, now)
        while now < start + timedelta(days=days):
            now += timedelta(minutes=20)
            tick(db, now)
    assert fires(db, nine) == [
        utc(2025, 3, 29, 8),
        utc(2025, 3, 30, 7),
        utc(2025, 3, 31, 7),
        utc(2025, 4, 1, 7),
        utc(2025, 10, 25, 7),
        utc(2025, 10, 26, 8),
        utc(2025, 10, 27, 8),
        utc(2025, 10, 28, 8),
    ]
    assert fires(db, gap) == [
        utc(2025, 3, 29, 1, 30),
        utc(2025, 3, 30, 1, 30),  # 02:30 is in the gap: 03:30 CEST
        utc(2025, 3, 31, 0, 30),
        utc(2025, 4, 1, 0, 30),
        utc(2025, 10, 25, 0, 30),
        utc(2025, 10, 26, 0, 30),  # 02:30 happens twice: once
        utc(2025, 10, 27, 1, 30),
        utc(2025, 10, 28, 1, 30),
    ]
    # Every fire went to the outbox once, as a targeted time_based event.
    events = [e for e in outbox(db) if e["automation_id"] == nine]
    assert len(events) == 8
    assert {e["event_type"] for e in events} == {"time_based"}
    assert events[0]["payload"] == {
        "scheduled_for": "2025-03-29T08:00:00+00:00",
        "fire_key": "2025-03-29T08:00:00+00:00",
    }
    row = automation(db, nine)
    assert row["next_run_at"] == utc(2025, 10, 29, 8)
    assert row["last_run_at"] is not None


def test_sync_follows_deploys_and_enable_disable(db, ws) -> None:
    doc = time_doc({"cron": "0 * * * *", "timezone": "UTC"})
    auto = deploy(db, ws, doc)
    schedule.sync(db, utc(2025, 1, 1, 10, 30))
    assert automation(db, auto)["next_run_at"] == utc(2025, 1, 1, 11)

    deploy_doc(db, ws, {**doc, "trigger_config": {"cron": "15 * * * *", "timezone": "UTC"}})
    schedule.sync(db, utc(2025, 1, 1, 10, 31))
    assert automation(db, auto)["next_run_at"] == utc(2025, 1, 1, 11, 15)

    db.execute("UPDATE automations SET enabled = false WHERE id = %s", (auto,))
    schedule.sync(db, utc(2025, 1, 1, 10, 32))
    assert automation(db, auto)["next_run_at"] is None
    assert tick(db, utc(2025, 1, 1, 12)).emitted == []

    # Re-enabled a day later: the hours it was off are not "missed" fires.
    db.execute("UPDATE automations SET enabled = true WHERE id = %s", (auto,))
    assert tick(db, utc(2025, 1, 2, 10, 50)).emitted == []
    assert automation(db, auto)["next_run_at"] == utc(2025, 1, 2, 11, 15)


def test_a_one_off_at_fires_once_then_has_no_next_run(db, ws) -> None:
    auto = deploy(db, ws, time_doc({"at": "2025-05-01T09:00:00+02:00"}))
    schedule.sync(db, utc(2025, 4, 30))
    assert automation(db, auto)["next_run_at"] == utc(2025, 5, 1, 7)
    assert len(tick(db, utc(2025, 5, 1, 7, 0, 1)).emitted) == 1
    assert tick(db, utc(2025, 5, 2)).emitted == []
    assert automation(db, auto)["next_run_at"] is None
    assert fires(db, auto) == [utc(2025, 5, 1, 7)]


def test_the_same_fire_is_never_emitted_twice(db, ws) -> None:
    auto = deploy(db, ws, time_doc({"cron": "0 * * * *", "timezone": "UTC"}))
    schedule.sync(db, utc(2025, 1, 1, 9, 30))
    assert len(tick(db, utc(2025, 1, 1, 10, 0, 5)).emitted) == 1
    # A replica that read next_run_at before the advance committed retries the same fire.
    db.execute("UPDATE automations SET next_run_at = %s WHERE id = %s", (utc(2025, 1, 1, 10), auto))
    assert tick(db, utc(2025, 1, 1, 10, 0, 6)).emitted == []
    assert len(outbox(db)) == 1
    assert automation(db, auto)["next_run_at"] == utc(2025, 1, 1, 11)


def test_an_emit_that_fails_rolls_the_fire_and_the_advance_back(db, ws) -> None:
    auto = deploy(db, ws, time_doc({"cron": "0 * * * *", "timezone": "UTC"}))
    schedule.sync(db, utc(2025, 1, 1, 9, 30))

    def broken(cur: Any, **kwargs: Any) -> int:
        raise RuntimeError("outbox unavailable")

    with pytest.raises(RuntimeError):
        schedule.fire_due_schedules(db, utc(2025, 1, 1, 10, 0, 1), emit=broken)
    assert fires(db, auto, None) == []
    assert automation(db, auto)["next_run_at"] == utc(2025, 1, 1, 10)
    assert len(tick(db, utc(2025, 1, 1, 10, 0, 2)).emitted) == 1


# --- misfire after downtime ------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "emitted", "skipped"),
    [
        ("skip", [], [5, 10, 15]),
        ("run_once", [15], [5, 10]),
        ("run_all", [5, 10, 15], []),
    ],
)
def test_downtime_of_three_intervals_follows_the_misfire_policy(
    db, ws, policy: str, emitted: list[int], skipped: list[int]
) -> None:
    auto = deploy(db, ws, time_doc({"cron": "*/5 * * * *", "timezone": "UTC", "misfire": policy}))
    schedule.sync(db, utc(2025, 1, 1, 10, 0, 30))  # next: 10:05
    tick(db, utc(2025, 1, 1, 10, 18))  # down through 10:05, 10:10, 10:15
    assert fires(db, auto) == [utc(2025, 1, 1, 10, m) for m in emitted]
    assert fires(db, auto, "skipped_misfire") == [utc(2025, 1, 1, 10, m) for m in skipped]
    assert automation(db, auto)["next_run_at"] == utc(2025, 1, 1, 10, 20)
    # Back on time: the next fire is a plain fire whatever the policy.
    tick(db, utc(2025, 1, 1, 10, 20, 1))
    assert fires(db, auto)[-1] == utc(2025, 1, 1, 10, 20)


def test_missed_fires_older_than_the_catch_up_window_are_skipped(db, ws) -> None:
    config = {"cron": "*/5 * * * *", "misfire": "run_all", "catch_up_window": {"minutes": 10}}
    auto = deploy(db, ws, time_doc({**config, "timezone": "UTC"}))
    schedule.sync(db, utc(2025, 1, 1, 10, 0, 30))
    tick(db, utc(2025, 1, 1, 10, 18))
    assert fires(db, auto) == [utc(2025, 1, 1, 10, 10), utc(2025, 1, 1, 10, 15)]
    assert fires(db, auto, "skipped_window") == [utc(2025, 1, 1, 10, 5)]


# --- overlap -----------------------------------------------------------------------------


def live_execution(db: Conn, ws: Workspace, auto: UUID) -> UUID:
    row = db.execute(
        "INSERT INTO automation_executions (automation_id, workspace_id, status, exclusive,"
        " triggered_by) VALUES (%s, %s, 'running', false, 'time_based') RETURNING id",
        (auto, ws.id),
    ).fetchone()
    assert row is not None
    return row[0]


@pytest.mark.parametrize(
    ("policy", "while_running", "after_it_ends"),
    [("skip", [], []), ("allow", [10, 11], []), ("buffer_one", [], [10])],
)
def test_overlap_policy_when_the_previous_run_is_still_going(
    db, ws, policy: str, while_running: list[int], after_it_ends: list[int]
) -> None:
    auto = deploy(db, ws, time_doc({"cron": "0 * * * *", "timezone": "UTC", "overlap": policy}))
    schedule.sync(db, utc(2025, 1, 1, 9, 30))
    run = live_execution(db, ws, auto)
    tick(db, utc(2025, 1, 1, 10, 0, 1))
    tick(db, utc(2025, 1, 1, 11, 0, 1))
    assert fires(db, auto) == [utc(2025, 1, 1, h) for h in while_running]
    db.execute("UPDATE automation_executions SET status = 'completed' WHERE id = %s", (run,))
    tick(db, utc(2025, 1, 1, 11, 5))
    assert fires(db, auto) == [utc(2025, 1, 1, h) for h in while_running + after_it_ends]
    if policy != "allow":
        # skip: both skipped; buffer_one: 10:00 held back (emitted later), 11:00 skipped.
        expected = [10, 11] if policy == "skip" else [11]
        assert fires(db, auto, "skipped_overlap") == [utc(2025, 1, 1, h) for h in expected]


# --- date fields ---------------------------------------------------------------------------


def deal_event(
    ws: Workspace, deal: UUID, operation: str, changed: list[str], new: dict[str, Any]
) -> dict[str, Any]:
    return {
        "workspace_id": ws.id,
        "entity_type": "deal",
        "entity_id": deal,
        "operation": operation,
        "event_type": "deal_updated",
        "old": {},
        "new": new,
        "changed_fields": changed,
    }


def as_listener(db: Conn, ws: Workspace, event: dict[str, Any]) -> None:
    """What the listener does: call the hook inside its tenant transaction."""
    with tenant_transaction(db, ws.id) as cur:
        schedule.on_record_event(cur, event)


def due_rows(db: Conn, auto: UUID) -> list[dict[str, Any]]:
    return rows(
        db,
        "SELECT entity_id, date_value, due_at, status FROM schedule_record_due"
        " WHERE automation_id = %s ORDER BY entity_id",
        auto,
    )


def test_a_date_field_automation_fires_once_reschedules_on_change_and_never_for_deleted(
    db, ws
) -> None:
    pipeline = make_pipeline(db, ws)
    deal = make_deal(db, ws, pipeline, expected_close_date=date(2025, 3, 31))
    gone = make_deal(db, ws, pipeline, expected_close_date=date(2025, 3, 31))
    config = {"offset": {"days": -3}, "time": "09:00", "timezone": "Europe/Berlin"}
    auto = deploy(db, ws, deal_date_doc(config))

    schedule.sync(db, utc(2025, 3, 1))
    assert [(r["date_value"], r["due_at"], r["status"]) for r in due_rows(db, auto)] == [
        ("2025-03-31", utc(2025, 3, 28, 8), "pending")
    ] * 2
    assert automation(db, auto)["next_run_at"] == utc(2025, 3, 28, 8)

    # Deleted with no event yet (the listener lags): the fire-time check still refuses it.
    db.execute("UPDATE deals SET deleted_at = now() WHERE id = %s", (gone,))
    result = tick(db, utc(2025, 3, 28, 8, 0, 5))
    assert [f.entity_id for f in result.emitted] == [deal]
    assert result.cancelled == 1
    assert tick(db, utc(2025, 3, 28, 9)).emitted == []
    [event] = [e for e in outbox(db) if e["automation_id"] == auto]
    assert (event["entity_type"], event["entity_id"]) == ("deal", deal)
    assert event["payload"]["fire_key"] == f"{deal}:2025-03-31"

    # Moving the date re-schedules it: one more fire, at the new instant.
    db.execute("UPDATE deals SET expected_close_date = '2025-04-10' WHERE id = %s", (deal,))
    as_listener(
        db,
        ws,
        deal_event(
            ws, deal, "update", ["expected_close_date"], {"expected_close_date": "2025-04-10"}
        ),
    )
    assert [(r["date_value"], r["status"]) for r in due_rows(db, auto)] == [
        ("2025-04-10", "pending")
    ]
    assert tick(db, utc(2025, 4, 7, 6, 59)).emitted == []
    assert len(tick(db, utc(2025, 4, 7, 7, 0, 1)).emitted) == 1  # 09:00 CEST

    # Deleting the record cancels what is scheduled for it.
    db.execute("UPDATE deals SET expected_close_date = '2025-05-10' WHERE id = %s", (deal,))
    as_listener(db, ws, deal_event(ws, deal, "update", ["expected_close_date"], {}))
    db.execute("UPDATE deals SET deleted_at = now() WHERE id = %s", (deal,))
    as_listener(db, ws, deal_event(ws, deal, "update", ["deleted_at"], {"deleted_at": "now"}))
    assert due_rows(db, auto) == []
    assert tick(db, utc(2025, 5, 7, 8)).emitted == []
    assert len([e for e in outbox(db) if e["automation_id"] == auto]) == 2
    assert automation(db, auto)["next_run_at"] is None


def test_a_date_moved_back_to_a_value_already_fired_does_not_fire_again(db, ws) -> None:
    pipeline = make_pipeline(db, ws)
    deal = make_deal(db, ws, pipeline, expected_close_date=date(2025, 3, 10))
    auto = deploy(db, ws, deal_date_doc({"timezone": "UTC"}))
    schedule.sync(db, utc(2025, 3, 1))
    assert len(tick(db, utc(2025, 3, 10, 0, 0, 1)).emitted) == 1
    for value in ("2025-03-20", "2025-03-10"):
        db.execute("UPDATE deals SET expected_close_date = %s WHERE id = %s", (value, deal))
        as_listener(db, ws, deal_event(ws, deal, "update", ["expected_close_date"], {}))
    assert tick(db, utc(2025, 3, 10, 0, 0, 2)).emitted == []
    assert len(fires(db, auto)) == 1


def test_date_field_deploy_does_not_fire_for_dates_already_past(db, ws) -> None:
    pipeline = make_pipeline(db, ws)
    make_deal(db, ws, pipeline, expected_close_date=date(2025, 1, 5))
    auto = deploy(db, ws, deal_date_doc({"timezone": "UTC"}))
    schedule.sync(db, utc(2025, 2, 1))
    assert [r["status"] for r in due_rows(db, auto)] == ["skipped"]
    assert tick(db, utc(2025, 2, 2)).emitted == []


def test_owner_timezone_and_records_created_later_are_scheduled_by_the_hook(db, ws) -> None:
    pipeline = make_pipeline(db, ws)
    owner = make_user(db, "nyc")
    db.execute("UPDATE users SET timezone = 'America/New_York' WHERE id = %s", (owner,))
    auto = deploy(db, ws, deal_date_doc({"time": "09:00", "timezone": "owner"}))
    schedule.sync(db, utc(2025, 6, 1))
    deal = make_deal(db, ws, pipeline, owner_id=owner, expected_close_date=date(2025, 7, 1))
    as_listener(
        db,
        ws,
        {
            **deal_event(ws, deal, "insert", [], {}),
            "entity_type": "deals",
            "event_type": "deal_created",
        },
    )
    assert [r["due_at"] for r in due_rows(db, auto)] == [utc(2025, 7, 1, 13)]  # 09:00 EDT


def test_the_hook_ignores_events_it_has_nothing_to_do_with(db, ws) -> None:
    pipeline = make_pipeline(db, ws)
    deal = make_deal(db, ws, pipeline)
    for event in (
        deal_event(ws, deal, "update", ["title"], {}),  # no date-field automation yet
        {**deal_event(ws, deal, "update", [], {}), "entity_type": "widget"},
        {"workspace_id": ws.id},
    ):
        as_listener(db, ws, event)
    auto = deploy(db, ws, deal_date_doc({"timezone": "UTC"}))
    as_listener(db, ws, deal_event(ws, deal, "update", ["title"], {"title": "x"}))
    assert due_rows(db, auto) == []


# --- delays ------------------------------------------------------------------------------


def test_due_delays_are_woken_and_sent_once(db, ws) -> None:
    auto = deploy(db, ws, time_doc({"cron": "0 * * * *", "timezone": "UTC"}))
    made = rows(
        db,
        "INSERT INTO automation_executions (automation_id, workspace_id, status, exclusive,"
        " resume_at) SELECT %s, %s, 'waiting', false, %s::timestamptz + make_interval(mins => g)"
        " FROM generate_series(1, 4) g RETURNING id, resume_at",
        auto,
        ws.id,
        utc(2025, 1, 1),
    )
    sent: list[str] = []
    woken = schedule.wake_due_delays(db, utc(2025, 1, 1, 0, 2, 30), batch=1, enqueue=sent.extend)
    assert sorted(woken) == sorted(
        r["id"] for r in made if r["resume_at"] <= utc(2025, 1, 1, 0, 2, 30)
    )
    assert sorted(sent) == sorted(str(i) for i in woken)
    assert schedule.wake_due_delays(db, utc(2025, 1, 1, 0, 2, 30), enqueue=sent.extend) == []


# --- with the real outbox and listener -----------------------------------------------------


def test_fires_reach_the_listener_and_date_changes_come_back_through_it(db, db_url, ws) -> None:
    """The real wiring: emit_event writes automation_events, the listener turns a fire into
    one execution, and a captured CRM update reaches on_record_event through the listener."""
    from triggers.emit import emit_event
    from triggers.listener import Listener

    pipeline = make_pipeline(db, ws)
    deal = make_deal(db, ws, pipeline, expected_close_date=date(2025, 3, 31))
    auto = deploy(db, ws, deal_date_doc({"time": "09:00", "timezone": "UTC"}))
    listener = Listener(db_url, enqueue=lambda ids: None)
    while listener.process_batch(db).claimed:  # the deal's own creation events
        pass
    schedule.sync(db, utc(2025, 3, 1))

    db.execute("UPDATE deals SET expected_close_date = '2025-04-02' WHERE id = %s", (deal,))
    while listener.process_batch(db).claimed:
        pass
    assert [(r["date_value"], r["due_at"]) for r in due_rows(db, auto)] == [
        ("2025-04-02", utc(2025, 4, 2, 9))
    ]

    result = schedule.fire_due_records(db, utc(2025, 4, 2, 9, 0, 1), emit=emit_event)
    [fire] = result.emitted
    while listener.process_batch(db).claimed:
        pass
    [run] = rows(
        db,
        "SELECT automation_id, event_id, trigger_entity_type, trigger_entity_id, status"
        " FROM automation_executions",
    )
    assert (run["automation_id"], run["event_id"], run["status"]) == (auto, fire.event_id, "queued")
    assert (run["trigger_entity_type"], run["trigger_entity_id"]) == ("deal", deal)
