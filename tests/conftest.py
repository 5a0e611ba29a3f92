"""Shared fixtures: one embedded PostgreSQL and Redis per pytest run, a database per test.

The services start once (the same code path as ``haste up``), a template database is
migrated once, and each test that asks for ``db`` gets a fresh ``CREATE DATABASE ...
TEMPLATE`` copy (FILE_COPY strategy, ~tens of ms) that is dropped afterwards, so tests
cannot see each other's rows. Set ``HASTE_TEST_DATABASE_URL`` / ``HASTE_TEST_REDIS_URL``
to run against real servers instead (the database user must be allowed to CREATE
DATABASE; test databases are named ``haste_t_*`` and dropped).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

import psycopg
import pytest
import redis as redis_lib
from psycopg import sql

from engine.config import load_settings
from engine.migrations import migrate
from engine.services import Services, start_services

TEMPLATE_DB = "haste_template"


def with_dbname(url: str, dbname: str) -> str:
    """The same conninfo URL pointing at another database."""
    parts = urlparse(url)
    return urlunparse(parts._replace(path=f"/{dbname}"))


def service_data_dir() -> Path:
    """A data dir for embedded servers outside pytest's basetemp.

    pytest resets ``/tmp/pytest-of-<user>`` to mode 0700 on every run, while the embedded
    PostgreSQL runs as its own system user when we are root and must traverse the path.
    """
    return Path(tempfile.mkdtemp(prefix="haste-test-"))


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A fresh HASTE_DATA_DIR for tests that start their own embedded servers."""
    path = service_data_dir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    data_dir = service_data_dir()
    env = {
        "HASTE_DATA_DIR": str(data_dir),
        "HASTE_LOG_LEVEL": "WARNING",
    }
    if os.environ.get("HASTE_TEST_DATABASE_URL"):
        env["DATABASE_URL"] = os.environ["HASTE_TEST_DATABASE_URL"]
    if os.environ.get("HASTE_TEST_REDIS_URL"):
        env["REDIS_URL"] = os.environ["HASTE_TEST_REDIS_URL"]
    svc = start_services(load_settings(env))
    try:
        yield svc
    finally:
        svc.stop_owned()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def admin_url(services: Services) -> str:
    """Conninfo of the maintenance database, for CREATE/DROP DATABASE."""
    return with_dbname(services.database_url, "postgres")


@pytest.fixture(scope="session")
def template_db(admin_url: str) -> str:
    """A database with every migration applied, copied for each test."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(TEMPLATE_DB))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEMPLATE_DB)))
    migrate(with_dbname(admin_url, TEMPLATE_DB))
    return TEMPLATE_DB


def create_test_database(admin_url: str, template: str | None) -> str:
    name = f"haste_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        stmt = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            stmt = sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        conn.execute(stmt)
    return name


def drop_test_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture
def db_url(admin_url: str, template_db: str) -> Iterator[str]:
    """Conninfo of a fresh, fully migrated database owned by this test."""
    name = create_test_database(admin_url, template_db)
    try:
        yield with_dbname(admin_url, name)
    finally:
        drop_test_database(admin_url, name)


@pytest.fixture
def empty_db_url(admin_url: str) -> Iterator[str]:
    """Conninfo of a fresh database with no migrations applied."""
    name = create_test_database(admin_url, None)
    try:
        yield with_dbname(admin_url, name)
    finally:
        drop_test_database(admin_url, name)


@pytest.fixture
def db(db_url: str) -> Iterator[psycopg.Connection[Any]]:
    """Autocommit owner connection to the test's database."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def redis_url(services: Services) -> Iterator[str]:
    """The run's Redis, emptied before each test that uses it."""
    client = redis_lib.Redis.from_url(services.redis_url)
    client.flushall()
    client.close()
    yield services.redis_url


@pytest.fixture
def executor(db_url: str, redis_url: str) -> Iterator[Any]:
    """A :class:`workers.executor.Executor` on the test's database and Redis, run in-process
    (the executor and worker tests call ``run`` / ``run_many`` on it directly)."""
    from engine.db import make_pool
    from workers import broker as broker_module
    from workers.executor import Executor
    from workers.heartbeat import Heartbeat

    broker_module.configure(redis_url)
    pool = make_pool(db_url, max_size=4, name="test-executor")
    ex = Executor(pool=pool, heartbeat=Heartbeat(db_url, 5.0))
    try:
        yield ex
    finally:
        ex.heartbeat.stop()
        pool.close()
