"""The action port: what a step is given, what it may raise, and what every family shares.

An action is one of two kinds, because the guarantees differ:

* **database** actions write CRM rows. ``run(cur, params, step)`` executes on a dict-row
  cursor inside the *caller's* tenant transaction (role ``haste_app``, ``app.workspace_id``
  set, so RLS applies), and the caller commits those writes together with the step's record.
  An action therefore never commits, never opens a transaction or savepoint of its own, and
  never swallows an error: it raises :class:`ActionError` and the caller rolls back.
* **external** actions talk to another system (SMTP, HTTP). ``run(params, step)`` does its
  I/O outside any transaction and carries the step's idempotency key to the other side. An
  optional ``prepare(cur, params, step)`` reads what the I/O needs from the database first
  (e.g. the sending account), and an optional ``record(cur, params, step, output)`` writes
  what the I/O produced (e.g. the sent email) in a transaction afterwards; both must be
  idempotent, because a crash between the I/O and the commit makes the caller repeat them.

Every action also has ``describe(params, step)``: what it would do, without any I/O, for
``haste dry-run``. It raises the same :class:`ActionError` as ``run`` for problems that can be
seen without a database (an unknown column, a malformed id).

Idempotency: rows an action creates get an id derived from the step's idempotency key
(:func:`step_uuid`) and are inserted with ``ON CONFLICT DO NOTHING``, so running a step whose
transaction did commit (the reaper cannot always tell) creates nothing twice.

Records: :func:`target` picks the record a step acts on (``params.record`` or the trigger's),
:func:`load_record` checks it is visible, live and locks it. A crafted id of another workspace
is invisible under RLS, so it fails as ``not_found`` like any missing id and touches nothing.
Foreign keys are checked by PostgreSQL *without* RLS, so every id an author may put into a
reference column is checked for visibility here first (:func:`require_visible`,
:func:`require_member`), or a step could link a record to another workspace's rows.

Users: some columns must name a user (``notes.created_by``, ``deal_history.changed_by`` are
NOT NULL). :func:`acting_user` answers "who did this" as: the step's user (the person who
triggered the run, when there is one), else the owner of the record acted on, else the
workspace's earliest-joined active owner. Nullable "who" columns get the step's user only:
nothing is invented where the schema allows saying "nobody".
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal
from uuid import UUID

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

__all__ = [
    "ERROR_CLASSES",
    "RETRYABLE_BY_DEFAULT",
    "Action",
    "ActionEnv",
    "ActionError",
    "Cursor",
    "DatabaseAction",
    "ExternalAction",
    "Output",
    "Params",
    "RecordRef",
    "StepContext",
    "acting_user",
    "as_uuid",
    "automation_creator",
    "database_errors",
    "insert_once",
    "literal",
    "load_record",
    "not_found",
    "optional_target",
    "require_member",
    "require_visible",
    "step_uuid",
    "target",
    "workspace_owner",
]

Cursor = psycopg.Cursor[Any]
Params = Mapping[str, Any]
Output = dict[str, Any]

#: Every class an action error can have. The executor's retry policy matches on these.
ERROR_CLASSES = (
    "validation",
    "not_found",
    "conflict",
    "http_4xx",
    "http_5xx",
    "http_429",
    "network",
    "timeout",
    "config",
)

#: Classes that are worth retrying unless the raiser says otherwise (408/425 are http_4xx
#: raised as retryable; a deadlock is a conflict raised as retryable).
RETRYABLE_BY_DEFAULT = frozenset({"http_5xx", "http_429", "network", "timeout"})

#: Namespace of every uuid derived from an idempotency key (uuid5), so the same key always
#: yields the same row id / tracking id, and keys of other systems cannot collide with ours.
KEY_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://haste.dev/actions/idempotency-key")


@dataclass(frozen=True)
class ActionEnv:
    """Process-wide settings of external actions (filled by the worker from its config)."""

    smtp_url: str | None = None
    """``smtp://user:pass@host:port`` (plain; ``?starttls=true`` to upgrade) or ``smtps://``;
    None means email is not configured and send_email fails with class ``config``."""
    smtp_timeout: float = 30.0
    """Seconds for the SMTP connection and each command."""
    email_from: str | None = None
    """Sender when the step names none and no account could be resolved."""
    http_timeout: float = 10.0
    """Seconds per HTTP attempt when the step sets no ``timeout``."""
    http_max_response_bytes: int = 1_048_576
    """Response bytes kept when the step sets no ``max_response_bytes``."""
    http_user_agent: str = "haste-automation/0.1"
    """User-Agent of outgoing requests, so receivers can tell automation traffic apart."""


@dataclass(frozen=True)
class StepContext:
    """Who and what a step runs for; built by the executor (and by dry-run)."""

    workspace_id: UUID
    step_id: str
    idempotency_key: str
    """Derived from execution id + step id by the caller; stable across attempts."""
    execution_id: UUID | None = None
    trigger_entity: str | None = None
    """'contact' | 'company' | 'deal' | 'email' | 'task' | ... (None for webhook/manual)."""
    trigger_entity_id: UUID | None = None
    user_id: UUID | None = None
    env: ActionEnv = field(default_factory=ActionEnv)


class ActionError(Exception):
    """A step failed; the message names what is wrong (field, value).

    ``error_class`` is one of :data:`ERROR_CLASSES`; ``retryable`` defaults from the class;
    ``retry_after`` is the wait (seconds) the other side asked for, when it asked.
    """

    def __init__(
        self,
        error_class: str,
        message: str,
        *,
        retryable: bool | None = None,
        retry_after: float | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        if error_class not in ERROR_CLASSES:
            raise ValueError(f"unknown error class {error_class!r}")
        super().__init__(message)
        self.error_class = error_class
        self.message = message
        self.retryable = error_class in RETRYABLE_BY_DEFAULT if retryable is None else retryable
        self.retry_after = retry_after
        self.details = dict(details or {})

    def to_dict(self) -> dict[str, Any]:
        """The form a step record stores."""
        return {
            "class": self.error_class,
            "message": self.message,
            "retryable": self.retryable,
            "retry_after": self.retry_after,
            "details": self.details,
        }

    def __repr__(self) -> str:
        return f"ActionError({self.error_class!r}, {self.message!r}, retryable={self.retryable})"


@dataclass(frozen=True)
class DatabaseAction:
    """An action whose effects are rows written in the caller's tenant transaction."""

    type: str
    run: Callable[[Cursor, Params, StepContext], Output]
    describe: Callable[[Params, StepContext], Output]
    kind: Literal["database"] = "database"


