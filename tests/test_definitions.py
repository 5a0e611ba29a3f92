"""The published JSON Schemas and the loading/schema layer (engine.definitions).

Also the sync tests that keep the copies of a fact together: trigger types, AI task types
and activity types against the spec's CHECK lists, operators against engine.conditions.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from engine import conditions
from engine.ddl import parse_spec, string_literals
from engine.definitions import (
    ACTIONS_DIR,
    MAIN_SCHEMA_ID,
    MAIN_SCHEMA_PATH,
    MAX_NESTING,
    Problem,
    action_types,
    iter_steps,
    load_document,
    load_schemas,
    parse_duration,
    pointer_join,
    record_entity,
    registry,
    schema_problems,
    trigger_types,
)

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "docs" / "crm-schema.md"
if not SPEC.exists():
    SPEC = Path("/work/shared/spec/crm-schema.md")


def spec_check_values(table: str, constraint: str) -> list[str]:
    """The allowed values of a CHECK (... IN (...)) constraint of the spec."""
    spec = parse_spec(SPEC.read_text(encoding="utf-8"))
    for con in spec.tables[table].all_constraints():
        if con.kind == "CHECK" and con.name == constraint:
            return string_literals(con.expression or "")
    raise AssertionError(f"no CHECK {constraint} on {table} in {SPEC}")


def main_schema() -> dict[str, Any]:
    return load_schemas()[MAIN_SCHEMA_ID]


def action_schema(action: str) -> dict[str, Any]:
    return load_schemas()[f"https://schemas.haste.dev/actions/{action}.json"]


def schema_files() -> list[Path]:
    return [MAIN_SCHEMA_PATH, *sorted(ACTIONS_DIR.glob("*.json"))]


def minimal(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": "t",
        "trigger_type": "contact_tagged",
        "trigger_config": {"tag": "vip"},
        "actions": [{"id": "a", "type": "add_tag", "params": {"tag": "x"}}],
    }
    doc.update(overrides)
    return doc


# --- the schema files ---------------------------------------------------------------------


@pytest.mark.parametrize("path", schema_files(), ids=lambda p: p.name)
def test_schema_file_is_valid_against_the_2020_12_metaschema(path: Path) -> None:
    schema = json.loads(path.read_text(encoding="utf-8"))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


def test_action_files_have_ids_named_for_their_type() -> None:
    for path in ACTIONS_DIR.glob("*.json"):
        schema = json.loads(path.read_text(encoding="utf-8"))
        assert schema["$id"] == f"https://schemas.haste.dev/actions/{path.stem}.json"


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def test_every_reference_resolves_from_the_local_files() -> None:
    for uri, schema in load_schemas().items():
        resolver = registry().resolver(base_uri=uri)
        for ref in _refs(schema):
            if ref.startswith("https://json-schema.org/"):
                continue  # the draft metaschema: bundled with jsonschema
            assert resolver.lookup(ref).contents is not None, (uri, ref)


def _declared_properties(
    node: Any, where: str
) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(pointer, owning schema, property schema) for properties that declare an option;
    overlays under if/then/else/not only constrain options declared elsewhere."""
    if isinstance(node, dict):
        for name, sub in (node.get("properties") or {}).items():
            yield f"{where}/properties/{name}", node, sub
            yield from _declared_properties(sub, f"{where}/properties/{name}")
        for key, value in node.items():
            if key in ("properties", "if", "then", "else", "not", "allOf", "anyOf", "examples"):
                continue
            yield from _declared_properties(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from _declared_properties(item, f"{where}/{index}")


def _describes(schema: dict[str, Any], owner_file: str) -> bool:
    """A property is documented by its own description or by the schema it references."""
    if "description" in schema:
        return True
    ref = schema.get("$ref")
    if not isinstance(ref, str):
        return False
    if ref.startswith("https://json-schema.org/"):
        return False
    base = f"https://schemas.haste.dev/{owner_file}"
    return "description" in registry().resolver(base_uri=base).lookup(ref).contents


@pytest.mark.parametrize("path", schema_files(), ids=lambda p: p.name)
def test_every_property_has_a_description_for_editor_hover(path: Path) -> None:
    schema = json.loads(path.read_text(encoding="utf-8"))
    owner = path.relative_to(MAIN_SCHEMA_PATH.parent).as_posix()
    declared = _declared_properties(schema, "")
    missing = [ptr for ptr, _, sub in declared if not _describes(sub, owner)]
    assert missing == []


@pytest.mark.parametrize("path", schema_files(), ids=lambda p: p.name)
def test_every_object_with_declared_properties_rejects_unknown_ones(path: Path) -> None:
    schema = json.loads(path.read_text(encoding="utf-8"))
    open_objects = sorted(
        {
            ptr.rsplit("/properties/", 1)[0]
            for ptr, owner, _ in _declared_properties(schema, "")
            if owner.get("additionalProperties") is not False
        }
    )
    assert open_objects == []


def test_main_options_and_every_trigger_and_action_schema_have_examples() -> None:
    schema = main_schema()
    for name in ("name", "trigger_type", "conditions", "actions", "category"):
        assert schema["properties"][name].get("examples"), name
    for trigger in trigger_types():
        assert schema["$defs"][f"trigger_{trigger}"].get("examples"), trigger
    for action in action_types():
        assert action_schema(action).get("examples"), action


# --- sync with the spec and with engine.conditions ------------------------------------------


def test_trigger_types_equal_the_spec_valid_trigger_type_check_list() -> None:
    assert trigger_types() == spec_check_values("automations", "valid_trigger_type")


def test_every_trigger_type_has_its_own_config_schema_selected_by_if_then() -> None:
    schema = main_schema()
    dispatched = {
        rule["if"]["properties"]["trigger_type"]["const"]: rule["then"]["properties"][
            "trigger_config"
        ]["$ref"]
        for rule in schema["allOf"]
    }
    assert dispatched == {t: f"#/$defs/trigger_{t}" for t in trigger_types()}


def test_step_type_enum_equals_the_action_schema_files() -> None:
    step = main_schema()["$defs"]["step"]
    assert sorted(step["properties"]["type"]["enum"]) == action_types()


def test_every_action_type_dispatches_params_to_its_own_file() -> None:
    step = main_schema()["$defs"]["step"]
    dispatched = {
        rule["if"]["properties"]["type"]["const"]: rule["then"]["properties"]["params"]["$ref"]
        for rule in step["allOf"]
    }
    assert dispatched == {t: f"actions/{t}.json" for t in action_types()}


def test_ai_task_types_equal_the_spec_ai_tasks_check_list() -> None:
    enum = action_schema("ai_task")["properties"]["task_type"]["enum"]
    assert enum == spec_check_values("ai_tasks", "valid_type")


def test_log_activity_types_equal_the_spec_activities_check_list() -> None:
    enum = action_schema("log_activity")["properties"]["type"]["enum"]
    assert enum == spec_check_values("activities", "valid_type")


def test_task_type_and_priority_equal_the_spec_tasks_check_lists() -> None:
    props = action_schema("create_task")["properties"]
    assert props["type"]["enum"] == spec_check_values("tasks", "valid_type")
    assert props["priority"]["enum"] == spec_check_values("tasks", "valid_priority")


def test_assign_owner_roles_equal_the_spec_workspace_members_check_list() -> None:
    enum = action_schema("assign_owner")["properties"]["roles"]["items"]["enum"]
    assert enum == spec_check_values("workspace_members", "valid_role")


def test_operator_enum_equals_conditions_operators() -> None:
    condition = main_schema()["$defs"]["condition"]
    assert set(condition["properties"]["op"]["enum"]) == set(conditions.OPERATORS)


def test_leaf_type_enum_equals_conditions_leaf_types() -> None:
    condition = main_schema()["$defs"]["condition"]
    assert condition["properties"]["type"]["enum"] == list(conditions.LEAF_TYPES)


def _operator_rules() -> dict[str, dict[str, Any]]:
    rules = {}
    for rule in main_schema()["$defs"]["condition"]["allOf"]:
        op = rule.get("if", {}).get("properties", {}).get("op", {})
        if "const" in op:
            rules[op["const"]] = rule["then"]
    return rules


def _without_messages(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _without_messages(v) for k, v in schema.items() if k != "errorMessage"}
    return schema


def test_leaf_value_rules_match_the_conditions_operator_table() -> None:
    generated = conditions.condition_json_schema()["$defs"]
    rules = _operator_rules()
    assert set(rules) == set(conditions.OPERATORS)
    for name, spec in conditions.OPERATORS.items():
        rule = rules[name]
        value = rule["properties"].get("value")
        if spec.takes_value:
            assert rule["required"] == ["value"], name
            expected = generated[f"leaf_{name}"]["properties"]["value"]
            assert _without_messages(value or {}) == expected, name
        else:
            assert value == {"not": {}, "errorMessage": f"'{name}' takes no 'value'"}, name
        for option in ("type", "timezone", "case_insensitive"):
            forbidden = rule["properties"].get(option, {}).get("not") == {}
            assert forbidden == (option not in spec.options), (name, option)


@pytest.mark.parametrize("op", list(conditions.OPERATORS))
def test_each_operator_example_of_the_conditions_table_is_schema_valid(op: str) -> None:
    leaf = dict(conditions.OPERATORS[op].example)
    assert schema_problems(minimal(conditions=leaf)) == []


# --- schema problems ------------------------------------------------------------------------


def test_missing_property_points_where_it_would_be() -> None:
    doc = minimal(actions=[{"id": "a", "type": "add_tag", "params": {}}])
    assert schema_problems(doc) == [
        Problem("/actions/0/params/tag", "'tag' is a required property")
    ]


def test_unexpected_property_points_at_itself_with_a_suggestion() -> None:
    doc = minimal(actions=[{"id": "a", "type": "add_tag", "params": {"tag": "x", "tga": 1}}])
    assert schema_problems(doc) == [
        Problem(
            "/actions/0/params/tga",
            "Additional properties are not allowed ('tga' was unexpected; did you mean 'tag'?)",
        )
    ]


def test_if_then_dispatch_reports_the_selected_action_schema_error_only() -> None:
    doc = minimal(actions=[{"id": "a", "type": "delay", "params": {"duration": {"dayz": 1}}}])
    assert schema_problems(doc) == [
        Problem(
            "/actions/0/params/duration/dayz",
            "Additional properties are not allowed ('dayz' was unexpected; did you mean 'days'?)",
        )
    ]


def test_schema_problems_never_echo_a_whole_large_value() -> None:
    big = {"field": "contact.score", "op": "eq", "value": "x" * 500}
    doc = minimal(actions=[{"id": "a", "type": "add_tag", "params": {"tag": "x"}, "if": [big]}])
    (problem,) = schema_problems(doc)
    assert problem.pointer == "/actions/0/if"
    assert problem.message == "[...] is not of type 'object'"


def test_schema_problems_come_in_document_order() -> None:
    doc = {
        "actions": [{"id": "1bad", "type": "add_tag", "params": {"tag": "x"}}],
        "trigger_type": "contact_tagged",
        "trigger_config": {},
    }
    pointers = [p.pointer for p in schema_problems(doc)]
    assert pointers == ["/name", "/actions/0/id", "/trigger_config/tag"]


def test_a_document_nested_too_deeply_is_one_problem_not_a_recursion_error() -> None:
    node: Any = 1
    for _ in range(MAX_NESTING + 5):
        node = [node]
    (problem,) = schema_problems(minimal(conditions=node))
    assert problem.pointer == "/conditions" + "/0" * MAX_NESTING
    assert problem.message == f"nested deeper than {MAX_NESTING} levels"


def test_a_non_object_document_is_one_problem_at_the_root() -> None:
    assert schema_problems([]) == [Problem("", "[] is not of type 'object'")]


# --- loading --------------------------------------------------------------------------------


def test_load_document_reports_a_json_syntax_error_with_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "rule.json"
    path.write_text('{\n  "name": "x"\n  "actions": []\n}\n', encoding="utf-8")
    doc, problems = load_document(path)
    assert doc is None
    assert problems == [
        Problem("", "invalid JSON: Expecting ',' delimiter at line 3 column 3", str(path))
    ]


def test_load_document_reports_duplicate_keys_at_their_pointer(tmp_path: Path) -> None:
    path = tmp_path / "rule.json"
    path.write_text('{"name": "a", "actions": [{"id": "s", "id": "t"}], "name": "b"}')
    doc, problems = load_document(path)
    assert doc == {"name": "b", "actions": [{"id": "t"}]}
    assert [(p.pointer, p.message) for p in problems] == [
        ("/actions/0/id", "duplicate key 'id' (only the last one counts)"),
        ("/name", "duplicate key 'name' (only the last one counts)"),
    ]


def test_load_document_reports_a_missing_file_instead_of_raising(tmp_path: Path) -> None:
    doc, problems = load_document(tmp_path / "nope.json")
    assert doc is None
    assert problems == [
        Problem("", "cannot read file: No such file or directory", str(tmp_path / "nope.json"))
    ]


# --- steps, pointers, durations, records ---------------------------------------------------


def test_iter_steps_walks_branch_cases_then_default_in_document_order() -> None:
    actions = [
        {"id": "a", "type": "add_tag", "params": {"tag": "x"}},
        {
            "id": "b",
            "type": "branch",
            "params": {
                "cases": [
                    {
                        "if": {"field": "contact.score", "op": "gt", "value": 1},
                        "steps": [{"id": "c", "type": "add_tag", "params": {"tag": "y"}}],
                    }
                ],
                "default": [{"id": "d", "type": "add_tag", "params": {"tag": "z"}}],
            },
        },
        {"id": "e", "type": "add_tag", "params": {"tag": "w"}},
    ]
    assert [(ptr, step["id"]) for ptr, step in iter_steps(actions)] == [
        ("/actions/0", "a"),
        ("/actions/1", "b"),
        ("/actions/1/params/cases/0/steps/0", "c"),
        ("/actions/1/params/default/0", "d"),
        ("/actions/2", "e"),
    ]


def test_iter_steps_skips_malformed_entries() -> None:
    assert list(iter_steps([1, None, {"id": "a", "type": "branch", "params": []}])) == [
        ("/actions/2", {"id": "a", "type": "branch", "params": []})
    ]


def test_pointer_join_escapes_tilde_and_slash() -> None:
    assert pointer_join("/headers", "a/b~c") == "/headers/a~1b~0c"


def test_parse_duration_adds_whole_units() -> None:
    assert parse_duration({"hours": 1, "minutes": 30}).total_seconds() == 5400
    assert parse_duration({"weeks": 1, "days": 1, "seconds": 5}).total_seconds() == 8 * 86400 + 5


@pytest.mark.parametrize("bad", ["5m", {}, {"hours": -1}, {"hours": 1.5}, {"months": 1}])
def test_parse_duration_rejects_anything_but_the_object_form(bad: Any) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


@pytest.mark.parametrize(
    ("trigger_type", "config", "entity"),
    [
        ("contact_updated", {}, "contact"),
        ("contact_tagged", {"tag": "x"}, "contact"),
        ("deal_stage_changed", {"pipeline": "Sales"}, "deal"),
        ("email_clicked", {}, "email"),
        ("time_based", {"cron": "0 9 * * *"}, None),
        ("time_based", {"date_field": "task.due_date"}, "task"),
        ("time_based", {"date_field": "trigger.when"}, None),
        ("webhook", {}, None),
        ("webhook", {"record": {"path": "trigger.id", "entity_type": "company"}}, "company"),
        ("manual", {"entity_type": "note"}, "note"),
    ],
)
def test_record_entity_follows_the_trigger(
    trigger_type: str, config: dict[str, Any], entity: str | None
) -> None:
    assert record_entity({"trigger_type": trigger_type, "trigger_config": config}) == entity
