"""G1 / G2: CRM commit → first action start, through the whole engine.

A contact UPDATE is committed by a client; the capture trigger writes the outbox row; a
real ``haste listen`` subprocess (woken by the idle-only NOTIFY, or its poll) matches it and
creates a queued execution, then sends it to Dramatiq; a real ``haste worker`` subprocess
claims it and starts its first step. Latency = the step's ``started_at`` (server clock,
same host) minus the client's clock right after COMMIT returned.

G1: 50 events/s for 120 s (goal p50 ≤ 15 ms, p99 ≤ 60 ms).
G2: one event every 1–2 s, 60 events (goal p99 ≤ 100 ms).
The plain Dramatiq hop (the anchor) is measured in the same run by bench_workers.py's
``dramatiq_hop`` on the same broker.

``--capture logical`` runs the same in logical capture mode (``haste capture logical``: the
listener decodes WAL instead of reading trigger-written rows; an idle listener is woken by
the statement trigger's NOTIFY) and writes bench/results/e2e_logical.json.

Prints JSON and writes bench/results/e2e.json. Bound: ~4.5 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bench_workers import (  # noqa: E402
    HASTE,
    _with_db,
    dramatiq_hop,
    haste_worker,
    pace,
    percentiles,
)

from engine.automations import Workspace, deploy  # noqa: E402
from engine.config import load_settings  # noqa: E402
from engine.migrations import migrate  # noqa: E402
from engine.services import ensure_database, start_services  # noqa: E402
from triggers.capture_mode import switch_capture  # noqa: E402

RESULTS = HERE / "results"
G1_SECONDS = int(os.environ.get("BENCH_G1_SECONDS", "120"))
G2_EVENTS = int(os.environ.get("BENCH_G2_EVENTS", "60"))


def setup(conn: psycopg.Connection[Any], contacts: int) -> list[Any]:
    ws_id = uuid.uuid4()
    conn.execute("INSERT INTO workspaces (id, name, slug) VALUES (%s, 'E2E', 'e2e')", (ws_id,))
    owner = uuid.uuid4()
    conn.execute("INSERT INTO users (id, email) VALUES (%s, 'owner@e2e.test')", (owner,))
    conn.execute(
        "INSERT INTO workspace_members (workspace_id, user_id, role) VALUES (%s, %s, 'owner')",
        (ws_id, owner),
    )
    doc = {
        "name": "score changed",
        "trigger_type": "contact_updated",
        "trigger_config": {"watch": ["score"]},
        "reenrollment": "always",
        "actions": [{"id": "note", "type": "add_note", "params": {"content": "score moved"}}],
    }
    deploy(conn, Workspace(ws_id, "e2e", "E2E"), doc)
    ids = [uuid.uuid4() for _ in range(contacts)]
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO contacts (id, workspace_id, email, score) VALUES (%s, %s, %s, 0)",
            [(i, ws_id, f"{i.hex[:10]}@e2e.test") for i in ids],
        )
    return ids


def run_events(
    conn: psycopg.Connection[Any], contacts: list[Any], rate: float | None, count: int
) -> Any:
    # An event is known by its contact and the score its UPDATE set: in logical capture
    # mode the writer's transaction has no outbox row (and so no outbox id) of its own.
    committed: dict[tuple[str, str], float] = {}

    def send(index: int) -> None:
        contact = contacts[index % len(contacts)]
        row = conn.execute(
            "UPDATE contacts SET score = score + 1 WHERE id = %s RETURNING score", (contact,)
        ).fetchone()
        committed[(str(contact), str(row[0]))] = time.time()  # type: ignore[index]

    pace(count, rate, send)
    deadline = time.monotonic() + 60
    started: dict[tuple[str, str], float] = {}
    first = min(committed.values()) - 1
    while time.monotonic() < deadline and len(started) < len(committed):
        rows = conn.execute(
            "SELECT e.entity_id::text, e.new_values->>'score', min(s.started_at)"
            " FROM automation_executions x"
            " JOIN automation_events e ON e.id = x.event_id"
            " JOIN automation_execution_steps s ON s.execution_id = x.id"
            " WHERE e.event_type = 'contact_updated' AND x.queued_at > to_timestamp(%s)"
            " GROUP BY 1, 2",
            (first,),
        ).fetchall()
        started = {(c, v): at.timestamp() for c, v, at in rows if (c, v) in committed}
        time.sleep(0.5)
    latencies = [started[e] - committed[e] for e in started]
    out = percentiles(latencies)
    out["lost"] = len(committed) - len(started)
    return out


def main(capture: str = "trigger") -> dict[str, Any]:
    data_dir = Path(tempfile.mkdtemp(prefix="haste-bench-e2e-"))
    services = start_services(load_settings({"HASTE_DATA_DIR": str(data_dir)}))
    listener: subprocess.Popen[bytes] | None = None
    try:
        name = f"bench_e2e_{uuid.uuid4().hex[:6]}"
        ensure_database(services.database_url, name)
        db_url = _with_db(services.database_url, name)
        migrate(db_url)
        env = {
            **os.environ,
            "DATABASE_URL": db_url,
            "REDIS_URL": services.redis_url,
            "HASTE_LOG_LEVEL": "WARNING",
        }
        result: dict[str, Any] = {
            "benchmark": "G1/G2: CRM commit -> first action start (listener + worker)",
            "cores": os.cpu_count(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
            "anchor_dramatiq_hop_same_broker": {
                "50_per_s_tuned_100ms": dramatiq_hop(services.redis_url, 100, 50, 400),
                "sparse_default_1000ms": dramatiq_hop(services.redis_url, 1000, None, 15),
            },
        }
        with psycopg.connect(db_url, autocommit=True) as conn:
            contacts = setup(conn, 500)
            if capture != "trigger":
                result["capture"] = switch_capture(conn, capture)["mode"]
            listener = subprocess.Popen(
                [HASTE, "listen"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            with haste_worker(env, processes=1, threads=8):
                run_events(conn, contacts, 50, 50)  # warm-up: caches, connections
                result["g1_50_per_s"] = run_events(conn, contacts, 50, 50 * G1_SECONDS)
                result["g2_sparse"] = run_events(conn, contacts, None, G2_EVENTS)
        result["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
        return result
    finally:
        if listener is not None:
            listener.terminate()
            listener.wait(timeout=30)
        services.stop_owned()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--capture",
        choices=("trigger", "logical"),
        default="trigger",
        help="capture mode (haste capture); logical writes bench/results/e2e_logical.json",
    )
    args = parser.parse_args()
    out = main(args.capture)
    RESULTS.mkdir(exist_ok=True)
    name = "e2e" if args.capture == "trigger" else f"e2e_{args.capture}"
    (RESULTS / f"{name}.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
