"""What event capture costs the CRM's writers: single-row UPDATE throughput, capture off/on.

Starts its own embedded PostgreSQL in a temp dir, applies every migration, seeds 10,000
contacts (spec table, all 11 indexes, no embeddings: the lightest baseline, so the capture's
share is the largest) in 4 workspaces, and runs ``pgbench`` with

    UPDATE contacts SET score = score + 1 WHERE id = <random contact>

for 8 and 32 concurrent clients in these variants, interleaved in rounds so that drift on a
shared machine hits all of them alike:

* ``off``: ``ALTER TABLE contacts DISABLE TRIGGER USER`` (the baseline);
* ``on``: the capture trigger of schemas/sql/0030_outbox.sql, listener busy (the state
  under load: no NOTIFY);
* ``on_listener_idle`` (``--variants``): the same, but the wake-up flag left at idle, so every
  transaction sends a NOTIFY (the worst case: a listener that never clears the flag);
* ``anchor_notify_per_row``: the capture trigger plus a per-row ``pg_notify`` (what waking
  the listener on every change would cost);
* ``floor_ids_only``: instead of the capture trigger, a trigger that writes an outbox row with
  ids only (workspace, entity, operation, event type; no values, no diff, no wake-up): the
  floor of any trigger-written outbox, what a cheaper trigger body could at best reach;
* ``logical``: ``haste capture logical`` (schemas/sql/0100_capture_logical.sql): no row
  trigger, ``REPLICA IDENTITY FULL`` and a pgoutput slot; the writer pays the old row image
  in WAL. After each such run the backlog is decoded into the outbox
  (``Decoder.catch_up``, the listener's work) and timed: ``decoding`` in the results;
* ``logical_actor``: the same with ``app.user_id`` set on every connection (``PGOPTIONS``),
  as the CRM's own writers set it for row-level security, so the statement trigger that puts
  the writer's causation into WAL fires on every UPDATE;
* ``logical_bare`` (``--variants``): logical mode with that statement trigger disabled (no
  causation, no wake-up): what the trigger's WHEN clause costs a writer that sets nothing.

The server runs with ``wal_level = logical`` throughout (the embedded default);
bench/bench_capture_logical.py measures that against ``replica``.

Besides tps, it reports the server's CPU time per transaction (the postmaster and every
backend, live or exited: bench/cpu.py), which is far less sensitive than tps to other
work on the machine.

Prints JSON and writes bench/results/capture.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cpu import postmaster_pid, tree_cpu_s
from embedded import migrated_postgres

from engine.services import EmbeddedPostgres, _pg_bin
from triggers.capture_mode import switch_capture
from triggers.decoder import Decoder

RESULTS = Path(__file__).resolve().parent / "results"
DBNAME = "bench_capture"
CONTACTS = 10_000
WORKSPACES = 4
CLIENTS = (8, 32)
#: Every variant; the default run leaves out on_listener_idle to stay near 3 minutes.
VARIANTS = (
    "off",
    "on",
    "on_listener_idle",
    "anchor_notify_per_row",
    "floor_ids_only",
    "logical",
    "logical_actor",
    "logical_bare",
)
DEFAULT_VARIANTS = (
    "off",
    "on",
    "anchor_notify_per_row",
    "floor_ids_only",
    "logical",
    "logical_actor",
)
#: The actor every connection of the logical_actor variant has (PGOPTIONS).
ACTOR = "00000000-0000-4000-a000-000000000001"
#: Contact ids are derived from 1..CONTACTS so pgbench can pick one with \set.
ID_PREFIX = "00000000-0000-4000-9000-"

SEED = f"""
INSERT INTO workspaces (id, name, slug)
SELECT ('00000000-0000-4000-8000-' || lpad(w::text, 12, '0'))::uuid, 'ws ' || w, 'ws-' || w
FROM generate_series(1, {WORKSPACES}) w;

INSERT INTO contacts (id, workspace_id, email, first_name, last_name, phone, company, title,
                      city, country, source, score, lifecycle_stage, custom_fields)
SELECT ('{ID_PREFIX}' || lpad(n::text, 12, '0'))::uuid,
       ('00000000-0000-4000-8000-' || lpad((1 + n % {WORKSPACES})::text, 12, '0'))::uuid,
       'person' || n || '@example.com', 'First' || n, 'Last' || n, '+1 555 ' || n,
       'Company ' || (n % 500), 'Head of Things', 'Springfield', 'US', 'import', n % 100,
       (ARRAY['lead', 'MQL', 'SQL', 'customer'])[1 + n % 4],
       jsonb_build_object('plan', 'pro', 'seats', n % 50, 'region', 'emea')
