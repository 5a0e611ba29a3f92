"""The executor in-process (real PostgreSQL and Redis, no worker process): step records,
counters, retries and back-off, on_error, delays, AI hand-over, rerun, cancel, fencing and
RLS. Worker processes, crashes and throughput are in test_worker.py."""

from __future__ import annotations

import time
import uuid
from typing import Any
from uuid import UUID

import psycopg
import pytest

from engine import executions
from tests.fakes.crm import insert, make_contact, make_workspace
from tests.fakes.executions import counters, deploy_doc, execution, queue_executions, steps
from tests.fakes.http_server import Reply, http_server
from workers.executor import Executor


def manual(*actions: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "name": f"auto-{uuid.uuid4().hex[:6]}",
        "trigger_type": "manual",
        "trigger_config": {"entity_type": "contact"},
        "actions": list(actions),
        **extra,
    }


@pytest.fixture
def ws(db: psycopg.Connection[Any]) -> Any:
    return make_workspace(db)


def run_until_settled(db: Any, ex: Executor, execution_id: UUID, timeout: float = 20.0) -> str:
    """Run the execution, and again whenever it is queued and due (what messages do)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = execution(db, execution_id)
        if row["status"] in ("completed", "failed", "cancelled", "waiting"):
            return str(row["status"])
        if row["status"] == "queued":
            ex.run(str(execution_id))
        else:
            time.sleep(0.02)
    raise AssertionError("execution did not settle")


FOUR_DB_STEPS = manual(
    {"id": "stage", "type": "update_record", "params": {"fields": {"lifecycle_stage": "MQL"}}},
    {"id": "tag", "type": "add_tag", "params": {"tag": "hot", "create_if_missing": True}},
    {
        "id": "note",
        "type": "add_note",
        "params": {
            "content": "now {{ contact.lifecycle_stage }} ({{ steps.tag.output | tojson }})"
        },
    },
    {"id": "task", "type": "create_task", "params": {"title": "Call {{ contact.email }}"}},
)


def test_four_database_steps_complete_with_records_and_counters(db, ws, executor) -> None:
    contact = make_contact(db, ws, email="ada@example.test")
    automation = deploy_doc(db, ws, FOUR_DB_STEPS)
    [run] = queue_executions(db, ws, automation, [contact])

    assert executor.run(str(run)) == "completed"

    row = execution(db, run)
    assert row["status"] == "completed"
    assert row["error_message"] is None and row["duration_ms"] >= 0
    assert row["completed_at"] is not None
    assert [a["step_id"] for a in row["actions_executed"]] == ["stage", "tag", "note", "task"]
    records = steps(db, run)
    assert {sid: r["status"] for sid, r in records.items()} == dict.fromkeys(
        ["stage", "tag", "note", "task"], "completed"
    )
    assert all(r["attempts"] == 1 for r in records.values())
    assert records["task"]["idempotency_key"] == f"{run}:task"
    assert records["task"]["input"] == {"title": "Call ada@example.test"}
    note = db.execute("SELECT content FROM notes WHERE contact_id = %s", (contact,)).fetchone()
    assert note is not None and note[0].startswith("now MQL")  # the record was reloaded
    assert (
        db.execute("SELECT count(*) FROM tasks WHERE contact_id = %s", (contact,)).fetchone()[0]
        == 1
    )
    assert counters(db, automation[0]) == (1, 1, 0)


def test_a_second_message_for_a_finished_execution_changes_nothing(db, ws, executor) -> None:
    contact = make_contact(db, ws)
    automation = deploy_doc(db, ws, FOUR_DB_STEPS)
    [run] = queue_executions(db, ws, automation, [contact])
    executor.run(str(run))

    assert executor.run(str(run)) == "not_claimed"
    assert counters(db, automation[0]) == (1, 1, 0)
    assert db.execute("SELECT count(*) FROM notes").fetchone()[0] == 1


def test_resumes_after_the_last_committed_step_without_repeating_it(db, ws, executor) -> None:
    contact = make_contact(db, ws)
    automation = deploy_doc(db, ws, FOUR_DB_STEPS)
    [run] = queue_executions(db, ws, automation, [contact])
    # A worker ran two steps, then died: the row went back to queued (as the reaper does).
    real_record = executor.run
    held = executions.claim(db, [run], "dead-worker")[0]
    db.execute(
        "INSERT INTO automation_execution_steps (execution_id, workspace_id, step_id, pointer,"
        " type, status, attempts, idempotency_key, output) VALUES"
        " (%s, %s, 'stage', '/actions/0', 'update_record', 'completed', 1, %s, '{}'),"
        " (%s, %s, 'tag', '/actions/1', 'add_tag', 'completed', 1, %s, '{\"tag\": \"x\"}')",
        (run, ws.id, f"{run}:stage", run, ws.id, f"{run}:tag"),
    )
    db.execute(
        "UPDATE automation_executions SET status = 'queued', recoveries = 1 WHERE id = %s",
        (held.id,),
    )

    assert real_record(str(run)) == "completed"

    records = steps(db, run)
    assert records["stage"]["output"] == {}  # kept, not run again
    lifecycle = db.execute("SELECT lifecycle_stage FROM contacts WHERE id = %s", (contact,))
    assert lifecycle.fetchone()[0] == "lead"  # "stage" was not repeated
    assert '{"tag": "x"}' in db.execute("SELECT content FROM notes").fetchone()[0]


def test_a_worker_that_lost_its_claim_writes_nothing(db, ws, executor) -> None:
    contact = make_contact(db, ws)
    automation = deploy_doc(db, ws, FOUR_DB_STEPS)
    [run] = queue_executions(db, ws, automation, [contact])
    from workers.executor import _Run

    held = executions.claim(db, [run], "slow-worker")[0]
    with executor.pool.connection() as conn:
        slow = _Run(executor, conn, held)
        # The reaper took it back and another worker claimed it meanwhile.
        db.execute("UPDATE automation_executions SET status = 'queued' WHERE id = %s", (run,))
        executions.claim(db, [run], "new-worker")
        from workers.executor import ClaimLost

        with pytest.raises(ClaimLost):
            slow.go()

    assert steps(db, run) == {}
    lifecycle = db.execute("SELECT lifecycle_stage FROM contacts WHERE id = %s", (contact,))
    assert lifecycle.fetchone()[0] == "lead"


def test_http_503_then_200_is_retried_with_backoff_and_the_same_key(db, ws, executor) -> None:
    contact = make_contact(db, ws)
    with http_server() as server:
        server.reply(Reply(503), Reply.json(200, {"ok": True}))
        doc = manual(
            {
                "id": "hook",
                "type": "http_request",
                "params": {"url": server.url("/hook"), "json": {"id": "{{ contact.id }}"}},
                "retry": {"max_attempts": 3, "initial": {"seconds": 1}, "jitter": False},
            }
        )
        [run] = queue_executions(db, ws, deploy_doc(db, ws, doc), [contact])

        assert executor.run(str(run)) == "retrying"
        row = execution(db, run)
        assert row["status"] == "queued"
        assert 0.5 < (row["resume_at"] - row["enqueued_at"]).total_seconds() <= 1.1
        assert executor.run(str(run)) == "not_claimed"  # too early: not due yet
        assert run_until_settled(db, executor, run) == "completed"

    record = steps(db, run)["hook"]
    assert record["attempts"] == 2
    assert [a["class"] for a in record["attempt_history"]] == ["http_5xx"]
    assert record["output"]["body"] == {"ok": True}
    keys = {r.headers["idempotency-key"] for r in server.requests}
    assert len(server.requests) == 2 and keys == {f"{run}:hook"}


def test_http_400_fails_at_once_without_retry(db, ws, executor) -> None:
    contact = make_contact(db, ws)
    with http_server() as server:
        server.reply(Reply.json(400, {"error": "bad"}))
        doc = manual({"id": "hook", "type": "http_request", "params": {"url": server.url()}})
        automation = deploy_doc(db, ws, doc)
        [run] = queue_executions(db, ws, automation, [contact])

        assert executor.run(str(run)) == "failed"

    assert len(server.requests) == 1
    row = execution(db, run)
    assert "step 'hook' (http_request) failed after 1 attempt(s): http_4xx" in row["error_message"]
    assert row["error_details"]["class"] == "http_4xx"
    assert row["error_details"]["attempt_history"][0]["decision"] == "http_4xx is not retryable"
    assert counters(db, automation[0]) == (1, 0, 1)


def test_http_429_waits_for_retry_after(db, ws, executor) -> None:
    contact = make_contact(db, ws)
    with http_server() as server:
        server.reply(Reply(429, {"Retry-After": "2"}), Reply(200))
        doc = manual(
            {
                "id": "hook",
                "type": "http_request",
                "params": {"url": server.url()},
                "retry": {"max_attempts": 2, "initial": {"seconds": 1}, "jitter": False},
            }
        )
        [run] = queue_executions(db, ws, deploy_doc(db, ws, doc), [contact])

        assert executor.run(str(run)) == "retrying"
        row = execution(db, run)
        assert (row["resume_at"] - row["enqueued_at"]).total_seconds() >= 1.9
        assert run_until_settled(db, executor, run) == "completed"

    history = steps(db, run)["hook"]["attempt_history"]
    assert history[0]["retry_after"] == 2.0 and "Retry-After 2s" in history[0]["decision"]


def test_on_error_continue_and_goto(db, ws, executor) -> None:
    contact = make_contact(db, ws)
    doc = manual(
        {
            "id": "bad",
            "type": "update_record",
            "params": {"record": {"entity": "contact", "id": str(uuid.uuid4())}, "fields": {}},
            "on_error": "continue",
        },
        {
            "id": "jump",
            "type": "add_tag",
            "params": {"tag": "never", "record": {"entity": "contact", "id": str(uuid.uuid4())}},
            "on_error": "goto:last",
        },
        {
            "id": "skipped",
            "type": "add_tag",
            "params": {"tag": "skipped", "create_if_missing": True},
        },
        {"id": "last", "type": "add_tag", "params": {"tag": "last", "create_if_missing": True}},
    )
    automation = deploy_doc(db, ws, doc)
    [run] = queue_executions(db, ws, automation, [contact])

    assert executor.run(str(run)) == "completed"

    records = steps(db, run)
    assert {sid: r["status"] for sid, r in records.items()} == {
        "bad": "failed",
        "jump": "failed",
        "last": "completed",
    }
    tags = [r[0] for r in db.execute("SELECT name FROM tags ORDER BY name")]
    assert tags == ["last"]
    row = execution(db, run)
    failures = row["error_details"]["continued_failures"]
    assert [f["step_id"] for f in failures] == ["bad", "jump"]
    assert counters(db, automation[0]) == (1, 1, 0)


def test_branch_runs_the_first_matching_case_and_keeps_it_on_resume(db, ws, executor) -> None:
    contact = make_contact(db, ws, score=90)
    doc = manual(
        {
            "id": "route",
            "type": "branch",
            "params": {
                "cases": [
                    {
                        "if": {"field": "contact.score", "op": "gte", "value": 80},
                        "steps": [
                            {
                                "id": "hot",
                                "type": "add_tag",
                                "params": {"tag": "hot", "create_if_missing": True},
                            }
                        ],
                    }
                ],
                "default": [
                    {
                        "id": "cold",
                        "type": "add_tag",
                        "params": {"tag": "cold", "create_if_missing": True},
                    }
                ],
            },
        },
        {
            "id": "after",
            "type": "add_note",
            "params": {
                "content": "case {{ steps.route.output.case }}, cold {{ steps.cold.output }}"
            },
        },
    )
    [run] = queue_executions(db, ws, deploy_doc(db, ws, doc), [contact])

    assert executor.run(str(run)) == "completed"

    assert steps(db, run)["route"]["output"] == {"case": 0}
    assert set(steps(db, run)) == {"route", "hot", "after"}
    assert db.execute("SELECT content FROM notes").fetchone()[0] == "case 0, cold "


def test_a_template_error_fails_the_step_without_retry(db, ws, executor) -> None:
    contact = make_contact(db, ws)
    doc = manual({"id": "n", "type": "add_note", "params": {"content": "{{ contact.nope }}"}})
    [run] = queue_executions(db, ws, deploy_doc(db, ws, doc, validate=False), [contact])

    assert executor.run(str(run)) == "failed"

    record = steps(db, run)["n"]
    assert record["error"]["class"] == "validation" and "contact.nope" in record["error"]["message"]
    assert record["attempts"] == 1


def test_an_action_cannot_touch_another_workspace_with_a_crafted_id(db, ws, executor) -> None:
    other = make_workspace(db, "other")
    victim = make_contact(db, other, lifecycle_stage="customer")
    doc = manual(
        {
            "id": "steal",
            "type": "update_record",
            "params": {
                "record": {"entity": "contact", "id": str(victim)},
                "fields": {"lifecycle_stage": "lead"},
            },
        },
        {
            "id": "link",
            "type": "create_task",
            "params": {"title": "x", "record": {"entity": "contact", "id": str(victim)}},
            "on_error": "continue",
        },
    )
    automation = deploy_doc(db, ws, doc)
    [run] = queue_executions(db, ws, automation, [make_contact(db, ws)])

    assert executor.run(str(run)) == "failed"

    assert steps(db, run)["steal"]["error"]["class"] == "not_found"
    stage = db.execute("SELECT lifecycle_stage FROM contacts WHERE id = %s", (victim,)).fetchone()
    assert stage[0] == "customer"
    assert db.execute("SELECT count(*) FROM tasks").fetchone()[0] == 0


def test_rerun_from_a_failed_step_does_not_repeat_committed_steps(db, ws, executor) -> None:
    contact = make_contact(db, ws)
    with http_server() as server:
        server.reply(Reply(400))
        doc = manual(
            {"id": "note", "type": "add_note", "params": {"content": "once"}},
            {"id": "hook", "type": "http_request", "params": {"url": server.url()}},
            {"id": "tag", "type": "add_tag", "params": {"tag": "done", "create_if_missing": True}},
        )
        automation = deploy_doc(db, ws, doc)
        [run] = queue_executions(db, ws, automation, [contact])
        assert executor.run(str(run)) == "failed"

        server.reply(Reply(200))
        executions.rerun(db, run)
        assert executor.run(str(run)) == "completed"

    assert db.execute("SELECT count(*) FROM notes").fetchone()[0] == 1
    records = steps(db, run)
    assert records["hook"]["status"] == "completed"
    assert records["hook"]["idempotency_key"] == f"{run}:hook:r1"
    assert execution(db, run)["reruns"] == 1
    assert counters(db, automation[0]) == (2, 1, 1)


def test_rerun_from_step_runs_that_step_again_with_a_new_key(db, ws, executor) -> None:
    contact = make_contact(db, ws)
    doc = manual(
        {"id": "first", "type": "add_note", "params": {"content": "first"}},
        {"id": "second", "type": "add_note", "params": {"content": "second"}},
    )
    [run] = queue_executions(db, ws, deploy_doc(db, ws, doc), [contact])
    executor.run(str(run))

    executions.rerun(db, run, from_step="second")
    assert executor.run(str(run)) == "completed"

    contents = sorted(r[0] for r in db.execute("SELECT content FROM notes"))
    assert contents == ["first", "second", "second"]
    with pytest.raises(executions.ExecutionError, match="no step 'nope'"):
        executions.rerun(db, run, from_step="nope")
    with pytest.raises(executions.ExecutionError, match="completed every step"):
        executions.rerun(db, run)


def test_delay_waits_then_resumes_when_woken(db, ws, executor) -> None:
    contact = make_contact(db, ws)
    doc = manual(
        {"id": "pause", "type": "delay", "params": {"duration": {"hours": 1}}},
        {"id": "after", "type": "add_note", "params": {"content": "later"}},
    )
    [run] = queue_executions(db, ws, deploy_doc(db, ws, doc), [contact])

    assert executor.run(str(run)) == "waiting"
    row = execution(db, run)
    assert row["status"] == "waiting"
    assert 3590 < (row["resume_at"] - row["started_at"]).total_seconds() < 3610
    assert executions.wake_due(db) == []  # not due yet

    db.execute(
        "UPDATE automation_execution_steps SET output = jsonb_build_object('until', now()::text)"
        " WHERE step_id = 'pause'"
    )
    db.execute("UPDATE automation_executions SET resume_at = now() WHERE id = %s", (run,))
    assert executions.wake_due(db) == [run]
    assert executor.run(str(run)) == "completed"
    assert steps(db, run)["pause"]["output"]["waited"] is True


def test_ai_task_step_creates_a_task_waits_and_takes_its_output(db, ws, executor) -> None:
    contact = make_contact(db, ws)
    doc = manual(
        {
            "id": "score",
            "type": "ai_task",
            "params": {"task_type": "lead_scoring", "input": {"email": "{{ contact.email }}"}},
        },
        {
            "id": "note",
            "type": "add_note",
            "params": {"content": "score {{ steps.score.output.score }}"},
        },
    )
    [run] = queue_executions(db, ws, deploy_doc(db, ws, doc), [contact])

    assert executor.run(str(run)) == "waiting"
    task = db.execute("SELECT id, status, input, user_id FROM ai_tasks").fetchone()
    assert task[1] == "pending" and task[3] is None
    assert task[2]["execution_id"] == str(run) and task[2]["step_id"] == "score"
    assert execution(db, run)["resume_at"] is None

    db.execute("UPDATE ai_tasks SET status = 'completed', output = '{\"score\": 87}'")
    assert executions.wake(db, [run]) == [run]
    assert executor.run(str(run)) == "completed"
    assert db.execute("SELECT content FROM notes").fetchone()[0] == "score 87"


def test_a_failed_ai_task_fails_its_step(db, ws, executor) -> None:
    contact = make_contact(db, ws)
    doc = manual(
        {"id": "s", "type": "ai_task", "params": {"task_type": "summarization", "input": {}}}
    )
    [run] = queue_executions(db, ws, deploy_doc(db, ws, doc), [contact])
    executor.run(str(run))

    db.execute("UPDATE ai_tasks SET status = 'failed', error_message = 'budget exhausted'")
    executions.wake(db, [run])
    assert executor.run(str(run)) == "failed"
    assert "provider_error: budget exhausted" in execution(db, run)["error_message"]


def test_cancel_stops_a_waiting_execution_and_its_ai_task(db, ws, executor) -> None:
    contact = make_contact(db, ws)
    doc = manual(
        {"id": "s", "type": "ai_task", "params": {"task_type": "summarization", "input": {}}}
    )
    [run] = queue_executions(db, ws, deploy_doc(db, ws, doc), [contact])
    executor.run(str(run))

    assert executions.cancel(db, [run]) == [run]
    assert executions.cancel(db, [run]) == []
    assert execution(db, run)["status"] == "cancelled"
    assert db.execute("SELECT status FROM ai_tasks").fetchone()[0] == "cancelled"


def test_wake_refuses_inside_a_transaction(db) -> None:
    with db.transaction(), pytest.raises(executions.ExecutionError, match="enqueue=False"):
        executions.wake(db, [uuid.uuid4()])


def test_step_timeout_cancels_a_slow_database_step(db, ws, executor) -> None:
    contact = make_contact(db, ws)
    insert(db, "tags", workspace_id=ws.id, name="slow")
    # A lock held elsewhere makes the step wait; its timeout turns that into an error.
    doc = manual(
        {
            "id": "stage",
            "type": "update_record",
            "params": {"fields": {"lifecycle_stage": "MQL"}},
            "timeout": {"seconds": 1},
            "retry": {"max_attempts": 1},
        }
    )
    [run] = queue_executions(db, ws, deploy_doc(db, ws, doc), [contact])
    with psycopg.connect(executor.pool.conninfo) as blocker:
        blocker.execute("SELECT 1 FROM contacts WHERE id = %s FOR UPDATE", (contact,))
        assert executor.run(str(run)) == "failed"

    assert steps(db, run)["stage"]["error"]["class"] == "timeout"
