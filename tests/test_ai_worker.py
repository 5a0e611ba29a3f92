"""The ``ai`` queue for real: Dramatiq workers (in-process, on the test's Redis) run
``process_ai_task`` and ``embed_pending``; an automation's ``ai_task`` step goes through
the executor, the AI worker, the wake-up and on to its next step. Plus the sweep and the
operator commands."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dramatiq
import psycopg
import pytest
from click.testing import CliRunner

from engine.db import make_pool, system_transaction
from tests.ai_support import runtime, seed_records, task_row
from tests.fakes.crm import make_contact, make_workspace, row
from tests.fakes.executions import deploy_doc, execution, queue_executions, steps
from tests.fakes.openai_server import FakeLLM, openai_server
from workers import broker as broker_module
from workers.ai_tasks import create_task
from workers.embeddings import kick, schedule_embeddings

Conn = psycopg.Connection[Any]


@pytest.fixture
def openai_fake() -> Any:
    with openai_server() as fake:
        yield fake


@pytest.fixture
def ai_worker(db_url: str, redis_url: str, openai_fake: FakeLLM) -> Iterator[Any]:
    """The AI actors on a fresh broker, with a runtime pointed at the fake OpenAI."""
    broker = broker_module.configure(redis_url)
    from workers import ai

    ai.bind(broker)
    pool = make_pool(db_url, max_size=4, name="test-ai")
    rt = runtime(openai_fake, real_sleep=True)
    rt.wake = None  # the real engine.executions.wake
    ai.use(rt, pool)
    try:
        yield broker
    finally:
        pool.close()
        ai.use(None, None)
        ai._runtime = ai._pool = None


@contextmanager
def consuming(broker: Any, *queues: str) -> Iterator[dramatiq.Worker]:
    worker = dramatiq.Worker(broker, queues=set(queues), worker_threads=2, worker_timeout=100)
    worker.start()
    try:
        yield worker
    finally:
        worker.stop(timeout=5000)


def settle(broker: Any, worker: dramatiq.Worker, *queues: str) -> None:
    """Wait until the queues (and their delay queues) are empty and the worker idle."""
    for queue in queues:
        broker.join(queue, timeout=20_000)
    worker.join()


def test_process_ai_task_runs_in_a_dramatiq_worker_and_wakes_its_execution(
    db: Conn, ai_worker: Any, openai_fake: FakeLLM
) -> None:
    from workers.ai import send_task

    ws = make_workspace(db)
    records = seed_records(db, ws)
    automation, version = deploy_doc(
        db,
        ws,
        {
            "name": "classify",
            "trigger_type": "manual",
            "trigger_config": {"entity_type": "contact"},
            "actions": [
                {"id": "noop", "type": "add_tag", "params": {"tag": "x", "create_if_missing": True}}
            ],
        },
    )
    (execution_id,) = queue_executions(db, ws, (automation, version), [records.contact])
    db.execute("UPDATE automation_executions SET status = 'waiting' WHERE id = %s", (execution_id,))
    task_id = create_task(db, ws.id, "classification", {"text": "Urgent: outage"})
    db.execute(
        "UPDATE ai_tasks SET input = input || jsonb_build_object('execution_id', %s::text)"
        " WHERE id = %s",
        (str(execution_id), task_id),
    )

    with consuming(ai_worker, "ai") as worker:
        send_task(task_id)
        settle(ai_worker, worker, "ai")

    task = task_row(db, task_id)
    assert task["status"] == "completed", task["error_message"]
    assert task["output"]["priority"] == "urgent"
    assert execution(db, execution_id)["status"] == "queued"  # woken


def test_an_ai_task_step_flows_from_the_executor_through_the_ai_worker_and_on(
    db: Conn, db_url: str, ai_worker: Any, openai_fake: FakeLLM
) -> None:
    from workers.executor import Executor
    from workers.heartbeat import Heartbeat

    ws = make_workspace(db)
    contact = make_contact(db, ws, first_name="Dana", title="CTO", company="Globex")
    automation = deploy_doc(
        db,
        ws,
        {
            "name": "score then tag",
            "trigger_type": "manual",
            "trigger_config": {"entity_type": "contact"},
            "actions": [
                {
                    "id": "score",
                    "type": "ai_task",
                    "params": {"task_type": "lead_scoring", "input": {"notes": "asked for a demo"}},
                },
                {
                    "id": "tag",
                    "type": "add_tag",
                    "params": {
                        "tag": "grade-{{ steps.score.output.grade }}",
                        "create_if_missing": True,
                    },
                },
            ],
        },
    )
    (execution_id,) = queue_executions(db, ws, automation, [contact])
    pool = make_pool(db_url, max_size=4, name="test-executor")
    executor = Executor(pool=pool, heartbeat=Heartbeat(db_url, 5.0))
    try:
        with consuming(ai_worker, "ai") as worker:
            executor.run(str(execution_id))  # creates the task, sends process_ai_task, waits
            assert execution(db, execution_id)["status"] == "waiting"
            settle(ai_worker, worker, "ai")
        assert execution(db, execution_id)["status"] == "queued"  # the AI worker woke it
        executor.run(str(execution_id))
    finally:
        executor.heartbeat.stop()
        pool.close()

    done = execution(db, execution_id)
    assert done["status"] == "completed", done["error_message"]
    score = steps(db, execution_id)["score"]
    task = db.execute("SELECT output, status FROM ai_tasks").fetchone()
    assert task[1] == "completed" and score["output"] == task[0]
    assert row(db, "contacts", contact)["score"] == task[0]["score"]
    tag = db.execute("SELECT name FROM tags WHERE workspace_id = %s", (ws.id,)).fetchone()[0]
    assert tag == f"grade-{task[0]['grade']}"


def test_kick_runs_embed_pending_in_the_worker(
    db: Conn, ai_worker: Any, openai_fake: FakeLLM
) -> None:
    ws = make_workspace(db)
    contacts = [make_contact(db, ws, first_name=f"P{i}") for i in range(3)]
    with system_transaction(db) as cur:
        schedule_embeddings(cur, "contact", contacts)

    with consuming(ai_worker, "ai") as worker:
        assert kick() is True
        assert kick() is False  # debounced: one message per window
        settle(ai_worker, worker, "ai")

    assert all(row(db, "contacts", c)["embedding"] is not None for c in contacts)
    assert len(openai_fake.calls("/embeddings")) == 1


def test_the_sweep_resends_forgotten_tasks_and_wakes_lost_executions(
    db: Conn, ai_worker: Any, openai_fake: FakeLLM
) -> None:
    from workers.ai import sweep_once

    ws = make_workspace(db)
    task_id = create_task(db, ws.id, "summarization", {"text": "Nobody sent my message."})
    db.execute(
        "UPDATE ai_tasks SET updated_at = now() - interval '5 minutes' WHERE id = %s", (task_id,)
    )
    orphan = create_task(db, ws.id, "summarization", {"text": "My worker died."})
    db.execute(
        "UPDATE ai_tasks SET status = 'processing', updated_at = now() - interval '1 hour'"
        " WHERE id = %s",
        (orphan,),
    )

    with consuming(ai_worker, "ai") as worker:
        counts = sweep_once()
        settle(ai_worker, worker, "ai")

    assert counts["resent"] == 2
    assert task_row(db, task_id)["status"] == "completed"
    assert task_row(db, orphan)["status"] == "completed"


# --- operator commands ---------------------------------------------------------------------


def cli(db_url: str, *args: str, env: dict[str, str] | None = None) -> Any:
    from engine.cli import main

    return CliRunner().invoke(
        main, list(args), env={"DATABASE_URL": db_url, "HASTE_LOG_LEVEL": "WARNING", **(env or {})}
    )


def test_search_backfill_and_ai_commands(db: Conn, db_url: str) -> None:
    ws = make_workspace(db, "cli")
    slug = db.execute("SELECT slug FROM workspaces WHERE id = %s", (ws.id,)).fetchone()[0]
    planted = make_contact(db, ws, first_name="Grace", last_name="Hopper", title="Rear Admiral")
    make_contact(db, ws, first_name="Alan", last_name="Turing", title="Mathematician")

    backfill = cli(db_url, "embeddings", "backfill", "--workspace", slug)
    assert backfill.exit_code == 0, backfill.output
    assert "scheduled 2; embedded 2 in 1 request(s)" in backfill.output

    found = cli(db_url, "search", "Grace Hoper admiral", "--workspace", slug, "--json")
    assert found.exit_code == 0, found.output
    result = json.loads(found.output)
    assert result["embedding"]["provider"] == "offline"
    assert result["hits"][0]["id"] == str(planted)

    ran = cli(
        db_url, "ai", "run", "lead_scoring", "--workspace", slug, "--record", f"contacts/{planted}"
    )
    assert ran.exit_code == 0, ran.output
    assert "OFFLINE provider" in ran.output
    assert row(db, "contacts", planted)["score"] > 0

    listed = cli(db_url, "ai", "tasks", "--workspace", slug)
    assert "lead_scoring" in listed.output and "offline/offline-heuristic-v1" in listed.output

    budget = cli(db_url, "ai", "budget", "--workspace", slug, "--tokens", "10")
    assert budget.exit_code == 0, budget.output
    refused = cli(
        db_url, "ai", "run", "summarization", "--workspace", slug, "--input", '{"text": "x"}'
    )
    assert refused.exit_code == 1 and "AI budget exhausted" in refused.output

    usage = cli(db_url, "ai", "usage", "--workspace", slug)
    assert "workspace:" in usage.output and "(budget 10)" in usage.output

    unknown = cli(db_url, "ai", "task", str(uuid.uuid4()))
    assert unknown.exit_code == 1


def test_rate_limits_are_shared_through_redis(redis_url: str) -> None:
    from workers.ai_routing import RateLimited, RateLimits

    one, other = (RateLimits.from_redis_url({"openai": 2}, redis_url) for _ in range(2))
    assert one.acquire("openai", 0) == 0.0
    assert other.acquire("openai", 0) == 0.0  # another process, the same window
    with pytest.raises(RateLimited, match="2 requests/minute used up"):
        one.acquire("openai", 0.3)
    assert other.acquire("anthropic", 0) == 0.0  # no limit configured for it


def test_a_task_without_a_rate_limit_slot_is_deferred_not_failed(
    db: Conn, redis_url: str, openai_fake: FakeLLM
) -> None:
    from workers.ai_routing import RateLimits
    from workers.ai_tasks import process_task

    ws = make_workspace(db)
    rt = runtime(openai_fake, HASTE_AI_MAX_INLINE_WAIT="0.2")
    rt.rate_limits = RateLimits.from_redis_url({"openai": 1}, redis_url)
    first = create_task(db, ws.id, "sentiment_analysis", {"text": "a"})
    second = create_task(db, ws.id, "sentiment_analysis", {"text": "b"})

    assert process_task(db, first, rt).status == "completed"
    outcome = process_task(db, second, rt)

    assert outcome.status == "deferred" and 2.0 <= outcome.delay <= 10.0
    task = task_row(db, second)
    assert task["status"] == "pending" and task["retry_count"] == 0
    assert "rate limited locally" in task["error_message"]
    assert len(openai_fake.requests) == 1
