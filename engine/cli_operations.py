"""Operator commands: ``haste worker``, ``reap``, ``executions``, ``execution``, ``rerun``,
``redrive``, ``cancel``.

Thin edges over :mod:`engine.executions` and :mod:`workers.reaper` (which the web API
calls too). ``haste worker`` wraps Dramatiq's own worker CLI (process supervision, signal
handling, graceful shutdown), pointed at our broker and actor modules.
Exit codes: 0 success, 1 refused (unknown id, wrong state, redrive without ``--yes``).
"""

from __future__ import annotations

import json
import os
import re
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import click
import psycopg

from engine.cli import Runtime, main, pass_runtime

#: Queues ``haste worker`` consumes by default (``ai`` has its own process: ``--queues ai``).
DEFAULT_QUEUES = ("automations", "maintenance")
_RELATIVE = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(raw: str, now: datetime | None = None) -> datetime:
    """``2025-01-31``, ``2025-01-31T09:00:00+01:00`` (UTC when no offset), or a relative
    ``30m`` / ``2h`` / ``7d`` ago."""
    now = now or datetime.now(UTC)
    text = raw.strip()
    relative = _RELATIVE.match(text)
    if relative:
        return now - timedelta(**{_UNITS[relative.group(2)]: int(relative.group(1))})
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{raw!r}: expected an ISO date/time or a relative 30m, 2h, 7d"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class Since(click.ParamType):
    name = "TIME"

    def convert(self, value: Any, param: Any, ctx: Any) -> datetime:
        return value if isinstance(value, datetime) else parse_since(str(value))


def _dump(value: Any) -> str:
    from engine.values import json_safe

    return json.dumps(json_safe(value), indent=2, ensure_ascii=False)


def _connect(rt: Runtime) -> psycopg.Connection[Any]:
    return psycopg.connect(rt.database_url(), autocommit=True)


def _fail(exc: Exception) -> None:
    click.echo(f"error: {exc}", err=True)
    sys.exit(1)


json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


@main.command()
@click.option(
    "--queues",
    "-Q",
    multiple=True,
    help=f"Queues to consume (default: {', '.join(DEFAULT_QUEUES)}).",
)
@click.option("--processes", "-p", type=click.IntRange(1), help="Worker processes.")
@click.option("--threads", "-t", type=click.IntRange(1), help="Threads per process.")
@pass_runtime
def worker(
    rt: Runtime, queues: tuple[str, ...], processes: int | None, threads: int | None
) -> None:
    """Run Dramatiq worker processes on the haste queues until SIGTERM / Ctrl-C."""
    from dramatiq.cli import main as dramatiq_main
    from dramatiq.cli import make_argument_parser

    from workers.broker import ACTOR_MODULES, QUEUES

    unknown = sorted(set(queues) - set(QUEUES))
    if unknown:
        raise click.BadParameter(f"unknown queue(s) {unknown}; known: {', '.join(QUEUES)}")
    services = rt.services()
    os.environ["DATABASE_URL"] = services.database_url
    os.environ["REDIS_URL"] = services.redis_url
    settings = rt.settings
    threads = threads or settings.worker_threads
    os.environ["HASTE_WORKER_THREADS"] = str(threads)
    argv = [
        "workers.broker:setup_broker",
        *ACTOR_MODULES,
        "--processes",
        str(processes or settings.worker_processes),
        "--threads",
        str(threads),
        "--skip-logging",
        "--worker-shutdown-timeout",
        str(int(settings.shutdown_timeout * 1000)),
        "--queues",
        *(queues or DEFAULT_QUEUES),
    ]
    sys.exit(dramatiq_main(make_argument_parser().parse_args(argv)))


@main.command()
@json_option
@pass_runtime
def reap(rt: Runtime, as_json: bool) -> None:
    """One reaper pass: resend overdue queued executions, take back lost running ones."""
    from workers.broker import configure
    from workers.reaper import reap as do_reap

    configure(rt.services().redis_url)
    with _connect(rt) as conn:
        result = do_reap(conn, settings=rt.settings)
    if as_json:
        click.echo(_dump(result.__dict__))
        return
    click.echo(
        f"resent {len(result.resent)}, recovered {len(result.recovered)},"
        f" failed {len(result.failed)}"
    )


@main.command("executions")
@click.option("--workspace", "slug", help="Workspace slug (default: all).")
@click.option("--automation", help="Automation id or name.")
@click.option(
    "--status",
    type=click.Choice(["queued", "running", "waiting", "completed", "failed", "cancelled"]),
)
@click.option("--since", type=Since(), help="Queued since (ISO time, or 30m / 2h / 7d).")
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True)
@json_option
@pass_runtime
def executions_list(
    rt: Runtime,
    slug: str | None,
    automation: str | None,
    status: str | None,
    since: datetime | None,
    limit: int,
    as_json: bool,
) -> None:
    """List executions, newest first."""
    from engine.automations import DeployError, find_workspace
    from engine.executions import list_executions

    with _connect(rt) as conn:
        try:
            workspace_id = find_workspace(conn, slug).id if slug else None
        except DeployError as exc:
            _fail(exc)
        rows = list_executions(
            conn,
            workspace_id=workspace_id,
            automation=automation,
            status=status,
            since=since,
            limit=limit,
        )
    if as_json:
        click.echo(_dump(rows))
        return
    for row in rows:
        when = row["queued_at"].isoformat(timespec="seconds")
        took = f"{row['duration_ms']} ms" if row["duration_ms"] is not None else "-"
        error = f"  {row['error_message']}" if row["error_message"] else ""
        click.echo(
            f"{row['id']}  {row['status']:<9} {row['workspace']}/{row['automation']}"
            f"  {when}  {took}  attempt {row['attempt']}{error}"
        )
    if not rows:
        click.echo("no executions", err=True)