FROM generate_series(1, {CONTACTS}) n;
"""

SCRIPT = (
    f"\\set n random(1, {CONTACTS})\n"
    f"UPDATE contacts SET score = score + 1"
    f" WHERE id = ('{ID_PREFIX}' || lpad(:n::text, 12, '0'))::uuid;\n"
)

ANCHOR = """
CREATE OR REPLACE FUNCTION bench_notify_per_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('haste_events', NEW.id::text);
    RETURN NULL;
END
$$;
CREATE TRIGGER bench_notify_per_row AFTER UPDATE ON contacts
    FOR EACH ROW EXECUTE FUNCTION bench_notify_per_row();

CREATE OR REPLACE FUNCTION bench_ids_only() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    INSERT INTO public.automation_events
        (workspace_id, entity_type, entity_id, operation, event_type)
    VALUES (NEW.workspace_id, 'contact', NEW.id, 'update', 'contact_updated');
    RETURN NULL;
END
$$;
CREATE TRIGGER bench_ids_only AFTER UPDATE ON contacts
    FOR EACH ROW EXECUTE FUNCTION bench_ids_only();
"""


def set_variant(conn: psycopg.Connection, variant: str) -> None:
    """Switch capture mode, triggers and the wake-up flag; untimed, before each run."""
    logical = variant.startswith("logical")
    switch_capture(conn, "logical" if logical else "trigger")
    conn.execute("ALTER TABLE contacts DISABLE TRIGGER USER")
    if logical:
        if variant != "logical_bare":
            conn.execute("ALTER TABLE contacts ENABLE TRIGGER haste_capture_context")
    elif variant == "floor_ids_only":
        conn.execute("ALTER TABLE contacts ENABLE TRIGGER bench_ids_only")
    elif variant != "off":
        conn.execute("ALTER TABLE contacts ENABLE TRIGGER haste_capture")
    if variant == "anchor_notify_per_row":
        conn.execute("ALTER TABLE contacts ENABLE TRIGGER bench_notify_per_row")
    conn.execute("SELECT haste_listener_idle(%s)", (variant == "on_listener_idle",))
    conn.execute("TRUNCATE automation_events")
    conn.execute("VACUUM (ANALYZE) contacts")
    conn.execute("CHECKPOINT")


def run_pgbench(
    pg: EmbeddedPostgres, script: Path, clients: int, seconds: int, options: str = ""
) -> dict:
    pid = postmaster_pid(pg.data_dir)
    cpu_before = tree_cpu_s([pid])
    out = subprocess.run(
        [
            str(_pg_bin("pgbench")),
            "-n", "-M", "prepared", "-c", str(clients), "-j", "2", "-T", str(seconds),
            "-f", str(script), "-h", pg.socket_dir, "-U", "postgres", DBNAME,
        ],
        capture_output=True, text=True, check=True, env={**os.environ, "PGOPTIONS": options},
    )  # fmt: skip
    time.sleep(0.3)  # let the postmaster reap the clients' backends
    cpu_after = tree_cpu_s([pid])
    tps = float(re.search(r"tps = ([\d.]+)", out.stdout).group(1))  # type: ignore[union-attr]
    txns = int(re.search(r"actually processed: (\d+)", out.stdout).group(1))  # type: ignore[union-attr]
    cpu_us = round((cpu_after - cpu_before) / txns * 1e6, 1) if txns else None
    return {"tps": round(tps, 1), "transactions": txns, "server_cpu_us_per_tx": cpu_us}


def decode_backlog(pg: EmbeddedPostgres, url: str) -> dict:
    """What the listener pays for a logical run: the slot's backlog into the outbox."""
    pid = postmaster_pid(pg.data_dir)
    server_before, client_before = tree_cpu_s([pid]), time.process_time()
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        events = Decoder().catch_up(conn, max_steps=100_000)
    seconds = time.perf_counter() - started
    time.sleep(0.3)  # let the postmaster reap the decoder's backend (its CPU counts then)
    server = tree_cpu_s([pid]) - server_before
    client = time.process_time() - client_before
    return {
        "events": events,
        "seconds": round(seconds, 2),
        "events_per_s": round(events / seconds) if seconds else None,
        "server_cpu_us_per_event": round(server / events * 1e6, 1) if events else None,
        "decoder_cpu_us_per_event": round(client / events * 1e6, 1) if events else None,
    }


