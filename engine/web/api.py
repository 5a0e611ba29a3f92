"""The operator and CRM API (``/api/v1``): automations, manual triggers, executions, the
decision log. Thin edges over the functions the CLI calls, so both mean the same thing:

    automations list/show/enable/disable/versions   engine.automations
    trigger (one record or a list)                  engine.web.manual
    executions list/get, rerun, redrive, cancel     engine.executions
    decisions of a record / of an event             engine.decisions

Every request carries ``Authorization: Bearer <workspace API key>``; the key names one
workspace and everything runs under its row-level security. An id of another workspace
is "not found" (404), exactly like an id that does not exist: a key learns nothing about
other tenants. Operations the engine performs as the owner (rerun, redrive, cancel) first
read the execution or automation under the tenant, so they can only reach the caller's.

Handlers are async only to read bodies; database work runs in Starlette's thread pool on
a pooled connection (psycopg is synchronous, and so are the engine functions).
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import psycopg
import structlog
from jsonschema import Draft202012Validator
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from engine import automations, decisions, executions
from engine.automations import DeployError, Workspace
from engine.db import tenant_transaction
from engine.dryrun import DryRunError, parse_record_ref
from engine.queries import query
from engine.web import auth
from engine.web.manual import TriggerError, trigger_manual
from engine.web.openapi import request_schema
from engine.web.responses import JSON, ApiError, json_body, pointer
from engine.web.threads import blocking

#: Largest page of executions or decisions one request returns.
MAX_PAGE = 200
DEFAULT_PAGE = 50
#: Seconds to wait for a pooled connection before answering 503.
POOL_WAIT = 5.0

Conn = psycopg.Connection[Any]


# --- plumbing -------------------------------------------------------------------------------


def _not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"no {what}")


def _clean(ref: str, what: str) -> str:
    """A path segment that PostgreSQL can compare (no NUL; bounded)."""
    if "\x00" in ref or len(ref) > 300:
        raise _not_found(what)
    return ref


def _uuid(raw: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise _not_found(what) from None


def _validate(name: str, body: Any) -> dict[str, Any]:
    validator = Draft202012Validator(
        request_schema(name), format_checker=Draft202012Validator.FORMAT_CHECKER
    )
    problems = sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
    if problems:
        raise ApiError(
            422,
            "invalid_request",
            "the request body is not valid",
            errors=[
                {"pointer": pointer(list(e.absolute_path)), "detail": e.message}
                for e in problems[:20]
            ],
        )
    return dict(body)


def _instant(raw: str | None, name: str) -> datetime | None:
    if raw is None or raw == "":
        return None
    try:
        value = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise ApiError(
            422,
            "invalid_request",
            f"{name}: {raw[:40]!r} is not an ISO-8601 date-time",
            errors=[{"pointer": f"/{name}", "detail": "expected an ISO-8601 date-time"}],
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _limit(request: Request, default: int = DEFAULT_PAGE) -> int:
    raw = request.query_params.get("limit")
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_PAGE:
        raise ApiError(
            422,
            "invalid_request",
            f"limit must be an integer from 1 to {MAX_PAGE}",
            errors=[{"pointer": "/limit", "detail": f"1..{MAX_PAGE}"}],
        )
    return value


async def principal(request: Request) -> auth.Principal:
    """The caller, from its bearer key; 401 without a live one."""
    token = auth.bearer_token(request.headers.get("authorization"))
    found = None
    if token is not None:
        found = await _db(request, auth.authenticate, token)
    if found is None:
        raise ApiError(
            401,
            "unauthorized",
            "send a workspace API key: Authorization: Bearer hk_...",
            headers={"WWW-Authenticate": 'Bearer realm="haste"'},
        )
    structlog.contextvars.bind_contextvars(
        workspace_id=str(found.workspace.id), api_key_id=str(found.key_id)
    )
    return found


async def _db(request: Request, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run ``fn(conn, *args, **kwargs)`` on a pooled connection in the thread pool."""
    pool = request.app.state.pool

    def run() -> Any:
        with pool.connection(timeout=POOL_WAIT) as conn:
            return fn(conn, *args, **kwargs)

    return await blocking(run)


# --- automations ------------------------------------------------------------------------------


async def automations_list(request: Request) -> Response:
    who = await principal(request)
    rows = await _db(request, automations.list_automations, who.workspace)
    return JSON({"items": rows})


def _show(conn: Conn, workspace: Workspace, ref: str) -> dict[str, Any]:
    row = automations.show_automation(conn, workspace, ref)
    if row is None:
        raise _not_found(f"automation {ref!r}")
    return row


async def automation_show(request: Request) -> Response:
    who = await principal(request)
    ref = _clean(request.path_params["ref"], "automation")
    return JSON(await _db(request, _show, who.workspace, ref))


def _versions(conn: Conn, workspace: Workspace, ref: str) -> list[dict[str, Any]]:
    _show(conn, workspace, ref)
    return automations.list_versions(conn, workspace, ref)


