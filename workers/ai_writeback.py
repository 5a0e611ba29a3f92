"""Where a validated AI output is written: the CRM columns the spec made for it, or a note.

| task type | record | written |
|---|---|---|
| lead_scoring | contact | ``score``, ``ai_insights.lead_scoring`` |
| lead_scoring | deal | ``ai_score``, ``ai_insights.lead_scoring``, ``ai_predicted_close_date`` |
| contact_enrichment | contact | ``enrichment_data.ai``, ``enrichment_updated_at`` |
| sentiment_analysis | email | ``sentiment``, ``ai_analysis.sentiment`` |
| classification | email | ``category``, ``priority``, ``ai_analysis.classification`` |
| entity_extraction | email | ``ai_analysis.entities`` |
| summarization, meeting_summary | contact, company, deal; email → its contact or deal | a note |
| email_generation, email_reply | — | nothing: the output feeds a later ``send_email`` step |

JSON columns are merged (``||``) under one key per task type, so other keys (a vendor's
enrichment, a human's notes) survive. The field lists are ``engine.cycles.AI_WRITES``,
which the deploy-time cycle check reads; :data:`WRITE_BACK` is that same table.

Everything runs on the caller's tenant transaction (role ``haste_app``, RLS), the same
transaction that marks the task completed: the output and its write-back commit together
or not at all. A record that is gone (or of another workspace: invisible under RLS) is
skipped and the reason recorded in ``ai_tasks.write_back``, not an error: the answer is
still the step's output. The note's id derives from the task id, so a task processed
twice (a crash after commit, before the message ack) writes one note.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb

from actions.base import KEY_NAMESPACE, insert_once, workspace_owner
from engine.cycles import AI_WRITES
from engine.queries import query

Cursor = psycopg.Cursor[Any]

#: task type → entity → columns an update touches. One table, shared with the deploy-time
#: cycle check, so the check can never assume other writes than the ones made here.
WRITE_BACK: Mapping[str, Mapping[str, frozenset[str]]] = AI_WRITES
#: Task types whose output becomes a note on the record.
NOTE_TASKS = frozenset({"summarization", "meeting_summary"})
NOTE_ENTITIES = ("contact", "company", "deal", "email")


def note_text(task_type: str, output: Mapping[str, Any], provider: str, model: str) -> str:
    """The note body: the summary, its lists, and which model wrote it."""
    lines = [str(output.get("summary", "")).strip()]

    def section(title: str, items: Any) -> None:
        items = [i for i in (items or []) if i]
        if items:
            lines.append("")
            lines.append(f"{title}:")
            for item in items:
                if isinstance(item, Mapping):
                    extra = ", ".join(
                        f"{k}: {item[k]}" for k in ("owner", "due_date") if item.get(k)
                    )
                    item = item.get("description", "") + (f" ({extra})" if extra else "")
                lines.append(f"- {item}")

    if task_type == "meeting_summary":
        section("Attendees", output.get("attendees"))
        section("Decisions", output.get("decisions"))
    else:
        section("Key points", output.get("key_points"))
    section("Action items", output.get("action_items"))
    if task_type == "meeting_summary":
        section("Next steps", output.get("next_steps"))
    label = "offline heuristics, not a model" if provider == "offline" else f"{provider} {model}"
    lines += ["", f"— AI {task_type.replace('_', ' ')} ({label})"]
    return "\n".join(lines).strip()


def _updated(cur: Cursor, name: str, params: Mapping[str, Any]) -> bool:
    return cur.execute(query(name), dict(params)).fetchone() is not None


def write_back(
    cur: Cursor,
    *,
    task_id: UUID,
    task_type: str,
    output: Mapping[str, Any],
    record: Mapping[str, Any] | None,
    workspace_id: UUID,
    user_id: UUID | None,
    provider: str,
    model: str,
) -> dict[str, Any]:
    """Write ``output`` where it belongs; what was done (or why not), for ``ai_tasks``."""
    if not record or not record.get("entity") or not record.get("id"):
        if task_type in WRITE_BACK or task_type in NOTE_TASKS:
            return {"skipped": "the task names no record"}
        return {"skipped": f"{task_type} output is not written back (it is the step's output)"}
    entity = str(record["entity"])
    try:
        record_id = UUID(str(record["id"]))
    except ValueError:
        return {"skipped": f"record id {record['id']!r} is not a uuid"}
    target = {"entity": entity, "id": str(record_id)}
    if task_type in NOTE_TASKS:
        return _note(
            cur,
            task_id,
            task_type,
            output,
            (entity, record_id),
            workspace_id,
            user_id,
            provider,
            model,
        )
    columns = WRITE_BACK.get(task_type, {}).get(entity)
    if columns is None:
        where = ", ".join(WRITE_BACK.get(task_type, {})) or "nowhere"
        return {"skipped": f"{task_type} writes to {where}, not to a {entity}", "record": target}
    data = Jsonb(dict(output))
    params: dict[str, Any] = {"id": record_id, "output": data}
    if task_type == "lead_scoring" and entity == "contact":
        done = _updated(cur, "writeback_contact_lead_scoring", {**params, "score": output["score"]})
    elif task_type == "lead_scoring":
        done = _updated(
            cur,
            "writeback_deal_lead_scoring",
            {
                **params,
                "score": output["score"],
                "predicted_close_date": output.get("predicted_close_date"),
            },
        )
    elif task_type == "contact_enrichment":
        done = _updated(cur, "writeback_contact_enrichment", params)
    elif task_type == "sentiment_analysis":
        done = _updated(
            cur, "writeback_email_sentiment", {**params, "sentiment": output["sentiment"]}
        )
    elif task_type == "classification":
        done = _updated(
            cur,
            "writeback_email_classification",
            {**params, "category": output["category"], "priority": output["priority"]},
        )
    else:  # entity_extraction
        entities = Jsonb(output["entities"])
        done = _updated(cur, "writeback_email_entities", {"id": record_id, "entities": entities})
    if not done:
        gone = f"{entity} {record_id} is not visible (deleted or missing)"
        return {"skipped": gone, "record": target}
    return {"updated": target, "columns": sorted(columns)}


def _note(
    cur: Cursor,
    task_id: UUID,
    task_type: str,
    output: Mapping[str, Any],
    ref: tuple[str, UUID],
    workspace_id: UUID,
    user_id: UUID | None,
    provider: str,
    model: str,
) -> dict[str, Any]:
    entity, record_id = ref
    if entity not in NOTE_ENTITIES:
        return {"skipped": f"a {entity} cannot carry a note"}
    target = cur.execute(
        query("writeback_note_target"), {"entity": entity, "id": record_id}
    ).fetchone()
    if target is None:
        reason = (
            "the email has no contact or deal to carry the note"
            if entity == "email"
            else f"{entity} {record_id} is not visible (deleted or missing)"
        )
        return {"skipped": reason}
    author = user_id or target["owner_id"] or workspace_owner(cur)
    if author is None:
        return {"skipped": "no user to author the note (no owner on the record or workspace)"}
    note_id = uuid.uuid5(KEY_NAMESPACE, f"ai-task:{task_id}:note")
    row: dict[str, Any] = {
        "id": note_id,
        "workspace_id": workspace_id,
        "content": note_text(task_type, output, provider, model),
        "entity_type": target["entity"],
        "entity_id": target["id"],
        "created_by": author,
        f"{target['entity']}_id": target["id"],
    }
    created = insert_once(cur, ("notes", note_id), row)
    return {
        "note": str(note_id),
        "created": created,
        "record": {"entity": target["entity"], "id": str(target["id"])},
    }
