"""The ``haste`` command line: one entry point for authors, operators and every process.

Commands are click groups so later work slots in (``haste automations ...``,
``haste worker``); each command is a thin edge over a function in its own module, which
the web API calls too. Service start-up is lazy: a command that needs the database calls
:meth:`Runtime.services`, which starts (or reuses) the embedded servers and stops the ones
it started when the command ends.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import click

from engine import __version__
from engine.config import ConfigError, Settings, load_settings
from engine.services import Services, start_services


@dataclass
class Runtime:
    """Per-invocation state: settings, and services started on first use."""

    settings: Settings
    _services: Services | None = field(default=None, repr=False)

    def services(self) -> Services:
        """Both servers, started (or reused) on first use."""
        if self._services is None or not self._services.redis_url:
            if self._services is not None:
                self._services.stop_owned()
            self._services = start_services(self.settings)
        return self._services

    def database_url(self) -> str:
        """Only PostgreSQL: commands that never touch Redis do not start it."""
        if self._services is None:
            self._services = start_services(self.settings, redis=False)
        return self._services.database_url

    def close(self) -> None:
        if self._services is not None:
            self._services.stop_owned()


pass_runtime = click.make_pass_decorator(Runtime)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def main(ctx: click.Context) -> None:
    """haste: the automation engine of hasteCRM."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    from engine.logs import configure_logging

    configure_logging(settings)
    runtime = Runtime(settings)
    ctx.obj = runtime
    ctx.call_on_close(runtime.close)


@main.command()
def version() -> None:
    """Print the haste version."""
    click.echo(f"haste {__version__}")


@main.group()
def db() -> None:
    """Database: migrations, connection URL, psql."""


@db.command("migrate")
@pass_runtime
def db_migrate(rt: Runtime) -> None:
    """Apply pending migrations (safe to run twice, or concurrently)."""
    from engine.migrations import MigrationError, migrate

    try:
        applied = migrate(rt.database_url())
    except MigrationError as exc:
        raise click.ClickException(str(exc)) from None
    if not applied:
        click.echo("database is up to date")
    for mig in applied:
        click.echo(f"applied {mig.filename}")


@db.command("status")
@pass_runtime
def db_status(rt: Runtime) -> None:
    """List migrations as applied, pending, changed or missing."""
    import psycopg

    from engine.migrations import status

    with psycopg.connect(rt.database_url()) as conn:
        states = status(conn)
    for s in states:
        at = s.applied_at.isoformat(timespec="seconds") if s.applied_at else ""
        click.echo(f"{s.version:04d}_{s.name:<40} {s.state:<8} {at}")
    if any(s.state in ("changed", "missing") for s in states):
        sys.exit(1)


@db.command("url")
@pass_runtime
def db_url(rt: Runtime) -> None:
    """Print the database URL (starts the embedded server if needed)."""
    click.echo(rt.database_url())


