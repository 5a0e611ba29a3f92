"""The AI task lifecycle: claim, call (with budgets, rate limits, retries, failover, cache),
validate, write back, finish, wake the execution.

State machine of an ``ai_tasks`` row (every transition one guarded statement in
``schemas/queries/ai.sql``)::

    pending ──claim──▶ processing ──finish──▶ completed | failed
       ▲                  │  │
       │     defer (long  │  └── a lease older than STALE_AFTER: claimable again
       └─ Retry-After) ───┘      (the worker died; its budget reservation is released)
    pending | processing ──cancel──▶ cancelled   (a worker's finish then updates 0 rows
                                                  and its write-back is rolled back)

One :func:`process_task` call is one worker's turn on one task:

1. **locate** the task's workspace (system transaction, read only), then **claim** it under
   the workspace's RLS: ``pending`` (and due) or ``processing`` with a stale lease.
2. **plan**: task type (prompt, schema), record snapshot, route (:mod:`workers.ai_routing`).
   A configuration problem fails the task here, before any call.
3. **cache**: the same input hash in this workspace → completed from the cache, no call.
4. **attempts**, each: reserve budget (fail with the numbers if exhausted), take a rate
   limiter slot, call the provider, settle the budget with the real usage, validate the
   answer against the schema. A valid answer finishes the task. An invalid one is asked
   again; a provider error goes to :class:`~workers.ai_routing.AiRetryPolicy`: retry after
   a back-off (sleeping in this thread up to ``HASTE_AI_MAX_INLINE_WAIT``, else *defer*: back
   to ``pending`` with ``not_before`` and a delayed message), fail over to the other provider,
   or give up.
5. **finish** in one tenant transaction: write-back, cache entry, the task's columns. Every
   metric column is filled on every outcome: ``model_provider``/``model_name`` (what
   answered, else what was last tried or planned), ``tokens_used``, ``cost_cents`` (rounded;
   exact in ``cost_exact_cents``), ``duration_ms`` (time spent processing, over all turns),
   ``retry_count`` (calls after the first), ``error_message`` (why it failed; on a success
   after retries, what it recovered from; NULL on a clean success).
6. **wake** the waiting execution (``engine.executions.wake``) after the commit.

Idempotency: the provider gets ``Idempotency-Key: ai-task:<id>`` on every attempt; the
write-back's note id and the cache key derive from the task; a message delivered twice
finds the task claimed or finished and does nothing.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from uuid import UUID

import jinja2
import psycopg
from psycopg.types.json import Jsonb

from engine import metrics
from engine.config import Settings
from engine.db import system_transaction, tenant_transaction
from engine.queries import query
from workers import ai_guardrails as guardrails
from workers.ai_routing import (
    AiRetryPolicy,
    ConfigError,
    Decision,
    Plan,
    RateLimited,
    RateLimits,
    Route,
    cost_cents,
    default_model,
    plan_route,
)
from workers.ai_types import MODEL_TYPE, TaskType, UnknownTaskType, task_type
from workers.ai_writeback import write_back
from workers.providers import (
    Completion,
    Provider,
    ProviderError,
    StructuredRequest,
    build_providers,
)

log = logging.getLogger("haste.ai")

Conn = psycopg.Connection[Any]

STATUSES = ("pending", "processing", "completed", "failed", "cancelled")
"""The spec's ai_tasks.valid_status list (a sync test compares them)."""
FINISHED = ("completed", "failed", "cancelled")
RECORD_ENTITIES = ("contact", "company", "deal", "email")
"""Records a task may be about (their snapshot goes into the prompt)."""
SWEEP_GRACE_S = 30.0
"""A pending task untouched this long gets its message (re)sent by the sweep."""
SWEEP_LIMIT = 500
"""Rows one sweep statement looks at."""
RATE_LIMIT_DEFER_S = (2.0, 10.0)
"""Jittered delay of a task that found no rate-limiter slot within its inline wait."""


def stale_after(settings: Settings) -> float:
    """Seconds after which a ``processing`` lease is presumed dead: two full timeouts plus
    the longest inline wait, plus a minute of slack."""
    return 2 * settings.ai_timeout + settings.ai_max_inline_wait + 60


