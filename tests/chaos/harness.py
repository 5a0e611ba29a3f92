"""The world a chaos scenario breaks, the CRM write load it runs under, and the tally that
proves (or disproves) the guarantees afterwards.

Every side effect names the event that caused it: the score automation writes the notes
``before:<event id>`` and ``after:<event id>`` around an HTTP call (so a worker can be
killed in the middle of a run), the created-contact automation the note
``created:<event id>``, a one-off schedule the task ``fired:<event id>``. The tally counts
them per event from the database, independently of how the engine derives row ids, so a
step that took effect twice, or not at all, shows up as duplicated or lost.
"""

from __future__ import annotations

import random
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg

from engine.db import tenant_transaction
from tests.fakes.crm import Workspace, make_contact, make_workspace
from tests.fakes.executions import deploy_doc
from tests.fakes.http_server import FakeHttp

Conn = psycopg.Connection[Any]

SEED_CONTACTS = 20
#: Side effects each kind of event must leave exactly once when its run completed.
EFFECTS: dict[str, tuple[str, ...]] = {
    "contact_updated": ("before", "after"),
    "contact_created": ("created",),
    "time_based": ("fired",),
}
EVENT_TYPES = tuple(EFFECTS)
LIVE = ("queued", "running", "waiting")


def score_doc(url: str) -> dict[str, Any]:
    return {
        "name": "chaos score",
        "trigger_type": "contact_updated",
        "trigger_config": {"watch": ["score"]},
        "reenrollment": "always",  # every score change is a run: runs = events
        "actions": [
            {"id": "before", "type": "add_note", "params": {"content": "before:{{ event.id }}"}},
            {"id": "call", "type": "http_request", "params": {"method": "POST", "url": url}},
            {"id": "after", "type": "add_note", "params": {"content": "after:{{ event.id }}"}},
        ],
    }


CREATED_DOC: dict[str, Any] = {
    "name": "chaos created",
    "trigger_type": "contact_created",
    "trigger_config": {},
    "reenrollment": "always",
    "actions": [
        {"id": "note", "type": "add_note", "params": {"content": "created:{{ event.id }}"}}
    ],
}


def one_off_doc(name: str, at: datetime) -> dict[str, Any]:
    return {
        "name": name,
        "trigger_type": "time_based",
        "trigger_config": {"at": at.isoformat()},
        "actions": [
            {"id": "task", "type": "create_task", "params": {"title": "fired:{{ event.id }}"}}
        ],
    }


@dataclass
class World:
    """One workspace with its contacts and automations, in the scenario's database."""

    ws: Workspace
    contacts: list[UUID]
    automations: dict[str, UUID] = field(default_factory=dict)


def build_world(db: Conn, http: FakeHttp) -> World:
    ws = make_workspace(db, "chaos")
    world = World(ws, [])
    for doc in (score_doc(http.url("/hook")), CREATED_DOC):
        world.automations[doc["name"]] = deploy_doc(db, ws, doc)[0]
    world.contacts = [make_contact(db, ws, score=0) for _ in range(SEED_CONTACTS)]
    return world


def deploy_one_offs(db: Conn, world: World, instants: list[datetime]) -> list[UUID]:
    ids = []
    for i, at in enumerate(instants):
        automation_id = deploy_doc(db, world.ws, one_off_doc(f"chaos one-off {i}", at))[0]
        world.automations[f"chaos one-off {i}"] = automation_id
        ids.append(automation_id)
    return ids


# --- the write load ---------------------------------------------------------------------


class Load:
    """CRM writes in a background thread, one tenant transaction each: mostly score changes
    of existing contacts, sometimes a new contact. Survives a database outage (the writes
    that fail are counted, not retried: only committed writes make events)."""

    def __init__(self, db_url: str, world: World, *, rate: float = 10.0, seed: int = 7) -> None:
        self.db_url = db_url
        self.world = world
        self.interval = 1.0 / rate
        self.rng = random.Random(seed)
        self.committed = 0
        self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-load", daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _write(self, conn: Conn) -> None:
        ws = self.world.ws.id
        with tenant_transaction(conn, ws) as cur:
            if self.rng.random() < 0.15:
                contact = uuid.uuid4()
                cur.execute(
                    "INSERT INTO contacts (id, workspace_id, email, score) VALUES (%s, %s, %s, 0)",
                    (contact, ws, f"load-{contact.hex[:10]}@example.com"),
                )
                self.world.contacts.append(contact)
            else:
                cur.execute(
                    "UPDATE contacts SET score = score + 1 WHERE id = %s",
                    (self.rng.choice(self.world.contacts),),
                )

    def _run(self) -> None:
        conn: Conn | None = None
        while not self._stop.wait(self.interval):
            try:
                if conn is None or conn.closed or conn.broken:
                    conn = psycopg.connect(self.db_url, autocommit=True, connect_timeout=2)
                self._write(conn)
                self.committed += 1
            except psycopg.Error:
                self.failed += 1
                if conn is not None:
                    conn.close()
                conn = None
                self._stop.wait(0.2)
        if conn is not None:
            conn.close()


