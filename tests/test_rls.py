"""Row-level security, activities partitions and the engagement-scores view.

Two workspaces, A and B, each get one row in every tenant table (seeded by the
owner connection, which bypasses RLS because RLS is enabled, not forced).
Tenant code runs as haste_app with app.workspace_id set, exactly as
engine.db.tenant_transaction does it; the transaction is done by hand here so
these tests pin the database contract, not that helper.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any

import psycopg
import pytest
from psycopg import errors, sql

WS_A = "0000000a-0000-4000-8000-000000000000"
WS_B = "0000000b-0000-4000-8000-000000000000"


def _id(workspace: str, n: int) -> str:
    """Deterministic ids: the workspace letter up front, the row number at the end."""
    return f"{workspace[:8]}-0000-4000-8000-{n:012d}"


# Each tenant table with the column that identifies a seeded row; the seeded
# rows of A and B have the key values _id(WS_A, n) / _id(WS_B, n).
TENANT_TABLES: dict[str, tuple[str, int]] = {
    "workspaces": ("id", 0),
    "workspace_members": ("id", 1),
    "contacts": ("id", 2),
    "tags": ("id", 3),
    "contact_tags": ("contact_id", 2),
    "companies": ("id", 4),
    "company_contacts": ("company_id", 4),
    "notes": ("id", 5),
    "email_accounts": ("id", 6),
    "emails": ("id", 7),
    "email_attachments": ("id", 8),
    "email_tracking_events": ("id", 9),
    "pipelines": ("id", 10),
    "pipeline_stages": ("id", 11),
    "deals": ("id", 12),
    "deal_history": ("id", 13),
    "activities": ("id", 14),
    "tasks": ("id", 15),
    "ai_models": ("id", 16),
    "automations": ("id", 17),
    "automation_executions": ("id", 18),
    "ai_tasks": ("id", 19),
    "custom_field_definitions": ("id", 20),
    "saved_views": ("id", 21),
    "reports": ("id", 22),
}

CHILD_TABLES = {
    "contact_tags",
    "company_contacts",
    "deal_history",
    "pipeline_stages",
    "email_attachments",
    "email_tracking_events",
    "automation_executions",
}

SEED = """
INSERT INTO users (id, email) VALUES (%(user)s, %(email)s);
INSERT INTO workspaces (id, name, slug) VALUES (%(ws)s, %(slug)s, %(slug)s);
INSERT INTO workspace_members (id, workspace_id, user_id, role)
    VALUES (%(r1)s, %(ws)s, %(user)s, 'owner');
INSERT INTO contacts (id, workspace_id, email, first_name) VALUES (%(r2)s, %(ws)s, %(email)s, 'C');
INSERT INTO tags (id, workspace_id, name) VALUES (%(r3)s, %(ws)s, 'vip');
INSERT INTO contact_tags (contact_id, tag_id) VALUES (%(r2)s, %(r3)s);
INSERT INTO companies (id, workspace_id, name) VALUES (%(r4)s, %(ws)s, 'Acme');
INSERT INTO company_contacts (company_id, contact_id) VALUES (%(r4)s, %(r2)s);
INSERT INTO notes (id, workspace_id, content, entity_type, entity_id, contact_id, created_by)
    VALUES (%(r5)s, %(ws)s, 'note', 'contact', %(r2)s, %(r2)s, %(user)s);
INSERT INTO email_accounts (id, workspace_id, user_id, email, provider)
    VALUES (%(r6)s, %(ws)s, %(user)s, %(email)s, 'smtp');
INSERT INTO emails (id, workspace_id, message_id, from_email, to_emails, contact_id)
    VALUES (%(r7)s, %(ws)s, 'm1', %(email)s, %(to)s, %(r2)s);
INSERT INTO email_attachments (id, email_id, filename, storage_url)
    VALUES (%(r8)s, %(r7)s, 'a.pdf', 's3://x');
INSERT INTO email_tracking_events (id, email_id, event_type) VALUES (%(r9)s, %(r7)s, 'open');
INSERT INTO pipelines (id, workspace_id, name) VALUES (%(r10)s, %(ws)s, 'Sales');
INSERT INTO pipeline_stages (id, pipeline_id, name, order_index)
    VALUES (%(r11)s, %(r10)s, 'New', 1);
