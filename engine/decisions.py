"""The decision log, read back: ``haste why`` and the web API's "why didn't it run?".

Rows are written by :mod:`engine.matching` (one per event × candidate automation). Reads
run under the workspace's RLS; :func:`describe` turns a row into one sentence an author
understands without knowing the table.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg

from engine.automations import Workspace
from engine.db import system_transaction, tenant_transaction
from engine.queries import query


def for_record(
    conn: psycopg.Connection[Any],
    workspace: Workspace,
    entity_type: str,
    entity_id: UUID,
    *,
    limit: int = 100,
) -> list[dict[str, Any]]:
    with tenant_transaction(conn, workspace.id, dict_rows=True) as cur:
        params = {"entity_type": entity_type, "entity_id": entity_id, "limit": limit}
        return list(cur.execute(query("decisions_for_record"), params))


def for_event(
    conn: psycopg.Connection[Any], workspace: Workspace, event_id: int
) -> list[dict[str, Any]]:
    with tenant_transaction(conn, workspace.id, dict_rows=True) as cur:
        return list(cur.execute(query("decisions_for_event"), {"event_id": event_id}))


def prune(conn: psycopg.Connection[Any], before: datetime) -> int:
    """Delete decisions older than ``before`` (retention; run by the scheduler)."""
    with system_transaction(conn) as cur:
        return cur.execute(query("decisions_prune"), {"before": before}).rowcount


def _leaf(detail: Mapping[str, Any]) -> str:
    leaf = detail.get("leaf") or {}
    expected = leaf.get("expected")
    shown = "" if expected is None else f" {expected!r}"
    return (
        f"condition {leaf.get('pointer')} failed: {leaf.get('field')} {leaf.get('op')}{shown},"
        f" actual {leaf.get('actual')!r}"
    )


def describe(row: Mapping[str, Any]) -> str:
    """One sentence for one decision."""
    detail = row.get("detail") or {}
    outcome = row["outcome"]
    held = detail.get("held_by")
    texts = {
        "matched": lambda: f"ran: execution {row.get('execution_id')}",
        "filtered": lambda: _leaf(detail),
        "trigger_config_mismatch": lambda: f"trigger did not match: {detail.get('reason')}",
        "deduplicated": lambda: f"already ran for this event (execution {held})",
        "run_once_blocked": lambda: f"run_once: already ran for this record ({held})",
        "reenrollment_blocked": lambda: f"a run for this record is still active ({held})",
        "cycle_depth_exceeded": lambda: (
            f"causation chain too deep ({detail.get('depth')} > {detail.get('limit')})"
        ),
        "disabled": lambda: "automation is disabled",
        "error": lambda: f"error: {detail.get('message')}",
    }
    return texts.get(outcome, lambda: outcome)()
