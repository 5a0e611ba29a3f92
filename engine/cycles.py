"""Deploy-time cycle check: can automation A's writes fire B, and B's fire A?

None of the CRM anchors has this: a tagged-contact automation that tags the contact again,
or two automations updating each other's watched field, loop until someone notices the
bill. We derive, statically and conservatively, which CRM events each step can cause and
which automations those events can fire, then look for a cycle through the automation
being deployed. "Conservatively" means: when a value is a template (unknown until run
time), assume it can match. A document may opt in to a cycle explicitly
(``"cycles": {"allow": true, "max_depth": N}``); the runtime then cuts the chain at that
causation depth (each event records its depth).

Pure functions over automation documents (dicts as deployed); no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.definitions import TRIGGER_ENTITY, iter_steps, record_entity

#: Fields written by AI tasks that write back, per task type and entity.
AI_WRITES: dict[str, dict[str, frozenset[str]]] = {
    "lead_scoring": {
        "contact": frozenset({"score", "ai_insights"}),
        "deal": frozenset({"ai_score", "ai_insights", "ai_predicted_close_date"}),
    },
    "contact_enrichment": {"contact": frozenset({"enrichment_data", "enrichment_updated_at"})},
    "sentiment_analysis": {"email": frozenset({"sentiment", "ai_analysis"})},
    "classification": {"email": frozenset({"category", "priority", "ai_analysis"})},
    "entity_extraction": {"email": frozenset({"ai_analysis"})},
}

UNKNOWN = None  # a field set or value that is only known at run time


@dataclass(frozen=True)
class Write:
    """One CRM event a step can cause: ``event`` on ``entity``, touching ``fields``."""

    entity: str
    event: str  # created | updated | tagged
    fields: frozenset[str] | None = UNKNOWN
    values: Mapping[str, Any] | None = None
    tag: str | None = UNKNOWN


def _templated(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def step_writes(step: Mapping[str, Any], own_entity: str | None) -> list[Write]:
    """The CRM events one step can cause (branch steps are expanded by the caller)."""
    kind = step.get("type")
    params = step.get("params") or {}
    if not isinstance(params, Mapping):
        return []
    record = params.get("record")
    if isinstance(record, Mapping) and isinstance(record.get("entity"), str):
        own_entity = record["entity"]
    if kind in ("update_record", "create_record"):
        entity = params.get("entity") if kind == "create_record" else own_entity
        if not isinstance(entity, str):
            return []
        fields = set((params.get("fields") or {}).keys())
        if params.get("custom_fields"):
            fields.add("custom_fields")
        event = "created" if kind == "create_record" else "updated"
        return [Write(entity, event, frozenset(fields), dict(params.get("fields") or {}))]
    if kind == "add_tag":
        tag = params.get("tag")
        return [Write("contact", "tagged", tag=None if _templated(tag) else tag)]
    if kind == "change_deal_stage":
        return [Write("deal", "updated", frozenset({"stage_id", "stage_entered_at"}))]
    if kind == "assign_owner" and own_entity:
        return [Write(own_entity, "updated", frozenset({"owner_id"}))]
    if kind == "ai_task" and params.get("write_back", True):
        per_entity = AI_WRITES.get(str(params.get("task_type")), {})
        return [Write(entity, "updated", fields) for entity, fields in per_entity.items()]
    return []


def automation_writes(doc: Mapping[str, Any]) -> list[Write]:
    own = record_entity(doc)
    return [w for _, step in iter_steps(doc.get("actions") or ()) for w in step_writes(step, own)]


def _may_equal(written: Any, expected: Any) -> bool:
    return _templated(written) or written == expected


def can_fire(write: Write, doc: Mapping[str, Any]) -> bool:
    """Whether ``write`` can start automation ``doc`` (conservative: unknown → yes)."""
    trigger_type = doc.get("trigger_type")
    config = doc.get("trigger_config") or {}
    if trigger_type == "contact_tagged":
        return (
            write.entity == "contact"
            and write.event == "tagged"
            and (write.tag is UNKNOWN or config.get("tag") in (None, write.tag))
        )
    if trigger_type in ("contact_created", "deal_created"):
        return write.event == "created" and write.entity == TRIGGER_ENTITY[trigger_type]
    if write.event != "updated":
        return False
    if trigger_type == "contact_updated" and write.entity == "contact":
        return _fields_can_match(write, config)
    if trigger_type == "deal_stage_changed" and write.entity == "deal":
        return write.fields is UNKNOWN or "stage_id" in write.fields
    if trigger_type in ("deal_won", "deal_lost") and write.entity == "deal":
        wanted = trigger_type.removeprefix("deal_")
        if write.fields is not UNKNOWN and "status" not in write.fields:
            return False
        return write.values is None or _may_equal(write.values.get("status"), wanted)
    return False


def _fields_can_match(write: Write, config: Mapping[str, Any]) -> bool:
    if write.fields is UNKNOWN:
        return True
    watch = config.get("watch")
    if watch and not write.fields & set(watch):
        return False
    transition = config.get("transition")
    if isinstance(transition, Mapping) and transition.get("field"):
        field = transition["field"]
        if field not in write.fields:
            return False
        if "to" in transition and write.values is not None and field in write.values:
            return _may_equal(write.values[field], transition["to"])
    return True


def fires(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether some write of automation ``a`` can start automation ``b``."""
    return any(can_fire(w, b) for w in automation_writes(a))


def find_cycle(docs: Mapping[str, Mapping[str, Any]], start: str) -> list[str] | None:
    """A shortest path ``start → … → start`` through enabled automations, or None.

    ``docs`` maps automation name → document (the one being deployed included).
    Breadth-first, so the reported path is the shortest loop an author must break.
    """
    enabled = {n: d for n, d in docs.items() if d.get("enabled", True) or n == start}
    edges = {n: [m for m, other in enabled.items() if fires(d, other)] for n, d in enabled.items()}
    frontier: list[list[str]] = [[start]]
    seen: set[str] = set()
    while frontier:
        next_frontier: list[list[str]] = []
        for path in frontier:
            for nxt in edges.get(path[-1], []):
                if nxt == start:
                    return [*path, start]
                if nxt not in seen:
                    seen.add(nxt)
                    next_frontier.append([*path, nxt])
        frontier = next_frontier
    return None


def format_cycle(path: list[str]) -> str:
    return " → ".join(path)
