"""Deal rotting: ``deals.rotting_days`` for pipelines with ``rotting_enabled``.

A deal rots when nothing happened to it for longer than its pipeline's ``rotting_days``
(the threshold). ``deals.rotting_days`` is how many whole days it has been rotting: idle
days (since the later of ``stage_entered_at`` and ``last_activity_at``, else
``created_at``) minus the threshold, never below 0. It is 0 for deals that are not open,
deleted, or in a pipeline with rotting off. Only rows whose value changes are written (a
write is a captured CRM event), per workspace, under that workspace's tenant transaction.
"""

from __future__ import annotations

from typing import Any

from engine.db import system_transaction, tenant_transaction
from engine.queries import query
from workers.maintenance import JobContext


def run(ctx: JobContext) -> dict[str, Any]:
    with system_transaction(ctx.conn) as cur:
        workspaces = [r[0] for r in cur.execute(query("rotting_workspaces"))]
    changed = 0
    for workspace_id in workspaces:
        with tenant_transaction(ctx.conn, workspace_id) as cur:
            changed += len(cur.execute(query("rotting_update"), {"now": ctx.now}).fetchall())
    return {"workspaces": len(workspaces), "deals_changed": changed}
