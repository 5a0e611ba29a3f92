"""``haste status``: one screen of what an operator asks first.

Processes (from ``haste up``'s state file, each pid checked), who is connected to the
database (by application name: processes on other hosts show up here too), the scheduler
leader, the listener (idle flag, outbox backlog and lag), live executions, Dramatiq queue
depths, automations failing in the last day, and the next scheduled fires. Everything is
read, nothing is changed; each section that cannot be read says why instead of failing
the whole view.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import redis
from psycopg.rows import dict_row

from engine.config import Settings
from engine.queries import query
from engine.supervisor import read_state

#: Rows shown in the lists (failing automations, next schedules).
LIST_ROWS = 8


def _section(read: Callable[[], Any]) -> Any:
    try:
        return read()
    except (psycopg.Error, redis.RedisError, OSError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}".strip()[:200]}


def gather(database_url: str, redis_url: str | None, settings: Settings) -> dict[str, Any]:
    """Every section as plain data (``haste status --json`` prints it as is)."""
    from triggers.capture_mode import capture_status
    from triggers.scheduler import LOCK_KEY
    from workers.broker import QUEUES

    out: dict[str, Any] = {"processes": read_state(settings.data_dir / "processes.json")}

    def database() -> dict[str, Any]:
        with psycopg.connect(database_url, autocommit=True, connect_timeout=3) as conn:
            cur = conn.cursor(row_factory=dict_row)
            cur.execute("SET statement_timeout = 5000")
            live = list(cur.execute(query("metrics_executions_live")))
            outbox = cur.execute(query("metrics_outbox")).fetchone() or {}
            idle = cur.execute(query("status_listener_idle")).fetchone()
            capture = capture_status(conn)
            return {
                "connections": list(cur.execute(query("status_connections"))),
                "scheduler_leader": cur.execute(
                    query("schedule_leader"), {"key": LOCK_KEY}
                ).fetchone(),
                "listener": {
                    "idle": idle["idle"] if idle else None,
                    "backlog": outbox.get("backlog"),
                    "lag_seconds": float(outbox.get("oldest_s") or 0),
                    "captured_total": outbox.get("captured"),
                    "capture": {
                        k: capture[k]
                        for k in ("mode", "slot_name", "slot_retained_bytes", "last_error")
                    },
                },
                "executions": {
                    r["status"]: {"count": r["n"], "oldest_seconds": float(r["oldest_s"] or 0)}
                    for r in live
                },
                "failing_automations": list(
                    cur.execute(query("status_failing_automations"), {"limit": LIST_ROWS})
                ),
                "next_schedules": list(
                    cur.execute(query("status_next_schedules"), {"limit": LIST_ROWS})
                ),
            }

    def queues() -> dict[str, Any]:
        if not redis_url:
            return {"error": "no Redis URL"}
        client = redis.Redis.from_url(redis_url, socket_timeout=3, socket_connect_timeout=3)
        try:
            pipe = client.pipeline(transaction=False)
            for queue in QUEUES:
                pipe.llen(f"dramatiq:{queue}")
                pipe.hlen(f"dramatiq:{queue}.DQ.msgs")
                pipe.hlen(f"dramatiq:{queue}.XQ.msgs")
            counts = pipe.execute()
        finally:
            client.close()
        return {
            queue: {"ready": counts[3 * i], "delayed": counts[3 * i + 1], "dead": counts[3 * i + 2]}
            for i, queue in enumerate(QUEUES)
        }

    found = _section(database)
    if "error" in found:
        out["database"] = found
    else:
        out.update(found)
    out["queues"] = _section(queues)
    return out
