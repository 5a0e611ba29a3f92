"""Commands of the web side: ``haste web``, ``haste apikey``, ``haste webhook``,
``haste trigger`` and ``haste metrics serve``.

Thin edges over :mod:`engine.web` (the API calls the same functions). Secrets and keys
are printed once, when made, and never again: what is stored is a hash (API keys) or
only shown as a short preview (webhook secrets).
Exit codes: 0 success, 1 refused (unknown workspace/automation/key, invalid input).
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import click
import psycopg

from engine.cli import Runtime, main, pass_runtime

workspace_option = click.option("--workspace", "slug", required=True, help="Workspace slug.")


def _connect(rt: Runtime) -> psycopg.Connection[Any]:
    return psycopg.connect(rt.database_url(), autocommit=True)


def _workspace(conn: psycopg.Connection[Any], slug: str) -> Any:
    from engine.automations import DeployError, find_workspace

    try:
        return find_workspace(conn, slug)
    except DeployError as exc:
        raise click.ClickException(str(exc)) from None


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


@main.command()
@click.option("--host", help="Address to listen on (default: HASTE_WEB_HOST).")
@click.option("--port", type=click.IntRange(1, 65535), help="Port (default: HASTE_WEB_PORT).")
@pass_runtime
def web(rt: Runtime, host: str | None, port: int | None) -> None:
    """Serve webhooks, the API, /healthz, /readyz and /metrics until SIGTERM."""
    from engine.web.app import create_app
    from engine.web.server import serve

    settings = rt.settings
    services = rt.services()
    app = create_app(settings, database_url=services.database_url, redis_url=services.redis_url)
    serve(
        app,
        host=host or settings.web_host,
        port=port or settings.web_port,
        shutdown_timeout=settings.shutdown_timeout,
        log_level=settings.log_level,
    )


# --- API keys ---------------------------------------------------------------------------------


@main.group()
def apikey() -> None:
    """Workspace API keys of the web API (stored hashed; shown once)."""


@apikey.command("create")
@workspace_option
@click.option("--name", default="api", show_default=True, help="What the key is for.")
@click.option("--expires-in", type=click.IntRange(1), help="Days until the key expires.")
@pass_runtime
def apikey_create(rt: Runtime, slug: str, name: str, expires_in: int | None) -> None:
    """Create a key for one workspace and print it (the only time it is shown)."""
    from engine.web.auth import create_key

    expires = datetime.now(UTC) + timedelta(days=expires_in) if expires_in else None
    with _connect(rt) as conn:
        new = create_key(conn, _workspace(conn, slug), name, expires_at=expires)
    click.echo(new.key)
    click.echo(
        f"key {new.id} ({new.prefix}…) for workspace {slug}"
        + (f", expires {new.expires_at.isoformat(timespec='seconds')}" if new.expires_at else "")
        + ". Store it now: it cannot be shown again.",
        err=True,
    )


@apikey.command("list")
@workspace_option
@pass_runtime
def apikey_list(rt: Runtime, slug: str) -> None:
    """List a workspace's keys (prefix, last use, state)."""
    from engine.web.auth import list_keys

    with _connect(rt) as conn:
        rows = list_keys(conn, _workspace(conn, slug))
    for row in rows:
        state = "revoked" if row["revoked_at"] else "live"
        used = row["last_used_at"].isoformat(timespec="seconds") if row["last_used_at"] else "never"
        click.echo(f"{row['id']}  {row['prefix']}…  {row['name']:<20} {state:<8} last used {used}")
    if not rows:
        click.echo("no keys", err=True)


@apikey.command("revoke")
@workspace_option
@click.argument("key")
@pass_runtime
def apikey_revoke(rt: Runtime, slug: str, key: str) -> None:
    """Revoke a key by id or shown prefix (hk_xxxxxxxx)."""
    from engine.web.auth import revoke_key

    with _connect(rt) as conn:
        row = revoke_key(conn, _workspace(conn, slug), key)
    if row is None:
        _fail(f"no live key {key!r} in workspace {slug}")
    click.echo(f"revoked {row['id']} ({row['prefix']}…)")


# --- webhooks ---------------------------------------------------------------------------------


@main.group()
def webhook() -> None:
    """Webhook URLs and signing secrets of webhook automations."""


def _base_url(rt: Runtime, base: str | None) -> str:
    return (base or f"http://{rt.settings.web_host}:{rt.settings.web_port}").rstrip("/")


base_option = click.option(
    "--base-url", help="Public base URL of haste web (default: http://HOST:PORT)."
)


@webhook.command("url")
@workspace_option
@click.argument("automation")
@base_option
@pass_runtime
def webhook_url(rt: Runtime, slug: str, automation: str, base_url: str | None) -> None:
    """Print the URL senders POST to (created on first use)."""
    from engine.web.endpoints import EndpointError, ensure_endpoint

    with _connect(rt) as conn:
        try:
            endpoint = ensure_endpoint(conn, _workspace(conn, slug), automation)
        except EndpointError as exc:
            _fail(str(exc))
    click.echo(_base_url(rt, base_url) + endpoint.path)