@db.command("psql", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@pass_runtime
def db_psql(rt: Runtime, args: tuple[str, ...]) -> None:
    """Open psql on the database (the embedded one's own psql when embedded)."""
    import subprocess

    url = rt.database_url()
    psql = shutil.which("psql")
    if rt.settings.database_url is None or psql is None:
        from engine.services import _pg_bin

        psql = str(_pg_bin("psql"))
    code = subprocess.call([psql, url, *args])
    sys.exit(code)


def _print_banner(services: Services, names: list[str]) -> None:
    pg = "embedded" if services.postgres else "external"
    rd = "embedded" if services.redis else "external"
    click.echo(f"haste {__version__} is up")
    click.echo(f"  PostgreSQL ({pg}): {services.database_url}")
    click.echo(f"  Redis      ({rd}): {services.redis_url}")
    click.echo("  psql:  haste db psql      status: haste db status")
    click.echo(f"  processes: {', '.join(names) if names else 'none yet'}")
    click.echo("Press Ctrl-C to stop.")


def _wait_for_signal() -> None:
    stop = threading.Event()

    def handler(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    while not stop.wait(0.5):
        pass


@main.command()
@click.option("--no-processes", is_flag=True, help="Only start services and migrate.")
@click.option("--demo", is_flag=True, help="Seed the demo workspace and run demo traffic too.")
@pass_runtime
def up(rt: Runtime, no_processes: bool, demo: bool) -> None:
    """Start services, migrate, then run every process until Ctrl-C."""
    from engine.migrations import MigrationError, migrate
    from engine.processes import PROCESSES

    started = time.monotonic()
    services = rt.services()
    try:
        migrate(services.database_url)
    except MigrationError as exc:
        raise click.ClickException(str(exc)) from None
    procs = [] if no_processes else list(PROCESSES)
    if demo:
        from engine.cli_demo import seed_database

        seed_database(services.database_url)
        # Not in PROCESSES: the Procfile is what production runs, and it has no demo.
        if not no_processes:
            procs.append(("traffic", "haste demo traffic"))
    _print_banner(services, [name for name, _ in procs])
    click.echo(f"  ready in {time.monotonic() - started:.2f}s", err=True)
    if not procs:
        _wait_for_signal()
        click.echo("stopping")
        return
    from honcho.manager import SIGNALS as HONCHO_SIGNALS

    from engine.supervisor import Supervisor, supervised_env

    env = dict(os.environ)
    # The processes run `haste ...` from this interpreter's environment, activated or not.
    bindir = os.path.dirname(sys.executable)
    env["PATH"] = os.pathsep.join([bindir, env.get("PATH", "")])
    env["DATABASE_URL"] = services.database_url
    env["REDIS_URL"] = services.redis_url
    env.update(supervised_env(rt.settings))  # one metrics directory for the host
    manager = Supervisor(
        state_file=rt.settings.data_dir / "processes.json",
        stop_timeout=rt.settings.shutdown_timeout,
    )
    for name, command in procs:
        manager.add_process(name, command, env=env)
    manager.loop()
    click.echo("stopping")
    # honcho reports a Ctrl-C / SIGTERM stop as 130 / 143: that is a clean stop.
    clean = {info["rc"] for info in HONCHO_SIGNALS.values()}
    if manager.returncode and manager.returncode not in clean:
        sys.exit(manager.returncode)


@main.command()
@pass_runtime
def listen(rt: Runtime) -> None:
    """Drain the outbox into decisions and executions (run one or more replicas)."""
    from triggers.listener import run_until_signalled

    run_until_signalled(rt.database_url())


@main.command()
@click.argument("mode", required=False, type=click.Choice(["trigger", "logical"]))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_runtime
def capture(rt: Runtime, mode: str | None, as_json: bool) -> None:
    """Show how CRM changes are captured, or switch: MODE trigger (row triggers, the
    default) or logical (logical decoding: writers keep their full throughput; needs
    wal_level = logical and a replication slot, see docs/operations.md)."""
    import json

    import psycopg

    from engine.values import json_safe
    from triggers.capture_mode import CaptureModeError, capture_status, switch_capture

    with psycopg.connect(rt.database_url(), autocommit=True) as conn:
        try:
            state = switch_capture(conn, mode) if mode else capture_status(conn)
        except (CaptureModeError, psycopg.Error) as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
    if as_json:
        click.echo(json.dumps(json_safe(state), indent=2))
        return
    click.echo(f"capture: {state['mode']} (wal_level {state['wal_level']})")
    if state["slot_name"]:
        retained = state["slot_retained_bytes"]
        click.echo(
            f"  slot {state['slot_name']}: {'active' if state['slot_active'] else 'idle'},"
            f" WAL retained {retained if retained is not None else '?'} bytes,"
            f" status {state['slot_wal_status']}"
        )
        click.echo(f"  decoded up to {state['decoded_lsn'] or '-'} at {state['decoded_at'] or '-'}")
    if state["last_error"]:
        click.echo(f"  last decoding error: {state['last_error']}")


# Command groups living in their own modules register themselves on import.
from engine import cli_ai as _cli_ai  # noqa: E402,F401
from engine import cli_authoring as _cli_authoring  # noqa: E402,F401
from engine import cli_demo as _cli_demo  # noqa: E402,F401
from engine import cli_operations as _cli_operations  # noqa: E402,F401
from engine import cli_schedule as _cli_schedule  # noqa: E402,F401
from engine import cli_web as _cli_web  # noqa: E402,F401

if __name__ == "__main__":  # pragma: no cover
    main()
