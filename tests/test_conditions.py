"""Condition language: every operator, table-driven, including nulls, missing fields,
mixed types, exact decimals, timezones and DST. docs/conditions.md is the spec these
tables pin down."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import jsonschema
import pytest

from engine.conditions import (
    BAD_VALUE,
    INVALID_REGEX,
    INVALID_TIMEZONE,
    MALFORMED,
    MAX_DEPTH,
    OPERATORS,
    TOO_BIG,
    TYPE_MISMATCH,
    UNKNOWN_OPERATOR,
    Evaluation,
    PreparedCondition,
    check,
    condition_json_schema,
    evaluate,
    field_paths,
    first_failing_leaf,
    prepare,
)

OWNER = UUID("6f1c2b9e-0d6a-4c1e-9a53-3f0d2f6b7a10")

CONTEXT: dict[str, Any] = {
    "event": {
        "id": "e1",
        "type": "contact_updated",
        "entity_type": "contact",
        "entity_id": "c1",
        "changed_fields": ["score", "status", "custom_fields"],
    },
    "contact": {
        "score": 90,
        "first_name": "Ann",
        "email": "ann@example.com",
        "status": "customer",
        "tags": ["vip", "lead"],
        "phone": None,
        "nickname": "",
        "notes_list": [],
        "extra": {},
        "blank": " ",
        "zero": 0,
        "unsubscribed": False,
        "is_active": True,
        "ratio": 0.1 + 0.2,
        "owner_id": OWNER,
        "created_at": "2026-11-24T23:30:00+00:00",  # 00:30 on the 25th in Berlin
        "birthday": "1990-11-25",
        "custom_fields": {
            "tier": "gold",
            "amount": "1234.50",
            "active": "true",
            "seats": "10",
            "total": "0.30",
            "nps": [7, 9],
            "renewal": "2026-12-01",
        },
    },
    "previous": {
        "contact": {
            "score": 50,
            "status": None,
            "custom_fields": {
                "tier": "silver",
                "amount": "1234.50",
                "active": "true",
                "seats": "10",
                "total": "0.30",
                "nps": [7, 9],
                "renewal": "2026-12-01",
            },
        }
    },
    "deal": {
        "amount": Decimal("1234.50"),
        "stage": "won",
        "close_date": date(2026, 11, 25),
        "updated_at": datetime(2026, 11, 25, 9, 0, tzinfo=UTC),
    },
    "task": {"due_date": "2026-11-27", "done_date": "2026-11-20"},
    "trigger": {"utm_source": None, "items": [{"sku": "A"}]},
    "steps": {"s1": {"output": {"text": "hello world", "count": 3}}},
    "workspace": {"id": "w1", "slug": "acme", "timezone": "Europe/Berlin"},
    "now": "2026-11-25T12:00:00+00:00",
}

_NO_VALUE = object()


def leaf(field: str, op: str, value: Any = _NO_VALUE, **options: Any) -> dict[str, Any]:
    node: dict[str, Any] = {"field": field, "op": op, **options}
    if value is not _NO_VALUE:
        node["value"] = value
    return node


def run(tree: Any, context: Any = None, **kwargs: Any) -> Evaluation:
    return evaluate(tree, CONTEXT if context is None else context, **kwargs)


def assert_clean(evaluation: Evaluation, expected: bool) -> None:
    errors = [leaf.error for leaf in evaluation.leaves if leaf.error]
    assert evaluation.error is None and not errors, (evaluation.error, errors)
    assert evaluation.matched is expected


def case(id_: str, node: dict[str, Any], expected: bool) -> Any:
    return pytest.param(node, expected, id=id_)


# --- equality -------------------------------------------------------------------------

EQUALITY = [
    case("eq-number", leaf("contact.score", "eq", 90), True),
    case("eq-number-other", leaf("contact.score", "eq", 91), False),
    case("eq-number-vs-float-form", leaf("contact.score", "eq", 90.0), True),
    case("eq-number-vs-numeric-string", leaf("contact.score", "eq", "90"), True),
    case("eq-decimal-string-vs-number", leaf("contact.custom_fields.amount", "eq", 1234.5), True),
    case("eq-python-decimal-vs-string", leaf("deal.amount", "eq", "1234.5"), True),
    case("eq-float-sum-is-not-0.3", leaf("contact.ratio", "eq", 0.3), False),
    case(
        "eq-two-numeric-strings-compare-as-text",
        leaf("contact.custom_fields.total", "eq", "0.3"),
        False,
    ),
    case(
        "eq-numeric-strings-with-type-number",
        leaf("contact.custom_fields.total", "eq", "0.3", type="number"),
        True,
    ),
    case("eq-string-case-sensitive", leaf("contact.status", "eq", "Customer"), False),
    case(
        "eq-string-case-insensitive",
        leaf("contact.status", "eq", "CUSTOMER", case_insensitive=True),
        True,
    ),
    case("eq-null-on-missing", leaf("contact.middle_name", "eq", None), True),
    case("eq-null-on-null", leaf("contact.phone", "eq", None), True),
    case("eq-null-on-value", leaf("contact.score", "eq", None), False),
    case("eq-value-on-missing", leaf("contact.middle_name", "eq", "x"), False),
    case("eq-value-on-null", leaf("contact.phone", "eq", "x"), False),
    case("eq-empty-string-is-not-null", leaf("contact.nickname", "eq", None), False),
    case("eq-bool", leaf("contact.is_active", "eq", True), True),
    case("eq-bool-from-text", leaf("contact.custom_fields.active", "eq", True), True),
    case("eq-bool-is-not-one", leaf("contact.is_active", "eq", 1), False),
    case("eq-false-is-not-zero", leaf("contact.zero", "eq", False), False),
    case("eq-mixed-text-vs-number-unequal", leaf("contact.status", "eq", 5), False),
    case(
        "eq-timestamp-other-offset",
        leaf("contact.created_at", "eq", "2026-11-25T00:30:00+01:00"),
        True,
    ),
    case(
        "eq-timestamp-python-vs-text",
        leaf("deal.updated_at", "eq", "2026-11-25T10:00:00+01:00"),
        True,
    ),
    case(
        "eq-timestamp-vs-day-in-workspace-zone",
        leaf("contact.created_at", "eq", "2026-11-25"),
        True,
    ),
    case(
        "eq-timestamp-vs-day-in-utc",
        leaf("contact.created_at", "eq", "2026-11-25", timezone="UTC"),
        False,
    ),
    case("eq-python-date-vs-text", leaf("deal.close_date", "eq", "2026-11-25"), True),
    case("eq-uuid-any-case", leaf("contact.owner_id", "eq", str(OWNER).upper()), True),
    case("eq-array-same-order", leaf("contact.tags", "eq", ["vip", "lead"]), True),
    case("eq-array-other-order", leaf("contact.tags", "eq", ["lead", "vip"]), False),
    case("eq-array-typed-elements", leaf("contact.custom_fields.nps", "eq", ["7", 9.0]), True),
    case("eq-object", leaf("steps.s1.output", "eq", {"text": "hello world", "count": "3"}), True),
    case("eq-previous-path", leaf("previous.contact.score", "eq", 50), True),
    case("eq-array-index-path", leaf("trigger.items.0.sku", "eq", "A"), True),
    case(
        "eq-forced-boolean",
        leaf("contact.custom_fields.active", "eq", "TRUE", type="boolean"),
        True,
    ),
    case("neq-equal", leaf("contact.score", "neq", 90), False),
    case("neq-different", leaf("contact.score", "neq", 80), True),
    case("neq-value-on-missing", leaf("contact.middle_name", "neq", "x"), True),
    case("neq-value-on-null", leaf("contact.phone", "neq", "x"), True),
    case("neq-null-on-missing", leaf("contact.middle_name", "neq", None), False),
    case("neq-null-on-value", leaf("contact.score", "neq", None), True),
    case("neq-mixed-types", leaf("contact.status", "neq", 5), True),
]


@pytest.mark.parametrize(("node", "expected"), EQUALITY)
def test_equality(node: dict[str, Any], expected: bool) -> None:
    assert_clean(run(node), expected)


# --- membership -------------------------------------------------------------------------

MEMBERSHIP = [
    case("in-hit", leaf("contact.status", "in", ["lead", "customer"]), True),
    case("in-miss", leaf("contact.status", "in", ["lead"]), False),
    case("in-empty-list", leaf("contact.status", "in", []), False),
    case("in-typed-number-text", leaf("contact.custom_fields.seats", "in", [10, 20]), True),
    case(
        "in-case-insensitive",
        leaf("contact.status", "in", ["CUSTOMER"], case_insensitive=True),
        True,
    ),
    case("in-null-listed-matches-missing", leaf("contact.middle_name", "in", [None, "x"]), True),
    case("in-null-listed-matches-null", leaf("contact.phone", "in", [None]), True),
    case("in-missing-without-null", leaf("contact.middle_name", "in", ["x"]), False),
    case("not_in-miss", leaf("contact.status", "not_in", ["lead"]), True),
    case("not_in-hit", leaf("contact.status", "not_in", ["customer"]), False),
    case("not_in-missing", leaf("contact.middle_name", "not_in", ["x"]), True),
    case("not_in-null-listed-on-null", leaf("contact.phone", "not_in", [None]), False),
    case("contains-substring", leaf("contact.email", "contains", "@example"), True),
    case("contains-substring-miss", leaf("contact.email", "contains", "@EXAMPLE"), False),
    case(
        "contains-substring-case-insensitive",
        leaf("contact.email", "contains", "@EXAMPLE", case_insensitive=True),
        True,
    ),
    case("contains-array-member", leaf("contact.tags", "contains", "vip"), True),
    case("contains-array-non-member", leaf("contact.tags", "contains", "vi"), False),
    case("contains-array-typed-member", leaf("contact.custom_fields.nps", "contains", "9"), True),
    case(
        "contains-array-case-insensitive",
        leaf("contact.tags", "contains", "VIP", case_insensitive=True),
        True,
    ),
    case("contains-on-null", leaf("contact.phone", "contains", "1"), False),
    case("contains-on-missing", leaf("contact.fax", "contains", "1"), False),
    case("not_contains-substring", leaf("contact.email", "not_contains", "gmail"), True),
    case("not_contains-array", leaf("contact.tags", "not_contains", "vip"), False),
    case("not_contains-on-null", leaf("contact.phone", "not_contains", "1"), True),
    case("not_contains-on-missing", leaf("contact.fax", "not_contains", "1"), True),
    case("starts_with-hit", leaf("contact.email", "starts_with", "ann@"), True),
    case("starts_with-miss", leaf("contact.email", "starts_with", "Ann@"), False),
    case(
        "starts_with-case-insensitive",
        leaf("contact.email", "starts_with", "ANN@", case_insensitive=True),
        True,
    ),
    case("starts_with-on-null", leaf("contact.phone", "starts_with", "+49"), False),
    case("starts_with-on-missing", leaf("contact.fax", "starts_with", "+49"), False),
    case("starts_with-uuid", leaf("contact.owner_id", "starts_with", "6f1c"), True),
    case("ends_with-hit", leaf("contact.email", "ends_with", ".com"), True),
    case("ends_with-miss", leaf("contact.email", "ends_with", ".de"), False),
    case(
        "ends_with-case-insensitive",
        leaf("contact.email", "ends_with", "EXAMPLE.COM", case_insensitive=True),
        True,
    ),
    case("ends_with-on-null", leaf("contact.phone", "ends_with", "1"), False),
    case("matches-anywhere", leaf("contact.email", "matches", "example"), True),
    case("matches-anchored", leaf("contact.email", "matches", "^ann@[a-z]+\\.com$"), True),
    case("matches-miss", leaf("contact.email", "matches", "^bob"), False),
    case(
        "matches-case-insensitive",
        leaf("contact.email", "matches", "^ANN", case_insensitive=True),
        True,
    ),
    case("matches-on-null", leaf("contact.phone", "matches", "."), False),
    case("matches-on-missing", leaf("contact.fax", "matches", "."), False),
]


@pytest.mark.parametrize(("node", "expected"), MEMBERSHIP)
def test_membership_and_text(node: dict[str, Any], expected: bool) -> None:
    assert_clean(run(node), expected)


# --- ordering ---------------------------------------------------------------------------

ORDERING = [
    case("gt-number", leaf("contact.score", "gt", 80), True),
    case("gt-equal-is-false", leaf("contact.score", "gt", 90), False),
    case("gte-equal", leaf("contact.score", "gte", 90), True),
    case("lt-number", leaf("contact.score", "lt", 100), True),
    case("lte-equal", leaf("contact.score", "lte", 90), True),
    case("lte-below", leaf("contact.score", "lte", 89), False),
    case("gt-decimal-string-exact", leaf("contact.custom_fields.amount", "gt", "1234.49"), True),
    case("gt-python-decimal-vs-float", leaf("deal.amount", "gt", 1234.4999), True),
    case("lt-decimal-not-below-itself", leaf("deal.amount", "lt", "1234.50"), False),
    case("gt-float-sum-above-0.3", leaf("contact.ratio", "gt", 0.3), True),
    case(
        "gte-numeric-text-forced-number",
        leaf("contact.custom_fields.seats", "gte", "9", type="number"),
        True,
    ),
    case(
        "gte-numeric-text-vs-number-infers-number",
        leaf("contact.custom_fields.seats", "gte", 9),
        True,
    ),
    case(
        "gt-two-numeric-strings-compare-as-numbers",
        leaf("contact.custom_fields.amount", "gt", "999.99"),
        True,
    ),
    case(
        "lt-two-numeric-strings-compare-as-numbers",
        leaf("contact.custom_fields.seats", "lt", "9"),
        False,
    ),
    case("gt-string-codepoint-order", leaf("contact.status", "gt", "lead"), False),
    case("lt-string", leaf("contact.status", "lt", "lead"), True),
    case(
        "lt-string-case-insensitive",
        leaf("contact.first_name", "lt", "b", case_insensitive=True),
        True,
    ),
    case(
        "gt-timestamp-other-offset",
        leaf("contact.created_at", "gt", "2026-11-25T00:29:00+01:00"),
        True,
    ),
    case(
        "lt-timestamp-other-offset",
        leaf("contact.created_at", "lt", "2026-11-25T00:29:00+01:00"),
        False,
    ),
    case(
        "gte-day-vs-timestamp-by-local-day", leaf("contact.created_at", "gte", "2026-11-25"), True
    ),
    case("gt-python-date", leaf("deal.close_date", "gt", "2026-11-24"), True),
    case("gt-on-null", leaf("contact.phone", "gt", 1), False),
    case("lt-on-missing", leaf("contact.fax", "lt", 1), False),
    case("between-inside", leaf("contact.score", "between", [80, 100]), True),
    case("between-low-included", leaf("contact.score", "between", [90, 100]), True),
    case("between-high-included", leaf("contact.score", "between", [0, 90]), True),
    case("between-outside", leaf("contact.score", "between", [91, 100]), False),
    case("between-decimals", leaf("deal.amount", "between", ["1234.50", 1234.5]), True),
    case("between-dates", leaf("task.due_date", "between", ["2026-11-01", "2026-11-30"]), True),
    case("between-on-null", leaf("contact.phone", "between", [0, 1]), False),
]


@pytest.mark.parametrize(("node", "expected"), ORDERING)
def test_ordering(node: dict[str, Any], expected: bool) -> None:
    assert_clean(run(node), expected)


# --- emptiness and existence ------------------------------------------------------------------

EMPTINESS = [
    case("is_empty-missing", leaf("contact.fax", "is_empty"), True),
    case("is_empty-null", leaf("contact.phone", "is_empty"), True),
    case("is_empty-empty-string", leaf("contact.nickname", "is_empty"), True),
    case("is_empty-empty-array", leaf("contact.notes_list", "is_empty"), True),
    case("is_empty-empty-object", leaf("contact.extra", "is_empty"), True),
    case("is_empty-whitespace-is-not-empty", leaf("contact.blank", "is_empty"), False),
    case("is_empty-zero-is-not-empty", leaf("contact.zero", "is_empty"), False),
    case("is_empty-false-is-not-empty", leaf("contact.unsubscribed", "is_empty"), False),
    case("is_empty-text", leaf("contact.email", "is_empty"), False),
    case("is_not_empty-text", leaf("contact.email", "is_not_empty"), True),
    case("is_not_empty-null", leaf("contact.phone", "is_not_empty"), False),
    case("is_not_empty-missing", leaf("contact.fax", "is_not_empty"), False),
    case("is_not_empty-zero", leaf("contact.zero", "is_not_empty"), True),
    case("exists-value", leaf("contact.email", "exists"), True),
    case("exists-null", leaf("contact.phone", "exists"), True),
    case("exists-null-in-payload", leaf("trigger.utm_source", "exists"), True),
    case("exists-missing", leaf("contact.fax", "exists"), False),
    case("exists-below-null", leaf("contact.phone.country", "exists"), False),
    case("exists-below-scalar", leaf("contact.email.domain", "exists"), False),
    case("exists-array-index-out-of-range", leaf("contact.tags.5", "exists"), False),
    case("exists-missing-record", leaf("company.name", "exists"), False),
]


@pytest.mark.parametrize(("node", "expected"), EMPTINESS)
def test_emptiness_and_existence(node: dict[str, Any], expected: bool) -> None:
    assert_clean(run(node), expected)


# --- changes ------------------------------------------------------------------------------

CHANGES = [
    case("changed-column-in-previous", leaf("contact.score", "changed"), True),
    case("changed-column-not-in-previous", leaf("contact.email", "changed"), False),
    case("changed-record-without-previous", leaf("deal.stage", "changed"), False),
    case("changed_from-old-value", leaf("contact.score", "changed_from", 50), True),
    case("changed_from-other-value", leaf("contact.score", "changed_from", 60), False),
    case("changed_from-typed", leaf("contact.score", "changed_from", "50.0"), True),
    case("changed_from-null", leaf("contact.status", "changed_from", None), True),
    case(
        "changed_from-unchanged-column",
        leaf("contact.email", "changed_from", "ann@example.com"),
        False,
    ),
    case("changed_to-new-value", leaf("contact.score", "changed_to", 90), True),
    case("changed_to-other-value", leaf("contact.score", "changed_to", 80), False),
    case(
        "changed_to-case-insensitive",
        leaf("contact.status", "changed_to", "CUSTOMER", case_insensitive=True),
        True,
    ),
    case(
        "changed_to-unchanged-column", leaf("contact.email", "changed_to", "ann@example.com"), False
    ),
    case("changed-nested-key-that-changed", leaf("contact.custom_fields.tier", "changed"), True),
    case("changed-nested-key-that-did-not", leaf("contact.custom_fields.amount", "changed"), False),
    case("changed_from-nested", leaf("contact.custom_fields.tier", "changed_from", "silver"), True),
    case("changed_to-nested", leaf("contact.custom_fields.tier", "changed_to", "gold"), True),
    case("changed-nested-unchanged-array", leaf("contact.custom_fields.nps", "changed"), False),
    case("previous-path-with-lt", leaf("previous.contact.score", "lt", 60), True),
    case("previous-path-missing-when-unchanged", leaf("previous.contact.email", "exists"), False),
]


@pytest.mark.parametrize(("node", "expected"), CHANGES)
def test_changes(node: dict[str, Any], expected: bool) -> None:
    assert_clean(run(node), expected)


def test_changed_nested_key_added_counts_as_change_from_null() -> None:
    context = {
        **CONTEXT,
        "contact": {"custom_fields": {"tier": "gold", "new": 1}},
        "previous": {"contact": {"custom_fields": {"tier": "gold"}}},
    }
    assert_clean(run(leaf("contact.custom_fields.new", "changed_from", None), context), True)


def test_changed_trace_shows_old_and_new_values() -> None:
    result = run(leaf("contact.score", "changed_from", 50))
    assert result.leaves[0].actual == {"changed": True, "from": 50, "to": 90}


# --- dates and timezones -----------------------------------------------------------------

DATES = [
    case("before-timestamp", leaf("contact.created_at", "before", "2026-11-25T00:00:00Z"), True),
    case(
        "before-timestamp-other-offset",
        leaf("contact.created_at", "before", "2026-11-25T00:30:00+01:00"),
        False,
    ),
    case("after-timestamp", leaf("contact.created_at", "after", "2026-11-24T23:00:00Z"), True),
    case("after-day-by-local-day", leaf("contact.created_at", "after", "2026-11-24"), True),
    case(
        "after-day-by-utc-day",
        leaf("contact.created_at", "after", "2026-11-24", timezone="UTC"),
        False,
    ),
    case("before-day-same-day-is-false", leaf("contact.created_at", "before", "2026-11-25"), False),
    case("before-python-date", leaf("deal.close_date", "before", "2026-11-26"), True),
    case(
        "after-python-datetime", leaf("deal.updated_at", "after", "2026-11-25T09:59:00+01:00"), True
    ),
    case("before-on-null", leaf("contact.phone", "before", "2026-01-01"), False),
    case("after-on-missing", leaf("contact.fax", "after", "2026-01-01"), False),
    case(
        "within_last-timestamp-days", leaf("contact.created_at", "within_last", {"days": 1}), True
    ),
    case(
        "within_last-timestamp-hours-too-short",
        leaf("contact.created_at", "within_last", {"hours": 12}),
        False,
    ),
    case(
        "within_last-timestamp-hours-minutes",
        leaf("contact.created_at", "within_last", {"hours": 12, "minutes": 30}),
        True,
    ),
    case(
        "within_last-future-is-outside", leaf("task.due_date", "within_last", {"weeks": 4}), False
    ),
    case("within_last-day", leaf("task.done_date", "within_last", {"days": 5}), True),
    case("within_last-day-too-short", leaf("task.done_date", "within_last", {"days": 4}), False),
    case("within_next-day", leaf("task.due_date", "within_next", {"days": 2}), True),
    case("within_next-day-too-short", leaf("task.due_date", "within_next", {"days": 1}), False),
    case("within_next-past-is-outside", leaf("task.done_date", "within_next", {"weeks": 9}), False),
    case("within_last-on-null", leaf("contact.phone", "within_last", {"days": 1}), False),
    case("is_today-timestamp-in-workspace-zone", leaf("contact.created_at", "is_today"), True),
    case(
        "is_today-timestamp-in-utc", leaf("contact.created_at", "is_today", timezone="UTC"), False
    ),
    case("is_today-python-date", leaf("deal.close_date", "is_today"), True),
    case("is_today-other-day", leaf("task.due_date", "is_today"), False),
    case("is_today-on-null", leaf("contact.phone", "is_today"), False),
    case("in_past-timestamp", leaf("contact.created_at", "in_past"), True),
    case("in_past-day", leaf("task.done_date", "in_past"), True),
    case("in_past-today-is-not-past", leaf("deal.close_date", "in_past"), False),
    case("in_future-today-is-not-future", leaf("deal.close_date", "in_future"), False),
    case("in_future-day", leaf("task.due_date", "in_future"), True),
    case("in_future-timestamp", leaf("contact.created_at", "in_future"), False),
    case("in_future-on-missing", leaf("contact.fax", "in_future"), False),
    case(
        "date-op-forced-type-date",
        leaf("contact.created_at", "before", "2026-11-25T01:00:00Z", type="date"),
        False,
    ),
]


@pytest.mark.parametrize(("node", "expected"), DATES)
def test_dates(node: dict[str, Any], expected: bool) -> None:
    assert_clean(run(node), expected)


def at(now: str, fields: dict[str, Any], tz: str | None = "Europe/Berlin") -> dict[str, Any]:
    workspace = {"timezone": tz} if tz else {}
    return {"record": fields, "workspace": workspace, "now": now}


DST = [
    # Spring forward, Berlin 2026-03-29 02:00 -> 03:00: "1 day" back from 12:00 CEST is
    # 12:00 CET the day before, 23 hours of elapsed time.
    pytest.param(
        at("2026-03-29T10:00:00Z", {"t": "2026-03-28T11:30:00Z"}),
        leaf("record.t", "within_last", {"days": 1}),
        True,
        id="spring-1-day-window-is-23h-inside",
    ),
    pytest.param(
        at("2026-03-29T10:00:00Z", {"t": "2026-03-28T10:30:00Z"}),
        leaf("record.t", "within_last", {"days": 1}),
        False,
        id="spring-1-day-window-is-23h-outside",
    ),
    pytest.param(
        at("2026-03-29T10:00:00Z", {"t": "2026-03-28T10:30:00Z"}),
        leaf("record.t", "within_last", {"hours": 24}),
        True,
        id="spring-24-hours-are-elapsed-time",
    ),
    # Fall back, Berlin 2026-10-25 03:00 -> 02:00: "1 day" is 25 hours.
    pytest.param(
        at("2026-10-25T11:00:00Z", {"t": "2026-10-24T10:30:00Z"}),
        leaf("record.t", "within_last", {"days": 1}),
        True,
        id="autumn-1-day-window-is-25h",
    ),
    pytest.param(
        at("2026-10-25T11:00:00Z", {"t": "2026-10-24T10:30:00Z"}),
        leaf("record.t", "within_last", {"hours": 24}),
        False,
        id="autumn-24-hours-are-elapsed-time",
    ),
    pytest.param(
        at("2026-03-27T12:00:00Z", {"t": "2026-03-30T11:00:00Z"}),
        leaf("record.t", "within_next", {"days": 3}),
        True,
        id="spring-within-next-crosses-the-change",
    ),
    pytest.param(
        at("2026-03-29T12:00:00Z", {"a": "2026-03-29T01:59:00+01:00"}),
        leaf("record.a", "before", "2026-03-29T03:00:00+02:00"),
        True,
        id="instants-around-the-gap-compare-by-instant",
    ),
    pytest.param(
        at("2026-10-25T12:00:00Z", {"a": "2026-10-25T02:30:00"}),
        leaf("record.a", "eq", "2026-10-25T00:30:00Z"),
        True,
        id="naive-ambiguous-time-is-first-occurrence",
    ),
    pytest.param(
        at("2026-10-25T12:00:00Z", {"a": "2026-10-25T02:30:00+01:00"}),
        leaf("record.a", "after", "2026-10-25T02:30:00+02:00"),
        True,
        id="second-occurrence-is-after-the-first",
    ),
    pytest.param(
        at("2026-03-29T22:30:00Z", {"d": "2026-03-30"}),
        leaf("record.d", "is_today"),
        True,
        id="is-today-just-after-midnight-in-summer-time",
    ),
    pytest.param(
        at("2026-03-29T21:30:00Z", {"d": "2026-03-30"}),
        leaf("record.d", "is_today"),
        False,
        id="is-today-just-before-midnight-in-summer-time",
    ),
]


@pytest.mark.parametrize(("context", "node", "expected"), DST)
def test_dst(context: dict[str, Any], node: dict[str, Any], expected: bool) -> None:
    assert_clean(run(node, context), expected)


MIDNIGHT = [
    pytest.param(
        "2026-11-25T23:30:00Z",
        "Europe/Berlin",
        "2026-11-26",
        True,
        id="berlin-00:30-is-the-next-day",
    ),
    pytest.param(
        "2026-11-25T23:30:00Z", None, "2026-11-26", False, id="utc-23:30-is-still-the-day-before"
    ),
    pytest.param(
        "2026-11-25T22:59:59Z",
        "Europe/Berlin",
        "2026-11-25",
        True,
        id="berlin-23:59:59-is-still-today",
    ),
    pytest.param(
        "2026-11-25T23:00:00Z",
        "Europe/Berlin",
        "2026-11-25",
        False,
        id="berlin-midnight-starts-a-new-day",
    ),
    pytest.param(
        "2026-11-26T04:30:00Z",
        "America/New_York",
        "2026-11-25",
        True,
        id="new-york-23:30-is-still-today",
    ),
]


@pytest.mark.parametrize(("now", "tz", "day", "expected"), MIDNIGHT)
def test_is_today_near_midnight(now: str, tz: str | None, day: str, expected: bool) -> None:
    context = at(now, {"due": day, "due_ts": f"{day}T12:00:00"}, tz)
    assert_clean(run(leaf("record.due", "is_today"), context), expected)


def test_is_today_reads_a_naive_timestamp_in_the_zone() -> None:
    context = at("2026-11-25T23:30:00Z", {"t": "2026-11-26T00:10:00"})
    assert_clean(run(leaf("record.t", "is_today"), context), True)


def test_leaf_timezone_overrides_workspace_timezone() -> None:
    context = at("2026-11-25T23:30:00Z", {"d": "2026-11-26"})
    assert_clean(run(leaf("record.d", "is_today", timezone="UTC"), context), False)


def test_missing_workspace_timezone_means_utc() -> None:
    context = at("2026-11-25T23:30:00Z", {"d": "2026-11-25"}, tz=None)
    assert_clean(run(leaf("record.d", "is_today"), context), True)


def test_now_argument_overrides_context_now() -> None:
    later = datetime(2026, 12, 24, 12, 0, tzinfo=UTC)
    assert_clean(run(leaf("task.due_date", "in_past"), now=later), True)


def test_naive_now_argument_is_utc() -> None:
    result = run(leaf("task.due_date", "in_past"), now=datetime(2026, 12, 24, 12, 0))
    assert result.now == "2026-12-24T12:00:00+00:00"


def test_evaluation_reports_the_now_it_used() -> None:
    assert run(leaf("contact.created_at", "is_today")).now == "2026-11-25T12:00:00+00:00"


def test_python_values_in_context_are_read_like_json_ones() -> None:
    context = at(
        "2026-11-25T12:00:00Z",
        {
            "amount": Decimal("10.10"),
            "when": datetime(2026, 11, 25, 8, 0, tzinfo=UTC),
            "day": date(2026, 11, 25),
            "id": OWNER,
        },
    )
    tree = {
        "all": [
            leaf("record.amount", "eq", "10.1"),
            leaf("record.when", "within_last", {"hours": 4}),
            leaf("record.day", "is_today"),
            leaf("record.id", "in", [str(OWNER)]),
        ]
    }
    assert_clean(run(tree, context), True)


# --- list operators ------------------------------------------------------------------------

LISTS = [
    case("has_any-hit", leaf("contact.tags", "has_any", ["partner", "vip"]), True),
    case("has_any-miss", leaf("contact.tags", "has_any", ["partner"]), False),
    case("has_any-empty-list", leaf("contact.tags", "has_any", []), False),
    case("has_any-typed", leaf("contact.custom_fields.nps", "has_any", ["9"]), True),
    case(
        "has_any-case-insensitive",
        leaf("contact.tags", "has_any", ["VIP"], case_insensitive=True),
        True,
    ),
    case("has_any-on-null", leaf("contact.phone", "has_any", ["x"]), False),
    case("has_any-on-missing", leaf("contact.fax", "has_any", ["x"]), False),
    case("has_all-hit", leaf("contact.tags", "has_all", ["lead", "vip"]), True),
    case("has_all-partial", leaf("contact.tags", "has_all", ["lead", "partner"]), False),
    case("has_all-empty-list", leaf("contact.tags", "has_all", []), True),
    case("has_all-on-empty-array", leaf("contact.notes_list", "has_all", ["x"]), False),
    case("has_all-on-null", leaf("contact.phone", "has_all", []), False),
    case("length-gte", leaf("contact.tags", "length", {"gte": 2}), True),
    case("length-eq-miss", leaf("contact.tags", "length", {"eq": 3}), False),
    case("length-range", leaf("contact.tags", "length", {"gt": 1, "lt": 3}), True),
    case("length-neq", leaf("contact.tags", "length", {"neq": 2}), False),
    case("length-lte", leaf("contact.tags", "length", {"lte": 1}), False),
    case("length-of-string", leaf("contact.first_name", "length", {"eq": 3}), True),
    case("length-of-object", leaf("contact.custom_fields", "length", {"eq": 7}), True),
    case("length-of-empty-array", leaf("contact.notes_list", "length", {"eq": 0}), True),
    case("length-on-null", leaf("contact.phone", "length", {"eq": 0}), False),
    case("length-on-missing", leaf("contact.fax", "length", {"lt": 5}), False),
]


@pytest.mark.parametrize(("node", "expected"), LISTS)
def test_list_operators(node: dict[str, Any], expected: bool) -> None:
    assert_clean(run(node), expected)


# --- runtime type errors are false and reported --------------------------------------------

RUNTIME_ERRORS = [
    pytest.param(leaf("contact.status", "gte", 80), id="gte-on-text"),
    pytest.param(leaf("contact.score", "gt", "abc"), id="gt-number-vs-text"),
    pytest.param(leaf("contact.is_active", "gt", 0), id="gt-on-boolean"),
    pytest.param(leaf("contact.tags", "lt", "x"), id="lt-on-array"),
    pytest.param(leaf("contact.score", "contains", "9"), id="contains-on-number"),
    pytest.param(leaf("contact.score", "not_contains", "9"), id="not_contains-on-number"),
    pytest.param(leaf("contact.email", "contains", 5), id="contains-number-in-text"),
    pytest.param(leaf("contact.score", "starts_with", "9"), id="starts_with-on-number"),
    pytest.param(leaf("contact.tags", "matches", "v"), id="matches-on-array"),
    pytest.param(leaf("contact.tags", "in", ["vip"]), id="in-on-array"),
    pytest.param(leaf("contact.tags", "not_in", ["vip"]), id="not_in-on-array"),
    pytest.param(leaf("contact.status", "before", "2026-01-01"), id="before-on-text"),
    pytest.param(leaf("contact.score", "is_today"), id="is_today-on-number"),
    pytest.param(leaf("contact.email", "within_last", {"days": 1}), id="within_last-on-text"),
    pytest.param(leaf("contact.email", "has_any", ["a"]), id="has_any-on-text"),
    pytest.param(leaf("contact.score", "length", {"eq": 2}), id="length-on-number"),
    pytest.param(leaf("contact.status", "between", [1, 2]), id="between-text-vs-numbers"),
    pytest.param(leaf("contact.email", "contains", "a", type="array"), id="forced-array"),
]


@pytest.mark.parametrize("node", RUNTIME_ERRORS)
def test_runtime_type_error_makes_the_leaf_false_and_is_reported(node: dict[str, Any]) -> None:
    result = run(node)
    assert result.matched is False
    assert result.error is None
    assert result.leaves[0].result is False
    assert result.leaves[0].error is not None
    assert result.leaves[0].error.code == TYPE_MISMATCH


def test_type_error_message_names_field_and_values() -> None:
    error = run(leaf("contact.status", "gte", 80)).leaves[0].error
    assert error is not None
    assert error.message == (
        "'gte' on 'contact.status': cannot compare \"customer\" with "
        '80: "customer" is not a number'
    )


def test_errored_leaf_under_not_is_true_and_keeps_its_error() -> None:
    result = run({"not": leaf("contact.status", "gte", 80)})
    assert result.matched is True
    assert result.leaves[0].error is not None


def test_invalid_workspace_timezone_is_a_leaf_error_for_date_operators() -> None:
    context = {**CONTEXT, "workspace": {"timezone": "Mars/Olympus"}}
    result = run(leaf("contact.created_at", "is_today"), context)
    assert result.matched is False
    assert result.leaves[0].error is not None
    assert result.leaves[0].error.code == INVALID_TIMEZONE


def test_invalid_workspace_timezone_does_not_affect_numbers() -> None:
    context = {**CONTEXT, "workspace": {"timezone": "Mars/Olympus"}}
    assert_clean(run(leaf("contact.score", "gt", 1), context), True)


def test_unreadable_context_now_is_a_leaf_error_for_relative_operators() -> None:
    context = {**CONTEXT, "now": "soon"}
    result = run(leaf("contact.created_at", "in_past"), context)
    assert result.leaves[0].error is not None
    assert result.leaves[0].error.code == TYPE_MISMATCH


def test_regex_without_backtracking_finishes_on_a_pathological_input() -> None:
    context = at("2026-11-25T12:00:00Z", {"s": "a" * 50_000 + "!"})
    assert_clean(run(leaf("record.s", "matches", "^(a+)+$"), context), False)


# --- tree structure ---------------------------------------------------------------------------


@pytest.mark.parametrize("tree", [None, [], {}], ids=["none", "empty-list", "empty-object"])
def test_empty_tree_is_always_true(tree: Any) -> None:
    result = run(tree)
    assert result.matched is True and result.leaves == [] and result.error is None


def test_empty_all_is_true() -> None:
    assert_clean(run({"all": []}), True)


def test_empty_any_is_false() -> None:
    assert_clean(run({"any": []}), False)


def test_top_level_list_is_all_of() -> None:
    assert_clean(run([leaf("contact.score", "gt", 1), leaf("contact.score", "gt", 100)]), False)
    assert_clean(run([leaf("contact.score", "gt", 1), leaf("contact.score", "lt", 100)]), True)


def test_not_negates() -> None:
    assert_clean(run({"not": leaf("contact.score", "gt", 100)}), True)


def test_any_matches_when_one_member_matches() -> None:
    tree = {"any": [leaf("contact.score", "gt", 100), leaf("contact.status", "eq", "customer")]}
    assert_clean(run(tree), True)


def test_leaf_pointers_follow_the_tree() -> None:
    tree = {
        "all": [
            leaf("contact.score", "gt", 1),
            {
                "any": [
                    leaf("contact.tags", "contains", "vip"),
                    {"not": leaf("contact.phone", "exists")},
                ]
            },
        ]
    }
    pointers = [leaf.pointer for leaf in run(tree).leaves]
    assert pointers == ["/all/0", "/all/1/any/0", "/all/1/any/1/not"]


def test_top_level_list_pointers_are_indexes() -> None:
    pointers = [r.pointer for r in run([leaf("contact.score", "gt", 1)] * 2).leaves]
    assert pointers == ["/0", "/1"]


def test_root_leaf_pointer_is_empty() -> None:
    assert run(leaf("contact.score", "gt", 1)).leaves[0].pointer == ""


def test_every_leaf_is_evaluated_for_the_trace() -> None:
    tree = {"all": [leaf("contact.score", "gt", 100), leaf("contact.score", "gt", 1)]}
    result = run(tree)
    assert [r.result for r in result.leaves] == [False, True]


def test_trace_has_expected_and_actual_values() -> None:
    trace = run(leaf("deal.amount", "gte", "1000")).leaves[0]
    assert (trace.field, trace.op, trace.expected, trace.actual, trace.present) == (
        "deal.amount",
        "gte",
        "1000",
        "1234.50",
        True,
    )


def test_trace_tells_missing_from_null() -> None:
    missing, null = run([leaf("contact.fax", "eq", None), leaf("contact.phone", "eq", None)]).leaves
    assert (missing.present, null.present) == (False, True)


def test_trace_cuts_long_strings() -> None:
    context = at("2026-11-25T12:00:00Z", {"body": "x" * 5000})
    actual = run(leaf("record.body", "contains", "y"), context).leaves[0].actual
    assert len(actual) == 1001 and actual.endswith("…")


def test_evaluation_is_json_serialisable() -> None:
    tree = [
        leaf("deal.amount", "gt", 1),
        leaf("deal.updated_at", "is_today"),
        leaf("contact.owner_id", "exists"),
        leaf("contact.score", "changed"),
    ]
    json.dumps(run(tree).as_dict())


def test_first_failing_leaf_of_all_is_the_first_false_member() -> None:
    tree = {
        "all": [
            leaf("contact.score", "gt", 1),
            leaf("contact.score", "gt", 100),
            leaf("contact.score", "gt", 200),
        ]
    }
    failing = first_failing_leaf(run(tree))
    assert failing is not None and failing.pointer == "/all/1" and failing.actual == 90


def test_first_failing_leaf_of_any_is_its_first_member() -> None:
    tree = {
        "all": [
            leaf("contact.score", "gt", 1),
            {"any": [leaf("contact.score", "gt", 100), leaf("contact.tags", "eq", [])]},
        ]
    }
    failing = first_failing_leaf(run(tree))
    assert failing is not None and failing.pointer == "/all/1/any/0"


def test_first_failing_leaf_under_not_is_the_true_leaf() -> None:
    failing = first_failing_leaf(run({"not": leaf("contact.score", "gt", 1)}))
    assert failing is not None and failing.result is True and failing.pointer == "/not"


def test_first_failing_leaf_of_a_match_is_none() -> None:
    assert first_failing_leaf(run(leaf("contact.score", "gt", 1))) is None


def test_first_failing_leaf_of_a_malformed_tree_is_the_broken_node() -> None:
    failing = first_failing_leaf(
        run({"all": [leaf("contact.score", "gt", 1), leaf("contact.score", "bogus", 1)]})
    )
    assert failing is not None and failing.pointer == "/all/1" and failing.error is not None


# --- malformed trees --------------------------------------------------------------------------

MALFORMED_TREES = [
    pytest.param(leaf("contact.score", "gtt", 1), UNKNOWN_OPERATOR, "/op", id="unknown-op"),
    pytest.param({"field": "contact.score"}, MALFORMED, "", id="missing-op"),
    pytest.param({"op": "eq", "value": 1}, MALFORMED, "", id="missing-field"),
    pytest.param(leaf("", "eq", 1), MALFORMED, "/field", id="empty-field"),
    pytest.param(leaf("contact..score", "eq", 1), MALFORMED, "/field", id="empty-segment"),
    pytest.param(leaf("contact.score", "gte"), BAD_VALUE, "", id="missing-value"),
    pytest.param(
        leaf("contact.phone", "is_empty", True), BAD_VALUE, "/value", id="value-on-no-value-op"
    ),
    pytest.param(
        leaf("contact.score", "between", [1, 2, 3]), BAD_VALUE, "/value", id="between-three-bounds"
    ),
    pytest.param(
        leaf("contact.score", "between", [1, None]), BAD_VALUE, "/value/1", id="between-null-bound"
    ),
    pytest.param(leaf("contact.score", "in", 5), BAD_VALUE, "/value", id="in-not-a-list"),
    pytest.param(leaf("contact.score", "gt", [1]), BAD_VALUE, "/value", id="gt-list"),
    pytest.param(leaf("contact.score", "gt", True), BAD_VALUE, "/value", id="gt-boolean"),
    pytest.param(
        leaf("contact.email", "matches", "(a"), INVALID_REGEX, "/value", id="invalid-regex"
    ),
    pytest.param(
        leaf("contact.email", "matches", "(a)\\1"),
        INVALID_REGEX,
        "/value",
        id="backreference-regex",
    ),
    pytest.param(
        leaf("contact.email", "starts_with", 5), BAD_VALUE, "/value", id="starts_with-number"
    ),
    pytest.param(
        leaf("contact.created_at", "before", "yesterday"), BAD_VALUE, "/value", id="before-not-iso"
    ),
    pytest.param(
        leaf("contact.created_at", "within_last", "3d"), BAD_VALUE, "/value", id="duration-as-text"
    ),
    pytest.param(
        leaf("contact.created_at", "within_last", {"months": 1}),
        BAD_VALUE,
        "/value",
        id="duration-months",
    ),
    pytest.param(
        leaf("contact.created_at", "within_last", {"days": -1}),
        BAD_VALUE,
        "/value",
        id="duration-negative",
    ),
    pytest.param(
        leaf("contact.tags", "length", {"gte": -1}), BAD_VALUE, "/value/gte", id="length-negative"
    ),
    pytest.param(leaf("contact.tags", "length", 3), BAD_VALUE, "/value", id="length-number"),
    pytest.param(
        leaf("contact.created_at", "is_today", timezone="Mars/Olympus"),
        INVALID_TIMEZONE,
        "/timezone",
        id="invalid-timezone",
    ),
    pytest.param(
        leaf("contact.score", "eq", 1, type="money"), MALFORMED, "/type", id="unknown-type"
    ),
    pytest.param(
        leaf("contact.score", "eq", "abc", type="number"),
        BAD_VALUE,
        "/value",
        id="value-not-of-forced-type",
    ),
    pytest.param(
        leaf("contact.score", "before", "2026-01-01", type="number"),
        MALFORMED,
        "/type",
        id="date-op-non-date-type",
    ),
    pytest.param(
        leaf("contact.score", "eq", 1, case_insensitive="yes"),
        MALFORMED,
        "/case_insensitive",
        id="case-insensitive-not-bool",
    ),
    pytest.param(
        leaf("contact.score", "exists", timezone="UTC"),
        MALFORMED,
        "/timezone",
        id="option-not-taken-by-op",
    ),
    pytest.param(
        {**leaf("contact.score", "eq", 1), "comment": "x"},
        MALFORMED,
        "/comment",
        id="unknown-option",
    ),
    pytest.param(leaf("contact", "changed"), MALFORMED, "/field", id="changed-without-column"),
    pytest.param(
        {"all": [[leaf("contact.score", "eq", 1)]]}, MALFORMED, "/all/0", id="nested-list"
    ),
    pytest.param({"all": [{}]}, MALFORMED, "/all/0", id="nested-empty-object"),
    pytest.param({"all": [None]}, MALFORMED, "/all/0", id="nested-null"),
    pytest.param({"all": [5]}, MALFORMED, "/all/0", id="nested-number"),
    pytest.param({"all": leaf("contact.score", "eq", 1)}, MALFORMED, "/all", id="all-not-a-list"),
    pytest.param({"not": [leaf("contact.score", "eq", 1)]}, MALFORMED, "/not", id="not-a-list"),
    pytest.param({"all": [], "any": []}, MALFORMED, "", id="two-group-keys"),
    pytest.param({"all": [], "field": "x"}, MALFORMED, "", id="group-and-leaf-keys"),
    pytest.param("contact.score > 3", MALFORMED, "", id="text-tree"),
]


@pytest.mark.parametrize(("tree", "code", "member"), MALFORMED_TREES)
def test_malformed_tree_does_not_match_and_says_where(tree: Any, code: str, member: str) -> None:
    result = run(tree)
    assert result.matched is False
    assert result.error is not None
    assert (result.error.code, result.error.pointer) == (code, member)


def test_malformed_leaf_under_not_still_does_not_match() -> None:
    result = run({"not": leaf("contact.score", "gtt", 1)})
    assert result.matched is False and result.error is not None


def test_too_deep_tree_does_not_match() -> None:
    tree: Any = leaf("contact.score", "gt", 1)
    for _ in range(MAX_DEPTH + 2):
        tree = {"not": {"not": tree}}
    result = run(tree)
    assert result.matched is False and result.error is not None
    assert result.error.code == TOO_BIG


@pytest.mark.parametrize(
    "context",
    [None, [], "x", 5, {"contact": []}, {"contact": "x"}],
    ids=["none", "list", "text", "number", "record-list", "record-text"],
)
def test_unusual_context_makes_fields_missing(context: Any) -> None:
    result = evaluate(leaf("contact.score", "eq", None), context)
    assert_clean(result, True)


# --- prepared trees --------------------------------------------------------------------------


def test_prepared_tree_evaluates_like_the_raw_tree() -> None:
    tree = {
        "all": [
            leaf("contact.score", "gte", 80),
            leaf("contact.created_at", "is_today"),
            {"not": leaf("contact.tags", "contains", "spam")},
        ]
    }
    assert run(prepare(tree)) == run(tree)


def test_prepare_of_a_prepared_tree_is_itself() -> None:
    prepared = prepare([leaf("contact.score", "gt", 1)])
    assert prepare(prepared) is prepared


def test_prepared_malformed_tree_keeps_its_error() -> None:
    prepared = prepare({"any": [leaf("contact.score", "gtt", 1)]})
    assert isinstance(prepared, PreparedCondition)
    assert prepared.error is not None and prepared.error.code == UNKNOWN_OPERATOR
    assert run(prepared).matched is False


def test_prepared_tree_can_be_reused_across_contexts() -> None:
    prepared = prepare(leaf("record.n", "gt", 5))
    assert [evaluate(prepared, {"record": {"n": n}}).matched for n in (4, 6)] == [False, True]


# --- static validation ------------------------------------------------------------------------

DECLARED = {
    "contact.score": "number",
    "contact.email": "string",
    "contact.tags": "array",
    "contact.created_at": "timestamp",
    "contact.birthday": "date",
    "contact.is_active": "boolean",
    "contact.owner_id": "uuid",
    "contact.custom_fields": "json",
    "deal.amount": "decimal",
}


def declared(path: str) -> str | None:
    if path.startswith("contact.custom_fields."):
        return "json"
    return DECLARED.get(path)


def problems_of(tree: Any) -> list[tuple[str, str]]:
    return [(p.pointer, p.message) for p in check(tree, declared)]


def test_check_accepts_a_valid_tree() -> None:
    tree = {
        "all": [
            leaf("contact.score", "gte", 80),
            leaf("deal.amount", "between", ["100.00", 5000]),
            leaf("contact.created_at", "within_last", {"days": 7}),
            leaf("contact.birthday", "is_today"),
            leaf("contact.tags", "has_any", ["vip"]),
            leaf("contact.email", "matches", "@example\\.com$"),
            leaf("contact.is_active", "eq", True),
            leaf("contact.owner_id", "eq", str(OWNER)),
            leaf("contact.custom_fields.seats", "gt", "5", type="number"),
            leaf("contact.score", "eq", None),
            {"not": leaf("contact.email", "is_empty")},
        ]
    }
    assert problems_of(tree) == []


@pytest.mark.parametrize("tree", [None, [], {}], ids=["none", "empty-list", "empty-object"])
def test_check_accepts_empty_trees(tree: Any) -> None:
    assert problems_of(tree) == []


def test_check_reports_value_type_mismatch_with_the_field_type() -> None:
    assert problems_of(leaf("contact.score", "gte", "abc")) == [
        ("/conditions/value", "'gte' on number field 'contact.score' needs a number, got \"abc\"")
    ]


def test_check_suggests_a_close_operator() -> None:
    assert problems_of(leaf("contact.score", "gtee", 1)) == [
        ("/conditions/op", "unknown operator \"gtee\"; did you mean 'gte'?")
    ]


def test_check_reports_every_problem_with_its_pointer() -> None:
    tree = [
        leaf("contact.score", "gte", "abc"),
        {
            "any": [
                leaf("contact.email", "matches", "(x"),
                leaf("contact.created_at", "is_today", timezone="Nowhere/City"),
            ]
        },
    ]
    pointers = [p for p, _ in problems_of(tree)]
    assert pointers == [
        "/conditions/0/value",
        "/conditions/1/any/0/value",
        "/conditions/1/any/1/timezone",
    ]


def test_check_reports_invalid_regex() -> None:
    ((pointer, message),) = problems_of(leaf("contact.email", "matches", "(x"))
    assert pointer == "/conditions/value" and message.startswith("invalid regex: missing )")


@pytest.mark.parametrize(
    ("node", "pointer", "fragment"),
    [
        pytest.param(
            leaf("contact.score", "starts_with", "9"),
            "/conditions/op",
            "'starts_with' does not apply to number field 'contact.score'",
            id="op-not-for-type",
        ),
        pytest.param(
            leaf("contact.tags", "in", ["vip"]),
            "/conditions/op",
            "use has_any",
            id="in-on-array-hints-has_any",
        ),
        pytest.param(
            leaf("contact.is_active", "eq", "yes"),
            "/conditions/value",
            'needs true or false, got "yes"',
            id="boolean-value",
        ),
        pytest.param(
            leaf("contact.created_at", "after", "2026-13-01"),
            "/conditions/value",
            "needs an ISO-8601 date or timestamp",
            id="impossible-date",
        ),
        pytest.param(
            leaf("contact.birthday", "eq", 5),
            "/conditions/value",
            "needs an ISO-8601 date, got 5",
            id="date-value",
        ),
        pytest.param(
            leaf("contact.owner_id", "eq", "nope"),
            "/conditions/value",
            "needs a UUID",
            id="uuid-value",
        ),
        pytest.param(
            leaf("contact.tags", "eq", "vip"),
            "/conditions/value",
            "needs an array",
            id="array-eq-value",
        ),
        pytest.param(
            leaf("contact.email", "contains", 5),
            "/conditions/value",
            "needs a string, got 5",
            id="contains-on-string",
        ),
        pytest.param(
            leaf("contact.score", "in", [1, "x"]),
            "/conditions/value/1",
            'needs a number, got "x"',
            id="in-element",
        ),
        pytest.param(
            leaf("contact.score", "between", [10, 1]),
            "/conditions/value",
            "nothing can match",
            id="between-inverted",
        ),
        pytest.param(
            leaf("contact.score", "eq", "1", type="string"),
            "/conditions/type",
            "cannot re-type",
            id="retype-typed-column",
        ),
        pytest.param(
            leaf("contact.email", "before", "2026-01-01"),
            "/conditions/op",
            '"type": "timestamp"',
            id="date-op-on-text-hints-type",
        ),
    ],
)
def test_check_type_problems(node: dict[str, Any], pointer: str, fragment: str) -> None:
    found = problems_of(node)
    assert len(found) == 1, found
    assert found[0][0] == pointer and fragment in found[0][1], found


def test_check_allows_retyping_text_fields() -> None:
    assert problems_of(leaf("contact.email", "before", "2026-01-01", type="timestamp")) == []


def test_check_allows_null_for_eq_on_typed_fields() -> None:
    assert problems_of(leaf("contact.score", "neq", None)) == []


def test_check_skips_type_checks_for_unknown_fields() -> None:
    assert problems_of(leaf("contact.unknown", "gte", "abc")) == []


def test_check_still_reports_shape_problems_of_unknown_fields() -> None:
    assert problems_of(leaf("contact.unknown", "between", [1])) == [
        ("/conditions/value", "'between' needs [low, high], got an array")
    ]


def test_check_asks_the_field_type_of_every_leaf() -> None:
    asked: list[str] = []

    def field_type(path: str) -> str | None:
        asked.append(path)
        return None

    check([leaf("contact.a", "exists"), {"not": leaf("deal.b", "exists")}], field_type)
    assert asked == ["contact.a", "deal.b"]


def test_check_uses_the_base_pointer() -> None:
    found = check(leaf("contact.score", "gtt", 1), declared, base_pointer="/automations/3/if")
    assert found[0].pointer == "/automations/3/if/op"


def test_field_paths_point_at_field_members() -> None:
    tree = {
        "all": [
            leaf("contact.score", "gt", 1),
            {"not": leaf("deal.stage", "exists")},
            {"op": "eq"},
            5,
        ]
    }
    assert field_paths(tree) == [
        ("/all/0/field", "contact.score"),
        ("/all/1/not/field", "deal.stage"),
    ]


# --- OPERATORS is the single source of truth ----------------------------------------------------

DOCS = Path(__file__).resolve().parent.parent / "docs" / "conditions.md"


@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_every_operator_example_is_valid(name: str) -> None:
    example = dict(OPERATORS[name].example)
    assert check(example, lambda _: None) == []
    assert run(example).error is None


@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_every_operator_is_documented(name: str) -> None:
    assert f"### `{name}`" in DOCS.read_text(encoding="utf-8")


def test_condition_json_schema_is_a_valid_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(condition_json_schema())


@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_json_schema_accepts_every_operator_example(name: str) -> None:
    validator = jsonschema.Draft202012Validator(condition_json_schema())
    example = dict(OPERATORS[name].example)
    assert list(validator.iter_errors({"all": [example]})) == []


@pytest.mark.parametrize(
    ("tree",),
    [
        pytest.param(leaf("contact.score", "gtt", 1), id="unknown-op"),
        pytest.param(leaf("contact.score", "gte"), id="missing-value"),
        pytest.param(leaf("contact.score", "exists", 1), id="extra-value"),
        pytest.param(leaf("contact.score", "between", [1]), id="between-one-bound"),
        pytest.param(leaf("contact.x", "within_last", "3d"), id="duration-text"),
        pytest.param({**leaf("contact.score", "eq", 1), "comment": "x"}, id="unknown-option"),
        pytest.param({"all": [], "any": []}, id="two-group-keys"),
    ],
)
def test_json_schema_rejects_what_check_rejects(tree: Any) -> None:
    validator = jsonschema.Draft202012Validator(condition_json_schema())
    assert list(validator.iter_errors(tree)) != []
    assert check(tree, lambda _: None) != []


def test_non_string_type_option_is_a_malformed_leaf_not_an_internal_error() -> None:
    result = evaluate({"field": "a", "op": "eq", "value": 1, "type": []}, {"a": 1})

    assert result.error is not None and result.error.code == "malformed"
