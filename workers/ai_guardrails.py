"""Budgets (tokens and cost per calendar month) and the response cache.

**Budgets.** Two scopes: the workspace, and the automation the task runs for (from the
execution). Limits come from ``ai_budgets`` (a row per scope; a NULL column there means
"no limit"), else from ``HASTE_AI_{WORKSPACE,AUTOMATION}_MONTHLY_{TOKENS,CENTS}``. Usage
lives in ``ai_usage`` per scope and month (UTC).

Before *every* provider call the worker **reserves** the call's worst case (prompt tokens
estimated at 3 characters per token, plus the task type's output cap; its cost at the
route's price) on both scopes, in one transaction that locks the ledger rows (workspace
first, then automation: no deadlock between two workers) and records the reservation on
the task row. If used + in flight + this call would cross a limit, the task fails there,
with the numbers, before anything is sent. After the call the reservation is **settled**:
released, and the real usage added. A worker that dies holding a reservation leaves it on
its task row; whoever claims the task again releases it first, so the ledger converges.
Rejected: check-then-record without reservation (N concurrent workers near the limit each
pass the check and overshoot by N calls), and summing ``ai_tasks`` on every call (cost
grows with the month's task count).

**Cache.** Key: SHA-256 of the task type, its template/schema version, the primary route
(provider, model) and the rendered prompts (so the input *and* the record snapshot). A hit
completes the task with the stored output, ``cache_hit`` true, tokens and cost 0 (nothing
was paid), and writes it back like a fresh answer. Entries are per workspace (RLS) and
expire after ``HASTE_AI_CACHE_TTL``; :func:`purge_cache` deletes expired ones (a
maintenance job; an expired entry is also simply ignored and overwritten).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb

from engine.config import Settings
from engine.db import system_transaction
from engine.queries import query

Cursor = psycopg.Cursor[Any]


class BudgetExceeded(Exception):
    """A call would cross a monthly budget; the message has the numbers."""


def month_of(moment: datetime | None = None) -> date:
    """First day of the (UTC) calendar month budgets are counted in."""
    moment = moment or datetime.now(UTC)
    moment = moment.astimezone(UTC)
    return date(moment.year, moment.month, 1)


def estimate_prompt_tokens(*texts: str) -> int:
    """Worst-case-ish token count of prompt text: 3 characters per token (not 4)."""
    return max(1, sum(len(t) for t in texts) // 3)


@dataclass(frozen=True)
class Reservation:
    """What one call holds on the ledger until it is settled (stored on the task row)."""

    month: date
    automation_id: UUID | None
    tokens: int
    cents: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "month": self.month.isoformat(),
            "automation_id": str(self.automation_id) if self.automation_id else None,
            "tokens": self.tokens,
            "cents": self.cents,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Reservation:
        automation = data.get("automation_id")
        return cls(
            date.fromisoformat(str(data["month"])),
            UUID(str(automation)) if automation else None,
            int(data.get("tokens") or 0),
            float(data.get("cents") or 0),
        )


def _scopes(automation_id: UUID | None) -> list[UUID | None]:
    return [None] if automation_id is None else [None, automation_id]


def _limits(
    cur: Cursor, settings: Settings, workspace_id: UUID, automation_id: UUID | None
) -> tuple[int | None, float | None]:
    row = cur.execute(
        query("ai_budget_get"), {"workspace_id": workspace_id, "automation_id": automation_id}
    ).fetchone()
    if row is not None:
        tokens, cents = row["monthly_tokens"], row["monthly_cost_cents"]
        return (None if tokens is None else int(tokens)), (None if cents is None else float(cents))
    if automation_id is None:
        return settings.ai_workspace_monthly_tokens, _cents(settings.ai_workspace_monthly_cents)
    return settings.ai_automation_monthly_tokens, _cents(settings.ai_automation_monthly_cents)


def _cents(value: int | None) -> float | None:
    return None if value is None else float(value)


def check(
    cur: Cursor,
    settings: Settings,
    workspace_id: UUID,
    automation_id: UUID | None,
    tokens: int,
    cents: float,
    *,
    month: date | None = None,
) -> date:
    """Raise :class:`BudgetExceeded` if ``tokens``/``cents`` more would cross a limit of
    either scope; locks the ledger rows (workspace first) until the transaction ends."""
    month = month or month_of()
    for scope in _scopes(automation_id):
        row = cur.execute(
            query("ai_usage_lock"),
            {"workspace_id": workspace_id, "automation_id": scope, "month": month},
        ).fetchone()
        used_tokens, used_cents = int(row["tokens_used"]), float(row["cost_cents"])
        held_tokens, held_cents = int(row["reserved_tokens"]), float(row["reserved_cents"])
        token_limit, cent_limit = _limits(cur, settings, workspace_id, scope)
        what = "workspace" if scope is None else f"automation {scope}"
        if token_limit is not None and used_tokens + held_tokens + tokens > token_limit:
            raise BudgetExceeded(
                f"AI budget exhausted: the {what} monthly token budget is {token_limit:,}"
                f" tokens; {used_tokens:,} used in {month:%Y-%m} and {held_tokens:,} held by"
                f" calls in flight, and this call may need up to {tokens:,}"
            )
        if cent_limit is not None and used_cents + held_cents + cents > cent_limit:
            raise BudgetExceeded(
                f"AI budget exhausted: the {what} monthly cost budget is {cent_limit:,.2f}"
                f" cents; {used_cents:,.4f} used in {month:%Y-%m} and {held_cents:,.4f} held"
                f" by calls in flight, and this call may cost up to {cents:,.4f}"
            )
    return month


def reserve(
    cur: Cursor,
    settings: Settings,
    workspace_id: UUID,
    automation_id: UUID | None,
    tokens: int,
    cents: float,
    *,
    month: date | None = None,
) -> Reservation:
    """Hold ``tokens``/``cents`` on both scopes, or raise :class:`BudgetExceeded` (no change).

    Runs on the caller's tenant transaction cursor (dict rows); the caller records the
    reservation on the task row in the same transaction.
    """
    month = check(cur, settings, workspace_id, automation_id, tokens, cents, month=month)
    for scope in _scopes(automation_id):
        cur.execute(
            query("ai_usage_reserve"),
            {
                "workspace_id": workspace_id,
                "automation_id": scope,
                "month": month,
                "tokens": tokens,
                "cents": Decimal(str(round(cents, 6))),
            },
        )
    return Reservation(month, automation_id, tokens, cents)


def settle(
    cur: Cursor,
    workspace_id: UUID,
    reservation: Reservation | None,
    *,
    tokens: int = 0,
    cents: float = 0.0,
    calls: int = 1,
    automation_id: UUID | None = None,
    month: date | None = None,
) -> None:
    """Release ``reservation`` (if any) and add real usage; ``calls=0`` for a pure release."""
    month = reservation.month if reservation else (month or month_of())
    automation = reservation.automation_id if reservation else automation_id
    for scope in _scopes(automation):
        if reservation is None:
            # Usage without a reservation (embeddings): make sure the row exists.
            cur.execute(
                query("ai_usage_lock"),
                {"workspace_id": workspace_id, "automation_id": scope, "month": month},
            )
        cur.execute(
            query("ai_usage_settle"),
            {
                "workspace_id": workspace_id,
                "automation_id": scope,
                "month": month,
                "reserved_tokens": reservation.tokens if reservation else 0,
                "reserved_cents": Decimal(str(round(reservation.cents, 6))) if reservation else 0,
                "tokens": tokens,
                "cents": Decimal(str(round(cents, 6))),
                "calls": calls,
            },
        )


# --- response cache ------------------------------------------------------------------------


def cache_key(
    task_type: str, version: str, provider: str, model: str, system: str, prompt: str
) -> str:
    """The input hash of a task (see the module doc for what it covers)."""
    material = json.dumps(
        [task_type, version, provider, model, system, prompt], ensure_ascii=False
    ).encode()
    return hashlib.sha256(material).hexdigest()


def cache_get(cur: Cursor, workspace_id: UUID, key: str) -> dict[str, Any] | None:
    row = cur.execute(
        query("ai_cache_get"), {"workspace_id": workspace_id, "input_hash": key}
    ).fetchone()
    return None if row is None else dict(row)


def cache_put(
    cur: Cursor,
    settings: Settings,
    workspace_id: UUID,
    key: str,
    task_type: str,
    output: Any,
    provider: str,
    model: str,
    tokens: int,
    cents: float,
) -> None:
    if settings.ai_cache_ttl <= 0:
        return
    cur.execute(
        query("ai_cache_put"),
        {
            "workspace_id": workspace_id,
            "input_hash": key,
            "task_type": task_type,
            "output": Jsonb(output),
            "model_provider": provider,
            "model_name": model,
            "tokens_used": tokens,
            "cost_exact_cents": Decimal(str(round(cents, 6))),
            "ttl": settings.ai_cache_ttl,
        },
    )


def purge_cache(conn: psycopg.Connection[Any]) -> int:
    """Delete expired cache entries of every workspace (a maintenance job); how many."""
    with system_transaction(conn) as cur:
        cur.execute(query("ai_cache_purge"))
        return cur.rowcount
