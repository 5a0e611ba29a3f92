"""``haste validate``: every problem of an automation document, at once, each at its pointer.

Two layers. First the JSON Schema (engine.definitions.schema_problems): shapes, enums,
required and unknown options. Then what a schema cannot know, checked here against the CRM
schema and the rest of the document:

* field paths (conditions, every step ``if``, trigger ``watch``/``transition``/
  ``date_field``, delay ``until_field``, templates) exist in the field catalogue
  (engine.fields), with a suggestion, and are available for this trigger (no
  ``contact.*`` in a deal automation, no record at all in a cron one);
* leaf values fit the field's type and operator (delegated to engine.conditions.check);
* cron expressions parse and fire, time zones exist, regexes compile under RE2;
* step ids are unique across the whole document (branches included), ``goto:`` targets
  exist and lie ahead, ``steps.<id>`` refers to a step that has run by then;
* templates parse and reference only known names (engine.templating.referenced_paths);
* record actions have a record to act on and set only real, writable columns;
* every string and number can be stored (no ``\\u0000``, unpaired surrogate, NaN or
  Infinity: PostgreSQL's jsonb refuses them, and deploy would fail half-way).

A part of the document that already failed the schema is not checked again here (its
shape is unknown and the schema's message is the useful one); every other part is, so one
run reports everything.

Scoping of ``steps.<id>``: a step sees the steps before it in its own list and, for a
step inside a branch case, the steps before the branch; after a branch, the steps of all
its cases are visible (their output is null when their case did not run). A step never
sees itself, its enclosing branch, or a sibling case (first match wins, so two cases never
both run). ``goto:<id>`` may only jump forward, to a later step of the same list or of an
enclosing one: a backward jump could loop forever, and jumping into a case would skip its
condition.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import available_timezones

from croniter import croniter
from croniter.croniter import CroniterBadDateError, CroniterError

from engine import conditions, fields, templating
from engine.definitions import (
    TRIGGER_ENTITY,
    Problem,
    branch_lists,
    iter_steps,
    load_document,
    pointer_join,
    record_entity,
    schema_problems,
    sort_problems,
    too_deep,
    unstorable_members,
)
from engine.values import CoercionError, describe, zone

__all__ = ["format_problem", "problems_as_json", "validate_document", "validate_files"]

_TEMPLATE_MARKERS = ("{{", "{%", "{#")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_TIMEZONE_KEYWORDS = ("workspace", "owner")

# Which records an action may act on when its params name none (the trigger's record).
_DEFAULT_RECORD_ENTITIES: Mapping[str, tuple[str, ...]] = {
    "update_record": ("contact", "company", "deal"),
    "add_note": ("contact", "company", "deal", "task"),
    "add_tag": ("contact", "company"),
    "remove_tag": ("contact", "company"),
    "log_activity": ("contact", "deal", "company", "email", "task"),
    "assign_owner": ("contact", "company", "deal"),
}


def _is_template(value: Any) -> bool:
    return isinstance(value, str) and any(marker in value for marker in _TEMPLATE_MARKERS)


def _hint(word: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=fields.SUGGESTION_CUTOFF)
    return f"; did you mean '{close[0]}'?" if close else ""


def _a(kind: str) -> str:
    return f"an {kind}" if kind[:1] in "aeiou" and kind != "uuid" else f"a {kind}"


def _literal_fits(value: Any, kind: str) -> bool:
    """Whether a literal (not a template) can be stored in a field of this type."""
    if value is None or kind == "json" or _is_template(value):
        return True
    if kind in ("number", "decimal"):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "array":
        return isinstance(value, list)
    if not isinstance(value, str):
        return False
    if kind == "uuid":
        return bool(_UUID.match(value))
    try:
        if kind == "date":
            date.fromisoformat(value)
        elif kind == "timestamp":
            datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


class _Checker:
    """One pass over one document; collects problems instead of stopping at the first."""

    def __init__(self, doc: dict[str, Any], schema: list[Problem]) -> None:
        self.doc = doc
        self.schema_pointers = [p.pointer for p in schema]
        self.problems: list[Problem] = []
        trigger_type = doc.get("trigger_type")
        self.trigger_type = trigger_type if isinstance(trigger_type, str) else None
        self.entity = record_entity(doc)
        self.has_previous = self.trigger_type in TRIGGER_ENTITY
        self.step_ids: dict[str, str] = {}  # id -> pointer of its first use

    # --- helpers -------------------------------------------------------------------------

    def add(self, pointer: str, message: str) -> None:
        self.problems.append(Problem(pointer, message))

    def clean(self, pointer: str) -> bool:
        """No schema problem at or under ``pointer``: its shape is known to be right."""
        prefix = pointer + "/"
        return not any(p == pointer or p.startswith(prefix) for p in self.schema_pointers)

    def record_label(self) -> str:
        if self.entity:
            return f"this automation's record is {_a(self.entity)}"
        if self.trigger_type:
            return f"trigger '{self.trigger_type}' has no record"
        return "there is no record"

    def path(self, path: str, pointer: str, visible: frozenset[str] | None) -> str | None:
        """Check a field path where it is used; its type when it is usable there.

        ``visible`` is the set of step ids whose output exists at that point (None: no
        step has run, e.g. the automation's conditions or its trigger).
        """
        kind = fields.field_type(path)
        if kind is None:
            self.add(pointer, fields.unknown_field_message(path))
            return None
        parts = path.split(".")
        root = parts[0]
        if root in fields.ENTITIES and root != self.entity:
            hint = ""
            if self.entity and root in fields.relations(self.entity):
                hint = f"; did you mean '{self.entity}.{path}'?"
            self.add(pointer, f"'{path}' is not available: {self.record_label()}{hint}")
            return None
        if root == "previous":
            if not self.has_previous:
                self.add(
                    pointer,
                    f"'{path}' is not available: previous values exist only "
                    "for record-change triggers",
                )
                return None
            if parts[1] != self.entity:
                self.add(pointer, f"'{path}' is not available: {self.record_label()}")
                return None
        if root == "steps":
            step_id = parts[1]
            if step_id not in self.step_ids:
                self.add(pointer, f"unknown step '{step_id}'{_hint(step_id, self.step_ids)}")
                return None
            if visible is None or step_id not in visible:
                self.add(
                    pointer,
                    f"step '{step_id}' has not run at this point "
                    "(steps.<id> may only refer to earlier steps)",
                )
                return None
        return kind

    def literal(self, value: Any, kind: str, path: str, pointer: str) -> None:
        """A literal stored into (or compared with) a typed field must fit its type."""
        if not _literal_fits(value, kind):
            self.add(pointer, f"'{path}' is {_a(kind)} field, got {describe(value)}")

    def timezone(self, name: Any, pointer: str, *, keywords: Sequence[str] = ()) -> None:
        if not isinstance(name, str) or not self.clean(pointer):
            return
        if name in keywords:
            if name == "owner" and self.entity is None:
                self.add(pointer, f"timezone 'owner' needs a record, and {self.record_label()}")
            return
        try:
            zone(name)
        except CoercionError:
            hint = _hint(name, sorted(available_timezones()))
            self.add(pointer, f"unknown timezone {describe(name)}{hint}")

    # --- trigger -------------------------------------------------------------------------

    def trigger(self) -> None:
        config = self.doc.get("trigger_config")
        if not isinstance(config, dict) or self.trigger_type is None:
            return
        base = "/trigger_config"
        if self.trigger_type in TRIGGER_ENTITY and self.entity:
            watch = config.get("watch")
            if isinstance(watch, list):
                for index, name in enumerate(watch):
                    self.own_column(name, pointer_join(base, "watch", index))
            transition = config.get("transition")
            transition_ptr = pointer_join(base, "transition")
            if isinstance(transition, dict) and self.clean(transition_ptr):
                field = transition.get("field")
                kind = self.own_column(field, pointer_join(transition_ptr, "field"))
                for key in ("from", "to"):
                    if kind and key in transition:
                        self.literal(
                            transition[key],
                            kind,
                            f"{self.entity}.{field}",
                            pointer_join(transition_ptr, key),
                        )
        from_stage = config.get("from_stage")
        if (
            self.trigger_type == "deal_stage_changed"
            and from_stage is not None
            and from_stage == config.get("to_stage")
        ):
            self.add(pointer_join(base, "to_stage"), "'to_stage' is the same as 'from_stage'")
        if self.trigger_type == "time_based":
            self.time_based(config, base)

    def own_column(self, name: Any, pointer: str) -> str | None:
        """A column (or custom_fields.<key>) of the trigger's own record, as watched."""
        if not isinstance(name, str) or not self.clean(pointer) or self.entity is None:
            return None
        head = name.split(".", 1)[0]
        if head in fields.relations(self.entity) and head not in fields.columns(self.entity):
            self.add(pointer, f"only the {self.entity}'s own fields can be watched, not '{name}'")
            return None
        path = f"{self.entity}.{name}"
        kind = fields.field_type(path)
        if kind is None:
            self.add(pointer, fields.unknown_field_message(path))
        return kind

    def time_based(self, config: dict[str, Any], base: str) -> None:
        cron = config.get("cron")
        cron_ptr = pointer_join(base, "cron")
        if isinstance(cron, str) and self.clean(cron_ptr):
            self.cron(cron, cron_ptr)
        at = config.get("at")
        at_ptr = pointer_join(base, "at")
        if isinstance(at, str) and self.clean(at_ptr):
            try:
                datetime.fromisoformat(at.replace("Z", "+00:00"))
            except ValueError as exc:
                self.add(at_ptr, f"invalid instant '{at}': {exc}")
        date_field = config.get("date_field")
        field_ptr = pointer_join(base, "date_field")
        if isinstance(date_field, str) and self.clean(field_ptr):
            self.date_path(date_field, field_ptr, visible=None, own_record=True)
        self.timezone(
            config.get("timezone"), pointer_join(base, "timezone"), keywords=_TIMEZONE_KEYWORDS
        )

    def cron(self, expression: str, pointer: str) -> None:
        count = len(expression.split())
        if not expression.startswith("@") and count != 5:
            self.add(
                pointer,
                f"cron expression needs 5 fields (minute hour day-of-month month "
                f"day-of-week), got {count}",
            )
            return
        try:
            schedule = croniter(expression, datetime(2000, 1, 1))
        except (CroniterError, ValueError, KeyError) as exc:
            self.add(pointer, f"invalid cron expression '{expression}': {exc}")
            return
        try:
            schedule.get_next(datetime)
        except CroniterBadDateError:
            self.add(pointer, f"cron expression '{expression}' never fires")

    def date_path(
        self, path: str, pointer: str, *, visible: frozenset[str] | None, own_record: bool
    ) -> None:
        """A path that must name a date or timestamp (date_field, until_field)."""
        if own_record:
            # date_field defines the record, so only "<entity>.<column>" makes sense.
            parts = path.split(".")
            kind = fields.field_type(path)
            if kind is None:
                self.add(pointer, fields.unknown_field_message(path))
                return
            if parts[0] not in fields.ENTITIES or len(parts) != 2:
                self.add(
                    pointer,
                    f"'{path}' must be a column of a record, such as deal.expected_close_date",
                )
                return
        else:
            kind = self.path(path, pointer, visible)
        if kind is not None and kind not in ("date", "timestamp", "json"):
            self.add(pointer, f"'{path}' is {_a(kind)}, not a date or timestamp")

    # --- conditions ----------------------------------------------------------------------

    def condition(
        self, node: Any, pointer: str, visible: frozenset[str] | None, depth: int = 0
    ) -> None:
        if isinstance(node, list) and depth == 0:  # a top-level list is all-of
            for index, child in enumerate(node):
                self.condition(child, pointer_join(pointer, index), visible, 1)
            return
        if not isinstance(node, dict):
            return
        if depth > conditions.MAX_DEPTH:
            self.add(pointer, f"conditions nest deeper than {conditions.MAX_DEPTH} levels")
            return
        for key in ("all", "any"):
            if isinstance(node.get(key), list):
                for index, child in enumerate(node[key]):
                    self.condition(child, pointer_join(pointer, key, index), visible, depth + 1)
        if "not" in node:
            self.condition(node["not"], pointer_join(pointer, "not"), visible, depth + 1)
        if "field" in node and self.clean(pointer):
            self.leaf(node, pointer, visible)

    def leaf(self, leaf: dict[str, Any], pointer: str, visible: frozenset[str] | None) -> None:
        path = leaf.get("field")
        if not isinstance(path, str):
            return
        if self.path(path, pointer_join(pointer, "field"), visible) is None:
            return
        # Operator/value/type fit, RE2 regexes and leaf time zones: the evaluator's own rules.
        for problem in conditions.check(leaf, fields.field_type, base_pointer=pointer):
            self.add(problem.pointer, problem.message)

    # --- steps ---------------------------------------------------------------------------

    def collect_step_ids(self) -> None:
        for pointer, step in iter_steps(self.doc.get("actions")):
            step_id = step.get("id")
            if not isinstance(step_id, str):
                continue
            if step_id in self.step_ids:
                self.add(
                    pointer_join(pointer, "id"),
                    f"duplicate step id '{step_id}' (first used at {self.step_ids[step_id]})",
                )
            else:
                self.step_ids[step_id] = pointer

    def steps(
        self, steps: Any, pointer: str, visible: frozenset[str], ahead: frozenset[str]
    ) -> None:
        """Check a list of steps; ``ahead`` holds the goto targets beyond this list."""
        if not isinstance(steps, list):
            return
        ids = [s.get("id") if isinstance(s, dict) else None for s in steps]
        seen = set(visible)
        for index, step in enumerate(steps):
            if not isinstance(step, dict):
                continue
            later = frozenset(i for i in ids[index + 1 :] if isinstance(i, str)) | ahead
            step_ptr = pointer_join(pointer, index)
            self.step(step, step_ptr, frozenset(seen), later)
            seen.update(
                s["id"] for _, s in iter_steps([step], step_ptr) if isinstance(s.get("id"), str)
            )

    def step(
        self, step: dict[str, Any], pointer: str, visible: frozenset[str], ahead: frozenset[str]
    ) -> None:
        if "if" in step:
            self.condition(step["if"], pointer_join(pointer, "if"), visible)
        on_error = step.get("on_error")
        error_ptr = pointer_join(pointer, "on_error")
        if isinstance(on_error, str) and on_error.startswith("goto:") and self.clean(error_ptr):
            target = on_error[len("goto:") :]
            if target not in self.step_ids:
                hint = _hint(target, self.step_ids)
                self.add(
                    error_ptr, f"goto target '{target}' is not a step of this automation{hint}"
                )
            elif target not in ahead:
                self.add(
                    error_ptr,
                    f"goto target '{target}' must be a later step of this list "
                    "or of an enclosing one",
                )
        params = step.get("params")
        step_type = step.get("type")
        if not isinstance(params, dict) or not isinstance(step_type, str):
            return
        params_ptr = pointer_join(pointer, "params")
        if step_type == "branch":
            self.branch(step, pointer, visible, ahead)
            return
        self.templates(params, params_ptr, visible)
        action_check = getattr(self, f"action_{step_type}", None)
        if action_check is not None:
            action_check(params, params_ptr, visible)
        if step_type in _DEFAULT_RECORD_ENTITIES and "record" not in params:
            allowed = _DEFAULT_RECORD_ENTITIES[step_type]
            if self.entity not in allowed:
                kinds = ", ".join(allowed[:-1]) + f" or {allowed[-1]}"
                self.add(
                    pointer_join(params_ptr, "record"),
                    f"'record' is required: {self.record_label()} ({step_type} defaults "
                    f"to the trigger's {kinds})",
                )

    def branch(
        self, step: dict[str, Any], pointer: str, visible: frozenset[str], ahead: frozenset[str]
    ) -> None:
        params = step["params"]
        cases = params.get("cases")
        if isinstance(cases, list):
            for index, case in enumerate(cases):
                if isinstance(case, dict) and "if" in case:
                    case_ptr = pointer_join(pointer, "params", "cases", index, "if")
                    self.condition(case["if"], case_ptr, visible)
        for list_ptr, steps in branch_lists(step, pointer):
            self.steps(steps, list_ptr, visible, ahead)

    def templates(self, value: Any, pointer: str, visible: frozenset[str]) -> None:
        """Every template string under ``value`` parses and names known, visible fields."""
        if isinstance(value, dict):
            for key, item in value.items():
                self.templates(item, pointer_join(pointer, key), visible)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                self.templates(item, pointer_join(pointer, index), visible)
        elif _is_template(value) and self.clean(pointer):
            try:
                paths = templating.referenced_paths(value)
            except templating.TemplateError as exc:
                self.add(pointer, f"invalid template: {exc}")
                return
            for path in sorted(paths):
                self.path(path, pointer, visible)

    # --- per-action checks (named action_<type>) ----------------------------------------

    def record_fields(self, entity: str | None, values: Any, pointer: str) -> None:
        """Columns set by update_record/create_record exist, are writable, and fit."""
        if entity is None or not isinstance(values, dict) or entity not in fields.ENTITIES:
            return
        writable = fields.writable_columns(entity)
        all_columns = fields.columns(entity)
        for name, value in values.items():
            ptr = pointer_join(pointer, name)
            if name in writable:
                self.literal(value, writable[name], f"{entity}.{name}", ptr)
            elif name in all_columns:
                self.add(ptr, f"'{name}' is maintained by the engine and cannot be set")
            else:
                self.add(ptr, fields.unknown_field_message(f"{entity}.{name}"))

    def action_update_record(self, params: dict[str, Any], pointer: str, _: frozenset[str]) -> None:
        record = params.get("record")
        entity = record.get("entity") if isinstance(record, dict) else self.entity
        if entity in ("contact", "company", "deal"):
            self.record_fields(entity, params.get("fields"), pointer_join(pointer, "fields"))

    def action_create_record(self, params: dict[str, Any], pointer: str, _: frozenset[str]) -> None:
        entity = params.get("entity")
        values = params.get("fields")
        if not isinstance(entity, str) or not isinstance(values, dict):
            return
        self.record_fields(entity, values, pointer_join(pointer, "fields"))
        for name in fields.required_columns(entity):
            if name not in values:
                self.add(
                    pointer_join(pointer, "fields", name),
                    f"'{name}' is required to create {_a(entity)}",
                )

    def action_change_deal_stage(
        self, params: dict[str, Any], pointer: str, _: frozenset[str]
    ) -> None:
        if "deal" not in params and self.entity != "deal":
            self.add(pointer_join(pointer, "deal"), f"'deal' is required: {self.record_label()}")

    def action_delay(self, params: dict[str, Any], pointer: str, visible: frozenset[str]) -> None:
        until_field = params.get("until_field")
        field_ptr = pointer_join(pointer, "until_field")
        if isinstance(until_field, str) and self.clean(field_ptr):
            self.date_path(until_field, field_ptr, visible=visible, own_record=False)
        self.timezone(
            params.get("timezone"), pointer_join(pointer, "timezone"), keywords=_TIMEZONE_KEYWORDS
        )
        hours = params.get("business_hours")
        hours_ptr = pointer_join(pointer, "business_hours")
        if isinstance(hours, dict) and self.clean(hours_ptr):
            self.timezone(
                hours.get("timezone"),
                pointer_join(hours_ptr, "timezone"),
                keywords=_TIMEZONE_KEYWORDS,
            )
            if hours.get("end", "") <= hours.get("start", ""):
                self.add(pointer_join(hours_ptr, "end"), "'end' must be after 'start'")

    # --- entry point ---------------------------------------------------------------------

    def run(self) -> list[Problem]:
        self.collect_step_ids()
        self.trigger()
        if "conditions" in self.doc:
            self.condition(self.doc["conditions"], "/conditions", None)
        self.steps(self.doc.get("actions"), "/actions", frozenset(), frozenset())
        return self.problems


def validate_document(doc: Any, *, file: str | None = None) -> list[Problem]:
    """All problems of a parsed document, in document order, each at its JSON pointer."""
    problems = schema_problems(doc)
    if too_deep(doc) is not None:
        return [replace(p, file=file) for p in problems]
    problems = problems + unstorable_members(doc)
    if isinstance(doc, dict):
        problems = problems + _Checker(doc, problems).run()
    return [replace(p, file=file) for p in sort_problems(problems, doc)]


def validate_files(paths: Iterable[str | Path]) -> list[Problem]:
    """Problems of every file, file by file; an unreadable file is a problem, not a crash."""
    problems: list[Problem] = []
    for path in paths:
        doc, load_problems = load_document(path)
        if doc is None and load_problems:  # unreadable, or not JSON (`null` is a document)
            problems.extend(load_problems)
        else:
            found = validate_document(doc, file=str(path))
            problems.extend(sort_problems([*load_problems, *found], doc))
    return problems


def format_problem(problem: Problem) -> str:
    """``FILE:/json/pointer: message``, the line ``haste validate`` prints (a problem of the
    whole file, such as a JSON syntax error, has the empty pointer: ``FILE: message``).
    An unpaired surrogate (in a member name, or a file name) is shown as its escape, so the
    line can always be printed."""
    where = problem.file if problem.file is not None else "-"
    if problem.pointer:
        line = f"{where}:{problem.pointer}: {problem.message}"
    else:
        line = f"{where}: {problem.message}"
    return line.encode("utf-8", "backslashreplace").decode("utf-8")


def problems_as_json(problems: Iterable[Problem]) -> list[dict[str, str | None]]:
    """Problems as plain JSON objects (file, pointer, message) for ``--json``."""
    return [{"file": p.file, "pointer": p.pointer, "message": p.message} for p in problems]
