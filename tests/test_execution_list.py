"""engine.executions.list_executions: newest first, filtered, paged by a keyset cursor in SQL
(what the web API's execution history reads)."""

from __future__ import annotations

from typing import Any

import psycopg

from engine.executions import list_executions
from tests.fakes.crm import make_contact, make_workspace
from tests.fakes.executions import deploy_doc, queue_executions

DOC = {
    "name": "enrich",
    "trigger_type": "contact_created",
    "trigger_config": {},
    "actions": [{"id": "n", "type": "add_note", "params": {"content": "hi"}}],
}


def test_pages_follow_queued_at_then_id_without_gaps_or_repeats(
    db: psycopg.Connection[Any],
) -> None:
    ws = make_workspace(db)
    automation = deploy_doc(db, ws, DOC)
    contacts = [make_contact(db, ws) for _ in range(7)]
    queued = queue_executions(db, ws, automation, contacts)  # one statement: equal queued_at

    seen: list[Any] = []
    before = None
    while True:
        page = list_executions(db, workspace_id=ws.id, before=before, limit=3)
        seen.extend(r["id"] for r in page)
        if len(page) < 3:
            break
        before = (page[-1]["queued_at"], page[-1]["id"])

    assert seen == sorted(queued, key=str, reverse=True)


def test_a_cursor_at_the_oldest_row_gives_an_empty_page(db: psycopg.Connection[Any]) -> None:
    ws = make_workspace(db)
    automation = deploy_doc(db, ws, DOC)
    queue_executions(db, ws, automation, [make_contact(db, ws) for _ in range(2)])
    oldest = list_executions(db, workspace_id=ws.id)[-1]

    assert list_executions(db, workspace_id=ws.id, before=(oldest["queued_at"], oldest["id"])) == []
