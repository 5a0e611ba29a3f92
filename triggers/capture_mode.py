"""Switch event capture between the row triggers and logical decoding; report its state.

``haste capture`` is the edge over these. The switch itself is one SQL function
(``haste_capture_switch``, schemas/sql/0100_capture_logical.sql); what it cannot do in a
transaction is here: creating the replication slot before switching to logical (a slot
cannot be created by a transaction that writes), and, after switching back to triggers,
reading the slot up to the switch so that it can be dropped (:mod:`triggers.decoder`).
"""

from __future__ import annotations

import time
from typing import Any

import psycopg
from psycopg.rows import dict_row

from engine.queries import query
from triggers.decoder import Decoder, slot_name_for

MODES = ("trigger", "logical")


class CaptureModeError(RuntimeError):
    """The switch was refused; nothing changed."""


def capture_status(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(query("capture_status")).fetchone()
    assert row is not None, "automation_capture_state has its one row from migration 0100"
    return dict(row)


def switch_capture(
    conn: psycopg.Connection[Any], mode: str, *, timeout_s: float = 60.0
) -> dict[str, Any]:
    """Put capture into ``mode`` (``conn`` in autocommit); returns :func:`capture_status`."""
    if mode not in MODES:
        raise CaptureModeError(f"capture mode must be one of {', '.join(MODES)}, not {mode!r}")
    if mode == "logical":
        wal_level = conn.execute("SHOW wal_level").fetchone()[0]  # type: ignore[index]
        if wal_level != "logical":
            raise CaptureModeError(
                f"logical capture needs wal_level = logical, and this server has {wal_level}:"
                " ALTER SYSTEM SET wal_level = logical, then restart PostgreSQL"
            )
        slot = slot_name_for(conn.info.dbname)
        if not conn.execute(
            "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (slot,)
        ).fetchone():
            conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
        with conn.transaction():
            conn.execute("SELECT haste_capture_switch('logical', %s)", (slot,))
        return capture_status(conn)
    deadline = time.monotonic() + timeout_s
    with conn.transaction():
        # Writes wait from here; every write committed so far is decoded into the outbox
        # before the triggers are back, so that the events the triggers write next get
        # later ids (one record's events stay in commit order across the switch).
        conn.execute("SELECT haste_capture_lock()")
        if capture_status(conn)["slot_name"] is not None:
            with psycopg.connect(
                conn.info.dsn, password=conn.info.password, autocommit=True
            ) as other:
                _decode_all(other, deadline)
        conn.execute("SELECT haste_capture_switch('trigger')")
    # Read the slot up to the switch's marker, then it is dropped.
    while capture_status(conn)["slot_name"] is not None:
        _decode_all(conn, deadline)
    return capture_status(conn)


def _decode_all(conn: psycopg.Connection[Any], deadline: float) -> None:
    """Decode to the end of WAL, waiting for a listener that holds the decoder."""
    decoder = Decoder()
    while True:
        result = decoder.step(conn)
        if result.ran and not result.more:
            return
        if not result.ran:
            if time.monotonic() > deadline:
                raise CaptureModeError(
                    "another decoder (a running listener) held the capture slot for too long;"
                    " nothing was switched"
                )
            time.sleep(0.05)