@dataclass(frozen=True)
class ExternalAction:
    """An action whose effect is I/O to another system, outside any transaction."""

    type: str
    run: Callable[[Params, StepContext], Output]
    describe: Callable[[Params, StepContext], Output]
    prepare: Callable[[Cursor, Params, StepContext], Params] | None = None
    """Reads what the I/O needs, in a tenant transaction before ``run``; returns the params
    ``run`` should get."""
    record: Callable[[Cursor, Params, StepContext, Output], Output] | None = None
    """Writes what the I/O produced, in a tenant transaction after ``run``; idempotent."""
    kind: Literal["external"] = "external"


Action = DatabaseAction | ExternalAction


# --- small pure helpers ------------------------------------------------------------------


def step_uuid(step: StepContext) -> UUID:
    """The id of the row (or tracking id) a step creates: the same for every attempt."""
    return uuid.uuid5(KEY_NAMESPACE, step.idempotency_key)


def as_uuid(value: Any, where: str) -> UUID:
    """A uuid from a rendered param; ``where`` names the param in the error."""
    if isinstance(value, UUID):
        return value
    if isinstance(value, str):
        try:
            return UUID(value.strip())
        except ValueError:
            pass
    raise ActionError("validation", f"{where}: {value!r} is not a uuid", details={"field": where})


def literal(value: Any) -> str:
    """A value as dry-run text shows it (JSON, with uuids and dates as strings)."""
    return json.dumps(value, default=str, ensure_ascii=False)


# --- database errors ---------------------------------------------------------------------


def _pg_details(exc: psycopg.Error) -> dict[str, Any]:
    diag = exc.diag
    found = {
        "sqlstate": exc.sqlstate,
        "table": diag.table_name,
        "column": diag.column_name,
        "constraint": diag.constraint_name,
        "detail": diag.message_detail,
    }
    return {k: v for k, v in found.items() if v is not None}


