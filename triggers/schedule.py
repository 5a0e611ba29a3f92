"""time_based automations and delays in PostgreSQL: sync, claim, fire, advance; and the
listener's hook that keeps per-record due times right.

The truth about what is due lives in tables, never in a scheduler's memory:

* cron and one-off (``at``) schedules: ``automations.next_run_at``; the scheduler claims
  the due rows in batches (``FOR UPDATE SKIP LOCKED``), and in ONE transaction records each
  fire in ``schedule_fires`` (unique per automation + fire key), emits its event into the
  outbox (:func:`triggers.emit.emit_event`: the listener then matches it, so the decision
  log, dedupe and re-enrollment rules apply to scheduled runs too) and moves
  ``next_run_at`` on. A replica that dies mid-batch rolls all of it back; another one
  redoes it; a fire key already in the ledger is never emitted again.
* date-field schedules: ``schedule_record_due`` holds one row per (automation, record)
  with the record's date value and its due instant. Deploy back-fills it (records whose
  instant has passed are kept as ``skipped``); :func:`on_record_event` (called by the
  listener for every CRM event) re-computes a row when the date, the owner (for
  ``timezone: owner``) or ``deleted_at`` changes, and deletes it when the record goes.
  At fire time the record is read again: a deleted record is never fired, a date that
  moved without an event yet is re-scheduled instead of fired. Fire key
  ``<record>:<date value>``: once per record per date value.
* which version a schedule was computed from: ``automation_schedules`` (a deploy, an
  enable or a disable is noticed by :func:`sync` through it; no trigger on automations).
* delays: ``automation_executions`` in ``waiting`` with ``resume_at`` due are claimed with
  SKIP LOCKED and moved to ``queued`` by :func:`engine.executions.wake`'s guarded UPDATE
  (``WHERE status = 'waiting'``), then sent after commit: two replicas never wake one
  twice.

Policies (misfire, overlap, DST) are pure functions in :mod:`triggers.due`. Every function
here takes ``now``: tests move a fake clock instead of sleeping.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from engine import fields
from engine.db import system_transaction
from engine.queries import query
from engine.values import CoercionError, zone
from triggers import due

log = logging.getLogger("haste.schedule")

EVENT_TYPE = "time_based"
"""event_type of the outbox rows a schedule emits (targeted: automation_id is set)."""
DEFAULT_BATCH = 500
"""Rows claimed per statement (``HASTE_SCHEDULE_BATCH``)."""
DEFAULT_GRACE = timedelta(seconds=60)
"""How late a fire may be and still be on time (``HASTE_SCHEDULE_MISFIRE_GRACE``)."""
OWNER_COLUMNS = ("owner_id", "assigned_to")
"""Columns naming a record's owner, for ``timezone: owner`` (first one present wins)."""
BACKFILL_CHUNK = 2000
"""Records read per round trip when a date-field automation is deployed."""

Emit = Callable[..., int]
"""``emit_event(cur, *, workspace_id, event_type, automation_id=None, entity_type=None,
entity_id=None, payload=None) -> event id``: one targeted row in the outbox."""
EmitMany = Callable[[Any, Sequence[Mapping[str, Any]]], Sequence[int]]
"""``emit_events(cur, events) -> ids``: the same rows, one statement (optional; the outbox
module's batch writer when it has one). Each event holds emit_event's keyword arguments."""
Conn = psycopg.Connection[Any]
Cursor = psycopg.Cursor[Any]


def default_emit() -> Emit:
    """The outbox writer of the capture work (imported late: the scheduler starts without
    it in tests that pass their own)."""
    from triggers.emit import emit_event

    return emit_event


def default_emit_many() -> EmitMany | None:
    """The outbox's batch writer, if the capture work provides one (``emit_events``)."""
    from triggers import emit

    return getattr(emit, "emit_events", None)


@dataclass(frozen=True)
class Fire:
    """One emitted fire, as observers (metrics, tests, the benchmark) see it."""

    automation_id: UUID
    workspace_id: UUID
    fire_key: str
    scheduled_for: datetime
    event_id: int | None = None
    entity_type: str | None = None
    entity_id: UUID | None = None


