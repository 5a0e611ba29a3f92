"""Deploy: create/update by workspace + name, versions recorded, cycles refused, nothing
written on refusal, tenants isolated."""

from __future__ import annotations

import copy
from typing import Any

import psycopg
import pytest

from engine.automations import (
    DeployError,
    Workspace,
    deploy,
    find_workspace,
    list_automations,
    list_versions,
    set_enabled,
    show_automation,
)


def make_workspace(db: psycopg.Connection[Any], slug: str) -> Workspace:
    db.execute("INSERT INTO workspaces (name, slug) VALUES (%s, %s)", (slug.title(), slug))
    return find_workspace(db, slug)


def scoring(name: str = "Hot lead", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "trigger_type": "contact_updated",
        "trigger_config": {"watch": ["score"]},
        "conditions": {"all": [{"field": "contact.score", "op": "gte", "value": 80}]},
        "actions": [
            {"id": "mql", "type": "update_record", "params": {"fields": {"lifecycle_stage": "MQL"}}}
        ],
        **extra,
    }


def count(db: psycopg.Connection[Any], table: str) -> int:
    row = db.execute(f"SELECT count(*) FROM {table}").fetchone()
    assert row is not None
    return int(row[0])


def test_first_deploy_creates_the_automation_and_version_one(db) -> None:
    ws = make_workspace(db, "acme")

    result = deploy(db, ws, scoring(), deployed_by_name="alice")

    assert (result.created, result.changed, result.version) == (True, True, 1)
    row = db.execute(
        "SELECT trigger_type, trigger_config, enabled, current_version, reenrollment"
        " FROM automations WHERE id = %s",
        (result.automation_id,),
    ).fetchone()
    assert row == ("contact_updated", {"watch": ["score"]}, True, 1, "not_while_active")
    versions = list_versions(db, ws, "Hot lead")
    assert [(v["version"], v["deployed_by_name"]) for v in versions] == [(1, "alice")]


def test_redeploying_a_changed_document_updates_in_place_and_adds_a_version(db) -> None:
    ws = make_workspace(db, "acme")
    first = deploy(db, ws, scoring())
    changed = scoring(description="now with a description")

    second = deploy(db, ws, changed)

    assert second.automation_id == first.automation_id
    assert (second.created, second.changed, second.version) == (False, True, 2)
    assert count(db, "automations") == 1
    stored = db.execute("SELECT document FROM automation_versions WHERE version = 2").fetchone()
    assert stored is not None and stored[0]["description"] == "now with a description"


def test_redeploying_the_same_document_records_no_version(db) -> None:
    ws = make_workspace(db, "acme")
    deploy(db, ws, scoring())
    reordered = dict(reversed(list(copy.deepcopy(scoring()).items())))

    again = deploy(db, ws, reordered)

    assert (again.changed, again.version) == (False, 1)
    assert count(db, "automation_versions") == 1


def test_self_cycle_is_refused_with_its_path_and_writes_nothing(db) -> None:
    ws = make_workspace(db, "acme")
    loop = scoring("Bump")
    loop["actions"] = [{"id": "b", "type": "update_record", "params": {"fields": {"score": 99}}}]

    with pytest.raises(DeployError, match="trigger cycle: Bump → Bump"):
        deploy(db, ws, loop, validate=False)

    assert count(db, "automations") == 0
    assert count(db, "automation_versions") == 0


def test_cycle_across_two_automations_is_refused_with_the_path(db) -> None:
    ws = make_workspace(db, "acme")
    deploy(db, ws, scoring("A"))  # score changes → writes lifecycle_stage
    b = {
        "name": "B",
        "trigger_type": "contact_updated",
        "trigger_config": {"watch": ["lifecycle_stage"]},
        "actions": [{"id": "s", "type": "update_record", "params": {"fields": {"score": 100}}}],
    }

    with pytest.raises(DeployError, match="B → A → B"):
        deploy(db, ws, b, validate=False)
    assert [a["name"] for a in list_automations(db, ws)] == ["A"]


def test_explicit_cycle_opt_in_deploys_with_its_depth_limit(db) -> None:
    ws = make_workspace(db, "acme")
    loop = scoring("Bump", cycles={"allow": True, "max_depth": 3})
    loop["actions"] = [{"id": "b", "type": "update_record", "params": {"fields": {"score": 99}}}]

    result = deploy(db, ws, loop, validate=False)

    depth = db.execute(
        "SELECT max_chain_depth FROM automations WHERE id = %s", (result.automation_id,)
    ).fetchone()
    assert depth == (3,)


def test_enabling_an_automation_that_closes_a_cycle_is_refused(db) -> None:
    ws = make_workspace(db, "acme")
    deploy(db, ws, scoring("A"))
    b = {
        "name": "B",
        "enabled": False,
        "trigger_type": "contact_updated",
        "trigger_config": {"watch": ["lifecycle_stage"]},
        "actions": [{"id": "s", "type": "update_record", "params": {"fields": {"score": 100}}}],
    }
    deploy(db, ws, b, validate=False)

    with pytest.raises(DeployError, match="enabling 'B' would close a trigger cycle"):
        set_enabled(db, ws, "B", True)
    assert show_automation(db, ws, "B")["enabled"] is False


def test_workspaces_do_not_see_each_others_automations(db) -> None:
    a, b = make_workspace(db, "a"), make_workspace(db, "b")
    deploy(db, a, scoring())

    assert list_automations(db, b) == []
    assert show_automation(db, b, "Hot lead") is None
    assert set_enabled(db, b, "Hot lead", False) is None
    assert show_automation(db, a, "Hot lead")["enabled"] is True


def test_same_name_in_two_workspaces_are_two_automations(db) -> None:
    a, b = make_workspace(db, "a"), make_workspace(db, "b")

    first, second = deploy(db, a, scoring()), deploy(db, b, scoring())

    assert first.automation_id != second.automation_id
    assert first.version == second.version == 1


def test_unknown_workspace_is_a_clear_error(db) -> None:
    with pytest.raises(DeployError, match="unknown workspace 'nope'"):
        find_workspace(db, "nope")


def test_disable_and_enable_by_name(db) -> None:
    ws = make_workspace(db, "acme")
    deploy(db, ws, scoring())

    assert set_enabled(db, ws, "Hot lead", False)["enabled"] is False
    assert set_enabled(db, ws, "Hot lead", True)["enabled"] is True