def save(result: dict, name: str) -> None:
    """Write bench/results/<name>.json; print it without the per-run figures."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    medians = {
        c: {v: {k: x[k] for k in x if k != "runs"} for v, x in by.items()}
        for c, by in result["results"].items()
    }
    print(
        json.dumps(
            {k: v for k, v in result.items() if k != "results"} | {"results": medians}, indent=2
        )
    )


def main(rounds: int, seconds: int, variants: tuple[str, ...] = DEFAULT_VARIANTS) -> dict:
    load_at_start = os.getloadavg()
    with migrated_postgres("capture", DBNAME) as (pg, url):
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(SEED)
            conn.execute(ANCHOR)
            version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        script = pg.data_dir.parent / "update_score.sql"
        script.write_text(SCRIPT)

        runs: dict[int, dict[str, list[dict]]] = {c: {v: [] for v in variants} for c in CLIENTS}
        for r in range(rounds):
            # Rotate the order each round so no variant always runs first or last.
            order = variants[r % len(variants) :] + variants[: r % len(variants)]
            for clients in CLIENTS:
                for variant in order:
                    with psycopg.connect(url, autocommit=True) as conn:
                        set_variant(conn, variant)
                    options = f"-c app.user_id={ACTOR}" if variant == "logical_actor" else ""
                    result = run_pgbench(pg, script, clients, seconds, options)
                    if variant.startswith("logical"):
                        result["decoding"] = decode_backlog(pg, url)
                    runs[clients][variant].append(result)
                    print(
                        f"round {r + 1} clients {clients:2d} {variant:22s} {result}",
                        file=sys.stderr,
                        flush=True,
                    )

    summary: dict[str, dict] = {}
    for clients, by_variant in runs.items():
        base_tps = statistics.median(x["tps"] for x in by_variant["off"])
        cpu_base = [x["server_cpu_us_per_tx"] for x in by_variant["off"]]
        base_cpu = statistics.median(cpu_base) if None not in cpu_base else None
        summary[str(clients)] = {}
        for variant, results in by_variant.items():
            tps = statistics.median(x["tps"] for x in results)
            cpus = [x["server_cpu_us_per_tx"] for x in results]
            cpu = statistics.median(cpus) if None not in cpus else None
            decoding = [x["decoding"] for x in results if "decoding" in x]
            summary[str(clients)][variant] = {
                **(
                    {
                        "decoding": {
                            k: statistics.median(d[k] for d in decoding)
                            for k in (
                                "events_per_s",
                                "server_cpu_us_per_event",
                                "decoder_cpu_us_per_event",
                            )
                        }
                    }
                    if decoding
                    else {}
                ),
                "tps_median": round(tps, 1),
                "pct_of_baseline_tps": round(100 * tps / base_tps, 1),
                "server_cpu_us_per_tx": cpu,
                "pct_of_baseline_by_cpu": (
                    round(100 * base_cpu / cpu, 1) if cpu and base_cpu else None
                ),
                "runs": results,
            }
    return {
        "benchmark": "CRM write throughput with event capture off/on (bench/bench_capture.py)",
        "statement": "UPDATE contacts SET score = score + 1 WHERE id = $1 (pgbench -M prepared)",
        "postgres": version,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_average_at_start": load_at_start,
        "load_average_at_end": os.getloadavg(),
        "contacts": CONTACTS,
        "workspaces": WORKSPACES,
        "rounds": rounds,
        "seconds_per_run": seconds,
        "results": summary,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--seconds", type=int, default=6, help="pgbench -T per run (default 6)")
    parser.add_argument(
        "--variants",
        default=",".join(DEFAULT_VARIANTS),
        help=f"comma-separated, from {', '.join(VARIANTS)} (off is always run)",
    )
    args = parser.parse_args()
    chosen = tuple(v for v in VARIANTS if v == "off" or v in args.variants.split(","))
    unknown = set(args.variants.split(",")) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants: {', '.join(sorted(unknown))}")
    save(main(args.rounds, args.seconds, chosen), "capture")