INSERT INTO deals (id, workspace_id, title, pipeline_id, stage_id, contact_id, owner_id)
    VALUES (%(r12)s, %(ws)s, 'Deal', %(r10)s, %(r11)s, %(r2)s, %(user)s);
INSERT INTO deal_history (id, deal_id, field_name, changed_by)
    VALUES (%(r13)s, %(r12)s, 'stage', %(user)s);
INSERT INTO activities (id, workspace_id, type, title, entity_type, entity_id, contact_id)
    VALUES (%(r14)s, %(ws)s, 'meeting_held', 'Met', 'contact', %(r2)s, %(r2)s);
INSERT INTO tasks (id, workspace_id, title, assigned_to) VALUES (%(r15)s, %(ws)s, 'Call', %(user)s);
INSERT INTO ai_models (id, workspace_id, name, type, provider)
    VALUES (%(r16)s, %(ws)s, 'm', 'generation', 'openai');
INSERT INTO automations (id, workspace_id, name, trigger_type, trigger_config, actions)
    VALUES (%(r17)s, %(ws)s, 'Welcome', 'contact_created', '{}', '[]');
INSERT INTO automation_executions (id, automation_id, status)
    VALUES (%(r18)s, %(r17)s, 'completed');
INSERT INTO ai_tasks (id, workspace_id, type, input)
    VALUES (%(r19)s, %(ws)s, 'summarization', '{}');
INSERT INTO custom_field_definitions (id, workspace_id, object_type, field_name, field_type, label)
    VALUES (%(r20)s, %(ws)s, 'contact', 'f', 'text', 'F');
INSERT INTO saved_views (id, workspace_id, name, object_type, filters, created_by)
    VALUES (%(r21)s, %(ws)s, 'v', 'contact', '{}', %(user)s);
INSERT INTO reports (id, workspace_id, name, type, config, created_by)
    VALUES (%(r22)s, %(ws)s, 'r', 'pipeline', '{}', %(user)s);
