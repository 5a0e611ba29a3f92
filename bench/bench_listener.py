"""Listener throughput (issue 5): events matched per second with 100 automations per workspace.

Starts its own embedded PostgreSQL in a temp dir, applies every migration, and in each of
``--workspaces`` workspaces deploys 100 ``contact_updated`` automations of four kinds, so
that every event meets every outcome the matcher has:

* 40 watch ``score`` with a condition ``contact.score >= N`` (N spread over 0..100): some
  match, the rest are ``filtered`` with the failing leaf;
* 30 with a transition ``lifecycle_stage`` ``lead`` → ``MQL``, which a score update never
  makes: ``trigger_config_mismatch``;
* 20 watch ``email``: ``trigger_config_mismatch``;
* 10 watch ``score`` with an ``all`` of three leaves (score, lifecycle_stage, country).

Then, with no listener running, it updates the score of ``--events`` distinct contacts
(one committed UPDATE each, spread over the workspaces), and times one
:class:`triggers.listener.Listener` draining that backlog: claim in batches, type the
values, match 100 candidates per event, write one decision row per candidate and one
execution row per match, mark the batch processed. The send to Dramatiq after commit is
replaced by a counter (the hop is measured by bench_workers.py), and the per-event hooks
(date-field schedules, embeddings) are the real ones.

Reported: events/s and decisions/s over the whole drain, executions created, the
listener process's CPU per event, PostgreSQL's CPU per event. Anchor: the same drain
with 1 automation per workspace, in the same run, for the per-event floor.

Prints JSON and writes bench/results/listener.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from cpu import postmaster_pid, tree_cpu_s  # noqa: E402
from embedded import migrated_postgres  # noqa: E402

from engine.automations import deploy, find_workspace  # noqa: E402
from engine.services import EmbeddedPostgres  # noqa: E402
from triggers.listener import Listener  # noqa: E402

RESULTS = ROOT / "bench" / "results"
DBNAME = "bench_listener"


def automation_documents(count: int) -> list[dict[str, Any]]:
    """``count`` automations cycling through the four kinds of the module doc."""
    docs = []
    for i in range(count):
        kind = i % 10
        body: dict[str, Any] = {
            "name": f"a{i:03d}",
            "trigger_type": "contact_updated",
            "actions": [{"id": "t", "type": "add_tag", "params": {"tag": f"t{i}"}}],
        }
        if kind < 4:
            body["trigger_config"] = {"watch": ["score"]}
            body["conditions"] = {"field": "contact.score", "op": "gte", "value": (i * 7) % 101}
        elif kind < 7:
            body["trigger_config"] = {
                "transition": {"field": "lifecycle_stage", "from": "lead", "to": "MQL"}
            }
        elif kind < 9:
            body["trigger_config"] = {"watch": ["email"]}
        else:
            body["trigger_config"] = {"watch": ["score"]}
            body["conditions"] = {
                "all": [
                    {"field": "contact.score", "op": "gte", "value": 10},
                    {"field": "contact.lifecycle_stage", "op": "in", "value": ["lead", "MQL"]},
                    {"field": "contact.country", "op": "eq", "value": "US"},
                ]
            }
        docs.append(body)
    return docs


def seed(conn: psycopg.Connection[Any], workspaces: int, automations: int, events: int) -> None:
    for w in range(workspaces):
        ws_id = conn.execute(
            "INSERT INTO workspaces (name, slug) VALUES (%s, %s) RETURNING id",
            (f"ws {w}", f"ws-{automations}-{w}"),
        ).fetchone()[0]  # type: ignore[index]
        workspace = find_workspace(conn, f"ws-{automations}-{w}")
        for doc in automation_documents(automations):
            deploy(conn, workspace, doc, validate=False)
        conn.execute(
            "INSERT INTO contacts (workspace_id, email, score, lifecycle_stage, country)"
            " SELECT %s, 'p' || n || '@bench.test', n %% 100,"
            " (ARRAY['lead', 'MQL', 'SQL'])[1 + n %% 3], 'US'"
            " FROM generate_series(1, %s) n",
            (ws_id, events // workspaces),
        )
    # Everything so far (created events) is drained untimed; only the updates are timed.
    Listener(conn.info.dsn, enqueue=lambda ids: None).drain(conn)


def timed_drain(pg: EmbeddedPostgres, url: str, automations: int, workspaces: int) -> dict:
    with psycopg.connect(url, autocommit=True) as conn:
        prefix = f"ws-{automations}-%"
        conn.execute(
            "UPDATE contacts c SET score = score + 7 FROM workspaces w"
            " WHERE w.id = c.workspace_id AND w.slug LIKE %s",
            (prefix,),
        )
        backlog = conn.execute(
            "SELECT count(*) FROM automation_events WHERE processed_at IS NULL"
        ).fetchone()[0]  # type: ignore[index]
        conn.execute("VACUUM ANALYZE")
        sent: list[Any] = []
        listener = Listener(url, enqueue=sent.extend)
        pid = postmaster_pid(pg.data_dir)
        cpu0, own0, t0 = tree_cpu_s([pid]), time.process_time(), time.perf_counter()
        result = listener.drain(conn)
        elapsed = time.perf_counter() - t0
        own, cpu1 = time.process_time() - own0, tree_cpu_s([pid])
        decisions = conn.execute(
            "SELECT outcome, count(*) FROM automation_decisions d"
            " JOIN automation_events e ON e.id = d.event_id"
            " WHERE e.event_type = 'contact_updated' GROUP BY outcome ORDER BY outcome"
        ).fetchall()
    total_decisions = sum(n for _, n in decisions)
    return {
        "automations_per_workspace": automations,
        "workspaces": workspaces,
        "events": backlog,
        "processed": result.processed,
        "failed": result.failed,
        "seconds": round(elapsed, 2),
        "events_per_s": round(result.processed / elapsed, 1),
        "decisions_per_s": round(total_decisions / elapsed, 1),
        "decisions": dict(decisions),
        "executions_created": len(sent),
        "listener_cpu_ms_per_event": round(own / max(result.processed, 1) * 1e3, 3),
        "postgres_cpu_ms_per_event": round((cpu1 - cpu0) / max(result.processed, 1) * 1e3, 3),
    }


def main(events: int, workspaces: int) -> dict:
    load_at_start = os.getloadavg()
    with migrated_postgres("listener", DBNAME) as (pg, url):
        runs = {}
        with psycopg.connect(url, autocommit=True) as conn:
            for automations in (1, 100):
                seed(conn, workspaces, automations, events)
        for automations in (1, 100):
            runs[str(automations)] = timed_drain(pg, url, automations, workspaces)
            print(json.dumps(runs[str(automations)]), file=sys.stderr, flush=True)
        with psycopg.connect(url) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
    return {
        "benchmark": "listener throughput (bench/bench_listener.py)",
        "postgres": version,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_average_at_start": load_at_start,
        "load_average_at_end": os.getloadavg(),
        "goal": "events matched per second with 100 automations per workspace (no figure set)",
        "anchor": "1 automation per workspace, same run",
        "results": runs,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=4000, help="backlog size (default 4000)")
    parser.add_argument("--workspaces", type=int, default=4, help="workspaces (default 4)")
    args = parser.parse_args()
    out = main(args.events, args.workspaces)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "listener.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
