"""Logical-decoding capture: turn the WAL of CRM writes into outbox rows.

The opt-in alternative to the capture triggers (``haste capture logical``; the database
side and the reasons are in ``schemas/sql/0100_capture_logical.sql``). In logical mode the
generated capture triggers are disabled and writers pay only the old row image in WAL; the
listener calls :meth:`Decoder.catch_up` before each drain, which reads the ``pgoutput``
slot and writes exactly the rows the triggers would have written (UPDATE values as text
forms with ``values_raw``, typed by the claim as before), in commit order. From there on
the pipeline is the same.

One step (:meth:`Decoder.step`):

1. ``pg_try_advisory_lock`` (session level, released after step 5): one decoder at a time;
   other listener replicas skip decoding and go on draining;
2. in one transaction: peek (not get) up to ``limit`` messages, only transactions that
   committed before the flush LSN read at the start (a running-transactions record written
   just before keeps the slot's restart point close: :meth:`Decoder._log_snapshot`);
3. :func:`decode` them (pure): transactions already applied (commit LSN ≤
   ``decoded_lsn``) are skipped, the rest become event rows if the decoder is between a
   ``'logical'`` and a ``'trigger'`` switch marker;
4. insert the rows and store the last commit LSN, the marker state and the time;
5. commit, *then* advance the slot. A crash before the commit leaves nothing; a crash
   between commit and advance makes the next step re-read transactions it then skips by
   ``decoded_lsn``: no event is lost or doubled.

After a ``'trigger'`` marker has been applied the slot and the publication are dropped
(the slot would otherwise retain WAL for ever).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from engine import metrics
from engine.logs import get_logger
from engine.queries import query
from triggers.pgoutput import (
    UNCHANGED,
    Begin,
    Change,
    Commit,
    Message,
    Relation,
    Value,
    format_lsn,
    parse,
    parse_lsn,
)

log = get_logger("haste.decoder")

#: Advisory lock key serialising decoders ("hstdecod").
DECODER_LOCK_KEY = 0x68737464_65636F64
PUBLICATION = "haste_capture"
#: Messages read per step (whole transactions: a larger one is read entire).
STEP_LIMIT = 5000


class DecodeError(RuntimeError):
    """WAL the decoder cannot turn into events; nothing of the step is applied."""


@dataclass(frozen=True)
class CaptureTable:
    """A row of ``automation_capture_tables``."""

    table_name: str
    entity_type: str
    ignored_columns: frozenset[str]
    has_created_event: bool
    operations: frozenset[str]


@dataclass
class Decoded:
    """What :func:`decode` made of a run of messages."""

    events: list[dict[str, Any]] = field(default_factory=list)
    decoding: bool = False
    last_marker: str | None = None
    #: Commit and end LSN of the last transaction read (applied or skipped).
    commit_lsn: int | None = None
    end_lsn: int | None = None
    transactions: int = 0


def slot_name_for(dbname: str) -> str:
    """Slot names are cluster-wide: one per database, from its name."""
    return "haste_" + hashlib.sha1(dbname.encode()).hexdigest()[:20]


def hstore_order(keys: Iterable[str]) -> list[str]:
    """Keys in the order hstore's ``akeys()`` gives them (length, then bytes), so decoded
    events list changed fields exactly as trigger-written ones do."""
    return sorted(keys, key=lambda k: (len(k.encode()), k.encode()))


NO_CONTEXT: Mapping[str, Any] = {
    "actor_user_id": None,
    "causation_execution_id": None,
    "depth": 0,
}


def event_of_change(
    table: CaptureTable,
    columns: Sequence[str],
    change: Change,
    context: Mapping[str, Any],
    committed_at: datetime,
) -> dict[str, Any] | None:
    """The outbox row the capture trigger would have written for ``change``, or ``None``
    where it writes none (mirrors ``haste_capture_install`` in 0030/0031)."""
    if change.operation not in table.operations:
        return None
    old = _values(table, columns, change.old)
    new = _values(table, columns, change.new)
    soft_delete = "deleted_at" in columns
    row: dict[str, Any] = {
        "table": table.table_name,
        "entity_type": table.entity_type,
        "values_raw": True,
        "created_at": committed_at,
        **context,
    }
    if change.operation == "insert":
        assert new is not None
        values = {k: v for k, v in new.items() if v is not None}
        return {
            **row,
            "workspace_id": new["workspace_id"],
            "entity_id": new["id"],
            "operation": "insert",
            "event_type": None if table.has_created_event else f"{table.entity_type}_created",
            "old_values": None,
            "new_values": values,
            "changed_fields": hstore_order(values),
        }
    if old is None or change.old_is_key_only:
        return _without_old_row(table, change, new, old, row)
    if change.operation == "delete":
        if soft_delete and old.get("deleted_at") is not None:
            return None  # its deletion was announced when deleted_at was set
        values = {k: v for k, v in old.items() if v is not None}
        return {
            **row,
            "workspace_id": old["workspace_id"],
            "entity_id": old["id"],
            "operation": "delete",
            "event_type": f"{table.entity_type}_deleted",
            "old_values": values,
            "new_values": None,
            "changed_fields": hstore_order(values),
        }
    assert new is not None
    if soft_delete and old.get("deleted_at") is not None and new.get("deleted_at") is not None:
        return None  # a record that stays soft-deleted has no more events
    for key, value in new.items():
        if value is UNCHANGED:
            new[key] = old.get(key)
    diff = {k: v for k, v in new.items() if k not in old or old[k] != v}
    if not diff:
        return None  # nothing but ignored columns changed
    deleted = soft_delete and new.get("deleted_at") is not None
    return {
        **row,
        "workspace_id": new["workspace_id"],
        "entity_id": new["id"],
        "operation": "delete" if deleted else "update",
        "event_type": f"{table.entity_type}_{'deleted' if deleted else 'updated'}",
        "old_values": {k: old.get(k) for k in diff},
        "new_values": diff,
        "changed_fields": hstore_order(diff),
    }


def _without_old_row(
    table: CaptureTable,
    change: Change,
    new: dict[str, Any] | None,
    old: dict[str, Any] | None,
    row: dict[str, Any],
) -> dict[str, Any] | None:
    """An UPDATE or DELETE written while the table was not ``REPLICA IDENTITY FULL``
    (someone changed it after ``haste capture logical``): what changed cannot be known.
    Recorded as a parked event carrying the error, never matched and never dropped
    silently; a delete whose workspace is unknown (only its key is in WAL) is an error of
    the step itself (:class:`DecodeError`)."""
    error = (
        f"{change.operation} of {table.table_name} has no old row image in WAL: the table"
        " is not REPLICA IDENTITY FULL (`haste capture logical` sets it); its changed"
        " fields are unknown"
    )
    source = new if new is not None else old
    if source is None or source.get("workspace_id") is None:
        raise DecodeError(error)
    values = {k: v for k, v in source.items() if v is not None}
    return {
        **row,
        "workspace_id": source["workspace_id"],
        "entity_id": source["id"],
        "operation": change.operation,
        "event_type": f"{table.entity_type}_{change.operation}d",
        "old_values": None,
        "new_values": values if new is not None else None,
        "changed_fields": None,
        "error": error,
    }


def _values(
    table: CaptureTable, columns: Sequence[str], values: Sequence[Value] | None
) -> dict[str, Any] | None:
    if values is None:
        return None
    if len(values) != len(columns):
        raise DecodeError(
            f"{table.table_name}: a row of {len(values)} values for {len(columns)} columns"
        )
    return {c: v for c, v in zip(columns, values, strict=True) if c not in table.ignored_columns}


def context_of(content: bytes) -> dict[str, Any]:
    """The causation a writer's statement trigger put into WAL (``haste_capture_context``:
    ``user_id,execution_id,causation_depth``, empty for unset), as the outbox's column
    defaults would have read it: depth is the causing execution's depth plus one."""
    user_id, execution_id, depth = [*content.decode().split(","), "", "", ""][:3]
    return {
        "actor_user_id": user_id or None,
        "causation_execution_id": execution_id or None,
        "depth": int(depth) + 1 if depth else 0,
    }


