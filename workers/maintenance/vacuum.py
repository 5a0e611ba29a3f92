"""VACUUM and ANALYZE, as the spec's pg_cron jobs asked (minus what hurts by default).

* ``analyze`` (hourly): ``ANALYZE`` of the whole database, as the spec's ``analyze-tables``.
* ``vacuum`` (nightly, 02:00): ``VACUUM ANALYZE`` of the three high-churn tables
  (emails, activities with its partitions, email_tracking_events).
* ``vacuum_full`` (opt-in, ``HASTE_JOB_VACUUM_FULL="0 3 * * 0"`` for the spec's weekly
  run): ``VACUUM FULL ANALYZE`` rewrites each table under an ACCESS EXCLUSIVE lock, so
  CRM reads and writes of that table wait until it is done. Autovacuum makes it
  unnecessary for most databases; turn it on only for a maintenance window. It runs with
  ``lock_timeout`` (``FULL_LOCK_TIMEOUT``) so that it gives up on a busy table instead of
  queueing every other session behind its lock request.

VACUUM cannot run in a transaction block: these run on the job's autocommit connection.
"""

from __future__ import annotations

from typing import Any

from psycopg import sql

from workers.maintenance import JobContext

VACUUM_TABLES = ("emails", "activities", "email_tracking_events")
"""Tables of the nightly VACUUM ANALYZE (the spec's vacuum-emails / -activities / -tracking)."""
FULL_LOCK_TIMEOUT = "10s"
"""How long VACUUM FULL waits for a table's lock before giving up on it."""


def analyze(ctx: JobContext) -> dict[str, Any]:
    ctx.conn.execute("ANALYZE")
    return {"analyzed": "database"}


def vacuum(ctx: JobContext) -> dict[str, Any]:
    for table in VACUUM_TABLES:
        ctx.conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier(table)))
    return {"vacuumed": list(VACUUM_TABLES)}


def vacuum_full(ctx: JobContext) -> dict[str, Any]:
    ctx.conn.execute(sql.SQL("SET lock_timeout = {}").format(sql.Literal(FULL_LOCK_TIMEOUT)))
    try:
        ctx.conn.execute("VACUUM (FULL, ANALYZE)")
    finally:
        ctx.conn.execute("RESET lock_timeout")
    return {"vacuumed_full": "database"}
