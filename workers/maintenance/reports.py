"""Scheduled reports: ``reports.schedule_cron`` in ``schedule_timezone`` → the report of
its ``type`` computed into ``cached_data`` / ``last_generated_at`` and emailed to
``recipients``.

Once per scheduled instant: ``report_runs`` is unique on (report, scheduled instant); the
run row, the data and the report's cache are written in one tenant transaction (RLS: the
report's workspace), so two runners, or one retrying after a crash, generate it once.
After downtime a report runs once, for its latest missed instant.

Delivery happens after that commit, from the run's own copy of the data: ``pending`` →
``sent`` (with the Message-ID) | ``failed`` | ``skipped`` (no recipients, or no SMTP
configured). A transient SMTP error leaves the row pending for the next run of the job,
up to :data:`MAX_ATTEMPTS`; the Message-ID is derived from the run id, so a resend after a
lost reply is recognisable as the same message. Sending reuses ``actions.email``.

Report types (``config`` keys in brackets):

* ``pipeline`` [``pipeline_id``]: open deals per pipeline stage: count, value, weighted value;
* ``activity`` [``period``]: activities by type in the period;
* ``email`` [``period``]: emails sent and received, opens, clicks, bounces in the period;
* ``revenue`` [``period``]: won deals per month (count, value) and the open pipeline;
* ``custom`` [``entity``, ``group_by``]: records of an entity counted by one of its
  columns; without them, record counts per entity.

``period`` is a duration object (default ``{"days": 30}``) ending at the run.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from psycopg import sql
from psycopg.types.json import Jsonb

from actions.base import ActionEnv, ActionError, StepContext
from engine import fields
from engine.db import system_transaction, tenant_transaction
from engine.definitions import parse_duration
from engine.queries import query
from engine.values import json_safe
from triggers.due import last_fire_at_or_before
from workers.maintenance import JobContext

log = logging.getLogger("haste.maintenance.reports")

MAX_ATTEMPTS = 5
"""Delivery attempts of one report run before it is marked failed."""
DEFAULT_PERIOD = {"days": 30}


def run(ctx: JobContext) -> dict[str, Any]:
    generated, errors = 0, 0
    with system_transaction(ctx.conn, dict_rows=True) as cur:
        reports = cur.execute(query("report_scheduled")).fetchall()
    for report in reports:
        try:
            scheduled_for = due_instant(report, ctx.now)
        except ValueError as exc:
            log.warning("report %s: cannot schedule: %s", report["id"], exc)
            errors += 1
            continue
        if scheduled_for is not None and generate(ctx, report, scheduled_for):
            generated += 1
    delivered = deliver_pending(ctx)
    return {"reports": len(reports), "generated": generated, "errors": errors, **delivered}


def due_instant(report: Mapping[str, Any], now: datetime) -> datetime | None:
    """The latest scheduled instant not yet generated, if one has come."""
    after = report["last_scheduled"] or report["created_at"]
    return last_fire_at_or_before(
        str(report["schedule_cron"]), report["schedule_timezone"] or "UTC", after, now
    )


def generate(ctx: JobContext, report: Mapping[str, Any], scheduled_for: datetime) -> bool:
    """Compute and cache one report run; False if another runner already made it."""
    with tenant_transaction(ctx.conn, report["workspace_id"], dict_rows=True) as cur:
        run = cur.execute(
            query("report_run_insert"),
            {
                "report_id": report["id"],
                "workspace_id": report["workspace_id"],
                "scheduled_for": scheduled_for,
                "recipients": Jsonb(report["recipients"] or []),
                "now": ctx.now,
            },
        ).fetchone()
        if run is None:
            return False
        data = json_safe(
            {
                "report_id": str(report["id"]),
                "name": report["name"],
                "type": report["type"],
                "generated_at": ctx.now.isoformat(),
                "scheduled_for": scheduled_for.isoformat(),
                **compute(cur, report["type"], report["config"] or {}, ctx.now),
            }
        )
        cur.execute(query("report_run_set_data"), {"id": run["id"], "data": Jsonb(data)})
        cur.execute(
            query("report_cache_update"),
            {"id": report["id"], "data": Jsonb(data), "now": ctx.now},
        )
    return True


def _period(config: Mapping[str, Any], now: datetime) -> tuple[datetime, datetime]:
    return now - parse_duration(config.get("period") or DEFAULT_PERIOD), now


def compute(cur: Any, kind: str, config: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """The report's figures (runs under the report's workspace: RLS scopes every query)."""
    since, until = _period(config, now)
    window = {"since": since, "until": until}
    period = {"period": {"from": since.isoformat(), "to": until.isoformat()}}
    if kind == "pipeline":
        rows = cur.execute(
            query("report_pipeline"), {"pipeline_id": config.get("pipeline_id")}
        ).fetchall()
        pipelines: dict[Any, dict[str, Any]] = {}
        for r in rows:
            entry = pipelines.setdefault(
                r["pipeline_id"], {"id": r["pipeline_id"], "name": r["pipeline"], "stages": []}
            )
            entry["stages"].append(
                {k: r[k] for k in ("stage_id", "stage", "deals", "value", "weighted_value")}
            )
        return {"pipelines": list(pipelines.values())}
    if kind == "activity":
        rows = cur.execute(query("report_activity"), window).fetchall()
        by_type = {r["type"]: r["n"] for r in rows}
        return {**period, "by_type": by_type, "total": sum(by_type.values())}
    if kind == "email":
        return {**period, **cur.execute(query("report_email"), window).fetchone()}
    if kind == "revenue":
        won = cur.execute(query("report_revenue_won"), window).fetchall()
        open_ = cur.execute(query("report_revenue_open")).fetchone()
        return {
            **period,
            "won_by_month": won,
            "won_total": sum((r["value"] for r in won), start=0),
            "open": open_,
        }
    return _custom(cur, config)


def _custom(cur: Any, config: Mapping[str, Any]) -> dict[str, Any]:
    entity, group_by = config.get("entity"), config.get("group_by")
    if entity in fields.ENTITIES and group_by in fields.columns(entity):
        table = fields.ENTITIES[entity]
        live = (
            sql.SQL(" WHERE deleted_at IS NULL")
            if "deleted_at" in fields.columns(entity)
            else sql.SQL("")
        )
        stmt = sql.SQL(
            "SELECT {col}::text AS key, count(*) AS n FROM {table}{live} GROUP BY 1 ORDER BY 2 DESC"
        ).format(col=sql.Identifier(group_by), table=sql.Identifier(table), live=live)
        rows = cur.execute(stmt).fetchall()
        return {"entity": entity, "group_by": group_by, "counts": {r["key"]: r["n"] for r in rows}}
    counts = {}
    for name, table in fields.ENTITIES.items():
        live = (
            sql.SQL(" WHERE deleted_at IS NULL")
            if "deleted_at" in fields.columns(name)
            else sql.SQL("")
        )
        stmt = sql.SQL("SELECT count(*) AS n FROM {}{}").format(sql.Identifier(table), live)
        counts[name] = cur.execute(stmt).fetchone()["n"]
    return {"counts": counts}


# --- delivery ------------------------------------------------------------------------------


def deliver_pending(ctx: JobContext) -> dict[str, int]:
    """Send the runs still pending (this job's and earlier ones' whose send failed)."""
    with system_transaction(ctx.conn, dict_rows=True) as cur:
        pending = cur.execute(
            query("report_runs_pending"), {"max_attempts": MAX_ATTEMPTS}
        ).fetchall()
    counts = {"sent": 0, "failed": 0, "skipped": 0, "retrying": 0}
    for run in pending:
        outcome = _deliver(ctx, run)
        counts[outcome] += 1
    return counts


def _addresses(cur: Any, recipients: Any) -> list[str]:
    """Recipients as addresses: ``"a@x"``, ``{"email": "a@x"}``, or a user id."""
    found: list[str] = []
    user_ids: list[str] = []
    for item in recipients if isinstance(recipients, list) else []:
        value = item.get("email") if isinstance(item, Mapping) else item
        if not isinstance(value, str):
            continue
        if "@" in value:
            found.append(value)
            continue
        try:
            user_ids.append(str(UUID(value)))
        except ValueError:
            continue
    if user_ids:
        rows = cur.execute(query("report_user_emails"), {"ids": user_ids}).fetchall()
        found += [r["email"] for r in rows]
    return list(dict.fromkeys(found))


def _finish(ctx: JobContext, run_id: Any, delivery: str, **values: Any) -> None:
    with system_transaction(ctx.conn) as cur:
        cur.execute(
            query("report_delivery_update"),
            {
                "id": run_id,
                "delivery": delivery,
                "message_id": values.get("message_id"),
                "error": values.get("error"),
                "sent_at": values.get("sent_at"),
            },
        )


def _deliver(ctx: JobContext, run: Mapping[str, Any]) -> str:
    from actions import email

    with system_transaction(ctx.conn, dict_rows=True) as cur:
        to = _addresses(cur, run["recipients"])
    if not to:
        _finish(ctx, run["id"], "skipped", error="no recipients")
        return "skipped"
    if not ctx.settings.smtp_url:
        _finish(ctx, run["id"], "skipped", error="SMTP is not configured (HASTE_SMTP_URL)")
        return "skipped"
    data = run["data"] or {}
    local = run["scheduled_for"].astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    step = StepContext(
        workspace_id=run["workspace_id"],
        step_id="report",
        idempotency_key=f"report-run:{run['id']}",
        env=ActionEnv(smtp_url=ctx.settings.smtp_url, email_from=ctx.settings.email_from),
    )
    params = {
        "to": to,
        "subject": f"Report: {run['name']} ({local})",
        "body_text": render_text(run["name"], data),
    }
    try:
        output = email.run(params, step)
    except ActionError as exc:
        retry = exc.retryable and run["attempts"] + 1 < MAX_ATTEMPTS
        _finish(ctx, run["id"], "pending" if retry else "failed", error=str(exc))
        return "retrying" if retry else "failed"
    _finish(
        ctx,
        run["id"],
        "sent",
        message_id=output["message_id"],
        sent_at=datetime.now(UTC),
    )
    return "sent"


def render_text(name: str, data: Mapping[str, Any]) -> str:
    """The email body: the report's figures as indented JSON under a title (readable in
    any client; the same data is in reports.cached_data for the CRM's own views)."""
    figures = {k: v for k, v in data.items() if k not in ("report_id", "name")}
    return f"{name}\n{'=' * len(name)}\n\n{json.dumps(figures, indent=2, default=str)}\n"
