"""Logical-decoding capture (schemas/sql/0100_capture_logical.sql, triggers/decoder.py,
triggers/pgoutput.py, triggers/capture_mode.py).

That decoded events equal trigger-written ones is tests/test_capture.py, whose every test
runs in both modes. Here: the protocol parser, the decoder's own guarantees (nothing lost or
doubled across a crash, concurrent decoders or a mode switch under load), what the switch
does to the tables, and the listener and CLI in logical mode.
"""

from __future__ import annotations

import json
import struct
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st
from psycopg import errors

from engine.cli import main
from tests.fakes.crm import make_contact, make_workspace
from triggers.capture_mode import CaptureModeError, capture_status, switch_capture
from triggers.decoder import CaptureTable, Decoder, event_of_change, hstore_order
from triggers.listener import Listener
from triggers.pgoutput import (
    UNCHANGED,
    Begin,
    Change,
    Commit,
    ProtocolError,
    format_lsn,
    parse,
    parse_lsn,
)

Conn = psycopg.Connection[Any]


# ---------------------------------------------------------------------------
# The pgoutput parser (pure)
# ---------------------------------------------------------------------------


def tuple_bytes(*values: object) -> bytes:
    out = struct.pack(">H", len(values))
    for v in values:
        if v is None:
            out += b"n"
        elif v is UNCHANGED:
            out += b"u"
        else:
            data = str(v).encode()
            out += b"t" + struct.pack(">I", len(data)) + data
    return out


def test_a_begin_message_gives_the_commit_lsn_time_and_xid() -> None:
    data = b"B" + struct.pack(">QqI", 0x1AF8AE8, 1_000_000, 759)

    assert parse(data) == Begin(
        final_lsn=0x1AF8AE8, committed_at=datetime(2000, 1, 1, 0, 0, 1, tzinfo=UTC), xid=759
    )


def test_a_commit_message_gives_its_commit_and_end_lsn() -> None:
    message = parse(b"C\x00" + struct.pack(">QQq", 10, 20, 0))

    assert isinstance(message, Commit) and (message.commit_lsn, message.end_lsn) == (10, 20)


def test_an_update_carries_the_full_old_row_and_marks_unchanged_toast() -> None:
    data = (
        b"U"
        + struct.pack(">I", 16384)
        + b"O"
        + tuple_bytes("1", "50", "big")
        + b"N"
        + tuple_bytes("1", "90", UNCHANGED)
    )

    assert parse(data) == Change("update", 16384, ("1", "50", "big"), ("1", "90", UNCHANGED))


def test_a_key_only_old_row_is_flagged() -> None:
    message = parse(b"D" + struct.pack(">I", 1) + b"K" + tuple_bytes("1", None))

    assert isinstance(message, Change) and message.old_is_key_only


def test_a_truncated_message_names_where_it_ends() -> None:
    with pytest.raises(ProtocolError, match="truncated at byte 1"):
        parse(b"B\x00\x00")


def test_an_unknown_message_kind_is_refused_by_name() -> None:
    with pytest.raises(ProtocolError, match="'Z'"):
        parse(b"Z")


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_an_lsn_survives_its_text_form(lsn: int) -> None:
    assert parse_lsn(format_lsn(lsn)) == lsn


# ---------------------------------------------------------------------------
# A change into an event (pure)
# ---------------------------------------------------------------------------

CONTACTS = CaptureTable(
    "contacts",
    "contact",
    frozenset({"updated_at", "embedding"}),
    False,
    frozenset({"insert", "update", "delete"}),
)
COLUMNS = ("id", "workspace_id", "a", "b", "c", "updated_at", "embedding")
text_or_null = st.one_of(st.none(), st.text(max_size=3))


