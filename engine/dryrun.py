"""``haste dry-run``: what an automation would do for one record or event, changing nothing.

It runs the same pieces as a real run, in order: trigger match (:mod:`engine.matcher`),
conditions with every leaf's actual value (:mod:`engine.conditions`), then each step's
``if``, its rendered params (:mod:`engine.templating`) and its effect. Database actions
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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg

from actions import ACTIONS, ActionError, DatabaseAction, StepContext
from engine import conditions, templating
from engine.automations import Workspace
from engine.context import ENTITY_TABLES, build_context, load_record
from engine.db import tenant_transaction
from engine.definitions import TRIGGER_ENTITY, record_entity
from engine.matcher import match_trigger, needs_change
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


def _names(cur: psycopg.Cursor[Any], record: Mapping[str, Any] | None) -> dict[str, str]:
    """Pipeline and stage names of the workspace, for configs that name them."""
    if not record or "pipeline_id" not in record:
        return {}
    rows = cur.execute(
        "SELECT id::text AS id, name FROM pipelines UNION ALL"
        " SELECT s.id::text, s.name FROM pipeline_stages s"
    ).fetchall()
    return {r["id"]: r["name"] for r in rows}


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
                match = match_trigger(doc, the_event, record=row, names=_names(cur, row))
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
                _run_steps(
                    conn, cur, doc.get("actions") or [], "/actions", context, step_ctx, report, now
                )
            raise psycopg.Rollback()
    except psycopg.Rollback:  # pragma: no cover - consumed by the transaction block
        pass
    assert report is not None
    return report


def _run_steps(
    conn: psycopg.Connection[Any],
    cur: psycopg.Cursor[Any],
    steps: list[Mapping[str, Any]],
    pointer: str,
    context: dict[str, Any],
    base: StepContext,
    report: DryRunReport,
    now: datetime,
) -> bool:
    """Run (or describe) ``steps`` in order; False when a failure stops the run."""
    skip_to: str | None = None
    for index, step in enumerate(steps):
        ptr = f"{pointer}/{index}"
        sid, kind = str(step.get("id")), str(step.get("type"))
        if skip_to is not None and sid != skip_to:
            report.steps.append(
                StepReport(ptr, sid, kind, "not_reached", error=f"skipped by goto:{skip_to}")
            )
            continue
        skip_to = None
        entry = StepReport(ptr, sid, kind, "would_run")
        report.steps.append(entry)
        if step.get("if") is not None:
            cond = conditions.evaluate(step["if"], context, now=now)
            entry.condition = cond.as_dict()
            if not cond.matched:
                entry.status = "skipped"
                continue
        try:
            params = templating.render_params(step.get("params") or {}, context)
        except templating.TemplateError as exc:
            entry.status, entry.error = "failed", str(exc)
        else:
            entry.params = params
            if kind == "branch":
                chosen, label = _choose_case(params, step.get("params") or {}, context, now)
                entry.effect = {"case": label}
                entry.params = None
                if not _run_steps(
                    conn, cur, chosen, f"{ptr}/params/{label}", context, base, report, now
                ):
                    return False
                continue
            _effect(conn, cur, kind, params, base, sid, entry, context)
        if entry.status == "failed":
            policy = str(step.get("on_error") or "stop")
            if policy == "continue":
                continue
            if policy.startswith("goto:"):
                skip_to = policy.removeprefix("goto:")
                continue
            return False
    return True


def _choose_case(
    rendered: Mapping[str, Any], raw: Mapping[str, Any], context: dict[str, Any], now: datetime
) -> tuple[list[Mapping[str, Any]], str]:
    for i, case in enumerate(raw.get("cases") or []):
        if conditions.evaluate(case.get("if"), context, now=now).matched:
            return list(case.get("steps") or []), f"cases/{i}/steps"
    return list(raw.get("default") or []), "default"


def _effect(
    conn: psycopg.Connection[Any],
    cur: psycopg.Cursor[Any],
    kind: str,
    params: Any,
    base: StepContext,
    step_id: str,
    entry: StepReport,
    context: dict[str, Any],
) -> None:
    step = StepContext(
        workspace_id=base.workspace_id,
        step_id=step_id,
        idempotency_key=f"dry-run:{step_id}",
        trigger_entity=base.trigger_entity,
        trigger_entity_id=base.trigger_entity_id,
    )
    if kind == "delay":
        entry.effect = {"would": "wait", "params": params}
        return
    if kind == "ai_task":
        entry.effect = {
            "would": f"create an ai_task of type {params.get('task_type')} and wait for it"
        }
        context["steps"][step_id] = {"output": None}
        return
    action = ACTIONS.get(kind)
    if action is None:
        entry.status, entry.error = "failed", f"unknown step type {kind!r}"
        return
    entry.effect = action.describe(params, step)
    if not isinstance(action, DatabaseAction):
        entry.effect = {"not_called": True, **(entry.effect or {})}
        context["steps"][step_id] = {"output": None}
        return
    try:
        with conn.transaction():
            output = action.run(cur, params, step)
    except ActionError as exc:
        entry.status, entry.error = "failed", f"{exc.error_class}: {exc}"
        return
    entry.effect = {**(entry.effect or {}), "output": output}
    context["steps"][step_id] = {"output": output}


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