@dataclass
class AiRuntime:
    """What a process needs to run AI tasks; built once per process (or per test)."""

    settings: Settings
    providers: dict[str, Provider]
    rate_limits: RateLimits
    policy: AiRetryPolicy
    sleep: Callable[[float], None] = time.sleep
    wake: Callable[[Conn, list[str]], Any] | None = None
    """Default: ``engine.executions.wake``. Tests may record instead."""

    @classmethod
    def from_settings(
        cls, settings: Settings, *, redis_client: Any | None = None, redis_url: str | None = None
    ) -> AiRuntime:
        """Providers from the keys that are set; rate limiters on ``redis_client`` (the
        broker's), else on ``redis_url`` / ``REDIS_URL``, else none."""
        if redis_client is not None:
            limits = RateLimits.from_client(settings.ai_rate_limits, redis_client)
        else:
            limits = RateLimits.from_redis_url(
                settings.ai_rate_limits, redis_url or settings.redis_url
            )
        return cls(
            settings=settings,
            providers=build_providers(settings),
            rate_limits=limits,
            policy=AiRetryPolicy(max_attempts=settings.ai_max_attempts),
        )

    def wake_executions(self, conn: Conn, ids: list[str]) -> None:
        if not ids:
            return
        try:
            if self.wake is not None:
                self.wake(conn, ids)
                return
            from engine.executions import wake

            wake(conn, ids)
        except Exception:  # the sweep wakes it later; never lose the task's own result
            log.exception("could not wake execution(s) %s; the AI sweep will retry", ids)

    def close(self) -> None:
        for provider in self.providers.values():
            provider.close()


@dataclass(frozen=True)
class Outcome:
    """What one turn did: ``completed`` | ``failed`` | ``cancelled`` | ``deferred`` (send
    again after ``delay`` seconds) | ``skipped`` (nothing to do: claimed elsewhere, done)."""

    status: str
    task_id: UUID
    delay: float = 0.0
    reason: str | None = None


class TaskInputError(ValueError):
    """The task's input cannot be processed (not retried: the same input fails again)."""


# --- JSON helpers ----------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A JSON-safe copy: dates as ISO strings, decimals as numbers, uuids as strings."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value) if value % 1 else int(value)
    if isinstance(value, UUID):
        return str(value)
    return value


def _compact(row: Mapping[str, Any]) -> dict[str, Any]:
    """A record snapshot without empty values (shorter prompts, steadier cache keys)."""
    return {k: _plain(v) for k, v in row.items() if v not in (None, "", {}, [])}


