"""``haste search``, ``haste embeddings ...`` and ``haste ai ...``: the AI side for operators.

Each command is a thin edge over :mod:`workers.embeddings` / :mod:`workers.ai_tasks` /
:mod:`workers.ai_guardrails`. Commands that call a provider run it in this process with the
same configuration as the ``ai`` worker (keys, base URLs, budgets); with no key they say
that the answer comes from the **offline** provider, so a demo is never mistaken for a
model's output.
"""

from __future__ import annotations

import json
import sys
from datetime import date
from typing import Any
from uuid import UUID

import click
import psycopg

from engine.cli import Runtime, main, pass_runtime

json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


def _connect(rt: Runtime) -> psycopg.Connection[Any]:
    return psycopg.connect(rt.database_url(), autocommit=True)


def _workspace_id(conn: psycopg.Connection[Any], slug: str) -> UUID:
    from engine.automations import DeployError, find_workspace

    try:
        return find_workspace(conn, slug).id
    except DeployError as exc:
        raise click.ClickException(str(exc)) from None


def _ai_runtime(rt: Runtime) -> Any:
    from workers.ai_tasks import AiRuntime

    return AiRuntime.from_settings(rt.settings)


def _dump(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _offline_notice(ai: Any, provider: str) -> None:
    if provider == "offline":
        click.echo(
            "note: answered by the OFFLINE provider (deterministic heuristics, no model);"
            " set OPENAI_API_KEY or ANTHROPIC_API_KEY for real answers",
            err=True,
        )


@main.command()
@click.argument("text")
@click.option("--workspace", "slug", required=True, help="Workspace slug.")
@click.option("--limit", default=10, show_default=True, type=click.IntRange(1, 200))
@click.option(
    "--type",
    "types",
    multiple=True,
    type=click.Choice(["contact", "company"]),
    help="Only these record types (default: both).",
)
@json_option
@pass_runtime
def search(
    rt: Runtime, text: str, slug: str, limit: int, types: tuple[str, ...], as_json: bool
) -> None:
    """Contacts and companies best matching TEXT: vector similarity fused with full text."""
    from workers.ai_routing import ConfigError
    from workers.embeddings import ENTITIES, workspace_route
    from workers.embeddings import search as do_search
    from workers.providers import ProviderError

    ai = _ai_runtime(rt)
    with _connect(rt) as conn:
        workspace_id = _workspace_id(conn, slug)
        try:
            from engine.db import tenant_transaction

            with tenant_transaction(conn, workspace_id, dict_rows=True) as cur:
                route = workspace_route(ai, cur)
            hits = do_search(conn, ai, workspace_id, text, limit=limit, entities=types or ENTITIES)
        except (ConfigError, ProviderError) as exc:
            raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(_dump({"embedding": route.to_dict(), "hits": [h.to_dict() for h in hits]}))
        return
    _offline_notice(ai, route.provider)
    if not hits:
        click.echo("no match (records without embeddings? try `haste embeddings backfill`)")
        return
    for rank, hit in enumerate(hits, 1):
        detail = " · ".join(str(v) for v in (hit.email, hit.detail) if v)
        signals = []
        if hit.vector_rank:
            signals.append(f"vector #{hit.vector_rank} (distance {hit.distance:.3f})")
        if hit.text_rank:
            signals.append(f"text #{hit.text_rank}")
        click.echo(f"{rank:>2}. [{hit.entity_type}] {hit.name or '(no name)'}  {detail}")
        click.echo(f"    {hit.id}  score {hit.score:.4f}  {', '.join(signals)}")


@main.group()
def embeddings() -> None:
    """Embeddings of contacts and companies (pgvector)."""


@embeddings.command()
@click.option("--workspace", "slug", help="Only this workspace (default: all).")
@click.option(
    "--enqueue",
    is_flag=True,
    help="Only schedule; the ai worker embeds them (default: embed here, now).",
)
@json_option
@pass_runtime
def backfill(rt: Runtime, slug: str | None, enqueue: bool, as_json: bool) -> None:
    """Embed every record without a current vector (missing, or from another model)."""
    from workers.ai_routing import ConfigError
    from workers.embeddings import backfill as do_backfill

    ai = _ai_runtime(rt)
    with _connect(rt) as conn:
        workspace_id = _workspace_id(conn, slug) if slug else None
        try:
            scheduled, result = do_backfill(conn, ai, workspace_id=workspace_id, run=not enqueue)
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None
    if enqueue:
        from workers.broker import configure
        from workers.embeddings import kick

        configure(rt.services().redis_url)
        kick()
    summary = {
        "scheduled": scheduled,
        "written": result.written,
        "unchanged": result.unchanged,
        "failed": result.failed,
        "requests": result.requests,
        "tokens": result.tokens,
        "errors": result.errors[:5],
    }
    if as_json:
        click.echo(_dump(summary))
    else:
        click.echo(
            f"scheduled {scheduled}; embedded {result.written} in {result.requests} request(s)"
            f" ({result.tokens} tokens); unchanged {result.unchanged}; failed {result.failed}"
        )
        for error in result.errors[:5]:
            click.echo(f"  error: {error}", err=True)
    if result.failed:
        sys.exit(1)


@embeddings.command()
@pass_runtime
def status(rt: Runtime) -> None:
    """How many records wait for an embedding."""
    from workers.embeddings import pending_count

    with _connect(rt) as conn:
        click.echo(f"{pending_count(conn)} record(s) pending")


@main.group()
def ai() -> None:
    """AI tasks: list, inspect, run, cancel; usage and budgets."""


@ai.command("tasks")
@click.option("--workspace", "slug", help="Only this workspace.")
@click.option(
    "--status",
    type=click.Choice(["pending", "processing", "completed", "failed", "cancelled"]),
)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000))
@json_option
@pass_runtime
def tasks(rt: Runtime, slug: str | None, status: str | None, limit: int, as_json: bool) -> None:
    """Recent AI tasks, newest first."""
    from engine.db import system_transaction
    from engine.queries import query

    with _connect(rt) as conn:
        workspace_id = _workspace_id(conn, slug) if slug else None
        with system_transaction(conn, dict_rows=True) as cur:
            rows = cur.execute(
                query("ai_task_list"),
                {"workspace_id": workspace_id, "status": status, "limit": limit},
            ).fetchall()
    if as_json:
        click.echo(_dump(rows))
        return
    for r in rows:
        via = f" (failover from {r['failover_from']})" if r["failover_from"] else ""
        cache = " cached" if r["cache_hit"] else ""
        click.echo(
            f"{r['id']}  {r['workspace']}  {r['type']:<18} {r['status']:<10}"
            f" {r['model_provider'] or '-'}/{r['model_name'] or '-'}{via}{cache}"
            f"  {r['tokens_used'] or 0} tok  {r['cost_cents'] or 0}¢  {r['duration_ms'] or 0} ms"
        )
        if r["error_message"] and r["status"] == "failed":
            click.echo(f"    {r['error_message']}")