@given(st.tuples(*[text_or_null] * 5), st.tuples(*[text_or_null] * 5))
def test_an_update_lists_exactly_the_captured_columns_whose_text_changed(
    old: tuple[str | None, ...], new: tuple[str | None, ...]
) -> None:
    row = ("id1", "ws1")
    change = Change("update", 1, (*row, *old), (*row, *new))

    event = event_of_change(CONTACTS, COLUMNS, change, {}, datetime.now(UTC))

    changed = [c for c, o, n in zip(COLUMNS[2:5], old, new, strict=False) if o != n]
    if not changed:
        assert event is None  # updated_at and embedding alone are no event
    else:
        assert event is not None
        assert event["changed_fields"] == hstore_order(changed)
        assert event["old_values"] == {c: old[COLUMNS.index(c) - 2] for c in changed}
        assert event["new_values"] == {c: new[COLUMNS.index(c) - 2] for c in changed}


def test_an_unchanged_toasted_value_is_no_change() -> None:
    old = ("i", "w", "x", "long", None, None, None)
    change = Change("update", 1, old, ("i", "w", "y", UNCHANGED, None, None, None))

    event = event_of_change(CONTACTS, COLUMNS, change, {}, datetime.now(UTC))

    assert event is not None and event["changed_fields"] == ["a"]


# ---------------------------------------------------------------------------
# The switch
# ---------------------------------------------------------------------------


@pytest.fixture
def logical(db: Conn) -> Conn:
    switch_capture(db, "logical")
    return db


def outbox_count(db: Conn) -> int:
    return int(db.execute("SELECT count(*) FROM automation_events").fetchone()[0])  # type: ignore[index]


def test_switching_to_logical_disables_the_row_triggers_and_sets_replica_identity_full(
    logical: Conn,
) -> None:
    rows = logical.execute(
        "SELECT c.relname, c.relreplident, t.tgenabled FROM pg_class c"
        " JOIN pg_trigger t ON t.tgrelid = c.oid AND t.tgname = 'haste_capture'"
        " WHERE c.relname IN ('contacts', 'deals', 'contact_tags') ORDER BY 1"
    ).fetchall()

    # contact_tags keeps its trigger: it puts its event into WAL as a message instead.
    assert rows == [("contact_tags", "d", "O"), ("contacts", "f", "D"), ("deals", "f", "D")]


def test_in_logical_mode_the_writer_writes_no_outbox_row_and_the_decoder_does(
    logical: Conn,
) -> None:
    ws = make_workspace(logical)
    make_contact(logical, ws, score=50)
    written_by_writer = outbox_count(logical)

    decoded = Decoder().catch_up(logical)

    assert (written_by_writer, decoded, outbox_count(logical)) == (0, 1, 1)


def test_switching_to_logical_without_a_pgoutput_slot_is_refused_and_changes_nothing(
    db: Conn,
) -> None:
    with pytest.raises(errors.InvalidParameterValue, match="'nope'"), db.transaction():
        db.execute("SELECT haste_capture_switch('logical', 'nope')")

    assert capture_status(db)["mode"] == "trigger"


def test_an_unknown_mode_is_refused_by_name(db: Conn) -> None:
    with pytest.raises(CaptureModeError, match="'fast'"):
        switch_capture(db, "fast")


def test_switching_back_to_triggers_reads_up_to_the_switch_then_drops_the_slot(
    logical: Conn,
) -> None:
    ws = make_workspace(logical)
    contact = make_contact(logical, ws, score=50)

    state = switch_capture(logical, "trigger")  # nothing decoded yet
    logical.execute("UPDATE contacts SET score = 90 WHERE id = %s", (contact,))

    types = [r[0] for r in logical.execute("SELECT event_type FROM automation_events ORDER BY id")]
    assert types == ["contact_created", "contact_updated"]
    slots = logical.execute(
        "SELECT count(*) FROM pg_replication_slots WHERE database = current_database()"
    ).fetchone()
    pubs = logical.execute("SELECT count(*) FROM pg_publication").fetchone()
    assert (state["slot_name"], slots, pubs) == (None, (0,), (0,))


def test_the_capture_migration_can_run_again_in_logical_mode(logical: Conn) -> None:
    from schemas import SQL_DIR

    with logical.transaction():
        logical.execute((SQL_DIR / "0100_capture_logical.sql").read_text().encode())
    ws = make_workspace(logical)
    make_contact(logical, ws)

    assert (outbox_count(logical), Decoder().catch_up(logical)) == (0, 1)


# ---------------------------------------------------------------------------
# Nothing lost, nothing doubled
# ---------------------------------------------------------------------------