async def automation_versions(request: Request) -> Response:
    who = await principal(request)
    ref = _clean(request.path_params["ref"], "automation")
    return JSON({"items": await _db(request, _versions, who.workspace, ref)})


def _set_enabled(conn: Conn, workspace: Workspace, ref: str, enabled: bool) -> dict[str, Any]:
    try:
        row = automations.set_enabled(conn, workspace, ref, enabled)
    except DeployError as exc:
        raise ApiError(
            409, "cycle", str(exc), errors=[{"pointer": "", "detail": p} for p in exc.problems]
        ) from None
    if row is None:
        raise _not_found(f"automation {ref!r}")
    return row


def _toggle(enabled: bool) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        who = await principal(request)
        ref = _clean(request.path_params["ref"], "automation")
        row = await _db(request, _set_enabled, who.workspace, ref, enabled)
        structlog.contextvars.bind_contextvars(automation_id=str(row["id"]))
        return JSON(row)

    return endpoint


async def automation_trigger(request: Request) -> Response:
    who = await principal(request)
    ref = _clean(request.path_params["ref"], "automation")
    body = _validate("TriggerRequest", await json_body(request))
    ids = [uuid.UUID(body["record_id"])] if "record_id" in body else []
    ids += [uuid.UUID(i) for i in body.get("record_ids") or []]
    try:
        done = await _db(
            request,
            trigger_manual,
            who.workspace,
            ref,
            ids,
            body.get("input") or {},
            max_records=request.app.state.settings.api_bulk_max,
        )
    except TriggerError as exc:
        raise ApiError(exc.status, exc.code, exc.detail, errors=exc.errors) from None
    structlog.contextvars.bind_contextvars(automation_id=str(done.automation_id))
    return JSON(
        {
            "automation_id": done.automation_id,
            "automation": done.automation,
            "entity_type": done.entity_type,
            "events": [{"record_id": r, "event_id": e} for r, e in done.events],
        },
        status_code=202,
    )


def _redrive(
    conn: Conn, workspace: Workspace, ref: str, body: Mapping[str, Any], cap: int
) -> dict[str, Any]:
    automation = _show(conn, workspace, ref)
    since = _instant(body["since"], "since")
    try:
        ids = executions.redrive_candidates(
            conn, automation=str(automation["id"]), status=body.get("status", "failed"), since=since
        )
    except executions.ExecutionError as exc:
        raise ApiError(422, "invalid_request", str(exc)) from None
    if body.get("dry_run"):
        return {"dry_run": True, "count": len(ids), "execution_ids": ids[:cap]}
    if len(ids) > cap:
        raise ApiError(
            422,
            "too_many_executions",
            f"{len(ids)} executions match; at most {cap} per request (HASTE_API_BULK_MAX):"
            " narrow `since`",
        )
    try:
        done = executions.redrive(conn, ids) if ids else []
    except executions.ExecutionError as exc:
        raise ApiError(409, "conflict", str(exc)) from None
    return {"dry_run": False, "count": len(done), "execution_ids": done}


async def automation_redrive(request: Request) -> Response:
    who = await principal(request)
    ref = _clean(request.path_params["ref"], "automation")
    body = _validate("RedriveRequest", await json_body(request))
    cap = request.app.state.settings.api_bulk_max
    return JSON(await _db(request, _redrive, who.workspace, ref, body, cap))


# --- executions --------------------------------------------------------------------------------