@webhook.group("secret")
def webhook_secret() -> None:
    """Create, rotate and list signing secrets (Standard Webhooks, whsec_...)."""


def _print_secret(rt: Runtime, new: Any, base_url: str | None) -> None:
    click.echo(new.secret)
    click.echo(f"url: {_base_url(rt, base_url)}{new.endpoint.path}", err=True)
    if new.previous_valid_until is not None:
        until = new.previous_valid_until.isoformat(timespec="seconds")
        click.echo(f"previous secret(s) valid until {until}", err=True)
    click.echo("Give the secret to the sender now: it is not shown again.", err=True)


@webhook_secret.command("create")
@workspace_option
@click.argument("automation")
@base_option
@pass_runtime
def webhook_secret_create(rt: Runtime, slug: str, automation: str, base_url: str | None) -> None:
    """Add a signing secret (existing ones stay valid) and print it."""
    from engine.web.endpoints import EndpointError, add_secret

    with _connect(rt) as conn:
        try:
            new = add_secret(conn, _workspace(conn, slug), automation, overlap=None)
        except EndpointError as exc:
            _fail(str(exc))
    _print_secret(rt, new, base_url)


@webhook_secret.command("rotate")
@workspace_option
@click.argument("automation")
@click.option(
    "--overlap",
    type=click.IntRange(0),
    help="Seconds the current secrets stay valid (default HASTE_WEBHOOK_SECRET_OVERLAP; 0 ="
    " revoke them now).",
)
@base_option
@pass_runtime
def webhook_secret_rotate(
    rt: Runtime, slug: str, automation: str, overlap: int | None, base_url: str | None
) -> None:
    """Add a new secret; the current ones expire after the overlap."""
    from engine.web.endpoints import EndpointError, add_secret

    window = rt.settings.webhook_secret_overlap if overlap is None else overlap
    with _connect(rt) as conn:
        try:
            new = add_secret(conn, _workspace(conn, slug), automation, overlap=window)
        except EndpointError as exc:
            _fail(str(exc))
    _print_secret(rt, new, base_url)


@webhook_secret.command("list")
@workspace_option
@click.argument("automation")
@pass_runtime
def webhook_secret_list(rt: Runtime, slug: str, automation: str) -> None:
    """List an endpoint's secrets (preview, created, expiry)."""
    from engine.web.endpoints import EndpointError, list_secrets

    with _connect(rt) as conn:
        try:
            endpoint, rows = list_secrets(conn, _workspace(conn, slug), automation)
        except EndpointError as exc:
            _fail(str(exc))
    click.echo(f"{endpoint.automation}: {endpoint.path}")
    for row in rows:
        until = row["expires_at"].isoformat(timespec="seconds") if row["expires_at"] else "-"
        state = "valid" if row["valid"] else "expired"
        click.echo(
            f"  {row['preview']}  created {row['created_at'].isoformat(timespec='seconds')}"
            f"  expires {until}  {state}"
        )
    if not rows:
        click.echo("  no secrets: haste webhook secret create", err=True)


# --- manual trigger ---------------------------------------------------------------------------


