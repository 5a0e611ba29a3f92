"""``haste schedule``: run a scheduler replica, or show what is scheduled.

Without options it runs until SIGTERM / Ctrl-C (Procfile: ``scheduler``); any number of
replicas may run, one leads (see :mod:`triggers.scheduler`). ``--list`` prints the leader,
each maintenance job's next run and last result, the time_based automations by next run,
and the backlog of per-record due times and waiting delays. ``--run-job NAME`` runs one
maintenance job now, recorded like a scheduled run.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from datetime import UTC, datetime
from typing import Any

import click
import psycopg
from psycopg.rows import dict_row

from engine.cli import Runtime, main, pass_runtime
from engine.queries import query


def _when(value: datetime | None, now: datetime) -> str:
    """An instant with how far away it is: ``2025-03-01 09:00:00Z (in 3h12m)``."""
    if value is None:
        return "-"
    delta = int((value - now).total_seconds())
    span = abs(delta)
    text = (
        f"{span // 86400}d{span % 86400 // 3600}h"
        if span >= 86400
        else f"{span // 3600}h{span % 3600 // 60:02d}m"
        if span >= 3600
        else f"{span // 60}m{span % 60:02d}s"
    )
    rel = f"in {text}" if delta >= 0 else f"{text} ago"
    return f"{value.astimezone(UTC):%Y-%m-%d %H:%M:%S}Z ({rel})"


def listing(conn: psycopg.Connection[Any], *, limit: int = 50) -> dict[str, Any]:
    """What ``--list`` shows, as data (``--json`` prints it as is)."""
    from triggers.scheduler import LOCK_KEY

    cur = conn.cursor(row_factory=dict_row)
    leader = cur.execute(query("schedule_leader"), {"key": LOCK_KEY}).fetchone()
    return {
        "leader": leader,
        "jobs": cur.execute(query("schedule_list_jobs")).fetchall(),
        "automations": cur.execute(query("schedule_list_automations"), {"limit": limit}).fetchall(),
        "backlog": cur.execute(query("schedule_list_backlog")).fetchone(),
    }


def _mode(row: dict[str, Any]) -> str:
    config = row.get("trigger_config") or {}
    if config.get("cron"):
        return f"cron {config['cron']} {config.get('timezone') or 'workspace'}"
    if config.get("at"):
        return f"at {config['at']}"
    if config.get("date_field"):
        return f"{config['date_field']} {json.dumps(config.get('offset') or {})}"
    return row.get("mode") or "?"


def render(data: dict[str, Any], now: datetime) -> str:
    lines: list[str] = []
    leader = data["leader"]
    lines.append(
        f"leader: {leader['application_name']} (pid {leader['pid']})" if leader else "leader: none"
    )
    lines.append("")
    lines.append(f"{'job':<20} {'cron':<14} {'next run':<36} {'last run':<10} result")
    for job in data["jobs"]:
        last = job["status"] or "-"
        if job["status"] == "failed":
            result = job["error"] or ""
        elif job["result"]:
            result = json.dumps(job["result"], default=str)[:70]
        else:
            result = ""
        lines.append(
            f"{job['name']:<20} {job['cron'] or 'off':<14} {_when(job['next_run_at'], now):<36} "
            f"{last:<10} {result}"
        )
    lines.append("")
    lines.append(f"{'automation':<36} {'schedule':<34} {'next run':<36} last")
    for row in data["automations"]:
        name = f"{row['workspace']}/{row['name']}"[:36]
        state = "disabled" if not row["enabled"] else (row["last_outcome"] or "-")
        if row["error"]:
            state = f"invalid: {row['error']}"
        lines.append(
            f"{name:<36} {_mode(row)[:34]:<34} {_when(row['next_run_at'], now):<36} "
            f"{state} {_when(row['last_fire_at'], now) if row['last_fire_at'] else ''}".rstrip()
        )
    backlog = data["backlog"] or {}
    lines.append("")
    lines.append(
        f"records due: {backlog.get('records_pending', 0)} pending, next "
        f"{_when(backlog.get('records_next'), now)}"
    )
    lines.append(
        f"delays: {backlog.get('delays_waiting', 0)} waiting, next "
        f"{_when(backlog.get('delays_next'), now)}"
    )
    return "\n".join(lines)


@main.command("schedule")
@click.option("--list", "show", is_flag=True, help="Show next runs and last results, then exit.")
@click.option("--json", "as_json", is_flag=True, help="With --list: machine-readable output.")
@click.option("--run-job", metavar="NAME", help="Run one maintenance job now, then exit.")
@pass_runtime
def schedule_command(rt: Runtime, show: bool, as_json: bool, run_job: str | None) -> None:
    """Run a scheduler replica (cron and date automations, delays, reaper, maintenance)."""
    if show:
        with psycopg.connect(rt.database_url(), autocommit=True) as conn:
            data = listing(conn)
        if as_json:
            from engine.values import json_safe

            click.echo(json.dumps(json_safe(data), indent=2))
        else:
            click.echo(render(data, datetime.now(UTC)))
        return
    if run_job:
        _run_job(rt, run_job)
        return
    from triggers.scheduler import Scheduler
    from workers.broker import configure

    # APScheduler logs every tick at INFO ("Running job ..."): a line per second of noise.
    logging.getLogger("apscheduler").setLevel(max(logging.WARNING, logging.root.level))

    services = rt.services()
    configure(services.redis_url)
    scheduler = Scheduler(services.database_url, settings=rt.settings)
    stop = threading.Event()

    def handler(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    click.echo(f"scheduler {scheduler.name} started", err=True)
    scheduler.run(stop)


def _run_job(rt: Runtime, name: str) -> None:
    from workers import maintenance

    job = maintenance.BY_NAME.get(name)
    if job is None:
        raise click.BadParameter(
            f"unknown job {name!r}; known: {', '.join(maintenance.BY_NAME)}", param_hint="--run-job"
        )
    with psycopg.connect(rt.database_url(), autocommit=True) as conn:
        ctx = maintenance.JobContext(conn, datetime.now(UTC), rt.settings, "cli")
        outcome = maintenance.run_now(ctx, job)
    click.echo(json.dumps(outcome, indent=2, default=str))
    if outcome["status"] != "succeeded":
        sys.exit(1)
