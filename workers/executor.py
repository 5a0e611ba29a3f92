"""Run one execution: claim its row, walk its steps from the first one not yet recorded,
and record each outcome; then finish, fail, wait or back off.

Roles, as in the queue codebases we follow: :func:`engine.executions.claim` is the
claimer (one fenced UPDATE), :func:`engine.steps.walk` the control flow shared with
dry-run, :class:`_Run` the executor of each step (it catches everything and turns it into
a :class:`~engine.steps.StepError`), and the fenced writes of ``step_record`` /
``execution_finish`` the completer.

Guarantees, and how:

* **Database steps take effect exactly once.** A step's writes and its step record
  commit in one tenant transaction (``haste_app``, RLS, ``app.execution_id`` and
  ``app.causation_depth`` set for the capture triggers). The record insert is fenced on
  the claim (``status = 'running' AND attempt = <ours>``) and refuses to overwrite a
  completed record, so a worker that lost its claim, or a second worker racing it after a
  reaper recovery, rolls its writes back instead of committing them twice. A resumed run
  skips every step with a final record and reuses its output for templates.
* **External steps are at least once, with a key.** ``prepare()`` reads in a tenant
  transaction, the call happens outside any transaction with the step's idempotency key
  (``<execution>:<step>``, ``:r<n>`` after the n-th re-run) as ``Idempotency-Key`` / in the
  Message-ID, then ``record()`` and the step record commit together. A worker killed
  between the call and that commit makes the next attempt call again *with the same
  key*: receivers that honour the key see one effect; SMTP recipients see a duplicate
  Message-ID.
* **Retries hold no thread.** A failed attempt that the policy (:mod:`workers.retry`)
  retries is recorded, the row goes back to ``queued`` with ``resume_at = now + wait``
  and a delayed message is sent; if that message is lost the reaper sends another.
* **delay / ai_task hold no thread.** The row goes to ``waiting`` (``resume_at`` = when
  the delay is over; NULL for an AI task) and the scheduler or the AI worker wakes it.

Batches: a message may name several executions (:func:`workers.broker.batches`, under a
backlog only). :meth:`Executor.run_many` claims them in one statement, runs them one after
the other, and writes their ends in one statement per automation once the last one is
done; each run keeps its own step transactions and fencing, so the guarantees above hold
per execution. What a batch saves is per-message and per-statement work: with one
database step per execution, about a third of the CPU (PostgreSQL and worker) of a run.

Step ``timeout``: database steps get ``statement_timeout``; http_request gets it as its
request timeout when it sets none; send_email as the SMTP timeout. An error that is not an
:class:`~actions.ActionError` is classified here: a template error is ``validation``, a
cancelled statement ``timeout``, a lost database connection ``network`` (retried), and
anything else ``internal`` (a bug: never retried, recorded with its type).
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import partial
from typing import Any
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from actions import ACTIONS, ActionEnv, ActionError, DatabaseAction, StepContext
from actions.base import KEY_NAMESPACE
from actions.http import SECRET_HEADERS
from engine import conditions, executions, metrics
from engine.context import ENTITY_TABLES, build_context
from engine.db import system_transaction, tenant_transaction
from engine.definitions import parse_duration
from engine.delays import DelayError, resume_at
from engine.executions import Claim
from engine.queries import query
from engine.steps import Outcome, Step, StepError, walk
from workers.broker import enqueue_executions, get_broker
from workers.heartbeat import Heartbeat
from workers.retry import RetryPolicy

log = logging.getLogger("haste.executor")

AI_TASK_ACTOR = "process_ai_task"
"""Actor the AI worker registers (see :mod:`workers.actors` for the contract)."""
WORKSPACE_TTL = 60.0
"""Seconds a worker keeps a workspace's name/slug/timezone before reading them again."""
_PLURALS = {table: entity for entity, table in ENTITY_TABLES.items()}


class ClaimLost(Exception):
    """A fenced write found the execution no longer ours (reaped, cancelled)."""


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UUID | Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


_dumps = partial(json.dumps, default=_json_default, ensure_ascii=False)


def as_json(value: Any) -> Any:
    """The value as it reads back from a JSONB column, so that a fresh output and a
    recorded one template the same (uuids and instants as strings)."""
    return json.loads(_dumps(value))


