"""tenant_transaction: the one way tenant work runs under row-level security."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest

from engine.db import system_transaction, tenant_transaction


def make_workspace(db: psycopg.Connection[Any], slug: str) -> uuid.UUID:
    row = db.execute(
        "INSERT INTO workspaces (name, slug) VALUES (%s, %s) RETURNING id", (slug, slug)
    ).fetchone()
    assert row is not None
    return row[0]


def test_tenant_transaction_runs_as_the_app_role_with_the_workspace_set(db) -> None:
    ws = make_workspace(db, "acme")

    with tenant_transaction(db, ws) as cur:
        role, setting = cur.execute(
            "SELECT current_user, current_setting('app.workspace_id')"
        ).fetchone()

    assert (role, setting) == ("haste_app", str(ws))


def test_tenant_settings_do_not_leak_into_the_next_transaction(db) -> None:
    ws = make_workspace(db, "acme")
    with tenant_transaction(db, ws):
        pass

    role, setting = db.execute(
        "SELECT current_user, current_setting('app.workspace_id', true)"
    ).fetchone()

    assert role != "haste_app"
    assert setting in (None, "")


def test_tenant_transaction_sees_only_its_workspace(db) -> None:
    a, b = make_workspace(db, "a"), make_workspace(db, "b")
    db.execute(
        "INSERT INTO contacts (workspace_id, email) VALUES (%s, 'a@x.test'), (%s, 'b@x.test')",
        (a, b),
    )

    with tenant_transaction(db, a) as cur:
        emails = [r[0] for r in cur.execute("SELECT email FROM contacts")]

    assert emails == ["a@x.test"]


def test_tenant_transaction_rolls_back_on_error(db) -> None:
    ws = make_workspace(db, "acme")

    with pytest.raises(RuntimeError), tenant_transaction(db, ws) as cur:
        cur.execute("INSERT INTO contacts (workspace_id, email) VALUES (%s, 'x@x.test')", (ws,))
        raise RuntimeError("boom")

    assert db.execute("SELECT count(*) FROM contacts").fetchone() == (0,)


def test_tenant_transaction_with_a_refused_setting_raises_and_leaves_the_connection_usable(
    db,
) -> None:
    ws = make_workspace(db, "acme")

    with (
        pytest.raises(psycopg.errors.InvalidParameterValue, match="synchronous_commit"),
        tenant_transaction(db, ws, settings={"synchronous_commit": "sometimes"}),
    ):
        pytest.fail("the block must not run when the settings were refused")

    assert db.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    with tenant_transaction(db, ws) as cur:
        cur.execute("SELECT current_setting('app.workspace_id')")
        assert cur.fetchone() == (str(ws),)


@pytest.mark.parametrize("value", ["it's", "back\\slash", "100%s done", "plain-123"])
def test_tenant_settings_arrive_verbatim_whatever_their_characters(db, value) -> None:
    ws = make_workspace(db, "acme")

    with tenant_transaction(db, ws, settings={"app.note": value}) as cur:
        cur.execute("SELECT current_setting('app.note')")
        assert cur.fetchone() == (value,)


def test_the_same_tenant_transaction_repeated_past_psycopgs_prepare_threshold_works(db) -> None:
    ws = make_workspace(db, "acme")
    repeats = (db.prepare_threshold or 0) + 5  # psycopg prepares a query seen this often

    for _ in range(repeats):
        with tenant_transaction(db, ws, settings={"app.execution_id": "same"}) as cur:
            cur.execute("SELECT current_setting('app.workspace_id')")
            assert cur.fetchone() == (str(ws),)


def test_tenant_transaction_refuses_a_missing_workspace(db) -> None:
    with pytest.raises(ValueError, match="needs a workspace id"), tenant_transaction(db, ""):
        pass


def test_system_transaction_sees_every_workspace(db) -> None:
    a, b = make_workspace(db, "a"), make_workspace(db, "b")
    db.execute(
        "INSERT INTO contacts (workspace_id, email) VALUES (%s, 'a@x.test'), (%s, 'b@x.test')",
        (a, b),
    )

    with system_transaction(db) as cur:
        assert cur.execute("SELECT count(*) FROM contacts").fetchone() == (2,)
