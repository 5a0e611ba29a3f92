"""Webhook intake over real HTTP (uvicorn on loopback), signed by the standardwebhooks
library as a sender signs: one event per webhook-id, the right 4xx and nothing written for
everything else, secret rotation with an overlap."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from prometheus_client import REGISTRY

from engine.automations import set_enabled
from engine.services import Services
from engine.web.endpoints import add_secret, generate_secret
from engine.web.webhooks import TARGET_TTL
from tests.fakes.crm import Workspace as FakeWorkspace
from tests.fakes.crm import make_contact
from tests.web_support import (
    WEBHOOK_DOC,
    Hook,
    Server,
    engine_workspace,
    module_database,
    serving,
    signed,
    stale,
    webhook_automation,
)
from triggers.listener import Listener

MAX_BYTES = 4096


@pytest.fixture(scope="module")
def module_db_url(admin_url: str, template_db: str) -> Iterator[str]:
    with module_database(admin_url, template_db) as url:
        yield url


@pytest.fixture(scope="module")
def web(module_db_url: str, services: Services) -> Iterator[Server]:
    with serving(
        module_db_url, services.redis_url, HASTE_WEBHOOK_MAX_BYTES=str(MAX_BYTES)
    ) as server:
        yield server


@pytest.fixture
def db(module_db_url: str) -> Iterator[psycopg.Connection[Any]]:
    """The module's database (tests count only their own automation's rows)."""
    with psycopg.connect(module_db_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def db_url(module_db_url: str) -> str:
    return module_db_url


@pytest.fixture
def hook(db: psycopg.Connection[Any]) -> Hook:
    return webhook_automation(db, engine_workspace(db))


def post(web: Server, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(web.url + path, content=body, headers=headers, timeout=10)


def rejects(reason: str) -> float:
    return REGISTRY.get_sample_value("haste_webhook_rejects_total", {"reason": reason}) or 0.0


def webhook_events(db: psycopg.Connection[Any], hook: Hook) -> int:
    """Outbox rows aimed at this test's automation."""
    return db.execute(
        "SELECT count(*) FROM automation_events WHERE automation_id = %s", (hook.automation_id,)
    ).fetchone()[0]


def receipts(db: psycopg.Connection[Any], hook: Hook) -> int:
    return db.execute(
        "SELECT count(*) FROM webhook_receipts WHERE workspace_id = %s", (hook.workspace.id,)
    ).fetchone()[0]


def executions(db: psycopg.Connection[Any], hook: Hook) -> int:
    return db.execute(
        "SELECT count(*) FROM automation_executions WHERE automation_id = %s",
        (hook.automation_id,),
    ).fetchone()[0]


def nothing_written(db: psycopg.Connection[Any], hook: Hook) -> bool:
    return webhook_events(db, hook) == 0 and receipts(db, hook) == 0


def drain(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        Listener(db_url, enqueue=lambda ids: None, hooks=[]).drain(conn)


def test_a_signed_webhook_becomes_one_event_and_one_execution(
    web: Server, hook: Hook, db: psycopg.Connection[Any], db_url: str
) -> None:
    contact = make_contact(db, _ws(hook))
    body, headers = signed(hook.secret, {"contact_id": str(contact), "mrr": 120})

    answer = post(web, hook.path, body, headers)

    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] == "accepted"
    event = db.execute(
        "SELECT id, event_type, automation_id, entity_type, entity_id, payload"
        " FROM automation_events WHERE automation_id = %s",
        (hook.automation_id,),
    ).fetchall()
    assert len(event) == 1
    event_id, event_type, automation_id, entity_type, entity_id, payload = event[0]
    assert answer.json() == {
        "status": "accepted",
        "event_id": event_id,
        "webhook_id": headers["webhook-id"],
    }
    assert (event_type, automation_id, entity_type, entity_id) == (
        "webhook",
        hook.automation_id,
        "contact",
        contact,
    )
    assert payload["mrr"] == 120 and payload["_webhook"]["id"] == headers["webhook-id"]

    drain(db_url)

    rows = db.execute(
        "SELECT automation_id, event_id, trigger_entity_id FROM automation_executions"
        " WHERE automation_id = %s",
        (hook.automation_id,),
    ).fetchall()
    assert rows == [(hook.automation_id, event_id, contact)]


