"""The Starlette application of ``haste web``: routes, shared state, errors, request logs.

Shared state (``app.state``), built in the lifespan so that a test or ``uvicorn`` owns it
for exactly the life of the server: a psycopg connection pool (``HASTE_DB_POOL_SIZE``
connections: handlers run blocking engine functions in Starlette's thread pool, one pooled
connection each), a Redis client for readiness and queue depths, the Dramatiq broker for
the messages that reruns and redrives send, the webhook intake, the scrape-time gauges,
and a thread that prunes webhook receipts older than ``HASTE_WEBHOOK_RECEIPT_DAYS``
(hourly, in small batches; several replicas pruning the same rows is harmless).

Every request gets a request id (``X-Request-ID``, or a fresh one) bound in structlog's
context vars with the workspace, automation and execution ids handlers learn on the way,
and ends in one structured log line and the ``haste_http_*`` metrics, labelled by route
template (``/hooks/{token}``: a token never reaches a log or a label).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import redis
import structlog
from psycopg_pool import PoolTimeout
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engine import metrics
from engine.config import Settings
from engine.db import make_pool
from engine.logs import get_logger
from engine.queries import query
from engine.web import api, health, webhooks
from engine.web.gauges import ScrapeGauges
from engine.web.openapi import DOCUMENT
from engine.web.responses import JSON, ApiError, problem_response

log = get_logger("haste.web")
_stdlib_log = logging.getLogger("haste.web")

#: Seconds between prunes of old webhook receipts, and rows deleted per statement.
PRUNE_INTERVAL = 3600.0
PRUNE_BATCH = 5000
#: Methods kept as a metric label; anything else is counted as "other".
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
#: Routes whose successful requests are logged at debug level (probes and scrapes).
QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})


class RequestContext:
    """Pure ASGI middleware (no extra task, so handlers' bound context vars reach the log
    line): request id, one log line and the HTTP metrics per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "GET")
            method = method if method in METHODS else "other"
            metrics.HTTP_REQUESTS.labels(template, method, str(status)).inc()
            metrics.HTTP_DURATION.labels(template).observe(elapsed)
            level = logging.DEBUG if template in QUIET_ROUTES and status < 400 else logging.INFO
            # Checked first: structlog runs its processors before the stdlib level filter.
            if _stdlib_log.isEnabledFor(level):
                log.log(
                    level,
                    "request",
                    method=method,
                    route=template,
                    status=status,
                    duration_ms=round(elapsed * 1000, 2),
                )
            structlog.contextvars.clear_contextvars()


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            if 0 < len(text) <= 100 and text.isprintable():
                return text
    return uuid.uuid4().hex


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return problem_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return problem_response(
        ApiError(exc.status_code, code, str(exc.detail), headers=exc.headers or {})
    )


async def _unavailable(request: Request, exc: Exception) -> Response:
    log.warning("database unavailable", error=f"{type(exc).__name__}: {exc}")
    return problem_response(
        ApiError(503, "unavailable", "the database is unavailable", headers={"Retry-After": "5"})
    )


async def _crash(request: Request, exc: Exception) -> Response:
    log.error("unhandled error", exc_info=exc)
    return problem_response(ApiError(500, "internal", "internal error; see the server log"))


async def openapi(request: Request) -> Response:
    return JSON(DOCUMENT)


def _prune_receipts(state: Any, stop: threading.Event) -> None:
    while not stop.wait(PRUNE_INTERVAL):
        try:
            with state.pool.connection(timeout=5) as conn:
                while not stop.is_set():
                    deleted = conn.execute(
                        query("webhook_receipt_prune_batch"),
                        {"days": state.settings.webhook_receipt_days, "limit": PRUNE_BATCH},
                    ).rowcount
                    if deleted < PRUNE_BATCH:
                        break
        except (psycopg.Error, PoolTimeout) as exc:
            log.warning("receipt prune failed", error=str(exc))


def create_app(settings: Settings, *, database_url: str, redis_url: str | None) -> Starlette:
    """The application; its resources open on lifespan start and close on shutdown."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        from triggers.scheduler import LOCK_KEY
        from workers.broker import QUEUES, configure

        state = app.state
        state.settings = settings
        state.pool = make_pool(database_url, max_size=settings.db_pool_size, name="haste-web")
        state.redis = (
            redis.Redis.from_url(
                redis_url,
                socket_timeout=health.CHECK_TIMEOUT,
                socket_connect_timeout=health.CHECK_TIMEOUT,
            )
            if redis_url
            else None
        )
        if redis_url:
            configure(redis_url)
        state.migrations_current = False
        state.scheduler_lock_key = LOCK_KEY
        state.intake = webhooks.WebhookIntake(state.pool, max_bytes=settings.webhook_max_bytes)
        state.gauges = ScrapeGauges(state.pool, state.redis, QUEUES, scheduler_lock_key=LOCK_KEY)
        stop = threading.Event()
        pruner = threading.Thread(
            target=_prune_receipts, args=(state, stop), name="haste-receipt-prune", daemon=True
        )
        pruner.start()
        log.info("web started", pool_size=settings.db_pool_size)
        try:
            yield
        finally:
            stop.set()
            pruner.join(timeout=5)
            state.pool.close()
            if state.redis is not None:
                state.redis.close()
            log.info("web stopped")

    routes = [
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/hooks/{token}", webhooks.receive, methods=["POST"]),
        *health.ROUTES,
        *api.ROUTES,
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            ApiError: _api_error,
            HTTPException: _http_error,
            PoolTimeout: _unavailable,
            psycopg.OperationalError: _unavailable,
            Exception: _crash,
        },
    )
    app.add_middleware(RequestContext)
    return app
