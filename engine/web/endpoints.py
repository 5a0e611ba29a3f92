"""Webhook endpoints and their signing secrets: one URL per ``webhook`` automation, secrets
created and rotated by operators (``haste webhook ...``), read by the intake.

An endpoint is ``/hooks/<token>``; the token (24 random bytes, url-safe) only says which
automation a request is for. What authenticates a request is its Standard Webhooks
signature, made with one of the endpoint's valid secrets.

Secret lifecycle: ``create`` gives an endpoint its first secret. ``rotate`` adds a new one
and gives every secret valid so far an expiry at now + overlap
(``HASTE_WEBHOOK_SECRET_OVERLAP``, one day by default): during the overlap both verify,
so the sender can switch without a single refused delivery; after it only the new one
does. ``rotate --overlap 0`` revokes the old ones at once (a leaked secret).

The automation is looked up under the workspace's RLS (another workspace's automation is
not found); endpoint and secret rows are then written as the owner, because tenant code
has no access to secrets at all.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg

from engine.automations import Workspace, show_automation
from engine.db import system_transaction
from engine.queries import query

#: Bytes of randomness of a URL token and of a signing secret.
TOKEN_BYTES = 24
SECRET_BYTES = 32


class EndpointError(Exception):
    """The request names no webhook automation of this workspace, or cannot be done."""


@dataclass(frozen=True)
class Endpoint:
    id: UUID
    automation_id: UUID
    automation: str
    token: str

    @property
    def path(self) -> str:
        return f"/hooks/{self.token}"


@dataclass(frozen=True)
class NewSecret:
    """A secret just made: its only appearance in clear, to hand to the sender."""

    endpoint: Endpoint
    secret: str
    created_at: datetime
    previous_valid_until: datetime | None


def generate_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def _automation(conn: psycopg.Connection[Any], workspace: Workspace, ref: str) -> dict[str, Any]:
    row = show_automation(conn, workspace, ref)
    if row is None:
        raise EndpointError(f"no automation {ref!r} in workspace {workspace.slug}")
    if row["trigger_type"] != "webhook":
        raise EndpointError(
            f"automation {row['name']!r} is triggered by {row['trigger_type']}, not webhook"
        )
    return row


def ensure_endpoint(conn: psycopg.Connection[Any], workspace: Workspace, ref: str) -> Endpoint:
    """The endpoint of a webhook automation, created on first use (idempotent)."""
    automation = _automation(conn, workspace, ref)
    with system_transaction(conn, dict_rows=True) as cur:
        row = cur.execute(
            query("webhook_endpoint_insert"),
            {
                "workspace_id": workspace.id,
                "automation_id": automation["id"],
                "token": secrets.token_urlsafe(TOKEN_BYTES),
            },
        ).fetchone()
        if row is None:
            row = cur.execute(
                query("webhook_endpoint_of_automation"), {"automation_id": automation["id"]}
            ).fetchone()
    assert row is not None
    return Endpoint(row["id"], automation["id"], automation["name"], row["token"])


def add_secret(
    conn: psycopg.Connection[Any],
    workspace: Workspace,
    ref: str,
    *,
    overlap: float | None,
) -> NewSecret:
    """A new secret for the automation's endpoint. ``overlap`` None keeps the secrets valid
    so far as they are (``create``); a number of seconds makes them expire after it
    (``rotate``)."""
    endpoint = ensure_endpoint(conn, workspace, ref)
    secret = generate_secret()
    until: datetime | None = None
    with system_transaction(conn, dict_rows=True) as cur:
        if overlap is not None:
            expired = cur.execute(
                query("webhook_secret_expire_current"),
                {"endpoint_id": endpoint.id, "overlap": float(overlap)},
            ).fetchall()
            until = max((r["expires_at"] for r in expired), default=None)
        row = cur.execute(
            query("webhook_secret_insert"),
            {"endpoint_id": endpoint.id, "workspace_id": workspace.id, "secret": secret},
        ).fetchone()
    assert row is not None
    return NewSecret(endpoint, secret, row["created_at"], until)


def list_secrets(
    conn: psycopg.Connection[Any], workspace: Workspace, ref: str
) -> tuple[Endpoint, list[dict[str, Any]]]:
    """The endpoint and its secrets (a short preview of each, never the whole secret)."""
    endpoint = ensure_endpoint(conn, workspace, ref)
    with system_transaction(conn, dict_rows=True) as cur:
        rows = list(cur.execute(query("webhook_secret_list"), {"endpoint_id": endpoint.id}))
    return endpoint, rows