@dataclass
class PassResult:
    """What one pass did; ``emitted`` are committed when the function returns."""

    claimed: int = 0
    emitted: list[Fire] = field(default_factory=list)
    skipped: int = 0
    buffered: int = 0
    moved: int = 0
    cancelled: int = 0
    errors: int = 0
    tally: Counter[tuple[str, str]] = field(default_factory=Counter)
    """Ledger rows written, by (kind, outcome): what ``haste_schedule_fires_total`` counts
    (kinds and outcomes: :data:`engine.metrics.SCHEDULE_KINDS`, ``SCHEDULE_OUTCOMES``)."""

    def add(self, other: PassResult) -> None:
        self.claimed += other.claimed
        self.emitted.extend(other.emitted)
        self.skipped += other.skipped
        self.buffered += other.buffered
        self.moved += other.moved
        self.cancelled += other.cancelled
        self.errors += other.errors
        self.tally.update(other.tally)


# --- zones -------------------------------------------------------------------------------


def zone_name(ref: str | None, workspace_tz: str | None, owner_tz: str | None = None) -> str:
    """The IANA name a schedule runs in: ``workspace``, ``owner`` (falling back to the
    workspace's) or an explicit name. Zones from data (workspace settings, users) that are
    not real zones fall back to UTC rather than stop the schedule; an explicit zone in the
    document was checked at deploy and raises if it is not real."""
    ref = ref or "workspace"
    explicit = ref not in ("workspace", "owner")
    candidates = [ref] if explicit else [owner_tz] if ref == "owner" else []
    candidates += [workspace_tz, "UTC"] if not explicit else []
    for name in candidates:
        if not name:
            continue
        try:
            zone(name)
            return name
        except CoercionError:
            if explicit:
                raise
            log.warning("unknown time zone %r in data; using the next fallback", name)
    return "UTC"


# --- sync: deploy / enable / disable ------------------------------------------------------


def sync(conn: Conn, now: datetime, *, batch: int = DEFAULT_BATCH) -> int:
    """Bring next_run_at (and, for date fields, the per-record due rows) in line with each
    time_based automation's current version and enabled state. Returns rows handled."""
    handled = 0
    while True:
        with system_transaction(conn, dict_rows=True) as cur:
            rows = cur.execute(query("schedule_sync_candidates"), {"limit": batch}).fetchall()
            for row in rows:
                _sync_one(cur, row, now)
            if any(r["live"] and "date_field" in (r["trigger_config"] or {}) for r in rows):
                ids = [r["id"] for r in rows if r["live"]]
                cur.execute(query("schedule_refresh_date_field_next_runs"), {"ids": ids})
        handled += len(rows)
        if len(rows) < batch:
            return handled


def _sync_one(cur: Cursor, row: Mapping[str, Any], now: datetime) -> None:
    params = {"id": row["id"], "workspace_id": row["workspace_id"]}
    state = {**params, "version": row["current_version"], "live": row["live"], "error": None}
    if row["trigger_type"] != "time_based":
        cur.execute(query("schedule_set_next_run"), {**params, "next_run_at": None})
        cur.execute(query("schedule_record_due_delete_all"), params)
        cur.execute(query("schedule_state_delete"), params)
        return
    try:
        spec = due.parse_spec(row["trigger_config"] or {})
    except ValueError as exc:
        log.error("automation %s: unusable schedule: %s", row["id"], exc)
        cur.execute(query("schedule_set_next_run"), {**params, "next_run_at": None})
        cur.execute(query("schedule_state_upsert"), {**state, "mode": "invalid", "error": str(exc)})
        return
    state["mode"] = spec.mode
    if not row["live"]:
        cur.execute(query("schedule_set_next_run"), {**params, "next_run_at": None})
        cur.execute(query("schedule_record_due_delete_pending"), params)
        cur.execute(query("schedule_state_upsert"), state)
        return
    if spec.mode == "date_field":
        try:
            _backfill(cur, row, spec, now)
        except ValueError as exc:
            log.error("automation %s: cannot schedule its records: %s", row["id"], exc)
            state.update(mode="invalid", error=str(exc))
        cur.execute(query("schedule_state_upsert"), state)
        return
    try:
        tz = zone_name(spec.timezone, row["workspace_timezone"])
        next_run_at = due.first_run(spec, tz, now)
    except ValueError as exc:
        log.error("automation %s: unusable schedule: %s", row["id"], exc)
        next_run_at = None
        state.update(mode="invalid", error=str(exc))
    cur.execute(query("schedule_set_next_run"), {**params, "next_run_at": next_run_at})
    cur.execute(query("schedule_state_upsert"), state)


