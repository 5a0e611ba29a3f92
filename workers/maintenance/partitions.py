"""Partitions of ``activities`` for this month and the coming ones (the spec's
``create-partitions`` pg_cron job, which only made the current month's).

``create_monthly_partition(date)`` (migration 0007) creates ``activities_YYYY_MM`` if it is
missing, moving rows of that month out of ``activities_default`` first, so running this
daily is cheap and safe. ``HASTE_PARTITION_MONTHS_AHEAD`` months ahead means a month
boundary never finds its partition missing, even after weeks of scheduler downtime.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from engine.db import system_transaction
from engine.queries import query
from workers.maintenance import JobContext


def months_from(start: date, count: int) -> list[date]:
    """First days of ``count`` + 1 months: the month of ``start`` and ``count`` after it."""
    months = []
    year, month = start.year, start.month
    for _ in range(count + 1):
        months.append(date(year, month, 1))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return months


def partition_name(month: date) -> str:
    return f"activities_{month:%Y_%m}"


def run(ctx: JobContext) -> dict[str, Any]:
    months = months_from(ctx.now.date(), ctx.settings.partition_months_ahead)
    created: list[str] = []
    with system_transaction(ctx.conn) as cur:
        for month in months:
            name = partition_name(month)
            existed = cur.execute(query("partition_exists"), {"name": name}).fetchone()[0]
            cur.execute(query("partition_create"), {"month": month})
            if not existed:
                created.append(name)
    return {"created": created, "ensured": [partition_name(m) for m in months]}
