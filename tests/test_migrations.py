"""The migration runner: empty → head, head → head, drift refused, concurrency safe."""

from __future__ import annotations

import threading
from pathlib import Path

import psycopg
import pytest

from engine.migrations import Migration, MigrationError, discover, migrate, status


def applied_versions(url: str) -> list[int]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]


def test_empty_database_migrates_to_head(empty_db_url: str) -> None:
    applied = migrate(empty_db_url)

    assert [m.version for m in applied] == [m.version for m in discover()]
    with psycopg.connect(empty_db_url) as conn:
        assert {s.state for s in status(conn)} == {"applied"}
        assert conn.execute("SELECT to_regclass('contacts') IS NOT NULL").fetchone() == (True,)


def test_migrating_twice_is_a_no_op(empty_db_url: str) -> None:
    migrate(empty_db_url)

    assert migrate(empty_db_url) == []
    assert applied_versions(empty_db_url) == [m.version for m in discover()]


def test_changed_applied_migration_is_refused_and_nothing_applied(empty_db_url: str) -> None:
    first = Migration(1, "one", "CREATE TABLE one (id int);")
    migrate(empty_db_url, [first])
    tampered = Migration(1, "one", "CREATE TABLE one (id bigint);")
    pending = Migration(2, "two", "CREATE TABLE two (id int);")

    with pytest.raises(MigrationError, match=r"0001_one\.sql was changed after it was applied"):
        migrate(empty_db_url, [tampered, pending])

    assert applied_versions(empty_db_url) == [1]


def test_applied_migration_missing_on_disk_is_refused(empty_db_url: str) -> None:
    migrate(empty_db_url, [Migration(1, "one", "SELECT 1;"), Migration(2, "two", "SELECT 2;")])

    with pytest.raises(
        MigrationError, match=r"0002_two\.sql is applied in the database but missing"
    ):
        migrate(empty_db_url, [Migration(1, "one", "SELECT 1;")])


def test_status_lists_pending_and_changed(empty_db_url: str) -> None:
    migrate(empty_db_url, [Migration(1, "one", "SELECT 1;")])
    with psycopg.connect(empty_db_url) as conn:
        states = status(conn, [Migration(1, "one", "SELECT 11;"), Migration(2, "two", "SELECT 2;")])

    assert [(s.version, s.state) for s in states] == [(1, "changed"), (2, "pending")]


def test_failing_migration_is_rolled_back_whole(empty_db_url: str) -> None:
    broken = Migration(1, "broken", "CREATE TABLE half (id int); SELECT 1/0;")

    with pytest.raises(MigrationError, match=r"0001_broken\.sql failed and was rolled back"):
        migrate(empty_db_url, [broken])

    with psycopg.connect(empty_db_url) as conn:
        assert conn.execute("SELECT to_regclass('half')").fetchone() == (None,)
    assert applied_versions(empty_db_url) == []


def test_concurrent_migrators_apply_each_file_once(empty_db_url: str) -> None:
    errors: list[BaseException] = []
    applied: list[int] = []
    barrier = threading.Barrier(6)

    def run() -> None:
        try:
            barrier.wait()
            applied.extend(m.version for m in migrate(empty_db_url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert sorted(applied) == [m.version for m in discover()]
    assert applied_versions(empty_db_url) == [m.version for m in discover()]


def test_discover_rejects_badly_named_files(tmp_path: Path) -> None:
    (tmp_path / "0001_ok.sql").write_text("SELECT 1;")
    (tmp_path / "second.sql").write_text("SELECT 2;")

    with pytest.raises(MigrationError, match=r"second\.sql: migration files must be named"):
        discover(tmp_path)


def test_discover_rejects_duplicate_versions(tmp_path: Path) -> None:
    (tmp_path / "0001_a.sql").write_text("SELECT 1;")
    (tmp_path / "0001_b.sql").write_text("SELECT 2;")

    with pytest.raises(MigrationError, match=r"version 1 is also used by 0001_a\.sql"):
        discover(tmp_path)
