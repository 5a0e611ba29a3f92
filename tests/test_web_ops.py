"""Operating haste web: liveness and readiness, /metrics after a run (and the multiprocess
scheme that carries other processes' counters to it), and SIGTERM with a webhook in flight."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from click.testing import CliRunner

from engine import metrics
from engine.automations import deploy
from engine.cli import main
from tests.fakes.crm import Workspace as FakeWorkspace
from tests.fakes.crm import make_contact
from tests.web_support import (
    MANUAL_DOC,
    Hook,
    Server,
    engine_workspace,
    serving,
    signed,
    webhook_automation,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def web(db_url: str, redis_url: str) -> Iterator[Server]:
    with serving(db_url, redis_url) as server:
        yield server


def test_healthz_and_readyz_answer_when_everything_is_up(web: Server) -> None:
    assert httpx.get(web.url + "/healthz").json() == {"status": "alive"}

    ready = httpx.get(web.url + "/readyz")

    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["status"] == "ready"
    assert {name: check["ok"] for name, check in body["checks"].items()} == {
        "postgres": True,
        "migrations": True,
        "redis": True,
    }
    assert body["scheduler"] == {"leader": None}
    assert ready.headers["x-request-id"]


def test_readyz_fails_when_redis_is_down(db_url: str, tmp_path: Path) -> None:
    dead = f"unix://{tmp_path}/no-redis-here.sock"
    with serving(db_url, dead) as server:
        ready = httpx.get(server.url + "/readyz")
        alive = httpx.get(server.url + "/healthz")

    assert ready.status_code == 503
    assert ready.json()["checks"]["redis"]["ok"] is False
    assert ready.json()["checks"]["postgres"]["ok"] is True
    assert alive.status_code == 200


def test_readyz_fails_while_a_migration_is_pending(
    web: Server, db: psycopg.Connection[Any]
) -> None:
    db.execute(
        "DELETE FROM schema_migrations WHERE version = (SELECT max(version) FROM schema_migrations)"
    )

    ready = httpx.get(web.url + "/readyz")

    assert ready.status_code == 503
    assert "haste db migrate" in ready.json()["checks"]["migrations"]["error"]


def test_metrics_expose_the_counters_after_a_run(web: Server, db: psycopg.Connection[Any]) -> None:
    ws = engine_workspace(db)
    hook = webhook_automation(db, ws)
    contact = make_contact(db, FakeWorkspace(ws.id, uuid.uuid4()))
    content, headers = signed(hook.secret, {"contact_id": str(contact), "mrr": 3})
    accepted = httpx.post(web.url + hook.path, content=content, headers=headers)
    tampered = httpx.post(
        web.url + hook.path, content=content + b" ", headers={**headers, "webhook-id": "x"}
    )
    assert (accepted.status_code, tampered.status_code) == (202, 401)

    text = httpx.get(web.url + "/metrics").text

    for name in metrics.metric_names():
        assert f"# HELP {name}" in text, name
    assert 'haste_webhook_requests_total{outcome="accepted"}' in text
    assert _value(text, 'haste_webhook_rejects_total{reason="bad_signature"}') >= 1
    assert _value(text, 'haste_events_emitted_total{source="webhook"}') >= 1
    assert _value(text, "haste_outbox_backlog") >= 2  # contact_created + the webhook
    assert _value(text, "haste_capture_slot_retained_bytes") == 0  # trigger mode: no slot
    assert _value(text, "haste_events_captured_total") >= 2
    assert 'haste_executions{status="queued"} 0.0' in text
    assert 'haste_queue_messages{queue="automations",state="ready"}' in text
    assert 'haste_dependency_up{dependency="postgres"} 1.0' in text
    assert 'haste_dependency_up{dependency="redis"} 1.0' in text
    assert 'route="/hooks/{token}"' in text and hook.path not in text


def _value(text: str, series: str) -> float:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{series} not exposed")


def test_other_processes_counters_reach_the_exposition_in_multiprocess_mode(
    tmp_path: Path,
) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}
    listener = (
        "from engine import metrics;"
        "metrics.EVENTS_PROCESSED.labels('processed').inc(7);"
        "metrics.STEP_DURATION.labels('add_note', 'completed').observe(0.02)"
    )
    subprocess.run([sys.executable, "-c", listener], env=env, check=True, cwd=ROOT)
    subprocess.run([sys.executable, "-c", listener], env=env, check=True, cwd=ROOT)
    scrape = "from engine import metrics; print(metrics.exposition()[0].decode())"

    out = subprocess.run(
        [sys.executable, "-c", scrape],
        env=env,
        check=True,
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout

    assert 'haste_events_processed_total{result="processed"} 14.0' in out
    assert 'haste_step_duration_seconds_count{action="add_note",outcome="completed"} 2.0' in out


# --- SIGTERM --------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_web(
    db_url: str, redis_url: str, shutdown_timeout: int
) -> tuple[subprocess.Popen[str], str]:
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_url,
        "HASTE_WEB_PORT": str(port),
        "HASTE_SHUTDOWN_TIMEOUT": str(shutdown_timeout),
        "HASTE_LOG_FORMAT": "json",
    }
    proc = subprocess.Popen(
        [str(ROOT / ".venv/bin/haste"), "web"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            threading.Event().wait(0.05)
    proc.kill()
    raise AssertionError("haste web did not start: " + (proc.stdout.read() if proc.stdout else ""))


def _hold_receipt(db_url: str, hook: Hook, webhook_id: str) -> psycopg.Connection[Any]:
    """An open transaction holding the receipt key the request will need: the request's
    INSERT waits for it, i.e. the webhook is in flight for as long as the test wants."""
    conn = psycopg.connect(db_url)
    endpoint = conn.execute(
        "SELECT id FROM webhook_endpoints WHERE automation_id = %s", (hook.automation_id,)
    ).fetchone()[0]
    conn.execute(
        "INSERT INTO webhook_receipts (endpoint_id, webhook_id, workspace_id, event_id,"
        " status_code, response) VALUES (%s, %s, %s, 0, 0, '{}')",
        (endpoint, webhook_id, hook.workspace.id),
    )
    return conn


def _wait_until_blocked(db: psycopg.Connection[Any]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        waiting = db.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND query LIKE '%%webhook_receipts%%'"
        ).fetchone()[0]
        if waiting:
            return
        threading.Event().wait(0.02)
    raise AssertionError("the webhook never reached its receipt INSERT")


def _post_in_thread(
    url: str, body: bytes, headers: dict[str, str]
) -> tuple[threading.Thread, list[Any]]:
    result: list[Any] = []

    def send() -> None:
        try:
            result.append(httpx.post(url, content=body, headers=headers, timeout=30))
        except httpx.TransportError as exc:
            result.append(exc)

    thread = threading.Thread(target=send)
    thread.start()
    return thread, result


def _webhook_events(db: psycopg.Connection[Any], hook: Hook) -> int:
    return db.execute(
        "SELECT count(*) FROM automation_events WHERE automation_id = %s", (hook.automation_id,)
    ).fetchone()[0]


def test_sigterm_lets_an_inflight_webhook_finish_and_refuses_new_ones(
    db: psycopg.Connection[Any], db_url: str, redis_url: str
) -> None:
    ws = engine_workspace(db)
    hook = webhook_automation(db, ws)
    contact = make_contact(db, FakeWorkspace(ws.id, uuid.uuid4()))
    proc, url = _start_web(db_url, redis_url, shutdown_timeout=20)
    body, headers = signed(hook.secret, {"contact_id": str(contact), "mrr": 1}, msg_id="inflight")
    holder = _hold_receipt(db_url, hook, "inflight")
    thread, result = _post_in_thread(url + hook.path, body, headers)
    _wait_until_blocked(db)

    proc.send_signal(signal.SIGTERM)
    refused = None
    deadline = time.monotonic() + 10
    while refused is None and time.monotonic() < deadline:
        try:
            httpx.get(url + "/healthz", timeout=1)
            threading.Event().wait(0.02)
        except httpx.TransportError as exc:
            refused = exc
    holder.rollback()  # the in-flight request may go on now
    holder.close()
    thread.join(timeout=30)
    code = proc.wait(timeout=30)

    assert refused is not None, "new connections were still accepted after SIGTERM"
    assert isinstance(result[0], httpx.Response) and result[0].status_code == 202, result
    assert code == 0
    assert _webhook_events(db, hook) == 1


def test_sigterm_past_the_bound_cuts_a_stuck_webhook_without_acknowledging_or_writing_it(
    db: psycopg.Connection[Any], db_url: str, redis_url: str
) -> None:
    ws = engine_workspace(db)
    hook = webhook_automation(db, ws)
    contact = make_contact(db, FakeWorkspace(ws.id, uuid.uuid4()))
    proc, url = _start_web(db_url, redis_url, shutdown_timeout=1)
    body, headers = signed(hook.secret, {"contact_id": str(contact), "mrr": 1}, msg_id="stuck")
    holder = _hold_receipt(db_url, hook, "stuck")
    thread, result = _post_in_thread(url + hook.path, body, headers)
    _wait_until_blocked(db)

    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=30)
    took = time.monotonic() - started
    thread.join(timeout=30)
    holder.rollback()
    holder.close()

    assert code == 0 and took < 10
    assert not (isinstance(result[0], httpx.Response) and result[0].status_code == 202), result
    deadline = time.monotonic() + 10  # the server session ends once it notices the client
    while _webhook_events(db, hook) and time.monotonic() < deadline:
        threading.Event().wait(0.05)
    assert _webhook_events(db, hook) == 0
    # The sender's retry is accepted then: nothing was lost.
    body, headers = signed(hook.secret, {"contact_id": str(contact), "mrr": 1}, msg_id="stuck")
    with serving(db_url, redis_url) as server:
        retry = httpx.post(server.url + hook.path, content=body, headers=headers)
    assert retry.status_code == 202
    assert _webhook_events(db, hook) == 1


def test_api_key_cli_prints_a_key_that_works(
    db: psycopg.Connection[Any], db_url: str, redis_url: str
) -> None:
    ws = engine_workspace(db)
    deploy(db, ws, MANUAL_DOC)
    env = {"DATABASE_URL": db_url, "REDIS_URL": redis_url}
    created = CliRunner().invoke(main, ["apikey", "create", "--workspace", ws.slug], env=env)
    assert created.exit_code == 0, created.output
    key = created.stdout.strip().splitlines()[0]

    with serving(db_url, redis_url) as server:
        listed = httpx.get(
            server.url + "/api/v1/automations", headers={"Authorization": f"Bearer {key}"}
        )

    assert [a["name"] for a in listed.json()["items"]] == ["enrich"]