# --- date fields: records, due rows --------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    """Where a date-field schedule reads its records."""

    entity: str
    table: str
    column: str
    owner: str | None
    soft_delete: bool


def _target(spec: due.ScheduleSpec) -> _Target:
    entity, column = spec.entity or "", spec.column or ""
    if entity not in fields.ENTITIES:
        raise ValueError(f"date_field {spec.date_field!r}: unknown record type {entity!r}")
    columns = fields.columns(entity)
    if column not in columns:
        raise ValueError(f"date_field {spec.date_field!r}: {entity} has no column {column!r}")
    owner = next((c for c in OWNER_COLUMNS if c in columns), None)
    return _Target(entity, fields.ENTITIES[entity], column, owner, "deleted_at" in columns)


def _record_select(target: _Target) -> sql.Composed:
    """SELECT id, value, owner, deleted FROM <table> (composed from catalogue names)."""
    return sql.SQL(
        "SELECT id, {col} AS value, {owner} AS owner, {deleted} AS deleted FROM {table}"
    ).format(
        col=sql.Identifier(target.column),
        owner=sql.Identifier(target.owner) if target.owner else sql.SQL("NULL::uuid"),
        deleted=(sql.SQL("deleted_at IS NOT NULL") if target.soft_delete else sql.SQL("false")),
        table=sql.Identifier(target.table),
    )


def _owner_zones(cur: Cursor, owners: Iterable[Any]) -> dict[Any, str | None]:
    ids = sorted({str(o) for o in owners if o})
    if not ids:
        return {}
    dcur = cur.connection.cursor(row_factory=dict_row)
    rows = dcur.execute(query("schedule_user_timezones"), {"ids": ids}).fetchall()
    return {str(r["id"]): r["timezone"] for r in rows}


@dataclass(frozen=True)
class _DueRow:
    automation_id: Any
    entity_id: Any
    workspace_id: Any
    entity_type: str
    date_value: str
    due_at: datetime
    status: str


def _due_row(
    automation_id: Any,
    workspace_id: Any,
    spec: due.ScheduleSpec,
    target: _Target,
    record: Mapping[str, Any],
    workspace_tz: str,
    owner_tz: str | None,
    status: str,
) -> _DueRow | None:
    """The due row of one record, or None when its date field is empty."""
    value = due.parse_date_value(record["value"])
    if value is None:
        return None
    tz = zone_name(spec.timezone, workspace_tz, owner_tz)
    due_at = due.date_due(value, spec.offset, spec.time, tz)
    return _DueRow(
        automation_id,
        record["id"],
        workspace_id,
        target.entity,
        due.date_value_key(value),
        due_at,
        status,
    )


def _upsert_due(cur: Cursor, rows: Sequence[_DueRow]) -> None:
    if not rows:
        return
    cur.execute(
        query("schedule_record_due_upsert_many"),
        {
            "automation_ids": [r.automation_id for r in rows],
            "entity_ids": [r.entity_id for r in rows],
            "workspace_ids": [r.workspace_id for r in rows],
            "entity_types": [r.entity_type for r in rows],
            "date_values": [r.date_value for r in rows],
            "due_ats": [r.due_at for r in rows],
            "statuses": [r.status for r in rows],
        },
    )


def _delete_due(cur: Cursor, pairs: Sequence[tuple[Any, Any]]) -> None:
    if pairs:
        cur.execute(
            query("schedule_record_due_delete_many"),
            {"automation_ids": [a for a, _ in pairs], "entity_ids": [e for _, e in pairs]},
        )


