"""Fixtures of the chaos suite: its OWN embedded PostgreSQL and Redis (a data directory of
their own, started once for the module that uses them), so that scenarios can stop,
restart and wipe them without disturbing the session-wide ``services`` the rest of the
suite shares.

Each scenario gets a fresh copy of a migrated template database, an empty Redis, a fake
HTTP receiver and a :class:`~tests.chaos.processes.Processes` registry whose processes
are all stopped on the way out. Set ``HASTE_KEEP_CHAOS_LOGS=1`` to keep the processes'
logs (their directory is printed).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis as redis_lib
from psycopg import sql

from engine.migrations import migrate
from engine.services import EmbeddedPostgres, EmbeddedRedis
from tests.chaos.cluster import HTTP_DELAY, TEMPLATE, ChaosServices, Cluster, with_dbname
from tests.chaos.processes import Processes, process_env
from tests.fakes.http_server import Reply, http_server


@pytest.fixture(scope="module")
def chaos_services() -> Iterator[ChaosServices]:
    # Outside pytest's basetemp (see tests/conftest.py: the embedded PostgreSQL runs as
    # its own system user when we are root and must traverse the path).
    data_dir = Path(tempfile.mkdtemp(prefix="haste-chaos-"))
    postgres = EmbeddedPostgres(data_dir / "postgres").start()
    redis_server = EmbeddedRedis(data_dir / "redis")
    try:
        redis_server.start()
        with psycopg.connect(postgres.url("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEMPLATE)))
        migrate(postgres.url(TEMPLATE))
        yield ChaosServices(data_dir, postgres, redis_server)
    finally:
        redis_server.stop()
        postgres.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def cluster(chaos_services: ChaosServices) -> Iterator[Cluster]:
    chaos_services.ensure_running()
    name = f"chaos_{uuid.uuid4().hex[:10]}"
    admin = chaos_services.admin_url
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
                sql.Identifier(name), sql.Identifier(TEMPLATE)
            )
        )
    client = redis_lib.Redis.from_url(chaos_services.redis_url)
    client.flushall()
    client.close()
    db_url = with_dbname(admin, name)
    log_dir = Path(tempfile.mkdtemp(prefix="haste-chaos-logs-"))
    data_dir = chaos_services.data_dir / "processes"
    processes = Processes(
        env=lambda role: process_env(db_url, chaos_services.redis_url, data_dir, role),
        log_dir=log_dir,
    )
    with http_server() as http:
        http.reply(Reply(200, delay=HTTP_DELAY))
        cluster = Cluster(chaos_services, db_url, http, processes)
        try:
            yield cluster
        finally:
            processes.stop_all()
            cluster.close()
            if os.environ.get("HASTE_KEEP_CHAOS_LOGS"):
                print(f"chaos logs kept in {log_dir}")
            else:
                shutil.rmtree(log_dir, ignore_errors=True)
    chaos_services.ensure_running()
    with psycopg.connect(chaos_services.admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
