"""The AI task lifecycle against fake OpenAI / Anthropic servers, through the real SDKs:
write-back per task type, validation, retries, Retry-After, failover, budgets, cache,
cancellation, and the offline provider's labelling."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from actions.base import KEY_NAMESPACE
from schemas import ROOT
from tests.ai_support import (
    Recorder,
    module_database,
    record_of,
    runtime,
    seed_records,
    task_row,
)
from tests.fakes.anthropic_server import anthropic_server
from tests.fakes.crm import insert, make_workspace, row, rows
from tests.fakes.openai_server import FakeLLM, error, ok, openai_server, raw
from workers import ai_tasks
from workers.ai_tasks import STATUSES, create_task, process_task
from workers.ai_types import TASK_TYPES, task_type
from workers.ai_writeback import WRITE_BACK

Conn = psycopg.Connection[Any]


@pytest.fixture(scope="module")
def db(admin_url: str, template_db: str) -> Any:
    """One database for the module: every test makes its own workspace."""
    with module_database(admin_url, template_db) as conn:
        yield conn


@pytest.fixture
def openai_fake() -> Any:
    with openai_server() as fake:
        yield fake


@pytest.fixture
def anthropic_fake() -> Any:
    with anthropic_server() as fake:
        yield fake


# --- sync: the copies of each fact agree ---------------------------------------------------


def _check_list(db: Conn, table: str, constraint: str) -> list[str]:
    definition = db.execute(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conrelid = %s::regclass AND conname = %s",
        (table, constraint),
    ).fetchone()[0]
    return [part.split("'")[1] for part in definition.split("ARRAY[")[1].split(",")]


def test_task_types_agree_with_the_spec_check_the_step_schema_and_the_files(db: Conn) -> None:
    step_schema = json.loads((ROOT / "actions" / "ai_task.json").read_text())

    assert list(TASK_TYPES) == _check_list(db, "ai_tasks", "valid_type")
    assert list(TASK_TYPES) == step_schema["properties"]["task_type"]["enum"]
    assert sorted(TASK_TYPES) == sorted(p.stem for p in (ROOT / "ai").glob("*.json"))
    assert sorted(TASK_TYPES) == sorted(
        p.stem
        for p in (ROOT / "ai" / "prompts").glob("*.jinja")
        if not p.stem.startswith(("_", "system"))
    )


def test_statuses_agree_with_the_spec_check(db: Conn) -> None:
    assert list(STATUSES) == _check_list(db, "ai_tasks", "valid_status")


def test_write_back_columns_exist_on_their_entities() -> None:
    from engine import fields

    for kind, per_entity in WRITE_BACK.items():
        for entity, columns in per_entity.items():
            missing = columns - set(fields.columns(entity))
            assert not missing, f"{kind} writes unknown {entity} columns {missing}"


def test_output_schemas_are_strict_mode_shaped() -> None:
    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object":
                assert node.get("additionalProperties") is False
                assert sorted(node["required"]) == sorted(node["properties"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for name in TASK_TYPES:
        walk(task_type(name).schema)
        assert "maxLength" not in json.dumps(task_type(name).sent_schema)


# --- each task type: a valid answer is written where it belongs ----------------------------

CASES = {
    # task type: (record entity, input)
    "email_generation": ("contact", {"purpose": "Introduce our analytics add-on"}),
    "email_reply": ("email", {"subject": "Pricing?", "body": "What does the pro plan cost?"}),
    "summarization": ("contact", {"text": "Call went well. They need SSO. Please send a quote."}),
    "sentiment_analysis": ("email", {"text": "We are very frustrated, the dashboard is down."}),
    "entity_extraction": ("email", {"text": "Met Bob at Globex on 2024-05-01, budget $12,000."}),
    "classification": (
        "email",
        {"text": "Urgent outage, please help", "categories": ["support_request", "billing"]},
    ),
    "contact_enrichment": ("contact", {"signature": "Dana Reyes, VP Engineering, Globex"}),
    "lead_scoring": ("deal", {"notes": "Asked for a demo and pricing"}),
    "meeting_summary": (
        "deal",
        {"transcript": "Attendees: Dana, Sam\nWe agreed to a pilot. Sam will send the contract."},
    ),
}


def _written(db: Conn, task_type_name: str, records: Any, task_id: uuid.UUID) -> Any:
    """What the write-back left on the CRM record, per task type."""
    if task_type_name in ("summarization", "meeting_summary"):
        note_id = uuid.uuid5(KEY_NAMESPACE, f"ai-task:{task_id}:note")
        return row(db, "notes", note_id)
    if task_type_name == "sentiment_analysis":
        email = row(db, "emails", records.email)
        return email["sentiment"], email["ai_analysis"].get("sentiment")
    if task_type_name == "classification":
        email = row(db, "emails", records.email)
        return email["category"], email["priority"], email["ai_analysis"].get("classification")
    if task_type_name == "entity_extraction":
        return row(db, "emails", records.email)["ai_analysis"].get("entities")
    if task_type_name == "contact_enrichment":
        contact = row(db, "contacts", records.contact)
        return contact["enrichment_data"].get("ai"), contact["enrichment_updated_at"]
    if task_type_name == "lead_scoring":
        deal = row(db, "deals", records.deal)
        return (
            deal["ai_score"],
            deal["ai_insights"].get("lead_scoring"),
            deal["ai_predicted_close_date"],
        )
    return None


@pytest.mark.parametrize("name", TASK_TYPES)
def test_each_task_type_writes_a_valid_answer_back(
    db: Conn, openai_fake: FakeLLM, name: str
) -> None:
    ws = make_workspace(db)
    records = seed_records(db, ws)
    entity, content = CASES[name]
    rt = runtime(openai_fake)
    task_id = create_task(db, ws.id, name, content, record=record_of(records, entity))

    outcome = process_task(db, task_id, rt)

    task = task_row(db, task_id)
    assert outcome.status == "completed", task["error_message"]
    assert task["status"] == "completed"
    assert task_type(name).validate(task["output"]) is None
    assert (task["model_provider"], task["model_name"]) == ("openai", "gpt-4o-mini")
    assert task["tokens_used"] > 0 and task["cost_cents"] is not None
    assert task["duration_ms"] is not None and task["retry_count"] == 0
    assert task["started_at"] and task["completed_at"]
    written = _written(db, name, records, task_id)
    if name in ("email_generation", "email_reply"):
        assert "skipped" in task["write_back"]
        return
    assert written, task["write_back"]
    if name in ("summarization", "meeting_summary"):
        entity_id = records.contact if name == "summarization" else records.deal
        assert (written["entity_type"], written["entity_id"]) == (entity, entity_id)
        assert task["output"]["summary"] in written["content"]
        assert written["created_by"] == ws.owner
    elif name == "sentiment_analysis":
        assert written == (task["output"]["sentiment"], task["output"])
    elif name == "classification":
        assert written == ("support_request", "urgent", task["output"])
    elif name == "lead_scoring":
        assert float(written[0]) == task["output"]["score"]
        assert written[1] == task["output"]
        assert written[2] is not None  # the deal's value made the offline answer predict one
    elif name == "entity_extraction":
        assert written == task["output"]["entities"]
    else:
        assert written[0] == task["output"] and written[1] is not None
    request = openai_fake.calls("/chat/completions")[0]
    assert request.json["response_format"]["type"] == "json_schema"
    assert request.json["response_format"]["json_schema"]["name"] == f"{name}_result"
    assert request.headers["idempotency-key"] == f"ai-task:{task_id}"


def test_lead_scoring_on_a_contact_sets_its_score(db: Conn, openai_fake: FakeLLM) -> None:
    ws = make_workspace(db)
    records = seed_records(db, ws)
    openai_fake.script(
        ok(
            {
                "score": 87,
                "grade": "A",
                "reasons": ["VP, asked for pricing"],
                "win_probability": 0.8,
                "predicted_close_date": None,
            }
        )
    )
    task_id = create_task(db, ws.id, "lead_scoring", {}, record=record_of(records, "contact"))

    process_task(db, task_id, runtime(openai_fake))

    contact = row(db, "contacts", records.contact)
    assert contact["score"] == 87
    assert contact["ai_insights"]["lead_scoring"]["grade"] == "A"


@pytest.mark.parametrize("name", TASK_TYPES)
def test_invalid_output_is_retried_then_fails_with_the_schema_error(
    db: Conn, openai_fake: FakeLLM, name: str
) -> None:
    ws = make_workspace(db)
    records = seed_records(db, ws)
    entity, content = CASES[name]
    openai_fake.script(then=ok({"unexpected": True}))
    task_id = create_task(db, ws.id, name, content, record=record_of(records, entity))

    outcome = process_task(db, task_id, runtime(openai_fake, HASTE_AI_MAX_ATTEMPTS="2"))

    task = task_row(db, task_id)
    assert outcome.status == "failed"
    assert task["status"] == "failed"
    assert len(openai_fake.calls("/chat/completions")) == 2
    assert task["retry_count"] == 1
    assert f"schemas/ai/{name}.json after 2 attempt(s)" in task["error_message"]
    assert "$: " in task["error_message"]  # the JSON path of the problem
    assert [a["outcome"] for a in task["attempts"]] == ["invalid_output", "invalid_output"]
    assert task["tokens_used"] > 0  # invalid answers were still paid for
    assert task["output"] is None


def test_an_invalid_answer_then_a_valid_one_completes_and_says_what_it_recovered_from(
    db: Conn, openai_fake: FakeLLM
) -> None:
    ws = make_workspace(db)
    openai_fake.script(
        ok({"sentiment": "ecstatic", "score": 3, "confidence": 1, "reasoning": ""}),
        raw(200, b'{"choices": [', "application/json"),
    )
    task_id = create_task(db, ws.id, "sentiment_analysis", {"text": "Great, thanks!"})

    outcome = process_task(db, task_id, runtime(openai_fake))

    task = task_row(db, task_id)
    assert outcome.status == "completed"
    assert task["retry_count"] == 2
    assert [a["outcome"] for a in task["attempts"]] == ["invalid_output", "malformed", "ok"]
    assert "$.score: 3 is greater than the maximum of 1" in task["attempts"][0]["error"] or (
        "$.sentiment" in task["attempts"][0]["error"]
    )
    assert task["error_message"].startswith("recovered after 2 failed attempt(s)")


# --- provider errors: Retry-After, failover, final errors ----------------------------------


def test_429_then_success_honours_retry_after(db: Conn, openai_fake: FakeLLM) -> None:
    ws = make_workspace(db)
    openai_fake.script(error(429, "Rate limit reached", retry_after="1"))
    task_id = create_task(db, ws.id, "sentiment_analysis", {"text": "fine"})

    outcome = process_task(db, task_id, runtime(openai_fake, real_sleep=True))

    first, second = openai_fake.calls("/chat/completions")
    task = task_row(db, task_id)
    assert outcome.status == "completed"
    assert second.at - first.at >= 1.0
    assert task["retry_count"] == 1
    assert task["attempts"][0]["outcome"] == "rate_limited"
    assert task["attempts"][0]["retry_after"] == 1.0
    assert task["attempts"][0]["decision"]["action"] == "retry"
    assert task["failover_from"] is None  # a 429 is not an outage


def test_a_long_retry_after_defers_the_task_instead_of_holding_the_thread(
    db: Conn, openai_fake: FakeLLM
) -> None:
    ws = make_workspace(db)
    openai_fake.script(error(429, "Rate limit reached", retry_after="120"))
    recorder = Recorder()
    task_id = create_task(db, ws.id, "classification", {"text": "hi"})

    outcome = process_task(db, task_id, runtime(openai_fake, recorder=recorder))

    task = task_row(db, task_id)
    assert (outcome.status, outcome.delay) == ("deferred", 120.0)
    assert task["status"] == "pending" and task["not_before"] is not None
    assert recorder.sleeps == [] and recorder.woken == []
    # Not due yet: a duplicate message finds nothing to do.
    assert process_task(db, task_id, runtime(openai_fake)).status == "skipped"
    db.execute("UPDATE ai_tasks SET not_before = now() WHERE id = %s", (task_id,))
    assert process_task(db, task_id, runtime(openai_fake)).status == "completed"
    assert task_row(db, task_id)["retry_count"] == 1


def test_500_on_openai_fails_over_to_anthropic(
    db: Conn, openai_fake: FakeLLM, anthropic_fake: FakeLLM
) -> None:
    ws = make_workspace(db)
    records = seed_records(db, ws)
    openai_fake.script(then=error(500, "The server had an error"))
    task_id = create_task(
        db, ws.id, "classification", CASES["classification"][1], record=record_of(records, "email")
    )

    outcome = process_task(db, task_id, runtime(openai_fake, anthropic_fake))

    task = task_row(db, task_id)
    assert outcome.status == "completed"
    assert (task["model_provider"], task["model_name"]) == ("anthropic", "claude-3-5-haiku-latest")
    assert task["failover_from"] == "openai"
    assert [(a["provider"], a["outcome"]) for a in task["attempts"]] == [
        ("openai", "server"),
        ("anthropic", "ok"),
    ]
    assert task["attempts"][0]["decision"]["action"] == "failover"
    assert "failed over from openai" in task["error_message"]
    assert len(openai_fake.requests) == 1 and len(anthropic_fake.requests) == 1
    message = anthropic_fake.requests[0].json
    assert message["tool_choice"] == {"type": "tool", "name": "classification_result"}
    assert row(db, "emails", records.email)["category"] == "support_request"


def test_anthropic_overloaded_fails_over_to_openai(
    db: Conn, openai_fake: FakeLLM, anthropic_fake: FakeLLM
) -> None:
    ws = make_workspace(db)
    anthropic_fake.script(then=error(529, "Overloaded"))
    task_id = create_task(db, ws.id, "summarization", {"text": "a. b."}, provider="anthropic")

    outcome = process_task(db, task_id, runtime(openai_fake, anthropic_fake))

    task = task_row(db, task_id)
    assert outcome.status == "completed"
    assert (task["model_provider"], task["failover_from"]) == ("openai", "anthropic")


def test_without_a_second_provider_5xx_is_retried_with_back_off_then_fails(
    db: Conn, openai_fake: FakeLLM
) -> None:
    ws = make_workspace(db)
    openai_fake.script(then=error(503, "Service Unavailable"))
    recorder = Recorder()
    task_id = create_task(db, ws.id, "sentiment_analysis", {"text": "x"})

    outcome = process_task(db, task_id, runtime(openai_fake, recorder=recorder))

    task = task_row(db, task_id)
    assert outcome.status == "failed"
    assert recorder.sleeps == [1.0, 2.0]  # exponential (jitter off in tests)
    assert task["error_message"].startswith("openai gpt-4o-mini: HTTP 503: Service Unavailable")
    assert "gave up after 3 attempt(s)" in task["error_message"]
    assert task["retry_count"] == 2 and task["tokens_used"] == 0
    assert recorder.woken == []  # no execution to wake


def test_a_400_is_not_retried(db: Conn, openai_fake: FakeLLM) -> None:
    ws = make_workspace(db)
    openai_fake.script(error(400, "Invalid schema for response_format"))
    task_id = create_task(db, ws.id, "sentiment_analysis", {"text": "x"})

    process_task(db, task_id, runtime(openai_fake))

    task = task_row(db, task_id)
    assert task["status"] == "failed" and len(openai_fake.requests) == 1
    assert "Invalid schema for response_format" in task["error_message"]


def test_a_timeout_is_an_outage(db: Conn, openai_fake: FakeLLM, anthropic_fake: FakeLLM) -> None:
    from tests.fakes.openai_server import slow

    ws = make_workspace(db)
    openai_fake.script(slow(3))
    task_id = create_task(db, ws.id, "sentiment_analysis", {"text": "x"})

    outcome = process_task(
        db, task_id, runtime(openai_fake, anthropic_fake, HASTE_AI_TIMEOUT="0.5")
    )

    task = task_row(db, task_id)
    assert outcome.status == "completed"
    assert task["attempts"][0]["outcome"] == "timeout"
    assert task["model_provider"] == "anthropic"


# --- budgets -------------------------------------------------------------------------------


def test_exhausted_workspace_budget_fails_before_any_call(db: Conn, openai_fake: FakeLLM) -> None:
    ws = make_workspace(db)
    insert(db, "ai_budgets", workspace_id=ws.id, monthly_tokens=100)
    task_id = create_task(db, ws.id, "summarization", {"text": "Long text. " * 20})

    outcome = process_task(db, task_id, runtime(openai_fake))

    task = task_row(db, task_id)
    assert outcome.status == "failed"
    assert openai_fake.requests == []
    assert task["error_message"].startswith(
        "AI budget exhausted: the workspace monthly token budget is 100 tokens"
    )
    assert (task["model_provider"], task["model_name"], task["tokens_used"]) == (
        "openai",
        "gpt-4o-mini",
        0,
    )
    assert rows(db, "SELECT * FROM ai_usage WHERE workspace_id = %s", ws.id) == []


def test_usage_is_recorded_and_the_next_call_is_refused_once_the_budget_is_spent(
    db: Conn, openai_fake: FakeLLM
) -> None:
    ws = make_workspace(db)
    rt = runtime(openai_fake)
    first = create_task(db, ws.id, "sentiment_analysis", {"text": "good"})
    assert process_task(db, first, rt).status == "completed"
    used = task_row(db, first)["tokens_used"]
    (usage,) = rows(db, "SELECT * FROM ai_usage WHERE workspace_id = %s", ws.id)
    assert (usage["tokens_used"], usage["reserved_tokens"], usage["calls"]) == (used, 0, 1)
    assert float(usage["cost_cents"]) == pytest.approx(
        float(task_row(db, first)["cost_exact_cents"])
    )

    insert(db, "ai_budgets", workspace_id=ws.id, monthly_tokens=used + 200)
    second = create_task(db, ws.id, "sentiment_analysis", {"text": "bad"})
    assert process_task(db, second, rt).status == "failed"
    assert "budget" in task_row(db, second)["error_message"]
    assert len(openai_fake.requests) == 1


def test_cost_budget_of_an_automation_applies_to_its_tasks_only(
    db: Conn, openai_fake: FakeLLM
) -> None:
    ws = make_workspace(db)
    automation = insert(
        db,
        "automations",
        workspace_id=ws.id,
        name="score leads",
        trigger_type="manual",
        trigger_config=Jsonb({}),
        actions=Jsonb([]),
    )
    execution = insert(
        db, "automation_executions", automation_id=automation, workspace_id=ws.id, status="waiting"
    )
    insert(db, "ai_budgets", workspace_id=ws.id, automation_id=automation, monthly_cost_cents=0)
    recorder = Recorder()
    rt = runtime(openai_fake, recorder=recorder)
    task_id = create_task(db, ws.id, "lead_scoring", {"notes": "x"})
    db.execute(
        "UPDATE ai_tasks SET input = input || %s WHERE id = %s",
        (Jsonb({"execution_id": str(execution), "step_id": "score"}), task_id),
    )
    other = create_task(db, ws.id, "lead_scoring", {"notes": "y"})

    assert process_task(db, task_id, rt).status == "failed"
    assert process_task(db, other, rt).status == "completed"

    task = task_row(db, task_id)
    assert task["automation_id"] == automation
    assert task["error_message"].startswith(f"AI budget exhausted: the automation {automation}")
    assert recorder.woken == [[str(execution)]]  # the waiting execution hears of the failure


def test_a_dead_workers_reservation_is_released_when_the_task_is_claimed_again(
    db: Conn, openai_fake: FakeLLM
) -> None:
    ws = make_workspace(db)
    rt = runtime(openai_fake)
    task_id = create_task(db, ws.id, "sentiment_analysis", {"text": "x"})
    # A worker claimed and reserved, then died (its lease is long stale).
    db.execute(
        "INSERT INTO ai_usage (workspace_id, month, reserved_tokens, reserved_cents)"
        " VALUES (%s, date_trunc('month', now() AT TIME ZONE 'UTC')::date, 900, 0.5)",
        (ws.id,),
    )
    reservation = {
        "month": time.strftime("%Y-%m-01", time.gmtime()),
        "automation_id": None,
        "tokens": 900,
        "cents": 0.5,
    }
    db.execute(
        "UPDATE ai_tasks SET status = 'processing', budget_reservation = %s,"
        " updated_at = now() - interval '1 hour' WHERE id = %s",
        (Jsonb(reservation), task_id),
    )

    assert process_task(db, task_id, rt).status == "completed"

    (usage,) = rows(db, "SELECT * FROM ai_usage WHERE workspace_id = %s", ws.id)
    assert (usage["reserved_tokens"], float(usage["reserved_cents"])) == (0, 0.0)


# --- cache, idempotency, cancellation ------------------------------------------------------


def test_a_rerun_with_the_same_input_is_served_from_the_cache(
    db: Conn, openai_fake: FakeLLM
) -> None:
    ws = make_workspace(db)
    records = seed_records(db, ws)
    rt = runtime(openai_fake)
    content = {"text": "We love the product"}
    first = create_task(
        db, ws.id, "sentiment_analysis", content, record=record_of(records, "email")
    )
    second = create_task(
        db, ws.id, "sentiment_analysis", content, record=record_of(records, "email")
    )

    process_task(db, first, rt)
    process_task(db, second, rt)

    a, b = task_row(db, first), task_row(db, second)
    assert len(openai_fake.requests) == 1
    assert (b["status"], b["cache_hit"], b["tokens_used"], b["cost_cents"]) == (
        "completed",
        True,
        0,
        0,
    )
    assert b["output"] == a["output"] and b["input_hash"] == a["input_hash"]
    assert b["model_provider"] == "openai"
    assert b["write_back"] == a["write_back"]
    # Another workspace never sees this workspace's answers.
    other = make_workspace(db, "other")
    third = create_task(db, other.id, "sentiment_analysis", content)
    process_task(db, third, rt)
    assert task_row(db, third)["cache_hit"] is False


def test_a_duplicate_message_does_nothing(db: Conn, openai_fake: FakeLLM) -> None:
    ws = make_workspace(db)
    rt = runtime(openai_fake)
    task_id = create_task(db, ws.id, "summarization", {"text": "One. Two."})

    assert process_task(db, task_id, rt).status == "completed"
    assert process_task(db, task_id, rt).status == "skipped"
    assert process_task(db, uuid.uuid4(), rt).status == "skipped"
    assert len(openai_fake.requests) == 1


def test_cancelled_while_processing_rolls_the_write_back_back(
    db: Conn, openai_fake: FakeLLM
) -> None:
    ws = make_workspace(db)
    records = seed_records(db, ws)
    rt = runtime(openai_fake)
    task_id = create_task(
        db, ws.id, "classification", {"text": "x"}, record=record_of(records, "email")
    )
    original = rt.providers["openai"].complete

    def cancel_then_answer(request: Any) -> Any:
        with psycopg.connect(db.info.dsn, autocommit=True) as other:
            ai_tasks.cancel_tasks(other, [task_id])
        return original(request)

    rt.providers["openai"].complete = cancel_then_answer  # type: ignore[method-assign]

    outcome = process_task(db, task_id, rt)

    assert outcome.status == "cancelled"
    assert task_row(db, task_id)["status"] == "cancelled"
    assert row(db, "emails", records.email)["category"] is None


def test_the_executor_input_shape_is_understood_and_its_execution_woken(
    db: Conn, openai_fake: FakeLLM
) -> None:
    ws = make_workspace(db)
    records = seed_records(db, ws)
    execution_id = str(uuid.uuid4())
    task_id = uuid.uuid4()
    # As workers/executor.py writes it (flat input, requested provider/model on the row).
    db.execute(
        "INSERT INTO ai_tasks (id, workspace_id, type, status, input, model_provider, model_name)"
        " VALUES (%s, %s, 'lead_scoring', 'pending', %s, 'openai', 'gpt-4.1-mini')",
        (
            task_id,
            ws.id,
            Jsonb(
                {
                    "execution_id": execution_id,
                    "step_id": "score",
                    "idempotency_key": f"{execution_id}:score",
                    "input": {"notes": "demo requested"},
                    "write_back": True,
                    "record": {"entity": "contact", "id": str(records.contact)},
                    "provider": "openai",
                    "model": "gpt-4.1-mini",
                }
            ),
        ),
    )
    recorder = Recorder()

    outcome = process_task(db, task_id, runtime(openai_fake, recorder=recorder))

    task = task_row(db, task_id)
    assert outcome.status == "completed"
    assert task["model_name"] == "gpt-4.1-mini"
    assert openai_fake.requests[0].json["model"] == "gpt-4.1-mini"
    assert recorder.woken == [[execution_id]]
    assert row(db, "contacts", records.contact)["score"] == task["output"]["score"]


def test_write_back_false_leaves_the_record_alone(db: Conn, openai_fake: FakeLLM) -> None:
    ws = make_workspace(db)
    records = seed_records(db, ws)
    task_id = create_task(
        db,
        ws.id,
        "sentiment_analysis",
        {"text": "bad"},
        record=record_of(records, "email"),
        write_back=False,
    )

    process_task(db, task_id, runtime(openai_fake))

    assert row(db, "emails", records.email)["sentiment"] is None
    assert task_row(db, task_id)["write_back"] == {"skipped": "write_back is false for this task"}


def test_another_workspaces_record_is_invisible_to_the_write_back(
    db: Conn, openai_fake: FakeLLM
) -> None:
    ws, other = make_workspace(db), make_workspace(db, "victim")
    theirs = seed_records(db, other)
    task_id = create_task(
        db, ws.id, "sentiment_analysis", {"text": "bad"}, record=record_of(theirs, "email")
    )

    process_task(db, task_id, runtime(openai_fake))

    task = task_row(db, task_id)
    assert task["status"] == "completed"
    assert "not visible" in task["write_back"]["skipped"]
    assert row(db, "emails", theirs.email)["sentiment"] is None
    assert '"Globex"' not in openai_fake.requests[0].json["messages"][1]["content"]


# --- routing: ai_models, keys, the offline provider ------------------------------------------


def test_the_workspace_ai_models_row_chooses_provider_and_model(
    db: Conn, openai_fake: FakeLLM, anthropic_fake: FakeLLM
) -> None:
    ws = make_workspace(db)
    insert(
        db,
        "ai_models",
        workspace_id=ws.id,
        name="scoring",
        type="analysis",
        provider="openai",
        model_id="gpt-4o",
    )
    insert(
        db,
        "ai_models",
        workspace_id=ws.id,
        name="triage",
        type="classification",
        provider="anthropic",
        model_id="claude-test-large",
        config=Jsonb({"task_types": ["contact_enrichment"]}),
    )
    rt = runtime(openai_fake, anthropic_fake)
    enrichment = create_task(db, ws.id, "contact_enrichment", {"signature": "x"})
    extraction = create_task(db, ws.id, "entity_extraction", {"text": "x"})

    process_task(db, enrichment, rt)
    process_task(db, extraction, rt)

    assert (task_row(db, enrichment)["model_provider"], task_row(db, enrichment)["model_name"]) == (
        "anthropic",
        "claude-test-large",
    )
    assert (task_row(db, extraction)["model_provider"], task_row(db, extraction)["model_name"]) == (
        "openai",
        "gpt-4o",
    )


def test_a_provider_without_a_key_fails_and_is_never_replaced_by_offline(
    db: Conn, openai_fake: FakeLLM
) -> None:
    ws = make_workspace(db)
    task_id = create_task(db, ws.id, "summarization", {"text": "x."}, provider="anthropic")

    process_task(db, task_id, runtime(openai_fake))

    task = task_row(db, task_id)
    assert task["status"] == "failed"
    assert "ANTHROPIC_API_KEY is not set" in task["error_message"]
    assert task["model_provider"] == "anthropic"
    assert openai_fake.requests == []


def test_with_no_key_at_all_the_offline_provider_answers_and_says_so(db: Conn) -> None:
    ws = make_workspace(db)
    records = seed_records(db, ws)
    task_id = create_task(
        db,
        ws.id,
        "summarization",
        {"text": "Kick-off done. Please send the plan."},
        record=record_of(records, "contact"),
    )

    process_task(db, task_id, runtime())

    task = task_row(db, task_id)
    assert (task["status"], task["model_provider"], task["model_name"]) == (
        "completed",
        "offline",
        "offline-heuristic-v1",
    )
    assert task["cost_cents"] == 0
    assert task["output"]["summary"].startswith("[offline]")
    note = row(db, "notes", uuid.uuid5(KEY_NAMESPACE, f"ai-task:{task_id}:note"))
    assert "offline heuristics, not a model" in note["content"]


def test_offline_answers_validate_for_every_task_type() -> None:
    from workers.providers.base import StructuredRequest
    from workers.providers.offline import OfflineProvider

    for name in TASK_TYPES:
        tt = task_type(name)
        system, prompt = tt.render(CASES[name][1], {"title": "CEO", "value": 10}, "deal")
        request = StructuredRequest(
            name, "m", system, prompt, tt.schema_name, tt.sent_schema, 100, 1
        )
        assert tt.validate(OfflineProvider().complete(request).data) is None, name


def test_responses_api_is_spoken_when_configured(db: Conn, openai_fake: FakeLLM) -> None:
    ws = make_workspace(db)
    task_id = create_task(db, ws.id, "classification", {"text": "invoice question"})

    process_task(db, task_id, runtime(openai_fake, HASTE_OPENAI_API="responses"))

    assert task_row(db, task_id)["status"] == "completed"
    (request,) = openai_fake.requests
    assert request.path == "/v1/responses"
    assert request.json["text"]["format"]["type"] == "json_schema"


def test_an_unknown_model_is_priced_conservatively() -> None:
    from workers.ai_routing import cost_cents, price_of

    assert price_of("gpt-4o-mini-2024-07-18") == (15.0, 60.0)
    assert price_of("offline-heuristic-v1") == (0.0, 0.0)
    assert price_of("some-new-model") == price_of("*", None)
    assert cost_cents("gpt-4o-mini", 1_000_000, 1_000_000) == 75.0
    assert price_of("x", {"x": (1.0, 2.0)}) == (1.0, 2.0)