def test_transactions_read_again_after_a_crash_before_the_slot_advanced_are_skipped(
    logical: Conn,
) -> None:
    ws = make_workspace(logical)
    contact = make_contact(logical, ws, score=50)
    logical.execute("UPDATE contacts SET score = 90 WHERE id = %s", (contact,))
    # A copy of the slot stands for the slot as it was when the decoder died: after
    # committing the events, before advancing.
    slot = capture_status(logical)["slot_name"]
    logical.execute("SELECT pg_copy_logical_replication_slot(%s, 'haste_crashed')", (slot,))
    first = Decoder().catch_up(logical)
    logical.execute("UPDATE automation_capture_state SET slot_name = 'haste_crashed'")
    logical.execute("UPDATE contacts SET score = 95 WHERE id = %s", (contact,))

    second = Decoder().catch_up(logical)

    scores = logical.execute(
        "SELECT new_values->>'score' FROM automation_events ORDER BY id"
    ).fetchall()
    assert (first, second) == (2, 1)
    assert scores == [("50",), ("90",), ("95",)]


def test_two_decoders_at_once_write_each_event_once(logical: Conn, db_url: str) -> None:
    ws = make_workspace(logical)
    contacts = [make_contact(logical, ws, email=f"c{i}@acme.test") for i in range(10)]
    stop = threading.Event()

    def decode_until_stopped() -> None:
        with psycopg.connect(db_url, autocommit=True) as conn:
            decoder = Decoder(limit=50)
            while not stop.is_set():
                decoder.catch_up(conn)

    threads = [threading.Thread(target=decode_until_stopped) for _ in range(2)]
    for t in threads:
        t.start()
    for n in range(20):
        for c in contacts:
            logical.execute("UPDATE contacts SET score = %s WHERE id = %s", (n + 1, c))
    stop.set()
    for t in threads:
        t.join()
    Decoder().catch_up(logical)

    counts = logical.execute(
        "SELECT event_type, count(*), count(DISTINCT (entity_id, new_values))"
        " FROM automation_events GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert counts == [("contact_created", 10, 10), ("contact_updated", 200, 200)]


def test_switching_modes_under_concurrent_writes_loses_and_doubles_no_event(
    db: Conn, db_url: str
) -> None:
    ws = make_workspace(db)
    contacts = [make_contact(db, ws, email=f"c{i}@acme.test", score=0) for i in range(4)]
    stop = threading.Event()
    committed = [0] * len(contacts)

    def write(i: int) -> None:
        with psycopg.connect(db_url, autocommit=True) as conn:
            while not stop.is_set():
                conn.execute("UPDATE contacts SET score = score + 1 WHERE id = %s", (contacts[i],))
                committed[i] += 1

    writers = [threading.Thread(target=write, args=(i,)) for i in range(len(contacts))]
    for t in writers:
        t.start()
    for mode in ("logical", "trigger", "logical", "trigger"):
        switch_capture(db, mode)
    stop.set()
    for t in writers:
        t.join()

    for i, contact in enumerate(contacts):
        scores = [
            int(r[0])
            for r in db.execute(
                "SELECT new_values->>'score' FROM automation_events"
                " WHERE entity_id = %s AND event_type = 'contact_updated' ORDER BY id",
                (contact,),
            )
        ]
        # Each committed increment is one event, in commit order: 1, 2, ..., n.
        assert scores == list(range(1, committed[i] + 1))


def test_an_update_without_the_old_row_image_is_parked_with_its_error(logical: Conn) -> None:
    ws = make_workspace(logical)
    contact = make_contact(logical, ws, score=50)
    logical.execute("ALTER TABLE contacts REPLICA IDENTITY DEFAULT")
    logical.execute("UPDATE contacts SET score = 90 WHERE id = %s", (contact,))

    Decoder().catch_up(logical)

    row = logical.execute(
        "SELECT event_type, processed_at IS NOT NULL, error FROM automation_events"
        " WHERE operation = 'update'"
    ).fetchone()
    assert row is not None and row[:2] == ("contact_updated", True)
    assert "REPLICA IDENTITY FULL" in row[2]
    assert "REPLICA IDENTITY FULL" in capture_status(logical)["last_error"]


# ---------------------------------------------------------------------------
# The listener and the CLI in logical mode
# ---------------------------------------------------------------------------


def test_the_listener_decodes_then_matches_in_logical_mode(logical: Conn, db_url: str) -> None:
    from engine.automations import deploy, find_workspace

    raw = make_workspace(logical, "acme")
    slug = logical.execute("SELECT slug FROM workspaces WHERE id = %s", (raw.id,)).fetchone()
    ws = find_workspace(logical, slug[0])  # type: ignore[index]
    hot = deploy(
        logical,
        ws,
        {
            "name": "hot",
            "trigger_type": "contact_updated",
            "trigger_config": {"watch": ["score"]},
            "conditions": {"field": "contact.score", "op": "gte", "value": 80},
            "actions": [{"id": "t", "type": "add_tag", "params": {"tag": "hot"}}],
        },
        validate=False,
    ).automation_id
    contact = make_contact(logical, raw, score=50)
    logical.execute("UPDATE contacts SET score = 90 WHERE id = %s", (contact,))
    sent: list[uuid.UUID] = []

    Listener(db_url, enqueue=sent.extend, hooks=[]).drain(logical)

    rows = logical.execute(
        "SELECT automation_id, status, trigger_entity_id FROM automation_executions"
    ).fetchall()
    assert rows == [(hot, "queued", contact)]
    assert len(sent) == 1


def test_haste_capture_switches_and_reports_the_mode(db: Conn, db_url: str) -> None:
    env = {"DATABASE_URL": db_url}

    switched = CliRunner().invoke(main, ["capture", "logical"], env=env)
    shown = CliRunner().invoke(main, ["capture", "--json"], env=env)
    back = CliRunner().invoke(main, ["capture", "trigger"], env=env)

    assert switched.exit_code == 0, switched.output
    assert "capture: logical (wal_level logical)" in switched.output.splitlines()
    assert "slot haste_" in switched.output
    state = json.loads(shown.output)
    assert (state["mode"], state["decoding"]) == ("logical", False)
    assert back.exit_code == 0
    assert "capture: trigger (wal_level logical)" in back.output.splitlines()


def test_each_read_moves_the_slots_restart_point_so_a_poll_decodes_only_new_wal(
    logical: Conn,
) -> None:
    ws = make_workspace(logical)
    contact = make_contact(logical, ws, score=0)
    decoder = Decoder()
    decoder.catch_up(logical)
    before = logical.execute("SELECT pg_current_wal_lsn()").fetchone()
    logical.execute("UPDATE contacts SET score = 1 WHERE id = %s", (contact,))

    decoder.catch_up(logical)
    decoder.catch_up(logical)  # a read restarts where the previous one ended

    # Without a fresh running-transactions record the restart point would stay where the
    # last one PostgreSQL wrote on its own (every 15 s) left it, behind `before`.
    restart = logical.execute(
        "SELECT restart_lsn >= %s FROM pg_replication_slots WHERE slot_name = %s",
        (before[0], capture_status(logical)["slot_name"]),  # type: ignore[index]
    ).fetchone()
    assert restart == (True,)


def test_a_poll_with_nothing_new_commits_nothing(logical: Conn) -> None:
    ws = make_workspace(logical)
    make_contact(logical, ws)
    decoder = Decoder()
    decoder.catch_up(logical)
    before = logical.execute("SELECT xmin, decoded_at FROM automation_capture_state").fetchone()

    decoder.catch_up(logical)

    # The state row is not rewritten (same row version): no transaction, WAL or flush of
    # its own for an idle listener's poll.
    after = logical.execute("SELECT xmin, decoded_at FROM automation_capture_state").fetchone()
    assert after == before


def test_a_write_after_an_idle_poll_is_decoded_by_the_next(logical: Conn) -> None:
    ws = make_workspace(logical)
    contact = make_contact(logical, ws, score=0)
    decoder = Decoder()
    decoder.catch_up(logical)
    decoder.catch_up(logical)
    logical.execute("UPDATE contacts SET score = 5 WHERE id = %s", (contact,))

    assert decoder.catch_up(logical) == 1
