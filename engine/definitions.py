"""Automation documents: loading them and checking them against the published JSON Schema.

An automation is one JSON document (``schemas/automation.schema.json``, draft 2020-12) whose
step ``params`` are described by one file per action type (``schemas/actions/<type>.json``).
This module owns the step from bytes to "schema-valid or a list of problems"; the checks a
schema cannot express (field paths, cron, regex, step references, ...) live in
:mod:`engine.validation`, which calls :func:`schema_problems` first.

Choices, and what was rejected:

* Trigger configs and step params are dispatched with ``if``/``then`` on ``trigger_type`` /
  ``type``, not ``oneOf``: a ``oneOf`` failure reports "is not valid under any of the given
  schemas" with the real cause buried in one of thirteen branches, while ``if``/``then``
  reports the error of the one branch that applies, at its own path.
* Where plain keywords give poor messages (mutually exclusive options, "one of these is
  required", patterns), the schema carries an ``errorMessage`` / ``patternErrorMessage``
  (the keywords VS Code's JSON service shows too), and :func:`schema_problems` uses them.
* Schemas are resolved from the files through a :class:`referencing.Registry`; nothing is
  fetched from the network (the ``$id`` URLs need not exist). References between our files
  are relative, so an editor that resolves them against the file location finds them too.
* Durations are one form everywhere, an object of whole units: ``{"minutes": 5}``,
  ``{"days": 3}``, ``{"hours": 1, "minutes": 30}`` (timeouts, retry waits, delays, due
  dates, catch-up windows, and the ``within_last`` operand of engine.conditions, which
  chose it first); offsets are the same object with signs (``{"days": -3}``). weeks and
  days are calendar units, hours/minutes/seconds elapsed time (engine.values.Duration).
  Rejected: strings such as "5m" or "PT5M" (a second syntax to learn and parse, and
  "1d" hides whether a day is 24 hours or a calendar day).
* Problems point at the offending member with an RFC 6901 pointer: a missing property
  points where it would be (``/actions/2/params/tag``), an unexpected one at itself.
"""

from __future__ import annotations

import difflib
import json
import math
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any

import referencing
import referencing.jsonschema
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from engine.fields import ENTITIES
from schemas import ROOT as SCHEMAS_DIR

__all__ = [
    "ACTIONS_DIR",
    "DURATION_UNITS",
    "MAIN_SCHEMA_ID",
    "MAIN_SCHEMA_PATH",
    "TRIGGER_ENTITY",
    "Problem",
    "action_types",
    "branch_lists",
    "document_order",
    "iter_steps",
    "load_document",
    "load_schemas",
    "parse_duration",
    "pointer_join",
    "record_entity",
    "registry",
    "schema_problems",
    "sort_problems",
    "too_deep",
    "trigger_types",
    "unstorable_members",
    "validator",
]

MAIN_SCHEMA_PATH = SCHEMAS_DIR / "automation.schema.json"
ACTIONS_DIR = SCHEMAS_DIR / "actions"
MAIN_SCHEMA_ID = "https://schemas.haste.dev/automation.schema.json"

MAX_NESTING = 100
"""Deepest JSON nesting checked; deeper documents get one problem instead of a
RecursionError from the validator (about 300 levels on CPython's default stack)."""

SHORT_REPR_CHARS = 60
"""Longest rendering of a value inside a message; longer ones become ``{...}``/``[...]``."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a document, located by a JSON pointer into it.

    ``file`` is filled by whoever knows it (``load_document``, ``validate_files``), so the
    checks themselves stay pure functions of the document.
    """

    pointer: str
    message: str
    file: str | None = None


# --- schemas -----------------------------------------------------------------------------


@cache
def load_schemas() -> dict[str, dict[str, Any]]:
    """Every published schema by its ``$id``: the document schema and one per action."""
    schemas: dict[str, dict[str, Any]] = {}
    for path in [MAIN_SCHEMA_PATH, *sorted(ACTIONS_DIR.glob("*.json"))]:
        contents = json.loads(path.read_text(encoding="utf-8"))
        schemas[contents["$id"]] = contents
    return schemas


@cache
def registry() -> referencing.Registry:
    """Our schemas by ``$id``, for resolving references offline (jsonschema adds the
    draft metaschemas itself when it builds a validator)."""
    resources = [
        (uri, referencing.Resource.from_contents(contents, referencing.jsonschema.DRAFT202012))
        for uri, contents in load_schemas().items()
    ]
    return referencing.Registry().with_resources(resources)


