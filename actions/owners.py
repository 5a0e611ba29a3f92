"""assign_owner: set a record's owner round-robin among active workspace members.

Scheme: a counter per (workspace, entity, pool) — the pool being ``roles``, ``users`` or
"every active member" — kept in ``workspaces.settings -> 'automation_round_robin'``. A step
increments it with one ``UPDATE ... RETURNING`` and takes member ``counter % len(pool)`` of
the pool sorted by ``(joined_at, created_at, user_id)``. The UPDATE's row lock is held until
the caller's transaction commits, so concurrent steps of one workspace take turns: each sees
the counter the previous one committed, and nine steps over three members give three each
however they interleave. The counter commits (or rolls back) with the step's write, so a
failed step does not skip anyone.

Rejected: "the member owning the fewest records" needs no state, but a newcomer would then
get every new record until they caught up with colleagues holding thousands, and the count
is a scan per step. A dedicated counter table would be cleaner than a key in
``workspaces.settings``; that needs a migration (noted for docs/schema-changes.md) and
changes nothing here but the two SQL statements.

The pool: active members (``status = 'active'``), filtered by ``roles`` or restricted to
``users`` (users that are not active members are skipped; none left is ``not_found``).
A member joining or leaving changes whose turn is next (the counter modulo a new pool
size), and the rotation is even again from there on. ``only_if_unassigned``
leaves an owned record alone without taking a turn.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from uuid import UUID

from psycopg import sql

from actions.base import (
    ActionError,
    Cursor,
    DatabaseAction,
    Output,
    Params,
    RecordRef,
    StepContext,
    as_uuid,
    database_errors,
    load_record,
    target,
)

__all__ = ["ASSIGN_OWNER", "pool_key"]

OWNER_ENTITIES = ("contact", "company", "deal")
SETTINGS_KEY = "automation_round_robin"

MEMBERS_ACTIVE = """
SELECT user_id FROM workspace_members
WHERE status = 'active'
  AND (%(roles)s::text[] IS NULL OR role = ANY (%(roles)s::text[]))
  AND (%(users)s::uuid[] IS NULL OR user_id = ANY (%(users)s::uuid[]))
ORDER BY joined_at NULLS LAST, created_at, user_id
"""
ROUND_ROBIN_TURN = """
UPDATE workspaces
SET settings = coalesce(settings, '{}'::jsonb) || jsonb_build_object(
        %(settings_key)s::text,
        coalesce(settings -> %(settings_key)s::text, '{}'::jsonb) || jsonb_build_object(
            %(pool)s::text,
            coalesce((settings -> %(settings_key)s::text ->> %(pool)s::text)::bigint, -1) + 1))
WHERE id = %(workspace_id)s
RETURNING (settings -> %(settings_key)s::text ->> %(pool)s::text)::bigint AS turn
"""
OWNER_SET = "UPDATE {table} SET owner_id = %s, updated_at = now() WHERE id = %s"


def pool_key(entity: str, roles: Sequence[str] | None, users: Sequence[UUID] | None) -> str:
    """Name of the rotation a step takes a turn in (short and stable for the same pool)."""
    if users:
        digest = hashlib.sha256(",".join(sorted(str(u) for u in users)).encode()).hexdigest()
        return f"{entity}:users:{digest[:16]}"
    if roles:
        return f"{entity}:roles:{','.join(sorted(roles))}"
    return f"{entity}:all"


def _plan(
    params: Params, step: StepContext
) -> tuple[RecordRef, list[str] | None, list[UUID] | None]:
    ref = target(params, step, OWNER_ENTITIES)
    roles = list(params["roles"]) if params.get("roles") else None
    users = (
        [as_uuid(u, f"users[{i}]") for i, u in enumerate(params["users"])]
        if params.get("users")
        else None
    )
    if roles and users:
        raise ActionError("validation", "'roles' and 'users' cannot be used together")
    return ref, roles, users


def _pool(cur: Cursor, roles: list[str] | None, users: list[UUID] | None) -> list[UUID]:
    cur.execute(MEMBERS_ACTIVE, {"roles": roles, "users": users})
    pool = [row["user_id"] for row in cur.fetchall()]
    if not pool:
        which = f"roles {roles}" if roles else f"users {[str(u) for u in users]}" if users else ""
        raise ActionError(
            "not_found",
            f"no active workspace member to assign{' among ' + which if which else ''}",
            details={"roles": roles, "users": [str(u) for u in users] if users else None},
        )
    return pool


def _turn(cur: Cursor, step: StepContext, pool: str) -> int:
    cur.execute(
        ROUND_ROBIN_TURN,
        {"settings_key": SETTINGS_KEY, "pool": pool, "workspace_id": step.workspace_id},
    )
    row = cur.fetchone()
    if row is None:
        raise ActionError("not_found", f"workspace {step.workspace_id} not found")
    return int(row["turn"])


@database_errors()
def run(cur: Cursor, params: Params, step: StepContext) -> Output:
    ref, roles, users = _plan(params, step)
    record = load_record(cur, ref, lock=True)
    if params.get("only_if_unassigned") and record["owner_id"] is not None:
        return {**ref.to_dict(), "owner_id": str(record["owner_id"]), "changed": False}
    pool = _pool(cur, roles, users)
    owner = pool[_turn(cur, step, pool_key(ref.entity, roles, users)) % len(pool)]
    cur.execute(sql.SQL(OWNER_SET).format(table=sql.Identifier(ref.table)), (owner, ref.id))
    return {
        **ref.to_dict(),
        "owner_id": str(owner),
        "previous_owner_id": None if record["owner_id"] is None else str(record["owner_id"]),
        "changed": owner != record["owner_id"],
    }


def describe(params: Params, step: StepContext) -> Output:
    ref, roles, users = _plan(params, step)
    among = (
        f"roles {roles}"
        if roles
        else f"users {[str(u) for u in users]}"
        if users
        else "all active members"
    )
    return {
        "would": f"UPDATE {ref.table} SET owner_id = <next in round-robin among {among}>"
        f" WHERE id = '{ref.id}'"
        + (" (only if it has no owner)" if params.get("only_if_unassigned") else ""),
        "record": ref.to_dict(),
        "pool": pool_key(ref.entity, roles, users),
    }


ASSIGN_OWNER = DatabaseAction("assign_owner", run, describe)
