"""Author-facing commands: ``haste validate``, ``deploy``, ``dry-run``, ``automations ...``.

Thin edges: parsing arguments and printing. The work is in :mod:`engine.validation`,
:mod:`engine.automations` and :mod:`engine.dryrun`, which the web API calls too.
Exit codes: 0 success, 1 invalid input or refused deploy, 3 dry-run "would not run".
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
import psycopg

from engine.cli import Runtime, main, pass_runtime


def _dump(value: Any) -> str:
    from engine.values import json_safe

    return json.dumps(json_safe(value), indent=2, ensure_ascii=False)


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def validate(files: tuple[str, ...], as_json: bool) -> None:
    """Check automation documents; every problem as FILE:/json/pointer: message."""
    from engine.validation import format_problem, problems_as_json, validate_files

    problems = validate_files(files)
    if as_json:
        click.echo(json.dumps(problems_as_json(problems), indent=2))
    else:
        for problem in problems:
            click.echo(format_problem(problem))
        if not problems:
            click.echo(f"{len(files)} file(s) valid", err=True)
    sys.exit(1 if problems else 0)


def _load_valid(path: str) -> dict[str, Any]:
    from engine.definitions import load_document
    from engine.validation import format_problem, validate_document

    doc, problems = load_document(path)
    if not problems:  # read and parsed; a document of `null` is refused by the validator
        problems = validate_document(doc, file=path)
    if problems:
        for problem in problems:
            click.echo(format_problem(problem), err=True)
        sys.exit(1)
    assert isinstance(doc, dict)
    return doc


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--workspace", "slug", required=True, help="Workspace slug.")
@pass_runtime
def deploy(rt: Runtime, file: str, slug: str) -> None:
    """Validate FILE, then create or update its automation and record a version."""
    from engine.automations import DeployError, find_workspace
    from engine.automations import deploy as do_deploy

    doc = _load_valid(file)
    with psycopg.connect(rt.database_url(), autocommit=True) as conn:
        try:
            workspace = find_workspace(conn, slug)
            result = do_deploy(conn, workspace, doc, validate=False)
        except DeployError as exc:
            for problem in exc.problems:
                click.echo(f"{file}:{problem}" if problem.startswith("/") else problem, err=True)
            sys.exit(1)
    if not result.changed:
        click.echo(f"{result.name}: unchanged (version {result.version})")
    else:
        verb = "created" if result.created else "updated"
        click.echo(f"{result.name}: {verb}, version {result.version} ({result.automation_id})")


@main.group()
def automations() -> None:
    """List, show, enable, disable automations and their versions."""


def _workspace(conn: psycopg.Connection[Any], slug: str) -> Any:
    from engine.automations import DeployError, find_workspace

    try:
        return find_workspace(conn, slug)
    except DeployError as exc:
        raise click.ClickException(str(exc)) from None


workspace_option = click.option("--workspace", "slug", required=True, help="Workspace slug.")
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


@automations.command("list")
@workspace_option
@json_option
@pass_runtime
def automations_list(rt: Runtime, slug: str, as_json: bool) -> None:
    """Every automation of the workspace with its counters."""
    from engine.automations import list_automations

    with psycopg.connect(rt.database_url(), autocommit=True) as conn:
        rows = list_automations(conn, _workspace(conn, slug))
    if as_json:
        click.echo(_dump(rows))
        return
    click.echo(
        f"{'NAME':<32} {'TRIGGER':<20} {'ON':<3} {'VER':>3} {'RUNS':>6} {'OK':>6} {'ERR':>5}"
    )
    for r in rows:
        click.echo(
            f"{r['name'][:32]:<32} {r['trigger_type']:<20} {'yes' if r['enabled'] else 'no':<3}"
            f" {r['current_version'] or 0:>3} {r['run_count'] or 0:>6} {r['success_count'] or 0:>6}"
            f" {r['error_count'] or 0:>5}"
        )


@automations.command("show")
@click.argument("ref")
@workspace_option
@pass_runtime
def automations_show(rt: Runtime, ref: str, slug: str) -> None:
    """One automation (by name or id) with its deployed document."""
    from engine.automations import show_automation

    with psycopg.connect(rt.database_url(), autocommit=True) as conn:
        row = show_automation(conn, _workspace(conn, slug), ref)
    if row is None:
        raise click.ClickException(f"no automation {ref!r} in workspace {slug!r}")
    click.echo(_dump(row))


def _set_enabled(rt: Runtime, ref: str, slug: str, enabled: bool) -> None:
    from engine.automations import DeployError, set_enabled

    with psycopg.connect(rt.database_url(), autocommit=True) as conn:
        try:
            row = set_enabled(conn, _workspace(conn, slug), ref, enabled)
        except DeployError as exc:
            raise click.ClickException(str(exc)) from None
    if row is None:
        raise click.ClickException(f"no automation {ref!r} in workspace {slug!r}")
    click.echo(f"{row['name']}: {'enabled' if row['enabled'] else 'disabled'}")


@automations.command("enable")
@click.argument("ref")
@workspace_option
@pass_runtime
def automations_enable(rt: Runtime, ref: str, slug: str) -> None:
    """Enable an automation (re-runs the cycle check)."""
    _set_enabled(rt, ref, slug, True)


@automations.command("disable")
@click.argument("ref")
@workspace_option
@pass_runtime
def automations_disable(rt: Runtime, ref: str, slug: str) -> None:
    """Disable an automation: no new executions start."""
    _set_enabled(rt, ref, slug, False)


@automations.command("versions")
@click.argument("ref")
@workspace_option
@json_option
@pass_runtime
def automations_versions(rt: Runtime, ref: str, slug: str, as_json: bool) -> None:
    """Every deployed version of an automation: who, when, checksum."""
    from engine.automations import list_versions

    with psycopg.connect(rt.database_url(), autocommit=True) as conn:
        rows = list_versions(conn, _workspace(conn, slug), ref)
    if not rows:
        raise click.ClickException(f"no automation {ref!r} in workspace {slug!r}")
    if as_json:
        click.echo(_dump(rows))
        return
    for r in rows:
        who = r["deployed_by_email"] or r["deployed_by_name"] or "?"
        at = r["deployed_at"].isoformat(timespec="seconds")
        click.echo(f"v{r['version']:<4} {at}  {who:<24} {r['checksum'][:12]}")


@main.command("dry-run")
@click.argument("file", type=click.Path(dir_okay=False))
@workspace_option
@click.option("--record", "record_ref", help="entity/uuid, e.g. contacts/6f1c…")
@click.option("--event", "event_file", type=click.Path(dir_okay=False), help="Event JSON file.")
@json_option
@pass_runtime
def dry_run(
    rt: Runtime,
    file: str,
    slug: str,
    record_ref: str | None,
    event_file: str | None,
    as_json: bool,
) -> None:
    """Show what FILE would do for a record or an event, changing nothing.

    Exit 0 when the automation would run, 3 when it would not.
    """
    from engine.dryrun import DryRunError, render_report
    from engine.dryrun import dry_run as do_dry_run

    if (record_ref is None) == (event_file is None):
        raise click.UsageError("give exactly one of --record or --event")
    doc = _load_valid(file)
    event: dict[str, Any] | None = None
    if event_file is not None:
        try:
            event = json.loads(Path(event_file).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise click.ClickException(f"{event_file}: {exc}") from None
    with psycopg.connect(rt.database_url(), autocommit=True) as conn:
        try:
            report = do_dry_run(conn, _workspace(conn, slug), doc, record=record_ref, event=event)
        except DryRunError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(_dump(report.as_dict()) if as_json else render_report(report))
    sys.exit(0 if report.would_run else 3)


@main.command()
@workspace_option
@click.option("--record", "record_ref", help="entity/uuid, e.g. contacts/6f1c…")
@click.option("--event", "event_id", type=int, help="Outbox event id.")
@click.option("--limit", default=50, show_default=True, help="Most recent decisions to show.")
@json_option
@pass_runtime
def why(
    rt: Runtime, slug: str, record_ref: str | None, event_id: int | None, limit: int, as_json: bool
) -> None:
    """Why did (or didn't) automations run for a record or an event? The decision log."""
    from engine import decisions
    from engine.dryrun import DryRunError, parse_record_ref

    if (record_ref is None) == (event_id is None):
        raise click.UsageError("give exactly one of --record or --event")
    with psycopg.connect(rt.database_url(), autocommit=True) as conn:
        workspace = _workspace(conn, slug)
        if record_ref is not None:
            try:
                entity, entity_id = parse_record_ref(record_ref)
            except DryRunError as exc:
                raise click.UsageError(str(exc)) from None
            rows = decisions.for_record(conn, workspace, entity, entity_id, limit=limit)
        else:
            assert event_id is not None
            rows = decisions.for_event(conn, workspace, event_id)
    if as_json:
        click.echo(_dump(rows))
        return
    if not rows:
        click.echo("no decisions recorded (no event yet, or no automation of that trigger type)")
    for r in rows:
        at = r["created_at"].isoformat(timespec="seconds")
        click.echo(
            f"{at}  event {r['event_id']:<8} {r['automation'] or '?':<32} {r['outcome']:<24}"
            f" {decisions.describe(r)}"
        )
