"""Trigger matching (pure): event types, watched fields, transitions, tags, stages, targets."""

from __future__ import annotations

from typing import Any

import pytest

from engine.matcher import match_trigger, needs_change


def auto(trigger_type: str, config: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {"id": "a1", "trigger_type": trigger_type, "trigger_config": config or {}, **extra}


def event(
    types: list[str],
    old: dict[str, Any] | None = None,
    new: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    new = new or {}
    return {
        "trigger_types": types,
        "old": old or {},
        "new": new,
        "changed_fields": sorted(set(new) | set(old or {})),
        **extra,
    }


def test_other_event_type_does_not_match() -> None:
    result = match_trigger(auto("deal_created"), event(["contact_created"]))

    assert not result
    assert result.reason == "event is ['contact_created'], not deal_created"


def test_watched_field_changed_matches() -> None:
    assert match_trigger(
        auto("contact_updated", {"watch": ["score"]}),
        event(["contact_updated"], {"score": 1}, {"score": 2}),
    )


def test_unwatched_change_does_not_match_and_says_why() -> None:
    result = match_trigger(
        auto("contact_updated", {"watch": ["score"]}),
        event(["contact_updated"], {"city": "a"}, {"city": "b"}),
    )

    assert result.reason == "none of the watched fields ['score'] changed (changed: ['city'])"


@pytest.mark.parametrize(
    ("transition", "old", "new", "matched"),
    [
        ({"field": "lifecycle_stage", "from": "lead", "to": "MQL"}, "lead", "MQL", True),
        ({"field": "lifecycle_stage", "from": "lead", "to": "MQL"}, "SQL", "MQL", False),
        ({"field": "lifecycle_stage", "to": "MQL"}, "SQL", "MQL", True),
        ({"field": "lifecycle_stage", "from": "lead"}, "lead", "customer", True),
        ({"field": "lifecycle_stage", "to": "customer"}, "lead", "MQL", False),
        ({"field": "score", "from": 50, "to": 90}, 50, 90, True),
        ({"field": "score", "from": 50, "to": 90}, "50", "90", True),
    ],
)
def test_transition(transition: dict[str, Any], old: Any, new: Any, matched: bool) -> None:
    field = transition["field"]
    result = match_trigger(
        auto("contact_updated", {"transition": transition}),
        event(["contact_updated"], {field: old}, {field: new}),
    )

    assert result.matched is matched


def test_transition_field_that_did_not_change_does_not_match() -> None:
    result = match_trigger(
        auto("contact_updated", {"transition": {"field": "score", "to": 1}}),
        event(["contact_updated"], {"city": "a"}, {"city": "b"}),
    )

    assert result.reason == "transition field 'score' did not change"


def test_tag_trigger_matches_its_tag_only() -> None:
    vip = auto("contact_tagged", {"tag": "vip"})

    assert match_trigger(vip, event(["contact_tagged"], new={"tag_name": "vip"}))
    assert (
        match_trigger(vip, event(["contact_tagged"], new={"tag_name": "cold"})).reason
        == "tag 'cold' is not 'vip'"
    )


def test_stage_trigger_matches_by_name_or_id() -> None:
    names = {"p1": "Sales", "s1": "Lead", "s2": "Won"}
    ev = event(["deal_stage_changed", "deal_updated"], {"stage_id": "s1"}, {"stage_id": "s2"})
    record = {"pipeline_id": "p1"}

    assert match_trigger(
        auto("deal_stage_changed", {"pipeline": "Sales", "to_stage": "Won"}),
        ev,
        record=record,
        names=names,
    )
    assert match_trigger(
        auto("deal_stage_changed", {"pipeline": "p1", "from_stage": "s1"}),
        ev,
        record=record,
        names=names,
    )
    assert not match_trigger(
        auto("deal_stage_changed", {"pipeline": "Hiring"}), ev, record=record, names=names
    )
    assert (
        match_trigger(
            auto("deal_stage_changed", {"pipeline": "Sales", "to_stage": "Lead"}),
            ev,
            record=record,
            names=names,
        ).reason
        == "to_stage is 'Won', not 'Lead'"
    )


@pytest.mark.parametrize("trigger_type", ["webhook", "manual", "time_based"])
def test_targeted_events_match_only_their_automation(trigger_type: str) -> None:
    assert match_trigger(auto(trigger_type), event([trigger_type], automation_id="a1"))
    assert not match_trigger(auto(trigger_type), event([trigger_type], automation_id="a2"))


def test_needs_change_for_watch_transition_tag_and_stage() -> None:
    assert needs_change(auto("contact_updated", {"watch": ["score"]}))
    assert needs_change(auto("contact_tagged", {"tag": "x"}))
    assert not needs_change(auto("contact_created"))