def _backfill(cur: Cursor, row: Mapping[str, Any], spec: due.ScheduleSpec, now: datetime) -> None:
    """Due rows for every live record of the workspace with a date in the field. Records
    whose instant has already passed at deploy are recorded ``skipped``: a deploy does not
    fire for the past."""
    target = _target(spec)
    zone_name(spec.timezone, row["workspace_timezone"])  # an explicit bad zone raises here
    cur.execute(query("schedule_record_due_delete_pending"), {"id": row["id"]})
    stmt = sql.SQL("{select} WHERE workspace_id = %s AND {col} IS NOT NULL{live}").format(
        select=_record_select(target),
        col=sql.Identifier(target.column),
        live=sql.SQL(" AND deleted_at IS NULL") if target.soft_delete else sql.SQL(""),
    )
    reader = cur.connection.cursor(name=f"backfill_{row['id'].hex}", row_factory=dict_row)
    with reader:
        reader.execute(stmt, (row["workspace_id"],))
        while chunk := reader.fetchmany(BACKFILL_CHUNK):
            zones = _owner_zones(cur, (r["owner"] for r in chunk))
            rows: list[_DueRow] = []
            for record in chunk:
                owner_tz = zones.get(str(record["owner"])) if record["owner"] else None
                made = _due_row(
                    row["id"],
                    row["workspace_id"],
                    spec,
                    target,
                    record,
                    row["workspace_timezone"],
                    owner_tz,
                    "pending",
                )
                if made is not None:
                    status = "pending" if made.due_at > now else "skipped"
                    rows.append(_DueRow(**{**made.__dict__, "status": status}))
            _upsert_due(cur, rows)


_SINGULAR = {table: entity for entity, table in fields.ENTITIES.items()}


def _entity_of(raw: Any) -> str | None:
    text = str(raw or "")
    if text in fields.ENTITIES:
        return text
    return _SINGULAR.get(text)


def _is_delete(event: Mapping[str, Any]) -> bool:
    operation = str(event.get("operation") or "").lower()
    if operation in ("delete", "deleted"):
        return True
    new = event.get("new") or {}
    return "deleted_at" in (event.get("changed_fields") or ()) and new.get("deleted_at") is not None


def on_record_event(cur: Cursor, event: Mapping[str, Any]) -> None:
    """The listener's hook, called for every CRM event inside its transaction (with the
    event's workspace set). Keeps ``schedule_record_due`` right for date-field automations:
    a record created or whose date / owner / ``deleted_at`` changed gets its due row
    re-computed from the record as it is now; a deleted record loses its rows.

    ``event``: workspace_id, entity_type ("deal" or "deals"), entity_id, operation,
    event_type, old, new, changed_fields. Costs one indexed look-up when the workspace has
    no date-field automation on that entity. Never raises for an event it cannot use.
    """
    entity = _entity_of(event.get("entity_type"))
    workspace_id, entity_id = event.get("workspace_id"), event.get("entity_id")
    if entity is None or not workspace_id or not entity_id:
        return
    dcur = cur.connection.cursor(row_factory=dict_row)
    automations = dcur.execute(
        query("schedule_date_field_automations"),
        {"workspace_id": workspace_id, "prefix": f"{entity}.%"},
    ).fetchall()
    if not automations:
        return
    if _is_delete(event):
        _delete_due(dcur, [(a["id"], entity_id) for a in automations])
        return
    changed = set(event.get("changed_fields") or ())
    created = str(event.get("operation") or "").lower() in ("insert", "create", "created") or str(
        event.get("event_type") or ""
    ).endswith("_created")
    relevant: list[tuple[Any, due.ScheduleSpec, _Target]] = []
    for automation in automations:
        try:
            spec = due.parse_spec(automation["trigger_config"] or {})
            target = _target(spec)
        except ValueError:
            continue  # sync records the problem on the automation
        watched = {target.column, "deleted_at"}
        if spec.timezone == "owner" and target.owner:
            watched.add(target.owner)
        if created or watched & changed:
            relevant.append((automation["id"], spec, target))
    if relevant:
        _recompute(dcur, workspace_id, entity_id, relevant)


