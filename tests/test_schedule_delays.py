"""A delayed step resumes exactly once, even with two scheduler replicas waking delays at
the same moment: the real executor parks the execution in ``waiting``; two replicas (own
connections, threads started together) wake what is due; each execution is sent once and
its next step runs once."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from engine.db import make_pool
from tests.fakes.crm import make_contact, make_workspace, rows
from tests.fakes.executions import deploy_doc, execution, queue_executions
from tests.fakes.scheduling import FakeClock
from triggers import schedule
from workers import broker as broker_module
from workers.executor import Executor
from workers.heartbeat import Heartbeat

START = datetime(2025, 1, 6, 8, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def executor(db_url: str, redis_url: str, clock: FakeClock) -> Iterator[Executor]:
    broker_module.configure(redis_url)
    pool = make_pool(db_url, max_size=4, name="test-delays")
    ex = Executor(pool=pool, heartbeat=Heartbeat(db_url, 5.0), clock=clock.now)
    try:
        yield ex
    finally:
        ex.heartbeat.stop()
        pool.close()


def test_a_delayed_step_resumes_once_even_with_two_replicas(db, db_url, executor, clock) -> None:
    ws = make_workspace(db)
    doc = {
        "name": f"delayed-{uuid.uuid4().hex[:6]}",
        "trigger_type": "manual",
        "trigger_config": {"entity_type": "contact"},
        "actions": [
            {"id": "pause", "type": "delay", "params": {"duration": {"hours": 2}}},
            {"id": "after", "type": "add_note", "params": {"content": "two hours later"}},
        ],
    }
    contacts = [make_contact(db, ws) for _ in range(40)]
    runs = queue_executions(db, ws, deploy_doc(db, ws, doc), contacts)
    assert {executor.run(str(r)) for r in runs} == {"waiting"}
    assert schedule.wake_due_delays(db, clock.now(), enqueue=lambda ids: None) == []

    clock.advance(timedelta(hours=2, seconds=1))
    sent: Counter[str] = Counter()
    lock = threading.Lock()
    go = threading.Barrier(2)
    woken: dict[str, list[Any]] = {}

    def replica(name: str) -> None:
        def enqueue(ids: Any) -> None:
            with lock:
                sent.update(str(i) for i in ids)

        with psycopg.connect(db_url, autocommit=True) as conn:
            go.wait()
            woken[name] = schedule.wake_due_delays(conn, clock.now(), batch=7, enqueue=enqueue)

    threads = [threading.Thread(target=replica, args=(n,)) for n in ("A", "B")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)

    assert not set(woken["A"]) & set(woken["B"])
    assert sorted(map(str, woken["A"] + woken["B"])) == sorted(map(str, runs))
    assert set(sent.values()) == {1}

    # Each message runs its execution; a duplicate message would find nothing to claim.
    outcomes = Counter(executor.run(i) for i in sent)
    assert outcomes == {"completed": len(runs)}
    assert executor.run(str(runs[0])) == "not_claimed"
    assert all(execution(db, r)["status"] == "completed" for r in runs)
    notes = rows(db, "SELECT count(*) AS n FROM notes WHERE workspace_id = %s", ws.id)
    assert notes[0]["n"] == len(runs)