@main.command("execution")
@click.argument("execution_id")
@json_option
@pass_runtime
def execution_show(rt: Runtime, execution_id: str, as_json: bool) -> None:
    """One execution with each step's input, output, error and attempts."""
    from engine.executions import ExecutionError, get_execution

    with _connect(rt) as conn:
        try:
            row = get_execution(conn, execution_id)
        except ExecutionError as exc:
            _fail(exc)
    if as_json:
        click.echo(_dump(row))
        return
    click.echo(f"execution {row['id']}: {row['status']}")
    click.echo(f"  automation {row['automation']} (version {row['automation_version']})")
    record = row["trigger_entity_type"]
    if record:
        click.echo(f"  record {record}/{row['trigger_entity_id']}")
    for name in ("queued_at", "started_at", "completed_at", "resume_at"):
        if row[name] is not None:
            click.echo(f"  {name}: {row[name].isoformat()}")
    click.echo(
        f"  attempt {row['attempt']}, recoveries {row['recoveries']}, reruns {row['reruns']},"
        f" duration {row['duration_ms']} ms"
    )
    if row["error_message"]:
        click.echo(f"  error: {row['error_message']}")
    for step in row["steps"]:
        click.echo(
            f"step {step['step_id']} ({step['type']}): {step['status']},"
            f" {step['attempts']} attempt(s), {step['duration_ms']} ms"
        )
        for name in ("input", "output", "error"):
            if step[name] is not None:
                click.echo(f"    {name}: {json.dumps(step[name], ensure_ascii=False)}")
        for attempt in step["attempt_history"] or []:
            click.echo(
                f"    attempt {attempt.get('attempt')}: {attempt.get('class')}:"
                f" {attempt.get('message')} — {attempt.get('decision')}"
            )


@main.command()
@click.argument("execution_id")
@click.option("--from-step", help="Run again from this step (earlier committed steps are kept).")
@pass_runtime
def rerun(rt: Runtime, execution_id: str, from_step: str | None) -> None:
    """Queue a finished execution again, from its failed steps or from --from-step."""
    from engine.executions import ExecutionError
    from engine.executions import rerun as do_rerun
    from workers.broker import configure

    configure(rt.services().redis_url)
    with _connect(rt) as conn:
        try:
            do_rerun(conn, execution_id, from_step=from_step)
        except ExecutionError as exc:
            _fail(exc)
    click.echo(
        f"execution {execution_id} queued again" + (f" from {from_step}" if from_step else "")
    )


@main.command()
@click.option("--automation", required=True, help="Automation id or name.")
@click.option(
    "--status",
    type=click.Choice(["failed", "cancelled", "completed"]),
    default="failed",
    show_default=True,
)
@click.option("--since", type=Since(), required=True, help="Queued since (ISO time, or 2h / 7d).")
@click.option("--yes", is_flag=True, help="Re-run them (without it, only count).")
@pass_runtime
def redrive(rt: Runtime, automation: str, status: str, since: datetime, yes: bool) -> None:
    """Re-run, in bulk, the executions of an automation in a state since a time."""
    from engine.executions import ExecutionError, redrive_candidates
    from engine.executions import redrive as do_redrive
    from workers.broker import configure

    with _connect(rt) as conn:
        try:
            ids = redrive_candidates(conn, automation=automation, status=status, since=since)
        except ExecutionError as exc:
            _fail(exc)
        click.echo(f"{len(ids)} {status} execution(s) of {automation} since {since.isoformat()}")
        if not ids:
            return
        if not yes:
            click.echo("nothing done; add --yes to re-run them", err=True)
            sys.exit(1)
        configure(rt.services().redis_url)
        try:
            done = do_redrive(conn, ids)
        except ExecutionError as exc:
            _fail(exc)
    click.echo(f"{len(done)} execution(s) queued again")


@main.command()
@click.argument("execution_ids", nargs=-1, required=True)
@pass_runtime
def cancel(rt: Runtime, execution_ids: tuple[str, ...]) -> None:
    """Cancel queued, running or waiting executions (a running one stops before its next
    step)."""
    from engine.executions import cancel as do_cancel

    with _connect(rt) as conn:
        try:
            done = {str(i) for i in do_cancel(conn, execution_ids)}
        except psycopg.errors.InvalidTextRepresentation as exc:
            _fail(exc)
    for execution_id in execution_ids:
        state = "cancelled" if execution_id in done else "not cancelled (unknown or finished)"
        click.echo(f"{execution_id}: {state}")
    if len(done) < len(execution_ids):
        sys.exit(1)