def test_a_replayed_webhook_id_gets_the_first_answer_and_starts_nothing_more(
    web: Server, hook: Hook, db: psycopg.Connection[Any], db_url: str
) -> None:
    contact = str(make_contact(db, _ws(hook)))
    body, headers = signed(hook.secret, {"contact_id": contact, "mrr": 1}, msg_id="msg_1")
    first = post(web, hook.path, body, headers)
    # A sender's retry: same id, signed again with a new timestamp.
    body, headers = signed(hook.secret, {"contact_id": contact, "mrr": 1}, msg_id="msg_1")
    again = post(web, hook.path, body, headers)

    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert webhook_events(db, hook) == 1
    drain(db_url)
    assert executions(db, hook) == 1


def test_concurrent_deliveries_of_one_webhook_id_make_one_event(
    web: Server, hook: Hook, db: psycopg.Connection[Any]
) -> None:
    contact = str(make_contact(db, _ws(hook)))
    body, headers = signed(hook.secret, {"contact_id": contact, "mrr": 5}, msg_id="msg_race")
    answers: list[httpx.Response] = []
    go = threading.Barrier(8)

    def send() -> None:
        go.wait()
        answers.append(post(web, hook.path, body, headers))

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert {a.status_code for a in answers} == {202}
    assert len({a.json()["event_id"] for a in answers}) == 1
    assert webhook_events(db, hook) == 1
    assert receipts(db, hook) == 1


def _ws(hook: Hook) -> FakeWorkspace:
    return FakeWorkspace(hook.workspace.id, uuid.uuid4())


def _valid(db: psycopg.Connection[Any], hook: Hook) -> dict[str, Any]:
    return {"contact_id": str(make_contact(db, _ws(hook))), "mrr": 10}


def _tampered(db, hook):
    body, headers = signed(hook.secret, _valid(db, hook))
    return body.replace(b"10", b"99"), headers


def _wrong_secret(db, hook):
    return signed(generate_secret(), _valid(db, hook))


def _stale(db, hook):
    return signed(hook.secret, _valid(db, hook), at=stale())


def _oversize(db, hook):
    return signed(hook.secret, {**_valid(db, hook), "pad": "x" * MAX_BYTES})


def _not_json(db, hook):
    return signed(hook.secret, b"{not json")


def _not_an_object(db, hook):
    return signed(hook.secret, [1, 2, 3])


def _text_plain(db, hook):
    return signed(hook.secret, _valid(db, hook), content_type="text/plain")


def _unsigned(db, hook):
    body, headers = signed(hook.secret, _valid(db, hook))
    del headers["webhook-signature"]
    return body, headers


def _garbled_signature(db, hook):
    body, headers = signed(hook.secret, _valid(db, hook))
    headers["webhook-signature"] = "v1 nonsense v2,abc ,"
    return body, headers


def _schema_violation(db, hook):
    return signed(hook.secret, {**_valid(db, hook), "mrr": "lots"})


def _record_not_a_uuid(db, hook):
    return signed(hook.secret, {"contact_id": "nope", "mrr": 1})


def _nul_in_string(db, hook):
    return signed(hook.secret, {**_valid(db, hook), "note": "a\u0000b"})


@pytest.mark.parametrize(
    ("make", "status", "reason"),
    [
        (_tampered, 401, "bad_signature"),
        (_wrong_secret, 401, "bad_signature"),
        (_garbled_signature, 401, "bad_signature"),
        (_stale, 401, "stale_timestamp"),
        (_unsigned, 401, "missing_signature"),
        (_oversize, 413, "too_large"),
        (_not_json, 400, "malformed"),
        (_not_an_object, 400, "malformed"),
        (_nul_in_string, 400, "malformed"),
        (_text_plain, 415, "unsupported_media_type"),
        (_schema_violation, 422, "invalid_payload"),
        (_record_not_a_uuid, 422, "invalid_payload"),
    ],
)
def test_a_bad_webhook_gets_its_4xx_writes_nothing_and_is_counted(
    web: Server, hook: Hook, db: psycopg.Connection[Any], make: Any, status: int, reason: str
) -> None:
    body, headers = make(db, hook)
    before = rejects(reason)

    answer = post(web, hook.path, body, headers)

    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["code"] == reason
    assert nothing_written(db, hook)
    assert rejects(reason) == before + 1


