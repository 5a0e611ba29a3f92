"""Maintenance jobs: the spec's pg_cron jobs, and what the schema implies, run by the
scheduler's leader. One module per job; this module is the registry and the runner.

State machine of one job (table ``scheduler_jobs``): its ``next_run_at`` is claimed with a
guarded UPDATE (``WHERE next_run_at <= now``) that also moves it to the next cron instant
and inserts a ``scheduler_job_runs`` row (``running``), in one statement; the job runs
outside any transaction (VACUUM and ANALYZE cannot run inside one); the run row ends
``succeeded`` (with the job's result) or ``failed`` (with the error). A run left
``running`` by a leader that died is closed ``abandoned`` by the next leader. Missed
instants (downtime) run once, not once per instant: maintenance jobs are idempotent and
"catch up" is the same as "run now".

Each job's cron comes from its ``HASTE_JOB_*`` variable (``off`` disables it), evaluated
in ``HASTE_MAINTENANCE_TIMEZONE``. A changed cron takes effect at the next leader start.

Rejected: pg_cron (not in the embedded PostgreSQL, and jobs with CRM writes need the
engine's tenant transactions), and one APScheduler cron job per maintenance job without a
table (a fail-over would run an hourly job twice in the hour, and ``--list`` could not say
when each job last ran or how it went).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from engine import metrics
from engine.config import Settings
from engine.db import system_transaction
from engine.queries import query
from engine.values import json_safe
from triggers.due import cron_next

log = logging.getLogger("haste.maintenance")


@dataclass(frozen=True)
class JobContext:
    """What a job gets: an autocommit connection (the job opens its own transactions),
    the scheduler's notion of now, and the settings."""

    conn: psycopg.Connection[Any]
    now: datetime
    settings: Settings
    runner: str = ""


@dataclass(frozen=True)
class Job:
    """A maintenance job: ``setting`` is the Settings field holding its cron."""

    name: str
    run: Callable[[JobContext], Mapping[str, Any]]
    setting: str
    doc: str
    run_at_first_start: bool = False
    """Due at once when the scheduler has never seen the job (partitions: months ahead
    must exist before the first month boundary, not after it)."""
    default: str | None = None
    """The cron while :class:`Settings` has no ``setting`` field (a job whose
    ``HASTE_JOB_*`` variable is not declared in engine/config.py yet)."""


AI_CACHE_PURGE_CRON = "45 3 * * *"
"""Default cron of ``ai_cache_purge`` (after ``prune``)."""
VECTOR_INDEXES_CRON = "0 4 * * *"
"""Default cron of ``vector_indexes`` (a quiet hour, after the nightly jobs)."""


def _jobs() -> tuple[Job, ...]:
    from workers.maintenance import (
        ai,
        engagement,
        partitions,
        prune,
        reminders,
        reports,
        rotting,
        vacuum,
    )

    return (
        Job(
            "partitions",
            partitions.run,
            "job_partitions",
            "create_monthly_partition() for this month and the coming ones",
            run_at_first_start=True,
        ),
        Job(
            "refresh_engagement",
            engagement.run,
            "job_refresh_engagement",
            "REFRESH MATERIALIZED VIEW CONCURRENTLY contact_engagement_scores",
        ),
        Job("analyze", vacuum.analyze, "job_analyze", "ANALYZE (planner statistics)"),
        Job(
            "vacuum",
            vacuum.vacuum,
            "job_vacuum",
            "VACUUM ANALYZE emails, activities, email_tracking_events",
        ),
        Job(
            "vacuum_full",
            vacuum.vacuum_full,
            "job_vacuum_full",
            "VACUUM FULL ANALYZE (locks each table while it is rewritten; opt-in)",
        ),
        Job("deal_rotting", rotting.run, "job_deal_rotting", "deals.rotting_days"),
        Job(
            "task_reminders",
            reminders.run,
            "job_task_reminders",
            "a reminder activity reminder_minutes before a task is due, once",
        ),
        Job(
            "reports",
            reports.run,
            "job_reports",
            "scheduled reports: cached_data, last_generated_at, email to recipients",
        ),
        Job("prune", prune.run, "job_prune", "drop fire ledger and job runs past retention"),
        Job(
            "ai_cache_purge",
            ai.purge_cache,
            "job_ai_cache_purge",
            "delete expired ai_response_cache rows",
            default=AI_CACHE_PURGE_CRON,
        ),
        Job(
            "vector_indexes",
            ai.vector_indexes,
            "job_vector_indexes",
            "retrain idx_contacts_embedding (ivfflat) when its vectors have doubled",
            default=VECTOR_INDEXES_CRON,
        ),
    )


