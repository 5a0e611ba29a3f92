"""What ``wal_level = logical`` and ``REPLICA IDENTITY FULL`` cost the CRM's writers.

Logical capture (``haste capture logical``, schemas/sql/0100_capture_logical.sql) needs both,
and the embedded server now always runs with ``wal_level = logical``. This measures them
alone, with the same data and pgbench script as bench_capture.py (which measures the
capture modes themselves):

* ``replica``: ``wal_level = replica``, no trigger (the baseline);
* ``logical``: ``wal_level = logical``, ``REPLICA IDENTITY FULL`` on contacts (an UPDATE's
  WAL then carries the old row), a publication and a ``pgoutput`` slot, no trigger.

The two alternate, with a server restart in between (``wal_level`` needs one; the server is
started with ``logical_wal=False`` so that ours is not forced to logical), and each
``logical`` run is followed by reading what it wrote with
``pg_logical_slot_get_binary_changes``, reported as server CPU per decoded UPDATE.

Prints JSON and writes bench/results/capture_logical.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_capture import CLIENTS, DBNAME, SCRIPT, SEED, run_pgbench, save
from cpu import postmaster_pid, tree_cpu_s
from embedded import migrated_postgres

from engine.services import EmbeddedPostgres

SLOT = "haste_bench"


def switch(pg: EmbeddedPostgres, url: str, variant: str) -> None:
    """Set wal_level and the table's replica identity for ``variant``; restart the server."""
    logical = variant == "logical"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"ALTER SYSTEM SET wal_level = {'logical' if logical else 'replica'}")
        conn.execute(f"ALTER TABLE contacts REPLICA IDENTITY {'FULL' if logical else 'DEFAULT'}")
        conn.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
            " WHERE slot_name = %s",
            (SLOT,),
        )
    pg.stop()
    pg.start()
    with psycopg.connect(url, autocommit=True) as conn:
        if logical:
            conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (SLOT,))
        conn.execute("VACUUM (ANALYZE) contacts")
        conn.execute("CHECKPOINT")


def decode(pg: EmbeddedPostgres, url: str) -> dict:
    """Consume the slot; server CPU per decoded UPDATE (its transaction's messages included)."""
    pid = postmaster_pid(pg.data_dir)
    before = tree_cpu_s([pid])
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        # Each one-row transaction decodes to Begin, Update ('U') and Commit messages.
        changes = conn.execute(
            "SELECT count(*) FILTER (WHERE get_byte(data, 0) = ascii('U'))"
            " FROM pg_logical_slot_get_binary_changes(%s, NULL, NULL,"
            " 'proto_version', '1', 'publication_names', %s)",
            (SLOT, SLOT),
        ).fetchone()[0]  # type: ignore[index]
    seconds = time.perf_counter() - started
    cpu = tree_cpu_s([pid]) - before
    return {
        "updates": changes,
        "seconds": round(seconds, 2),
        "server_cpu_us_per_update": round(cpu / changes * 1e6, 1) if changes else None,
    }


def main(rounds: int, seconds: int) -> dict:
    load_at_start = os.getloadavg()
    with migrated_postgres("capture-logical", DBNAME, logical_wal=False) as (pg, url):
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(SEED)
            conn.execute("ALTER TABLE contacts DISABLE TRIGGER USER")
            conn.execute(f"CREATE PUBLICATION {SLOT} FOR TABLE contacts")
            version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        script = pg.data_dir.parent / "update_score.sql"
        script.write_text(SCRIPT)
        runs: dict[int, dict[str, list[dict]]] = {
            c: {"replica": [], "logical": []} for c in CLIENTS
        }
        decoding: list[dict] = []
        for r in range(rounds):
            order = ("replica", "logical") if r % 2 == 0 else ("logical", "replica")
            for variant in order:
                switch(pg, url, variant)
                for clients in CLIENTS:
                    result = run_pgbench(pg, script, clients, seconds)
                    runs[clients][variant].append(result)
                    print(f"round {r + 1} {variant:8s} {clients:2d} {result}", file=sys.stderr)
                if variant == "logical":
                    decoding.append(decode(pg, url))
                    print(f"round {r + 1} decode {decoding[-1]}", file=sys.stderr)

    summary: dict[str, dict] = {}
    for clients, by_variant in runs.items():
        base_tps = statistics.median(x["tps"] for x in by_variant["replica"])
        base_cpu = statistics.median(x["server_cpu_us_per_tx"] for x in by_variant["replica"])
        summary[str(clients)] = {}
        for variant, results in by_variant.items():
            tps = statistics.median(x["tps"] for x in results)
            cpu = statistics.median(x["server_cpu_us_per_tx"] for x in results)
            summary[str(clients)][variant] = {
                "tps_median": round(tps, 1),
                "pct_of_baseline_tps": round(100 * tps / base_tps, 1),
                "server_cpu_us_per_tx": cpu,
                "pct_of_baseline_by_cpu": round(100 * base_cpu / cpu, 1),
                "runs": results,
            }
    return {
        "benchmark": "CRM write throughput, wal_level replica vs logical decoding"
        " (bench/bench_capture_logical.py)",
        "statement": "UPDATE contacts SET score = score + 1 WHERE id = $1 (pgbench -M prepared)",
        "postgres": version,
        "cpus": os.cpu_count(),
        "load_average_at_start": load_at_start,
        "load_average_at_end": os.getloadavg(),
        "rounds": rounds,
        "seconds_per_run": seconds,
        "results": summary,
        "decoding": {
            "runs": decoding,
            "server_cpu_us_per_update_median": statistics.median(
                x["server_cpu_us_per_update"] for x in decoding if x["server_cpu_us_per_update"]
            )
            if decoding
            else None,
        },
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds (default 4)")
    parser.add_argument("--seconds", type=int, default=6, help="pgbench -T per run (default 6)")
    args = parser.parse_args()
    save(main(args.rounds, args.seconds), "capture_logical")