@cache
def validator() -> Draft202012Validator:
    """The document validator (formats are annotations only, as 2020-12 says; the
    semantic checks in engine.validation parse instants, zones and regexes for real)."""
    return Draft202012Validator(load_schemas()[MAIN_SCHEMA_ID], registry=registry())


TRIGGER_ENTITY: Mapping[str, str] = {
    "contact_created": "contact",
    "contact_updated": "contact",
    "contact_tagged": "contact",
    "email_received": "email",
    "email_opened": "email",
    "email_clicked": "email",
    "deal_created": "deal",
    "deal_stage_changed": "deal",
    "deal_won": "deal",
    "deal_lost": "deal",
}
"""Record-change triggers and the entity of their record (these also have previous.*)."""


def record_entity(doc: Mapping[str, Any]) -> str | None:
    """The entity of the record a run of this automation is about, or None (a cron or
    one-off schedule, a webhook that names no record)."""
    trigger_type = doc.get("trigger_type")
    if isinstance(trigger_type, str) and trigger_type in TRIGGER_ENTITY:
        return TRIGGER_ENTITY[trigger_type]
    config = doc.get("trigger_config")
    if not isinstance(config, Mapping):
        return None
    entity: Any = None
    if trigger_type == "time_based":
        date_field = config.get("date_field")
        entity = date_field.split(".", 1)[0] if isinstance(date_field, str) else None
    elif trigger_type == "webhook":
        record = config.get("record")
        entity = record.get("entity_type") if isinstance(record, Mapping) else None
    elif trigger_type == "manual":
        entity = config.get("entity_type")
    return entity if isinstance(entity, str) and entity in ENTITIES else None


def action_types() -> list[str]:
    """Action types, one per file in schemas/actions (the file set is the truth)."""
    return sorted(path.stem for path in ACTIONS_DIR.glob("*.json"))


def trigger_types() -> list[str]:
    """Trigger types as the schema's enum lists them."""
    return list(load_schemas()[MAIN_SCHEMA_ID]["properties"]["trigger_type"]["enum"])


# --- durations ---------------------------------------------------------------------------

DURATION_UNITS: Mapping[str, timedelta] = {
    "weeks": timedelta(weeks=1),
    "days": timedelta(days=1),
    "hours": timedelta(hours=1),
    "minutes": timedelta(minutes=1),
    "seconds": timedelta(seconds=1),
}
"""Units of a document duration (engine.values.DURATION_UNITS plus seconds, for timeouts)."""


def parse_duration(value: Any) -> timedelta:
    """Elapsed time of a document duration such as ``{"minutes": 5}``; ValueError otherwise.

    For timeouts, retry waits and windows, where a day is 24 hours. Calendar-aware uses
    (delays, due dates) shift the wall clock with engine.values.shift instead.
    """
    if not isinstance(value, Mapping) or not value:
        raise ValueError(f'a duration is an object such as {{"minutes": 5}}, got {value!r}')
    total = timedelta()
    for unit, amount in value.items():
        if unit not in DURATION_UNITS:
            raise ValueError(f"unknown duration unit {unit!r}; use {', '.join(DURATION_UNITS)}")
        if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
            raise ValueError(f"duration {unit} must be a whole number >= 0, got {amount!r}")
        total += amount * DURATION_UNITS[unit]
    return total


# --- loading -----------------------------------------------------------------------------


def pointer_join(base: str, *tokens: str | int) -> str:
    """Extend an RFC 6901 pointer, escaping ``~`` and ``/`` in member names."""
    parts = [base]
    for token in tokens:
        parts.append("/" + str(token).replace("~", "~0").replace("/", "~1"))
    return "".join(parts)


