"""Forward-only SQL migrations: ``schemas/sql/NNNN_name.sql`` applied in order.

State machine of one file: *pending* → *applied* (recorded in ``schema_migrations`` with
the SHA-256 of its text). An applied file whose text changed is *changed* and makes
``migrate`` refuse to run at all; a recorded version whose file is gone is *missing* and
is refused too (the code on disk is older than the database).

Concurrency: the whole run holds a session-level advisory lock, and each file is applied
in its own transaction together with its ``schema_migrations`` row. A second migrator
blocks on the lock, then re-reads what is applied and finds nothing to do. Per-file
transactions (rather than one for the whole run) keep a failure in file N from undoing
files 1..N-1 that are already correct, and keep lock times short on a busy database.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psycopg

from engine.queries import query
from schemas import SQL_DIR

#: Key of the advisory lock that serialises migrators (arbitrary, stable: "haste-mig").
MIGRATION_LOCK_KEY = 0x68617374656D6967
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(RuntimeError):
    """The database and the migration files disagree; nothing was applied."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def filename(self) -> str:
        return f"{self.version:04d}_{self.name}.sql"


@dataclass(frozen=True)
class MigrationState:
    version: int
    name: str
    state: str  # applied | pending | changed | missing
    applied_at: datetime | None


def discover(directory: Path = SQL_DIR) -> list[Migration]:
    """Migration files in version order; a badly named or duplicate file is an error."""
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files must be named NNNN_name.sql")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(
                f"{path.name}: version {version} is also used by {found[version].filename}"
            )
        found[version] = Migration(version, match.group(2), path.read_text())
    return [found[v] for v in sorted(found)]


def _applied(conn: psycopg.Connection) -> dict[int, tuple[str, str, datetime]]:
    exists = conn.execute(query("migration_table_exists")).fetchone()
    if not exists or not exists[0]:
        return {}
    return {row[0]: (row[1], row[2], row[3]) for row in conn.execute(query("migration_list"))}


def status(
    conn: psycopg.Connection, migrations: list[Migration] | None = None
) -> list[MigrationState]:
    """Every known version with its state, for ``haste db status`` and readiness checks."""
    migrations = discover() if migrations is None else migrations
    applied = _applied(conn)
    states: list[MigrationState] = []
    for mig in migrations:
        if mig.version not in applied:
            states.append(MigrationState(mig.version, mig.name, "pending", None))
            continue
        _, checksum, at = applied[mig.version]
        state = "applied" if checksum == mig.checksum else "changed"
        states.append(MigrationState(mig.version, mig.name, state, at))
    known = {m.version for m in migrations}
    for version, (name, _, at) in sorted(applied.items()):
        if version not in known:
            states.append(MigrationState(version, name, "missing", at))
    return sorted(states, key=lambda s: s.version)


def _refuse_drift(states: list[MigrationState]) -> None:
    problems = [
        f"{s.version:04d}_{s.name}.sql was changed after it was applied"
        if s.state == "changed"
        else f"{s.version:04d}_{s.name}.sql is applied in the database but missing on disk"
        for s in states
        if s.state in ("changed", "missing")
    ]
    if problems:
        raise MigrationError(
            "refusing to migrate: "
            + "; ".join(problems)
            + ". Applied migrations are immutable: add a new file instead."
        )


def migrate(conninfo: str, migrations: list[Migration] | None = None) -> list[Migration]:
    """Apply every pending file; returns what this call applied (empty when up to date)."""
    migrations = discover() if migrations is None else migrations
    applied_now: list[Migration] = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        try:
            conn.execute(query("migration_table_create"))
            states = status(conn, migrations)
            _refuse_drift(states)
            pending = {s.version for s in states if s.state == "pending"}
            for mig in migrations:
                if mig.version not in pending:
                    continue
                started = time.monotonic()
                try:
                    with conn.transaction():
                        conn.execute(mig.sql.encode())
                        conn.execute(
                            query("migration_record"),
                            {
                                "version": mig.version,
                                "name": mig.name,
                                "checksum": mig.checksum,
                                "execution_ms": int((time.monotonic() - started) * 1000),
                            },
                        )
                except psycopg.Error as exc:
                    raise MigrationError(
                        f"{mig.filename} failed and was rolled back: {exc}"
                    ) from exc
                applied_now.append(mig)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
    return applied_now


def is_current(conn: psycopg.Connection) -> bool:
    """True when every file on disk is applied unchanged (readiness probes use this)."""
    return all(s.state == "applied" for s in status(conn))
