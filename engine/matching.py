"""Turn one captured event into decisions and executions: the listener's unit of work.

For each event, every automation of its workspace whose trigger type is among the event's
trigger types is a *candidate*, and each candidate gets exactly one row in
``automation_decisions`` (the answer to "why didn't it run?"):

``disabled`` → ``cycle_depth_exceeded`` → ``trigger_config_mismatch`` (with the reason)
→ ``filtered`` (the first failing condition leaf and its actual value) → ``error`` (a
condition or context that could not be evaluated; also counted in the automation's
``error_count``) → an INSERT of a ``queued`` execution, which the database itself turns into
``deduplicated`` (same automation + event), ``run_once_blocked`` or
``reenrollment_blocked`` through unique indexes — or ``matched``.

Everything here runs inside the listener's batch transaction, under the event's workspace
(RLS, role haste_app): see :func:`triggers.listener.process_batch`. Automations are cached
per workspace and re-read when the workspace's automations change (deploy, enable,
disable bump ``updated_at``); condition trees are parsed once per version.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb

from engine import conditions, fields
from engine.context import ENTITY_TABLES, build_context, load_record
from engine.matcher import TARGETED, match_trigger
from engine.queries import query
from engine.values import json_safe

#: Depth at which a causation chain is cut for automations that did not opt in to a cycle.
DEFAULT_MAX_CHAIN_DEPTH = 5


@dataclass
class Candidate:
    """An automation as the matcher needs it, with its condition tree parsed once."""

    id: UUID
    name: str
    trigger_type: str
    trigger_config: Mapping[str, Any]
    enabled: bool
    run_once: bool
    reenrollment: str
    max_chain_depth: int | None
    version: int | None
    prepared: Any
    unknown_fields: list[str] = field(default_factory=list)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Candidate:
        return cls(
            id=row["id"],
            name=row["name"],
            trigger_type=row["trigger_type"],
            trigger_config=row["trigger_config"] or {},
            enabled=bool(row["enabled"]),
            run_once=bool(row["run_once"]),
            reenrollment=row["reenrollment"] or "not_while_active",
            max_chain_depth=row["max_chain_depth"],
            version=row["current_version"],
            prepared=conditions.prepare(row["conditions"]),
            unknown_fields=[
                path
                for _, path in conditions.field_paths(row["conditions"])
                if fields.field_type(path) is None
            ],
        )

    def as_trigger(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "trigger_type": self.trigger_type,
            "trigger_config": self.trigger_config,
        }


@dataclass
class AutomationCache:
    """Per-workspace candidates, refreshed when the workspace's automations change."""

    _by_workspace: dict[UUID, tuple[Any, list[Candidate]]] = field(default_factory=dict)

    def candidates(self, cur: psycopg.Cursor[Any], workspace_id: UUID) -> list[Candidate]:
        stamp = cur.execute(query("automation_cache_stamp")).fetchone()
        key = (stamp["n"], stamp["changed"]) if stamp else None
        cached = self._by_workspace.get(workspace_id)
        if cached is not None and cached[0] == key:
            return cached[1]
        fresh = [Candidate.from_row(r) for r in cur.execute(query("automation_candidates"))]
        self._by_workspace[workspace_id] = (key, fresh)
        return fresh


@dataclass
class Outcome:
    """What one event produced: decisions by outcome, and executions to enqueue."""

    execution_ids: list[UUID] = field(default_factory=list)
    decisions: dict[str, int] = field(default_factory=dict)

    def count(self, outcome: str) -> None:
        self.decisions[outcome] = self.decisions.get(outcome, 0) + 1


def _decision(
    event: Mapping[str, Any],
    cand: Candidate,
    outcome: str,
    detail: Mapping[str, Any] | None = None,
    execution_id: UUID | None = None,
) -> dict[str, Any]:
    """The parameters of one ``decision_insert``; an event's rows go in one executemany
    (one round trip for all its candidates: 100 automations are 100 rows per event)."""
    return {
        "workspace_id": event["workspace_id"],
        "event_id": event["id"],
        "automation_id": cand.id,
        "automation_version": cand.version,
        "entity_type": event.get("entity_type"),
        "entity_id": event.get("entity_id"),
        "outcome": outcome,
        "execution_id": execution_id,
        "detail": Jsonb(json_safe(dict(detail or {}))),
    }


def stage_names(cur: psycopg.Cursor[Any]) -> dict[str, str]:
    """Pipeline and stage names of the workspace (id → name), for configs that name them."""
    return {r["id"]: r["name"] for r in cur.execute(query("pipeline_and_stage_names"))}


