"""change_deal_stage: the move, its deal_history row and stage timestamp, and isolation."""

from __future__ import annotations

from decimal import Decimal

import pytest
from fakes.crm import make_deal, make_pipeline, make_workspace, row, rows, run_step

from actions import ActionError
from actions.deals import CHANGE_DEAL_STAGE

HISTORY = "SELECT field_name, old_value, new_value, changed_by FROM deal_history WHERE deal_id = %s"


@pytest.fixture
def ws(db):
    return make_workspace(db)


@pytest.fixture
def sales(db, ws):
    return make_pipeline(db, ws)


def test_change_deal_stage_by_name_moves_the_deal_and_writes_its_history(db, ws, sales):
    rep = ws.add_member(db)
    deal = make_deal(db, ws, sales, owner_id=rep)
    db.execute("UPDATE deals SET stage_entered_at = '2024-01-01' WHERE id = %s", (deal,))
    step = ws.step(trigger_entity="deal", trigger_entity_id=deal)

    out = run_step(db, CHANGE_DEAL_STAGE, {"stage": "Negotiation"}, step)

    saved = row(db, "deals", deal)
    assert saved["stage_id"] == sales.stages["Negotiation"]
    assert saved["stage_entered_at"].year > 2024
    assert saved["probability"] == Decimal("60")
    assert saved["status"] == "open"
    assert rows(db, HISTORY, deal) == [
        {
            "field_name": "stage_id",
            "old_value": str(sales.stages["Lead"]),
            "new_value": str(sales.stages["Negotiation"]),
            "changed_by": rep,
        }
    ]
    assert out["changed"] is True


def test_change_deal_stage_by_id_works_like_by_name(db, ws, sales):
    deal = make_deal(db, ws, sales)
    step = ws.step(trigger_entity="deal", trigger_entity_id=deal)

    run_step(db, CHANGE_DEAL_STAGE, {"stage": str(sales.stages["Won"])}, step)

    assert row(db, "deals", deal)["stage_id"] == sales.stages["Won"]


def test_change_deal_stage_to_won_leaves_the_status_open(db, ws, sales):
    deal = make_deal(db, ws, sales)
    step = ws.step(trigger_entity="deal", trigger_entity_id=deal)

    run_step(db, CHANGE_DEAL_STAGE, {"stage": "Won"}, step)

    assert row(db, "deals", deal)["status"] == "open"


def test_change_deal_stage_to_the_current_stage_changes_nothing(db, ws, sales):
    deal = make_deal(db, ws, sales)
    before = row(db, "deals", deal)
    step = ws.step(trigger_entity="deal", trigger_entity_id=deal)

    out = run_step(db, CHANGE_DEAL_STAGE, {"stage": "Lead"}, step)

    assert out["changed"] is False
    assert row(db, "deals", deal)["stage_entered_at"] == before["stage_entered_at"]
    assert rows(db, HISTORY, deal) == []


def test_change_deal_stage_into_another_pipeline_records_both_changes(db, ws, sales):
    hiring = make_pipeline(db, ws, "Hiring", stages=(("Applied", 5), ("Hired", 100)))
    deal = make_deal(db, ws, sales)
    step = ws.step(trigger_entity="deal", trigger_entity_id=deal)

    run_step(db, CHANGE_DEAL_STAGE, {"stage": "Hired", "pipeline": "Hiring"}, step)

    saved = row(db, "deals", deal)
    assert (saved["pipeline_id"], saved["stage_id"]) == (hiring.id, hiring.stages["Hired"])
    assert sorted(r["field_name"] for r in rows(db, HISTORY, deal)) == ["pipeline_id", "stage_id"]


def test_change_deal_stage_to_a_stage_of_another_pipeline_is_not_found(db, ws, sales):
    hiring = make_pipeline(db, ws, "Hiring", stages=(("Applied", 5),))
    deal = make_deal(db, ws, sales)
    step = ws.step(trigger_entity="deal", trigger_entity_id=deal)

    with pytest.raises(ActionError, match="stage") as caught:
        run_step(db, CHANGE_DEAL_STAGE, {"stage": str(hiring.stages["Applied"])}, step)

    assert caught.value.error_class == "not_found"
    assert row(db, "deals", deal)["stage_id"] == sales.stages["Lead"]


def test_change_deal_stage_of_another_workspaces_deal_is_not_found_and_changes_nothing(
    db, ws, sales
):
    other = make_workspace(db, "other")
    their_sales = make_pipeline(db, other)
    foreign = make_deal(db, other, their_sales)

    with pytest.raises(ActionError) as caught:
        run_step(db, CHANGE_DEAL_STAGE, {"stage": "Won", "deal": str(foreign)}, ws.step())

    assert caught.value.error_class == "not_found"
    assert row(db, "deals", foreign)["stage_id"] == their_sales.stages["Lead"]
    assert rows(db, HISTORY, foreign) == []


def test_change_deal_stage_with_an_ambiguous_stage_name_is_a_conflict(db, ws):
    twins = make_pipeline(db, ws, "Twins", stages=(("Same", 10), ("Same", 20), ("Start", 0)))
    deal = make_deal(db, ws, twins, stage="Start")
    step = ws.step(trigger_entity="deal", trigger_entity_id=deal)

    with pytest.raises(ActionError) as caught:
        run_step(db, CHANGE_DEAL_STAGE, {"stage": "Same"}, step)

    assert caught.value.error_class == "conflict"