def _recompute(
    cur: Cursor,
    workspace_id: Any,
    entity_id: Any,
    schedules: Sequence[tuple[Any, due.ScheduleSpec, _Target]],
) -> None:
    workspace_tz = (
        cur.execute(query("schedule_workspace_timezone"), {"id": workspace_id}).fetchone() or {}
    ).get("timezone") or "UTC"
    upserts: list[_DueRow] = []
    deletes: list[tuple[Any, Any]] = []
    for automation_id, spec, target in schedules:
        record = cur.execute(
            sql.SQL("{} WHERE id = %s").format(_record_select(target)), (entity_id,)
        ).fetchone()
        if record is None or record["deleted"]:
            deletes.append((automation_id, entity_id))
            continue
        owner_tz = _owner_zones(cur, [record["owner"]]).get(str(record["owner"]))
        try:
            made = _due_row(
                automation_id, workspace_id, spec, target, record, workspace_tz, owner_tz, "pending"
            )
        except ValueError as exc:
            log.warning("automation %s, record %s: %s", automation_id, entity_id, exc)
            made = None
        if made is None:
            deletes.append((automation_id, entity_id))
        else:
            upserts.append(made)
    _delete_due(cur, deletes)
    _upsert_due(cur, upserts)


# --- firing -------------------------------------------------------------------------------


_METRIC_OUTCOME = {
    "skipped_overlap": "skipped",
    "skipped_misfire": "misfired",
    "skipped_window": "misfired",
}
"""Ledger outcome → haste_schedule_fires_total outcome ("emitted" is on_time or late)."""


@dataclass
class _Ledger:
    """Ledger rows of one batch, inserted together; emitted ones get their event id.
    ``now`` and ``grace`` tell an emitted fire on time from a late one (the tally)."""

    now: datetime
    grace: timedelta
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    emits: dict[tuple[Any, str], dict[str, Any]] = field(default_factory=dict)
    kinds: dict[tuple[str, str], str] = field(default_factory=dict)
    tally: Counter[tuple[str, str]] = field(default_factory=Counter)

    def add(
        self,
        automation_id: Any,
        workspace_id: Any,
        key: str,
        scheduled_for: datetime,
        outcome: str,
        *,
        kind: str,
        entity_type: str | None = None,
        entity_id: Any = None,
        payload: Mapping[str, Any] | None = None,
    ) -> None:
        self.rows.append(
            (automation_id, workspace_id, key, scheduled_for, entity_type, entity_id, outcome)
        )
        self.kinds[(str(automation_id), key)] = kind
        if outcome == "emitted":
            self.emits[(str(automation_id), key)] = {
                "workspace_id": workspace_id,
                "automation_id": automation_id,
                "entity_type": entity_type,
                "entity_id": entity_id,
                "scheduled_for": scheduled_for,
                "payload": dict(payload or {}),
            }

    def commit_rows(
        self, cur: Cursor, emit: Emit, fired_by: str, emit_many: EmitMany | None = None
    ) -> list[Fire]:
        """Emit the fires whose key is not in the ledger yet, then record every row with
        its event id; returns the fires emitted.

        The caller holds the row locks of these automations (or due records), so no other
        replica can record the same key between the look-up and the insert; if one ever
        did, the insert finds it and the whole transaction is rolled back rather than let
        an event out twice.
        """
        if not self.rows:
            return []
        existing = {
            (str(r[0]), r[1])
            for r in cur.connection.cursor().execute(
                query("schedule_fire_existing"),
                {
                    "automation_ids": [r[0] for r in self.rows],
                    "keys": [r[2] for r in self.rows],
                },
            )
        }
        fresh = [r for r in self.rows if (str(r[0]), r[2]) not in existing]
        if not fresh:
            return []
        events = [
            (row, self.emits[(str(row[0]), row[2])])
            for row in fresh
            if (str(row[0]), row[2]) in self.emits
        ]
        calls = [
            {
                "workspace_id": spec["workspace_id"],
                "event_type": EVENT_TYPE,
                "automation_id": spec["automation_id"],
                "entity_type": spec["entity_type"],
                "entity_id": spec["entity_id"],
                "payload": {
                    "scheduled_for": spec["scheduled_for"].astimezone(UTC).isoformat(),
                    "fire_key": row[2],
                    **spec["payload"],
                },
            }
            for row, spec in events
        ]
        plain = cur.connection.cursor()
        if emit_many is not None and calls:
            event_ids = list(emit_many(plain, calls))
        else:
            event_ids = [emit(plain, **call) for call in calls]
        by_key = {
            (str(row[0]), row[2]): eid for (row, _), eid in zip(events, event_ids, strict=True)
        }
        columns = list(zip(*fresh, strict=True))
        inserted = cur.execute(
            query("schedule_fire_insert_many"),
            {
                "automation_ids": list(columns[0]),
                "workspace_ids": list(columns[1]),
                "keys": list(columns[2]),
                "scheduled": list(columns[3]),
                "entity_types": list(columns[4]),
                "entity_ids": list(columns[5]),
                "outcomes": list(columns[6]),
                "event_ids": [by_key.get((str(r[0]), r[2])) for r in fresh],
                "fired_by": fired_by,
            },
        ).rowcount
        if inserted != len(fresh):
            raise FireConflict(
                f"{len(fresh) - inserted} fire keys were recorded by someone else meanwhile"
            )
        for row in fresh:
            outcome = row[6]
            if outcome == "emitted":
                outcome = "late" if self.now - row[3] > self.grace else "on_time"
            self.tally[
                (self.kinds[(str(row[0]), row[2])], _METRIC_OUTCOME.get(outcome, outcome))
            ] += 1
        return [
            Fire(
                automation_id=spec["automation_id"],
                workspace_id=spec["workspace_id"],
                fire_key=row[2],
                scheduled_for=spec["scheduled_for"],
                event_id=by_key[(str(row[0]), row[2])],
                entity_type=spec["entity_type"],
                entity_id=spec["entity_id"],
            )
            for row, spec in events
        ]


