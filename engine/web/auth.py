"""Workspace API keys: created once, shown once, stored as a SHA-256, scoped to one workspace.

A key looks like ``hk_<43 url-safe characters>`` (32 random bytes). The database keeps
``sha256(key)`` and the first characters (``prefix``, to tell keys apart in listings);
authentication hashes the presented key and looks the hash up (unique index), so the
secret is never compared in Python and a database leak gives away no usable key. A fast
hash is right here: the key has 256 bits of entropy, so there is nothing to guess, and a
deliberately slow hash (bcrypt) would add ~100 ms to every API call.

A key resolves to exactly one workspace, and every API operation then runs under that
workspace's row-level security (:func:`engine.db.tenant_transaction`): an id of another
workspace is simply not found (404, never 403, so nothing leaks about what exists).

Keys are revoked, not deleted (the row says who had access, and when it was last used).
"""

from __future__ import annotations

import getpass
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg

from engine.automations import Workspace
from engine.db import system_transaction
from engine.queries import query

KEY_PREFIX = "hk_"
#: Characters of a key kept in clear for listings (``hk_`` + 8).
SHOWN_CHARS = 11
#: Longest string examined as a key: anything longer is refused before hashing.
MAX_KEY_CHARS = 200


@dataclass(frozen=True)
class Principal:
    """Who is calling: a key and the one workspace it may act in."""

    key_id: UUID
    key_name: str
    workspace: Workspace


@dataclass(frozen=True)
class NewKey:
    """A key just created; ``key`` is its only appearance in clear."""

    id: UUID
    key: str
    prefix: str
    name: str
    workspace_id: UUID
    created_at: datetime
    expires_at: datetime | None


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def create_key(
    conn: psycopg.Connection[Any],
    workspace: Workspace,
    name: str,
    *,
    expires_at: datetime | None = None,
    created_by_name: str | None = None,
) -> NewKey:
    key = generate_key()
    with system_transaction(conn, dict_rows=True) as cur:
        row = cur.execute(
            query("api_key_insert"),
            {
                "workspace_id": workspace.id,
                "name": name,
                "prefix": key[:SHOWN_CHARS],
                "key_hash": hash_key(key),
                "created_by_name": created_by_name or _os_user(),
                "expires_at": expires_at,
            },
        ).fetchone()
    assert row is not None
    return NewKey(
        row["id"],
        key,
        row["prefix"],
        row["name"],
        workspace.id,
        row["created_at"],
        row["expires_at"],
    )


def authenticate(conn: psycopg.Connection[Any], key: str) -> Principal | None:
    """The principal of a live key (not revoked, not expired, workspace not deleted)."""
    if not key.startswith(KEY_PREFIX) or len(key) > MAX_KEY_CHARS:
        return None
    with system_transaction(conn, dict_rows=True) as cur:
        row = cur.execute(query("api_key_authenticate"), {"key_hash": hash_key(key)}).fetchone()
    if row is None:
        return None
    workspace = Workspace(
        row["workspace_id"], row["slug"], row["workspace_name"], row["settings"] or {}
    )
    return Principal(row["id"], row["name"], workspace)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def list_keys(conn: psycopg.Connection[Any], workspace: Workspace) -> list[dict[str, Any]]:
    with system_transaction(conn, dict_rows=True) as cur:
        return list(cur.execute(query("api_key_list"), {"workspace_id": workspace.id}))


def revoke_key(
    conn: psycopg.Connection[Any], workspace: Workspace, ref: str
) -> dict[str, Any] | None:
    """Revoke a key of ``workspace`` by id or shown prefix; None when there is no live one."""
    with system_transaction(conn, dict_rows=True) as cur:
        return cur.execute(
            query("api_key_revoke"), {"workspace_id": workspace.id, "ref": ref}
        ).fetchone()


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