JOBS: tuple[Job, ...] = _jobs()
BY_NAME: Mapping[str, Job] = {job.name: job for job in JOBS}
for _job in JOBS:  # every job's series exist (at 0) before its first run
    for _outcome in ("ok", "failed"):
        metrics.MAINTENANCE_RUNS.labels(_job.name, _outcome)


def job_cron(job: Job, settings: Settings) -> str | None:
    """The job's cron from the settings (else its default); None when it is off."""
    value = getattr(settings, job.setting, job.default)
    return value or None


def ensure_jobs(
    conn: psycopg.Connection[Any], settings: Settings, now: datetime, jobs: Sequence[Job] = JOBS
) -> None:
    """Make ``scheduler_jobs`` match the settings (run by each new leader): a new job or a
    changed cron / zone is scheduled from ``now``; an unchanged one keeps its next run."""
    tz = settings.maintenance_timezone
    with system_transaction(conn, dict_rows=True) as cur:
        known = {
            r["name"]: r
            for r in cur.execute(query("job_get_many"), {"names": [j.name for j in jobs]})
        }
        for job in jobs:
            cron = job_cron(job, settings)
            row = known.get(job.name)
            if row is not None and row["cron"] == cron and row["timezone"] == tz:
                continue
            if cron is None:
                next_run_at = None
            elif row is None and job.run_at_first_start:
                next_run_at = now
            else:
                next_run_at = cron_next(cron, tz, now)
            cur.execute(
                query("job_upsert"),
                {"name": job.name, "cron": cron, "timezone": tz, "next_run_at": next_run_at},
            )


def abandon_runs(conn: psycopg.Connection[Any]) -> int:
    """Close the runs a dead leader left ``running`` (called by each new leader)."""
    with system_transaction(conn) as cur:
        return len(cur.execute(query("job_runs_abandon")).fetchall())


def _execute(ctx: JobContext, job: Job, run_id: int) -> dict[str, Any]:
    started = time.monotonic()
    status, result, error = "succeeded", None, None
    try:
        result = dict(job.run(ctx))
    except Exception as exc:  # a job's failure is recorded, never raised into the ticker
        log.exception("maintenance job %s failed", job.name)
        status, error = "failed", f"{type(exc).__name__}: {exc}"
        if ctx.conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            ctx.conn.rollback()
    seconds = round(time.monotonic() - started, 3)
    metrics.MAINTENANCE_RUNS.labels(job.name, "ok" if status == "succeeded" else "failed").inc()
    metrics.MAINTENANCE_DURATION.labels(job.name).observe(seconds)
    record = {"status": status, "result": {**(result or {}), "seconds": seconds}, "error": error}
    with system_transaction(ctx.conn) as cur:
        cur.execute(
            query("job_run_finish"),
            {
                "id": run_id,
                "status": status,
                "result": Jsonb(json_safe(record["result"])),
                "error": error,
            },
        )
    log.info("maintenance job %s %s in %.3fs", job.name, status, seconds)
    return {"run_id": run_id, **record}


def run_if_due(ctx: JobContext, job: Job) -> dict[str, Any] | None:
    """Claim the job if it is due at ``ctx.now`` and run it; None when it was not due (or
    another replica claimed it)."""
    cron = job_cron(job, ctx.settings)
    if cron is None:
        return None
    following = cron_next(cron, ctx.settings.maintenance_timezone, ctx.now)
    with system_transaction(ctx.conn) as cur:
        claimed = cur.execute(
            query("job_claim"), {"name": job.name, "now": ctx.now, "next_run_at": following}
        ).fetchone()
        run_id = _start(cur, job, ctx) if claimed else None
    if run_id is None:
        return None
    return _execute(ctx, job, run_id)


def _start(cur: psycopg.Cursor[Any], job: Job, ctx: JobContext) -> int:
    row = cur.execute(
        query("job_run_start"),
        {"name": job.name, "scheduled_for": ctx.now, "runner": ctx.runner},
    ).fetchone()
    assert row is not None
    cur.execute(query("job_set_last_run"), {"run_id": row[0], "name": job.name})
    return int(row[0])


def run_now(ctx: JobContext, job: Job) -> dict[str, Any]:
    """Run the job at once (``haste schedule --run-job``), recorded like a scheduled run;
    its schedule is left as it is."""
    with system_transaction(ctx.conn) as cur:
        run_id = _start(cur, job, ctx)
    return _execute(ctx, job, run_id)