def event_of_message(content: bytes, committed_at: datetime) -> dict[str, Any]:
    """An event a custom capture trigger put into WAL (``haste_capture_emit``)."""
    event = json.loads(content)
    return {
        "table": None,
        "workspace_id": event["workspace_id"],
        "entity_type": event.get("entity_type"),
        "entity_id": event.get("entity_id"),
        "operation": event.get("operation"),
        "event_type": event["event_type"],
        "old_values": event.get("old_values"),
        "new_values": event.get("new_values"),
        "changed_fields": event.get("changed_fields"),
        "values_raw": False,
        "actor_user_id": event.get("actor_user_id"),
        "causation_execution_id": event.get("causation_execution_id"),
        "depth": event.get("depth", 0),
        "created_at": committed_at,
    }


def decode(
    messages: Iterable[bytes],
    tables: Mapping[str, CaptureTable],
    *,
    decoding: bool,
    decoded_lsn: int | None,
) -> Decoded:
    """Event rows of the whole transactions in ``messages`` (pgoutput, in WAL order).

    ``decoding`` is whether the decoder stands after a ``'logical'`` switch marker;
    transactions that committed at or before ``decoded_lsn`` were applied already.
    """
    out = Decoded(decoding=decoding)
    relations: dict[int, Relation] = {}
    begin: Begin | None = None
    pending: list[dict[str, Any]] = []
    marker: str | None = None
    context: Mapping[str, Any] = NO_CONTEXT
    for data in messages:
        message = parse(data)
        if isinstance(message, Begin):
            begin, pending, marker, context = message, [], None, NO_CONTEXT
        elif isinstance(message, Relation):
            relations[message.oid] = message
        elif isinstance(message, Message) and message.transactional and begin is not None:
            if message.prefix == "haste_context":
                context = context_of(message.content)
            elif message.prefix == "haste_event":
                pending.append(event_of_message(message.content, begin.committed_at))
            elif message.prefix == "haste_capture":
                marker = message.content.decode()
        elif isinstance(message, Change) and begin is not None:
            relation = relations.get(message.relation_oid)
            if relation is None:
                raise DecodeError(
                    f"a change of relation {message.relation_oid} before its description"
                )
            table = tables.get(relation.name) if relation.namespace == "public" else None
            if table is not None:
                event = event_of_change(
                    table, relation.columns, message, context, begin.committed_at
                )
                if event is not None:
                    pending.append(event)
        elif isinstance(message, Commit):
            out.transactions += 1
            out.commit_lsn, out.end_lsn = message.commit_lsn, message.end_lsn
            if decoded_lsn is None or message.commit_lsn > decoded_lsn:
                if out.decoding:
                    out.events.extend(pending)
                if marker is not None:
                    out.decoding = marker == "logical"
                    out.last_marker = marker
            begin, pending = None, []
    return out