def _jsonb(value: Any) -> Jsonb | None:
    return None if value is None else Jsonb(value, dumps=_dumps)


def redact(step_type: str, params: Any) -> Any:
    """Params as a step record keeps them: secret header values hidden."""
    if step_type != "http_request" or not isinstance(params, Mapping):
        return params
    headers = params.get("headers")
    if not isinstance(headers, Mapping):
        return params
    shown = {k: "***" if str(k).lower() in SECRET_HEADERS else v for k, v in headers.items()}
    return {**params, "headers": shown}


def classify(exc: BaseException) -> StepError:
    """Any exception of a step attempt as a classed error (see the module doc)."""
    if isinstance(exc, ActionError):
        return StepError(
            exc.error_class, exc.message, exc.retryable, exc.retry_after, dict(exc.details)
        )
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return StepError("timeout", f"the step's statement timed out: {exc}", retryable=True)
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):
        return StepError("validation", f"refused by row-level security: {exc}")
    if isinstance(exc, psycopg.OperationalError):
        return StepError("network", f"database: {exc}", retryable=True)
    return StepError("internal", f"{type(exc).__name__}: {exc}")


def reads_context(step: Step) -> bool:
    """Whether the walk will read the run's context for this step (an ``if``, a branch's
    cases, a template in its params or a delay on a date field): only then is the record
    (re)loaded, which is two to four queries saved for a step with literal params."""
    if step.definition.get("if") is not None or step.type in ("branch", "delay"):
        return True
    text = _dumps(step.params)
    return "{{" in text or "{%" in text


def _canonical(execution_id: Any) -> str | None:
    """An execution id as the claim returns it; None if it is not a uuid at all."""
    try:
        return str(UUID(str(execution_id)))
    except ValueError:
        return None


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.current_thread().name}"