class FireConflict(RuntimeError):
    """A fire key appeared in the ledger while we held its row: roll back, emit nothing."""


def fire_due_schedules(
    conn: Conn,
    now: datetime,
    *,
    emit: Emit,
    batch: int = DEFAULT_BATCH,
    grace: timedelta = DEFAULT_GRACE,
    fired_by: str = "",
    emit_many: EmitMany | None = None,
) -> PassResult:
    """One batch of due cron/at automations: plan (misfire), decide (overlap), record,
    emit and advance — one transaction. Call again while ``claimed == batch``."""
    result = PassResult()
    with system_transaction(conn, dict_rows=True) as cur:
        rows = cur.execute(
            query("schedule_claim_due_many"), {"now": now, "limit": batch}
        ).fetchall()
        result.claimed = len(rows)
        if not rows:
            return result
        plans: dict[Any, tuple[due.ScheduleSpec, due.FirePlan]] = {}
        advance: dict[Any, datetime | None] = {}
        for row in rows:
            try:
                spec = due.parse_spec(row["trigger_config"] or {})
                tz = zone_name(spec.timezone, row["workspace_timezone"])
                plans[row["id"]] = (
                    spec,
                    due.plan_fires(spec, tz, row["next_run_at"], now, grace=grace),
                )
            except ValueError as exc:
                log.error("automation %s: unusable schedule, stopped: %s", row["id"], exc)
                advance[row["id"]] = None
                result.errors += 1
        contested = [i for i, (s, p) in plans.items() if p.fire and s.overlap != "allow"]
        live = (
            {
                r["automation_id"]
                for r in cur.execute(query("schedule_live_automations"), {"ids": contested})
            }
            if contested
            else set()
        )
        ledger = _Ledger(now, grace)
        state: list[tuple[Any, datetime | None, str, datetime | None, str | None]] = []
        fired_any: dict[Any, bool] = {}
        for row in rows:
            if row["id"] not in plans:
                continue
            spec, plan = plans[row["id"]]
            advance[row["id"]] = plan.next_run_at
            decisions = due.overlap_decisions(
                spec.overlap, len(plan.fire), running=row["id"] in live, buffered=row["buffered"]
            )
            outcome, last_fire, buffer_for, buffer_key = None, None, None, None
            for instant, decision in zip(plan.fire, decisions, strict=True):
                key = due.fire_key(instant)
                if decision == "fire":
                    ledger.add(
                        row["id"], row["workspace_id"], key, instant, "emitted", kind=spec.mode
                    )
                    outcome, last_fire = "emitted", instant
                elif decision == "buffer":
                    buffer_for, buffer_key, outcome = instant, key, "buffered"
                    result.buffered += 1
                else:
                    ledger.add(
                        row["id"],
                        row["workspace_id"],
                        key,
                        instant,
                        "skipped_overlap",
                        kind=spec.mode,
                    )
                    outcome = outcome or "skipped_overlap"
                    result.skipped += 1
            for instant, why in plan.skipped:
                ledger.add(
                    row["id"],
                    row["workspace_id"],
                    due.fire_key(instant),
                    instant,
                    why,
                    kind=spec.mode,
                )
                outcome = outcome or why
                result.skipped += 1
            fired_any[row["id"]] = last_fire is not None
            if outcome is not None:
                state.append((row["id"], last_fire, outcome, buffer_for, buffer_key))
        result.emitted = ledger.commit_rows(cur, emit, fired_by, emit_many)
        result.tally = ledger.tally
        ids = list(advance)
        cur.execute(
            query("schedule_advance_many"),
            {
                "ids": ids,
                "next": [advance[i] for i in ids],
                "fired": [fired_any.get(i, False) for i in ids],
                "now": now,
            },
        )
        if state:
            columns = list(zip(*state, strict=True))
            cur.execute(
                query("schedule_state_after_fire_many"),
                {
                    "ids": list(columns[0]),
                    "last_fire_at": list(columns[1]),
                    "outcomes": list(columns[2]),
                    "buffer_for": list(columns[3]),
                    "buffer_key": list(columns[4]),
                },
            )
    return result