def load_document(path: str | Path) -> tuple[Any | None, list[Problem]]:
    """Parse a document file; on failure the document is None and the problem says where.

    Duplicate member names are reported (JSON parsers keep the last silently, which hides
    half of a copy-pasted step); the document is still returned so that the rest of it
    gets checked too.
    """
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return None, [Problem("", f"cannot read file: {reason}", file)]
    duplicates: list[tuple[dict[str, Any], str]] = []

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        for key, value in pairs:
            if key in obj:
                duplicates.append((obj, key))
            obj[key] = value
        return obj

    try:
        doc = json.loads(text, object_pairs_hook=pairs_hook)
    except json.JSONDecodeError as exc:
        return None, [
            Problem("", f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", file)
        ]
    except ValueError:  # int() refused a literal longer than sys.get_int_max_str_digits()
        digits = sys.get_int_max_str_digits()
        return None, [Problem("", f"invalid JSON: a number has more than {digits} digits", file)]
    except RecursionError:
        return None, [Problem("", f"invalid JSON: nested deeper than {MAX_NESTING} levels", file)]
    problems: list[Problem] = []
    if duplicates:
        where = {id(obj): ptr for ptr, obj in _walk(doc, "") if isinstance(obj, dict)}
        for obj, key in duplicates:
            ptr = pointer_join(where.get(id(obj), ""), key)
            problems.append(Problem(ptr, f"duplicate key '{key}' (only the last one counts)", file))
    return doc, problems


def _walk(node: Any, ptr: str) -> Iterator[tuple[str, Any]]:
    """Every (pointer, value) of a JSON value in document order, the value itself first."""
    yield ptr, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, pointer_join(ptr, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, pointer_join(ptr, index))


def document_order(doc: Any) -> dict[str, int]:
    """Position of every pointer of ``doc`` in reading order, to sort problems like a
    compiler does (top to bottom) rather than in the order checks happen to run."""
    return {ptr: index for index, (ptr, _) in enumerate(_walk(doc, ""))}


def sort_problems(problems: Iterable[Problem], doc: Any) -> list[Problem]:
    """Problems in document order, duplicates (same file, pointer, message) dropped.

    A pointer that does not exist in the document (a missing property) sorts with its
    nearest existing ancestor.
    """
    order = document_order(doc)

    def position(problem: Problem) -> int:
        ptr = problem.pointer
        while ptr not in order and ptr:
            ptr = ptr.rsplit("/", 1)[0]
        return order.get(ptr, 0)

    seen: set[tuple[str | None, str, str]] = set()
    unique: list[Problem] = []
    for problem in problems:
        key = (problem.file, problem.pointer, problem.message)
        if key not in seen:
            seen.add(key)
            unique.append(problem)
    return sorted(unique, key=position)


# --- values PostgreSQL cannot store ------------------------------------------------------

_SURROGATE = re.compile("[\ud800-\udfff]")


def _unstorable_text(text: str) -> str | None:
    if "\x00" in text:
        return "a \\u0000 character cannot be stored"
    if (match := _SURROGATE.search(text)) is not None:
        return (
            f"an unpaired surrogate (\\u{ord(match.group()):04x}) is not text and cannot be stored"
        )
    return None


def unstorable_members(doc: Any) -> list[Problem]:
    """Every member PostgreSQL's jsonb would refuse, in document order: strings or member
    names with ``\\u0000`` or an unpaired surrogate (``"\\ud800"`` parses to one), and
    the non-JSON numbers NaN and Infinity that Python's parser accepts. Found without
    recursion; a document that passes is storable as it is."""
    problems: list[Problem] = []
    stack: list[tuple[Any, str]] = [(doc, "")]
    while stack:
        node, ptr = stack.pop()
        if isinstance(node, str):
            if (reason := _unstorable_text(node)) is not None:
                problems.append(Problem(ptr, reason))
        elif isinstance(node, float) and not math.isfinite(node):
            name = "NaN" if math.isnan(node) else "Infinity" if node > 0 else "-Infinity"
            problems.append(Problem(ptr, f"{name} is not a JSON number"))
        elif isinstance(node, dict):
            children: list[tuple[Any, str]] = []
            for key, value in node.items():
                member = pointer_join(ptr, key)
                if isinstance(key, str) and (reason := _unstorable_text(key)) is not None:
                    problems.append(Problem(member, f"in the member name, {reason}"))
                children.append((value, member))
            stack.extend(reversed(children))
        elif isinstance(node, list):
            stack.extend(reversed([(v, pointer_join(ptr, i)) for i, v in enumerate(node)]))
    return problems


# --- schema problems ---------------------------------------------------------------------


def too_deep(doc: Any) -> Problem | None:
    """The first member nested deeper than MAX_NESTING, found without recursion."""
    stack: list[tuple[Any, str, int]] = [(doc, "", 0)]
    while stack:
        node, ptr, depth = stack.pop()
        if depth > MAX_NESTING:
            return Problem(ptr, f"nested deeper than {MAX_NESTING} levels")
        if isinstance(node, dict):
            stack.extend((v, pointer_join(ptr, k), depth + 1) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((v, pointer_join(ptr, i), depth + 1) for i, v in enumerate(node))
    return None


def schema_problems(doc: Any, *, file: str | None = None) -> list[Problem]:
    """Every schema violation of ``doc``, each at the deepest pointer that explains it."""
    if (deep := too_deep(doc)) is not None:
        return [Problem(deep.pointer, deep.message, file)]
    problems: list[Problem] = []
    for error in validator().iter_errors(doc):
        problems.extend(_explain(error, file))
    return sort_problems(problems, doc)


def _error_pointer(error: ValidationError) -> str:
    return pointer_join("", *error.absolute_path)


def _explain(error: ValidationError, file: str | None) -> list[Problem]:
    """Turn one jsonschema error into problems with short, exact messages."""
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    ptr = _error_pointer(error)
    if error.validator in ("anyOf", "oneOf") and "errorMessage" not in schema and error.context:
        # A composite the schema author did not word: report its most relevant branch.
        return _explain(best_match(error.context), file)
    if "errorMessage" in schema:
        return [Problem(ptr, str(schema["errorMessage"]), file)]
    if error.validator == "required":
        missing = _missing_property(error)
        return [Problem(pointer_join(ptr, missing) if missing else ptr, error.message, file)]
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        return [
            Problem(pointer_join(ptr, key), _unexpected_message(key, schema), file)
            for key in _unexpected_keys(error.instance, schema)
        ]
    if error.validator == "pattern" and "patternErrorMessage" in schema:
        hint = str(schema["patternErrorMessage"]).rstrip(".")
        return [Problem(ptr, f"{_short(error.instance)}: {hint[:1].lower()}{hint[1:]}", file)]
    if error.validator is False or (error.validator == "not" and error.validator_value == {}):
        name = error.absolute_path[-1] if error.absolute_path else "this value"
        return [Problem(ptr, f"'{name}' is not allowed here", file)]
    message = _shorten_instance(error)
    if error.validator == "enum" and isinstance(error.instance, str):
        options = [v for v in error.validator_value if isinstance(v, str)]
        if close := difflib.get_close_matches(error.instance, options, n=1):
            message += f"; did you mean '{close[0]}'?"
    return [Problem(ptr, message, file)]


def _missing_property(error: ValidationError) -> str | None:
    instance = error.instance if isinstance(error.instance, dict) else {}
    for name in error.validator_value:
        if name not in instance and error.message.startswith(repr(name)):
            return str(name)
    return None


def _unexpected_keys(instance: dict[str, Any], schema: Mapping[str, Any]) -> list[str]:
    known = schema.get("properties", {})
    patterns = [re.compile(p) for p in schema.get("patternProperties", {})]
    return [
        key for key in instance if key not in known and not any(p.search(key) for p in patterns)
    ]


def _unexpected_message(key: str, schema: Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(key, list(schema.get("properties", {})), n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"Additional properties are not allowed ({key!r} was unexpected{hint})"


def _short(value: Any) -> str:
    text = repr(value)
    if len(text) <= SHORT_REPR_CHARS:
        return text
    if isinstance(value, dict):
        return "{...}"
    if isinstance(value, list):
        return "[...]"
    if isinstance(value, str):
        return repr(value[: SHORT_REPR_CHARS - 10] + "...")
    return text[:SHORT_REPR_CHARS] + "..."


def _shorten_instance(error: ValidationError) -> str:
    """jsonschema starts most messages with repr(instance); never echo a whole step."""
    full = repr(error.instance)
    if error.message.startswith(full) and len(full) > SHORT_REPR_CHARS:
        return _short(error.instance) + error.message[len(full) :]
    return error.message


# --- steps -------------------------------------------------------------------------------


def iter_steps(actions: Any, pointer: str = "/actions") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every step in execution-listing order (a branch, then its cases' steps, then its
    default), with its pointer; tolerant of malformed shapes so that it can run on
    documents that failed the schema."""
    if not isinstance(actions, list):
        return
    for index, step in enumerate(actions):
        if not isinstance(step, dict):
            continue
        step_ptr = pointer_join(pointer, index)
        yield step_ptr, step
        for list_ptr, steps in branch_lists(step, step_ptr):
            yield from iter_steps(steps, list_ptr)


def branch_lists(step: Mapping[str, Any], step_ptr: str) -> list[tuple[str, list[Any]]]:
    """The nested step lists of a branch step (each case's, then the default)."""
    params = step.get("params")
    if step.get("type") != "branch" or not isinstance(params, dict):
        return []
    lists: list[tuple[str, list[Any]]] = []
    cases = params.get("cases")
    if isinstance(cases, list):
        for index, case in enumerate(cases):
            if isinstance(case, dict) and isinstance(case.get("steps"), list):
                case_ptr = pointer_join(step_ptr, "params", "cases", index, "steps")
                lists.append((case_ptr, case["steps"]))
    if isinstance(params.get("default"), list):
        lists.append((pointer_join(step_ptr, "params", "default"), params["default"]))
    return lists