@dataclass
class Executor:
    """Per-process state of the execution runner (pool, heartbeat, caches)."""

    pool: ConnectionPool
    heartbeat: Heartbeat
    env: ActionEnv = field(default_factory=ActionEnv)
    rng: random.Random = field(default_factory=random.Random)
    stopping: threading.Event = field(default_factory=threading.Event)
    """Set on worker shutdown: runs hand their execution back after the current step."""
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    _documents: dict[tuple[UUID, int], dict[str, Any]] = field(default_factory=dict)
    _workspaces: dict[UUID, tuple[float, dict[str, Any]]] = field(default_factory=dict)

    def run(self, execution_id: str) -> str:
        """Run execution ``execution_id`` as far as it goes now; returns what became of it:
        completed | failed | waiting | retrying | released | lost | not_claimed."""
        return self.run_many([execution_id])[0]

    def run_many(self, execution_ids: Sequence[str]) -> list[str]:
        """Run the executions of one message one after the other, as :meth:`run` does each;
        returns what became of each, in order.

        They are claimed together, in one statement, and held (heart-beaten) from then on;
        ones not claimed are handled as a lone message's would be. The runs that end are
        finished together too, after the last one (:func:`engine.executions.finish_many`:
        one statement and one counters update per automation instead of one per run);
        until then they stay ``running`` and held, and a crash in between leaves them to
        the reaper, whose recovery resumes each from its step records and finishes it. If
        the batch stops early (a lost database connection, a bug), the claims it had not
        started yet are handed back (queued, message sent) when the database still
        answers; otherwise the reaper recovers them as it would the runs of a killed
        worker."""
        ids = [_canonical(i) for i in execution_ids]
        with self.pool.connection() as conn:
            wanted = list(dict.fromkeys(i for i in ids if i is not None))
            found = executions.claim(conn, wanted, worker_name()) if wanted else []
            claims = {str(c.id): c for c in found}
            for held in claims.values():
                self.heartbeat.hold(held.id, held.attempt)
            endings: list[executions.Ending] | None = [] if len(claims) > 1 else None
            results: list[str] = []
            try:
                for execution_id, raw in zip(ids, execution_ids, strict=True):
                    held = claims.pop(execution_id, None) if execution_id else None
                    if held is None:
                        if execution_id is None:
                            log.warning("message for %r, not an execution id; dropped", raw)
                        else:
                            self._claim_missed(conn, execution_id)
                        results.append("not_claimed")
                    else:
                        results.append(self._run_claimed(conn, held, endings))
            finally:
                try:
                    if endings:
                        lost = self._finish(conn, endings)
                        results = [
                            "lost" if i in lost and r in ("completed", "failed") else r
                            for i, r in zip(ids, results, strict=False)
                        ]
                finally:
                    if claims:
                        self._hand_back(conn, list(claims.values()))
            return results

    def _run_claimed(
        self,
        conn: psycopg.Connection[Any],
        held: Claim,
        endings: list[executions.Ending] | None = None,
    ) -> str:
        ended = len(endings) if endings is not None else 0
        try:
            return _Run(self, conn, held, endings).go()
        except _Released:
            return "released"
        except ClaimLost:
            log.info("execution %s is no longer ours; stopped", held.id)
            return "lost"
        finally:
            if endings is None or len(endings) == ended:  # else held until it is finished
                self.heartbeat.release(held.id)

    def _finish(self, conn: psycopg.Connection[Any], endings: list[executions.Ending]) -> set[str]:
        """Write the ends of a batch's runs; returns the ids found no longer ours."""
        try:
            done = executions.finish_many(conn, endings)
        finally:
            for ending in endings:
                self.heartbeat.release(ending.held.id)
        lost = set()
        for ending in endings:
            status = done.get(ending.held.id)
            if status is None:
                log.info("execution %s is no longer ours; its end not recorded", ending.held.id)
                lost.add(str(ending.held.id))
            else:
                metrics.EXECUTIONS_FINISHED.labels(status=status).inc()
        return lost

    def _hand_back(self, conn: psycopg.Connection[Any], claims: list[Claim]) -> None:
        """Claims of a batch that stopped before running them: queued again, and sent."""
        try:
            if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                conn.rollback()
            with system_transaction(conn, dict_rows=True) as cur:
                back = [h.id for h in claims if executions.requeue_with_backoff(cur, h, 0)]
        except psycopg.Error as exc:
            log.warning(
                "could not hand back %d claimed executions (the reaper will): %s", len(claims), exc
            )
            back = []
        finally:
            for held in claims:
                self.heartbeat.release(held.id)
        enqueue_executions(back)

    def _claim_missed(self, conn: psycopg.Connection[Any], execution_id: str) -> None:
        """A message that came before its row was due (clock skew on a back-off): send it
        again for the remaining time rather than wait for the reaper."""
        try:
            row = executions.state(conn, execution_id)
        except psycopg.errors.InvalidTextRepresentation:
            log.warning("message for %r, which is not an execution id; dropped", execution_id)
            return
        if row and row["status"] == "queued" and (row["due_in"] or 0) > 0:
            enqueue_executions([execution_id], delay_ms=int(row["due_in"] * 1000) + 5)

    def cached(self, held: Claim) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """Document and workspace of a run from the caches, when both are there."""
        document = self._documents.get((held.automation_id, held.automation_version or -1))
        workspace = self._workspaces.get(held.workspace_id)
        if document is None or workspace is None or workspace[0] <= time.monotonic():
            return None
        return document, workspace[1]

    def document(self, cur: psycopg.Cursor[Any], held: Claim) -> dict[str, Any]:
        key = (held.automation_id, held.automation_version or -1)
        cached = self._documents.get(key) if held.automation_version else None
        if cached is not None:
            return cached
        row = cur.execute(
            query("execution_document"),
            {"automation_id": held.automation_id, "version": held.automation_version},
        ).fetchone()
        if row is None:
            raise ClaimLost(f"automation {held.automation_id} is gone")
        doc = dict(row["document"] or {})
        doc.setdefault("on_error", row["on_error"] or "stop")
        doc.setdefault("max_retries", row["max_retries"])
        if held.automation_version:
            self._documents[key] = doc
        return doc

    def workspace(self, cur: psycopg.Cursor[Any], workspace_id: UUID) -> dict[str, Any]:
        cached = self._workspaces.get(workspace_id)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        row = cur.execute(query("execution_workspace"), {"id": workspace_id}).fetchone() or {}
        settings = row.get("settings") or {}
        found = {
            "id": workspace_id,
            "slug": row.get("slug"),
            "name": row.get("name"),
            "timezone": settings.get("timezone") or "UTC",
        }
        self._workspaces[workspace_id] = (time.monotonic() + WORKSPACE_TTL, found)
        return found


