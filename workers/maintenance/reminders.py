"""Task reminders: ``tasks.reminder_minutes`` before a task is due, one ``activities`` row
for its assignee, exactly once per (task, due instant).

Due instant: ``due_date`` + ``due_time`` on the assignee's wall clock (``users.timezone``,
else the workspace's, else UTC; zones PostgreSQL does not know are skipped over the same
way). A task with a date and no time is due at :data:`ALL_DAY_DUE_TIME`. Open tasks only
(``pending``, ``in_progress``, not deleted).

Exactly once: the ledger ``task_reminders`` (primary key task + due instant) and the
activity are inserted in one tenant transaction, the ledger first with ``ON CONFLICT DO
NOTHING``: a second runner, or the same one after a crash, finds the key and writes
nothing. A task moved to another due time gets its own reminder. Reminders whose time is
more than :data:`CATCH_UP` in the past (scheduler down for long) are not sent late.

The activity: type ``custom`` (the spec's CHECK has no reminder type) with
``metadata.kind = "task_reminder"``, ``entity_type = 'task'``, the task's contact, deal
and company, ``user_id`` = the assignee.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import timedelta
from typing import Any

from psycopg.types.json import Jsonb

from engine.db import system_transaction, tenant_transaction
from engine.queries import query
from workers.maintenance import JobContext

ALL_DAY_DUE_TIME = "09:00"
"""When a task with a due date and no due time is due, on its assignee's wall clock."""
CATCH_UP = timedelta(hours=6)
"""Oldest reminder still sent after scheduler downtime."""
HORIZON_DAYS = 31
"""Longest reminder_minutes honoured, in days (bounds the index scan on due_date)."""


def run(ctx: JobContext) -> dict[str, Any]:
    with system_transaction(ctx.conn, dict_rows=True) as cur:
        candidates = cur.execute(
            query("reminder_candidates"),
            {
                "now": ctx.now,
                "all_day": ALL_DAY_DUE_TIME,
                "catch_up": CATCH_UP.total_seconds(),
                "horizon": HORIZON_DAYS,
            },
        ).fetchall()
    by_workspace: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for row in candidates:
        by_workspace[row["workspace_id"]].append(row)
    sent = 0
    for workspace_id, tasks in by_workspace.items():
        sent += _send(ctx, workspace_id, tasks)
    return {"candidates": len(candidates), "sent": sent}


def _send(ctx: JobContext, workspace_id: Any, tasks: list[dict[str, Any]]) -> int:
    activity_ids = {t["id"]: uuid.uuid4() for t in tasks}
    with tenant_transaction(ctx.conn, workspace_id, dict_rows=True) as cur:
        claimed = cur.execute(
            query("reminder_claim_many"),
            {
                "task_ids": [t["id"] for t in tasks],
                "due_ats": [t["due_at"] for t in tasks],
                "workspace_id": workspace_id,
                "remind_ats": [t["remind_at"] for t in tasks],
                "activity_ids": [activity_ids[t["id"]] for t in tasks],
            },
        ).fetchall()
        mine = {r["task_id"] for r in claimed}
        todo = [t for t in tasks if t["id"] in mine]
        if todo:
            cur.execute(
                query("reminder_activity_insert_many"),
                {
                    "ids": [activity_ids[t["id"]] for t in todo],
                    "workspace_id": workspace_id,
                    "titles": [f"Reminder: {t['title']}"[:255] for t in todo],
                    "descriptions": [
                        f"Due {t['due_at'].isoformat()} ({t['reminder_minutes']} minutes)"
                        for t in todo
                    ],
                    "task_ids": [t["id"] for t in todo],
                    "contact_ids": [t["contact_id"] for t in todo],
                    "deal_ids": [t["deal_id"] for t in todo],
                    "company_ids": [t["company_id"] for t in todo],
                    "user_ids": [t["assigned_to"] for t in todo],
                    "metadata": [
                        Jsonb(
                            {
                                "kind": "task_reminder",
                                "task_id": str(t["id"]),
                                "due_at": t["due_at"].isoformat(),
                                "reminder_minutes": t["reminder_minutes"],
                            }
                        )
                        for t in todo
                    ],
                    "now": ctx.now,
                },
            )
    return len(todo)
