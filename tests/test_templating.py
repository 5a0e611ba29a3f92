"""Templates in params: strict names, native single expressions, the sandbox, filters."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.templating import (
    FILTERS,
    MAX_OUTPUT_CHARS,
    TemplateError,
    referenced_paths,
    render,
    render_params,
)

CONTEXT: dict[str, Any] = {
    "contact": {
        "first_name": "ann",
        "last_name": "Lee",
        "score": 90,
        "middle_name": None,
        "tags": ["vip", "lead"],
        "created_at": "2026-03-28T23:30:00+00:00",
        "custom_fields": {"tier": "gold"},
    },
    "deal": {
        "amount": Decimal("1234.50"),
        "close_date": "2026-12-01",
        "updated_at": datetime(2026, 10, 25, 0, 30, tzinfo=UTC),
    },
    "trigger": {"items": [{"sku": "A", "qty": 2}, {"sku": "B", "qty": 1}], "keys": "k"},
    "steps": {"s1": {"output": {"text": "summary", "labels": ["x", "y"]}}},
    "workspace": {"id": "w1", "timezone": "Europe/Berlin"},
    "now": "2026-11-25T12:00:00+00:00",
}


def r(template: str) -> str:
    return render(template, CONTEXT)


def error_of(template: str) -> TemplateError:
    with pytest.raises(TemplateError) as caught:
        render(template, CONTEXT)
    return caught.value


# --- rendering and strict names -------------------------------------------------------------


def test_render_substitutes_paths() -> None:
    assert r("Hi {{ contact.first_name }} ({{ steps.s1.output.text }})") == "Hi ann (summary)"


def test_unknown_attribute_names_the_full_path() -> None:
    error = error_of("{{ contact.scroe }}")
    assert error.message == "unknown name 'contact.scroe'" and error.name == "contact.scroe"


def test_unknown_top_level_name_is_an_error() -> None:
    assert error_of("{{ contct.first_name }}").message == "unknown name 'contct'"


def test_unknown_name_in_a_condition_is_an_error() -> None:
    assert error_of("{% if contact.vip %}x{% endif %}").name == "contact.vip"


def test_unknown_deep_path_names_the_first_missing_level() -> None:
    assert error_of("{{ contact.custom_fields.size.value }}").name == "contact.custom_fields.size"


def test_missing_array_index_is_an_error() -> None:
    assert error_of("{{ contact.tags[7] }}").name == "contact.tags.7"


def test_template_error_carries_the_template() -> None:
    assert error_of("{{ nope }}").template == "{{ nope }}"


def test_null_renders_as_empty_text() -> None:
    assert r("[{{ contact.middle_name }}]") == "[]"


def test_default_covers_missing_values() -> None:
    assert r("{{ contact.nickname | default('there') }}") == "there"


def test_default_covers_null_values() -> None:
    assert r("{{ contact.middle_name | default('-') }}") == "-"


def test_default_covers_missing_chains() -> None:
    assert r("{{ contact.a.b.c | d('none') }}") == "none"


def test_default_keeps_falsy_values_unless_boolean() -> None:
    assert r("{{ 0 | default(5) }}|{{ '' | default('x', true) }}") == "0|x"


def test_is_defined_test_works_on_missing_names() -> None:
    assert r("{{ 'y' if contact.nickname is defined else 'n' }}") == "n"


def test_object_keys_win_over_dict_methods() -> None:
    assert r("{{ trigger.items | length }} {{ trigger.keys }}") == "2 k"


def test_items_filter_iterates_an_object() -> None:
    assert r("{% for k, v in contact.custom_fields | items %}{{ k }}={{ v }}{% endfor %}") == (
        "tier=gold"
    )


def test_loops_and_loop_helpers_work() -> None:
    template = (
        "{% for i in trigger.items %}{{ loop.index }}:{{ i.sku }}"
        "{{ loop.cycle(',', '') }}{% endfor %}"
    )
    assert r(template) == "1:A,2:B"


def test_macros_work() -> None:
    assert r("{% macro hi(n) %}Hi {{ n }}{% endmacro %}{{ hi(contact.last_name) }}") == "Hi Lee"


def test_whitelisted_string_methods_work() -> None:
    assert r("{{ contact.first_name.upper() }} {{ 'a,b'.split(',') | length }}") == "ANN 2"


def test_trailing_newline_is_kept() -> None:
    assert r("x\n") == "x\n"


def test_syntax_error_reports_the_line() -> None:
    assert error_of("ok\n{{ contact.first_name ").message.startswith("syntax error on line 2")


def test_unknown_filter_is_a_syntax_error() -> None:
    assert "No filter named 'shout'" in error_of("{{ 'x' | shout }}").message


def test_runtime_errors_become_template_errors() -> None:
    assert "division by zero" in error_of("{{ 1 / 0 }}").message


def test_include_is_not_available() -> None:
    assert error_of("{% include 'other.txt' %}").message


# --- sandbox ----------------------------------------------------------------------------------

BLOCKED = [
    pytest.param("{{ ''.__class__ }}", id="dunder-on-string"),
    pytest.param("{{ ''.__class__.__mro__[1].__subclasses__() }}", id="subclasses-walk"),
    pytest.param("{{ contact.first_name.__class__ }}", id="dunder-on-context-value"),
    pytest.param("{{ cycler.__init__.__globals__ }}", id="globals-walk"),
    pytest.param("{{ range.__self__ }}", id="builtin-self"),
    pytest.param("{{ contact.tags.append('x') }}", id="mutating-context"),
    pytest.param("{{ contact.tags.pop() }}", id="pop-on-context"),
    pytest.param("{{ '{0.__class__}'.format(1) }}", id="str-format"),
    pytest.param("{{ '%s' % contact.first_name }}", id="percent-format"),
    pytest.param("{{ 'x'.center(10**8) }}", id="unlisted-method"),
    pytest.param("{{ lipsum(10**6) }}", id="lipsum"),
]


@pytest.mark.parametrize("template", BLOCKED)
def test_sandbox_blocks(template: str) -> None:
    error_of(template)


def test_dunder_on_a_context_object_is_just_an_unknown_key() -> None:
    assert error_of("{{ contact.__class__ }}").name == "contact.__class__"


def test_sandbox_error_says_not_allowed() -> None:
    assert error_of("{{ ''.__class__ }}").message.startswith("not allowed:")


def test_context_is_not_mutated_by_rendering() -> None:
    tags = list(CONTEXT["contact"]["tags"])
    with pytest.raises(TemplateError):
        r("{% set _ = contact.tags.append('x') %}")
    assert CONTEXT["contact"]["tags"] == tags


BOMBS = [
    pytest.param("{{ 'a' * 10**9 }}", id="string-repeat"),
    pytest.param("{{ [1] * 10**9 }}", id="list-repeat"),
    pytest.param("{{ 2 ** 100000 }}", id="huge-power"),
    pytest.param("{% set n = 10**100 %}{{ n * n * n * n }}", id="huge-product"),
    pytest.param(
        "{% set ns = namespace(s='ab') %}{% for i in range(30) %}"
        "{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
        id="concat-doubling",
    ),
    pytest.param(
        "{% set ns = namespace(s='ab') %}{% for i in range(30) %}"
        "{% set ns.s = ns.s + ns.s %}{% endfor %}",
        id="plus-doubling",
    ),
    pytest.param(
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        id="nested-ranges",
    ),
    pytest.param(
        "{% macro f(n) %}{{ f(n) }}{{ f(n) }}{% endmacro %}{{ f(1) }}", id="macro-recursion"
    ),
    pytest.param("{{ range(10**9) | list }}", id="huge-range"),
    pytest.param("{{ range(50000) | join('x' * 100) }}", id="join-amplifies"),
    pytest.param(
        "{% set s = 'a' * 1000 %}{{ s.replace('a', s).replace('a', s) }}",
        id="replace-method-amplifies",
    ),
    pytest.param(
        "{% set s = 'a' * 1000 %}{{ s | replace('a', s) | replace('a', s) }}",
        id="replace-filter-amplifies",
    ),
    pytest.param(
        "{% for i in range(90000) %}{{ 'abcdefghijklmnop' }}{% endfor %}", id="output-over-the-cap"
    ),
    pytest.param("{{ contact | tojson(indent=10**9) }}", id="tojson-indent"),
]


@pytest.mark.parametrize("template", BOMBS)
def test_resource_bombs_fail_fast(template: str) -> None:
    error_of(template)


def test_output_cap_is_one_megabyte() -> None:
    assert MAX_OUTPUT_CHARS == 1_000_000
    assert (
        "longer than"
        in error_of("{% for i in range(90000) %}{{ 'abcdefghijklmnop' }}{% endfor %}").message
    )


@pytest.mark.parametrize(
    "name",
    [
        "center",
        "indent",
        "wordwrap",
        "format",
        "batch",
        "slice",
        "random",
        "pprint",
        "xmlattr",
        "urlize",
        "safe",
    ],
)
def test_amplifying_or_unsafe_filters_are_not_available(name: str) -> None:
    assert name not in FILTERS


# --- filters ----------------------------------------------------------------------------------

FILTER_CASES = [
    pytest.param("{{ contact.first_name | upper }}", "ANN", id="upper"),
    pytest.param("{{ 'ANN' | lower }}", "ann", id="lower"),
    pytest.param("{{ 'ann lee' | title }}", "Ann Lee", id="title"),
    pytest.param("{{ '  x  ' | trim }}", "x", id="trim"),
    pytest.param("{{ 'abcdefghij' | truncate(8, end='…', leeway=0) }}", "abcdefg…", id="truncate"),
    pytest.param("{{ 2.5 | round }}", "3.0", id="round-half-up-float"),
    pytest.param("{{ 0.125 | round(2) }}", "0.13", id="round-half-up-not-bankers"),
    pytest.param("{{ 7 | round }}", "7", id="round-int-stays-int"),
    pytest.param("{{ deal.amount | round(1) }}", "1234.5", id="round-decimal"),
    pytest.param("{{ '2.71' | round(1, 'floor') }}", "2.7", id="round-floor-text"),
    pytest.param("{{ 2.01 | round(0, 'ceil') }}", "3.0", id="round-ceil"),
    pytest.param("{{ '42' | int + 1 }}", "43", id="int"),
    pytest.param("{{ '1.5' | float * 2 }}", "3.0", id="float"),
    pytest.param("{{ contact.tags | join(', ') }}", "vip, lead", id="join"),
    pytest.param("{{ trigger.items | join('/', attribute='sku') }}", "A/B", id="join-attribute"),
    pytest.param("{{ [1, none, 2] | join('-') }}", "1--2", id="join-null-is-empty"),
    pytest.param(
        "{{ {'a': deal.amount, 'b': contact.tags} | tojson }}",
        '{"a": 1234.5, "b": ["vip", "lead"]}',
        id="tojson-decimal",
    ),
    pytest.param(
        "{{ deal.updated_at | tojson }}", '"2026-10-25T00:30:00+00:00"', id="tojson-datetime"
    ),
    pytest.param("{{ 'ü<' | tojson }}", '"ü<"', id="tojson-not-html-escaped"),
    pytest.param("{{ contact.created_at | date }}", "2026-03-29", id="date-in-workspace-zone"),
    pytest.param(
        "{{ contact.created_at | date('%d.%m.%Y', 'UTC') }}", "28.03.2026", id="date-in-given-zone"
    ),
    pytest.param("{{ deal.close_date | date('%d %b %Y') }}", "01 Dec 2026", id="date-of-a-day"),
    pytest.param(
        "{{ contact.created_at | datetime }}",
        "2026-03-29 00:30",
        id="datetime-before-spring-change",
    ),
    pytest.param(
        "{{ '2026-03-29T01:30:00Z' | datetime('%H:%M %Z') }}",
        "03:30 CEST",
        id="datetime-after-spring-change",
    ),
    pytest.param(
        "{{ deal.updated_at | datetime('%H:%M %Z') }}",
        "02:30 CEST",
        id="datetime-first-of-repeated-hour",
    ),
    pytest.param(
        "{{ '2026-10-25T01:30:00Z' | datetime('%H:%M %Z') }}",
        "02:30 CET",
        id="datetime-second-of-repeated-hour",
    ),
    pytest.param(
        "{{ '2026-11-25T23:30:00Z' | datetime('%Y-%m-%d %H:%M', 'America/New_York') }}",
        "2026-11-25 18:30",
        id="datetime-in-given-zone",
    ),
    pytest.param("{{ contact.middle_name | date }}", "", id="date-of-null"),
    pytest.param("{{ deal.close_date | days_until }}", "6", id="days_until-future"),
    pytest.param("{{ '2026-11-20' | days_until }}", "-5", id="days_until-past"),
    pytest.param(
        "{{ '2026-11-25T23:30:00Z' | days_until }}", "1", id="days_until-local-day-of-timestamp"
    ),
    pytest.param("{{ deal.amount | money('EUR') }}", "€1,234.50", id="money-eur"),
    pytest.param("{{ 1234.5 | money('usd') }}", "$1,234.50", id="money-lowercase-code"),
    pytest.param("{{ '1234.5' | money('JPY') }}", "¥1,235", id="money-zero-decimals"),
    pytest.param("{{ 1.2345 | money('KWD') }}", "1.235 KWD", id="money-three-decimals"),
    pytest.param(
        "{{ -1234567.891 | money('CHF') }}", "-1,234,567.89 CHF", id="money-code-after-amount"
    ),
    pytest.param("{{ 0.005 | money('EUR') }}", "€0.01", id="money-half-up"),
    pytest.param(
        "{{ contact.tags | first }}/{{ contact.tags | last }}", "vip/lead", id="first-last"
    ),
    pytest.param("{{ trigger.items | map(attribute='qty') | sum }}", "3", id="map-sum"),
    pytest.param(
        "{{ trigger.items | selectattr('qty', 'gt', 1) | map(attribute='sku') | join }}",
        "A",
        id="selectattr",
    ),
]


@pytest.mark.parametrize(("template", "expected"), FILTER_CASES)
def test_filters(template: str, expected: str) -> None:
    assert r(template) == expected


@pytest.mark.parametrize(
    "template",
    [
        pytest.param("{{ 'abc' | money('EUR') }}", id="money-not-a-number"),
        pytest.param("{{ 1 | money('EURO') }}", id="money-bad-code"),
        pytest.param("{{ 'soon' | date }}", id="date-not-iso"),
        pytest.param("{{ contact.created_at | date('%Y', 'Mars/Base') }}", id="date-bad-zone"),
        pytest.param("{{ 'x' | round }}", id="round-not-a-number"),
        pytest.param("{{ 1 | round(2, 'up') }}", id="round-bad-method"),
    ],
)
def test_filter_errors_are_template_errors(template: str) -> None:
    error_of(template)


def test_filter_error_names_the_filter() -> None:
    assert error_of("{{ 'soon' | date }}").message.startswith("date filter:")


def test_every_filter_is_documented() -> None:
    from pathlib import Path

    docs = (Path(__file__).resolve().parent.parent / "docs" / "conditions.md").read_text()
    missing = [name for name in FILTERS if f"`{name}" not in docs]
    assert missing == []


# --- render_params ------------------------------------------------------------------------------


def test_single_expression_keeps_the_native_number() -> None:
    assert render_params("{{ contact.score }}", CONTEXT) == 90


def test_single_expression_keeps_a_native_list() -> None:
    assert render_params({"to": "{{ contact.tags }}"}, CONTEXT) == {"to": ["vip", "lead"]}


def test_single_expression_keeps_null() -> None:
    assert render_params("{{ contact.middle_name }}", CONTEXT) is None


def test_single_expression_keeps_decimal() -> None:
    assert render_params("{{ deal.amount }}", CONTEXT) == Decimal("1234.50")


def test_single_expression_with_filters_is_native() -> None:
    assert render_params("{{ trigger.items | map(attribute='qty') | list }}", CONTEXT) == [2, 1]


def test_single_expression_iterator_becomes_a_list() -> None:
    assert render_params("{{ contact.tags | map('upper') }}", CONTEXT) == ["VIP", "LEAD"]


def test_single_expression_with_whitespace_control_is_native() -> None:
    assert render_params("{{- contact.score -}}", CONTEXT) == 90


def test_text_around_an_expression_renders_text() -> None:
    assert render_params("{{ contact.score }} points", CONTEXT) == "90 points"


def test_surrounding_whitespace_renders_text() -> None:
    assert render_params(" {{ contact.score }}", CONTEXT) == " 90"


def test_two_expressions_render_text() -> None:
    assert render_params("{{ contact.score }}{{ contact.score }}", CONTEXT) == "9090"


def test_params_are_rendered_recursively() -> None:
    params = {
        "subject": "Hi {{ contact.first_name | title }}",
        "n": 3,
        "ok": True,
        "nested": [{"x": "{{ contact.score + 1 }}"}, None],
    }
    assert render_params(params, CONTEXT) == {
        "subject": "Hi Ann",
        "n": 3,
        "ok": True,
        "nested": [{"x": 91}, None],
    }


def test_param_keys_are_not_rendered() -> None:
    assert render_params({"{{ contact.score }}": "x"}, CONTEXT) == {"{{ contact.score }}": "x"}


def test_unknown_name_in_a_single_expression_is_an_error() -> None:
    with pytest.raises(TemplateError) as caught:
        render_params({"a": "{{ contact.scroe }}"}, CONTEXT)
    assert caught.value.message == "unknown name 'contact.scroe'"


def test_single_expression_that_is_not_data_is_an_error() -> None:
    with pytest.raises(TemplateError):
        render_params("{{ namespace }}", CONTEXT)


def test_single_expression_sandbox_applies() -> None:
    with pytest.raises(TemplateError):
        render_params("{{ ''.__class__ }}", CONTEXT)


text_without_markers = st.text().filter(lambda s: "{{" not in s and "{%" not in s)
plain_params = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), text_without_markers
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=15,
)


@settings(max_examples=300, deadline=None)
@given(plain_params)
def test_render_params_without_markers_is_identity(params: Any) -> None:
    assert render_params(params, CONTEXT) == params


@settings(max_examples=200, deadline=None)
@given(text_without_markers)
def test_strings_without_markers_are_returned_untouched(text: str) -> None:
    assert render_params(text, {}) is text


# --- referenced_paths ---------------------------------------------------------------------

PATHS = [
    pytest.param("Hi {{ contact.first_name }}", {"contact.first_name"}, id="attribute"),
    pytest.param("{{ steps.s1.output.text | upper }}", {"steps.s1.output.text"}, id="filtered"),
    pytest.param(
        "{{ contact['custom_fields']['tier'] }}",
        {"contact.custom_fields.tier"},
        id="constant-subscripts",
    ),
    pytest.param("{{ trigger.items[0].sku }}", {"trigger.items.0.sku"}, id="index"),
    pytest.param("{{ contact[trigger.key].x }}", {"contact", "trigger.key"}, id="dynamic-key"),
    pytest.param("{{ contact.first_name.upper() }}", {"contact.first_name"}, id="method-call"),
    pytest.param(
        "{% for t in contact.tags %}{{ t.name }}{{ loop.index }}{% endfor %}",
        {"contact.tags"},
        id="loop-variables-excluded",
    ),
    pytest.param(
        "{% set x = deal.amount %}{{ x }}{{ range(3) | list }}",
        {"deal.amount"},
        id="set-and-globals-excluded",
    ),
    pytest.param(
        "{% macro m(a) %}{{ a.b }}{% endmacro %}{{ m(contact) }}",
        {"contact"},
        id="macro-arguments-excluded",
    ),
    pytest.param(
        "{% if deal.stage == 'won' %}{{ now | date }}{% endif %}",
        {"deal.stage", "now"},
        id="conditions-and-filters",
    ),
    pytest.param(
        "{{ contact.nick | default(contact.first_name) }}",
        {"contact.nick", "contact.first_name"},
        id="filter-arguments",
    ),
    pytest.param("plain text", set(), id="no-template"),
]


@pytest.mark.parametrize(("template", "expected"), PATHS)
def test_referenced_paths(template: str, expected: set[str]) -> None:
    assert referenced_paths(template) == expected


def test_referenced_paths_raises_on_syntax_errors() -> None:
    with pytest.raises(TemplateError):
        referenced_paths("{{ contact. }}")


def test_referenced_paths_raises_on_unknown_filters() -> None:
    with pytest.raises(TemplateError):
        referenced_paths("{{ contact.first_name | shout }}")


def test_native_values_of_python_types_pass_through() -> None:
    context = {"d": date(2026, 1, 1), "t": datetime(2026, 1, 1, tzinfo=UTC)}
    assert render_params(["{{ d }}", "{{ t }}"], context) == [context["d"], context["t"]]
