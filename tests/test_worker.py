"""Real ``haste worker`` processes (Dramatiq on the test's Redis, the test's database):
end to end runs, retries through delayed messages, a SIGKILLed worker recovered by the
reaper, and two workers sharing 500 executions."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest

from tests.fakes.crm import make_contact, make_workspace
from tests.fakes.executions import counters, deploy_doc, execution, queue_executions, steps
from tests.fakes.http_server import Reply, http_server
from tests.polling import wait_for
from workers import broker as broker_module
from workers.reaper import reap

pytestmark = pytest.mark.slow
HASTE = str(Path(sys.executable).with_name("haste"))


@contextmanager
def running_worker(
    db_url: str, redis_url: str, *, processes: int = 1, threads: int = 4
) -> Iterator[subprocess.Popen[bytes]]:
    """``haste worker`` in its own process group; SIGTERM then SIGKILL on the way out."""
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_url,
        "HASTE_LOG_LEVEL": "WARNING",
        "HASTE_LOG_FORMAT": "console",
        "HASTE_HEARTBEAT_INTERVAL": "0.5",
        "HASTE_SHUTDOWN_TIMEOUT": "5",
    }
    fd, log = tempfile.mkstemp(prefix="haste-worker-", suffix=".log")
    proc = subprocess.Popen(
        [HASTE, "worker", "--processes", str(processes), "--threads", str(threads)],
        env=env,
        stdout=fd,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    os.close(fd)
    try:
        yield proc
    finally:
        stop_group(proc)
        if not os.environ.get("HASTE_KEEP_WORKER_LOGS"):  # set it to debug a worker
            Path(log).unlink(missing_ok=True)


def stop_group(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # forked children too
    proc.wait(timeout=10)


def status_of(db: psycopg.Connection[Any], ids: list[UUID]) -> dict[str, int]:
    rows = db.execute(
        "SELECT status, count(*) FROM automation_executions WHERE id = ANY(%s) GROUP BY status",
        (ids,),
    ).fetchall()
    return {status: n for status, n in rows}


def manual(*actions: dict[str, Any], name: str = "worker test") -> dict[str, Any]:
    return {
        "name": name,
        "trigger_type": "manual",
        "trigger_config": {"entity_type": "contact"},
        "actions": list(actions),
    }


@pytest.fixture
def ws(db: psycopg.Connection[Any]) -> Any:
    return make_workspace(db)


@pytest.fixture
def broker(redis_url: str) -> Any:
    return broker_module.configure(redis_url)


def test_worker_runs_an_execution_of_four_database_steps(db, db_url, redis_url, ws, broker):
    contact = make_contact(db, ws)
    doc = manual(
        {"id": "stage", "type": "update_record", "params": {"fields": {"lifecycle_stage": "MQL"}}},
        {"id": "tag", "type": "add_tag", "params": {"tag": "hot", "create_if_missing": True}},
        {"id": "note", "type": "add_note", "params": {"content": "{{ contact.lifecycle_stage }}"}},
        {"id": "task", "type": "create_task", "params": {"title": "Call"}},
    )
    automation = deploy_doc(db, ws, doc)
    [run] = queue_executions(db, ws, automation, [contact])

    with running_worker(db_url, redis_url):
        broker_module.enqueue_executions([run])
        wait_for(lambda: execution(db, run)["status"] == "completed", 30, "completion")

    records = steps(db, run)
    assert [records[s]["status"] for s in ("stage", "tag", "note", "task")] == ["completed"] * 4
    assert db.execute("SELECT content FROM notes").fetchone()[0] == "MQL"
    assert counters(db, automation[0]) == (1, 1, 0)


def test_http_retries_go_through_delayed_messages_with_one_key(db, db_url, redis_url, ws, broker):
    contact = make_contact(db, ws)
    with http_server() as server:
        server.reply(Reply(503), Reply(429, {"Retry-After": "1"}), Reply(200), Reply(400))
        doc = manual(
            {
                "id": "hook",
                "type": "http_request",
                "params": {"url": server.url("/a")},
                "retry": {"max_attempts": 4, "initial": {"seconds": 1}, "jitter": False},
            },
            {"id": "bad", "type": "http_request", "params": {"url": server.url("/b")}},
        )
        automation = deploy_doc(db, ws, doc)
        [run] = queue_executions(db, ws, automation, [contact])

        with running_worker(db_url, redis_url):
            broker_module.enqueue_executions([run])
            wait_for(lambda: execution(db, run)["status"] == "failed", 30, "the 400 to fail it")

    hook, bad = steps(db, run)["hook"], steps(db, run)["bad"]
    assert hook["status"] == "completed" and hook["attempts"] == 3
    assert [a["class"] for a in hook["attempt_history"]] == ["http_5xx", "http_429"]
    assert bad["attempts"] == 1 and bad["error"]["class"] == "http_4xx"  # 400: not retried
    first = [r for r in server.requests if r.path == "/a"]
    assert len(first) == 3 and {r.headers["idempotency-key"] for r in first} == {f"{run}:hook"}
    assert len([r for r in server.requests if r.path == "/b"]) == 1
    assert counters(db, automation[0]) == (1, 0, 1)


def test_a_sigkilled_worker_s_execution_is_recovered_and_each_write_happens_once(
    db, db_url, redis_url, ws, broker
):
    contact = make_contact(db, ws)
    with http_server() as server:
        server.reply(Reply(200, delay=120))  # hangs until the worker is killed
        doc = manual(
            {"id": "before", "type": "add_note", "params": {"content": "before"}},
            {"id": "call", "type": "http_request", "params": {"url": server.url()}},
            {"id": "after", "type": "add_note", "params": {"content": "after"}},
        )
        [run] = queue_executions(db, ws, deploy_doc(db, ws, doc), [contact])

        with running_worker(db_url, redis_url) as first:
            broker_module.enqueue_executions([run])
            wait_for(lambda: server.requests, 30, "the worker to be inside the HTTP step")
            killed_at = time.monotonic()
            stop_group(first, signal.SIGKILL)
        assert execution(db, run)["status"] == "running"

        server.reply(Reply(200))
        with running_worker(db_url, redis_url):

            def recovered() -> bool:
                reap(db, heartbeat_timeout=2.0, grace=5.0)
                return execution(db, run)["status"] == "completed"

            wait_for(recovered, 90, "recovery and completion", step=0.5)
            elapsed = time.monotonic() - killed_at

    assert elapsed < 90
    row = execution(db, run)
    assert row["recoveries"] == 1 and row["attempt"] == 2
    contents = sorted(r[0] for r in db.execute("SELECT content FROM notes"))
    assert contents == ["after", "before"]  # each database write exactly once
    keys = [r.headers["idempotency-key"] for r in server.requests]
    assert keys == [f"{run}:call", f"{run}:call"]  # at least once, with the same key
    assert steps(db, run)["before"]["attempts"] == 1


def test_two_workers_run_500_executions_exactly_once(db, db_url, redis_url, ws, broker):
    doc = manual(
        {"id": "note", "type": "add_note", "params": {"content": "for {{ contact.email }}"}}
    )
    automation = deploy_doc(db, ws, doc)
    contacts = [make_contact(db, ws) for _ in range(500)]
    runs = queue_executions(db, ws, automation, contacts)

    with running_worker(db_url, redis_url, threads=4), running_worker(db_url, redis_url, threads=4):
        broker_module.enqueue_executions(runs)
        broker_module.enqueue_executions(runs)  # every message twice: duplicates must be harmless
        wait_for(lambda: status_of(db, runs) == {"completed": 500}, 120, "500 completions", 0.2)

    assert db.execute("SELECT count(*), count(DISTINCT contact_id) FROM notes").fetchone() == (
        500,
        500,
    )
    attempts = db.execute(
        "SELECT max(attempt) FROM automation_executions WHERE id = ANY(%s)", (runs,)
    ).fetchone()
    assert attempts[0] == 1  # claimed once each, although every message came twice
    assert db.execute("SELECT count(*) FROM automation_execution_steps").fetchone()[0] == 500
    assert counters(db, automation[0]) == (500, 500, 0)


def test_sigterm_hands_the_execution_back_after_the_current_step(db, db_url, redis_url, ws, broker):
    contact = make_contact(db, ws)
    with http_server() as server:
        server.reply(Reply(200, delay=1.5))
        doc = manual(
            {"id": "call", "type": "http_request", "params": {"url": server.url()}},
            {"id": "after", "type": "add_note", "params": {"content": "after"}},
        )
        [run] = queue_executions(db, ws, deploy_doc(db, ws, doc), [contact])

        with running_worker(db_url, redis_url) as worker:
            broker_module.enqueue_executions([run])
            wait_for(lambda: server.requests, 30, "the worker to be inside the HTTP step")
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=30) == 0

    row = execution(db, run)
    assert (row["status"], row["claimed_by"]) == ("queued", None)  # handed back, not lost
    assert list(steps(db, run)) == ["call"]  # the step in flight finished and was recorded
    assert db.execute("SELECT count(*) FROM notes").fetchone()[0] == 0