@main.command()
@workspace_option
@click.argument("automation")
@click.option(
    "--record", "records", multiple=True, required=True, help="<kind>/<uuid>, repeatable."
)
@click.option("--input", "input_json", help="JSON object the automation sees as trigger.*.")
@pass_runtime
def trigger(
    rt: Runtime, slug: str, automation: str, records: tuple[str, ...], input_json: str | None
) -> None:
    """Run a manual automation on records (one event each; the listener runs them)."""
    from engine.dryrun import DryRunError, parse_record_ref
    from engine.web.manual import TriggerError, trigger_manual

    try:
        refs = [parse_record_ref(r) for r in records]
    except DryRunError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        payload = json.loads(input_json) if input_json else {}
    except ValueError as exc:
        raise click.UsageError(f"--input is not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise click.UsageError("--input must be a JSON object")
    with _connect(rt) as conn:
        try:
            done = trigger_manual(
                conn,
                _workspace(conn, slug),
                automation,
                [record_id for _, record_id in refs],
                payload,
                max_records=rt.settings.api_bulk_max,
            )
        except TriggerError as exc:
            details = "".join(f"\n  {e['pointer']}: {e['detail']}" for e in exc.errors)
            _fail(exc.detail + details)
    for record_id, event_id in done.events:
        click.echo(f"event {event_id}: {done.automation} on {done.entity_type}/{record_id}")


# --- metrics exporter -------------------------------------------------------------------------


@main.group("metrics")
def metrics_group() -> None:
    """Prometheus metrics of this host's processes."""


@metrics_group.command("serve")
@click.option("--port", type=click.IntRange(1, 65535), help="Default: HASTE_METRICS_PORT.")
@click.option("--host", default="0.0.0.0", show_default=True)
@pass_runtime
def metrics_serve(rt: Runtime, port: int | None, host: str) -> None:
    """Serve the sum of PROMETHEUS_MULTIPROC_DIR at /metrics: the exporter of a host that
    runs workers or listeners but no web process."""
    import signal
    import threading

    from prometheus_client import start_http_server

    from engine.metrics import multiprocess_dir, process_registry

    if multiprocess_dir() is None:
        raise click.UsageError(
            "PROMETHEUS_MULTIPROC_DIR is not set: the processes of this host keep their"
            " metrics in their own memory, there is nothing to export"
        )
    server, thread = start_http_server(
        port or rt.settings.metrics_port, addr=host, registry=process_registry()
    )
    click.echo(
        f"serving {multiprocess_dir()} on http://{host}:{port or rt.settings.metrics_port}/metrics"
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.shutdown()
    thread.join(timeout=5)


# --- status -----------------------------------------------------------------------------------


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = float(seconds)
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def render_status(data: dict[str, Any]) -> list[str]:
    """The status as terminal lines (one section per heading)."""
    lines: list[str] = []

    def heading(text: str) -> None:
        lines.extend(["", click.style(text, bold=True)])

    procs = data.get("processes")
    heading("processes (haste up)")
    if not procs:
        lines.append("  no haste up state on this machine (processes may run elsewhere)")
    else:
        sup = "running" if procs.get("supervisor_alive") else "not running"
        lines.append(f"  supervisor pid {procs.get('supervisor_pid')}: {sup}")
        for name, p in procs.get("processes", {}).items():
            state = click.style("up", fg="green") if p["alive"] else click.style("down", fg="red")
            lines.append(
                f"  {name:<10} {state:<4}  pid {p.get('pid') or '-':<8} since"
                f" {p.get('started_at') or '-'}  restarts {p.get('restarts', 0)}"
                + (
                    f"  last exit {p['last_exit_code']}"
                    if p.get("last_exit_code") is not None
                    else ""
                )
            )
    if "database" in data:
        heading("database")
        lines.append(f"  unavailable: {data['database']['error']}")
    else:
        heading("connected to the database")
        for row in data["connections"]:
            lines.append(f"  {row['application']:<48} {row['n']:>3} ({row['active']} active)")
        leader = data["scheduler_leader"]
        heading("scheduler")
        lines.append(
            f"  leader: {leader['application_name']} (pid {leader['pid']})"
            if leader
            else click.style("  no scheduler holds the leader lock", fg="yellow")
        )
        listener = data["listener"]
        heading("listener")
        lines.append(
            f"  backlog {listener['backlog']} event(s), lag {_age(listener['lag_seconds'])},"
            f" {'idle' if listener['idle'] else 'busy'}, {listener['captured_total']} captured"
            " in all"
        )
        capture = listener["capture"]
        lines.append(
            f"  capture: {capture['mode']}"
            + (
                f", slot {capture['slot_name']} retains {capture['slot_retained_bytes']} bytes"
                f" of WAL"
                if capture["slot_name"]
                else ""
            )
        )
        if capture["last_error"]:
            lines.append(click.style(f"  decoding error: {capture['last_error']}", fg="red"))
        heading("executions")
        for status in ("queued", "running", "waiting"):
            row = data["executions"].get(status, {"count": 0, "oldest_seconds": 0})
            oldest = f", oldest {_age(row['oldest_seconds'])}" if row["count"] else ""
            lines.append(f"  {status:<8} {row['count']:>6}{oldest}")
        heading("failing automations (last 24 h)")
        for row in data["failing_automations"]:
            error = (row["last_error"] or "")[:70]
            lines.append(
                f"  {row['failed']:>5} failed  {row['workspace']}/{row['automation']}"
                + ("" if row["enabled"] else " (disabled)")
                + (f"  — {error}" if error else "")
            )
        if not data["failing_automations"]:
            lines.append("  none")
        heading("next schedules")
        for row in data["next_schedules"]:
            lines.append(
                f"  {row['next_at'].isoformat(timespec='seconds')}  {row['kind']:<10} {row['name']}"
            )
        if not data["next_schedules"]:
            lines.append("  none")
    heading("queues (ready / delayed / dead)")
    queues = data["queues"]
    if "error" in queues:
        lines.append(f"  unavailable: {queues['error']}")
    else:
        for name, q in queues.items():
            lines.append(f"  {name:<12} {q['ready']:>6} / {q['delayed']:>6} / {q['dead']:>6}")
    return lines[1:]


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--watch", type=click.FloatRange(0.5), help="Redraw every N seconds until Ctrl-C.")
@pass_runtime
def status(rt: Runtime, as_json: bool, watch: float | None) -> None:
    """Processes, listener lag, queues, failing automations and next schedules."""
    import threading

    from engine.status import gather
    from engine.web.responses import dumps

    services = rt.services()  # reuses haste up's embedded servers when they run
    stop = threading.Event()
    while True:
        data = gather(services.database_url, services.redis_url, rt.settings)
        if as_json:
            click.echo(dumps(data).decode())
        else:
            if watch:
                click.clear()
            click.echo("\n".join(render_status(data)))
        if not watch or stop.wait(watch):
            return
