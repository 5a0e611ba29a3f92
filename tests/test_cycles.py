"""Deploy-time cycle detection over automation documents (pure)."""

from __future__ import annotations

from typing import Any

from engine.cycles import automation_writes, find_cycle, fires, format_cycle


def doc(trigger_type: str, config: dict[str, Any], *steps: dict[str, Any]) -> dict[str, Any]:
    return {"trigger_type": trigger_type, "trigger_config": config, "actions": list(steps)}


def update(fields: dict[str, Any], entity: str | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {"fields": fields}
    if entity:
        params["record"] = {"entity": entity, "id": "{{ contact.id }}"}
    return {"id": "u", "type": "update_record", "params": params}


def tag(name: str) -> dict[str, Any]:
    return {"id": "t", "type": "add_tag", "params": {"tag": name}}


def test_automation_updating_its_own_watched_field_fires_itself() -> None:
    a = doc("contact_updated", {"watch": ["score"]}, update({"score": 10}))

    assert find_cycle({"A": a}, "A") == ["A", "A"]


def test_update_of_an_unwatched_field_does_not_fire() -> None:
    a = doc("contact_updated", {"watch": ["score"]}, update({"lifecycle_stage": "MQL"}))

    assert find_cycle({"A": a}, "A") is None


def test_two_automations_firing_each_other_report_the_path() -> None:
    a = doc("contact_updated", {"watch": ["score"]}, update({"lifecycle_stage": "MQL"}))
    b = doc("contact_updated", {"watch": ["lifecycle_stage"]}, update({"score": 1}))

    path = find_cycle({"A": a, "B": b}, "A")

    assert path == ["A", "B", "A"]
    assert format_cycle(path) == "A → B → A"


def test_tagging_with_a_different_tag_does_not_fire_a_tag_trigger() -> None:
    a = doc("contact_tagged", {"tag": "vip"}, tag("followed-up"))

    assert not fires(a, a)
    assert fires(doc("contact_tagged", {"tag": "x"}, tag("vip")), a)


def test_templated_tag_is_assumed_to_match() -> None:
    a = doc("contact_tagged", {"tag": "vip"}, tag("{{ trigger.tag }}"))

    assert find_cycle({"A": a}, "A") == ["A", "A"]


def test_transition_to_another_value_does_not_fire() -> None:
    b = doc("contact_updated", {"transition": {"field": "lifecycle_stage", "to": "SQL"}})

    assert not fires(
        doc("manual", {"entity_type": "contact"}, update({"lifecycle_stage": "MQL"})), b
    )
    assert fires(doc("manual", {"entity_type": "contact"}, update({"lifecycle_stage": "SQL"})), b)


def test_steps_inside_branches_count() -> None:
    branch = {
        "id": "b",
        "type": "branch",
        "params": {"cases": [{"if": {}, "steps": [update({"score": 1})]}], "default": []},
    }
    a = doc("contact_updated", {"watch": ["score"]}, branch)

    assert find_cycle({"A": a}, "A") == ["A", "A"]


def test_deal_stage_change_fires_stage_trigger_but_not_won() -> None:
    a = doc(
        "deal_created", {}, {"id": "s", "type": "change_deal_stage", "params": {"stage": "Won"}}
    )

    assert fires(a, doc("deal_stage_changed", {}))
    assert not fires(a, doc("deal_won", {}))


def test_setting_status_won_fires_deal_won_only() -> None:
    a = doc("deal_created", {}, update({"status": "won"}))

    assert fires(a, doc("deal_won", {}))
    assert not fires(a, doc("deal_lost", {}))


def test_disabled_automations_are_not_part_of_a_cycle() -> None:
    a = doc("contact_updated", {"watch": ["score"]}, update({"lifecycle_stage": "MQL"}))
    b = doc("contact_updated", {"watch": ["lifecycle_stage"]}, update({"score": 1}))
    b["enabled"] = False

    assert find_cycle({"A": a, "B": b}, "A") is None


def test_ai_lead_scoring_writes_the_score() -> None:
    a = doc(
        "contact_updated",
        {},
        {"id": "ai", "type": "ai_task", "params": {"task_type": "lead_scoring"}},
    )

    assert {w.entity for w in automation_writes(a)} == {"contact", "deal"}
    assert find_cycle({"A": a}, "A") == ["A", "A"]


def test_time_based_and_webhook_automations_are_never_fired_by_writes() -> None:
    writer = doc("manual", {"entity_type": "contact"}, update({"score": 1}), tag("x"))

    assert not fires(writer, doc("time_based", {"cron": "0 9 * * *", "timezone": "UTC"}))
    assert not fires(writer, doc("webhook", {}))


def test_update_of_an_explicit_other_record_kind_does_not_fire_contact_triggers() -> None:
    a = doc("contact_updated", {"watch": ["value"]}, update({"value": 5}, entity="deal"))

    assert find_cycle({"A": a}, "A") is None