def fire_buffered(
    conn: Conn,
    now: datetime,
    *,
    emit: Emit,
    batch: int = DEFAULT_BATCH,
    grace: timedelta = DEFAULT_GRACE,
    fired_by: str = "",
    emit_many: EmitMany | None = None,
) -> PassResult:
    """overlap = buffer_one: emit the held-back fire of automations whose run is over
    (``grace`` only tells an on-time fire from a late one in the tally)."""
    result = PassResult()
    with system_transaction(conn, dict_rows=True) as cur:
        rows = cur.execute(query("schedule_claim_buffered_many"), {"limit": batch}).fetchall()
        result.claimed = len(rows)
        if not rows:
            return result
        ids = [r["id"] for r in rows]
        # Which kind each held-back fire is (cron or at), for the tally; rows we hold.
        modes = dict(
            cur.connection.execute(
                "SELECT automation_id, mode FROM automation_schedules"
                " WHERE automation_id = ANY(%s::uuid[])",
                (ids,),
            ).fetchall()
        )
        ledger = _Ledger(now, grace)
        for row in rows:
            ledger.add(
                row["id"],
                row["workspace_id"],
                row["buffered_key"],
                row["buffered_for"],
                "emitted",
                kind=modes.get(row["id"], "cron"),
                payload={"buffered": True},
            )
        result.emitted = ledger.commit_rows(cur, emit, fired_by, emit_many)
        result.tally = ledger.tally
        cur.execute(query("schedule_clear_buffer_many"), {"ids": ids, "now": now})
        cur.execute(query("schedule_mark_fired_many"), {"ids": ids, "now": now})
    return result


