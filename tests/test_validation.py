"""``haste validate``: exact pointers and messages for a catalogue of broken documents, and
the field catalogue the semantic checks rely on (engine.fields)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from engine import conditions, fields
from engine.definitions import Problem
from engine.validation import format_problem, problems_as_json, validate_document, validate_files

Doc = dict[str, Any]


def lead_rule() -> Doc:
    """A valid contact automation every catalogue case breaks in one place."""
    return {
        "name": "Hot lead",
        "trigger_type": "contact_updated",
        "trigger_config": {"watch": ["score"]},
        "conditions": {
            "all": [
                {"field": "contact.score", "op": "gte", "value": 80},
                {"field": "contact.email", "op": "matches", "value": "@example\\.com$"},
            ]
        },
        "actions": [
            {
                "id": "promote",
                "type": "update_record",
                "params": {"fields": {"lifecycle_stage": "MQL"}},
            },
            {"id": "tag", "type": "add_tag", "params": {"tag": "hot"}},
            {
                "id": "notify",
                "type": "send_email",
                "params": {
                    "to": "{{ contact.email }}",
                    "subject": "Hot: {{ contact.first_name }}",
                    "body_text": "Score {{ contact.score }}",
                },
            },
            {
                "id": "route",
                "type": "branch",
                "params": {
                    "cases": [
                        {
                            "if": {"field": "contact.country", "op": "eq", "value": "DE"},
                            "steps": [
                                {
                                    "id": "de_task",
                                    "type": "create_task",
                                    "params": {"title": "Call"},
                                }
                            ],
                        }
                    ],
                    "default": [
                        {"id": "other_note", "type": "add_note", "params": {"content": "n"}}
                    ],
                },
            },
        ],
    }


def report_rule() -> Doc:
    """A valid scheduled automation (no record)."""
    return {
        "name": "Report",
        "trigger_type": "time_based",
        "trigger_config": {"cron": "0 9 * * 1-5", "timezone": "Europe/Paris"},
        "actions": [
            {
                "id": "post",
                "type": "http_request",
                "params": {
                    "url": "https://hooks.example.com/x",
                    "json": {"text": "{{ workspace.name }}"},
                },
            },
        ],
    }


def deal_rule() -> Doc:
    return {
        "name": "Deal",
        "trigger_type": "deal_created",
        "trigger_config": {},
        "actions": [{"id": "note", "type": "add_note", "params": {"content": "{{ deal.title }}"}}],
    }


def test_the_catalogue_base_documents_are_valid() -> None:
    for doc in (lead_rule(), report_rule(), deal_rule()):
        assert validate_document(doc) == []


def at(doc: Doc, pointer: str, value: Any) -> Doc:
    """``doc`` with the member at ``pointer`` set (or deleted when value is DELETE)."""
    parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]
    node: Any = doc
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    last = parts[-1]
    key: Any = int(last) if isinstance(node, list) else last
    if value is DELETE:
        del node[key]
    else:
        node[key] = value
    return doc


DELETE = object()


def nested_not(levels: int) -> dict[str, Any]:
    node: dict[str, Any] = {"field": "contact.score", "op": "exists"}
    for _ in range(levels):
        node = {"not": node}
    return node


OPS = list(conditions.OPERATORS)
NOT_RUN = "has not run at this point (steps.<id> may only refer to earlier steps)"

CATALOGUE: list[tuple[str, Callable[[], Doc], list[tuple[str, str]]]] = [
    (
        "missing tag",
        lambda: at(lead_rule(), "/actions/1/params/tag", DELETE),
        [("/actions/1/params/tag", "'tag' is a required property")],
    ),
    (
        "unknown op",
        lambda: at(lead_rule(), "/conditions/all/0/op", "gtee"),
        [("/conditions/all/0/op", f"'gtee' is not one of {OPS!r}; did you mean 'gte'?")],
    ),
    (
        "unknown field with suggestion",
        lambda: at(lead_rule(), "/conditions/all/0/field", "contact.scroe"),
        [("/conditions/all/0/field", "unknown field 'scroe' on contact; did you mean 'score'?")],
    ),
    (
        "gte a string on a number",
        lambda: at(lead_rule(), "/conditions/all/0/value", "abc"),
        [
            (
                "/conditions/all/0/value",
                "'gte' on number field 'contact.score' needs a number, got \"abc\"",
            )
        ],
    ),
    (
        "operator that does not apply to the field type",
        lambda: at(lead_rule(), "/conditions/all/1/field", "contact.score"),
        [("/conditions/all/1/op", "'matches' does not apply to number field 'contact.score'")],
    ),
    (
        "value on an operator that takes none",
        lambda: at(lead_rule(), "/conditions/all/0/op", "is_empty"),
        [("/conditions/all/0/value", "'is_empty' takes no 'value'")],
    ),
    (
        "bad regex",
        lambda: at(lead_rule(), "/conditions/all/1/value", "(a"),
        [("/conditions/all/1/value", "invalid regex: missing ): (a")],
    ),
    (
        "field of another record",
        lambda: at(lead_rule(), "/conditions/all/0/field", "deal.value"),
        [
            (
                "/conditions/all/0/field",
                "'deal.value' is not available: this automation's record is a contact",
            )
        ],
    ),
    (
        "unknown field in a step condition",
        lambda: at(lead_rule(), "/actions/1/if", {"field": "contact.ownr_id", "op": "exists"}),
        [("/actions/1/if/field", "unknown field 'ownr_id' on contact; did you mean 'owner_id'?")],
    ),
    (
        "unknown field in a top-level list of conditions",
        lambda: at(lead_rule(), "/conditions", [{"field": "contact.scroe", "op": "exists"}]),
        [("/conditions/0/field", "unknown field 'scroe' on contact; did you mean 'score'?")],
    ),
    (
        "conditions nested deeper than the evaluator allows",
        lambda: at(lead_rule(), "/conditions", nested_not(conditions.MAX_DEPTH + 1)),
        [
            (
                "/conditions" + "/not" * (conditions.MAX_DEPTH + 1),
                f"conditions nest deeper than {conditions.MAX_DEPTH} levels",
            )
        ],
    ),
    (
        "watch an unknown column",
        lambda: at(lead_rule(), "/trigger_config/watch/0", "scroe"),
        [("/trigger_config/watch/0", "unknown field 'scroe' on contact; did you mean 'score'?")],
    ),
    (
        "transition value of the wrong type",
        lambda: at(lead_rule(), "/trigger_config/transition", {"field": "score", "to": "high"}),
        [("/trigger_config/transition/to", "'contact.score' is a number field, got \"high\"")],
    ),
    (
        "bad cron: field count",
        lambda: at(report_rule(), "/trigger_config/cron", "0 9 * *"),
        [
            (
                "/trigger_config/cron",
                "cron expression needs 5 fields (minute hour day-of-month month day-of-week), got 4",  # noqa: E501
            )
        ],
    ),
    (
        "bad cron: never fires",
        lambda: at(report_rule(), "/trigger_config/cron", "0 9 31 2 *"),
        [("/trigger_config/cron", "cron expression '0 9 31 2 *' never fires")],
    ),
    (
        "bad timezone",
        lambda: at(report_rule(), "/trigger_config/timezone", "Europe/Pari"),
        [
            (
                "/trigger_config/timezone",
                "unknown timezone \"Europe/Pari\"; did you mean 'Europe/Paris'?",
            )
        ],
    ),
    (
        "owner timezone without a record",
        lambda: at(report_rule(), "/trigger_config/timezone", "owner"),
        [
            (
                "/trigger_config/timezone",
                "timezone 'owner' needs a record, and trigger 'time_based' has no record",
            )
        ],
    ),
    (
        "two time_based modes at once",
        lambda: at(report_rule(), "/trigger_config/date_field", "deal.expected_close_date"),
        [("/trigger_config", "'cron' and 'date_field' cannot be used together")],
    ),
    (
        "date_field that is not a date",
        lambda: at(
            at(report_rule(), "/trigger_config/cron", DELETE),
            "/trigger_config/date_field",
            "deal.value",
        ),
        [("/trigger_config/date_field", "'deal.value' is a decimal, not a date or timestamp")],
    ),
    (
        "wrong trigger_config for the trigger type",
        lambda: at(lead_rule(), "/trigger_config", {"tag": "vip"}),
        [("/trigger_config/tag", "Additional properties are not allowed ('tag' was unexpected)")],
    ),
    (
        "unknown top-level property",
        lambda: at(lead_rule(), "/trigger", {}),
        [
            (
                "/trigger",
                "Additional properties are not allowed ('trigger' was unexpected; did you mean "
                "'trigger_type'?)",
            )
        ],
    ),
    (
        "duplicate step id inside a branch",
        lambda: at(lead_rule(), "/actions/3/params/cases/0/steps/0/id", "tag"),
        [
            (
                "/actions/3/params/cases/0/steps/0/id",
                "duplicate step id 'tag' (first used at /actions/1)",
            )
        ],
    ),
    (
        "goto to a missing step",
        lambda: at(lead_rule(), "/actions/0/on_error", "goto:notfy"),
        [
            (
                "/actions/0/on_error",
                "goto target 'notfy' is not a step of this automation; did you mean 'notify'?",
            )
        ],
    ),
    (
        "goto backwards",
        lambda: at(lead_rule(), "/actions/2/on_error", "goto:promote"),
        [
            (
                "/actions/2/on_error",
                "goto target 'promote' must be a later step of this list or of an enclosing one",
            )
        ],
    ),
    (
        "template with an unknown name",
        lambda: at(lead_rule(), "/actions/2/params/subject", "Hot: {{ contcat.first_name }}"),
        [("/actions/2/params/subject", "unknown name 'contcat'; did you mean 'contact'?")],
    ),
    (
        "template with an unknown field",
        lambda: at(lead_rule(), "/actions/2/params/body_text", "{{ contact.frist_name }}"),
        [
            (
                "/actions/2/params/body_text",
                "unknown field 'frist_name' on contact; did you mean 'first_name'?",
            )
        ],
    ),
    (
        "template syntax error",
        lambda: at(lead_rule(), "/actions/2/params/subject", "Hot: {{ contact.first_name }"),
        [("/actions/2/params/subject", "invalid template: syntax error on line 1: unexpected '}'")],
    ),
    (
        "steps ref to a later step",
        lambda: at(lead_rule(), "/actions/0/params/fields/title", "{{ steps.notify.output.id }}"),
        [("/actions/0/params/fields/title", f"step 'notify' {NOT_RUN}")],
    ),
    (
        "steps ref to a sibling case",
        lambda: at(
            lead_rule(),
            "/actions/3/params/default/0/params/content",
            "{{ steps.de_task.output.id }}",
        ),
        [("/actions/3/params/default/0/params/content", f"step 'de_task' {NOT_RUN}")],
    ),
    (
        "steps ref in the automation's conditions",
        lambda: at(lead_rule(), "/conditions/all/0/field", "steps.promote.output.x"),
        [("/conditions/all/0/field", f"step 'promote' {NOT_RUN}")],
    ),
    (
        "steps ref to an unknown step",
        lambda: at(lead_rule(), "/actions/2/params/subject", "{{ steps.promot.output }}"),
        [("/actions/2/params/subject", "unknown step 'promot'; did you mean 'promote'?")],
    ),
    (
        "update of an unknown column",
        lambda: at(lead_rule(), "/actions/0/params/fields", {"lifecyle_stage": "MQL"}),
        [
            (
                "/actions/0/params/fields/lifecyle_stage",
                "unknown field 'lifecyle_stage' on contact; did you mean 'lifecycle_stage'?",
            )
        ],
    ),
    (
        "update of an engine-maintained column",
        lambda: at(lead_rule(), "/actions/0/params/fields", {"updated_at": "2025-01-01T00:00:00Z"}),
        [
            (
                "/actions/0/params/fields/updated_at",
                "'updated_at' is maintained by the engine and cannot be set",
            )
        ],
    ),
    (
        "update with a literal of the wrong type",
        lambda: at(lead_rule(), "/actions/0/params/fields", {"score": "high"}),
        [("/actions/0/params/fields/score", "'contact.score' is a number field, got \"high\"")],
    ),
    (
        "create_record without a NOT NULL column",
        lambda: at(
            lead_rule(),
            "/actions/0",
            {
                "id": "c",
                "type": "create_record",
                "params": {"entity": "company", "fields": {"domain": "example.com"}},
            },
        ),
        [("/actions/0/params/fields/name", "'name' is required to create a company")],
    ),
    (
        "record action without a record to default to",
        lambda: at(
            report_rule(), "/actions/0", {"id": "t", "type": "add_tag", "params": {"tag": "x"}}
        ),
        [
            (
                "/actions/0/params/record",
                "'record' is required: trigger 'time_based' has no record (add_tag defaults to the "
                "trigger's contact or company)",
            )
        ],
    ),
    (
        "previous values without a record-change trigger",
        lambda: at(
            report_rule(), "/conditions", {"field": "previous.contact.score", "op": "exists"}
        ),
        [
            (
                "/conditions/field",
                "'previous.contact.score' is not available: previous values exist only for "
                "record-change triggers",
            )
        ],
    ),
    (
        "related record used without its parent",
        lambda: at(deal_rule(), "/actions/0/params/content", "{{ contact.email }}"),
        [
            (
                "/actions/0/params/content",
                "'contact.email' is not available: this automation's record is a deal; did you mean "  # noqa: E501
                "'deal.contact.email'?",
            )
        ],
    ),
    (
        "change_deal_stage outside a deal automation",
        lambda: at(
            lead_rule(),
            "/actions/1",
            {"id": "s", "type": "change_deal_stage", "params": {"stage": "Won"}},
        ),
        [("/actions/1/params/deal", "'deal' is required: this automation's record is a contact")],
    ),
    (
        "duration written as a string",
        lambda: at(
            lead_rule(), "/actions/1", {"id": "w", "type": "delay", "params": {"duration": "5m"}}
        ),
        [("/actions/1/params/duration", "'5m' is not of type 'object'")],
    ),
    (
        "delay option of another mode",
        lambda: at(
            lead_rule(),
            "/actions/1",
            {"id": "w", "type": "delay", "params": {"duration": {"days": 1}, "time": "09:00"}},
        ),
        [("/actions/1/params/time", "'time' only applies with 'until_field'")],
    ),
    (
        "business hours that end before they start",
        lambda: at(
            lead_rule(),
            "/actions/1",
            {
                "id": "w",
                "type": "delay",
                "params": {"business_hours": {"days": ["mon"], "start": "17:00", "end": "09:00"}},
            },
        ),
        [("/actions/1/params/business_hours/end", "'end' must be after 'start'")],
    ),
    (
        "step id that is no identifier",
        lambda: at(lead_rule(), "/actions/1/id", "2nd-step"),
        [
            (
                "/actions/1/id",
                "'2nd-step': must be an identifier (letters, digits, _; not starting with a digit)",
            )
        ],
    ),
]


@pytest.mark.parametrize(
    ("build", "expected"),
    [(build, expected) for _, build, expected in CATALOGUE],
    ids=[name for name, _, _ in CATALOGUE],
)
def test_broken_document_reports_exact_pointer_and_message(
    build: Callable[[], Doc], expected: list[tuple[str, str]]
) -> None:
    problems = validate_document(build(), file="rule.json")
    assert [(p.pointer, p.message) for p in problems] == expected
    assert {p.file for p in problems} == {"rule.json"}


def test_json_syntax_error_is_reported_with_its_line_number(tmp_path: Path) -> None:
    path = tmp_path / "rule.json"
    path.write_text('{\n  "name": "x",\n  "trigger_type": "manual"\n  "actions": []\n}\n')
    assert [format_problem(p) for p in validate_files([path])] == [
        f"{path}: invalid JSON: Expecting ',' delimiter at line 4 column 3"
    ]


# --- reporting --------------------------------------------------------------------------


def test_every_problem_of_a_document_is_reported_at_once_in_document_order() -> None:
    doc = lead_rule()
    at(doc, "/conditions/all/0/field", "contact.scroe")
    at(doc, "/actions/1/params/tag", DELETE)
    at(doc, "/actions/2/params/subject", "{{ contcat }}")
    assert [p.pointer for p in validate_document(doc)] == [
        "/conditions/all/0/field",
        "/actions/1/params/tag",
        "/actions/2/params/subject",
    ]


def test_a_leaf_that_fails_the_schema_is_not_checked_again() -> None:
    doc = at(lead_rule(), "/conditions/all/0/op", "bogus")
    assert [p.pointer for p in validate_document(doc)] == ["/conditions/all/0/op"]


def test_validate_files_reports_each_file_under_its_name(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(json.dumps(lead_rule()))
    bad.write_text(json.dumps(at(lead_rule(), "/actions/1/params/tag", DELETE)))
    assert [format_problem(p) for p in validate_files([good, bad])] == [
        f"{bad}:/actions/1/params/tag: 'tag' is a required property"
    ]


def test_duplicate_keys_are_reported_with_the_other_problems(tmp_path: Path) -> None:
    path = tmp_path / "rule.json"
    text = json.dumps(at(lead_rule(), "/actions/1/params/tag", DELETE))
    path.write_text(text.replace('"name": "Hot lead"', '"name": "a", "name": "Hot lead"'))
    assert [(p.pointer, p.message) for p in validate_files([path])] == [
        ("/name", "duplicate key 'name' (only the last one counts)"),
        ("/actions/1/params/tag", "'tag' is a required property"),
    ]


def test_format_problem_is_file_pointer_message() -> None:
    problem = Problem("/actions/2/params/tag", "'tag' is a required property", "rule.json")
    assert format_problem(problem) == (
        "rule.json:/actions/2/params/tag: 'tag' is a required property"
    )


def test_format_problem_of_the_whole_file_has_no_pointer() -> None:
    problem = Problem("", "invalid JSON: x", "rule.json")
    assert format_problem(problem) == "rule.json: invalid JSON: x"


def test_problems_as_json_lists_file_pointer_and_message() -> None:
    problems = [Problem("/name", "'name' is a required property", "a.json")]
    assert problems_as_json(problems) == [
        {"file": "a.json", "pointer": "/name", "message": "'name' is a required property"}
    ]


# --- what is allowed ----------------------------------------------------------------------


def test_top_level_conditions_may_be_a_list_meaning_all_of() -> None:
    doc = at(lead_rule(), "/conditions", [{"field": "contact.score", "op": "gte", "value": 1}])
    assert validate_document(doc) == []


def test_steps_of_a_branch_are_visible_after_it() -> None:
    doc = lead_rule()
    doc["actions"].append(
        {"id": "after", "type": "add_note", "params": {"content": "{{ steps.de_task.output.id }}"}}
    )
    assert validate_document(doc) == []


def test_goto_may_leave_a_branch_case_forward() -> None:
    doc = lead_rule()
    doc["actions"].append({"id": "last", "type": "add_note", "params": {"content": "x"}})
    at(doc, "/actions/3/params/cases/0/steps/0/on_error", "goto:last")
    assert validate_document(doc) == []


def test_related_record_fields_are_one_hop_along_foreign_keys() -> None:
    content = "{{ deal.contact.email }} {{ deal.company.name }}"
    doc = at(deal_rule(), "/actions/0/params/content", content)
    assert validate_document(doc) == []


def test_templates_in_nested_params_are_checked() -> None:
    doc = at(report_rule(), "/actions/0/params/json", {"a": [{"b": "{{ workspace.nmae }}"}]})
    assert [(p.pointer, p.message) for p in validate_document(doc)] == [
        ("/actions/0/params/json/a/0/b", "unknown field 'nmae' on workspace; did you mean 'name'?")
    ]


def test_validation_does_not_modify_the_document() -> None:
    doc = lead_rule()
    before = copy.deepcopy(doc)
    validate_document(doc)
    assert doc == before


# --- the field catalogue ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("contact.score", "number"),
        ("contact.email", "string"),
        ("contact.owner_id", "uuid"),
        ("contact.created_at", "timestamp"),
        ("contact.custom_fields.plan.tier", "json"),
        ("contact.tags", "array"),
        ("contact", "json"),
        ("previous.contact.lifecycle_stage", "string"),
        ("deal.value", "decimal"),
        ("deal.expected_close_date", "date"),
        ("deal.contact.email", "string"),
        ("deal.company.annual_revenue", "decimal"),
        ("email.references", "array"),
        ("email.is_sent", "boolean"),
        ("task.due_date", "date"),
        ("note.mentions", "array"),
        ("trigger.anything.at.all", "json"),
        ("event.depth", "json"),
        ("steps.classify.output", "json"),
        ("steps.classify.output.category", "json"),
        ("workspace.timezone", "string"),
        ("now", "timestamp"),
    ],
)
def test_field_type_of_a_known_path(path: str, kind: str) -> None:
    assert fields.field_type(path) == kind


@pytest.mark.parametrize(
    "path",
    [
        "contact.embedding",  # vectors are not fields
        "contact.score.x",  # a number has no sub-fields
        "deal.contact.company.name",  # one hop only
        "previous.deal.contact.email",  # previous has no relations
        "steps.classify",  # a step is read through .output
        "workspace.plan",
        "now.day",
        "contact..score",
        "lead.score",
    ],
)
def test_field_type_of_an_unknown_path_is_none(path: str) -> None:
    assert fields.field_type(path) is None


def test_suggest_fixes_the_wrong_segment() -> None:
    assert fields.suggest("deal.contcat.email") == "deal.contact.email"


def test_fields_come_from_the_migrations() -> None:
    assert fields.columns("deal")["stage_entered_at"] == "timestamp"
    assert fields.relations("email") == {"contact": "contact", "deal": "deal"}


def test_writable_columns_exclude_engine_maintained_ones() -> None:
    writable = fields.writable_columns("contact")
    assert "score" in writable
    assert not {"id", "workspace_id", "created_at", "updated_at", "tags"} & set(writable)


def test_required_columns_of_a_deal_are_its_not_null_columns_without_default() -> None:
    assert fields.required_columns("deal") == ("title", "pipeline_id", "stage_id", "owner_id")