@ai.command("task")
@click.argument("task_id")
@pass_runtime
def task(rt: Runtime, task_id: str) -> None:
    """One AI task: input, output, attempts, write-back (JSON)."""
    from engine.db import system_transaction
    from engine.queries import query

    with _connect(rt) as conn, system_transaction(conn, dict_rows=True) as cur:
        try:
            row = cur.execute(query("ai_task_get_full"), {"id": UUID(task_id)}).fetchone()
        except ValueError:
            row = None
    if row is None:
        raise click.ClickException(f"no AI task {task_id}")
    click.echo(_dump(row))


@ai.command("run")
@click.argument("task_type")
@click.option("--workspace", "slug", required=True, help="Workspace slug.")
@click.option("--record", "record_ref", help="The record it is about: contact/UUID, deal/UUID…")
@click.option("--input", "input_json", default="{}", help="The task's input, a JSON object.")
@click.option("--provider", type=click.Choice(["openai", "anthropic", "offline"]))
@click.option("--model")
@click.option("--no-write-back", is_flag=True, help="Do not write the result onto the record.")
@pass_runtime
def run(
    rt: Runtime,
    task_type: str,
    slug: str,
    record_ref: str | None,
    input_json: str,
    provider: str | None,
    model: str | None,
    no_write_back: bool,
) -> None:
    """Create an AI task and process it here, now; print its output."""
    from workers.ai_tasks import create_task, process_task
    from workers.ai_types import TASK_TYPES

    if task_type not in TASK_TYPES:
        raise click.BadParameter(f"{task_type!r}; known: {', '.join(TASK_TYPES)}")
    try:
        content = json.loads(input_json)
    except ValueError as exc:
        raise click.BadParameter(f"--input is not JSON: {exc}") from None
    if not isinstance(content, dict):
        raise click.BadParameter("--input must be a JSON object")
    record = None
    if record_ref:
        entity, _, raw_id = record_ref.partition("/")
        entity = {"contacts": "contact", "companies": "company", "deals": "deal"}.get(
            entity, entity.removesuffix("s") if entity == "emails" else entity
        )
        try:
            record = {"entity": entity, "id": str(UUID(raw_id))}
        except ValueError:
            raise click.BadParameter(f"--record {record_ref!r}: expected entity/uuid") from None
    ai = _ai_runtime(rt)
    with _connect(rt) as conn:
        workspace_id = _workspace_id(conn, slug)
        task_id = create_task(
            conn,
            workspace_id,
            task_type,
            content,
            record=record,
            provider=provider,
            model=model,
            write_back=not no_write_back,
        )
        outcome = process_task(conn, task_id, ai)
        from engine.db import system_transaction
        from engine.queries import query

        with system_transaction(conn, dict_rows=True) as cur:
            row = cur.execute(query("ai_task_get_full"), {"id": task_id}).fetchone()
    _offline_notice(ai, row["model_provider"])
    click.echo(
        _dump(
            {
                k: row[k]
                for k in (
                    "id",
                    "status",
                    "model_provider",
                    "model_name",
                    "tokens_used",
                    "cost_cents",
                    "duration_ms",
                    "retry_count",
                    "error_message",
                    "output",
                    "write_back",
                )
            }
        )
    )
    if outcome.status != "completed":
        sys.exit(1)