def _context(
    cur: psycopg.Cursor[Any], event: Mapping[str, Any], workspace: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    entity = event.get("entity_type")
    record: dict[str, Any] | None = None
    if entity in ENTITY_TABLES and event.get("entity_id"):
        record = load_record(cur, entity, event["entity_id"])
        if record is None:  # deleted since: judge on what the event carried
            record = {"id": event["entity_id"], **(event.get("new") or {})}
    context = build_context(
        cur,
        workspace,
        entity=entity if record is not None else None,
        record=record,
        previous=event.get("old"),
        event={
            "id": event["id"],
            "type": event.get("event_type"),
            "entity_type": entity,
            "entity_id": event.get("entity_id"),
            "changed_fields": list(event.get("changed_fields") or []),
        },
        trigger=event.get("payload") or {},
    )
    return context, record


def _execution_params(event: Mapping[str, Any], cand: Candidate, depth: int) -> dict[str, Any]:
    snapshot = {
        "event": {
            "id": event["id"],
            "type": event.get("event_type"),
            "changed_fields": list(event.get("changed_fields") or []),
        },
        "previous": event.get("old") or {},
        "new": event.get("new") or {},
        "trigger": event.get("payload") or {},
    }
    return {
        "automation_id": cand.id,
        "workspace_id": event["workspace_id"],
        "event_id": event["id"],
        "automation_version": cand.version,
        "triggered_by": event.get("event_type"),
        "entity_type": event.get("entity_type"),
        "entity_id": event.get("entity_id"),
        "depth": depth,
        "run_once": cand.run_once,
        "exclusive": cand.reenrollment == "not_while_active",
        "context": Jsonb(json_safe(snapshot, cut=False)),
    }


def _blocked_reason(cur: psycopg.Cursor[Any], params: Mapping[str, Any]) -> tuple[str, Any]:
    """Which uniqueness rule refused the INSERT, and the execution that holds it."""
    row = cur.execute(query("execution_conflict"), params).fetchone()
    if row is None:  # the holder finished between INSERT and this look-up
        return "reenrollment_blocked", None
    return row["reason"], row["id"]


def match_event(
    cur: psycopg.Cursor[Any],
    event: Mapping[str, Any],
    trigger_types: frozenset[str],
    workspace: Mapping[str, Any],
    cache: AutomationCache,
) -> Outcome:
    """Decide every candidate automation for one event (see module doc)."""
    outcome = Outcome()
    depth = int(event.get("depth") or 0)
    candidates = [
        c
        for c in cache.candidates(cur, event["workspace_id"])
        if c.trigger_type in trigger_types
        and (c.trigger_type not in TARGETED or str(c.id) == str(event.get("automation_id")))
    ]
    if not candidates:
        return outcome
    ev = {**event, "trigger_types": sorted(trigger_types)}
    context: dict[str, Any] | None = None
    record: dict[str, Any] | None = None
    names: dict[str, str] | None = None
    decided: list[dict[str, Any]] = []
    for cand in candidates:
        if not cand.enabled:
            decided.append(_decision(event, cand, "disabled"))
            outcome.count("disabled")
            continue
        limit = cand.max_chain_depth or DEFAULT_MAX_CHAIN_DEPTH
        if depth > limit:
            decided.append(
                _decision(event, cand, "cycle_depth_exceeded", {"depth": depth, "limit": limit})
            )
            outcome.count("cycle_depth_exceeded")
            continue
        if cand.unknown_fields:  # e.g. a column removed since the automation was deployed
            message = "conditions reference unknown field(s): " + ", ".join(cand.unknown_fields)
            decided.append(_decision(event, cand, "error", {"message": message}))
            cur.execute(query("automation_error_count"), {"id": cand.id})
            outcome.count("error")
            continue
        try:
            if context is None:
                context, record = _context(cur, event, workspace)
            if cand.trigger_type == "deal_stage_changed" and names is None:
                names = stage_names(cur)
            match = match_trigger(cand.as_trigger(), ev, record=record, names=names or {})
            if not match:
                decided.append(
                    _decision(event, cand, "trigger_config_mismatch", {"reason": match.reason})
                )
                outcome.count("trigger_config_mismatch")
                continue
            evaluation = conditions.evaluate(cand.prepared, context)
        except Exception as exc:  # bad input is recorded, never a crashed listener
            decided.append(
                _decision(event, cand, "error", {"message": f"{type(exc).__name__}: {exc}"})
            )
            cur.execute(query("automation_error_count"), {"id": cand.id})
            outcome.count("error")
            continue
        if evaluation.error is not None and not evaluation.matched:
            err = evaluation.error
            decided.append(
                _decision(event, cand, "error", {"message": err.message, "pointer": err.pointer})
            )
            cur.execute(query("automation_error_count"), {"id": cand.id})
            outcome.count("error")
            continue
        if not evaluation.matched:
            leaf = conditions.first_failing_leaf(evaluation)
            decided.append(
                _decision(event, cand, "filtered", {"leaf": leaf.as_dict() if leaf else None})
            )
            outcome.count("filtered")
            continue
        params = _execution_params(event, cand, depth)
        row = cur.execute(query("execution_insert_queued"), params).fetchone()
        if row is None:
            reason, holder = _blocked_reason(cur, params)
            decided.append(_decision(event, cand, reason, {"held_by": holder}))
            outcome.count(reason)
            continue
        decided.append(_decision(event, cand, "matched", None, row["id"]))
        outcome.execution_ids.append(row["id"])
        outcome.count("matched")
    if decided:
        cur.executemany(query("decision_insert"), decided)
    return outcome
