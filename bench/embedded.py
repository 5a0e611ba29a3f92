"""A throwaway embedded PostgreSQL with every migration applied, for one benchmark run.

The benchmarks that need only PostgreSQL (capture, listener, schedule) start their own in
a temp dir, so that nothing else's data, statistics or autovacuum is in their figures.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from engine.migrations import migrate
from engine.services import EmbeddedPostgres, ensure_database


@contextmanager
def migrated_postgres(
    name: str, dbname: str, *, logical_wal: bool = True
) -> Iterator[tuple[EmbeddedPostgres, str]]:
    """``(server, url of dbname)``; the server's temp dir (``server.data_dir.parent``) is
    the run's scratch space, removed with it."""
    with tempfile.TemporaryDirectory(prefix=f"haste-bench-{name}-") as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "pg", logical_wal=logical_wal).start()
        try:
            ensure_database(pg.url("postgres"), dbname)
            url = pg.url(dbname)
            migrate(url)
            yield pg, url
        finally:
            pg.stop()
