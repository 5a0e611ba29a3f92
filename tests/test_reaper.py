"""The reaper: overdue queued executions get another message, lost running ones go back to
queued, and too many recoveries fail them with a reason (no worker process needed)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
import redis

from engine import executions
from tests.fakes.crm import make_contact, make_workspace
from tests.fakes.executions import counters, deploy_doc, execution, queue_executions
from workers import broker as broker_module
from workers.reaper import reap

DOC = {
    "name": "reaped",
    "trigger_type": "manual",
    "trigger_config": {"entity_type": "contact"},
    "actions": [{"id": "n", "type": "add_note", "params": {"content": "x"}}],
}


@pytest.fixture
def setup(db: psycopg.Connection[Any], redis_url: str) -> Any:
    broker_module.configure(redis_url)
    ws = make_workspace(db)
    automation = deploy_doc(db, ws, DOC)
    return ws, automation, redis.Redis.from_url(redis_url)


def messages(client: redis.Redis) -> int:
    return int(client.hlen("dramatiq:automations.msgs"))


def test_overdue_queued_executions_get_another_message(db, setup) -> None:
    ws, automation, client = setup
    stale, fresh, later = queue_executions(
        db, ws, automation, [make_contact(db, ws) for _ in range(3)]
    )
    db.execute(
        "UPDATE automation_executions SET queued_at = now() - interval '1 minute' WHERE id = %s",
        (stale,),
    )
    db.execute(
        "UPDATE automation_executions SET queued_at = now() - interval '1 minute',"
        " resume_at = now() + interval '1 minute' WHERE id = %s",
        (later,),
    )

    result = reap(db, grace=30)

    assert result.resent == [stale] and not result.recovered and not result.failed
    assert messages(client) == 1
    assert execution(db, stale)["enqueued_at"] is not None
    assert reap(db, grace=30).resent == []  # just sent: not overdue again
    assert execution(db, fresh)["enqueued_at"] is None


def test_lost_running_executions_are_recovered_then_failed(db, setup) -> None:
    ws, automation, client = setup
    lost, alive = queue_executions(db, ws, automation, [make_contact(db, ws) for _ in range(2)])
    executions.claim(db, [lost, alive], "worker-a")
    db.execute(
        "UPDATE automation_executions SET heartbeat_at = now() - interval '1 minute' WHERE id = %s",
        (lost,),
    )

    first = reap(db, heartbeat_timeout=30, max_recoveries=1)

    assert first.recovered == [lost] and first.failed == []
    row = execution(db, lost)
    assert (row["status"], row["recoveries"], row["claimed_by"]) == ("queued", 1, None)
    assert messages(client) == 1
    assert execution(db, alive)["status"] == "running"

    executions.claim(db, [lost], "worker-b")
    db.execute(
        "UPDATE automation_executions SET heartbeat_at = now() - interval '1 minute' WHERE id = %s",
        (lost,),
    )
    second = reap(db, heartbeat_timeout=30, max_recoveries=1)

    assert second.failed == [lost] and second.recovered == []
    row = execution(db, lost)
    assert row["status"] == "failed"
    assert "worker lost: no heartbeat from worker-b" in row["error_message"]
    assert row["error_details"]["class"] == "worker_lost"
    assert counters(db, automation[0]) == (1, 0, 1)


def test_a_heartbeat_keeps_an_execution_and_reports_lost_ones(db, setup) -> None:
    ws, automation, _ = setup
    mine, taken = queue_executions(db, ws, automation, [make_contact(db, ws) for _ in range(2)])
    claims = {c.id: c.attempt for c in executions.claim(db, [mine, taken], "me")}
    executions.cancel(db, [taken])

    assert executions.heartbeat(db, claims) == {mine}