def encode_cursor(row: Mapping[str, Any]) -> str:
    raw = json.dumps([row["queued_at"].isoformat(), str(row["id"])]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(raw: str) -> tuple[datetime, uuid.UUID]:
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
        at, ident = json.loads(text)
        return datetime.fromisoformat(at), uuid.UUID(ident)
    except (ValueError, TypeError, UnicodeDecodeError):
        raise ApiError(
            422,
            "invalid_request",
            "cursor is not one this API gave out",
            errors=[{"pointer": "/cursor", "detail": "use next_cursor of the previous page"}],
        ) from None


def list_page(
    conn: Conn,
    workspace: Workspace,
    *,
    automation: str | None,
    status: str | None,
    since: datetime | None,
    before: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Up to ``limit`` executions older than ``before`` (keyset: queued_at, id), newest first."""
    return executions.list_executions(
        conn,
        workspace_id=workspace.id,
        automation=automation,
        status=status,
        since=since,
        before=before,
        limit=limit,
    )


async def executions_list(request: Request) -> Response:
    who = await principal(request)
    params = request.query_params
    status = params.get("status")
    if status is not None and status not in executions.STATUSES:
        raise ApiError(
            422,
            "invalid_request",
            f"status must be one of {', '.join(executions.STATUSES)}",
            errors=[{"pointer": "/status", "detail": "unknown status"}],
        )
    automation = params.get("automation")
    if automation is not None:
        automation = _clean(automation, "automation")
    limit = _limit(request)
    since = _instant(params.get("since"), "since")
    until = _instant(params.get("until"), "until")
    before = decode_cursor(params["cursor"]) if params.get("cursor") else None
    if until is not None and (before is None or until <= before[0]):
        before = (until, uuid.UUID(int=0))
    rows = await _db(
        request,
        list_page,
        who.workspace,
        automation=automation,
        status=status,
        since=since,
        before=before,
        limit=limit + 1,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return JSON({"items": rows, "next_cursor": encode_cursor(rows[-1]) if more else None})


def _get(conn: Conn, workspace: Workspace, execution_id: uuid.UUID) -> dict[str, Any]:
    try:
        return executions.get_execution(conn, execution_id, workspace_id=workspace.id)
    except executions.ExecutionError:
        raise _not_found(f"execution {execution_id}") from None


async def execution_get(request: Request) -> Response:
    who = await principal(request)
    execution_id = _uuid(request.path_params["id"], "execution")
    structlog.contextvars.bind_contextvars(execution_id=str(execution_id))
    return JSON(await _db(request, _get, who.workspace, execution_id))


def _rerun(
    conn: Conn, workspace: Workspace, execution_id: uuid.UUID, from_step: str | None
) -> dict[str, Any]:
    _get(conn, workspace, execution_id)
    try:
        executions.rerun(conn, execution_id, from_step=from_step)
    except executions.ExecutionError as exc:
        code = 422 if str(exc).startswith("no step") else 409
        raise ApiError(code, "conflict" if code == 409 else "invalid_request", str(exc)) from None
    return {"id": execution_id, "status": "queued"}


async def execution_rerun(request: Request) -> Response:
    who = await principal(request)
    execution_id = _uuid(request.path_params["id"], "execution")
    structlog.contextvars.bind_contextvars(execution_id=str(execution_id))
    body = _validate("RerunRequest", await json_body(request))
    row = await _db(request, _rerun, who.workspace, execution_id, body.get("from_step"))
    return JSON(row, status_code=202)


def _cancel(conn: Conn, workspace: Workspace, execution_id: uuid.UUID) -> dict[str, Any]:
    current = _get(conn, workspace, execution_id)
    if not executions.cancel(conn, [execution_id]):
        raise ApiError(
            409, "conflict", f"execution {execution_id} is {current['status']}; not cancellable"
        )
    return {"id": execution_id, "status": "cancelled"}


async def execution_cancel(request: Request) -> Response:
    who = await principal(request)
    execution_id = _uuid(request.path_params["id"], "execution")
    structlog.contextvars.bind_contextvars(execution_id=str(execution_id))
    return JSON(await _db(request, _cancel, who.workspace, execution_id))


# --- the decision log -------------------------------------------------------------------------


def _described(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**row, "description": decisions.describe(row)} for row in rows]


async def decisions_of_record(request: Request) -> Response:
    who = await principal(request)
    ref = request.query_params.get("record") or ""
    try:
        entity, entity_id = parse_record_ref(_clean(ref, "record"))
    except DryRunError as exc:
        raise ApiError(
            422,
            "invalid_request",
            str(exc).replace("--record", "record"),
            errors=[{"pointer": "/record", "detail": "expected <kind>/<uuid>"}],
        ) from None
    limit = _limit(request, default=100)
    rows = await _db(request, decisions.for_record, who.workspace, entity, entity_id, limit=limit)
    return JSON({"items": _described(rows)})


def _event_decisions(conn: Conn, workspace: Workspace, event_id: int) -> list[dict[str, Any]]:
    with tenant_transaction(conn, workspace.id) as cur:
        seen = cur.execute(query("event_visible"), {"id": event_id}).fetchone()
    if seen is None:
        raise _not_found(f"event {event_id}")
    return decisions.for_event(conn, workspace, event_id)


async def decisions_of_event(request: Request) -> Response:
    who = await principal(request)
    raw = request.path_params["id"]
    if not raw.isdigit() or int(raw) > 2**63 - 1:
        raise _not_found("event")
    rows = await _db(request, _event_decisions, who.workspace, int(raw))
    return JSON({"items": _described(rows)})


ROUTES = [
    Route("/api/v1/automations", automations_list, methods=["GET"]),
    Route("/api/v1/automations/{ref}", automation_show, methods=["GET"]),
    Route("/api/v1/automations/{ref}/versions", automation_versions, methods=["GET"]),
    Route("/api/v1/automations/{ref}/enable", _toggle(True), methods=["POST"]),
    Route("/api/v1/automations/{ref}/disable", _toggle(False), methods=["POST"]),
    Route("/api/v1/automations/{ref}/trigger", automation_trigger, methods=["POST"]),
    Route("/api/v1/automations/{ref}/redrive", automation_redrive, methods=["POST"]),
    Route("/api/v1/executions", executions_list, methods=["GET"]),
    Route("/api/v1/executions/{id}", execution_get, methods=["GET"]),
    Route("/api/v1/executions/{id}/rerun", execution_rerun, methods=["POST"]),
    Route("/api/v1/executions/{id}/cancel", execution_cancel, methods=["POST"]),
    Route("/api/v1/decisions", decisions_of_record, methods=["GET"]),
    Route("/api/v1/events/{id}/decisions", decisions_of_event, methods=["GET"]),
]
