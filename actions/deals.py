"""change_deal_stage: move a deal to a stage (of its pipeline unless ``pipeline`` says another).

Stage and pipeline are given by uuid or by exact name; a name is looked up within the
pipeline (stage) or the workspace (pipeline), and a name that matches two rows is a
``conflict`` rather than a guess. The move sets ``stage_id`` (and ``pipeline_id`` when it
changes), ``stage_entered_at = now()``, and ``probability`` from the stage when the pipeline
has ``probability_enabled``; it writes one ``deal_history`` row per changed column
(``stage_id``, and ``pipeline_id`` when it changed) with the old and new ids, ``changed_by``
being :func:`actions.base.acting_user` (step user, else the deal's owner, else the workspace
owner).

A deal already in the target stage is left alone (output ``changed: false``, no history, no
new ``stage_entered_at``): that makes the step idempotent, and a no-op move is not an event.

Status is never changed, even by a stage called "Won" or "Closed Lost": ``status`` is what
fires deal_won / deal_lost, and guessing it from a stage's display name (which authors
rename and translate) would fire those on a typo. Authors set it explicitly with
update_record (``fields: {"status": "won"}``) in the same automation.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from actions.base import (
    ActionError,
    Cursor,
    DatabaseAction,
    Output,
    Params,
    RecordRef,
    StepContext,
    acting_user,
    as_uuid,
    database_errors,
    not_found,
)

__all__ = ["CHANGE_DEAL_STAGE"]

DEAL_FOR_MOVE = """
SELECT id, pipeline_id, stage_id, owner_id FROM deals
WHERE id = %s AND deleted_at IS NULL FOR NO KEY UPDATE
"""
PIPELINE_BY_ID = (
    "SELECT id, probability_enabled FROM pipelines WHERE id = %s AND deleted_at IS NULL"
)
PIPELINE_BY_NAME = (
    "SELECT id, probability_enabled FROM pipelines WHERE name = %s AND deleted_at IS NULL LIMIT 2"
)
STAGE_BY_ID = "SELECT id, name, probability FROM pipeline_stages WHERE id = %s AND pipeline_id = %s"
STAGE_BY_NAME = (
    "SELECT id, name, probability FROM pipeline_stages WHERE name = %s AND pipeline_id = %s LIMIT 2"
)
DEAL_MOVE = """
UPDATE deals SET pipeline_id = %(pipeline_id)s, stage_id = %(stage_id)s,
       stage_entered_at = now(),
       probability = CASE WHEN %(set_probability)s THEN %(probability)s ELSE probability END,
       updated_at = now()
WHERE id = %(id)s RETURNING stage_entered_at, probability
"""
HISTORY_INSERT = """
INSERT INTO deal_history (deal_id, field_name, old_value, new_value, changed_by)
VALUES (%s, %s, %s, %s, %s)
"""


def _uuid_or_none(text: str) -> UUID | None:
    try:
        return UUID(text.strip())
    except (ValueError, AttributeError):
        return None


def _one(cur: Cursor, by_id: str, by_name: str, value: str, scope: tuple, what: str) -> dict:
    """The single row a uuid or an exact name names."""
    as_id = _uuid_or_none(value)
    cur.execute(by_id if as_id else by_name, (as_id or value, *scope))
    rows = cur.fetchall()
    if not rows:
        raise ActionError(
            "not_found",
            f"{what}: no {what} {value!r} in this workspace"
            + (" (in the deal's pipeline)" if what == "stage" else ""),
            details={"field": what, "value": value},
        )
    if len(rows) > 1:
        raise ActionError(
            "conflict",
            f"{what}: several {what}s are named {value!r}; give its id",
            details={"field": what, "value": value},
        )
    return rows[0]


def _plan(params: Params, step: StepContext) -> tuple[RecordRef, str, str | None]:
    stage = params.get("stage")
    if not isinstance(stage, str) or not stage.strip():
        raise ActionError("validation", f"stage: {stage!r} is empty", details={"field": "stage"})
    if params.get("deal"):
        deal_id = as_uuid(params["deal"], "deal")
    elif step.trigger_entity == "deal" and step.trigger_entity_id is not None:
        deal_id = as_uuid(step.trigger_entity_id, "trigger id")
    else:
        raise ActionError(
            "validation",
            f"no 'deal' given and the trigger's record ({step.trigger_entity or 'none'})"
            " is not a deal",
            details={"field": "deal"},
        )
    return RecordRef("deal", deal_id), stage, params.get("pipeline")


@database_errors()
def run(cur: Cursor, params: Params, step: StepContext) -> Output:
    ref, stage_param, pipeline_param = _plan(params, step)
    cur.execute(DEAL_FOR_MOVE, (ref.id,))
    deal = cur.fetchone()
    if deal is None:
        raise not_found(ref)
    if pipeline_param:
        pipeline = _one(cur, PIPELINE_BY_ID, PIPELINE_BY_NAME, pipeline_param, (), "pipeline")
    else:
        cur.execute(PIPELINE_BY_ID, (deal["pipeline_id"],))
        pipeline = cur.fetchone() or {"id": deal["pipeline_id"], "probability_enabled": False}
    stage = _one(cur, STAGE_BY_ID, STAGE_BY_NAME, stage_param, (pipeline["id"],), "stage")
    result: dict[str, Any] = {
        "deal_id": str(ref.id),
        "from_stage_id": str(deal["stage_id"]),
        "stage_id": str(stage["id"]),
        "stage": stage["name"],
        "pipeline_id": str(pipeline["id"]),
    }
    if stage["id"] == deal["stage_id"] and pipeline["id"] == deal["pipeline_id"]:
        return {**result, "changed": False}
    cur.execute(
        DEAL_MOVE,
        {
            "id": ref.id,
            "pipeline_id": pipeline["id"],
            "stage_id": stage["id"],
            "set_probability": bool(pipeline["probability_enabled"]),
            "probability": stage["probability"],
        },
    )
    moved = cur.fetchone()
    actor = acting_user(cur, step, deal["owner_id"])
    changes = [("stage_id", deal["stage_id"], stage["id"])]
    if pipeline["id"] != deal["pipeline_id"]:
        changes.append(("pipeline_id", deal["pipeline_id"], pipeline["id"]))
    for field_name, old, new in changes:
        cur.execute(HISTORY_INSERT, (ref.id, field_name, str(old), str(new), actor))
    return {
        **result,
        "changed": True,
        "stage_entered_at": moved["stage_entered_at"].isoformat(),
        "probability": None if moved["probability"] is None else str(moved["probability"]),
        "changed_by": str(actor),
    }


def describe(params: Params, step: StepContext) -> Output:
    ref, stage, pipeline = _plan(params, step)
    where = f"pipeline {pipeline!r}" if pipeline else "the deal's pipeline"
    return {
        "would": f"UPDATE deals SET stage_id = <stage {stage!r} of {where}>,"
        f" stage_entered_at = now() WHERE id = '{ref.id}'; INSERT INTO deal_history"
        " (field_name 'stage_id')",
        "deal_id": str(ref.id),
        "stage": stage,
        "pipeline": pipeline,
    }


CHANGE_DEAL_STAGE = DatabaseAction("change_deal_stage", run, describe)
