"""Condition trees: the filter between "an event matched the trigger" and "run the actions".

A tree is ``{"all": [...]}``, ``{"any": [...]}``, ``{"not": c}`` or a leaf
``{"field": "contact.score", "op": "gte", "value": 80}``; a top-level list is all-of and
``None``/``[]``/``{}`` (the column default ``'[]'``) is always true. docs/conditions.md is
the author-facing reference; :data:`OPERATORS` is the single table that the evaluator, the
static checker (:func:`check`), the JSON Schema (:func:`condition_json_schema`) and a docs
sync test all read, so they cannot drift apart.

Two entry points, two audiences:

* :func:`evaluate` runs in the listener for every (event, candidate automation); the
  listener should :func:`prepare` each deployed tree once (parsing is about half the cost
  of evaluating a raw tree, see bench/bench_conditions.py) and pass the result. It never
  raises: a leaf that meets data it cannot compare (``gte`` on "abc") is false and carries
  its error; a tree that is malformed (unknown operator, ``between`` with three bounds) does
  not match and says where (:attr:`Evaluation.error`). Every leaf is evaluated, no
  short-circuit, because the dry-run and the decision log show each leaf with its actual
  value; a realistic 10-leaf tree takes ~50 µs prepared, ~120 µs raw, on one core of the
  2-core dev box (bench/bench_conditions.py: ~20k and ~8.5k evaluations/s).
* :func:`check` runs at ``haste validate``/deploy and returns every problem with the JSON
  pointer of the member to fix, including type mismatches against the field's declared type.

Null and missing (a path that does not resolve) are both "no value": comparisons and
pattern ops on them are false, ``eq null`` is true, ``exists`` tells them apart. Negated
operators (``neq``, ``not_in``, ``not_contains``, ``is_not_empty``) are the exact negation
of their positive twin, so ``not_contains`` on null is true. The full table is in
docs/conditions.md and is tested row by row.

Regexes use google-re2 (linear time, no backreferences): a Python ``re`` pattern from an
author could backtrack for minutes inside the listener. Rejected: short-circuit evaluation
(faster by a few microseconds but the trace would lose leaves), three-valued logic for
errors (SQL-style UNKNOWN is harder to explain than "an errored leaf is false").
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from functools import lru_cache
from types import MappingProxyType
from typing import Any
from uuid import UUID

import re2

from engine.values import (
    DURATION_UNITS,
    TYPE_KINDS,
    CoercionError,
    Kind,
    coerce,
    compare,
    comparison_kind,
    day_in,
    describe,
    equal,
    is_day,
    is_mapping,
    is_number,
    is_temporal,
    json_safe,
    parse_duration,
    shift,
    to_array,
    to_day,
    to_decimal,
    to_instant,
    to_text,
    type_name,
    zone,
)

MAX_DEPTH = 32
"""Deepest nesting of all/any/not; deeper trees are refused, not recursed into."""

MAX_LEAVES = 500
"""Most leaves in one tree; a bigger tree is a generated mistake, not a filter."""

MAX_PATTERN_CHARS = 1_000
"""Longest regex accepted by ``matches``."""

MAX_FIELD_CHARS = 200
"""Longest field path accepted."""

REGEX_MAX_MEM = 8 << 20
"""Memory budget of one compiled re2 program (bytes); bigger patterns are refused."""

FIELD_TYPES: tuple[str, ...] = (
    "string",
    "number",
    "decimal",
    "timestamp",
    "date",
    "boolean",
    "array",
    "json",
    "uuid",
)
"""What a ``field_type`` callback may answer for a path."""

LEAF_TYPES: tuple[str, ...] = tuple(TYPE_KINDS)
"""What an author may force with ``"type"`` on a leaf."""

LEAF_KEYS: frozenset[str] = frozenset(
    {"field", "op", "value", "type", "timezone", "case_insensitive"}
)
"""Every key a leaf may have; anything else is rejected, not ignored."""

LENGTH_OPS: tuple[str, ...] = ("eq", "neq", "gt", "gte", "lt", "lte")
"""Comparisons allowed inside a ``length`` value (``{"gte": 3}``)."""

# Error codes of EvaluationError.code: callers (decision log, dry-run) may switch on them.
MALFORMED = "malformed"
UNKNOWN_OPERATOR = "unknown_operator"
BAD_VALUE = "bad_value"
INVALID_REGEX = "invalid_regex"
INVALID_TIMEZONE = "invalid_timezone"
TYPE_MISMATCH = "type_mismatch"
TOO_BIG = "too_big"
INTERNAL = "internal"

_ALL = frozenset(FIELD_TYPES)
_ORDERED_FIELDS = frozenset({"number", "decimal", "timestamp", "date", "string", "json"})
_TEMPORAL_FIELDS = frozenset({"timestamp", "date", "json"})
_TEXT_FIELDS = frozenset({"string", "json"})
_LIST_FIELDS = frozenset({"array", "json"})
_COMPARE_OPTIONS = frozenset({"type", "timezone", "case_insensitive"})
_DATE_OPTIONS = frozenset({"type", "timezone"})


# --- the operator table ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OperatorSpec:
    """One operator: what its ``value`` looks like, which field types it applies to,
    which options it takes. Pure data so schema and docs can be generated from it.

    ``value`` shapes: ``none`` (no value), ``any`` (any JSON value, null included),
    ``ordered`` (number or string), ``range`` ([low, high]), ``list`` (array of values),
    ``element`` (one value to look for), ``text`` (string), ``pattern`` (re2 regex),
    ``instant`` (ISO-8601 date or timestamp), ``duration`` (``{"days": 3}``),
    ``length`` (``{"gte": 3}``).
    """

    name: str
    value: str
    field_types: frozenset[str]
    options: frozenset[str]
    forced_types: frozenset[str]
    summary: str
    example: Mapping[str, Any]

    @property
    def takes_value(self) -> bool:
        return self.value != "none"


def _spec(
    name: str,
    value: str,
    field_types: frozenset[str],
    summary: str,
    example: dict[str, Any],
    options: frozenset[str] = frozenset(),
    forced_types: frozenset[str] | None = None,
) -> OperatorSpec:
    forced = forced_types if forced_types is not None else frozenset(LEAF_TYPES)
    if "type" not in options:
        forced = frozenset()
    return OperatorSpec(
        name, value, field_types, options, forced, summary, MappingProxyType(example)
    )


_SPECS: tuple[OperatorSpec, ...] = (
    _spec(
        "eq",
        "any",
        _ALL,
        "equal to the value (typed; null equals only null/missing)",
        {"field": "contact.status", "op": "eq", "value": "customer"},
        _COMPARE_OPTIONS,
    ),
    _spec(
        "neq",
        "any",
        _ALL,
        "not eq",
        {"field": "deal.stage", "op": "neq", "value": "lost"},
        _COMPARE_OPTIONS,
    ),
    _spec(
        "in",
        "list",
        _ALL - {"array"},
        "equal to one of the values (null in the list matches null/missing)",
        {"field": "contact.country", "op": "in", "value": ["DE", "AT", "CH"]},
        _COMPARE_OPTIONS,
    ),
    _spec(
        "not_in",
        "list",
        _ALL - {"array"},
        "not in",
        {"field": "deal.stage", "op": "not_in", "value": ["won", "lost"]},
        _COMPARE_OPTIONS,
    ),
    _spec(
        "contains",
        "element",
        frozenset({"string", "array", "json"}),
        "substring of a string, or member of an array",
        {"field": "contact.tags", "op": "contains", "value": "vip"},
        frozenset({"type", "case_insensitive"}),
        frozenset({"string", "array"}),
    ),
    _spec(
        "not_contains",
        "element",
        frozenset({"string", "array", "json"}),
        "not contains",
        {"field": "email.subject", "op": "not_contains", "value": "unsubscribe"},
        frozenset({"type", "case_insensitive"}),
        frozenset({"string", "array"}),
    ),
    _spec(
        "starts_with",
        "text",
        _TEXT_FIELDS | {"uuid"},
        "string starts with the value",
        {"field": "contact.phone", "op": "starts_with", "value": "+49"},
        frozenset({"case_insensitive"}),
    ),
    _spec(
        "ends_with",
        "text",
        _TEXT_FIELDS | {"uuid"},
        "string ends with the value",
        {
            "field": "contact.email",
            "op": "ends_with",
            "value": "@example.com",
            "case_insensitive": True,
        },
        frozenset({"case_insensitive"}),
    ),
    _spec(
        "matches",
        "pattern",
        _TEXT_FIELDS | {"uuid"},
        "string matches the re2 regex anywhere (anchor with ^ and $)",
        {"field": "contact.email", "op": "matches", "value": "@(gmail|yahoo)\\.com$"},
        frozenset({"case_insensitive"}),
    ),
    _spec(
        "gt",
        "ordered",
        _ORDERED_FIELDS,
        "greater than",
        {"field": "contact.score", "op": "gt", "value": 50},
        _COMPARE_OPTIONS,
    ),
    _spec(
        "gte",
        "ordered",
        _ORDERED_FIELDS,
        "greater than or equal",
        {"field": "contact.score", "op": "gte", "value": 80},
        _COMPARE_OPTIONS,
    ),
    _spec(
        "lt",
        "ordered",
        _ORDERED_FIELDS,
        "less than",
        {"field": "deal.amount", "op": "lt", "value": "1000.00"},
        _COMPARE_OPTIONS,
    ),
    _spec(
        "lte",
        "ordered",
        _ORDERED_FIELDS,
        "less than or equal",
        {"field": "deal.probability", "op": "lte", "value": 20},
        _COMPARE_OPTIONS,
    ),
    _spec(
        "between",
        "range",
        _ORDERED_FIELDS,
        "low <= field <= high (both ends included)",
        {"field": "deal.amount", "op": "between", "value": [1000, "4999.99"]},
        _COMPARE_OPTIONS,
    ),
    _spec(
        "is_empty",
        "none",
        _ALL,
        'missing, null, "", [] or {}',
        {"field": "contact.phone", "op": "is_empty"},
    ),
    _spec(
        "is_not_empty",
        "none",
        _ALL,
        "not is_empty",
        {"field": "contact.email", "op": "is_not_empty"},
    ),
    _spec(
        "exists",
        "none",
        _ALL,
        "the path resolves to a key, even one holding null",
        {"field": "trigger.utm_source", "op": "exists"},
    ),
    _spec(
        "changed",
        "none",
        _ALL,
        "the column is in `previous` (nested paths: and the sub-value differs)",
        {"field": "contact.score", "op": "changed"},
    ),
    _spec(
        "changed_from",
        "any",
        _ALL,
        "changed, and the old value eq the value",
        {"field": "deal.stage", "op": "changed_from", "value": "negotiation"},
        _COMPARE_OPTIONS,
    ),
    _spec(
        "changed_to",
        "any",
        _ALL,
        "changed, and the new value eq the value",
        {"field": "deal.stage", "op": "changed_to", "value": "won"},
        _COMPARE_OPTIONS,
    ),
    _spec(
        "before",
        "instant",
        _TEMPORAL_FIELDS,
        "earlier than the date/timestamp",
        {"field": "contact.created_at", "op": "before", "value": "2026-01-01"},
        _DATE_OPTIONS,
        frozenset({"timestamp", "date"}),
    ),
    _spec(
        "after",
        "instant",
        _TEMPORAL_FIELDS,
        "later than the date/timestamp",
        {"field": "deal.updated_at", "op": "after", "value": "2026-11-01T09:00:00+01:00"},
        _DATE_OPTIONS,
        frozenset({"timestamp", "date"}),
    ),
    _spec(
        "within_last",
        "duration",
        _TEMPORAL_FIELDS,
        "between now minus the duration and now (inclusive)",
        {"field": "contact.last_contacted_at", "op": "within_last", "value": {"days": 3}},
        _DATE_OPTIONS,
        frozenset({"timestamp", "date"}),
    ),
    _spec(
        "within_next",
        "duration",
        _TEMPORAL_FIELDS,
        "between now and now plus the duration (inclusive)",
        {"field": "task.due_date", "op": "within_next", "value": {"days": 2}},
        _DATE_OPTIONS,
        frozenset({"timestamp", "date"}),
    ),
    _spec(
        "is_today",
        "none",
        _TEMPORAL_FIELDS,
        "falls on today's calendar day in the zone",
        {"field": "task.due_date", "op": "is_today", "timezone": "Europe/Berlin"},
        _DATE_OPTIONS,
        frozenset({"timestamp", "date"}),
    ),
    _spec(
        "in_past",
        "none",
        _TEMPORAL_FIELDS,
        "before now (a date: before today)",
        {"field": "deal.expected_close_date", "op": "in_past"},
        _DATE_OPTIONS,
        frozenset({"timestamp", "date"}),
    ),
    _spec(
        "in_future",
        "none",
        _TEMPORAL_FIELDS,
        "after now (a date: after today)",
        {"field": "task.due_date", "op": "in_future"},
        _DATE_OPTIONS,
        frozenset({"timestamp", "date"}),
    ),
    _spec(
        "has_any",
        "list",
        _LIST_FIELDS,
        "the array holds at least one of the values",
        {"field": "contact.tags", "op": "has_any", "value": ["vip", "partner"]},
        frozenset({"case_insensitive"}),
    ),
    _spec(
        "has_all",
        "list",
        _LIST_FIELDS,
        "the array holds every one of the values",
        {"field": "contact.tags", "op": "has_all", "value": ["lead", "newsletter"]},
        frozenset({"case_insensitive"}),
    ),
    _spec(
        "length",
        "length",
        frozenset({"string", "array", "json"}),
        "length of a string/array (key count of an object) passes every comparison",
        {"field": "contact.tags", "op": "length", "value": {"gte": 3}},
    ),
)

OPERATORS: Mapping[str, OperatorSpec] = MappingProxyType({s.name: s for s in _SPECS})
"""Every operator by name; the one table evaluator, checker, schema and docs share."""

_NULLABLE_VALUE = frozenset({"eq", "neq", "changed_from", "changed_to"})
_CHANGE_OPS = frozenset({"changed", "changed_from", "changed_to"})
_HINTS: Mapping[tuple[str, str], str] = {
    ("in", "array"): "; use has_any",
    ("not_in", "array"): "; use not with has_any",
    ("before", "string"): '; add "type": "timestamp" if the text holds ISO-8601 timestamps',
    ("after", "string"): '; add "type": "timestamp" if the text holds ISO-8601 timestamps',
}


# --- results -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EvaluationError:
    """Why a tree (or one leaf) could not be evaluated as written; ``code`` is one of the
    module's error-code constants, ``pointer`` the JSON pointer inside the tree."""

    pointer: str
    code: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"pointer": self.pointer, "code": self.code, "message": self.message}


