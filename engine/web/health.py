"""Operations endpoints: ``/healthz`` (alive), ``/readyz`` (can serve), ``/metrics``.

``/healthz`` checks nothing but the event loop: a liveness probe that restarts the process
must not fire because PostgreSQL is down (a restart would not help, and every replica
would restart at once). ``/readyz`` is the one that takes the process out of a load
balancer: the database answers, Redis answers (manual triggers, reruns and redrives send
messages, /metrics reads queue depths), and every migration on disk is applied unchanged
(a web process newer than its schema must not take traffic). Whether a scheduler holds the
leader lock is reported too, for the operator, without deciding readiness: the web
process can serve without a scheduler.

Checks are bounded by :data:`CHECK_TIMEOUT` so a probe never hangs. "Migrations current"
is cached once true: files on disk only change with a new release, i.e. a new process.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg
import redis
from psycopg.rows import dict_row
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from engine import metrics
from engine.migrations import is_current
from engine.queries import query
from engine.web.responses import JSON
from engine.web.threads import blocking

#: Seconds each readiness check may take.
CHECK_TIMEOUT = 2.0


async def healthz(request: Request) -> Response:
    return JSON({"status": "alive"})


def _check_postgres(state: Any) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        with state.pool.connection(timeout=CHECK_TIMEOUT) as conn:
            conn.execute(query("ready_probe"))
            if not state.migrations_current:
                state.migrations_current = is_current(conn)
            leader = None
            if state.scheduler_lock_key is not None:
                with conn.cursor(row_factory=dict_row) as cur:
                    leader = cur.execute(
                        query("schedule_leader"), {"key": state.scheduler_lock_key}
                    ).fetchone()
    except (psycopg.Error, TimeoutError, OSError) as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    result: dict[str, Any] = {"ok": True, "ms": round((time.perf_counter() - started) * 1000, 1)}
    result["migrations_current"] = state.migrations_current
    if leader is not None:
        result["scheduler_leader"] = {
            "name": leader["application_name"],
            "pid": leader["pid"],
            "since": leader["backend_start"],
        }
    elif state.scheduler_lock_key is not None:
        result["scheduler_leader"] = None
    return result


def _check_redis(state: Any) -> dict[str, Any]:
    if state.redis is None:
        return {"ok": False, "error": "no Redis URL configured"}
    started = time.perf_counter()
    try:
        state.redis.ping()
    except (redis.RedisError, OSError) as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    return {"ok": True, "ms": round((time.perf_counter() - started) * 1000, 1)}


def readiness(state: Any) -> tuple[bool, dict[str, Any]]:
    postgres = _check_postgres(state)
    leader = postgres.pop("scheduler_leader", "unknown")
    migrations_ok = bool(postgres.pop("migrations_current", False))
    checks = {
        "postgres": postgres,
        "migrations": {"ok": migrations_ok}
        if postgres["ok"]
        else {"ok": False, "error": "database unavailable"},
        "redis": _check_redis(state),
    }
    if postgres["ok"] and not migrations_ok:
        checks["migrations"]["error"] = "pending or changed migrations: run haste db migrate"
    ready = all(check["ok"] for check in checks.values())
    body: dict[str, Any] = {"status": "ready" if ready else "not_ready", "checks": checks}
    if leader != "unknown":
        body["scheduler"] = {"leader": leader}
    return ready, body


async def readyz(request: Request) -> Response:
    ready, body = await blocking(readiness, request.app.state)
    return JSON(body, status_code=200 if ready else 503)


async def metrics_endpoint(request: Request) -> Response:
    payload, content_type = await blocking(metrics.exposition, request.app.state.gauges)
    return Response(payload, media_type=content_type)


ROUTES = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics_endpoint, methods=["GET"]),
]