"""


def _seed(conn: psycopg.Connection[Any], ws: str) -> None:
    params = {f"r{n}": _id(ws, n) for n in range(1, 23)}
    email = f"{ws[7]}@example.com"
    params |= {"ws": ws, "user": _id(ws, 99), "email": email, "to": [email], "slug": ws[7]}
    with conn.transaction(), conn.cursor() as cur:
        for stmt in SEED.strip().split(";\n"):
            if stmt.strip():
                cur.execute(stmt, params)


@pytest.fixture
def seeded(db: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    _seed(db, WS_A)
    _seed(db, WS_B)
    return db


@contextmanager
def as_tenant(
    conn: psycopg.Connection[Any], workspace: str | None, user: str | None = None
) -> Iterator[psycopg.Cursor[Any]]:
    """BEGIN; SET LOCAL ROLE haste_app; set the tenant settings (None: leave unset)."""
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SET LOCAL ROLE haste_app")
        if workspace is not None:
            cur.execute("SELECT set_config('app.workspace_id', %s, true)", (workspace,))
        if user is not None:
            cur.execute("SELECT set_config('app.user_id', %s, true)", (user,))
        yield cur


def _keys(cur: psycopg.Cursor[Any], table: str) -> list[str]:
    column, _ = TENANT_TABLES[table]
    cur.execute(
        sql.SQL("SELECT {}::text FROM {} ORDER BY 1").format(
            sql.Identifier(column), sql.Identifier(table)
        )
    )
    return [r[0] for r in cur.fetchall()]


# ---------------------------------------------------------------------------
# The role and the catalogue
# ---------------------------------------------------------------------------


def test_haste_app_cannot_bypass_rls(db: psycopg.Connection[Any]) -> None:
    row = db.execute(
        "SELECT rolsuper, rolbypassrls, rolcanlogin FROM pg_roles WHERE rolname = 'haste_app'"
    ).fetchone()
    assert row == (False, False, False)
    member = db.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_auth_members m"
        " JOIN pg_roles r ON r.oid = m.roleid JOIN pg_roles u ON u.oid = m.member"
        " WHERE r.rolname = 'haste_app' AND u.rolname = current_user)"
    ).fetchone()
    assert member == (True,), "the migrating role must be able to SET ROLE haste_app"


def test_every_table_with_workspace_id_is_under_rls(db: psycopg.Connection[Any]) -> None:
    rows = db.execute(
        """
        SELECT c.relname, c.relrowsecurity,
               (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid)
        FROM pg_class c
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'workspace_id'
        WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
          AND NOT c.relispartition
        """
    ).fetchall()
    assert len(rows) >= 17
    unprotected = [name for name, rls, policies in rows if not rls or policies == 0]
    assert unprotected == []


def test_child_tables_follow_their_parent_policy(db: psycopg.Connection[Any]) -> None:
    rows = db.execute(
        "SELECT c.relname, c.relrowsecurity, array_agg(p.polname::text ORDER BY p.polname)"
        " FROM pg_class c LEFT JOIN pg_policy p ON p.polrelid = c.oid"
        " WHERE c.oid = ANY(%s::regclass[]) GROUP BY 1, 2",
        (sorted(CHILD_TABLES),),
    ).fetchall()
    # Later migrations may add policies (e.g. a restrictive workspace_id check on
    # automation_executions); the parent policy must stay on every child table.
    assert sorted((t, rls) for t, rls, _ in rows) == [(t, True) for t in sorted(CHILD_TABLES)]
    assert all("parent_workspace_isolation" in policies for _, _, policies in rows)


def test_global_tables_stay_outside_rls(db: psycopg.Connection[Any]) -> None:
    rows = db.execute(
        "SELECT relname, relrowsecurity FROM pg_class"
        " WHERE oid IN ('users'::regclass, 'comments'::regclass) ORDER BY 1"
    ).fetchall()
    assert rows == [("comments", False), ("users", False)]


# ---------------------------------------------------------------------------
# Isolation
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("table", list(TENANT_TABLES))
def test_tenant_sees_only_its_workspace(seeded: psycopg.Connection[Any], table: str) -> None:
    _, n = TENANT_TABLES[table]
    with as_tenant(seeded, WS_A) as cur:
        assert _keys(cur, table) == [_id(WS_A, n)]
    with as_tenant(seeded, WS_B) as cur:
        assert _keys(cur, table) == [_id(WS_B, n)]


@pytest.mark.parametrize("table", list(TENANT_TABLES))
def test_other_workspace_rows_cannot_be_updated_or_deleted(
    seeded: psycopg.Connection[Any], table: str
) -> None:
    column, n = TENANT_TABLES[table]
    target = _id(WS_B, n)
    with as_tenant(seeded, WS_A) as cur:
        cur.execute(
            sql.SQL("UPDATE {t} SET {c} = {c} WHERE {c} = %s").format(
                t=sql.Identifier(table), c=sql.Identifier(column)
            ),
            (target,),
        )
        assert cur.rowcount == 0
        cur.execute(
            sql.SQL("DELETE FROM {} WHERE {} = %s").format(
                sql.Identifier(table), sql.Identifier(column)
            ),
            (target,),
        )
        assert cur.rowcount == 0
    still = seeded.execute(
        sql.SQL("SELECT count(*) FROM {} WHERE {} = %s").format(
            sql.Identifier(table), sql.Identifier(column)
        ),
        (target,),
    ).fetchone()
    assert still is not None and still[0] >= 1


@pytest.mark.parametrize(
    ("table", "insert"),
    [
        ("contacts", "INSERT INTO contacts (workspace_id, email) VALUES (%(ws)s, 'x@b.test')"),
        ("tags", "INSERT INTO tags (workspace_id, name) VALUES (%(ws)s, 'sneaky')"),
        (
            "activities",
            "INSERT INTO activities (workspace_id, type, title, entity_type, entity_id)"
            " VALUES (%(ws)s, 'custom', 't', 'contact', uuid_generate_v4())",
        ),
        (
            "deals",
            "INSERT INTO deals (workspace_id, title, pipeline_id, stage_id, owner_id)"
            f" VALUES (%(ws)s, 'd', '{_id(WS_B, 10)}', '{_id(WS_B, 11)}', '{_id(WS_B, 99)}')",
        ),
        ("workspaces", "INSERT INTO workspaces (id, name, slug) VALUES (%(new)s, 'n', 'n')"),
    ],
)
def test_insert_into_other_workspace_is_refused(
    seeded: psycopg.Connection[Any], table: str, insert: str
) -> None:
    with (
        pytest.raises(errors.InsufficientPrivilege, match="row-level security"),
        as_tenant(seeded, WS_A) as cur,
    ):
        cur.execute(insert, {"ws": WS_B, "new": str(uuid.uuid4())})


def test_own_row_cannot_be_moved_to_other_workspace(seeded: psycopg.Connection[Any]) -> None:
    with (
        pytest.raises(errors.InsufficientPrivilege, match="row-level security"),
        as_tenant(seeded, WS_A) as cur,
    ):
        cur.execute("UPDATE contacts SET workspace_id = %s WHERE id = %s", (WS_B, _id(WS_A, 2)))


def test_tenant_can_write_its_own_workspace(seeded: psycopg.Connection[Any]) -> None:
    with as_tenant(seeded, WS_A) as cur:
        cur.execute(
            "INSERT INTO contacts (workspace_id, email) VALUES (%s, 'new@a.test') RETURNING id",
            (WS_A,),
        )
        new_id = cur.fetchone()[0]  # type: ignore[index]
        cur.execute("UPDATE contacts SET first_name = 'N' WHERE id = %s", (new_id,))
        assert cur.rowcount == 1
        cur.execute(
            "INSERT INTO activities (workspace_id, type, title, entity_type, entity_id)"
            " VALUES (%s, 'custom', 't', 'contact', %s)",
            (WS_A, new_id),
        )


@pytest.mark.parametrize("setting", [None, ""], ids=["unset", "empty"])
def test_no_workspace_means_no_rows(
    seeded: psycopg.Connection[Any], db_url: str, setting: str | None
) -> None:
    # A new session has never seen app.workspace_id; '' is what SET LOCAL leaves behind.
    with psycopg.connect(db_url, autocommit=True) as conn:
        with as_tenant(conn, setting) as cur:
            for table in TENANT_TABLES:
                assert _keys(cur, table) == [], table
        with (
            pytest.raises(errors.InsufficientPrivilege, match="row-level security"),
            as_tenant(conn, setting) as cur,
        ):
            cur.execute("INSERT INTO contacts (workspace_id) VALUES (%s)", (WS_A,))


def test_child_rows_follow_their_parents(seeded: psycopg.Connection[Any]) -> None:
    with as_tenant(seeded, WS_A) as cur:
        cur.execute("SELECT contact_id::text, tag_id::text FROM contact_tags")
        assert cur.fetchall() == [(_id(WS_A, 2), _id(WS_A, 3))]
        cur.execute(
            "INSERT INTO tags (id, workspace_id, name) VALUES (%s, %s, 'new')",
            (_id(WS_A, 30), WS_A),
        )
        cur.execute(
            "INSERT INTO contact_tags (contact_id, tag_id) VALUES (%s, %s)",
            (_id(WS_A, 2), _id(WS_A, 30)),
        )
    for contact, tag in [(_id(WS_A, 2), _id(WS_B, 3)), (_id(WS_B, 2), _id(WS_B, 3))]:
        with (
            pytest.raises(errors.InsufficientPrivilege, match="row-level security"),
            as_tenant(seeded, WS_A) as cur,
        ):
            cur.execute(
                "INSERT INTO contact_tags (contact_id, tag_id) VALUES (%s, %s)", (contact, tag)
            )


def test_get_contact_details_respects_rls(seeded: psycopg.Connection[Any]) -> None:
    with as_tenant(seeded, WS_A) as cur:
        cur.execute("SELECT get_contact_details(%s)::jsonb", (_id(WS_A, 2),))
        own = cur.fetchone()[0]  # type: ignore[index]
        cur.execute("SELECT get_contact_details(%s)::jsonb", (_id(WS_B, 2),))
        other = cur.fetchone()[0]  # type: ignore[index]
    assert own["contact"]["id"] == _id(WS_A, 2)
    assert own["tags"] == ["vip"]
    assert len(own["deals"]) == 1 and len(own["activities"]) == 1
    assert other == {
        "contact": None,
        "recent_emails": None,
        "activities": None,
        "deals": None,
        "tags": None,
    }


def test_runner_bookkeeping_is_not_granted_to_haste_app(db: psycopg.Connection[Any]) -> None:
    assert db.execute("SELECT to_regclass('schema_migrations')").fetchone() != (None,)
    with pytest.raises(errors.InsufficientPrivilege), as_tenant(db, WS_A) as cur:
        cur.execute("SELECT * FROM schema_migrations")


# ---------------------------------------------------------------------------
# Deals: per-user policy and the engine's workspace-wide one
# ---------------------------------------------------------------------------


@pytest.fixture
def per_user_role(seeded: psycopg.Connection[Any]) -> Iterator[str]:
    """A throw-away role without the engine policy, to exercise deal_access alone.

    Roles are cluster-wide, hence the unique name and the cleanup.
    """
    role = f"haste_test_user_{uuid.uuid4().hex[:10]}"
    ident = sql.Identifier(role)
    seeded.execute(sql.SQL("CREATE ROLE {} NOLOGIN NOBYPASSRLS").format(ident))
    try:
        seeded.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(ident))
        seeded.execute(sql.SQL("GRANT SELECT ON deals, workspace_members TO {}").format(ident))
        yield role
    finally:
        seeded.execute(sql.SQL("DROP OWNED BY {}").format(ident))
        seeded.execute(sql.SQL("DROP ROLE {}").format(ident))


def _add_member_deal(conn: psycopg.Connection[Any]) -> tuple[str, str]:
    """A second user of A, plain member, owning one more deal of A."""
    member, deal = _id(WS_A, 40), _id(WS_A, 41)
    with conn.transaction():
        conn.execute("INSERT INTO users (id, email) VALUES (%s, 'm@a.test')", (member,))
        conn.execute(
            "INSERT INTO workspace_members (workspace_id, user_id, role) VALUES (%s, %s, 'member')",
            (WS_A, member),
        )
        conn.execute(
            "INSERT INTO deals (id, workspace_id, title, pipeline_id, stage_id, owner_id)"
            " VALUES (%s, %s, 'd2', %s, %s, %s)",
            (deal, WS_A, _id(WS_A, 10), _id(WS_A, 11), member),
        )
    return member, deal


def test_engine_sees_every_deal_of_its_workspace_without_a_user(
    seeded: psycopg.Connection[Any],
) -> None:
    _, deal = _add_member_deal(seeded)
    with as_tenant(seeded, WS_A) as cur:
        assert _keys(cur, "deals") == sorted([_id(WS_A, 12), deal])


def test_deal_access_limits_per_user_roles(
    seeded: psycopg.Connection[Any], per_user_role: str
) -> None:
    member, deal = _add_member_deal(seeded)
    cases = {
        None: [],  # no user: nothing, and no error
        member: [deal],  # plain member: own deals only
        _id(WS_A, 99): sorted([_id(WS_A, 12), deal]),  # workspace owner: all
        _id(WS_B, 99): [],  # B's owner, in workspace A
    }
    for user, expected in cases.items():
        with seeded.transaction(), seeded.cursor() as cur:
            cur.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(per_user_role)))
            cur.execute("SELECT set_config('app.workspace_id', %s, true)", (WS_A,))
            if user is not None:
                cur.execute("SELECT set_config('app.user_id', %s, true)", (user,))
            assert _keys(cur, "deals") == expected, user


# ---------------------------------------------------------------------------
# Activities partitions
# ---------------------------------------------------------------------------


def _partition_of(conn: psycopg.Connection[Any], activity_id: str) -> str:
    row = conn.execute(
        "SELECT tableoid::regclass::text FROM activities WHERE id = %s", (activity_id,)
    ).fetchone()
    assert row is not None
    return row[0]


def _partitions(conn: psycopg.Connection[Any]) -> dict[str, str]:
    rows = conn.execute(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i"
        " JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'activities'::regclass"
    ).fetchall()
    return dict(rows)


def _insert_activity(conn: psycopg.Connection[Any], occurred_at: str) -> str:
    new_id = str(uuid.uuid4())
    conn.execute(
        "INSERT INTO activities (id, workspace_id, type, title, entity_type, entity_id,"
        " occurred_at) VALUES (%s, %s, 'custom', 't', 'contact', %s, %s)",
        (new_id, WS_A, new_id, occurred_at),
    )
    return new_id


def test_current_and_next_month_partitions_exist(db: psycopg.Connection[Any]) -> None:
    row = db.execute(
        "SELECT to_char(CURRENT_DATE, 'YYYY_MM'),"
        " to_char(CURRENT_DATE + interval '1 month', 'YYYY_MM')"
    ).fetchone()
    assert row is not None
    parts = _partitions(db)
    for month in row:
        assert f"activities_{month}" in parts
    assert parts["activities_default"] == "DEFAULT"
    assert {"activities_2024_01", "activities_2024_02"} <= set(parts)


def test_rows_land_in_their_month_or_the_default(seeded: psycopg.Connection[Any]) -> None:
    assert (
        _partition_of(seeded, _id(WS_A, 14))
        == seeded.execute("SELECT 'activities_' || to_char(CURRENT_DATE, 'YYYY_MM')").fetchone()[0]
    )  # type: ignore[index]
    assert _partition_of(seeded, _insert_activity(seeded, "2024-01-15")) == "activities_2024_01"
    assert _partition_of(seeded, _insert_activity(seeded, "2030-06-15")) == "activities_default"


def test_create_monthly_partition_for_a_month(seeded: psycopg.Connection[Any]) -> None:
    seeded.execute("SELECT create_monthly_partition(%s)", (date(2031, 3, 10),))
    seeded.execute("SELECT create_monthly_partition(%s)", (date(2031, 3, 31),))  # idempotent
    bound = _partitions(seeded)["activities_2031_03"]
    assert "2031-03-01" in bound and "2031-04-01" in bound
    assert _partition_of(seeded, _insert_activity(seeded, "2031-03-20")) == "activities_2031_03"
    seeded.execute("SELECT create_monthly_partition()")  # the current month: already there


def test_create_monthly_partition_moves_rows_out_of_default(
    seeded: psycopg.Connection[Any],
) -> None:
    early = _insert_activity(seeded, "2032-07-01")
    other = _insert_activity(seeded, "2032-08-01")
    assert _partition_of(seeded, early) == "activities_default"
    seeded.execute("SELECT create_monthly_partition(%s)", (date(2032, 7, 1),))
    assert _partition_of(seeded, early) == "activities_2032_07"
    assert _partition_of(seeded, other) == "activities_default"
    with as_tenant(seeded, WS_A) as cur:
        cur.execute("SELECT count(*) FROM activities WHERE id = %s", (early,))
        assert cur.fetchone() == (1,)


def test_partitions_are_reachable_only_through_the_parent(
    seeded: psycopg.Connection[Any],
) -> None:
    seeded.execute("SELECT create_monthly_partition(%s)", (date(2033, 1, 1),))
    for part in ("activities_default", "activities_2024_01", "activities_2033_01"):
        with pytest.raises(errors.InsufficientPrivilege), as_tenant(seeded, WS_A) as cur:
            cur.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(part)))
    with as_tenant(seeded, WS_A) as cur:
        cur.execute(
            "INSERT INTO activities (workspace_id, type, title, entity_type, entity_id,"
            " occurred_at) VALUES (%s, 'custom', 't', 'contact', uuid_generate_v4(),"
            " '2033-01-05')",
            (WS_A,),
        )
        cur.execute("SELECT count(*) FROM activities")
        assert cur.fetchone() == (2,)


# ---------------------------------------------------------------------------
# Engagement scores
# ---------------------------------------------------------------------------


def test_engagement_scores_refresh_concurrently(seeded: psycopg.Connection[Any]) -> None:
    with seeded.transaction():
        seeded.execute(
            "INSERT INTO email_tracking_events (email_id, event_type) VALUES (%s, 'click')",
            (_id(WS_A, 7),),
        )
        _insert_activity(seeded, "2024-02-10")
    seeded.execute("REFRESH MATERIALIZED VIEW CONCURRENTLY contact_engagement_scores")
    row = seeded.execute(
        "SELECT email_count, email_opens, email_clicks, activity_count, engagement_score"
        " FROM contact_engagement_scores WHERE id = %s",
        (_id(WS_A, 2),),
    ).fetchone()
    # 1 open * 1 + 1 click * 3 + 1 meeting_held * 10 (the 'custom' activity has no contact)
    assert row == (1, 1, 1, 1, 14)


def test_engagement_scores_are_tenant_filtered_for_haste_app(
    seeded: psycopg.Connection[Any],
) -> None:
    seeded.execute("REFRESH MATERIALIZED VIEW contact_engagement_scores")
    with as_tenant(seeded, WS_A) as cur:
        cur.execute("SELECT id::text FROM tenant_contact_engagement_scores")
        assert cur.fetchall() == [(_id(WS_A, 2),)]
    with pytest.raises(errors.InsufficientPrivilege), as_tenant(seeded, WS_A) as cur:
        cur.execute("SELECT * FROM contact_engagement_scores")
