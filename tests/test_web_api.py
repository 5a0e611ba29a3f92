"""The operator/CRM API over real HTTP: workspace API keys, manual and bulk triggers,
execution history with cursor pages, rerun / cancel / redrive, the decision log, and
tenant isolation (another workspace's things are 404, never 403)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from engine.automations import Workspace, deploy
from engine.db import make_pool
from engine.services import Services
from engine.web.auth import create_key, revoke_key
from tests.fakes.crm import Workspace as FakeWorkspace
from tests.fakes.crm import make_contact
from tests.fakes.executions import queue_executions
from tests.web_support import MANUAL_DOC, Server, engine_workspace, module_database, serving
from triggers.listener import Listener
from workers import broker as broker_module
from workers.executor import Executor
from workers.heartbeat import Heartbeat

FAILING_DOC = {
    "name": "fails",
    "trigger_type": "manual",
    "trigger_config": {"entity_type": "contact"},
    "actions": [
        {"id": "note", "type": "add_note", "params": {"content": "hello"}},
        {
            "id": "steal",
            "type": "add_tag",
            "params": {
                "tag": "x",
                "record": {"entity": "contact", "id": "00000000-0000-4000-8000-000000000000"},
            },
        },
    ],
}
BULK_MAX = 5


@dataclass
class Tenant:
    workspace: Workspace
    key: str
    manual_id: uuid.UUID
    failing_id: uuid.UUID
    contacts: list[uuid.UUID]

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@pytest.fixture(scope="module")
def module_db_url(admin_url: str, template_db: str) -> Iterator[str]:
    with module_database(admin_url, template_db) as url:
        yield url


@pytest.fixture(scope="module")
def web(module_db_url: str, services: Services) -> Iterator[Server]:
    broker_module.configure(services.redis_url)
    with serving(module_db_url, services.redis_url, HASTE_API_BULK_MAX=str(BULK_MAX)) as server:
        yield server


@pytest.fixture
def db(module_db_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(module_db_url, autocommit=True) as conn:
        yield conn


def tenant(db: psycopg.Connection[Any], name: str) -> Tenant:
    ws = engine_workspace(db, name)
    fake = FakeWorkspace(ws.id, uuid.uuid4())
    return Tenant(
        ws,
        create_key(db, ws, "tests").key,
        deploy(db, ws, MANUAL_DOC).automation_id,
        deploy(db, ws, FAILING_DOC).automation_id,
        [make_contact(db, fake) for _ in range(3)],
    )


@pytest.fixture
def a(db: psycopg.Connection[Any]) -> Tenant:
    return tenant(db, "alpha")


@pytest.fixture
def b(db: psycopg.Connection[Any]) -> Tenant:
    return tenant(db, "beta")


def call(web: Server, who: Tenant | None, method: str, path: str, **kwargs: Any) -> httpx.Response:
    headers = who.auth if who else {}
    return httpx.request(method, web.url + path, headers=headers, timeout=10, **kwargs)


def drain(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        Listener(db_url, enqueue=lambda ids: None, hooks=[]).drain(conn)


@pytest.fixture
def failed_run(db: psycopg.Connection[Any], module_db_url: str, a: Tenant) -> uuid.UUID:
    """One execution of `fails`, run by a real executor to its failed second step."""
    fake = FakeWorkspace(a.workspace.id, uuid.uuid4())
    (run,) = queue_executions(db, fake, (a.failing_id, 1), [a.contacts[0]])
    pool = make_pool(module_db_url, max_size=2, name="test-web-api")
    executor = Executor(pool=pool, heartbeat=Heartbeat(module_db_url, 5.0))
    try:
        assert executor.run(str(run)) == "failed"
    finally:
        executor.heartbeat.stop()
        pool.close()
    return run


# --- keys ----------------------------------------------------------------------------------


def test_requests_without_a_live_key_are_401(web: Server, db, a: Tenant) -> None:
    assert call(web, None, "GET", "/api/v1/automations").status_code == 401
    answer = httpx.get(
        web.url + "/api/v1/automations", headers={"Authorization": "Bearer hk_made_up"}
    )
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith("Bearer")

    revoke_key(db, a.workspace, a.key[:11])

    assert call(web, a, "GET", "/api/v1/automations").status_code == 401


def test_keys_are_stored_as_hashes_only(db, a: Tenant) -> None:
    stored = db.execute(
        "SELECT prefix, key_hash FROM api_keys WHERE workspace_id = %s", (a.workspace.id,)
    ).fetchone()
    assert stored[0] == a.key[:11]
    assert a.key not in str(stored) and len(bytes(stored[1])) == 32


# --- tenant isolation ----------------------------------------------------------------------


def test_a_key_cannot_read_or_touch_another_workspace(
    web: Server, db, module_db_url: str, a: Tenant, b: Tenant
) -> None:
    fake_b = FakeWorkspace(b.workspace.id, uuid.uuid4())
    (b_run,) = queue_executions(db, fake_b, (b.manual_id, 1), [b.contacts[0]])
    b_event = call(
        web,
        b,
        "POST",
        f"/api/v1/automations/{b.manual_id}/trigger",
        json={"record_id": str(b.contacts[1])},
    ).json()["events"][0]["event_id"]
    drain(module_db_url)

    names = {r["name"] for r in call(web, a, "GET", "/api/v1/automations").json()["items"]}
    assert names == {"enrich", "fails"}
    refused = [
        ("GET", f"/api/v1/automations/{b.manual_id}", None),
        ("GET", f"/api/v1/automations/{b.manual_id}/versions", None),
        ("POST", f"/api/v1/automations/{b.manual_id}/disable", None),
        ("POST", f"/api/v1/automations/{b.manual_id}/trigger", {"record_id": str(b.contacts[0])}),
        ("POST", f"/api/v1/automations/{b.manual_id}/redrive", {"since": "2020-01-01T00:00:00Z"}),
        ("POST", f"/api/v1/automations/{a.manual_id}/trigger", {"record_id": str(b.contacts[0])}),
        ("GET", f"/api/v1/executions/{b_run}", None),
        ("POST", f"/api/v1/executions/{b_run}/rerun", None),
        ("POST", f"/api/v1/executions/{b_run}/cancel", None),
        ("GET", f"/api/v1/events/{b_event}/decisions", None),
    ]
    for method, path, body in refused:
        answer = call(web, a, method, path, json=body)
        assert answer.status_code == 404, (method, path, answer.text)
    listed = call(web, a, "GET", "/api/v1/executions", params={"automation": str(b.manual_id)})
    assert listed.json()["items"] == []
    record = call(
        web, a, "GET", "/api/v1/decisions", params={"record": f"contacts/{b.contacts[1]}"}
    )
    assert record.json()["items"] == []
    # Nothing of B's changed: its run is still queued, its automation enabled.
    assert (
        db.execute("SELECT status FROM automation_executions WHERE id = %s", (b_run,)).fetchone()[0]
        == "queued"
    )
    assert db.execute("SELECT enabled FROM automations WHERE id = %s", (b.manual_id,)).fetchone()[0]


# --- automations and triggers --------------------------------------------------------------


def test_automations_show_enable_disable(web: Server, a: Tenant) -> None:
    shown = call(web, a, "GET", "/api/v1/automations/enrich").json()
    assert shown["id"] == str(a.manual_id) and shown["document"]["trigger_type"] == "manual"

    off = call(web, a, "POST", "/api/v1/automations/enrich/disable")
    assert off.json() == {"id": str(a.manual_id), "name": "enrich", "enabled": False}
    refused = call(
        web, a, "POST", "/api/v1/automations/enrich/trigger", json={"record_id": str(a.contacts[0])}
    )
    assert (refused.status_code, refused.json()["code"]) == (409, "disabled")
    assert call(web, a, "POST", "/api/v1/automations/enrich/enable").json()["enabled"] is True
    assert call(web, a, "GET", "/api/v1/automations/nope").status_code == 404


def test_a_manual_trigger_emits_one_event_per_record_and_the_listener_runs_them(
    web: Server, db, module_db_url: str, a: Tenant
) -> None:
    answer = call(
        web,
        a,
        "POST",
        "/api/v1/automations/enrich/trigger",
        json={"record_ids": [str(c) for c in a.contacts], "input": {"reason": "vip"}},
    )

    assert answer.status_code == 202, answer.text
    events = answer.json()["events"]
    assert [e["record_id"] for e in events] == [str(c) for c in a.contacts]
    rows = db.execute(
        "SELECT event_type, entity_type, entity_id, payload FROM automation_events"
        " WHERE automation_id = %s ORDER BY id",
        (a.manual_id,),
    ).fetchall()
    assert rows == [("manual", "contact", c, {"reason": "vip"}) for c in a.contacts]

    drain(module_db_url)

    runs = db.execute(
        "SELECT trigger_entity_id FROM automation_executions WHERE automation_id = %s",
        (a.manual_id,),
    ).fetchall()
    assert sorted(r[0] for r in runs) == sorted(a.contacts)
    why = call(web, a, "GET", "/api/v1/decisions", params={"record": f"contacts/{a.contacts[0]}"})
    matched = [d for d in why.json()["items"] if d["outcome"] == "matched"]
    assert matched and matched[0]["description"].startswith("ran: execution")
    by_event = call(web, a, "GET", f"/api/v1/events/{events[0]['event_id']}/decisions").json()
    assert [d["automation"] for d in by_event["items"]] == ["enrich"]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"record_ids": []}, 422, "invalid_request"),
        ({}, 422, "invalid_request"),
        ({"record_id": "not-a-uuid"}, 422, "invalid_request"),
        ({"record_id": "{c0}", "input": {"reason": "x" * 50}}, 422, "invalid_input"),
        ({"record_id": "{c0}", "input": {"other": 1}}, 422, "invalid_input"),
        ({"record_ids": [str(uuid.uuid4()) for _ in range(BULK_MAX + 1)]}, 422, "too_many_records"),
        ({"record_id": str(uuid.uuid4())}, 404, "record_not_found"),
        ({"record_id": "{c0}", "input": {"reason": "a\u0000b"}}, 400, "malformed"),
    ],
)
def test_a_refused_trigger_writes_nothing(
    web: Server, db, a: Tenant, body: dict[str, Any], status: int, code: str
) -> None:
    if body.get("record_id") == "{c0}":
        body = {**body, "record_id": str(a.contacts[0])}

    answer = call(web, a, "POST", "/api/v1/automations/enrich/trigger", json=body)

    assert (answer.status_code, answer.json()["code"]) == (status, code), answer.text
    assert answer.json().get("errors") is None or all(
        "pointer" in e for e in answer.json()["errors"]
    )
    written = db.execute(
        "SELECT count(*) FROM automation_events WHERE automation_id = %s", (a.manual_id,)
    ).fetchone()[0]
    assert written == 0


def test_invalid_input_names_the_pointer(web: Server, a: Tenant) -> None:
    answer = call(
        web,
        a,
        "POST",
        "/api/v1/automations/enrich/trigger",
        json={"record_id": str(a.contacts[0]), "input": {"reason": "x" * 50}},
    )

    assert answer.json()["errors"][0]["pointer"] == "/input/reason"


def test_only_manual_automations_can_be_triggered(web: Server, db, a: Tenant) -> None:
    deploy(
        db,
        a.workspace,
        {
            "name": "on-create",
            "trigger_type": "contact_created",
            "trigger_config": {},
            "actions": [{"id": "n", "type": "add_note", "params": {"content": "x"}}],
        },
    )
    answer = call(
        web,
        a,
        "POST",
        "/api/v1/automations/on-create/trigger",
        json={"record_id": str(a.contacts[0])},
    )
    assert (answer.status_code, answer.json()["code"]) == (409, "not_manual")


# --- executions ----------------------------------------------------------------------------


def test_executions_are_paged_newest_first_with_a_cursor(web: Server, db, a: Tenant) -> None:
    fake = FakeWorkspace(a.workspace.id, uuid.uuid4())
    runs = queue_executions(db, fake, (a.manual_id, 1), [None] * 7)
    for age, run in enumerate(runs):  # distinct queued_at: runs[0] newest
        db.execute(
            "UPDATE automation_executions SET queued_at = now() - make_interval(mins => %s)"
            " WHERE id = %s",
            (age, run),
        )
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"automation": "enrich", "limit": 3, **({"cursor": cursor} if cursor else {})}
        page = call(web, a, "GET", "/api/v1/executions", params=params).json()
        seen += [r["id"] for r in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert seen == [str(r) for r in runs] and pages == 3
    until = (datetime.now(UTC) - timedelta(minutes=4, seconds=30)).isoformat()
    older = call(web, a, "GET", "/api/v1/executions", params={"until": until}).json()
    assert [r["id"] for r in older["items"]] == [str(r) for r in runs[5:]]
    bad = call(web, a, "GET", "/api/v1/executions", params={"status": "lost"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["pointer"] == "/status"


def test_an_execution_shows_its_steps_and_can_be_rerun_and_cancelled(
    web: Server, db, a: Tenant, failed_run: uuid.UUID
) -> None:
    shown = call(web, a, "GET", f"/api/v1/executions/{failed_run}").json()
    assert shown["status"] == "failed"
    steps = {s["step_id"]: s for s in shown["steps"]}
    assert steps["note"]["status"] == "completed" and steps["note"]["output"] is not None
    assert steps["steal"]["status"] == "failed" and steps["steal"]["error"]
    failed = call(web, a, "GET", "/api/v1/executions", params={"status": "failed"}).json()
    assert str(failed_run) in [r["id"] for r in failed["items"]]

    rerun = call(web, a, "POST", f"/api/v1/executions/{failed_run}/rerun")
    assert (rerun.status_code, rerun.json()["status"]) == (202, "queued")
    again = call(web, a, "POST", f"/api/v1/executions/{failed_run}/rerun")
    assert again.status_code == 409

    cancelled = call(web, a, "POST", f"/api/v1/executions/{failed_run}/cancel")
    assert cancelled.json() == {"id": str(failed_run), "status": "cancelled"}
    assert call(web, a, "POST", f"/api/v1/executions/{failed_run}/cancel").status_code == 409
    assert call(web, a, "GET", f"/api/v1/executions/{uuid.uuid4()}").status_code == 404
    assert call(web, a, "GET", "/api/v1/executions/not-a-uuid").status_code == 404


def test_redrive_counts_first_then_requeues(
    web: Server, db, a: Tenant, failed_run: uuid.UUID
) -> None:
    body = {"since": (datetime.now(UTC) - timedelta(hours=1)).isoformat(), "dry_run": True}
    counted = call(web, a, "POST", "/api/v1/automations/fails/redrive", json=body).json()
    assert counted == {"dry_run": True, "count": 1, "execution_ids": [str(failed_run)]}
    status = db.execute(
        "SELECT status FROM automation_executions WHERE id = %s", (failed_run,)
    ).fetchone()[0]
    assert status == "failed"

    done = call(
        web, a, "POST", "/api/v1/automations/fails/redrive", json={**body, "dry_run": False}
    )

    assert done.json()["count"] == 1
    status = db.execute(
        "SELECT status FROM automation_executions WHERE id = %s", (failed_run,)
    ).fetchone()[0]
    assert status == "queued"