@dataclass
class StepResult:
    events: int = 0
    transactions: int = 0
    messages: int = 0
    #: Whether the slot had more than one step could read.
    more: bool = False
    #: False when another decoder holds the lock, or there is no slot.
    ran: bool = False


class Decoder:
    """Reads the capture slot into the outbox; see the module doc."""

    def __init__(self, limit: int = STEP_LIMIT) -> None:
        self.limit = limit
        self._log_snapshots: bool | None = None  # unknown until the first step

    def _log_snapshot(self, conn: psycopg.Connection[Any]) -> None:
        """Write a running-transactions record just before reading the slot.

        Each SQL-level read of a slot starts decoding at its ``restart_lsn``, which moves
        only when the slot is advanced past such a record; PostgreSQL writes one every
        15 s, so without this every poll would decode up to 15 s of WAL again (measured:
        G1 p50 66 ms in logical mode). ``pg_log_standby_snapshot()`` exists from
        PostgreSQL 16 and needs superuser or a grant; without it decoding still works,
        only slower on a busy server."""
        if self._log_snapshots is False:
            return
        try:
            conn.execute("SELECT pg_log_standby_snapshot()")
            self._log_snapshots = True
        except psycopg.errors.UndefinedFunction:
            self._log_snapshots = False
        except psycopg.errors.InsufficientPrivilege:
            self._log_snapshots = False
            log.warning(
                "pg_log_standby_snapshot() is not allowed for this role: logical capture"
                " re-reads up to 15 s of WAL per poll (GRANT EXECUTE to avoid it)"
            )

    def catch_up(self, conn: psycopg.Connection[Any], max_steps: int = 1000) -> int:
        """Steps until the slot is read to the end (or another decoder has the lock);
        events written. Cheap in trigger mode: one read of the state row."""
        total = 0
        for _ in range(max_steps):
            result = self.step(conn)
            total += result.events
            if not result.more:
                break
        return total

    def step(self, conn: psycopg.Connection[Any]) -> StepResult:
        if not conn.autocommit:
            raise ValueError(
                "the decoder commits, then advances the slot: give it an autocommit connection"
            )
        result = StepResult()
        slot = conn.execute("SELECT slot_name FROM automation_capture_state").fetchone()
        if slot is None or slot[0] is None:
            return result
        # A session lock: it must cover the slot's advance, which follows the commit.
        got = conn.execute("SELECT pg_try_advisory_lock(%s)", (DECODER_LOCK_KEY,)).fetchone()
        if not (got and got[0]):
            return result
        try:
            self._log_snapshot(conn)
            self._step(conn, result)
        except (psycopg.Error, DecodeError) as exc:
            self._record_failure(conn, exc)
            raise
        finally:
            # A lost connection has released the lock with it; never mask the first error.
            with contextlib.suppress(psycopg.Error):
                conn.execute("SELECT pg_advisory_unlock(%s)", (DECODER_LOCK_KEY,))
        metrics.EVENTS_DECODED.inc(result.events)
        return result

    def _step(self, conn: psycopg.Connection[Any], result: StepResult) -> None:
        with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            state = cur.execute(query("capture_decoder_state")).fetchone()
            if state is None or state["slot_name"] is None:
                return
            result.ran = True
            slot = state["slot_name"]
            upto = cur.execute("SELECT pg_current_wal_flush_lsn()::text AS l").fetchone()["l"]  # type: ignore[index]
            rows = cur.execute(
                query("capture_peek"),
                {"slot": slot, "upto": upto, "limit": self.limit, "publication": PUBLICATION},
            ).fetchall()
            result.messages = len(rows)
            result.more = len(rows) >= self.limit
            before = parse_lsn(state["decoded_lsn"]) if state["decoded_lsn"] else None
            out = decode(
                (bytes(r["data"]) for r in rows),
                self._tables(cur),
                decoding=state["decoding"],
                decoded_lsn=before,
            )
            result.transactions, result.events = out.transactions, len(out.events)
            if out.events:
                cur.executemany(query("capture_insert_event"), [_params(e) for e in out.events])
                cur.execute(query("capture_wake_listeners"))
            problems = [e["error"] for e in out.events if e.get("error")]
            for problem in problems:
                log.error("decoded a change without its old row; event parked", error=problem)
            after = out.commit_lsn if out.commit_lsn is not None else before
            # Only when there is something to record (a transaction read, an error to clear):
            # an empty poll of an idle listener commits nothing, so it writes no WAL of its
            # own and waits for no flush. decoded_at is when a transaction was last read.
            if out.transactions or state["last_error"] is not None:
                cur.execute(
                    query("capture_decoded"),
                    {
                        "decoding": out.decoding,
                        "decoded_lsn": (
                            format_lsn(max(after, before or 0)) if after is not None else None
                        ),
                        "marker": out.last_marker,
                        "error": problems[-1] if problems else None,
                    },
                )
        # Every transaction that committed before `upto` has been read when the step
        # stopped short of its limit; otherwise only up to the last one read.
        advance_to = upto if not result.more else out.end_lsn and format_lsn(out.end_lsn)
        if advance_to:
            conn.execute("SELECT pg_replication_slot_advance(%s, %s::pg_lsn)", (slot, advance_to))
        marker = out.last_marker or state["last_marker"]
        if state["mode"] == "trigger" and marker == "trigger":
            self._drop_slot(conn, slot)

    def _tables(self, cur: psycopg.Cursor[Any]) -> dict[str, CaptureTable]:
        rows = cur.execute(query("capture_tables")).fetchall()
        return {
            r["table_name"]: CaptureTable(
                r["table_name"],
                r["entity_type"],
                frozenset(r["ignored_columns"]),
                r["ce"],
                frozenset(r["operations"]),
            )
            for r in rows
        }

    def _drop_slot(self, conn: psycopg.Connection[Any], slot: str) -> None:
        """After the 'trigger' marker: nothing more to read, and a slot retains WAL."""
        with conn.transaction():
            conn.execute(query("capture_slot_drop"), {"slot": slot})
            conn.execute(f"DROP PUBLICATION IF EXISTS {PUBLICATION}")
            conn.execute(query("capture_slot_dropped"))
        log.info("capture slot dropped after the switch to trigger mode", slot=slot)

    def _record_failure(self, conn: psycopg.Connection[Any], exc: Exception) -> None:
        metrics.DECODER_FAILURES.inc()
        log.error("decoding failed", error=str(exc))
        try:
            with conn.transaction():
                conn.execute(query("capture_failed"), {"error": f"{type(exc).__name__}: {exc}"})
        except psycopg.Error:
            pass  # the connection itself is gone; the listener reconnects


def _params(event: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "error": None,
        **event,
        "workspace_id": UUID(str(event["workspace_id"])),
        "old_values": None if event["old_values"] is None else Jsonb(event["old_values"]),
        "new_values": None if event["new_values"] is None else Jsonb(event["new_values"]),
    }
