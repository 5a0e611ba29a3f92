"""Retention of the scheduler's own history: fire ledger rows, job runs and task reminder
ledger rows older than ``HASTE_SCHEDULE_RETENTION_DAYS``.

Safe because nothing due can need them: a cron/at fire key is an instant long past, a
date-field schedule remembers its fired date value in ``schedule_record_due``, and a
reminder is only sent for tasks due within the last two days. The last run of each job
is kept whatever its age (``--list`` shows it).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from engine.db import system_transaction
from engine.queries import query
from workers.maintenance import JobContext


def run(ctx: JobContext) -> dict[str, Any]:
    before = ctx.now - timedelta(days=ctx.settings.schedule_retention_days)
    with system_transaction(ctx.conn) as cur:
        fires = cur.execute(query("prune_fires"), {"before": before}).rowcount
        runs = cur.execute(query("prune_job_runs"), {"before": before}).rowcount
        reminders = cur.execute(query("prune_task_reminders"), {"before": before}).rowcount
    return {"fires": fires, "job_runs": runs, "task_reminders": reminders}
