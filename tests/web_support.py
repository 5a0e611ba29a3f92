"""Helpers of the web tests: haste web served by a real uvicorn on 127.0.0.1 (a thread of
the test process, an ephemeral port), a webhook automation with a secret, and requests
signed by the ``standardwebhooks`` library exactly as a sender signs them."""

from __future__ import annotations

import json
import socket
import threading
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from standardwebhooks.webhooks import Webhook
from starlette.applications import Starlette

from engine.automations import Workspace, deploy, find_workspace
from engine.config import Settings, load_settings
from engine.web.app import create_app
from engine.web.auth import create_key
from engine.web.endpoints import add_secret
from engine.web.server import make_server
from tests.fakes.crm import make_workspace

Conn = psycopg.Connection[Any]

WEBHOOK_DOC: dict[str, Any] = {
    "name": "billing",
    "trigger_type": "webhook",
    "trigger_config": {
        "record": {"path": "trigger.contact_id", "entity_type": "contact"},
        "payload_schema": {
            "type": "object",
            "required": ["contact_id", "mrr"],
            "properties": {
                "contact_id": {"type": "string", "format": "uuid"},
                "mrr": {"type": "number"},
            },
        },
    },
    "actions": [{"id": "note", "type": "add_note", "params": {"content": "mrr {{ trigger.mrr }}"}}],
}

MANUAL_DOC: dict[str, Any] = {
    "name": "enrich",
    "trigger_type": "manual",
    "trigger_config": {
        "entity_type": "contact",
        "input_schema": {
            "type": "object",
            "properties": {"reason": {"type": "string", "maxLength": 20}},
            "additionalProperties": False,
        },
    },
    "actions": [{"id": "note", "type": "add_note", "params": {"content": "manual"}}],
}


@contextmanager
def module_database(admin_url: str, template: str) -> Iterator[str]:
    """A migrated database shared by one module's tests (each test makes its own
    workspace and counts its own rows): one copy and one server instead of one per test."""
    from tests.conftest import create_test_database, drop_test_database, with_dbname

    name = create_test_database(admin_url, template)
    try:
        yield with_dbname(admin_url, name)
    finally:
        drop_test_database(admin_url, name)


@dataclass
class Server:
    app: Starlette
    url: str
    thread: threading.Thread
    server: Any


@contextmanager
def serving(database_url: str, redis_url: str | None, **overrides: str) -> Iterator[Server]:
    """haste web on an ephemeral loopback port until the block ends (graceful stop)."""
    settings = load_settings({"HASTE_LOG_LEVEL": "WARNING", **overrides})
    app = create_app(settings, database_url=database_url, redis_url=redis_url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = make_server(app, host="127.0.0.1", port=port, shutdown_timeout=5, log_level="warning")
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    ready = threading.Event()
    while not server.started and thread.is_alive():
        ready.wait(0.005)
    assert server.started, "uvicorn did not start"
    try:
        yield Server(app, f"http://127.0.0.1:{port}", thread, server)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def engine_workspace(db: Conn, name: str = "acme") -> Workspace:
    ws = make_workspace(db, name)
    slug = db.execute("SELECT slug FROM workspaces WHERE id = %s", (ws.id,)).fetchone()[0]
    return find_workspace(db, slug)


@dataclass
class Hook:
    workspace: Workspace
    automation_id: uuid.UUID
    path: str
    secret: str


def webhook_automation(
    db: Conn, workspace: Workspace, doc: Mapping[str, Any] = WEBHOOK_DOC
) -> Hook:
    result = deploy(db, workspace, doc)
    new = add_secret(db, workspace, doc["name"], overlap=None)
    return Hook(workspace, result.automation_id, new.endpoint.path, new.secret)


def api_key(db: Conn, workspace: Workspace) -> str:
    return create_key(db, workspace, "tests").key


def signed(
    secret: str,
    body: Any,
    *,
    msg_id: str | None = None,
    at: datetime | None = None,
    content_type: str = "application/json",
) -> tuple[bytes, dict[str, str]]:
    """(body bytes, headers) as a Standard Webhooks sender makes them."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    at = at or datetime.now(UTC)
    signature = Webhook(secret).sign(msg_id, at, data.decode("utf-8", errors="replace"))
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature,
        "content-type": content_type,
    }
    return data, headers


def stale() -> datetime:
    return datetime.now(UTC) - timedelta(minutes=6)


def count(db: Conn, table: str) -> int:
    return db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def settings_for(**env: str) -> Settings:
    return load_settings(env)
