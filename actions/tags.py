"""add_tag and remove_tag: a contact's tags (``contact_tags`` -> ``tags``) or a company's
(the ``companies.tags`` text array).

Both are idempotent by construction: adding a tag that is there (``ON CONFLICT DO NOTHING`` /
"not already in the array") and removing one that is not change nothing, and the output says
so (``added`` / ``removed``). The workspace's ``tags`` table is the tag vocabulary for both
kinds: ``create_if_missing`` (default true) creates the tag there, else a tag that does not
exist fails the step as ``not_found``; removing a tag never deletes it from the vocabulary.
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
    database_errors,
    load_record,
    target,
)

__all__ = ["ADD_TAG", "REMOVE_TAG"]

TAG_ENTITIES = ("contact", "company")

TAG_ENSURE = """
INSERT INTO tags (workspace_id, name) VALUES (%s, %s)
ON CONFLICT (workspace_id, name) DO NOTHING
"""
TAG_FIND = "SELECT id FROM tags WHERE name = %s"
CONTACT_TAG_ADD = """
INSERT INTO contact_tags (contact_id, tag_id) VALUES (%s, %s)
ON CONFLICT DO NOTHING RETURNING tag_id
"""
CONTACT_TAG_REMOVE = """
DELETE FROM contact_tags ct USING tags t
WHERE ct.tag_id = t.id AND ct.contact_id = %s AND t.name = %s
RETURNING ct.tag_id
"""
COMPANY_TAG_ADD = """
UPDATE companies SET tags = array_append(coalesce(tags, '{}'), %(tag)s), updated_at = now()
WHERE id = %(id)s AND NOT (%(tag)s = ANY (coalesce(tags, '{}'))) RETURNING id
"""
COMPANY_TAG_REMOVE = """
UPDATE companies SET tags = array_remove(tags, %(tag)s), updated_at = now()
WHERE id = %(id)s AND %(tag)s = ANY (coalesce(tags, '{}')) RETURNING id
"""


def _plan(params: Params, step: StepContext) -> tuple[RecordRef, str]:
    tag = params.get("tag")
    if not isinstance(tag, str) or not tag.strip():
        raise ActionError("validation", f"tag: {tag!r} is not a tag name", details={"field": "tag"})
    return target(params, step, TAG_ENTITIES), tag


def _tag_id(cur: Cursor, step: StepContext, tag: str, create: bool) -> UUID:
    if create:
        cur.execute(TAG_ENSURE, (step.workspace_id, tag))
    cur.execute(TAG_FIND, (tag,))
    row = cur.fetchone()
    if row is None:
        raise ActionError(
            "not_found",
            f"tag: no tag named {tag!r} in this workspace (create_if_missing is false)",
            details={"field": "tag", "value": tag},
        )
    return row["id"]


@database_errors()
def run_add(cur: Cursor, params: Params, step: StepContext) -> Output:
    ref, tag = _plan(params, step)
    load_record(cur, ref, lock=True)
    tag_id = _tag_id(cur, step, tag, bool(params.get("create_if_missing", True)))
    if ref.entity == "contact":
        cur.execute(CONTACT_TAG_ADD, (ref.id, tag_id))
    else:
        cur.execute(COMPANY_TAG_ADD, {"tag": tag, "id": ref.id})
    added = cur.fetchone() is not None
    return {**ref.to_dict(), "tag": tag, "tag_id": str(tag_id), "added": added}


@database_errors()
def run_remove(cur: Cursor, params: Params, step: StepContext) -> Output:
    ref, tag = _plan(params, step)
    load_record(cur, ref, lock=True)
    if ref.entity == "contact":
        cur.execute(CONTACT_TAG_REMOVE, (ref.id, tag))
    else:
        cur.execute(COMPANY_TAG_REMOVE, {"tag": tag, "id": ref.id})
    removed = cur.fetchone() is not None
    return {**ref.to_dict(), "tag": tag, "removed": removed}


def _describe(verb: str, params: Params, step: StepContext) -> dict[str, Any]:
    ref, tag = _plan(params, step)
    where = "contact_tags" if ref.entity == "contact" else "companies.tags"
    return {
        "would": f"{verb} tag {tag!r} on {ref.entity} {ref.id} ({where})",
        "record": ref.to_dict(),
        "tag": tag,
    }


def describe_add(params: Params, step: StepContext) -> Output:
    described = _describe("add", params, step)
    if params.get("create_if_missing", True):
        described["would"] += ", creating the tag if the workspace has none of that name"
    return described


def describe_remove(params: Params, step: StepContext) -> Output:
    return _describe("remove", params, step)


ADD_TAG = DatabaseAction("add_tag", run_add, describe_add)
REMOVE_TAG = DatabaseAction("remove_tag", run_remove, describe_remove)