@contextmanager
def database_errors() -> Iterator[None]:
    """Turn PostgreSQL's refusals into classed action errors (usable as a decorator).

    Constraint and data errors are the author's (bad value: ``validation``; duplicate:
    ``conflict``), so retrying cannot help; lock conflicts between concurrent steps can.
    Anything else (lost connection, ...) propagates unchanged for the executor to classify.
    The transaction is aborted either way; the caller rolls it back.
    """
    try:
        yield
    except pg_errors.UniqueViolation as exc:
        message = exc.diag.message_primary or str(exc)
        raise ActionError("conflict", message, details=_pg_details(exc)) from exc
    except (
        pg_errors.SerializationFailure,
        pg_errors.DeadlockDetected,
        pg_errors.LockNotAvailable,
    ) as exc:
        message = exc.diag.message_primary or str(exc)
        raise ActionError("conflict", message, retryable=True, details=_pg_details(exc)) from exc
    except (psycopg.IntegrityError, psycopg.DataError) as exc:
        message = exc.diag.message_primary or str(exc)
        raise ActionError("validation", message, details=_pg_details(exc)) from exc


# --- the record a step acts on -----------------------------------------------------------

#: Entity kind -> table, for every kind an action may act on.
TABLES: Mapping[str, str] = {
    "contact": "contacts",
    "company": "companies",
    "deal": "deals",
    "task": "tasks",
    "email": "emails",
}

#: The column that says who a record belongs to (emails belong to nobody).
OWNER_COLUMNS: Mapping[str, str | None] = {
    "contact": "owner_id",
    "company": "owner_id",
    "deal": "owner_id",
    "task": "assigned_to",
    "email": None,
}


@dataclass(frozen=True)
class RecordRef:
    """A record of the workspace: its kind and id."""

    entity: str
    id: UUID

    @property
    def table(self) -> str:
        return TABLES[self.entity]

    def to_dict(self) -> dict[str, str]:
        return {"entity": self.entity, "id": str(self.id)}


def optional_target(
    params: Params, step: StepContext, allowed: Sequence[str], *, key: str = "record"
) -> RecordRef | None:
    """``params[key]`` when given (its entity must be allowed), else the trigger's record when
    it is of an allowed kind, else None."""
    given = params.get(key)
    if given is not None:
        entity = given.get("entity") if isinstance(given, Mapping) else None
        if entity not in allowed:
            raise ActionError(
                "validation",
                f"{key}.entity must be one of {', '.join(allowed)}, got {entity!r}",
                details={"field": f"{key}.entity", "value": entity},
            )
        return RecordRef(entity, as_uuid(given.get("id"), f"{key}.id"))
    if step.trigger_entity in allowed and step.trigger_entity_id is not None:
        return RecordRef(step.trigger_entity, as_uuid(step.trigger_entity_id, "trigger id"))
    return None


def target(
    params: Params, step: StepContext, allowed: Sequence[str], *, key: str = "record"
) -> RecordRef:
    """Like :func:`optional_target`, but a step that has no record to act on is an error."""
    ref = optional_target(params, step, allowed, key=key)
    if ref is None:
        raise ActionError(
            "validation",
            f"no '{key}' given and the trigger's record ({step.trigger_entity or 'none'})"
            f" is not a {' or '.join(allowed)}",
            details={"field": key},
        )
    return ref


def not_found(ref: RecordRef) -> ActionError:
    return ActionError(
        "not_found",
        f"{ref.entity} {ref.id} not found in this workspace",
        details={"entity": ref.entity, "id": str(ref.id)},
    )


@cache
def _select_record(table: str, entity: str, lock: bool, author: bool) -> str:
    """load_record's statement, composed once per shape (composing costs more than it reads)."""
    owner = OWNER_COLUMNS[entity]
    owner_column = sql.Identifier(owner) if owner else sql.SQL("NULL::uuid")
    author_column = (
        sql.SQL(", COALESCE(%s::uuid, {owner}, ({first_owner})) AS author").format(
            owner=owner_column, first_owner=sql.SQL(WORKSPACE_OWNER)
        )
        if author
        else sql.SQL("")
    )
    return (
        sql.SQL(
            "SELECT id, {owner} AS owner_id{author} FROM {table}"
            " WHERE id = %s AND deleted_at IS NULL{lock}"
        )
        .format(
            owner=owner_column,
            author=author_column,
            table=sql.Identifier(table),
            lock=sql.SQL(" FOR NO KEY UPDATE") if lock else sql.SQL(""),
        )
        .as_string()
    )


def load_record(
    cur: Cursor, ref: RecordRef, *, lock: bool = False, author: StepContext | None = None
) -> dict[str, Any]:
    """``{"id", "owner_id"}`` of a visible, not deleted record; ``not_found`` otherwise.

    ``lock`` takes the row lock now, so a read-then-write step cannot interleave with
    another step on the same record. ``author`` adds ``"author"``: :func:`acting_user`'s
    answer for this record, in the same round trip (the workspace owner is only looked up
    when the step has no user and the record no owner; None when there is none either).
    """
    params = () if author is None else (author.user_id,)
    cur.execute(_select_record(ref.table, ref.entity, lock, author is not None), (*params, ref.id))
    row = cur.fetchone()
    if row is None:
        raise not_found(ref)
    if author is not None and row["author"] is None:
        raise no_author()
    return row