def burst(db: Conn, world: World, rounds: int) -> None:
    """A bulk CRM change: every contact's score, ``rounds`` times, in one transaction."""
    with tenant_transaction(db, world.ws.id) as cur:
        for _ in range(rounds):
            cur.execute(
                "UPDATE contacts SET score = score + 1 WHERE workspace_id = %s", (world.ws.id,)
            )


# --- waiting for the engine to settle ---------------------------------------------------


def backlog(db: Conn) -> tuple[int, int]:
    """(events not processed yet, executions still queued/running/waiting)."""
    row = db.execute(
        "SELECT (SELECT count(*) FROM automation_events WHERE processed_at IS NULL),"
        " (SELECT count(*) FROM automation_executions WHERE status = ANY(%s))",
        (list(LIVE),),
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def settle(db: Conn, timeout: float = 60.0) -> float:
    """Wait until the outbox is drained and no execution is live (seen twice in a row);
    returns the seconds it took. Gives up quietly after ``timeout``: the tally then
    counts what is still pending as lost, which is the honest final state."""
    started = time.monotonic()
    quiet = 0
    while time.monotonic() - started < timeout:
        quiet = quiet + 1 if backlog(db) == (0, 0) else 0
        if quiet >= 2:
            break
        time.sleep(0.25)
    return time.monotonic() - started


# --- the tally --------------------------------------------------------------------------

_EFFECT = re.compile(r"^(before|after|created|fired):(\d+)$")


@dataclass
class Tally:
    scenario: str
    events: int = 0
    executions: int = 0
    completed: int = 0
    failed: int = 0
    recoveries: int = 0
    # what was lost
    unprocessed: int = 0  # events the listener never finished (or parked with an error)
    without_execution: int = 0  # processed events that started no run
    live: int = 0  # runs still queued/running/waiting after the settle timeout
    missing_effects: int = 0  # a completed run's note/task absent
    missing_calls: int = 0  # a completed run whose HTTP call never reached the server
    failed_silently: int = 0  # failed runs without an error message
    missed_fires: int = 0  # a one-off schedule whose instant passed without its event
    # what was doubled
    extra_executions: int = 0  # more than one run for one event
    duplicate_effects: int = 0  # a note/task present more than once
    stray_effects: int = 0  # a note/task naming no captured event
    doubled_fires: int = 0  # a one-off schedule that emitted more than one event
    # allowed: external calls are at least once, with one key
    repeated_calls: int = 0
    counters: dict[str, tuple[tuple[int, int, int], tuple[int, int, int]]] = field(
        default_factory=dict
    )
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def lost(self) -> int:
        return (
            self.unprocessed
            + self.without_execution
            + self.live
            + self.missing_effects
            + self.missing_calls
            + self.failed_silently
            + self.missed_fires
        )

    @property
    def duplicated(self) -> int:
        return (
            self.extra_executions + self.duplicate_effects + self.stray_effects + self.doubled_fires
        )

    @property
    def counter_mismatches(self) -> dict[str, Any]:
        return {name: pair for name, pair in self.counters.items() if pair[0] != pair[1]}

    def line(self) -> str:
        extra = " ".join(f"{k}={v}" for k, v in self.extra.items())
        return (
            f"CHAOS {self.scenario}: events={self.events} executions={self.executions}"
            f" completed={self.completed} failed={self.failed} lost={self.lost}"
            f" duplicated={self.duplicated} recoveries={self.recoveries}"
            f" http_repeats={self.repeated_calls} counters_ok={not self.counter_mismatches}"
            + (f" {extra}" if extra else "")
        )

    def detail(self) -> str:
        parts = {
            "unprocessed": self.unprocessed,
            "without_execution": self.without_execution,
            "live": self.live,
            "missing_effects": self.missing_effects,
            "missing_calls": self.missing_calls,
            "failed_silently": self.failed_silently,
            "missed_fires": self.missed_fires,
            "extra_executions": self.extra_executions,
            "duplicate_effects": self.duplicate_effects,
            "stray_effects": self.stray_effects,
            "doubled_fires": self.doubled_fires,
            "counter_mismatches": self.counter_mismatches,
        }
        return ", ".join(f"{k}={v}" for k, v in parts.items())


def tally(
    scenario: str, db: Conn, world: World, http: FakeHttp, one_offs: Sequence[UUID] = ()
) -> Tally:
    """Count events, runs and side effects of the world's workspace (module doc); with
    ``one_offs`` (one-off schedules whose instant has passed), their events too: exactly
    one each."""
    ws = world.ws.id
    t = Tally(scenario)
    if one_offs:
        emitted = Counter(
            row[0]
            for row in db.execute(
                "SELECT automation_id FROM automation_events"
                " WHERE event_type = 'time_based' AND automation_id = ANY(%s)",
                (list(one_offs),),
            )
        )
        t.missed_fires = sum(1 for a in one_offs if emitted[a] == 0)
        t.doubled_fires = sum(emitted[a] - 1 for a in one_offs if emitted[a] > 1)
    events = db.execute(
        "SELECT id, event_type, processed_at IS NOT NULL AND error IS NULL"
        " FROM automation_events"
        " WHERE workspace_id = %s AND depth = 0 AND event_type = ANY(%s)",
        (ws, list(EVENT_TYPES)),
    ).fetchall()
    kinds = {event_id: event_type for event_id, event_type, _ in events}
    t.events = len(events)
    t.unprocessed = sum(1 for _, _, done in events if not done)

    runs = db.execute(
        "SELECT id, event_id, status, error_message, recoveries FROM automation_executions"
        " WHERE workspace_id = %s",
        (ws,),
    ).fetchall()
    per_event = Counter(event_id for _, event_id, *_ in runs)
    t.executions = len(runs)
    t.completed = sum(1 for r in runs if r[2] == "completed")
    t.failed = sum(1 for r in runs if r[2] == "failed")
    t.live = sum(1 for r in runs if r[2] in LIVE)
    t.recoveries = sum(r[4] for r in runs)
    t.failed_silently = sum(1 for r in runs if r[2] == "failed" and not r[3])
    t.without_execution = sum(
        1 for event_id, _, done in events if done and per_event[event_id] == 0
    )
    t.extra_executions = sum(max(0, n - 1) for n in per_event.values())

    effects: Counter[tuple[str, int]] = Counter()
    for (text,) in db.execute(
        "SELECT content FROM notes WHERE workspace_id = %s"
        " UNION ALL SELECT title FROM tasks WHERE workspace_id = %s",
        (ws, ws),
    ):
        match = _EFFECT.match(text or "")
        if match is None or int(match[2]) not in kinds:
            t.stray_effects += 1
        else:
            effects[(match[1], int(match[2]))] += 1
    t.duplicate_effects = sum(n - 1 for n in effects.values() if n > 1)

    keys = Counter(r.headers.get("idempotency-key") for r in list(http.requests))
    t.repeated_calls = sum(n - 1 for n in keys.values() if n > 1)
    for run_id, event_id, status, _, _ in runs:
        if status != "completed" or event_id not in kinds:
            continue
        kind = kinds[event_id]
        t.missing_effects += sum(1 for e in EFFECTS[kind] if effects[(e, event_id)] == 0)
        if kind == "contact_updated" and keys[f"{run_id}:call"] == 0:
            t.missing_calls += 1

    finished = Counter((r[0], r[1]) for r in _finished(db, ws))
    names = {automation_id: name for name, automation_id in world.automations.items()}
    for automation_id, run_count, success_count, error_count in db.execute(
        "SELECT id, coalesce(run_count, 0), coalesce(success_count, 0),"
        " coalesce(error_count, 0) FROM automations WHERE workspace_id = %s",
        (ws,),
    ):
        done = finished[(automation_id, "completed")]
        bad = finished[(automation_id, "failed")]
        t.counters[names.get(automation_id, str(automation_id))] = (
            (run_count, success_count, error_count),
            (done + bad, done, bad),
        )
    return t


def _finished(db: Conn, ws: UUID) -> list[tuple[UUID, str]]:
    rows = db.execute(
        "SELECT automation_id, status FROM automation_executions"
        " WHERE workspace_id = %s AND status IN ('completed', 'failed')",
        (ws,),
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


def report(t: Tally) -> None:
    """Print the scenario's counts (``pytest -s`` shows them live, ``-rA`` in the summary)."""
    print(t.line(), flush=True)
    if t.lost or t.duplicated or t.counter_mismatches:
        print(f"CHAOS {t.scenario} detail: {t.detail()}", flush=True)


def db_now(db: Conn) -> datetime:
    row = db.execute("SELECT now()").fetchone()
    assert row is not None
    return row[0]


def seconds_from(db: Conn, seconds: float) -> datetime:
    return db_now(db) + timedelta(seconds=seconds)
