"""Deployed automations: deploy (validate → cycle check → upsert → new version), and the
operator views list / show / enable / disable / versions.

One implementation behind the CLI and (later) the web API. Everything runs inside
:func:`engine.db.tenant_transaction`, so a workspace only ever sees and writes its own
automations. Deploys of one workspace are serialised by a transaction-level advisory lock
so that two concurrent deploys cannot each pass the cycle check against the other's
stale state and together close a loop.

A deploy whose document is byte-for-byte the current version's (same checksum of the
canonical JSON) changes nothing and records no version: re-running a deploy script is
safe and the version history shows real changes only.
"""

from __future__ import annotations

import getpass
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb

from engine.cycles import find_cycle, format_cycle
from engine.db import system_transaction, tenant_transaction
from engine.queries import query

#: Spec column defaults, applied when a document leaves the property out.
DEFAULTS: dict[str, Any] = {
    "description": None,
    "category": None,
    "conditions": [],
    "enabled": True,
    "run_once": False,
    "on_error": "stop",
    "max_retries": 3,
    "reenrollment": "not_while_active",
}


class DeployError(Exception):
    """The deploy was refused; nothing was written. ``problems`` are one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Workspace:
    id: UUID
    slug: str
    name: str
    settings: Mapping[str, Any] = field(default_factory=dict)

    @property
    def timezone(self) -> str:
        return str((self.settings or {}).get("timezone") or "UTC")


@dataclass(frozen=True)
class DeployResult:
    automation_id: UUID
    name: str
    version: int
    created: bool
    changed: bool


def canonical(doc: Mapping[str, Any]) -> str:
    """The JSON text whose checksum identifies a version (key order and spacing ignored)."""
    body = {k: v for k, v in doc.items() if k != "$schema"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def checksum(doc: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical(doc).encode()).hexdigest()


def find_workspace(conn: psycopg.Connection[Any], slug: str) -> Workspace:
    """Look a workspace up by slug (as owner: the slug is what selects the tenant)."""
    with system_transaction(conn, dict_rows=True) as cur:
        row = cur.execute(query("workspace_by_slug"), {"slug": slug}).fetchone()
    if row is None:
        raise DeployError([f"unknown workspace {slug!r}"])
    return Workspace(row["id"], row["slug"], row["name"], row["settings"] or {})


def _columns(doc: Mapping[str, Any]) -> dict[str, Any]:
    merged = {**DEFAULTS, **doc}
    cycles = doc.get("cycles") or {}
    return {
        "name": merged["name"],
        "description": merged["description"],
        "category": merged["category"],
        "trigger_type": merged["trigger_type"],
        "trigger_config": Jsonb(merged.get("trigger_config") or {}),
        "conditions": Jsonb(merged["conditions"] if merged["conditions"] is not None else []),
        "actions": Jsonb(merged["actions"]),
        "enabled": bool(merged["enabled"]),
        "run_once": bool(merged["run_once"]),
        "on_error": merged["on_error"],
        "max_retries": int(merged["max_retries"]),
        "reenrollment": merged["reenrollment"],
        "max_chain_depth": cycles.get("max_depth") if cycles.get("allow") else None,
        "document": Jsonb({k: v for k, v in doc.items() if k != "$schema"}),
    }


def _cycle_problem(cur: psycopg.Cursor[Any], doc: Mapping[str, Any]) -> str | None:
    if (doc.get("cycles") or {}).get("allow") or doc.get("enabled") is False:
        return None  # opted in, or disabled: enabling runs the check again
    others: dict[str, Mapping[str, Any]] = {}
    for row in cur.execute(query("automation_live_documents")):
        if row["name"] == doc["name"]:
            continue
        stored = row["document"] or {
            "trigger_type": row["trigger_type"],
            "trigger_config": row["trigger_config"],
            "actions": row["actions"],
        }
        # The column, not the deployed document, says whether it is enabled now.
        others[row["name"]] = {**stored, "enabled": row["enabled"]}
    path = find_cycle({**others, doc["name"]: doc}, doc["name"])
    if path is None:
        return None
    return (
        f"/actions: deploying {doc['name']!r} would close a trigger cycle: {format_cycle(path)}; "
        'break it, or opt in with "cycles": {"allow": true, "max_depth": N}'
    )


def deploy(
    conn: psycopg.Connection[Any],
    workspace: Workspace,
    doc: Mapping[str, Any],
    *,
    user_id: UUID | None = None,
    deployed_by_name: str | None = None,
    validate: bool = True,
) -> DeployResult:
    """Validate and create/update the automation named ``doc['name']``; DeployError if not."""
    if validate:
        from engine.validation import format_problem, validate_document

        problems = validate_document(doc)
        if problems:
            raise DeployError([format_problem(p) for p in problems])
    digest = checksum(doc)
    who = deployed_by_name or _os_user()
    with tenant_transaction(conn, workspace.id, user_id, dict_rows=True) as cur:
        cur.execute(query("automation_deploy_lock"), {"workspace_id": str(workspace.id)})
        cycle = _cycle_problem(cur, doc)
        if cycle:
            raise DeployError([cycle])
        existing = cur.execute(query("automation_by_name"), {"name": doc["name"]}).fetchone()
        params = {**_columns(doc), "workspace_id": workspace.id, "user_id": user_id}
        if existing is None:
            row = cur.execute(query("automation_insert"), params).fetchone()
            automation_id, version, created = row["id"], 1, True
        else:
            automation_id = existing["id"]
            if existing["document"] is not None and checksum(existing["document"]) == digest:
                return DeployResult(
                    automation_id, doc["name"], existing["current_version"], False, False
                )
            row = cur.execute(
                query("automation_update"), {**params, "id": automation_id}
            ).fetchone()
            version, created = row["current_version"], False
        cur.execute(
            query("automation_version_insert"),
            {
                "automation_id": automation_id,
                "workspace_id": workspace.id,
                "version": version,
                "document": params["document"],
                "checksum": digest,
                "user_id": user_id,
                "deployed_by_name": who,
            },
        )
    return DeployResult(automation_id, doc["name"], version, created, True)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def list_automations(conn: psycopg.Connection[Any], workspace: Workspace) -> list[dict[str, Any]]:
    with tenant_transaction(conn, workspace.id, dict_rows=True) as cur:
        return list(cur.execute(query("automation_list")))


def show_automation(
    conn: psycopg.Connection[Any], workspace: Workspace, ref: str
) -> dict[str, Any] | None:
    with tenant_transaction(conn, workspace.id, dict_rows=True) as cur:
        return cur.execute(query("automation_show"), {"ref": ref}).fetchone()


def set_enabled(
    conn: psycopg.Connection[Any], workspace: Workspace, ref: str, enabled: bool
) -> dict[str, Any] | None:
    """Enable or disable by id or name; None when no such automation in this workspace.

    Enabling re-runs the cycle check: an automation disabled to break a loop must not
    silently close it again.
    """
    with tenant_transaction(conn, workspace.id, dict_rows=True) as cur:
        cur.execute(query("automation_deploy_lock"), {"workspace_id": str(workspace.id)})
        row = cur.execute(
            query("automation_set_enabled"), {"ref": ref, "enabled": enabled}
        ).fetchone()
        if row is not None and enabled:
            current = cur.execute(query("automation_show"), {"ref": str(row["id"])}).fetchone()
            doc = {**(current["document"] or {}), "name": current["name"], "enabled": True}
            cycle = _cycle_problem(cur, doc)
            if cycle:
                raise DeployError([cycle.replace("deploying", "enabling")])
        return row


def list_versions(
    conn: psycopg.Connection[Any], workspace: Workspace, ref: str
) -> list[dict[str, Any]]:
    with tenant_transaction(conn, workspace.id, dict_rows=True) as cur:
        return list(cur.execute(query("automation_versions_list"), {"ref": ref}))