def require_visible(cur: Cursor, table: str, value: Any, where: str) -> UUID:
    """The id in ``where`` names a row of this workspace (RLS decides); ``not_found`` otherwise."""
    row_id = as_uuid(value, where)
    query = sql.SQL("SELECT 1 FROM {} WHERE id = %s").format(sql.Identifier(table))
    cur.execute(query, (row_id,))
    if cur.fetchone() is None:
        raise ActionError(
            "not_found",
            f"{where}: {row_id} is not a {table} row of this workspace",
            details={"field": where, "value": str(row_id)},
        )
    return row_id


def require_member(cur: Cursor, value: Any, where: str) -> UUID:
    """The user in ``where`` is an active member of this workspace; ``not_found`` otherwise."""
    user_id = as_uuid(value, where)
    cur.execute(
        "SELECT 1 FROM workspace_members WHERE user_id = %s AND status = 'active'", (user_id,)
    )
    if cur.fetchone() is None:
        raise ActionError(
            "not_found",
            f"{where}: user {user_id} is not an active member of this workspace",
            details={"field": where, "value": str(user_id)},
        )
    return user_id


# --- users -------------------------------------------------------------------------------


#: The workspace's earliest-joined active owner (RLS keeps it to the tenant's members).
WORKSPACE_OWNER = (
    "SELECT user_id FROM workspace_members WHERE role = 'owner' AND status = 'active'"
    " ORDER BY joined_at NULLS LAST, created_at, user_id LIMIT 1"
)


def workspace_owner(cur: Cursor) -> UUID | None:
    """The workspace's earliest-joined active owner: the last-resort author of engine writes."""
    cur.execute(WORKSPACE_OWNER)
    row = cur.fetchone()
    return row["user_id"] if row else None


def no_author() -> ActionError:
    return ActionError(
        "config",
        "no user to act as: the step has no user, the record no owner,"
        " and the workspace no active owner member",
    )


def automation_creator(cur: Cursor, step: StepContext) -> UUID | None:
    """Who created the automation this step belongs to (None outside an execution)."""
    if step.execution_id is None:
        return None
    cur.execute(
        "SELECT a.created_by FROM automation_executions e"
        " JOIN automations a ON a.id = e.automation_id WHERE e.id = %s",
        (step.execution_id,),
    )
    row = cur.fetchone()
    return row["created_by"] if row else None


def acting_user(cur: Cursor, step: StepContext, record_owner: UUID | None) -> UUID:
    """Who did it, for NOT NULL author columns: step user, record owner, workspace owner."""
    for candidate in (step.user_id, record_owner):
        if candidate is not None:
            return candidate
    owner = workspace_owner(cur)
    if owner is None:
        raise no_author()
    return owner


# --- idempotent inserts ------------------------------------------------------------------


@cache
def _insert_once(table: str, columns: tuple[str, ...]) -> str:
    """insert_once's statement, composed once per table and column list."""
    return (
        sql.SQL(
            "INSERT INTO {table} ({columns}) VALUES ({values})"
            " ON CONFLICT (id) DO NOTHING RETURNING id"
        )
        .format(
            table=sql.Identifier(table),
            columns=sql.SQL(", ").join(map(sql.Identifier, columns)),
            values=sql.SQL(", ").join(sql.Placeholder() * len(columns)),
        )
        .as_string()
    )


def insert_once(cur: Cursor, ref: RecordRef | tuple[str, UUID], row: Mapping[str, Any]) -> bool:
    """INSERT ``row`` (whose ``id`` is the step's) unless a repeat of the step already did.

    True when this call created the row, False when it existed. Column names come from the
    action's code, never from params unchecked.
    """
    table, row_id = (ref.table, ref.id) if isinstance(ref, RecordRef) else ref
    cur.execute(_insert_once(table, tuple(row)), list(row.values()))
    if cur.fetchone() is not None:
        return True
    cur.execute(sql.SQL("SELECT 1 FROM {} WHERE id = %s").format(sql.Identifier(table)), (row_id,))
    if cur.fetchone() is None:
        raise ActionError("conflict", f"{table} id {row_id} is taken outside this workspace")
    return False