def fire_due_records(
    conn: Conn,
    now: datetime,
    *,
    emit: Emit,
    batch: int = DEFAULT_BATCH,
    grace: timedelta = DEFAULT_GRACE,
    fired_by: str = "",
    emit_many: EmitMany | None = None,
) -> PassResult:
    """One batch of due per-record rows: check each record as it is now (gone → row
    deleted; date moved → re-scheduled), apply the misfire policy, record, emit."""
    result = PassResult()
    with system_transaction(conn, dict_rows=True) as cur:
        rows = cur.execute(
            query("schedule_claim_due_records"), {"now": now, "limit": batch}
        ).fetchall()
        result.claimed = len(rows)
        if not rows:
            return result
        groups: dict[tuple[str, str], list[tuple[Mapping[str, Any], due.ScheduleSpec, _Target]]]
        groups = defaultdict(list)
        settle: list[tuple[Any, Any, str]] = []
        for row in rows:
            try:
                spec = due.parse_spec(row["trigger_config"] or {})
                target = _target(spec)
            except ValueError as exc:
                log.error("automation %s: unusable date field: %s", row["automation_id"], exc)
                settle.append((row["automation_id"], row["entity_id"], "skipped"))
                result.errors += 1
                continue
            groups[(target.table, target.column)].append((row, spec, target))
        ledger = _Ledger(now, grace)
        deletes: list[tuple[Any, Any]] = []
        moved: list[_DueRow] = []
        for members in groups.values():
            target = members[0][2]
            ids = sorted({str(m[0]["entity_id"]) for m in members})
            records = {
                str(r["id"]): r
                for r in cur.execute(
                    sql.SQL("{} WHERE id = ANY(%s::uuid[])").format(_record_select(target)), (ids,)
                )
            }
            zones = _owner_zones(cur, (r["owner"] for r in records.values()))
            for row, spec, _ in members:
                record = records.get(str(row["entity_id"]))
                if record is None or record["deleted"]:
                    deletes.append((row["automation_id"], row["entity_id"]))
                    result.cancelled += 1
                    continue
                owner_tz = zones.get(str(record["owner"])) if record["owner"] else None
                current = _due_row(
                    row["automation_id"],
                    row["workspace_id"],
                    spec,
                    target,
                    record,
                    row["workspace_timezone"],
                    owner_tz,
                    "pending",
                )
                if current is None:
                    deletes.append((row["automation_id"], row["entity_id"]))
                    result.cancelled += 1
                    continue
                if current.date_value != row["date_value"] or current.due_at != row["due_at"]:
                    moved.append(current)
                    result.moved += 1
                    continue
                decision = due.record_fire_decision(spec, row["due_at"], now, grace=grace)
                key = due.record_fire_key(row["entity_id"], row["date_value"])
                outcome = "emitted" if decision == "fire" else decision
                ledger.add(
                    row["automation_id"],
                    row["workspace_id"],
                    key,
                    row["due_at"],
                    outcome,
                    kind="date_field",
                    entity_type=target.entity,
                    entity_id=row["entity_id"],
                    payload={
                        "date_field": spec.date_field,
                        "date_value": row["date_value"],
                        "due_at": row["due_at"].astimezone(UTC).isoformat(),
                    },
                )
                if decision == "fire":
                    settle.append((row["automation_id"], row["entity_id"], "fired"))
                else:
                    settle.append((row["automation_id"], row["entity_id"], "skipped"))
                    result.skipped += 1
        result.emitted = ledger.commit_rows(cur, emit, fired_by, emit_many)
        result.tally = ledger.tally
        _delete_due(cur, deletes)
        _upsert_due(cur, moved)
        if settle:
            columns = list(zip(*settle, strict=True))
            cur.execute(
                query("schedule_record_due_settle_many"),
                {
                    "automation_ids": list(columns[0]),
                    "entity_ids": list(columns[1]),
                    "statuses": list(columns[2]),
                    "now": now,
                },
            )
        touched = sorted({str(r["automation_id"]) for r in rows})
        cur.execute(query("schedule_refresh_date_field_next_runs"), {"ids": touched})
        fired = sorted({str(f.automation_id) for f in result.emitted})
        if fired:
            cur.execute(query("schedule_mark_fired_many"), {"ids": fired, "now": now})
    return result


def refresh_date_field_next_runs(conn: Conn) -> None:
    """next_run_at of every date-field automation = its earliest pending record (the
    listener's hook changes due rows without touching automations, to keep its
    transactions free of row locks on them)."""
    with system_transaction(conn) as cur:
        cur.execute(query("schedule_refresh_date_field_next_runs"), {"ids": None})


# --- delays ------------------------------------------------------------------------------


def wake_due_delays(
    conn: Conn,
    now: datetime,
    *,
    batch: int = DEFAULT_BATCH,
    enqueue: Callable[[Sequence[Any]], Any] | None = None,
) -> list[UUID]:
    """waiting → queued for executions whose ``resume_at`` has come, then send them.

    Claimed with SKIP LOCKED and moved by :func:`engine.executions.wake` (guarded on
    ``status = 'waiting'``) in the same transaction; messages go out after the commit, so
    a worker never finds the row still waiting. Returns the ids woken (all batches).
    """
    from engine.executions import wake

    if enqueue is None:
        from workers.broker import enqueue_executions as enqueue
    woken_all: list[UUID] = []
    while True:
        with system_transaction(conn) as cur:
            ids = [
                r[0]
                for r in cur.execute(query("schedule_delay_due_many"), {"now": now, "limit": batch})
            ]
            woken = wake(conn, ids, enqueue=False) if ids else []
        if woken:
            enqueue([str(i) for i in woken])
        woken_all.extend(woken)
        if len(ids) < batch:
            return woken_all
