"""The chaos suite's servers and scenario state: its OWN embedded PostgreSQL and Redis,
which scenarios may stop, restart and wipe, and one scenario's database, fake HTTP
receiver and processes (fixtures in tests/chaos/conftest.py)."""

from __future__ import annotations

import contextlib
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

import psycopg
import redis as redis_lib

from engine.services import EmbeddedPostgres, EmbeddedRedis
from tests.chaos.processes import Processes
from tests.fakes.http_server import FakeHttp

TEMPLATE = "chaos_template"
#: How long the fake receiver holds each call: long enough to kill a worker inside a step.
HTTP_DELAY = 0.15


def with_dbname(url: str, dbname: str) -> str:
    return urlunparse(urlparse(url)._replace(path=f"/{dbname}"))


@dataclass
class ChaosServices:
    """The suite's own PostgreSQL and Redis, which scenarios may break and restart."""

    data_dir: Path
    postgres: EmbeddedPostgres
    redis: EmbeddedRedis

    @property
    def admin_url(self) -> str:
        return self.postgres.url("postgres")

    @property
    def redis_url(self) -> str:
        return self.redis.url

    def restart_postgres(self, down: float) -> None:
        """``pg_ctl stop -m fast`` (every session is cut), ``down`` seconds, start again."""
        self.postgres.stop()
        time.sleep(down)
        self.postgres.start()

    def wipe_redis(self) -> int:
        """Stop Redis and delete its data files: every queued or delayed message is gone.
        Returns how many messages Redis held just before."""
        held = 0
        client = redis_lib.Redis.from_url(self.redis_url)
        with contextlib.suppress(redis_lib.RedisError):
            for key in client.scan_iter("dramatiq:*.msgs"):
                held += int(client.hlen(key))
        client.close()
        self.redis.stop()
        base = self.redis.data_dir.resolve()
        shutil.rmtree(base / "appendonlydir", ignore_errors=True)
        for name in ("dump.rdb", "appendonly.aof"):
            (base / name).unlink(missing_ok=True)
        return held

    def ensure_running(self) -> None:
        if not self.postgres.is_running():
            self.postgres.start()
        if not self.redis.is_running():
            self.redis.start()


@dataclass
class Cluster:
    """One scenario: its database, the shared Redis, a fake receiver and its processes."""

    services: ChaosServices
    db_url: str
    http: FakeHttp
    processes: Processes
    _db: psycopg.Connection[Any] | None = field(default=None, repr=False)

    @property
    def redis_url(self) -> str:
        return self.services.redis_url

    @property
    def db(self) -> psycopg.Connection[Any]:
        """An autocommit owner connection, opened again if a restart broke it."""
        if self._db is None or self._db.closed or self._db.broken:
            if self._db is not None:
                self._db.close()
            self._db = psycopg.connect(self.db_url, autocommit=True)
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