def _round_cents(exact: float) -> int:
    return int(Decimal(str(exact)).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


# --- the task as given -------------------------------------------------------------------


@dataclass(frozen=True)
class TaskSpec:
    """What the row asks for, whichever writer made it (the executor's flat input, a
    ``params``-nested one, or a CRM client's own)."""

    id: UUID
    workspace_id: UUID
    type: str
    content: Mapping[str, Any]
    record: Mapping[str, Any] | None
    write_back: bool
    provider: str | None
    model: str | None
    execution_id: str | None
    user_id: UUID | None
    automation_id: UUID | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> TaskSpec:
        raw = row.get("input")
        if not isinstance(raw, Mapping):
            raise TaskInputError("ai_tasks.input is not a JSON object")
        params = raw.get("params") if isinstance(raw.get("params"), Mapping) else {}
        if "input" in raw:
            content = raw["input"]
        elif "input" in params:
            content = params["input"]
        else:
            content = {k: v for k, v in raw.items() if k not in ("record", "execution_id")}
        if not isinstance(content, Mapping):
            content = {"text": content}
        record = raw.get("record")
        if record is not None and not isinstance(record, Mapping):
            raise TaskInputError("input.record must be an object {entity, id} or null")
        never_run = not row.get("attempts")
        provider = raw.get("provider") or params.get("provider")
        model = raw.get("model") or params.get("model")
        if never_run:
            provider = provider or row.get("model_provider")
            model = model or row.get("model_name")
        return cls(
            id=row["id"],
            workspace_id=row["workspace_id"],
            type=row["type"],
            content=content,
            record=record,
            write_back=bool(raw.get("write_back", params.get("write_back", True))),
            provider=provider,
            model=model,
            execution_id=str(raw["execution_id"]) if raw.get("execution_id") else None,
            user_id=row.get("user_id"),
            automation_id=row.get("automation_id"),
        )


# --- one turn on one task ----------------------------------------------------------------


@dataclass
class _Turn:
    rt: AiRuntime
    conn: Conn
    row: dict[str, Any]
    started: float = field(default_factory=time.monotonic)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    tokens: int = 0
    cost: float = 0.0
    failover_from: str | None = None
    route: Route | None = None
    spec: TaskSpec | None = None
    depth: int | None = None

    def __post_init__(self) -> None:
        self.attempts = list(self.row.get("attempts") or [])
        self.tokens = int(self.row.get("tokens_used") or 0)
        self.cost = float(self.row.get("cost_exact_cents") or 0)
        self.failover_from = self.row.get("failover_from")
        self.previous_ms = int(self.row.get("duration_ms") or 0)

    @property
    def task_id(self) -> UUID:
        return self.row["id"]

    @property
    def workspace_id(self) -> UUID:
        return self.row["workspace_id"]

    def tenant(self) -> Any:
        """The task's tenant transaction; attributed to its execution for capture triggers."""
        settings = None
        if self.spec and self.spec.execution_id and self.depth is not None:
            settings = {
                "app.execution_id": self.spec.execution_id,
                "app.causation_depth": str(self.depth),
            }
        user = self.spec.user_id if self.spec else None
        return tenant_transaction(
            self.conn, self.workspace_id, user, dict_rows=True, settings=settings
        )

    def duration_ms(self) -> int:
        return self.previous_ms + int((time.monotonic() - self.started) * 1000)

    # --- outcomes --------------------------------------------------------------------

    def _columns(self, error: str | None, route: Route | None) -> dict[str, Any]:
        route = route or self.route
        return {
            "id": self.task_id,
            "model_provider": route.provider if route else "none",
            "model_name": route.model if route else "none",
            "tokens_used": self.tokens,
            "cost_cents": _round_cents(self.cost),
            "cost_exact_cents": Decimal(str(round(self.cost, 6))),
            "duration_ms": self.duration_ms(),
            "retry_count": max(0, len(self.attempts) - 1),
            "error_message": error,
            "failover_from": self.failover_from,
            "attempts": Jsonb(self.attempts),
        }

    def fail(self, error: str, route: Route | None = None) -> Outcome:
        with self.tenant() as cur:
            done = cur.execute(
                query("ai_task_finish"),
                {
                    **self._columns(error, route),
                    "status": "failed",
                    "output": None,
                    "input_hash": self.row.get("input_hash"),
                    "cache_hit": False,
                    "write_back": None,
                },
            ).fetchone()
        if done is None:
            return Outcome("cancelled", self.task_id, reason="cancelled while processing")
        log.warning("ai task %s failed: %s", self.task_id, error)
        return Outcome("failed", self.task_id, reason=error)

    def complete(
        self,
        tt: TaskType,
        output: Mapping[str, Any],
        route: Route,
        *,
        key: str | None,
        cache_hit: bool,
        recovered: str | None,
    ) -> Outcome:
        spec = self.spec
        assert spec is not None
        with self.tenant() as cur:
            if spec.write_back:
                written = write_back(
                    cur,
                    task_id=self.task_id,
                    task_type=tt.name,
                    output=output,
                    record=spec.record,
                    workspace_id=self.workspace_id,
                    user_id=spec.user_id,
                    provider=route.provider,
                    model=route.model,
                )
            else:
                written = {"skipped": "write_back is false for this task"}
            if key and not cache_hit:
                guardrails.cache_put(
                    cur,
                    self.rt.settings,
                    self.workspace_id,
                    key,
                    tt.name,
                    output,
                    route.provider,
                    route.model,
                    self.tokens,
                    self.cost,
                )
            done = cur.execute(
                query("ai_task_finish"),
                {
                    **self._columns(recovered, route),
                    "status": "completed",
                    "output": Jsonb(dict(output)),
                    "input_hash": key,
                    "cache_hit": cache_hit,
                    "write_back": Jsonb(written),
                },
            ).fetchone()
            if done is None:
                # Cancelled meanwhile: roll the write-back back with the transaction.
                raise _Cancelled()
        return Outcome("completed", self.task_id)

    def defer(self, delay: float, error: str) -> Outcome:
        with self.tenant() as cur:
            done = cur.execute(
                query("ai_task_defer"), {**self._columns(error, None), "delay": delay}
            ).fetchone()
        if done is None:
            return Outcome("cancelled", self.task_id, reason="cancelled while processing")
        return Outcome("deferred", self.task_id, delay=delay, reason=error)

    # --- the work --------------------------------------------------------------------

    def run(self) -> Outcome:
        try:
            self.spec = TaskSpec.from_row(self.row)
            tt = task_type(self.spec.type)
        except (TaskInputError, UnknownTaskType) as exc:
            return self.fail(f"invalid task: {exc}")
        try:
            plan, record = self._plan(tt)
        except ConfigError as exc:
            provider = self.spec.provider or "none"
            model = self.spec.model or default_model(self.rt.settings, provider)
            return self.fail(f"configuration: {exc}", Route(provider, model))
        except (jinja2.TemplateError, TaskInputError) as exc:
            return self.fail(f"invalid task input: {exc}")
        self.route = self._resume_route(plan)
        try:
            system, prompt = tt.render(
                self.spec.content, record, str(self.spec.record["entity"]) if record else None
            )
        except jinja2.TemplateError as exc:
            return self.fail(f"invalid task input for the {tt.name} prompt: {exc}", self.route)
        key = guardrails.cache_key(
            tt.name, tt.version, plan.primary.provider, plan.primary.model, system, prompt
        )
        if self.rt.settings.ai_cache_ttl > 0:
            with self.tenant() as cur:
                hit = guardrails.cache_get(cur, self.workspace_id, key)
            if hit is not None:
                cached_route = Route(hit["model_provider"], hit["model_name"])
                return self.complete(
                    tt, hit["output"], cached_route, key=key, cache_hit=True, recovered=None
                )
        return self._attempts(tt, plan, system, prompt, key)

    def _plan(self, tt: TaskType) -> tuple[Plan, dict[str, Any] | None]:
        spec = self.spec
        assert spec is not None
        record: dict[str, Any] | None = None
        with self.tenant() as cur:
            if spec.execution_id:
                try:
                    found = cur.execute(
                        query("ai_task_execution_depth"), {"id": UUID(spec.execution_id)}
                    ).fetchone()
                except ValueError:
                    found = None
                self.depth = found["depth"] if found else None
            workspace_model = cur.execute(
                query("ai_model_for_task"),
                {"task_type": tt.name, "model_type": MODEL_TYPE[tt.name]},
            ).fetchone()
            if spec.record and spec.record.get("entity") in RECORD_ENTITIES:
                try:
                    record_id = UUID(str(spec.record.get("id")))
                except ValueError:
                    bad = spec.record.get("id")
                    raise TaskInputError(f"record id {bad!r} is not a uuid") from None
                found = cur.execute(
                    query(f"ai_record_{spec.record['entity']}"), {"id": record_id}
                ).fetchone()
                record = _compact(found) if found else None
        plan = plan_route(
            self.rt.settings,
            self.rt.providers,
            tt.name,
            requested_provider=spec.provider,
            requested_model=spec.model,
            workspace_model=workspace_model,
        )
        return plan, record

    def _resume_route(self, plan: Plan) -> Route:
        """After a deferral, continue on the route the last attempt used."""
        if self.attempts:
            last = self.attempts[-1]
            for route in plan.routes():
                if route.provider == last.get("provider"):
                    return route
        return plan.primary

    def _attempts(self, tt: TaskType, plan: Plan, system: str, prompt: str, key: str) -> Outcome:
        spec = self.spec
        assert spec is not None and self.route is not None
        settings = self.rt.settings
        routes = list(plan.routes())
        while True:
            route = self.route
            provider = self.rt.providers[route.provider]
            number = len(self.attempts) + 1
            estimate_tokens = (
                guardrails.estimate_prompt_tokens(system, prompt) + tt.max_output_tokens
            )
            estimate_cents = cost_cents(
                route.model,
                estimate_tokens - tt.max_output_tokens,
                tt.max_output_tokens,
                settings.ai_prices,
            )
            try:
                with self.tenant() as cur:
                    reservation = guardrails.reserve(
                        cur,
                        settings,
                        self.workspace_id,
                        spec.automation_id,
                        estimate_tokens,
                        estimate_cents,
                    )
                    cur.execute(
                        query("ai_task_reserve"),
                        {"id": self.task_id, "reservation": Jsonb(reservation.to_dict())},
                    )
            except guardrails.BudgetExceeded as exc:
                return self.fail(str(exc), route)
            try:
                self.rt.rate_limits.acquire(route.provider, settings.ai_max_inline_wait)
            except RateLimited as exc:
                self._release(reservation)
                delay = (
                    RATE_LIMIT_DEFER_S[0]
                    + (RATE_LIMIT_DEFER_S[1] - RATE_LIMIT_DEFER_S[0])
                    * (uuid.uuid4().int % 1000)
                    / 1000
                )
                return self.defer(delay, f"rate limited locally: {exc}")
            request = StructuredRequest(
                task_type=tt.name,
                model=route.model,
                system=system,
                prompt=prompt,
                schema_name=tt.schema_name,
                schema=tt.sent_schema,
                max_output_tokens=tt.max_output_tokens,
                timeout=settings.ai_timeout,
                idempotency_key=f"ai-task:{self.task_id}",
            )
            began = time.monotonic()
            completion: Completion | None = None
            error: ProviderError | None = None
            try:
                completion = provider.complete(request)
            except ProviderError as exc:
                error = exc
            except Exception as exc:  # a bug in a provider adapter: record, do not retry
                error = ProviderError(route.provider, "client", f"unexpected error: {exc!r}")
            elapsed = int((time.monotonic() - began) * 1000)
            used_tokens = completion.tokens if completion else 0
            used_cost = (
                cost_cents(
                    completion.model or route.model,
                    completion.input_tokens,
                    completion.output_tokens,
                    settings.ai_prices,
                )
                if completion
                else 0.0
            )
            self.tokens += used_tokens
            self.cost += used_cost
            model = (completion.model if completion else None) or route.model
            metrics.AI_REQUESTS.labels(
                route.provider, model, "ok" if completion else "failed"
            ).inc()
            metrics.AI_LATENCY.labels(route.provider).observe(elapsed / 1000)
            if completion:
                metrics.AI_TOKENS.labels(route.provider, model, "input").inc(
                    completion.input_tokens
                )
                metrics.AI_TOKENS.labels(route.provider, model, "output").inc(
                    completion.output_tokens
                )
                metrics.AI_COST.labels(route.provider, model).inc(used_cost)
            with self.tenant() as cur:
                guardrails.settle(
                    cur, self.workspace_id, reservation, tokens=used_tokens, cents=used_cost
                )
                cur.execute(query("ai_task_reserve"), {"id": self.task_id, "reservation": None})
            entry: dict[str, Any] = {
                "attempt": number,
                "at": _now(),
                "provider": route.provider,
                "model": completion.model if completion else route.model,
                "duration_ms": elapsed,
                "tokens": used_tokens,
            }
            if completion is not None:
                problem = completion.parse_error or tt.validate(completion.data)
                if problem is None:
                    entry["outcome"] = "ok"
                    self.attempts.append(entry)
                    answered = Route(route.provider, completion.model or route.model)
                    recovered = self._recovered()
                    return self.complete(
                        tt, completion.data, answered, key=key, cache_hit=False, recovered=recovered
                    )
                entry.update(outcome="invalid_output", error=problem)
                decision = self.rt.policy.after_invalid(number)
                entry["decision"] = _decision(decision)
                self.attempts.append(entry)
                if decision.action == "fail":
                    return self.fail(
                        f"{route.provider} {route.model}: output does not match"
                        f" schemas/ai/{tt.name}.json after {number} attempt(s): {problem}",
                        route,
                    )
                continue
            assert error is not None
            position = routes.index(route) if route in routes else 0
            can_failover = position + 1 < len(routes)
            decision = self.rt.policy.after_error(error, number, can_failover)
            entry.update(outcome=error.kind, error=error.message, status=error.status)
            if error.retry_after is not None:
                entry["retry_after"] = error.retry_after
            entry["decision"] = _decision(decision)
            self.attempts.append(entry)
            if decision.action == "fail":
                return self.fail(
                    f"{route.provider} {route.model}: {error.message}"
                    f" ({error.kind}; {decision.reason})",
                    route,
                )
            if decision.action == "failover":
                self.failover_from = self.failover_from or route.provider
                self.route = routes[position + 1]
                log.warning(
                    "ai task %s: %s failed (%s), failing over to %s",
                    self.task_id,
                    route.provider,
                    error.kind,
                    self.route.provider,
                )
                continue
            if decision.delay > settings.ai_max_inline_wait:
                return self.defer(decision.delay, f"{route.provider}: {error.message}")
            if decision.delay > 0:
                self.rt.sleep(decision.delay)

    def _release(self, reservation: guardrails.Reservation) -> None:
        with self.tenant() as cur:
            guardrails.settle(cur, self.workspace_id, reservation, calls=0)
            cur.execute(query("ai_task_reserve"), {"id": self.task_id, "reservation": None})

    def _recovered(self) -> str | None:
        problems = [a for a in self.attempts if a.get("outcome") != "ok"]
        if not problems:
            return None
        parts = [f"{a['provider']} {a.get('outcome')}: {a.get('error')}" for a in problems]
        via = f" (failed over from {self.failover_from})" if self.failover_from else ""
        return _clip(f"recovered after {len(problems)} failed attempt(s){via}: " + "; ".join(parts))


class _Cancelled(Exception):
    """The task was cancelled while this worker processed it."""


def _decision(decision: Decision) -> dict[str, Any]:
    return {"action": decision.action, "delay": round(decision.delay, 3), "reason": decision.reason}


def _clip(text: str, limit: int = 2000) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- entry points ------------------------------------------------------------------------


def claim(conn: Conn, task_id: UUID | str, settings: Settings) -> dict[str, Any] | None:
    """pending (due) | stale processing → processing; the row, or None if not ours to run.

    A stale lease's leftover budget reservation is released in the same transaction.
    """
    with system_transaction(conn, dict_rows=True) as cur:
        located = cur.execute(query("ai_task_locate"), {"id": str(task_id)}).fetchone()
    if located is None or located["status"] in FINISHED:
        return None
    with tenant_transaction(conn, located["workspace_id"], dict_rows=True) as cur:
        row = cur.execute(
            query("ai_task_claim"), {"id": str(task_id), "stale_after": stale_after(settings)}
        ).fetchone()
        if row is not None and row.get("budget_reservation"):
            leftover = guardrails.Reservation.from_dict(row["budget_reservation"])
            guardrails.settle(cur, row["workspace_id"], leftover, calls=0)
            cur.execute(query("ai_task_reserve"), {"id": row["id"], "reservation": None})
    return row


def process_task(conn: Conn, task_id: UUID | str, rt: AiRuntime) -> Outcome:
    """One worker turn on one task (see the module doc); wakes its execution when finished."""
    try:
        task_uuid = UUID(str(task_id))
    except ValueError:
        return Outcome("skipped", uuid.UUID(int=0), reason=f"{task_id!r} is not a task id")
    row = claim(conn, task_uuid, rt.settings)
    if row is None:
        return Outcome("skipped", task_uuid, reason="not pending (or not due, or taken)")
    turn = _Turn(rt, conn, dict(row))
    try:
        outcome = turn.run()
    except _Cancelled:
        outcome = Outcome("cancelled", task_uuid, reason="cancelled while processing")
    except Exception as exc:
        # A bug or a lost database: record it on the task rather than leave it processing
        # until its lease runs out (if even that fails, the lease and the sweep recover it).
        log.exception("ai task %s: unexpected error", task_uuid)
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.rollback()
        try:
            outcome = turn.fail(f"internal error: {exc!r}")
        except Exception:
            log.exception("ai task %s: could not record the error", task_uuid)
            raise exc from None
    if outcome.status in ("completed", "failed") and turn.spec and turn.spec.execution_id:
        rt.wake_executions(conn, [turn.spec.execution_id])
    return outcome


def create_task(
    conn: Conn,
    workspace_id: UUID | str,
    type_name: str,
    content: Mapping[str, Any],
    *,
    record: Mapping[str, Any] | None = None,
    provider: str | None = None,
    model: str | None = None,
    write_back: bool = True,
    user_id: UUID | str | None = None,
    task_id: UUID | None = None,
) -> UUID:
    """Insert a pending task outside any automation (CLI, API, tests); its id."""
    task_type(type_name)  # refuse unknown types with the list, before the CHECK does
    task_id = task_id or uuid.uuid4()
    task_input = {
        "input": dict(content),
        "record": dict(record) if record else None,
        "write_back": write_back,
        "provider": provider,
        "model": model,
    }
    with tenant_transaction(conn, workspace_id, user_id) as cur:
        cur.execute(
            "INSERT INTO ai_tasks (id, workspace_id, type, status, input, user_id)"
            " VALUES (%s, %s, %s, 'pending', %s, %s)",
            (task_id, workspace_id, type_name, Jsonb(task_input), user_id),
        )
    return task_id


def cancel_tasks(
    conn: Conn, task_ids: Iterable[UUID | str], *, reason: str = "cancelled by an operator"
) -> list[UUID]:
    """pending | processing → cancelled; wakes their executions (whose step then fails)."""
    with system_transaction(conn, dict_rows=True) as cur:
        rows = cur.execute(
            query("ai_task_cancel_many"),
            {"ids": [str(t) for t in task_ids], "reason": reason},
        ).fetchall()
    executions = sorted({r["execution_id"] for r in rows if r["execution_id"]})
    if executions:
        try:
            from engine.executions import wake

            wake(conn, executions)
        except Exception:
            log.exception("could not wake executions of cancelled AI tasks %s", executions)
    return [r["id"] for r in rows]


@dataclass(frozen=True)
class SweepResult:
    resend: list[UUID]
    released: int
    woken: list[str]


def sweep(conn: Conn, settings: Settings, *, grace: float = SWEEP_GRACE_S) -> SweepResult:
    """Safety net, run periodically (the AI worker does, every ``SWEEP_INTERVAL``):

    * pending tasks nobody took within ``grace`` and stale processing ones → to be sent
      (the caller sends; duplicates are harmless, the claim lets one worker in);
    * budget reservations left on finished tasks by dead workers → released;
    * executions still waiting on a finished task (a lost wake-up) → woken.
    """
    stale = stale_after(settings)
    with system_transaction(conn, dict_rows=True) as cur:
        resend = [
            r["id"]
            for r in cur.execute(
                query("ai_task_sweep_many"),
                {"grace": grace, "stale_after": stale, "limit": SWEEP_LIMIT},
            ).fetchall()
        ]
        orphans = cur.execute(
            query("ai_task_orphan_reservations"), {"stale_after": stale, "limit": SWEEP_LIMIT}
        ).fetchall()
        waiting = [
            str(r["id"])
            for r in cur.execute(
                query("ai_task_finished_waiting_executions"),
                {"grace": grace, "limit": SWEEP_LIMIT},
            ).fetchall()
        ]
    for orphan in orphans:
        reservation = guardrails.Reservation.from_dict(orphan["budget_reservation"])
        with tenant_transaction(conn, orphan["workspace_id"], dict_rows=True) as cur:
            guardrails.settle(cur, orphan["workspace_id"], reservation, calls=0)
    if waiting:
        try:
            from engine.executions import wake

            wake(conn, waiting)
        except Exception:
            log.exception("could not wake executions %s", waiting)
    return SweepResult(resend, len(orphans), waiting)


def retry_delay_ms(outcome: Outcome) -> int:
    """The message delay of a deferred outcome, in ms (Dramatiq's unit)."""
    return max(1, math.ceil(outcome.delay * 1000))
