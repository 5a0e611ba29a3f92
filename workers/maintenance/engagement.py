"""Refresh ``contact_engagement_scores`` (the spec's hourly ``refresh-engagement-scores``).

CONCURRENTLY keeps the view readable while it is rebuilt (it needs the unique index on
``id`` that migration 0010 adds). It cannot run inside a transaction block, so the job
runs it on the job's autocommit connection.
"""

from __future__ import annotations

from typing import Any

from engine.queries import query
from workers.maintenance import JobContext


def run(ctx: JobContext) -> dict[str, Any]:
    ctx.conn.execute(query("engagement_refresh"))
    rows = ctx.conn.execute(query("engagement_count")).fetchone()[0]
    return {"rows": rows}