def test_payload_schema_violations_name_the_json_pointer(
    web: Server, hook: Hook, db: psycopg.Connection[Any]
) -> None:
    body, headers = signed(hook.secret, {"contact_id": "x", "mrr": "lots"})

    answer = post(web, hook.path, body, headers)

    assert answer.status_code == 422
    pointers = {e["pointer"] for e in answer.json()["errors"]}
    assert pointers == {"/contact_id", "/mrr"}


def test_unknown_hook_is_404_and_disabled_automation_is_409(
    web: Server, hook: Hook, db: psycopg.Connection[Any]
) -> None:
    body, headers = signed(hook.secret, _valid(db, hook))
    assert post(web, "/hooks/" + "x" * 32, body, headers).status_code == 404

    set_enabled(db, hook.workspace, WEBHOOK_DOC["name"], False)
    answer = post(web, hook.path, body, headers)

    assert answer.status_code == 409 and answer.json()["code"] == "disabled"
    assert nothing_written(db, hook)


def test_a_retry_of_an_accepted_webhook_is_answered_even_after_a_disable(
    web: Server, hook: Hook, db: psycopg.Connection[Any]
) -> None:
    body, headers = signed(hook.secret, _valid(db, hook))
    first = post(web, hook.path, body, headers)
    set_enabled(db, hook.workspace, WEBHOOK_DOC["name"], False)

    again = post(web, hook.path, body, headers)

    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json() == first.json()


def test_a_chunked_body_is_cut_off_at_the_limit(web: Server, hook: Hook, db) -> None:
    body, headers = signed(hook.secret, {**_valid(db, hook), "pad": "y" * (3 * MAX_BYTES)})

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(body), 1024):
            yield body[i : i + 1024]

    answer = httpx.post(web.url + hook.path, content=chunks(), headers=headers, timeout=10)

    assert answer.status_code == 413
    assert nothing_written(db, hook)


def test_a_rotated_secret_and_the_old_one_both_verify_during_the_overlap(
    web: Server, hook: Hook, db: psycopg.Connection[Any]
) -> None:
    rotated = add_secret(db, hook.workspace, WEBHOOK_DOC["name"], overlap=3600)

    old = post(web, hook.path, *signed(hook.secret, _valid(db, hook)))
    new = post(web, hook.path, *signed(rotated.secret, _valid(db, hook)))

    assert (old.status_code, new.status_code) == (202, 202)
    assert rotated.previous_valid_until is not None

    # A revocation takes effect within the intake's look-up cache lifetime (1 s);
    # this test looks at the stored state, not at the cache.
    web.app.state.intake.target_ttl = 0
    revoked = add_secret(db, hook.workspace, WEBHOOK_DOC["name"], overlap=0)
    assert post(web, hook.path, *signed(rotated.secret, _valid(db, hook))).status_code == 401
    assert post(web, hook.path, *signed(revoked.secret, _valid(db, hook))).status_code == 202
    assert webhook_events(db, hook) == 3
    web.app.state.intake.target_ttl = TARGET_TTL


def test_a_long_payload_reaches_the_outbox_whole(
    web: Server, hook: Hook, db: psycopg.Connection[Any]
) -> None:
    note = "n" * 1500
    answer = post(web, hook.path, *signed(hook.secret, {**_valid(db, hook), "note": note}))

    assert answer.status_code == 202
    payload = db.execute(
        "SELECT payload FROM automation_events WHERE automation_id = %s", (hook.automation_id,)
    ).fetchone()[0]
    assert payload["note"] == note, json.dumps(payload)[:200]
