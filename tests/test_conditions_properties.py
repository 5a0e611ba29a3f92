"""Laws of the condition language, checked on generated trees and contexts."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.conditions import INTERNAL, OPERATORS, Evaluation, check, evaluate

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(
        [
            "2026-11-25",
            "2026-11-25T12:00:00Z",
            "2026-03-29T02:30:00",
            "1234.50",
            "0.3",
            "true",
            "2026-13-45",
            "9999-12-31T23:59:59-12:00",
        ]
    ),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
python_values = st.one_of(
    json_values,
    st.decimals(allow_nan=True, allow_infinity=True),
    st.datetimes(timezones=st.sampled_from([None, UTC])),
    st.dates(),
    st.floats(),
)

FIELDS = [
    "contact.score",
    "contact.email",
    "contact.tags",
    "contact.created_at",
    "contact.custom_fields.x",
    "deal.amount",
    "previous.contact.score",
    "now",
    "missing.x",
]
record = st.dictionaries(
    st.sampled_from(["score", "email", "tags", "created_at", "custom_fields", "amount"]),
    python_values,
    max_size=6,
)
contexts = st.one_of(
    st.fixed_dictionaries(
        {
            "contact": record,
            "deal": record,
            "previous": st.fixed_dictionaries({"contact": record}),
            "workspace": st.fixed_dictionaries(
                {
                    "timezone": st.sampled_from(
                        ["Europe/Berlin", "UTC", "America/New_York", "Nowhere/City", "", None]
                    )
                }
            ),
            "now": st.one_of(st.sampled_from(["2026-11-25T12:00:00+00:00", "soon"]), json_scalars),
        },
    ),
    json_values,
)

VALUE_BY_SHAPE: dict[str, st.SearchStrategy[Any]] = {
    "any": json_values,
    "element": json_scalars,
    "ordered": st.one_of(
        st.integers(), st.text(max_size=10), st.sampled_from(["2026-11-25", "2026-11-25T12:00:00Z"])
    ),
    "range": st.lists(
        st.one_of(st.integers(), st.sampled_from(["1.5", "2026-11-25"])), min_size=2, max_size=2
    ),
    "list": st.lists(json_scalars, max_size=4),
    "text": st.text(max_size=10),
    "pattern": st.sampled_from(["^a", "b$", "[0-9]+", "(x|y)", "."]),
    "instant": st.sampled_from(["2026-11-25", "2026-11-25T12:00:00+01:00", "2020-01-01"]),
    "duration": st.dictionaries(
        st.sampled_from(["weeks", "days", "hours", "minutes"]),
        st.integers(min_value=0, max_value=500),
        min_size=1,
    ),
    "length": st.dictionaries(
        st.sampled_from(["eq", "neq", "gt", "gte", "lt", "lte"]),
        st.integers(min_value=0, max_value=5),
        min_size=1,
    ),
}


@st.composite
def valid_leaves(draw: st.DrawFn) -> dict[str, Any]:
    spec = OPERATORS[draw(st.sampled_from(sorted(OPERATORS)))]
    node: dict[str, Any] = {"field": draw(st.sampled_from(FIELDS)), "op": spec.name}
    if spec.takes_value:
        node["value"] = draw(VALUE_BY_SHAPE[spec.value])
    if "case_insensitive" in spec.options and draw(st.booleans()):
        node["case_insensitive"] = True
    if "timezone" in spec.options and draw(st.booleans()):
        node["timezone"] = draw(st.sampled_from(["Europe/Berlin", "Asia/Kolkata", "UTC"]))
    return node


valid_trees = st.recursive(
    valid_leaves(),
    lambda inner: st.one_of(
        st.builds(lambda cs: {"all": cs}, st.lists(inner, max_size=3)),
        st.builds(lambda cs: {"any": cs}, st.lists(inner, max_size=3)),
        st.builds(lambda c: {"not": c}, inner),
    ),
    max_leaves=6,
)

# Trees that are almost right: real keys and operators in wrong places and shapes.
junk_leaf = st.dictionaries(
    st.sampled_from(
        [
            "field",
            "op",
            "value",
            "type",
            "timezone",
            "case_insensitive",
            "all",
            "any",
            "not",
            "other",
        ]
    ),
    st.one_of(
        json_values,
        st.sampled_from(sorted(OPERATORS)),
        st.sampled_from(FIELDS),
        st.sampled_from(["number", "date", "array", "Europe/Berlin"]),
    ),
    max_size=5,
)
junk_trees = st.recursive(
    st.one_of(junk_leaf, json_values, valid_leaves()),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.builds(lambda cs: {"all": cs}, st.lists(inner, max_size=3)),
        st.builds(lambda cs: {"any": cs}, inner),
        st.builds(lambda c: {"not": c}, inner),
    ),
    max_leaves=8,
)

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def matched(tree: Any, context: Any) -> bool:
    return evaluate(tree, context, now=NOW).matched


def assert_no_internal_error(result: Evaluation) -> None:
    assert isinstance(result, Evaluation)
    assert result.error is None or result.error.code != INTERNAL, result.error
    for leaf in result.leaves:
        assert leaf.error is None or leaf.error.code != INTERNAL, leaf.error


@SETTINGS
@given(valid_trees, contexts)
def test_double_negation_is_identity(tree: Any, context: Any) -> None:
    assert matched({"not": {"not": tree}}, context) == matched(tree, context)


@SETTINGS
@given(valid_trees, valid_trees, contexts)
def test_not_all_is_any_of_nots(a: Any, b: Any, context: Any) -> None:
    left = matched({"not": {"all": [a, b]}}, context)
    right = matched({"any": [{"not": a}, {"not": b}]}, context)
    assert left == right


@SETTINGS
@given(valid_trees, valid_trees, contexts)
def test_not_any_is_all_of_nots(a: Any, b: Any, context: Any) -> None:
    left = matched({"not": {"any": [a, b]}}, context)
    right = matched({"all": [{"not": a}, {"not": b}]}, context)
    assert left == right


@SETTINGS
@given(valid_trees, contexts)
def test_single_member_groups_equal_their_member(tree: Any, context: Any) -> None:
    alone = matched(tree, context)
    assert matched({"all": [tree]}, context) == alone
    assert matched({"any": [tree]}, context) == alone


@SETTINGS
@given(contexts)
def test_empty_all_is_true_and_empty_any_is_false(context: Any) -> None:
    assert matched({"all": []}, context) is True
    assert matched({"any": []}, context) is False


@SETTINGS
@given(valid_trees, contexts)
def test_top_level_list_is_all_of(tree: Any, context: Any) -> None:
    assert matched([tree, tree], context) == matched({"all": [tree, tree]}, context)


NEGATIONS = {"neq": "eq", "not_in": "in", "not_contains": "contains", "is_not_empty": "is_empty"}


@SETTINGS
@given(valid_leaves(), contexts)
def test_negated_operators_are_exact_negations(node: dict[str, Any], context: Any) -> None:
    positive = {v: k for k, v in NEGATIONS.items()}
    if node["op"] not in positive:
        return
    twin = {**node, "op": positive[node["op"]]}
    mine, theirs = evaluate(node, context, now=NOW), evaluate(twin, context, now=NOW)
    if mine.leaves[0].error is None and theirs.leaves[0].error is None:
        assert mine.matched is not theirs.matched


@SETTINGS
@given(valid_trees, contexts)
def test_evaluate_never_raises_on_valid_trees(tree: Any, context: Any) -> None:
    assert_no_internal_error(evaluate(tree, context, now=NOW))


@SETTINGS
@given(junk_trees, contexts)
def test_evaluate_never_raises_on_malformed_trees(tree: Any, context: Any) -> None:
    result = evaluate(tree, context)
    assert_no_internal_error(result)
    if result.error is not None:
        assert result.matched is False


@SETTINGS
@given(junk_trees)
def test_check_never_raises_and_agrees_with_evaluate(tree: Any) -> None:
    problems = check(tree, lambda _: None)
    result = evaluate(tree, {})
    if result.error is not None:
        assert problems, result.error


@SETTINGS
@given(valid_trees, contexts)
def test_trace_is_json_safe(tree: Any, context: Any) -> None:
    import json

    json.dumps(evaluate(tree, context, now=NOW).as_dict())


def test_python_extremes_do_not_crash() -> None:
    context = {
        "contact": {
            "score": Decimal("NaN"),
            "created_at": datetime.max,
            "email": date.min,
            "tags": float("inf"),
        },
        "now": "9999-12-31T23:59:59+00:00",
        "workspace": {"timezone": "Pacific/Kiritimati"},
    }
    for name, spec in OPERATORS.items():
        for field in ("contact.score", "contact.created_at", "contact.email", "contact.tags"):
            node: dict[str, Any] = {"field": field, "op": name}
            if spec.takes_value:
                node["value"] = dict(spec.example)["value"]
            assert_no_internal_error(evaluate(node, context))
