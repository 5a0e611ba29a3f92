"""Helpers shared by the AI tests: a runtime pointed at the fake providers, seeded records."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import psycopg

from engine.config import load_settings
from tests.conftest import create_test_database, drop_test_database, with_dbname
from tests.fakes.crm import Workspace, insert, make_contact, make_deal, make_pipeline
from tests.fakes.openai_server import FakeLLM
from workers.ai_routing import AiRetryPolicy, RateLimits
from workers.ai_tasks import AiRuntime
from workers.providers import build_providers

Conn = psycopg.Connection[Any]


@dataclass
class Recorder:
    """Stands in for ``time.sleep`` and ``engine.executions.wake``: records, returns at once."""

    sleeps: list[float] = field(default_factory=list)
    woken: list[list[str]] = field(default_factory=list)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def wake(self, conn: Conn, ids: list[str]) -> None:
        self.woken.append(list(ids))


def runtime(
    openai: FakeLLM | None = None,
    anthropic: FakeLLM | None = None,
    *,
    recorder: Recorder | None = None,
    real_sleep: bool = False,
    **env: str,
) -> AiRuntime:
    """An AiRuntime whose providers are the fakes given (no key: not configured)."""
    environ = {"HASTE_AI_MAX_ATTEMPTS": "3", "HASTE_AI_TIMEOUT": "5", **env}
    if openai is not None:
        environ.update(OPENAI_API_KEY="sk-test", OPENAI_BASE_URL=openai.base_url)
    if anthropic is not None:
        environ.update(ANTHROPIC_API_KEY="sk-ant-test", ANTHROPIC_BASE_URL=anthropic.base_url)
    settings = load_settings(environ)
    recorder = recorder or Recorder()
    rt = AiRuntime(
        settings=settings,
        providers=build_providers(settings),
        rate_limits=RateLimits({}),
        policy=AiRetryPolicy(max_attempts=settings.ai_max_attempts, jitter=False),
        wake=recorder.wake,
    )
    if not real_sleep:
        rt.sleep = recorder.sleep
    return rt


def task_row(db: Conn, task_id: UUID) -> dict[str, Any]:
    cur = db.cursor(row_factory=psycopg.rows.dict_row)
    row = cur.execute("SELECT * FROM ai_tasks WHERE id = %s", (task_id,)).fetchone()
    assert row is not None
    return row


def make_email(db: Conn, ws: Workspace, **cols: Any) -> UUID:
    cols.setdefault("message_id", f"<{uuid.uuid4().hex}@example.com>")
    cols.setdefault("from_email", "buyer@globex.example")
    cols.setdefault("to_emails", ["sales@acme.example"])
    cols.setdefault("subject", "Urgent: our dashboard is down")
    cols.setdefault(
        "body_text",
        "Hi, the dashboard has been down since 2024-05-01 and we are very frustrated."
        " Please call me at +1 415 555 0100. We pay $12,000 a year.",
    )
    return insert(db, "emails", workspace_id=ws.id, **cols)


@dataclass(frozen=True)
class Records:
    contact: UUID
    deal: UUID
    email: UUID
    company: UUID


def seed_records(db: Conn, ws: Workspace) -> Records:
    contact = make_contact(
        db,
        ws,
        first_name="Dana",
        last_name="Reyes",
        title="VP Engineering",
        company="Globex",
        owner_id=ws.owner,
    )
    pipeline = make_pipeline(db, ws)
    deal = make_deal(db, ws, pipeline, value=50_000, contact_id=contact)
    email = make_email(db, ws, contact_id=contact)
    company = insert(db, "companies", workspace_id=ws.id, name="Globex", owner_id=ws.owner)
    return Records(contact, deal, email, company)


def record_of(records: Records, entity: str | None) -> Mapping[str, str] | None:
    if entity is None:
        return None
    return {"entity": entity, "id": str(getattr(records, entity))}


@contextmanager
def module_database(admin_url: str, template: str) -> Iterator[Conn]:
    """One migrated database for a whole test module (each test makes its own workspace,
    and RLS-scoped rows keep tests apart): cloning the template costs ~1 s per test."""
    name = create_test_database(admin_url, template)
    try:
        with psycopg.connect(with_dbname(admin_url, name), autocommit=True) as conn:
            yield conn
    finally:
        drop_test_database(admin_url, name)
