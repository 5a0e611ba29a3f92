"""The registry against its contracts: the params schemas, the schema's FKs, retry classes,
and describe() answering without any I/O."""

from __future__ import annotations

import json
import socket
import uuid

import psycopg
import pytest
from fakes.crm import Workspace
from jsonschema import Draft202012Validator

from actions import ACTIONS, EXECUTOR_STEP_TYPES, RETRYABLE_BY_DEFAULT, ActionEnv, ActionError
from actions.records import REFERENCES
from engine.definitions import action_types, load_schemas, registry

WS = Workspace(id=uuid.uuid4(), owner=uuid.uuid4())
CONTACT = str(uuid.uuid4())
DEAL = str(uuid.uuid4())

#: Rendered params per action type, valid against schemas/actions/<type>.json.
SAMPLE_PARAMS = {
    "update_record": {"fields": {"score": 90}, "custom_fields": {"plan": "pro"}},
    "create_record": {"entity": "company", "fields": {"name": "Globex"}},
    "add_tag": {"tag": "vip"},
    "remove_tag": {"tag": "vip"},
    "create_task": {"title": "Call", "due_in": {"days": 2}, "assigned_to": "record_owner"},
    "add_note": {"content": "Hello", "is_pinned": True},
    "log_activity": {"type": "custom", "title": "Entered nurture"},
    "change_deal_stage": {"stage": "Negotiation", "deal": DEAL},
    "assign_owner": {"roles": ["member"], "only_if_unassigned": True},
    "send_email": {"to": "ann@example.com", "subject": "Hi", "body_text": "Hello"},
    "http_request": {
        "url": "https://hooks.example.com/x",
        "json": {"a": 1},
        "headers": {"Authorization": "Bearer secret"},
        "timeout": {"seconds": 5},
    },
}
ENTITY_TABLES = {"contact": "contacts", "company": "companies", "deal": "deals"}
FOREIGN_KEYS = """
SELECT a.attname AS column, c.confrelid::regclass::text AS target
FROM pg_constraint c
JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
WHERE c.contype = 'f' AND c.conrelid = %s::regclass AND a.attname <> 'workspace_id'
"""


def test_every_action_schema_is_an_action_or_an_executor_step_type():
    assert set(action_types()) == set(ACTIONS) | EXECUTOR_STEP_TYPES
    assert not set(ACTIONS) & EXECUTOR_STEP_TYPES


def test_every_action_names_its_type_and_kind():
    for step_type, action in ACTIONS.items():
        assert action.type == step_type
        assert action.kind in ("database", "external")
    assert {t for t, a in ACTIONS.items() if a.kind == "external"} == {"send_email", "http_request"}


@pytest.mark.parametrize("step_type", sorted(SAMPLE_PARAMS))
def test_sample_params_satisfy_the_actions_schema(step_type):
    schema = load_schemas()[f"https://schemas.haste.dev/actions/{step_type}.json"]
    errors = list(
        Draft202012Validator(schema, registry=registry()).iter_errors(SAMPLE_PARAMS[step_type])
    )
    assert errors == []


@pytest.fixture
def no_io(monkeypatch):
    """Any socket connection or database connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("describe() did I/O")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(psycopg, "connect", refuse)


@pytest.mark.parametrize("step_type", sorted(ACTIONS))
def test_describe_answers_without_io(no_io, step_type):
    step = WS.step(
        trigger_entity="contact",
        trigger_entity_id=uuid.UUID(CONTACT),
        env=ActionEnv(smtp_url="smtp://127.0.0.1:1", email_from="bot@x.example"),
    )

    described = ACTIONS[step_type].describe(SAMPLE_PARAMS[step_type], step)

    assert isinstance(described["would"], str) and described["would"]
    json.dumps(described)


def test_describe_of_http_request_hides_secret_headers_and_shows_the_key():
    step = WS.step()

    request = ACTIONS["http_request"].describe(SAMPLE_PARAMS["http_request"], step)["request"]

    assert request["headers"]["Authorization"] == "***"
    assert request["headers"]["Idempotency-Key"] == step.idempotency_key


def test_describe_refuses_an_unknown_column_like_run_does():
    with pytest.raises(ActionError, match="scroe") as caught:
        ACTIONS["update_record"].describe(
            {"fields": {"scroe": 1}},
            WS.step(trigger_entity="contact", trigger_entity_id=uuid.UUID(CONTACT)),
        )

    assert caught.value.error_class == "validation"


def _retry_on_enum(node):
    """The enum of the first ``retry_on`` property anywhere in a schema."""
    if isinstance(node, dict):
        if "retry_on" in node.get("properties", {}):
            return set(node["properties"]["retry_on"]["items"]["enum"])
        children = node.values()
    elif isinstance(node, list):
        children = node
    else:
        return None
    for child in children:
        if (found := _retry_on_enum(child)) is not None:
            return found
    return None


def test_retryable_classes_are_ones_an_author_can_name_in_retry_on():
    schema = load_schemas()["https://schemas.haste.dev/automation.schema.json"]

    assert set(RETRYABLE_BY_DEFAULT) <= _retry_on_enum(schema)


@pytest.mark.parametrize("entity", sorted(ENTITY_TABLES))
def test_every_settable_reference_column_is_checked_for_visibility(db, entity):
    from actions.records import settable_columns

    cur = db.cursor(row_factory=psycopg.rows.dict_row)
    cur.execute(FOREIGN_KEYS, (ENTITY_TABLES[entity],))
    expected = {
        r["column"]: "member" if r["target"] == "users" else r["target"]
        for r in cur.fetchall()
        if r["column"] in settable_columns(entity)
    }

    assert dict(REFERENCES[entity]) == expected
