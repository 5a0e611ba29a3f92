"""Does an event start an automation? The trigger half of matching (conditions are the
other half, in :mod:`engine.conditions`).

Pure: the event is a mapping with ``trigger_types`` (every trigger type it stands for,
computed once per event: a deal update that moves the stage to a won stage and sets the
status is ``deal_stage_changed`` *and* ``deal_won``), ``old`` / ``new`` (values of the
changed columns), ``changed_fields``, and ``automation_id`` for events aimed at one
automation (webhook, manual, schedules). Names of pipelines and stages, which trigger
configs may use instead of ids, are resolved by the caller and passed in ``names``
(uuid → name).

A mismatch comes back with a reason in words, which the decision log stores as
``trigger_config_mismatch`` so that "why didn't it run?" has an answer.

Semantics (documented for authors in docs/conditions.md):

* ``watch``: fire only when one of the listed columns is among the changed ones (for a
  ``*_created`` event, every column set at creation counts as changed);
* ``transition``: the field changed, and its old value equals ``from`` / its new value
  equals ``to`` (each optional); values compare with the condition language's equality;
* ``contact_tagged.tag``: the tag's name, exactly (tag names are unique per workspace);
* ``deal_stage_changed``: ``pipeline`` and ``from_stage`` / ``to_stage`` by id or name;
* targeted trigger types (webhook, manual, time_based) match only events aimed at this
  automation.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from engine.values import equal

TARGETED = frozenset({"webhook", "manual", "time_based"})


@dataclass(frozen=True)
class TriggerMatch:
    matched: bool
    reason: str | None = None

    def __bool__(self) -> bool:
        return self.matched


MATCH = TriggerMatch(True)


def _no(reason: str) -> TriggerMatch:
    return TriggerMatch(False, reason)


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(equal(a, b))
    except Exception:  # a value the typed comparison refuses is simply not equal
        return str(a) == str(b)


def _named(value: Any, expected: str, names: Mapping[str, str]) -> bool:
    """``expected`` (an id or a name from the config) denotes ``value`` (an id)?"""
    if value is None:
        return False
    text = str(value)
    return text == expected or names.get(text) == expected


def _check_watch(config: Mapping[str, Any], changed: Collection[str]) -> TriggerMatch:
    watch = config.get("watch")
    if watch and not set(watch) & set(changed):
        return _no(
            f"none of the watched fields {sorted(watch)} changed (changed: {sorted(changed)})"
        )
    return MATCH


def _check_transition(
    config: Mapping[str, Any], event: Mapping[str, Any], changed: Collection[str]
) -> TriggerMatch:
    transition = config.get("transition")
    if not isinstance(transition, Mapping) or not transition.get("field"):
        return MATCH
    field = transition["field"]
    if field not in changed:
        return _no(f"transition field {field!r} did not change")
    old = (event.get("old") or {}).get(field)
    new = (event.get("new") or {}).get(field)
    if "from" in transition and not _same(old, transition["from"]):
        return _no(f"{field} changed from {old!r}, not from {transition['from']!r}")
    if "to" in transition and not _same(new, transition["to"]):
        return _no(f"{field} changed to {new!r}, not to {transition['to']!r}")
    return MATCH


def _check_stage(
    config: Mapping[str, Any],
    event: Mapping[str, Any],
    record: Mapping[str, Any],
    names: Mapping[str, str],
) -> TriggerMatch:
    old, new = event.get("old") or {}, event.get("new") or {}
    pipeline = new.get("pipeline_id", record.get("pipeline_id"))
    if config.get("pipeline") and not _named(pipeline, config["pipeline"], names):
        shown = names.get(str(pipeline), pipeline)
        return _no(f"deal is in pipeline {shown!r}, not {config['pipeline']!r}")
    for key, value in (("from_stage", old.get("stage_id")), ("to_stage", new.get("stage_id"))):
        if config.get(key) and not _named(value, config[key], names):
            return _no(f"{key} is {names.get(str(value), value)!r}, not {config[key]!r}")
    return MATCH


def match_trigger(
    automation: Mapping[str, Any],
    event: Mapping[str, Any],
    *,
    record: Mapping[str, Any] | None = None,
    names: Mapping[str, str] | None = None,
) -> TriggerMatch:
    """Whether ``event`` satisfies the automation's trigger type and trigger config."""
    trigger_type = automation.get("trigger_type")
    config = automation.get("trigger_config") or {}
    types = event.get("trigger_types") or ()
    if trigger_type not in types:
        return _no(f"event is {sorted(types)}, not {trigger_type}")
    if trigger_type in TARGETED:
        target = event.get("automation_id")
        if target is None or str(target) != str(automation.get("id")):
            return _no("event is aimed at another automation")
        return MATCH
    changed = event.get("changed_fields") or ()
    if trigger_type == "contact_tagged":
        tag = (event.get("new") or {}).get("tag_name")
        if config.get("tag") is not None and tag != config["tag"]:
            return _no(f"tag {tag!r} is not {config['tag']!r}")
        return MATCH
    if trigger_type == "deal_stage_changed":
        return _check_stage(config, event, record or {}, names or {})
    for check in (_check_watch(config, changed), _check_transition(config, event, changed)):
        if not check:
            return check
    return MATCH


def needs_change(automation: Mapping[str, Any]) -> bool:
    """Whether the trigger config can only be judged against a change (not a bare record)."""
    config = automation.get("trigger_config") or {}
    return bool(
        config.get("watch")
        or config.get("transition")
        or automation.get("trigger_type") in ("contact_tagged", "deal_stage_changed")
    )