@dataclass(frozen=True, slots=True)
class LeafResult:
    """One leaf as evaluated: what it asked, what the context held, the verdict.

    ``actual`` is JSON-safe (Decimal as text, instants as ISO-8601, long strings cut);
    ``present`` tells a missing path from a JSON null. For ``changed*`` operators
    ``actual`` is ``{"changed": bool, "from": old, "to": new}``.
    """

    pointer: str
    field: str | None
    op: str | None
    expected: Any
    actual: Any
    present: bool
    result: bool
    error: EvaluationError | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "pointer": self.pointer,
            "field": self.field,
            "op": self.op,
            "expected": self.expected,
            "actual": self.actual,
            "present": self.present,
            "result": self.result,
            "error": self.error.as_dict() if self.error else None,
        }


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The verdict on a tree and the trace behind it.

    ``error`` is set when the tree is malformed (then ``matched`` is false whatever the
    leaves say); runtime data errors live on their leaves only. ``decisive`` is the pointer
    of the leaf that decided the verdict (see :func:`first_failing_leaf`); ``now`` the
    instant relative date operators used.
    """

    matched: bool
    leaves: list[LeafResult] = field(default_factory=list)
    error: EvaluationError | None = None
    decisive: str | None = None
    now: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "matched": self.matched,
            "leaves": [leaf.as_dict() for leaf in self.leaves],
            "error": self.error.as_dict() if self.error else None,
            "decisive": self.decisive,
            "now": self.now,
        }


@dataclass(frozen=True, slots=True)
class Problem:
    """A static-validation finding: the JSON pointer of the member to fix and why."""

    pointer: str
    message: str


class ConditionError(Exception):
    """A leaf that cannot be evaluated; becomes a :class:`EvaluationError` on the trace.
    Internal to evaluation: :func:`evaluate` never lets it escape."""

    def __init__(self, code: str, message: str, member: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.member = member


def first_failing_leaf(evaluation: Evaluation) -> LeafResult | None:
    """The leaf to name in "filtered: ..." decision logs, or None when the tree matched
    (or failed with no leaf to blame, e.g. ``{"any": []}``).

    It is the first false leaf down the path that decided the verdict: for ``all`` the
    first false member, for ``any`` (all members false) the first. Under a ``not`` the
    blamed leaf's own result is true (that is why the ``not`` failed).
    """
    if evaluation.matched or evaluation.decisive is None:
        return None
    for leaf in evaluation.leaves:
        if leaf.pointer == evaluation.decisive:
            return leaf
    return None


# --- leaf parsing (shared by evaluate and check) ------------------------------------------


@dataclass(frozen=True, slots=True)
class _Defect:
    member: str
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class _Leaf:
    field: str
    path: tuple[str, ...]
    op: str
    spec: OperatorSpec
    value: Any
    arg: Any
    type_name: str | None
    kind: Kind | None
    tz: tzinfo | None
    ci: bool
    expected: Any


def _member(key: str) -> str:
    return "/" + key.replace("~", "~0").replace("/", "~1")


@lru_cache(maxsize=512)
def _regex(pattern: str, case_insensitive: bool) -> Any:
    options = re2.Options()
    options.log_errors = False
    options.case_sensitive = not case_insensitive
    options.max_mem = REGEX_MAX_MEM
    return re2.compile(pattern, options)


def _regex_error(exc: Exception) -> str:
    raw = exc.args[0] if exc.args else str(exc)
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


def _split_field(raw: Any) -> tuple[str, ...] | None:
    if not isinstance(raw, str) or not raw or len(raw) > MAX_FIELD_CHARS:
        return None
    path = tuple(raw.split("."))
    return path if all(path) else None


def _parse_leaf(node: Mapping[str, Any]) -> tuple[_Leaf | None, list[_Defect]]:
    """Validate a leaf's shape and prepare its value; every defect, in member order."""
    defects: list[_Defect] = []
    raw_field = node.get("field")
    path = _split_field(raw_field)
    if "field" not in node:
        defects.append(
            _Defect(
                "",
                MALFORMED,
                "a condition needs 'field' and 'op' (or is a group: 'all', 'any', 'not')",
            )
        )
    elif path is None:
        defects.append(
            _Defect(
                "/field",
                MALFORMED,
                f"'field' is a dotted path like 'contact.score', got {describe(raw_field)}",
            )
        )
    op = node.get("op")
    spec = OPERATORS.get(op) if isinstance(op, str) else None
    if "op" not in node:
        if "field" in node:
            defects.append(_Defect("", MALFORMED, "a condition needs 'op'"))
    elif spec is None:
        close = difflib.get_close_matches(str(op), list(OPERATORS), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        defects.append(_Defect("/op", UNKNOWN_OPERATOR, f"unknown operator {describe(op)}{hint}"))
    for key in node:
        if key not in LEAF_KEYS:
            defects.append(
                _Defect(
                    _member(str(key)),
                    MALFORMED,
                    f"unknown option "
                    f"{describe(str(key))}; a condition takes "
                    f"{', '.join(sorted(LEAF_KEYS))}",
                )
            )
    if spec is None:
        return None, defects
    if path is not None and spec.name in _CHANGE_OPS and len(path) < 2:
        defects.append(
            _Defect("/field", MALFORMED, f"'{spec.name}' needs a column path like 'contact.score'")
        )
    type_name_, kind, tz, ci = _parse_options(node, spec, defects)
    arg: Any = None
    has_value = "value" in node
    if not spec.takes_value and has_value:
        defects.append(_Defect("/value", BAD_VALUE, f"'{spec.name}' takes no value"))
    elif spec.takes_value and not has_value:
        defects.append(_Defect("", BAD_VALUE, f"'{spec.name}' needs a value"))
    elif has_value:
        try:
            arg = _prepare_value(spec, node["value"], kind, type_name_ or "", ci)
        except ConditionError as exc:
            defects.append(_Defect("/value" + exc.member, exc.code, exc.message))
    if defects or path is None:
        return None, defects
    value = node.get("value")
    leaf = _Leaf(
        str(raw_field),
        path,
        spec.name,
        spec,
        value,
        arg,
        type_name_,
        kind,
        tz,
        ci,
        json_safe(value),
    )
    return leaf, defects


def _parse_options(
    node: Mapping[str, Any], spec: OperatorSpec, defects: list[_Defect]
) -> tuple[str | None, Kind | None, tzinfo | None, bool]:
    for option in ("type", "timezone", "case_insensitive"):
        if option in node and option not in spec.options:
            defects.append(
                _Defect(f"/{option}", MALFORMED, f"'{spec.name}' does not take '{option}'")
            )
    type_name_ = node.get("type") if "type" in spec.options else None
    kind: Kind | None = None
    if type_name_ is not None:
        if not isinstance(type_name_, str) or type_name_ not in spec.forced_types:
            allowed = ", ".join(t for t in LEAF_TYPES if t in spec.forced_types)
            defects.append(
                _Defect(
                    "/type",
                    MALFORMED,
                    f"'type' of '{spec.name}' is one of {allowed}, got {describe(type_name_)}",
                )
            )
            type_name_ = None
        else:
            kind = TYPE_KINDS[type_name_]
    tz: tzinfo | None = None
    if "timezone" in spec.options and node.get("timezone") is not None:
        try:
            tz = zone(node["timezone"])
        except CoercionError as exc:
            defects.append(_Defect("/timezone", INVALID_TIMEZONE, str(exc)))
    ci = node.get("case_insensitive", False) if "case_insensitive" in spec.options else False
    if not isinstance(ci, bool):
        defects.append(
            _Defect(
                "/case_insensitive",
                MALFORMED,
                f"'case_insensitive' is true or false, got {describe(ci)}",
            )
        )
        ci = False
    return type_name_, kind, tz, ci


def _bad(message: str, member: str = "", code: str = BAD_VALUE) -> ConditionError:
    return ConditionError(code, message, member)


def _check_forced(value: Any, kind: Kind | None, type_name_: str, member: str = "") -> None:
    if kind is None or value is None:
        return
    try:
        coerce(value, kind, UTC)
    except CoercionError as exc:
        raise _bad(f"{exc} (type: {type_name_})", member) from exc


def _is_ordered_value(value: Any) -> bool:
    return is_number(value) or isinstance(value, str) or is_temporal(value)


def _prepare_value(spec: OperatorSpec, value: Any, kind: Kind | None, forced: str, ci: bool) -> Any:
    """Check a leaf's value against its operator's shape; return what evaluation needs."""
    shape, name = spec.value, spec.name
    if shape == "any":
        _check_forced(value, kind, forced)
        return value
    if shape == "element":
        if isinstance(value, list) or is_mapping(value):
            raise _bad(f"'{name}' looks for one value, got {describe(value)}")
        return value
    if shape == "ordered":
        if not _is_ordered_value(value):
            raise _bad(
                f"'{name}' needs a number, a string or an ISO-8601 date/timestamp, "
                f"got {describe(value)}"
            )
        _check_forced(value, kind, forced)
        return value
    if shape == "range":
        if not isinstance(value, list) or len(value) != 2:
            raise _bad(f"'{name}' needs [low, high], got {describe(value)}")
        for i, bound in enumerate(value):
            if not _is_ordered_value(bound):
                raise _bad(
                    f"'{name}' bounds are numbers, strings or ISO-8601 dates, got "
                    f"{describe(bound)}",
                    f"/{i}",
                )
            _check_forced(bound, kind, forced, f"/{i}")
        return tuple(value)
    if shape == "list":
        if not isinstance(value, list):
            raise _bad(f"'{name}' needs an array of values, got {describe(value)}")
        for i, item in enumerate(value):
            _check_forced(item, kind, forced, f"/{i}")
        return value
    if shape == "text":
        if not isinstance(value, str):
            raise _bad(f"'{name}' needs a string, got {describe(value)}")
        return value.casefold() if ci else value
    if shape == "pattern":
        if not isinstance(value, str):
            raise _bad(f"'{name}' needs a regex string, got {describe(value)}")
        if len(value) > MAX_PATTERN_CHARS:
            raise _bad(f"regex is longer than {MAX_PATTERN_CHARS} characters", code=INVALID_REGEX)
        try:
            return _regex(value, ci)
        except (re2.error, UnicodeError, TypeError, ValueError) as exc:
            raise _bad(f"invalid regex: {_regex_error(exc)}", code=INVALID_REGEX) from exc
    if shape == "instant":
        try:
            if not is_temporal(value):
                raise CoercionError("")
            to_instant(value, UTC)
        except CoercionError as exc:
            raise _bad(
                f"'{name}' needs an ISO-8601 date or timestamp, got {describe(value)}"
            ) from exc
        return value
    if shape == "duration":
        try:
            return parse_duration(value)
        except CoercionError as exc:
            raise _bad(str(exc)) from exc
    if shape == "length":
        return _prepare_length(value)
    raise AssertionError(f"unknown value shape {shape}")  # pragma: no cover - table bug


def _prepare_length(value: Any) -> tuple[tuple[str, int], ...]:
    if not is_mapping(value) or not value:
        raise _bad(f"'length' needs comparisons like {{\"gte\": 3}}, got {describe(value)}")
    checks = []
    for key, bound in value.items():
        if key not in LENGTH_OPS:
            raise _bad(
                f"unknown length comparison {describe(key)}; use {', '.join(LENGTH_OPS)}",
                _member(str(key)),
            )
        if isinstance(bound, bool) or not isinstance(bound, int) or bound < 0:
            raise _bad(f"a length is a whole number >= 0, got {describe(bound)}", _member(str(key)))
        checks.append((key, bound))
    return tuple(checks)


# --- tree structure (shared) ----------------------------------------------------------------


def _is_always_true(tree: Any) -> bool:
    return tree is None or ((isinstance(tree, list) or is_mapping(tree)) and len(tree) == 0)


def _classify(node: Any, *, top: bool) -> tuple[str, Any]:
    """("all"|"any", children) / ("not", child) / ("leaf", node); raises ConditionError
    (with the member to point at) for anything else."""
    if isinstance(node, list):
        if top:
            return "all", node
        raise _bad('a nested condition is an object; wrap a list in {"all": [...]}', code=MALFORMED)
    if not is_mapping(node):
        raise _bad(f"a condition is an object, got {type_name(node)}", code=MALFORMED)
    if not node:
        raise _bad("empty condition {}; remove it", code=MALFORMED)
    groups = [key for key in ("all", "any", "not") if key in node]
    if not groups:
        return "leaf", node
    if len(node) != 1:
        keys = ", ".join(sorted(str(k) for k in node))
        raise _bad(
            f"a group has exactly one key ('all', 'any' or 'not'), found {keys}", code=MALFORMED
        )
    key = groups[0]
    child = node[key]
    if key in ("all", "any") and not isinstance(child, list):
        raise _bad(
            f"'{key}' takes an array of conditions, got {type_name(child)}", f"/{key}", MALFORMED
        )
    if key == "not" and (not is_mapping(child) or not child):
        raise _bad("'not' takes one condition object", "/not", MALFORMED)
    return key, child


# --- evaluation ---------------------------------------------------------------------------

_MISSING: Any = object()


def resolve(context: Any, path: tuple[str, ...] | list[str]) -> tuple[bool, Any]:
    """(present, value) of a dotted path: objects by key, arrays by decimal index."""
    node = context
    for segment in path:
        if is_mapping(node):
            node = node.get(segment, _MISSING)
            if node is _MISSING:
                return False, None
        elif isinstance(node, list | tuple) and segment.isdecimal() and segment.isascii():
            index = int(segment)
            if index >= len(node):
                return False, None
            node = node[index]
        else:
            return False, None
    return True, node


@dataclass(frozen=True, slots=True)
class _Node:
    """A parsed tree node: ``all``/``any``/``not`` with children, a ``leaf``, or a
    ``broken`` node carrying its error and its (precomputed) trace entry."""

    kind: str
    pointer: str
    children: tuple[_Node, ...] = ()
    leaf: _Leaf | None = None
    broken: LeafResult | None = None


@dataclass(frozen=True, slots=True)
class PreparedCondition:
    """A tree parsed once (regexes compiled, values checked), ready to evaluate many
    times: the listener keeps one per deployed automation version. Immutable, so one
    instance may serve every thread."""

    root: _Node | None
    error: EvaluationError | None = None
    error_pointer: str | None = None


class _Preparing:
    __slots__ = ("error", "error_pointer", "leaves")

    def __init__(self) -> None:
        self.leaves = 0
        self.error: EvaluationError | None = None
        self.error_pointer: str | None = None


def prepare(tree: Any) -> PreparedCondition:
    """Parse ``tree`` once for repeated :func:`evaluate` calls; never raises (a malformed
    tree prepares into one that does not match and reports why)."""
    if isinstance(tree, PreparedCondition):
        return tree
    if _is_always_true(tree):
        return PreparedCondition(None)
    state = _Preparing()
    root = _prepare_node(tree, "", 0, state, top=True)
    return PreparedCondition(root, state.error, state.error_pointer)


def _prepare_node(
    node: Any, pointer: str, depth: int, state: _Preparing, *, top: bool = False
) -> _Node:
    if depth > MAX_DEPTH:
        return _broken(
            node,
            pointer,
            state,
            ConditionError(TOO_BIG, f"conditions nest deeper than {MAX_DEPTH} levels"),
        )
    try:
        key, child = _classify(node, top=top)
    except ConditionError as exc:
        return _broken(node, pointer, state, exc)
    if key == "leaf":
        state.leaves += 1
        if state.leaves > MAX_LEAVES:
            return _broken(
                child,
                pointer,
                state,
                ConditionError(TOO_BIG, f"a tree has at most {MAX_LEAVES} conditions"),
            )
        leaf, defects = _parse_leaf(child)
        if leaf is None:
            first = defects[0]
            return _broken(
                child, pointer, state, ConditionError(first.code, first.message, first.member)
            )
        return _Node("leaf", pointer, leaf=leaf)
    if key == "not":
        return _Node("not", pointer, (_prepare_node(child, f"{pointer}/not", depth + 1, state),))
    prefix = pointer if top and isinstance(node, list) else f"{pointer}/{key}"
    children = tuple(
        _prepare_node(item, f"{prefix}/{i}", depth + 1, state) for i, item in enumerate(child)
    )
    return _Node(key, pointer, children)


def _broken(node: Any, pointer: str, state: _Preparing, exc: ConditionError) -> _Node:
    error = EvaluationError(pointer + exc.member, exc.code, exc.message)
    if state.error is None:
        state.error, state.error_pointer = error, pointer
    fields = node if is_mapping(node) else {}
    raw_field, raw_op = fields.get("field"), fields.get("op")
    trace = LeafResult(
        pointer,
        raw_field if isinstance(raw_field, str) else None,
        raw_op if isinstance(raw_op, str) else None,
        json_safe(fields.get("value")),
        None,
        False,
        False,
        error,
    )
    return _Node("broken", pointer, broken=trace)


class _Run:
    """Per-evaluation state: the context, the trace, lazily resolved now and zone."""

    __slots__ = ("_now", "_zone", "context", "leaves", "now_arg")

    def __init__(self, context: Any, now: datetime | None) -> None:
        self.context = context
        self.leaves: list[LeafResult] = []
        self.now_arg = now
        self._now: datetime | ConditionError | None = None
        self._zone: tzinfo | ConditionError | None = None

    def now(self) -> datetime:
        if self._now is None:
            self._now = self._resolve_now()
        if isinstance(self._now, ConditionError):
            raise self._now
        return self._now

    def _resolve_now(self) -> datetime | ConditionError:
        if isinstance(self.now_arg, datetime):
            moment = self.now_arg
            return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
        present, raw = resolve(self.context, ("now",))
        if not present or raw is None:
            return datetime.now(UTC)
        try:
            return to_instant(raw, UTC)
        except CoercionError as exc:
            return ConditionError(TYPE_MISMATCH, f"context 'now' is not a timestamp: {exc}")

    def now_text(self) -> str | None:
        return self._now.isoformat() if isinstance(self._now, datetime) else None

    def zone(self, leaf: _Leaf) -> tzinfo:
        """The leaf's zone, else the workspace's, else UTC."""
        if leaf.tz is not None:
            return leaf.tz
        if self._zone is None:
            present, name = resolve(self.context, ("workspace", "timezone"))
            try:
                self._zone = zone(name) if present and name is not None else UTC
            except CoercionError as exc:
                self._zone = ConditionError(INVALID_TIMEZONE, f"workspace {exc}")
        if isinstance(self._zone, ConditionError):
            raise self._zone
        return self._zone


def evaluate(tree: Any, context: Any, *, now: datetime | None = None) -> Evaluation:
    """Evaluate ``tree`` (raw JSON, or the result of :func:`prepare`) on ``context``;
    never raises (see the module docstring).

    ``now`` overrides ``context["now"]`` (which overrides the clock) for relative date
    operators, so dry-runs and tests are reproducible.
    """
    run = _Run(context, now)
    try:
        prepared = prepare(tree)
        if prepared.root is None:
            return Evaluation(True)
        matched, decisive = _run_node(prepared.root, run)
    except Exception as exc:  # the contract is "never raises"; tests assert this is unused
        error = EvaluationError("", INTERNAL, f"{type(exc).__name__}: {exc}")
        return Evaluation(False, run.leaves, error, None, run.now_text())
    if prepared.error is not None:
        return Evaluation(False, run.leaves, prepared.error, prepared.error_pointer, run.now_text())
    return Evaluation(matched, run.leaves, None, decisive, run.now_text())


def _run_node(node: _Node, run: _Run) -> tuple[bool, str | None]:
    """(result, pointer of the decisive leaf)."""
    kind = node.kind
    if kind == "leaf":
        return _run_leaf(node.leaf, node.pointer, run)  # type: ignore[arg-type]
    if kind == "broken":
        run.leaves.append(node.broken)  # type: ignore[arg-type]
        return False, node.pointer
    if kind == "not":
        result, decisive = _run_node(node.children[0], run)
        return not result, decisive
    outcomes = [_run_node(child, run) for child in node.children]
    wanted = kind == "any"
    for result, decisive in outcomes:
        if result is wanted:
            return wanted, decisive
    return not wanted, outcomes[0][1] if outcomes else None


def _run_leaf(leaf: _Leaf, pointer: str, run: _Run) -> tuple[bool, str | None]:
    present, actual = resolve(run.context, leaf.path)
    error: EvaluationError | None = None
    try:
        result = _APPLY[leaf.op](leaf, present, actual, run)
    except ConditionError as exc:
        result = False
        error = EvaluationError(pointer, exc.code, f"'{leaf.op}' on '{leaf.field}': {exc.message}")
    except CoercionError as exc:
        result = False
        error = EvaluationError(pointer, TYPE_MISMATCH, f"'{leaf.op}' on '{leaf.field}': {exc}")
    if leaf.op in _CHANGE_OPS:
        trace_actual: Any = _change_trace(leaf, run)
    else:
        trace_actual = json_safe(actual) if present else None
    run.leaves.append(
        LeafResult(
            pointer,
            leaf.field,
            leaf.op,
            leaf.expected,
            trace_actual,
            present,
            result,
            error,
        )
    )
    return result, pointer


# --- operators ------------------------------------------------------------------------------


def _zone_for(leaf: _Leaf, kind: str, run: _Run) -> tzinfo:
    return run.zone(leaf) if kind in ("timestamp", "date") else UTC


def _same(leaf: _Leaf, actual: Any, expected: Any, run: _Run) -> bool:
    """Typed equality with the null rule: null/missing equals only null."""
    if actual is None or expected is None:
        return actual is None and expected is None
    kind = leaf.kind or comparison_kind(actual, expected)
    return equal(actual, expected, kind, tz=_zone_for(leaf, kind, run), case_insensitive=leaf.ci)


def _order(leaf: _Leaf, actual: Any, expected: Any, run: _Run) -> int:
    kind = leaf.kind or comparison_kind(actual, expected, ordering=True)
    try:
        return compare(
            actual, expected, kind, tz=_zone_for(leaf, kind, run), case_insensitive=leaf.ci
        )
    except CoercionError as exc:
        raise ConditionError(
            TYPE_MISMATCH, f"cannot compare {describe(actual)} with {describe(expected)}: {exc}"
        ) from exc


def _eq(leaf: _Leaf, present: bool, actual: Any, run: _Run) -> bool:
    return _same(leaf, actual, leaf.arg, run)


def _in(leaf: _Leaf, present: bool, actual: Any, run: _Run) -> bool:
    if isinstance(actual, list | tuple):
        raise ConditionError(TYPE_MISMATCH, "the field holds an array; use has_any")
    return any(_same(leaf, actual, item, run) for item in leaf.arg)


def _contains(leaf: _Leaf, present: bool, actual: Any, run: _Run) -> bool:
    if actual is None:
        return False
    needle = leaf.arg
    if leaf.kind == "array" or (leaf.kind is None and isinstance(actual, list | tuple)):
        return any(_same(leaf, item, needle, run) for item in to_array(actual))
    if leaf.kind == "string" or isinstance(actual, str | UUID):
        text = to_text(actual)
        if not isinstance(needle, str):
            raise ConditionError(
                TYPE_MISMATCH, f"a string contains only strings, got {describe(needle)}"
            )
        if leaf.ci:
            return needle.casefold() in text.casefold()
        return needle in text
    raise ConditionError(TYPE_MISMATCH, f"needs a string or an array, got {type_name(actual)}")


def _text_of(actual: Any, leaf: _Leaf) -> str:
    try:
        text = to_text(actual)
    except CoercionError as exc:
        raise ConditionError(TYPE_MISMATCH, f"needs a string, got {type_name(actual)}") from exc
    return text.casefold() if leaf.ci else text


def _starts_with(leaf: _Leaf, present: bool, actual: Any, run: _Run) -> bool:
    return actual is not None and _text_of(actual, leaf).startswith(leaf.arg)


def _ends_with(leaf: _Leaf, present: bool, actual: Any, run: _Run) -> bool:
    return actual is not None and _text_of(actual, leaf).endswith(leaf.arg)


def _matches(leaf: _Leaf, present: bool, actual: Any, run: _Run) -> bool:
    if actual is None:
        return False
    try:
        text = to_text(actual)
    except CoercionError as exc:
        raise ConditionError(TYPE_MISMATCH, f"needs a string, got {type_name(actual)}") from exc
    try:
        return leaf.arg.search(text) is not None
    except UnicodeError:
        # re2 works on UTF-8; a lone surrogate (possible in Python-built contexts) is
        # not encodable, so match the text with it replaced.
        return leaf.arg.search(text.encode("utf-8", "replace").decode("utf-8")) is not None


def _ordering(test: Callable[[int], bool]) -> Callable[[_Leaf, bool, Any, _Run], bool]:
    def apply(leaf: _Leaf, present: bool, actual: Any, run: _Run) -> bool:
        return actual is not None and test(_order(leaf, actual, leaf.arg, run))

    return apply


def _between(leaf: _Leaf, present: bool, actual: Any, run: _Run) -> bool:
    if actual is None:
        return False
    low, high = leaf.arg
    return _order(leaf, actual, low, run) >= 0 and _order(leaf, actual, high, run) <= 0


def _is_empty(leaf: _Leaf, present: bool, actual: Any, run: _Run) -> bool:
    if actual is None:
        return True
    return (isinstance(actual, str | list | tuple) or is_mapping(actual)) and len(actual) == 0


def _exists(leaf: _Leaf, present: bool, actual: Any, run: _Run) -> bool:
    return present


def _change(leaf: _Leaf, run: _Run) -> tuple[bool, bool, Any, bool, Any]:
    """(changed, old present, old, new present, new) from ``previous``.

    ``previous.<record>`` holds old values of changed columns only, so a column key there
    means "changed". Below a column (``contact.custom_fields.tier``) the sub-values are
    compared, because the JSONB column changing does not mean this key did.
    """
    record, column = leaf.path[0], leaf.path[1]
    new_present, new = resolve(run.context, leaf.path)
    has_record, old_record = resolve(run.context, ("previous", record))
    if not has_record or not is_mapping(old_record) or column not in old_record:
        return False, False, None, new_present, new
    old_present, old = resolve(old_record, leaf.path[1:])
    if len(leaf.path) == 2:
        return True, old_present, old, new_present, new
    try:
        differs = old_present != new_present or not _same(leaf, old, new, run)
    except (CoercionError, ConditionError):
        differs = True
    return differs, old_present, old, new_present, new


def _changed(leaf: _Leaf, present: bool, actual: Any, run: _Run) -> bool:
    return _change(leaf, run)[0]


def _changed_from(leaf: _Leaf, present: bool, actual: Any, run: _Run) -> bool:
    changed, _, old, _, _ = _change(leaf, run)
    return changed and _same(leaf, old, leaf.arg, run)


def _changed_to(leaf: _Leaf, present: bool, actual: Any, run: _Run) -> bool:
    changed, _, _, _, new = _change(leaf, run)
    return changed and _same(leaf, new, leaf.arg, run)


def _change_trace(leaf: _Leaf, run: _Run) -> dict[str, Any]:
    try:
        changed, old_present, old, new_present, new = _change(leaf, run)
    except (CoercionError, ConditionError):
        return {"changed": None, "from": None, "to": None}
    return {
        "changed": changed,
        "from": json_safe(old) if old_present else None,
        "to": json_safe(new) if new_present else None,
    }


def _day_mode(leaf: _Leaf, *values: Any) -> bool:
    """Whether a date operator compares calendar days (a day on either side, or a forced
    ``type: date``) rather than instants."""
    if leaf.kind is not None:
        return leaf.kind == "date"
    return any(is_day(v) for v in values)


def _instant_or_day(leaf: _Leaf, actual: Any, run: _Run, *others: Any) -> tuple[Any, bool]:
    tz = run.zone(leaf)
    days = _day_mode(leaf, actual, *others)
    try:
        return (to_day(actual, tz) if days else to_instant(actual, tz)), days
    except CoercionError as exc:
        raise ConditionError(TYPE_MISMATCH, str(exc)) from exc


def _before(leaf: _Leaf, present: bool, actual: Any, run: _Run) -> bool:
    return actual is not None and _temporal_order(leaf, actual, run) < 0


def _after(leaf: _Leaf, present: bool, actual: Any, run: _Run) -> bool:
    return actual is not None and _temporal_order(leaf, actual, run) > 0


def _temporal_order(leaf: _Leaf, actual: Any, run: _Run) -> int:
    mine, days = _instant_or_day(leaf, actual, run, leaf.arg)
    tz = run.zone(leaf)
    other = to_day(leaf.arg, tz) if days else to_instant(leaf.arg, tz)
    return (mine > other) - (mine < other)


def _window(sign: int) -> Callable[[_Leaf, bool, Any, _Run], bool]:
    def apply(leaf: _Leaf, present: bool, actual: Any, run: _Run) -> bool:
        if actual is None:
            return False
        mine, days = _instant_or_day(leaf, actual, run)
        now, tz, duration = run.now(), run.zone(leaf), leaf.arg
        edge = shift(now, duration, sign, tz)
        low, high = (edge, now) if sign < 0 else (now, edge)
        if days:
            return day_in(low, tz) <= mine <= day_in(high, tz)
        return bool(low <= mine <= high)

    return apply


def _relative(test: Callable[[int], bool]) -> Callable[[_Leaf, bool, Any, _Run], bool]:
    """is_today / in_past / in_future: the sign of (value - now), by day or by instant."""

    def apply(leaf: _Leaf, present: bool, actual: Any, run: _Run) -> bool:
        if actual is None:
            return False
        now, tz = run.now(), run.zone(leaf)
        mine, days = _instant_or_day(leaf, actual, run)
        ref = day_in(now, tz) if days else now
        return test((mine > ref) - (mine < ref))

    return apply


def _is_today(leaf: _Leaf, present: bool, actual: Any, run: _Run) -> bool:
    if actual is None:
        return False
    tz = run.zone(leaf)
    try:
        return to_day(actual, tz) == day_in(run.now(), tz)
    except CoercionError as exc:
        raise ConditionError(TYPE_MISMATCH, str(exc)) from exc


def _array_of(actual: Any) -> list[Any]:
    try:
        return to_array(actual)
    except CoercionError as exc:
        raise ConditionError(TYPE_MISMATCH, f"needs an array, got {type_name(actual)}") from exc


def _has_any(leaf: _Leaf, present: bool, actual: Any, run: _Run) -> bool:
    if actual is None:
        return False
    items = _array_of(actual)
    return any(_same(leaf, item, wanted, run) for wanted in leaf.arg for item in items)


def _has_all(leaf: _Leaf, present: bool, actual: Any, run: _Run) -> bool:
    if actual is None:
        return False
    items = _array_of(actual)
    return all(any(_same(leaf, item, wanted, run) for item in items) for wanted in leaf.arg)


_LENGTH_TESTS: Mapping[str, Callable[[int, int], bool]] = {
    "eq": lambda a, b: a == b,
    "neq": lambda a, b: a != b,
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
}


def _length(leaf: _Leaf, present: bool, actual: Any, run: _Run) -> bool:
    if actual is None:
        return False
    if not (isinstance(actual, str | list | tuple) or is_mapping(actual)):
        raise ConditionError(
            TYPE_MISMATCH, f"needs a string, an array or an object, got {type_name(actual)}"
        )
    size = len(actual)
    return all(_LENGTH_TESTS[key](size, bound) for key, bound in leaf.arg)


def _negate(
    positive: Callable[[_Leaf, bool, Any, _Run], bool],
) -> Callable[[_Leaf, bool, Any, _Run], bool]:
    def apply(leaf: _Leaf, present: bool, actual: Any, run: _Run) -> bool:
        return not positive(leaf, present, actual, run)

    return apply


_APPLY: Mapping[str, Callable[[_Leaf, bool, Any, _Run], bool]] = {
    "eq": _eq,
    "neq": _negate(_eq),
    "in": _in,
    "not_in": _negate(_in),
    "contains": _contains,
    "not_contains": _negate(_contains),
    "starts_with": _starts_with,
    "ends_with": _ends_with,
    "matches": _matches,
    "gt": _ordering(lambda c: c > 0),
    "gte": _ordering(lambda c: c >= 0),
    "lt": _ordering(lambda c: c < 0),
    "lte": _ordering(lambda c: c <= 0),
    "between": _between,
    "is_empty": _is_empty,
    "is_not_empty": _negate(_is_empty),
    "exists": _exists,
    "changed": _changed,
    "changed_from": _changed_from,
    "changed_to": _changed_to,
    "before": _before,
    "after": _after,
    "within_last": _window(-1),
    "within_next": _window(1),
    "is_today": _is_today,
    "in_past": _relative(lambda c: c < 0),
    "in_future": _relative(lambda c: c > 0),
    "has_any": _has_any,
    "has_all": _has_all,
    "length": _length,
}
assert set(_APPLY) == set(OPERATORS), "every operator needs an implementation"


# --- static validation --------------------------------------------------------------------

_NOUNS: Mapping[str, str] = {
    "number": "a number",
    "decimal": "a number",
    "timestamp": "an ISO-8601 timestamp or date",
    "date": "an ISO-8601 date",
    "boolean": "true or false",
    "string": "a string",
    "uuid": "a UUID",
    "array": "an array",
}
_FAMILY: Mapping[str, str] = {
    "number": "number",
    "decimal": "number",
    "timestamp": "time",
    "date": "time",
}
_RETYPEABLE = frozenset({"json", "string"})


def _fits(field_type: str, value: Any) -> bool:
    """Whether an author's value can be compared with a field of ``field_type``."""
    try:
        if field_type in ("number", "decimal"):
            to_decimal(value)
        elif field_type in ("timestamp", "date"):
            if not is_temporal(value):
                return False
            to_instant(value, UTC)
        elif field_type == "boolean":
            return isinstance(value, bool)
        elif field_type == "string":
            return isinstance(value, str)
        elif field_type == "uuid":
            return isinstance(value, UUID) or (isinstance(value, str) and bool(UUID(value)))
        elif field_type == "array":
            return isinstance(value, list)
    except (CoercionError, ValueError):
        return False
    return True


def check(
    tree: Any,
    field_type: Callable[[str], str | None],
    *,
    base_pointer: str = "/conditions",
) -> list[Problem]:
    """Every problem in ``tree``, each at the JSON pointer of the member to fix.

    ``field_type(path)`` answers the declared type of a path (one of :data:`FIELD_TYPES`)
    or None when unknown; unknown paths are the caller's to report (it has suggestions),
    here they only skip type checks.
    """
    problems: list[Problem] = []
    if _is_always_true(tree):
        return problems
    counter = [0]
    _check_node(tree, base_pointer, 0, field_type, problems, counter, top=True)
    return problems


def _check_node(
    node: Any,
    pointer: str,
    depth: int,
    field_type: Callable[[str], str | None],
    problems: list[Problem],
    counter: list[int],
    *,
    top: bool = False,
) -> None:
    if depth > MAX_DEPTH:
        problems.append(Problem(pointer, f"conditions nest deeper than {MAX_DEPTH} levels"))
        return
    try:
        key, child = _classify(node, top=top)
    except ConditionError as exc:
        problems.append(Problem(pointer + exc.member, exc.message))
        return
    if key == "leaf":
        counter[0] += 1
        if counter[0] == MAX_LEAVES + 1:
            problems.append(Problem(pointer, f"a tree has at most {MAX_LEAVES} conditions"))
        _check_leaf(child, pointer, field_type, problems)
        return
    if key == "not":
        _check_node(child, f"{pointer}/not", depth + 1, field_type, problems, counter)
        return
    prefix = pointer if top and isinstance(node, list) else f"{pointer}/{key}"
    for i, item in enumerate(child):
        _check_node(item, f"{prefix}/{i}", depth + 1, field_type, problems, counter)


def _check_leaf(
    node: Mapping[str, Any],
    pointer: str,
    field_type: Callable[[str], str | None],
    problems: list[Problem],
) -> None:
    leaf, defects = _parse_leaf(node)
    problems.extend(Problem(pointer + d.member, d.message) for d in defects)
    if leaf is None:
        return
    declared = field_type(leaf.field)
    if declared is not None and declared not in FIELD_TYPES:
        declared = None
    effective = leaf.type_name or declared
    if (
        leaf.type_name
        and declared not in (None, *_RETYPEABLE)
        and (_FAMILY.get(declared, declared) != _FAMILY.get(leaf.type_name, leaf.type_name))
    ):
        problems.append(
            Problem(
                f"{pointer}/type",
                f"'{leaf.field}' is a {declared} field; 'type: {leaf.type_name}' cannot re-type it",
            )
        )
        return
    if effective is None or effective == "json":
        return
    spec = leaf.spec
    if effective not in spec.field_types:
        hint = _HINTS.get((spec.name, effective), "")
        problems.append(
            Problem(
                f"{pointer}/op",
                f"'{spec.name}' does not apply to {effective} field '{leaf.field}'{hint}",
            )
        )
        return
    problems.extend(_check_value_types(leaf, effective, pointer))


def _check_value_types(leaf: _Leaf, effective: str, pointer: str) -> Iterator[Problem]:
    spec, value = leaf.spec, leaf.value
    if spec.value in ("none", "duration", "length", "pattern", "text"):
        return
    if spec.value == "element":
        if effective == "string" and not isinstance(value, str):
            yield _type_problem(leaf, effective, value, f"{pointer}/value", "string")
        return
    if spec.value == "list":
        if spec.name in ("has_any", "has_all"):
            return
        for i, item in enumerate(value):
            if item is not None and not _fits(effective, item):
                yield _type_problem(leaf, effective, item, f"{pointer}/value/{i}")
        return
    if spec.value == "range":
        bad = False
        for i, bound in enumerate(value):
            if not _fits(effective, bound):
                bad = True
                yield _type_problem(leaf, effective, bound, f"{pointer}/value/{i}")
        if not bad and _is_inverted(leaf, effective):
            yield Problem(
                f"{pointer}/value",
                f"'between' low {describe(value[0])} is "
                f"greater than high {describe(value[1])}; nothing can match",
            )
        return
    if value is None and spec.name in _NULLABLE_VALUE:
        return
    if not _fits(effective, value):
        yield _type_problem(leaf, effective, value, f"{pointer}/value")


def _is_inverted(leaf: _Leaf, effective: str) -> bool:
    low, high = leaf.value
    kind = TYPE_KINDS.get(effective) if effective in TYPE_KINDS else None
    try:
        return compare(low, high, kind, tz=leaf.tz or UTC, case_insensitive=leaf.ci) > 0
    except CoercionError:
        return False


def _type_problem(
    leaf: _Leaf, effective: str, value: Any, pointer: str, noun_type: str | None = None
) -> Problem:
    noun = _NOUNS[noun_type or effective]
    return Problem(
        pointer,
        f"'{leaf.op}' on {effective} field '{leaf.field}' needs {noun}, got {describe(value)}",
    )


def field_paths(tree: Any, *, base_pointer: str = "") -> list[tuple[str, str]]:
    """(pointer of the leaf's ``field`` member, path) for every leaf with a string field,
    in document order; lenient about everything else (that is :func:`check`'s job)."""
    found: list[tuple[str, str]] = []

    def walk(node: Any, pointer: str, depth: int, top: bool) -> None:
        if depth > MAX_DEPTH or (top and _is_always_true(node)):
            return
        try:
            key, child = _classify(node, top=top)
        except ConditionError:
            return
        if key == "leaf":
            if isinstance(child.get("field"), str):
                found.append((f"{pointer}/field", child["field"]))
        elif key == "not":
            walk(child, f"{pointer}/not", depth + 1, False)
        else:
            prefix = pointer if top and isinstance(node, list) else f"{pointer}/{key}"
            for i, item in enumerate(child):
                walk(item, f"{prefix}/{i}", depth + 1, False)

    walk(tree, base_pointer, 0, True)
    return found


# --- JSON Schema ---------------------------------------------------------------------------

_ORDERED_SCHEMA: dict[str, Any] = {"type": ["number", "string"]}
_INT_AT_LEAST_0: dict[str, Any] = {"type": "integer", "minimum": 0}


def _value_schema(shape: str) -> dict[str, Any]:
    if shape == "any":
        return {}
    if shape == "element":
        return {"type": ["string", "number", "boolean", "null"]}
    if shape == "ordered":
        return dict(_ORDERED_SCHEMA)
    if shape == "range":
        return {
            "type": "array",
            "prefixItems": [_ORDERED_SCHEMA, _ORDERED_SCHEMA],
            "minItems": 2,
            "maxItems": 2,
        }
    if shape == "list":
        return {"type": "array"}
    if shape == "text":
        return {"type": "string"}
    if shape == "pattern":
        return {"type": "string", "maxLength": MAX_PATTERN_CHARS}
    if shape == "instant":
        return {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}"}
    if shape == "duration":
        return {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": False,
            "properties": {unit: _INT_AT_LEAST_0 for unit in DURATION_UNITS},
        }
    if shape == "length":
        return {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": False,
            "properties": {op: _INT_AT_LEAST_0 for op in LENGTH_OPS},
        }
    raise AssertionError(f"unknown value shape {shape}")  # pragma: no cover


def _leaf_schema(spec: OperatorSpec) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "field": {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_FIELD_CHARS,
            "pattern": r"^[^.]+(\.[^.]+)*$",
        },
        "op": {"const": spec.name},
    }
    required = ["field", "op"]
    if spec.takes_value:
        properties["value"] = _value_schema(spec.value)
        required.append("value")
    if "type" in spec.options:
        properties["type"] = {"enum": [t for t in LEAF_TYPES if t in spec.forced_types]}
    if "timezone" in spec.options:
        properties["timezone"] = {"type": "string", "examples": ["Europe/Berlin"]}
    if "case_insensitive" in spec.options:
        properties["case_insensitive"] = {"type": "boolean"}
    return {
        "type": "object",
        "description": spec.summary,
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


def condition_json_schema() -> dict[str, Any]:
    """JSON Schema (2020-12) of a condition tree, generated from :data:`OPERATORS`.

    It checks shape only; types against fields and regex/timezone validity are
    :func:`check`'s job.
    """
    ref = {"$ref": "#/$defs/condition"}
    leaves = {f"leaf_{s.name}": _leaf_schema(s) for s in _SPECS}
    defs: dict[str, Any] = {
        "condition": {
            "oneOf": [
                {
                    "type": "object",
                    "properties": {"all": {"type": "array", "items": ref}},
                    "required": ["all"],
                    "additionalProperties": False,
                },
                {
                    "type": "object",
                    "properties": {"any": {"type": "array", "items": ref}},
                    "required": ["any"],
                    "additionalProperties": False,
                },
                {
                    "type": "object",
                    "properties": {"not": ref},
                    "required": ["not"],
                    "additionalProperties": False,
                },
                {"$ref": "#/$defs/leaf"},
            ]
        },
        "leaf": {
            "type": "object",
            "required": ["field", "op"],
            "properties": {"op": {"enum": list(OPERATORS)}},
            "allOf": [
                {
                    "if": {"properties": {"op": {"const": s.name}}},
                    "then": {"$ref": f"#/$defs/leaf_{s.name}"},
                }
                for s in _SPECS
            ],
        },
        **leaves,
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "haste condition tree",
        "description": "null, [] and {} are always true; a list is all-of.",
        "oneOf": [
            {"type": "null"},
            {"type": "array", "items": ref},
            {"type": "object", "maxProperties": 0},
            ref,
        ],
        "$defs": defs,
    }
