"""``haste dry-run``: what an automation would do for one record or event, changing nothing.

It runs the same pieces as a real run, in order: trigger match (:mod:`engine.matcher`),
conditions with every leaf's actual value (:mod:`engine.conditions`), then the same walk
over the steps as the worker (:func:`engine.steps.walk`: each step's ``if``, its rendered
params, branches, ``on_error``) with a runner that reports instead of recording. Database actions
really run, inside one tenant transaction (RLS applies) that is rolled back at the end, so
the report shows their actual output and later steps can template on it; each runs in a
savepoint so a failing step is reported without aborting the rest. External actions
(HTTP, email, AI) are described, never called.

With ``--record`` alone there is no change to judge a trigger that needs one (watched
fields, transitions, tags, stages): the trigger is reported as "not evaluated" and the run
is judged on conditions alone; pass ``--event`` for the full picture.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import psycopg

from actions import ACTIONS, ActionError, DatabaseAction, StepContext
from engine import conditions
from engine.automations import Workspace
from engine.context import ENTITY_TABLES, build_context, load_record
from engine.db import tenant_transaction
from engine.definitions import TRIGGER_ENTITY, record_entity
from engine.matcher import match_trigger, needs_change
from engine.matching import stage_names
from engine.steps import Outcome, Step, StepError, walk
from engine.values import json_safe

#: Event type a bare record stands for, per entity, when the trigger has no own event.
_PLURALS = {table: entity for entity, table in ENTITY_TABLES.items()}


class DryRunError(Exception):
    """The dry run could not start (bad record reference, record not found...)."""


@dataclass
class StepReport:
    pointer: str
    id: str
    type: str
    status: str  # would_run | skipped | failed | not_reached
    condition: dict[str, Any] | None = None
    params: Any = None
    effect: Any = None
    error: str | None = None


@dataclass
class DryRunReport:
    automation: str
    trigger: dict[str, Any]
    conditions: dict[str, Any]
    would_run: bool
    steps: list[StepReport] = field(default_factory=list)
    context: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return json_safe(
            {
                "automation": self.automation,
                "would_run": self.would_run,
                "trigger": self.trigger,
                "conditions": self.conditions,
                "steps": [s.__dict__ for s in self.steps],
            }
        )


def parse_record_ref(ref: str) -> tuple[str, uuid.UUID]:
    """``contacts/<uuid>`` or ``contact/<uuid>`` → (entity, id)."""
    kind, _, raw = ref.partition("/")
    entity = _PLURALS.get(kind, kind)
    if entity not in ENTITY_TABLES or not raw:
        raise DryRunError(
            f"--record {ref!r}: expected <kind>/<uuid> with kind one of "
            + ", ".join(ENTITY_TABLES.values())
        )
    try:
        return entity, uuid.UUID(raw)
    except ValueError:
        raise DryRunError(f"--record {ref!r}: {raw!r} is not a uuid") from None


def _event_for(
    doc: Mapping[str, Any], entity: str | None, event: Mapping[str, Any] | None
) -> dict[str, Any]:
    if event is not None:
        out = dict(event)
        types = set(out.get("trigger_types") or [])
        if out.get("event_type"):
            types.add(out["event_type"])
        out["trigger_types"] = sorted(types)
        out.setdefault("changed_fields", sorted((out.get("new") or {}).keys()))
        return out
    trigger_type = doc.get("trigger_type")
    return {
        "event_type": trigger_type,
        "trigger_types": [trigger_type],
        "entity_type": entity,
        "automation_id": doc.get("id"),
        "changed_fields": [],
        "old": {},
        "new": {},
    }


def dry_run(
    conn: psycopg.Connection[Any],
    workspace: Workspace,
    doc: Mapping[str, Any],
    *,
    record: str | None = None,
    event: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> DryRunReport:
    """Evaluate ``doc`` for a record (``contacts/<uuid>``) or an event, then roll back."""
    now = now or datetime.now(UTC)
    entity: str | None = record_entity(doc)
    record_id: uuid.UUID | str | None = None
    if record is not None:
        entity, record_id = parse_record_ref(record)
    elif event is not None:
        entity = event.get("entity_type") or entity
        record_id = event.get("entity_id")
    the_event = _event_for(doc, entity, event)
    ws = {
        "id": workspace.id,
        "slug": workspace.slug,
        "name": workspace.name,
        "timezone": workspace.timezone,
    }
    report: DryRunReport | None = None
    try:
        with tenant_transaction(conn, workspace.id, dict_rows=True) as cur:
            row = (
                load_record(cur, entity, record_id)
                if entity in ENTITY_TABLES and record_id
                else None
            )
            if record_id is not None and row is None:
                raise DryRunError(f"no {entity} {record_id} in workspace {workspace.slug!r}")
            if row is not None and the_event.get("new"):
                row = {**row, **the_event["new"]}
            context = build_context(
                cur,
                ws,
                entity=entity if row is not None else None,
                record=row,
                previous=the_event.get("old"),
                event={
                    k: the_event.get(k) for k in ("event_type", "entity_type", "changed_fields")
                },
                trigger=the_event.get("payload") or {},
                now=now,
            )
            if record is not None and needs_change(doc):
                trigger = {
                    "matched": None,
                    "reason": "not evaluated: a record alone has no change; pass --event",
                }
                trigger_ok = True
            else:
                match = match_trigger(
                    doc,
                    the_event,
                    record=row,
                    names=stage_names(cur) if row and "pipeline_id" in row else {},
                )
                trigger = {"matched": match.matched, "reason": match.reason}
                trigger_ok = match.matched
            evaluation = conditions.evaluate(doc.get("conditions"), context, now=now)
            would_run = trigger_ok and evaluation.matched
            report = DryRunReport(
                automation=str(doc.get("name")),
                trigger=trigger,
                conditions=evaluation.as_dict(),
                would_run=would_run,
                context=context,
            )
            if would_run:
                step_ctx = StepContext(
                    workspace_id=workspace.id,
                    step_id="",
                    idempotency_key="",
                    trigger_entity=entity,
                    trigger_entity_id=uuid.UUID(str(record_id)) if record_id else None,
                )
                walk(
                    doc.get("actions") or [],
                    _DryRunner(cur, step_ctx, report),
                    context,
                    on_error=str(doc.get("on_error") or "stop"),
                    clock=lambda: now,
                )
            raise psycopg.Rollback()
    except psycopg.Rollback:  # pragma: no cover - consumed by the transaction block
        pass
    assert report is not None
    return report


@dataclass
class _DryRunner:
    """The dry-run's effects for :func:`engine.steps.walk`: database actions run in a
    savepoint of the rolled-back transaction, everything else is described."""

    cur: psycopg.Cursor[Any]
    base: StepContext
    report: DryRunReport

    def prior(self, step: Step) -> Outcome | None:
        return None  # a dry run starts from nothing

    def settle(
        self,
        step: Step,
        outcome: Outcome,
        *,
        condition: conditions.Evaluation | None = None,
        params: Any = None,
    ) -> Outcome:
        entry = self._entry(step, condition)
        if outcome.status == "skipped":
            entry.status = "skipped"
        elif outcome.status == "failed":
            entry.status, entry.error = "failed", outcome.error.message if outcome.error else None
        elif step.type == "branch":
            case = (outcome.output or {}).get("case")
            entry.effect = {"case": f"cases/{case}/steps" if isinstance(case, int) else case}
        return outcome

    def run(
        self, step: Step, params: Any, *, condition: conditions.Evaluation | None = None
    ) -> Outcome:
        entry = self._entry(step, condition)
        entry.params = params
        return _effect(self.cur, step, params, self.base, entry)

    def not_reached(self, step: Step, goto: str) -> None:
        self.report.steps.append(
            StepReport(
                step.pointer, step.id, step.type, "not_reached", error=f"skipped by goto:{goto}"
            )
        )

    def _entry(self, step: Step, condition: conditions.Evaluation | None) -> StepReport:
        entry = StepReport(step.pointer, step.id, step.type, "would_run")
        if condition is not None:
            entry.condition = condition.as_dict()
        self.report.steps.append(entry)
        return entry


def _effect(
    cur: psycopg.Cursor[Any], step: Step, params: Any, base: StepContext, entry: StepReport
) -> Outcome:
    step_ctx = replace(base, step_id=step.id, idempotency_key=f"dry-run:{step.id}")
    if step.type == "delay":
        entry.effect = {"would": "wait", "params": params}
        return Outcome("completed")
    if step.type == "ai_task":
        entry.effect = {
            "would": f"create an ai_task of type {params.get('task_type')} and wait for it"
        }
        return Outcome("completed")
    action = ACTIONS.get(step.type)
    if action is None:
        entry.status, entry.error = "failed", f"unknown step type {step.type!r}"
        return Outcome("failed", error=StepError("validation", entry.error))
    try:
        entry.effect = action.describe(params, step_ctx)
        if not isinstance(action, DatabaseAction):
            entry.effect = {"not_called": True, **(entry.effect or {})}
            return Outcome("completed")
        with cur.connection.transaction():
            output = action.run(cur, params, step_ctx)
    except ActionError as exc:
        entry.status, entry.error = "failed", f"{exc.error_class}: {exc}"
        return Outcome("failed", error=StepError(exc.error_class, exc.message))
    entry.effect = {**(entry.effect or {}), "output": output}
    return Outcome("completed", output)


def render_report(report: DryRunReport) -> str:
    """The human-readable report: trigger, each condition leaf, each step."""
    lines = [f"automation: {report.automation}"]
    trig = report.trigger
    verdict = {True: "matches", False: "does not match", None: "not evaluated"}[trig["matched"]]
    lines.append(f"trigger: {verdict}" + (f" ({trig['reason']})" if trig.get("reason") else ""))
    leaves = report.conditions.get("leaves") or []
    lines.append(f"conditions: {'pass' if report.conditions.get('matched') else 'fail'}")
    for leaf in leaves:
        mark = "✓" if leaf.get("result") else "✗"
        err = f"  [{leaf['error']['message']}]" if leaf.get("error") else ""
        lines.append(
            f"  {mark} {leaf.get('pointer')}: {leaf.get('field')} {leaf.get('op')}"
            f" {leaf.get('expected')!r} — actual {leaf.get('actual')!r}{err}"
        )
    for s in report.steps:
        lines.append(f"step {s.id} ({s.type}): {s.status}" + (f" — {s.error}" if s.error else ""))
        if s.params is not None:
            lines.append(f"    params: {json_safe(s.params)}")
        if s.effect is not None:
            lines.append(f"    effect: {json_safe(s.effect)}")
    lines.append(f"would run: {'yes' if report.would_run else 'no'}")
    return "\n".join(lines)


__all__ = [
    "TRIGGER_ENTITY",
    "DryRunError",
    "DryRunReport",
    "dry_run",
    "parse_record_ref",
    "render_report",
]
