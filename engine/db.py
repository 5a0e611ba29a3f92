"""Connections, and the one way to run tenant work: :func:`tenant_transaction`.

Row-level security is bypassed by superusers and table owners, which is what the engine's
connection is. So tenant work switches, for one transaction, to the ``haste_app`` role
(created by the migrations: no BYPASSRLS, not an owner) and sets ``app.workspace_id`` /
``app.user_id`` with ``set_config(..., true)`` (transaction-local, so a pooled connection
cannot leak a tenant into the next transaction). Policies read the workspace with
``NULLIF(current_setting('app.workspace_id', true), '')::uuid``: unset means no rows.

Cross-tenant system work (draining the outbox, the reaper, maintenance) uses
:func:`system_transaction`, whose name marks every place that deliberately runs as owner.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import Any
from uuid import UUID

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

#: The role tenant transactions run as (see schemas/sql; it has no BYPASSRLS).
APP_ROLE = "haste_app"
#: Server settings a tenant transaction may set for itself besides ``app.*``.
LOCAL_SETTINGS = frozenset({"synchronous_commit", "statement_timeout"})


def connect(conninfo: str, **kwargs: Any) -> psycopg.Connection[Any]:
    """A plain connection; callers choose autocommit and row factory."""
    return psycopg.connect(conninfo, **kwargs)


def make_pool(
    conninfo: str, *, max_size: int = 10, min_size: int = 1, name: str = "haste"
) -> ConnectionPool:
    """A pool whose connections are autocommit, so each unit of work opens its own transaction."""
    return ConnectionPool(
        conninfo,
        min_size=min_size,
        max_size=max_size,
        kwargs={"autocommit": True},
        name=name,
        open=True,
    )


def _one_round_trip(conn: psycopg.Connection[Any], pairs: list[tuple[str, str]]) -> bool:
    """Whether :func:`tenant_transaction` may send BEGIN and its settings as one string.

    Only on an idle autocommit connection (else it nests as a savepoint), and only for
    values that are plain string constants as they are: no quote, backslash or NUL (ids,
    numbers, role and setting names always are), with standard_conforming_strings on.
    """
    return (
        conn.autocommit
        and conn.info.transaction_status == TransactionStatus.IDLE
        and conn.info.parameter_status("standard_conforming_strings") == "on"
        and not any(c in part for pair in pairs for part in pair for c in "'\\\0")
    )


@contextmanager
def tenant_transaction(
    conn: psycopg.Connection[Any],
    workspace_id: UUID | str,
    user_id: UUID | str | None = None,
    *,
    dict_rows: bool = False,
    settings: Mapping[str, str] | None = None,
) -> Iterator[psycopg.Cursor[Any]]:
    """One transaction under RLS for ``workspace_id``; commits on success, rolls back on error.

    ``settings`` are more transaction-local settings, e.g. ``app.execution_id`` and
    ``app.causation_depth`` for a step's writes, so that the capture triggers can record
    which execution caused an event (that is how automation chains are cut at a depth),
    or ``synchronous_commit``. They are set in the same round trip as the tenant, never
    session-wide.
    """
    if workspace_id is None or str(workspace_id) == "":
        raise ValueError("tenant_transaction needs a workspace id")
    pairs = [
        ("role", APP_ROLE),  # = SET LOCAL ROLE, in the same round trip as the settings
        ("app.workspace_id", str(workspace_id)),
        ("app.user_id", "" if user_id is None else str(user_id)),
    ]
    for name, value in (settings or {}).items():
        if not name.startswith("app.") and name not in LOCAL_SETTINGS:
            raise ValueError(
                f"setting {name!r}: only app.* and {sorted(LOCAL_SETTINGS)} may be set here"
            )
        pairs.append((name, str(value)))
    if _one_round_trip(conn, pairs):
        # The usual case (pooled autocommit connections): BEGIN and the settings in one
        # round trip, one simple-protocol query. Every step of every execution opens one
        # of these: a round trip costs the worker and the server more CPU than the query.
        begin = "BEGIN; SELECT " + ", ".join(
            f"set_config('{name}', '{value}', true)" for name, value in pairs
        )
        with conn.cursor(row_factory=dict_row) if dict_rows else conn.cursor() as cur:
            try:
                cur.execute(begin)
                yield cur
            except psycopg.Rollback:
                conn.rollback()  # asked for, like conn.transaction(): not an error
                return
            except BaseException:
                with suppress(psycopg.Error):  # a dead connection: the original error counts
                    conn.rollback()
                raise
            conn.commit()
        return
    select = "SELECT " + ", ".join("set_config(%s, %s, true)" for _ in pairs)
    with conn.transaction():  # inside a transaction already: a savepoint
        cur = conn.cursor(row_factory=dict_row) if dict_rows else conn.cursor()
        with cur:
            cur.execute(select, [part for pair in pairs for part in pair])
            yield cur


@contextmanager
def system_transaction(
    conn: psycopg.Connection[Any], *, dict_rows: bool = False
) -> Iterator[psycopg.Cursor[Any]]:
    """One transaction as the owner, across tenants: only for engine bookkeeping."""
    with conn.transaction():
        cur = conn.cursor(row_factory=dict_row) if dict_rows else conn.cursor()
        with cur:
            yield cur