@ai.command("cancel")
@click.argument("task_ids", nargs=-1, required=True)
@pass_runtime
def cancel(rt: Runtime, task_ids: tuple[str, ...]) -> None:
    """Cancel pending or processing AI tasks (their executions' steps then fail)."""
    from workers.ai_tasks import cancel_tasks

    with _connect(rt) as conn:
        done = cancel_tasks(conn, task_ids)
    click.echo(f"cancelled {len(done)} of {len(task_ids)}")


def _month(raw: str | None) -> date:
    from workers.ai_guardrails import month_of

    if not raw:
        return month_of()
    try:
        year, month = raw.split("-")
        return date(int(year), int(month), 1)
    except ValueError:
        raise click.BadParameter(f"{raw!r}: expected YYYY-MM") from None


@ai.command("usage")
@click.option("--workspace", "slug", required=True, help="Workspace slug.")
@click.option("--month", "month_raw", help="YYYY-MM (default: this month, UTC).")
@json_option
@pass_runtime
def usage(rt: Runtime, slug: str, month_raw: str | None, as_json: bool) -> None:
    """Tokens and cost used this month, per workspace and automation, against budgets."""
    from engine.db import tenant_transaction
    from engine.queries import query

    month = _month(month_raw)
    with _connect(rt) as conn:
        workspace_id = _workspace_id(conn, slug)
        with tenant_transaction(conn, workspace_id, dict_rows=True) as cur:
            rows = cur.execute(query("ai_usage_report"), {"month": month}).fetchall()
    if as_json:
        click.echo(_dump(rows))
        return
    if not rows:
        click.echo(f"no AI usage in {month:%Y-%m}")
    for r in rows:
        scope = "workspace" if r["automation_id"] is None else f"automation {r['automation']}"
        tokens_limit = "no limit" if r["monthly_tokens"] is None else f"{r['monthly_tokens']:,}"
        cents_limit = (
            "no limit" if r["monthly_cost_cents"] is None else f"{r['monthly_cost_cents']}¢"
        )
        click.echo(
            f"{scope}: {r['tokens_used']:,} tokens (budget {tokens_limit}),"
            f" {float(r['cost_cents']):.4f}¢ (budget {cents_limit}), {r['calls']} call(s)"
        )


def _limit(raw: str | None) -> Any:
    if raw is None or raw.lower() in ("none", "unlimited"):
        return None
    try:
        value = float(raw)
    except ValueError:
        raise click.BadParameter(f"{raw!r}: a number, or none") from None
    if value < 0:
        raise click.BadParameter(f"{raw!r}: must be >= 0")
    return value


@ai.command("budget")
@click.option("--workspace", "slug", required=True, help="Workspace slug.")
@click.option("--automation", "automation_id", help="An automation id (default: the workspace).")
@click.option("--tokens", help="Monthly tokens, or none.")
@click.option("--cents", help="Monthly cost in US cents, or none.")
@pass_runtime
def budget(
    rt: Runtime, slug: str, automation_id: str | None, tokens: str | None, cents: str | None
) -> None:
    """Set the monthly budget of a workspace or of one of its automations."""
    from engine.db import tenant_transaction
    from engine.queries import query

    token_limit = _limit(tokens)
    with _connect(rt) as conn:
        workspace_id = _workspace_id(conn, slug)
        with tenant_transaction(conn, workspace_id) as cur:
            cur.execute(
                query("ai_budget_set"),
                {
                    "workspace_id": workspace_id,
                    "automation_id": UUID(automation_id) if automation_id else None,
                    "monthly_tokens": None if token_limit is None else int(token_limit),
                    "monthly_cost_cents": _limit(cents),
                },
            )
    scope = f"automation {automation_id}" if automation_id else f"workspace {slug}"
    click.echo(f"budget of {scope}: tokens {tokens or 'none'}, cents {cents or 'none'}")


@ai.command("sweep")
@json_option
@pass_runtime
def sweep(rt: Runtime, as_json: bool) -> None:
    """One AI sweep: resend stuck tasks, release orphaned reservations, wake executions."""
    from workers.ai_tasks import sweep as do_sweep
    from workers.broker import configure

    configure(rt.services().redis_url)
    from workers.ai import send_task

    with _connect(rt) as conn:
        result = do_sweep(conn, rt.settings)
    for task_id in result.resend:
        send_task(task_id)
    summary = {"resent": len(result.resend), "released": result.released, "woken": result.woken}
    click.echo(
        _dump(summary)
        if as_json
        else ", ".join(f"{k} {v if isinstance(v, int) else len(v)}" for k, v in summary.items())
    )
