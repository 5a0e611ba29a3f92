"""G7: 10,000 schedules, 5,000 due in the same second: enqueue lateness and missed fires.

Starts its own embedded PostgreSQL in a temp dir, applies every migration, creates 10,000
enabled time_based automations (cron) in 10 workspaces and sets their ``next_run_at``:
5,000 spread over one second ``T`` (the "same second"), 5,000 an hour later. Then, in the
same run, on the same database:

* **haste**: the real :class:`triggers.scheduler.Scheduler` (leader lock, APScheduler
  ticks, defaults: 1 s tick, batches of 500, SystemClock) with the real outbox writer
  (:func:`triggers.emit.emit_event`). Lateness of a fire = the commit of its outbox row
  (measured right after the batch's commit) minus its scheduled instant.
* **anchor**: APScheduler 3 with one job per schedule (``CronTrigger`` at the schedule's
  instant; scheduler defaults: thread pool of 10, ``misfire_grace_time`` 1 s), each job
  inserting the same outbox row through a pool of 10 connections. Lateness = its commit
  minus its scheduled instant; missed = APScheduler's ``EVENT_JOB_MISSED``.

Missed, for haste: fires due in the window that have no outbox row when the run ends.
Goal (issue 7): p99 ≤ 1 s, max ≤ 2 s, 0 missed. Prints JSON, writes
bench/results/schedule.json. Bounded: about one minute.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import statistics
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from embedded import migrated_postgres

from engine.config import load_settings
from engine.queries import query

RESULTS = Path(__file__).resolve().parent / "results"
DBNAME = "bench_schedule"
SCHEDULES = 10_000
DUE = 5_000
WORKSPACES = 10
LEAD_S = 12.0
"""Seconds between setting up a run and its due second (leader election, job adding)."""
SETTLE_S = 12.0
"""Seconds after the due second before counting what fired."""


def seed(conn: psycopg.Connection[Any]) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """10,000 enabled cron automations, already synced (so the run measures fires only)."""
    workspaces = [uuid.uuid4() for _ in range(WORKSPACES)]
    with conn.cursor() as cur:
        for i, ws in enumerate(workspaces):
            cur.execute(
                "INSERT INTO workspaces (id, name, slug) VALUES (%s, %s, %s)",
                (ws, f"ws {i}", f"bench-{i}-{ws.hex[:6]}"),
            )
        autos = [(uuid.uuid4(), workspaces[n % WORKSPACES]) for n in range(SCHEDULES)]
        config = {"cron": "0 9 * * *", "timezone": "UTC", "misfire": "run_once"}
        with cur.copy(
            "COPY automations (id, workspace_id, name, trigger_type, trigger_config, actions,"
            " enabled, current_version, document) FROM STDIN"
        ) as copy:
            for n, (auto, ws) in enumerate(autos):
                doc = {"name": f"s{n}", "trigger_type": "time_based", "trigger_config": config}
                copy.write_row(
                    (auto, ws, f"s{n}", "time_based", Jsonb(config), Jsonb([]), True, 1, Jsonb(doc))
                )
        cur.execute(
            "INSERT INTO automation_schedules (automation_id, workspace_id, version, live, mode)"
            " SELECT id, workspace_id, 1, true, 'cron' FROM automations"
        )
    return autos


def arm(
    conn: psycopg.Connection[Any], autos: list[tuple[uuid.UUID, uuid.UUID]], t: datetime
) -> dict:
    """next_run_at: DUE of them spread over [t, t + 1 s), the rest an hour later."""
    due = {}
    rows = []
    for n, (auto, _) in enumerate(autos):
        if n < DUE:
            at = t + timedelta(microseconds=(n * 1_000_000) // DUE)
            due[str(auto)] = at
        else:
            at = t + timedelta(hours=1)
        rows.append((auto, at))
    with conn.cursor() as cur:
        cur.execute("TRUNCATE automation_events, schedule_fires")
        cur.execute("CREATE TEMP TABLE arm (id uuid, at timestamptz)")
        with cur.copy("COPY arm (id, at) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        cur.execute("UPDATE automations a SET next_run_at = arm.at FROM arm WHERE arm.id = a.id")
        cur.execute("DROP TABLE arm")
        cur.execute("VACUUM (ANALYZE) automations")
    return due


def summarize(lateness: list[float], due: int, missed: int) -> dict[str, Any]:
    ordered = sorted(lateness)

    def pct(p: float) -> float | None:
        if not ordered:
            return None
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 3)

    return {
        "due": due,
        "fired": len(ordered),
        "missed": missed,
        "missed_pct": round(100 * missed / due, 1),
        "lateness_s": {
            "p50": pct(0.50),
            "p99": pct(0.99),
            "max": round(ordered[-1], 3) if ordered else None,
            "mean": round(statistics.fmean(ordered), 3) if ordered else None,
        },
    }


BATCH_EMIT = """
WITH inserted AS (
    INSERT INTO automation_events (workspace_id, event_type, automation_id, entity_type,
                                   entity_id, payload)
    SELECT u.workspace_id, u.event_type, u.automation_id, u.entity_type, u.entity_id, u.payload
    FROM unnest(%(workspace_ids)s::uuid[], %(event_types)s::text[], %(automation_ids)s::uuid[],
                %(entity_types)s::text[], %(entity_ids)s::uuid[], %(payloads)s::jsonb[])
         WITH ORDINALITY AS u(workspace_id, event_type, automation_id, entity_type, entity_id,
                              payload, n)
    ORDER BY u.n
    RETURNING id
), wake AS (
    SELECT pg_notify('haste_events', '')
    WHERE COALESCE(pg_sequence_last_value('public.automation_listener_idle'::regclass), 1) = 1
)
SELECT id, (SELECT count(*) FROM wake) FROM inserted ORDER BY id
"""
"""What a batch outbox writer (``triggers.emit.emit_events``, not there yet) would do: the
same rows and the same wake-up as ``event_emit``, in one statement."""


def bench_emit_events(cur: Any, events: list[dict[str, Any]]) -> list[int]:
    rows = cur.execute(
        BATCH_EMIT,
        {
            "workspace_ids": [e["workspace_id"] for e in events],
            "event_types": [e["event_type"] for e in events],
            "automation_ids": [e["automation_id"] for e in events],
            "entity_types": [e["entity_type"] for e in events],
            "entity_ids": [e["entity_id"] for e in events],
            "payloads": [Jsonb(e["payload"]) for e in events],
        },
    ).fetchall()
    return [r[0] for r in rows]


def run_haste(url: str, autos: list, t: datetime, *, batch_emit: bool) -> dict[str, Any]:
    from triggers import emit
    from triggers.scheduler import Scheduler, SchedulerOptions

    with psycopg.connect(url, autocommit=True) as conn:
        due = arm(conn, autos, t)
    lateness: list[float] = []
    lock = threading.Lock()

    def on_fired(fires: list, committed: datetime) -> None:
        with lock:
            for fire in fires:
                key = str(fire.automation_id)
                if key in due:
                    lateness.append((committed - due[key]).total_seconds())

    settings = load_settings({})
    options = SchedulerOptions.from_settings(settings)
    options.jobs = ()
    options.reaper = False
    many = (getattr(emit, "emit_events", None) or bench_emit_events) if batch_emit else None
    scheduler = Scheduler(url, settings=settings, options=options, on_fired=on_fired,
                          emit=emit.emit_event, emit_many=many,
                          enqueue=lambda ids: None, name="bench")  # fmt: skip
    stop = threading.Event()
    thread = threading.Thread(target=scheduler.run, args=(stop,), daemon=True)
    thread.start()
    time.sleep(max(0.0, (t - datetime.now(UTC)).total_seconds() + SETTLE_S))
    stop.set()
    thread.join(timeout=30)
    with psycopg.connect(url, autocommit=True) as conn:
        emitted = conn.execute(
            "SELECT count(*), count(DISTINCT automation_id) FROM automation_events"
            " WHERE event_type = 'time_based'"
        ).fetchone()
    assert emitted is not None
    missed = DUE - int(emitted[1])
    result = summarize(lateness, DUE, missed)
    result["outbox_rows"] = int(emitted[0])
    result["doubled"] = int(emitted[0]) - int(emitted[1])
    return result


def run_anchor(url: str, autos: list, t: datetime) -> dict[str, Any]:
    from apscheduler.events import EVENT_JOB_MISSED
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.cron import CronTrigger
    from psycopg_pool import ConnectionPool

    with psycopg.connect(url, autocommit=True) as conn:
        due = arm(conn, autos, t)
    pool = ConnectionPool(url, min_size=10, max_size=10, kwargs={"autocommit": True}, open=True)
    emit_sql = query("event_emit")
    lateness: list[float] = []
    missed = [0]
    lock = threading.Lock()

    def fire(automation_id: str, workspace_id: str, at: datetime) -> None:
        with pool.connection() as conn:
            conn.execute(
                emit_sql,
                {
                    "workspace_id": workspace_id,
                    "event_type": "time_based",
                    "automation_id": automation_id,
                    "entity_type": None,
                    "entity_id": None,
                    "payload": Jsonb({"scheduled_for": at.isoformat()}),
                },
            )
        done = datetime.now(UTC)
        with lock:  # CronTrigger has whole seconds: it is due at the start of at's second
            lateness.append((done - at.replace(microsecond=0)).total_seconds())

    def on_missed(event: Any) -> None:
        with lock:
            missed[0] += 1

    sched = BackgroundScheduler(timezone=UTC)
    sched.add_listener(on_missed, EVENT_JOB_MISSED)
    for n, (auto, ws) in enumerate(autos):
        at = due.get(str(auto)) or (t + timedelta(hours=1))
        trigger = CronTrigger(
            hour=at.hour,
            minute=at.minute,
            second=at.second,
            timezone=UTC,
            start_date=t - timedelta(seconds=1),
        )
        sched.add_job(fire, trigger, args=(str(auto), str(ws), at), id=f"s{n}")
    sched.start()
    time.sleep(max(0.0, (t - datetime.now(UTC)).total_seconds() + SETTLE_S))
    sched.shutdown(wait=True)
    pool.close()
    return summarize(lateness, DUE, missed[0])


def main() -> dict[str, Any]:
    # APScheduler logs one warning per missed job (thousands in the anchor run).
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    with migrated_postgres("schedule", DBNAME) as (_, url):
        with psycopg.connect(url, autocommit=True) as conn:
            autos = seed(conn)
            version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        t = (datetime.now(UTC) + timedelta(seconds=LEAD_S)).replace(microsecond=0)
        haste = run_haste(url, autos, t, batch_emit=False)
        print(f"haste  {json.dumps(haste)}", file=sys.stderr, flush=True)
        t = (datetime.now(UTC) + timedelta(seconds=LEAD_S)).replace(microsecond=0)
        batched = run_haste(url, autos, t, batch_emit=True)
        print(f"haste, batch emit {json.dumps(batched)}", file=sys.stderr, flush=True)
        t = (datetime.now(UTC) + timedelta(seconds=LEAD_S + 8)).replace(microsecond=0)
        anchor = run_anchor(url, autos, t)
        print(f"anchor {json.dumps(anchor)}", file=sys.stderr, flush=True)
    result = {
        "benchmark": "G7: 10,000 schedules, 5,000 due in the same second",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "postgres": version,
            "load_average_1_5_15": [round(x, 1) for x in os.getloadavg()],
        },
        "haste": haste,
        "haste_batch_emit": batched,
        "anchor_apscheduler_job_per_schedule": anchor,
        "goal": {"p99_s": 1.0, "max_s": 2.0, "missed": 0},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "schedule.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
