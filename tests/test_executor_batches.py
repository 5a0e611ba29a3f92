"""Executions sent and run in batches (real PostgreSQL and Redis, no worker process): how a
send is cut into messages, one claim statement per batch, ends written together (counted
per automation, fenced), ids of a batch that cannot be claimed, a batch that stops early,
and the plans of the statements that name executions by id."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
import redis

from engine import executions
from engine.queries import query
from tests.fakes.crm import make_contact, make_workspace
from tests.fakes.executions import counters, deploy_doc, execution, queue_executions
from workers import broker as broker_module

NOTE = {
    "name": "batched",
    "trigger_type": "manual",
    "trigger_config": {"entity_type": "contact"},
    "actions": [{"id": "note", "type": "add_note", "params": {"content": "hello"}}],
}


@pytest.fixture
def ws(db: psycopg.Connection[Any]) -> Any:
    return make_workspace(db)


def queued(db: psycopg.Connection[Any], ws: Any, n: int) -> tuple[tuple[Any, int], list[Any]]:
    automation = deploy_doc(db, ws, NOTE)
    runs = queue_executions(db, ws, automation, [make_contact(db, ws) for _ in range(n)])
    return automation, runs


def sent_messages(redis_url: str) -> list[Any]:
    """The ``args`` of every message waiting on the automations queue."""
    client = redis.Redis.from_url(redis_url)
    try:
        raw = client.hvals(f"dramatiq:{broker_module.EXECUTION_QUEUE}.msgs")
    finally:
        client.close()
    return [json.loads(m)["args"][0] for m in raw]


def test_a_send_of_at_most_sixteen_ids_is_one_message_per_id() -> None:
    ids = [str(uuid.uuid4()) for _ in range(16)]

    assert broker_module.batches(ids) == [[i] for i in ids]


def test_a_large_send_is_cut_into_messages_of_batch_max_ids() -> None:
    ids = [str(uuid.uuid4()) for _ in range(1000)]

    cut = broker_module.batches(ids)

    assert [i for batch in cut for i in batch] == ids
    assert {len(batch) for batch in cut} == {broker_module.BATCH_MAX}


def test_enqueue_sends_a_batch_as_one_message_carrying_a_list(redis_url: str) -> None:
    broker_module.configure(redis_url)
    ids = [str(uuid.uuid4()) for _ in range(40)]

    assert broker_module.enqueue_executions(ids) == 40

    messages = sent_messages(redis_url)
    assert len(messages) == 20  # 40 ids, 16 threads to feed first: 2 per message
    assert sorted(i for m in messages for i in m) == sorted(ids)


def test_a_batch_is_claimed_in_one_statement_and_each_execution_run(db, ws, executor) -> None:
    automation, runs = queued(db, ws, 3)

    assert executor.run_many([str(r) for r in runs]) == ["completed"] * 3

    assert [execution(db, r)["attempt"] for r in runs] == [1, 1, 1]
    assert counters(db, automation[0]) == (3, 3, 0)
    assert db.execute("SELECT count(*) FROM notes").fetchone()[0] == 3


def test_ids_of_a_batch_that_cannot_be_claimed_leave_the_others_to_run(db, ws, executor) -> None:
    automation, [done, fresh] = queued(db, ws, 2)
    executor.run(str(done))

    results = executor.run_many([str(done), "not-a-uuid", str(fresh), str(fresh)])

    assert results == ["not_claimed", "not_claimed", "completed", "not_claimed"]
    assert counters(db, automation[0]) == (2, 2, 0)
    assert db.execute("SELECT count(*) FROM notes").fetchone()[0] == 2


def test_the_ends_of_a_batch_over_two_automations_count_on_each(db, ws, executor) -> None:
    notes, [a, b] = queued(db, ws, 2)
    failing = deploy_doc(
        db,
        ws,
        {
            **NOTE,
            "name": "fails",
            "actions": [{"id": "n", "type": "add_note", "params": {"content": " "}}],
        },
    )
    [c] = queue_executions(db, ws, failing, [make_contact(db, ws)])

    assert executor.run_many([str(a), str(c), str(b)]) == ["completed", "failed", "completed"]

    assert counters(db, notes[0]) == (2, 2, 0)
    assert counters(db, failing[0]) == (1, 0, 1)
    row = execution(db, c)
    assert row["status"] == "failed" and row["error_details"]["step_id"] == "n"
    assert row["completed_at"] is not None and row["duration_ms"] >= 0


def test_a_batch_run_cancelled_before_its_end_is_written_is_not_counted(db, ws) -> None:
    automation, [run, other] = queued(db, ws, 2)
    claims = {c.id: c for c in executions.claim(db, [run, other], "w")}
    executions.cancel(db, [run])

    ends = [
        executions.Ending(claims[r], "completed", datetime.now(UTC), actions_executed=[])
        for r in (run, other)
    ]
    done = executions.finish_many(db, ends)

    assert done == {other: "completed"}
    assert execution(db, run)["status"] == "cancelled"
    assert counters(db, automation[0]) == (1, 1, 0)


def test_a_batch_that_stops_early_hands_back_the_claims_it_did_not_start(
    db, ws, executor, monkeypatch
) -> None:
    _, [first, *rest] = queued(db, ws, 3)

    def broken(*args: Any) -> str:
        raise RuntimeError("a bug in the first run")

    monkeypatch.setattr(executor, "_run_claimed", broken)
    with pytest.raises(RuntimeError):
        executor.run_many([str(r) for r in (first, *rest)])

    for run in rest:
        row = execution(db, run)
        assert (row["status"], row["claimed_by"], row["resume_at"] is not None) == (
            "queued",
            None,
            True,
        )
    assert execution(db, first)["status"] == "running"  # the reaper's, as after a crash


@pytest.mark.parametrize(
    "name",
    [
        "execution_claim",
        "execution_claim_many",
        "execution_heartbeat_many",
        "step_record",
        "execution_requeue_with_backoff",
        "execution_wait",
        "execution_finish",
        "execution_finish_many",
        "execution_wake_many",
    ],
)
def test_statements_that_name_executions_by_id_find_them_by_primary_key(db, ws, name) -> None:
    """Even with statistics that say no row is queued, running or waiting (every row was
    finished when ANALYZE ran), a generic plan must not scan an index on status: at run
    time that index holds every live execution."""
    queued(db, ws, 50)
    db.execute("UPDATE automation_executions SET status = 'completed'")
    db.execute("ANALYZE automation_executions")
    db.execute("SET enable_seqscan = off")  # a small table; the question is which index
    names: list[str] = []

    def placeholder(match: re.Match[str]) -> str:
        if match[1] not in names:
            names.append(match[1])
        return f"${names.index(match[1]) + 1}"

    sql = re.sub(r"%\((\w+)\)s", placeholder, query(name)).replace("%%", "%")
    plan = "\n".join(r[0] for r in db.execute(f"EXPLAIN (GENERIC_PLAN) {sql}").fetchall())

    scans = r"(?:Index Scan using|Index Only Scan using|Bitmap Index Scan on) (\S+)"
    indexes = set(re.findall(scans, plan)) - {"automations_pkey"}  # a finish's counters
    assert indexes == {"automation_executions_pkey"}, plan