class _Run:
    """One slice of one execution, from claim to finish or suspension (a Runner)."""

    def __init__(
        self,
        executor: Executor,
        conn: psycopg.Connection[Any],
        held: Claim,
        endings: list[executions.Ending] | None = None,
    ) -> None:
        self.ex = executor
        self.conn = conn
        self.held = held
        self.endings = endings
        """Where a run of a batch leaves its end for :meth:`Executor.run_many` to write."""
        entity = held.trigger_entity_type
        self.entity = entity if entity in ENTITY_TABLES else _PLURALS.get(entity or "")
        self.suspension = "suspended"
        self._open: tuple[Any, psycopg.Cursor[Any]] | None = None
        # A first claim has no step records yet, and the caches usually hold the rest:
        # the common case costs no transaction here.
        cached = executor.cached(held)
        rows: list[Any] = []
        if cached is None or held.attempt > 1:
            with system_transaction(conn, dict_rows=True) as cur:
                self.document = executor.document(cur, held)
                self.workspace = executor.workspace(cur, held.workspace_id)
                if held.attempt > 1:
                    rows = cur.execute(query("step_list"), {"execution_id": held.id}).fetchall()
        else:
            self.document, self.workspace = cached
        self.records: dict[str, dict[str, Any]] = {r["step_id"]: dict(r) for r in rows}
        self.max_retries = self.document.get("max_retries")
        self.context: dict[str, Any] = {}
        self.stale = True
        try:
            self.user_id: UUID | None = UUID(str(held.triggered_by))
        except ValueError:
            self.user_id = None

    # --- the run ---------------------------------------------------------------------

    def go(self) -> str:
        try:
            return self._go()
        finally:
            self._rollback()

    def _go(self) -> str:
        result = walk(
            self.document.get("actions") or [],
            self,
            self.context,
            on_error=str(self.document.get("on_error") or "stop"),
            clock=self.ex.clock,
        )
        if result.status == "suspended":
            return self.suspension
        summary = self.summary()
        if result.status == "failed":
            assert result.step is not None and result.outcome is not None
            error = result.outcome.error or StepError("internal", "failed without an error")
            record = self.records.get(result.step.id, {})
            attempts = record.get("attempts") or 1
            message = (
                f"step '{result.step.id}' ({result.step.type}) failed after {attempts}"
                f" attempt(s): {error}"
            )
            details = {
                "step_id": result.step.id,
                "pointer": result.step.pointer,
                "type": result.step.type,
                **error.to_dict(),
                "attempts": attempts,
                "attempt_history": record.get("attempt_history") or [],
            }
            return self._end(
                "failed", actions_executed=summary, error_message=message, error_details=details
            )
        continued = [
            {"step_id": s["step_id"], **(s.get("error") or {})}
            for s in summary
            if s["status"] == "failed"
        ]
        return self._end(
            "completed",
            actions_executed=summary,
            error_details={"continued_failures": continued} if continued else None,
        )

    def _end(self, status: str, **details: Any) -> str:
        """Finish the run now, or, in a batch, leave its end to be written with the others'."""
        if self.endings is not None:
            self.endings.append(executions.Ending(self.held, status, self.ex.clock(), **details))
            return status
        if not executions.finish(self.conn, self.held, status, **details):
            raise ClaimLost(str(self.held.id))
        metrics.EXECUTIONS_FINISHED.labels(status=status).inc()
        return status

    def summary(self) -> list[dict[str, Any]]:
        """``actions_executed``: one line per recorded step, in walk order."""
        order = executions.step_order(self.document)
        position = {sid: i for i, sid in enumerate(order)}
        lines = []
        for record in sorted(self.records.values(), key=lambda r: position.get(r["step_id"], 0)):
            line = {
                "step_id": record["step_id"],
                "type": record["type"],
                "status": record["status"],
                "attempts": record["attempts"],
                "duration_ms": record.get("duration_ms"),
            }
            error = record.get("error")
            if error:
                line["error"] = {"class": error.get("class"), "message": error.get("message")}
            lines.append(line)
        return lines

    def key(self, step: Step) -> str:
        base = f"{self.held.id}:{step.id}"
        return base if not self.held.reruns else f"{base}:r{self.held.reruns}"

    def step_context(self, step: Step, env: ActionEnv | None = None) -> StepContext:
        record_id = self.held.trigger_entity_id
        return StepContext(
            workspace_id=self.held.workspace_id,
            step_id=step.id,
            idempotency_key=self.key(step),
            execution_id=self.held.id,
            trigger_entity=self.entity,
            trigger_entity_id=record_id if self.entity else None,
            user_id=self.user_id,
            env=env or self.ex.env,
        )

    def tenant(self) -> Any:
        """A tenant transaction whose writes the capture triggers attribute to this run."""
        return tenant_transaction(
            self.conn,
            self.held.workspace_id,
            self.user_id,
            dict_rows=True,
            settings={
                "app.execution_id": str(self.held.id),
                "app.causation_depth": str(self.held.depth),
                "synchronous_commit": "on",  # the worker's session default is off
            },
        )

    def _begin(self) -> psycopg.Cursor[Any]:
        """The step's tenant transaction, opened if it is not open yet."""
        if self._open is None:
            manager = self.tenant()
            self._open = (manager, manager.__enter__())
        return self._open[1]

    def _commit(self) -> None:
        if self._open is not None:
            manager, _ = self._open
            self._open = None
            manager.__exit__(None, None, None)

    def _rollback(self) -> None:
        if self._open is not None:
            manager, _ = self._open
            self._open = None
            error = psycopg.Rollback()
            try:
                manager.__exit__(type(error), error, None)
            except psycopg.Error:
                log.warning("rollback of execution %s failed", self.held.id, exc_info=True)

    def _check_live(self) -> None:
        if self.ex.heartbeat.lost(self.held.id):
            raise ClaimLost(str(self.held.id))

    # --- context ---------------------------------------------------------------------

    def refresh_context(self, cur: psycopg.Cursor[Any], now: datetime) -> None:
        """Load (or reload, after a database step) the record the run is about, so that
        templates and conditions see the current values, under the workspace's RLS."""
        if not self.stale:
            self.context["now"] = now.isoformat()
            return
        snapshot = self.held.context or {}
        previous = snapshot.get("previous") or {}
        if self.entity and isinstance(previous.get(self.entity), Mapping):
            previous = previous[self.entity]
        fresh = build_context(
            cur,
            self.workspace,
            entity=self.entity if self.held.trigger_entity_id else None,
            record_id=self.held.trigger_entity_id,
            previous=previous,
            event=snapshot.get("event"),
            trigger=snapshot.get("trigger"),
            steps=self.context.get("steps"),
            now=now,
        )
        steps = self.context.get("steps")
        self.context.clear()
        self.context.update(fresh)
        self.context["steps"] = steps if steps is not None else {}
        self.stale = False

    # --- Runner ----------------------------------------------------------------------

    def prior(self, step: Step) -> Outcome | None:
        if self.ex.stopping.is_set():
            self._release()
        self._check_live()
        record = self.records.get(step.id)
        status = record["status"] if record else None
        if status == "completed":
            return Outcome("completed", record["output"])  # type: ignore[index]
        if status == "skipped":
            return Outcome("skipped")
        if status == "failed":
            return Outcome("failed", error=StepError.from_dict(record.get("error") or {}))  # type: ignore[union-attr]
        if status == "waiting":
            return self._resume(step, record)  # type: ignore[arg-type]
        # The step's transaction starts here: the record its `if` and templates read, its
        # writes and its step record then share one snapshot and one commit.
        cur = self._begin()
        if reads_context(step):
            self.refresh_context(cur, self.ex.clock())
        return None

    def settle(
        self,
        step: Step,
        outcome: Outcome,
        *,
        condition: conditions.Evaluation | None = None,
        params: Any = None,
    ) -> Outcome:
        self._commit()
        attempt = self._attempt(step)
        if outcome.status == "failed":
            assert outcome.error is not None
            return self._failed(step, outcome.error, attempt, None, self.ex.clock(), 0)
        recorded_input = {"condition": condition.as_dict()} if condition is not None else None
        with system_transaction(self.conn, dict_rows=True) as cur:
            self._record(
                cur, step, outcome.status, attempt, input=recorded_input, output=outcome.output
            )
        return outcome

    def run(
        self, step: Step, params: Any, *, condition: conditions.Evaluation | None = None
    ) -> Outcome:
        attempt = self._attempt(step)
        started = self.ex.clock()
        clock = time.monotonic()
        action = ACTIONS.get(step.type)
        if not isinstance(action, DatabaseAction):
            self._commit()  # no transaction stays open across I/O or a wait
        try:
            if step.type == "delay":
                return self._delay(step, params, attempt)
            if step.type == "ai_task":
                return self._ai_task(step, params, attempt)
            if action is None:
                raise ActionError("validation", f"unknown step type {step.type!r}")
            if isinstance(action, DatabaseAction):
                output = self._database(step, action, params, attempt, started, clock)
            else:
                output = self._external(step, action, params, attempt, started, clock)
        except ClaimLost:
            raise
        except Exception as exc:
            self._rollback()
            if not isinstance(exc, ActionError | psycopg.Error | DelayError):
                log.exception("step %s of execution %s raised", step.id, self.held.id)
            error = (
                StepError("validation", str(exc)) if isinstance(exc, DelayError) else classify(exc)
            )
            elapsed = int((time.monotonic() - clock) * 1000)
            return self._failed(step, error, attempt, params, started, elapsed)
        return Outcome("completed", output)

    def not_reached(self, step: Step, goto: str) -> None:
        return None  # nothing to record: the summary lists the steps that ran

    # --- kinds of step ---------------------------------------------------------------

    def _database(
        self,
        step: Step,
        action: DatabaseAction,
        params: Any,
        attempt: int,
        started: datetime,
        clock: float,
    ) -> Any:
        ctx = self.step_context(step)
        cur = self._begin()
        timeout = self._timeout(step)
        if timeout is not None:
            cur.execute(
                "SELECT set_config('statement_timeout', %s, true)", (str(int(timeout * 1000)),)
            )
        output = as_json(action.run(cur, params, ctx))
        self._record(
            cur,
            step,
            "completed",
            attempt,
            input=params,
            output=output,
            started=started,
            elapsed=int((time.monotonic() - clock) * 1000),
        )
        self._commit()
        self.stale = True
        return output

    def _external(
        self, step: Step, action: Any, params: Any, attempt: int, started: datetime, clock: float
    ) -> Any:
        env = self.ex.env
        params = as_json(params)  # what goes on the wire is JSON (a uuid from the record too)
        timeout = self._timeout(step)
        if timeout is not None:
            if step.type == "http_request" and not params.get("timeout"):
                params = {**params, "timeout": step.definition["timeout"]}
            env = replace(env, smtp_timeout=min(env.smtp_timeout, timeout))
        ctx = self.step_context(step, env)
        if action.prepare is not None:
            with self.tenant() as cur:
                params = action.prepare(cur, params, ctx)
        output = action.run(params, ctx)
        with self.tenant() as cur:
            if action.record is not None:
                output = {**output, **action.record(cur, params, ctx, output)}
            output = as_json(output)
            self._record(
                cur,
                step,
                "completed",
                attempt,
                input=redact(step.type, params),
                output=output,
                started=started,
                elapsed=int((time.monotonic() - clock) * 1000),
            )
        self.stale = self.stale or action.record is not None
        return output

    def _delay(self, step: Step, params: Any, attempt: int) -> Outcome:
        now = self.ex.clock()
        until = resume_at(params, self.context, now, owner_zone=self._owner_zone)
        if until <= now:
            with system_transaction(self.conn, dict_rows=True) as cur:
                output = {"until": until.isoformat(), "waited": False}
                self._record(cur, step, "completed", attempt, input=params, output=output)
            return Outcome("completed", output)
        with system_transaction(self.conn, dict_rows=True) as cur:
            self._record(
                cur, step, "waiting", attempt, input=params, output={"until": until.isoformat()}
            )
            if not executions.wait(cur, self.held, until):
                raise ClaimLost(str(self.held.id))
        self.suspension = "waiting"
        return Outcome("suspended")

    def _ai_task(self, step: Step, params: Any, attempt: int) -> Outcome:
        task_id = uuid.uuid5(KEY_NAMESPACE, self.key(step))
        record = (
            {"entity": self.entity, "id": str(self.held.trigger_entity_id)}
            if self.entity and self.held.trigger_entity_id
            else None
        )
        task_input = {
            "execution_id": str(self.held.id),
            "step_id": step.id,
            "idempotency_key": self.key(step),
            "input": params.get("input") or {},
            "write_back": bool(params.get("write_back", True)),
            "record": record,
            "provider": params.get("provider"),
            "model": params.get("model"),
        }
        with self.tenant() as cur:
            cur.execute(
                query("ai_task_create"),
                {
                    "id": task_id,
                    "workspace_id": self.held.workspace_id,
                    "type": params.get("task_type"),
                    "input": _jsonb(task_input),
                    "provider": params.get("provider"),
                    "model": params.get("model"),
                },
            )
            self._record(
                cur, step, "waiting", attempt, input=params, output={"ai_task_id": str(task_id)}
            )
            if not executions.wait(cur, self.held, None):
                raise ClaimLost(str(self.held.id))
        send_ai_task(task_id)
        self.suspension = "waiting"
        return Outcome("suspended")

    def _resume(self, step: Step, record: dict[str, Any]) -> Outcome:
        """A step the run was waiting on: over (record it), or not yet (wait again)."""
        output = record.get("output") or {}
        attempt = record.get("attempts") or 1
        now = self.ex.clock()
        if step.type == "delay":
            until = datetime.fromisoformat(output["until"])
            if until <= now:
                done = {"until": output["until"], "waited": True}
                with system_transaction(self.conn, dict_rows=True) as cur:
                    self._record(cur, step, "completed", attempt, output=done)
                return Outcome("completed", done)
            return self._wait_again(until)
        task = None
        with system_transaction(self.conn, dict_rows=True) as cur:
            task = cur.execute(query("ai_task_get"), {"id": output.get("ai_task_id")}).fetchone()
        if task is not None and task["status"] in ("pending", "processing"):
            return self._wait_again(None)
        if task is not None and task["status"] == "completed":
            with system_transaction(self.conn, dict_rows=True) as cur:
                self._record(cur, step, "completed", attempt, output=task["output"])
            return Outcome("completed", task["output"])
        if task is None:
            error = StepError("internal", f"ai task {output.get('ai_task_id')} is gone")
        elif task["status"] == "cancelled":
            error = StepError("cancelled", "the AI task was cancelled")
        else:
            error = StepError("provider_error", task["error_message"] or "the AI task failed")
        entry = self._history_entry(attempt, error, 0, "AI task failures are final")
        with system_transaction(self.conn, dict_rows=True) as cur:
            self._record(
                cur, step, "failed", attempt, error=error.to_dict(), history=[entry], output=None
            )
        return Outcome("failed", error=error)

    def _wait_again(self, until: datetime | None) -> Outcome:
        with system_transaction(self.conn, dict_rows=True) as cur:
            if not executions.wait(cur, self.held, until):
                raise ClaimLost(str(self.held.id))
        self.suspension = "waiting"
        return Outcome("suspended")

    def _release(self) -> None:
        """Worker shutdown: hand the execution back now (queued, message sent)."""
        with system_transaction(self.conn, dict_rows=True) as cur:
            if executions.requeue_with_backoff(cur, self.held, 0) is None:
                raise ClaimLost(str(self.held.id))
        enqueue_executions([self.held.id])
        self.suspension = "released"
        raise _Released()

    # --- failures --------------------------------------------------------------------

    def _history_entry(
        self, attempt: int, error: StepError, elapsed: int, decision: str
    ) -> dict[str, Any]:
        return {
            "attempt": attempt,
            "at": self.ex.clock().isoformat(),
            "class": error.error_class,
            "message": error.message,
            "retryable": error.retryable,
            "retry_after": error.retry_after,
            "duration_ms": elapsed,
            "decision": decision,
        }

    def _failed(
        self,
        step: Step,
        error: StepError,
        attempt: int,
        params: Any,
        started: datetime,
        elapsed: int,
    ) -> Outcome:
        """Record a failed attempt; back off and suspend when the policy retries it."""
        policy = RetryPolicy.for_step(step.definition, self.max_retries)
        decision = policy.decide(error, attempt, self.ex.rng)
        entry = self._history_entry(attempt, error, elapsed, decision.reason)
        status = "running" if decision.retry else "failed"
        with system_transaction(self.conn, dict_rows=True) as cur:
            self._record(
                cur,
                step,
                status,
                attempt,
                input=redact(step.type, params) if params is not None else None,
                error=error.to_dict(),
                history=[entry],
                started=started,
                elapsed=elapsed,
            )
            if (
                decision.retry
                and executions.requeue_with_backoff(cur, self.held, decision.delay) is None
            ):
                raise ClaimLost(str(self.held.id))
        if not decision.retry:
            return Outcome("failed", error=error)
        metrics.STEP_RETRIES.labels(action=step.type, error_class=error.error_class).inc()
        enqueue_executions([self.held.id], delay_ms=int(decision.delay * 1000))
        self.suspension = "retrying"
        return Outcome("suspended", error=error)

    # --- helpers ---------------------------------------------------------------------

    def _attempt(self, step: Step) -> int:
        record = self.records.get(step.id)
        return (record.get("attempts") or 0) + 1 if record else 1

    def _timeout(self, step: Step) -> float | None:
        raw = step.definition.get("timeout")
        if raw is None:
            return None
        try:
            return parse_duration(raw).total_seconds() or None
        except ValueError:
            return None

    def _owner_zone(self) -> str | None:
        record = self.context.get(self.entity or "") or {}
        owner = record.get("owner_id") or record.get("assigned_to")
        if not owner:
            return None
        with system_transaction(self.conn, dict_rows=True) as cur:
            row = cur.execute(query("user_timezone"), {"id": owner}).fetchone()
        return row["timezone"] if row else None

    def _record(
        self,
        cur: psycopg.Cursor[Any],
        step: Step,
        status: str,
        attempts: int,
        *,
        input: Any = None,
        output: Any = None,
        error: Mapping[str, Any] | None = None,
        history: list[dict[str, Any]] | None = None,
        started: datetime | None = None,
        elapsed: int | None = None,
    ) -> None:
        """Write the step's record (fenced by the claim; see the SQL) and keep it in memory."""
        if elapsed is not None:
            outcome = "retry" if status == "running" else status
            metrics.STEP_DURATION.labels(action=step.type, outcome=outcome).observe(elapsed / 1000)
        now = self.ex.clock()
        started = started or now
        finished = now if status in ("completed", "failed", "skipped") else None
        row = cur.execute(
            query("step_record"),
            {
                "execution_id": self.held.id,
                "workspace_id": self.held.workspace_id,
                "claim": self.held.attempt,
                "step_id": step.id,
                "pointer": step.pointer,
                "type": step.type,
                "status": status,
                "attempts": attempts,
                "idempotency_key": self.key(step),
                "input": _jsonb(input),
                "output": _jsonb(output),
                "error": _jsonb(error),
                "attempt_history": _jsonb(history or []),
                "started_at": started,
                "finished_at": finished,
                "duration_ms": elapsed,
            },
        ).fetchone()
        if row is None:
            raise ClaimLost(f"{self.held.id} (step {step.id})")
        previous = self.records.get(step.id) or {}
        self.records[step.id] = {
            "step_id": step.id,
            "type": step.type,
            "status": status,
            "attempts": attempts,
            "output": output,
            "error": dict(error) if error else None,
            "attempt_history": [*(previous.get("attempt_history") or []), *(history or [])],
            "duration_ms": elapsed,
        }


class _Released(ClaimLost):
    """The run handed its execution back on shutdown (not an error)."""


def send_ai_task(task_id: UUID) -> bool:
    """Send ``process_ai_task(ai_task_id)`` when this process knows the AI actor; else the
    task stays pending for the AI worker's own sweep (see :mod:`workers.actors`)."""
    broker = get_broker()
    actor = broker.actors.get(AI_TASK_ACTOR)
    if actor is None:
        log.info("no %s actor registered here; ai task %s left pending", AI_TASK_ACTOR, task_id)
        return False
    actor.send(str(task_id))
    return True
