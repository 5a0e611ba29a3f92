"""Embedded PostgreSQL and Redis: start, reuse, stop, restart with data kept."""

from __future__ import annotations

from pathlib import Path

import psycopg
import redis

from engine.config import load_settings
from engine.services import start_services


def settings_for(data_dir: Path):
    return load_settings({"HASTE_DATA_DIR": str(data_dir), "HASTE_LOG_LEVEL": "WARNING"})


def test_services_start_stop_and_restart_keep_data(data_dir: Path) -> None:
    first = start_services(settings_for(data_dir))
    try:
        assert first.postgres is not None and first.postgres.started_here
        with psycopg.connect(first.database_url, autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (v text)")
            conn.execute("INSERT INTO kept VALUES ('survives')")
        redis.Redis.from_url(first.redis_url).set("kept", "survives")
    finally:
        first.stop_owned()
    assert not first.postgres.is_running()
    assert first.redis is not None and not first.redis.is_running()

    second = start_services(settings_for(data_dir))
    try:
        with psycopg.connect(second.database_url) as conn:
            assert conn.execute("SELECT v FROM kept").fetchone() == ("survives",)
        assert redis.Redis.from_url(second.redis_url).get("kept") == b"survives"
    finally:
        second.stop_owned()


def test_running_services_are_reused_and_left_to_their_owner(data_dir: Path) -> None:
    owner = start_services(settings_for(data_dir))
    try:
        guest = start_services(settings_for(data_dir))
        assert guest.postgres is not None and not guest.postgres.started_here
        assert guest.redis is not None and not guest.redis.started_here
        assert guest.database_url == owner.database_url
        guest.stop_owned()

        assert owner.postgres is not None and owner.postgres.is_running()
        assert owner.redis is not None and owner.redis.is_running()
    finally:
        owner.stop_owned()
    assert not owner.postgres.is_running()


def test_external_urls_start_nothing(data_dir: Path, services) -> None:
    settings = load_settings(
        {
            "HASTE_DATA_DIR": str(data_dir),
            "DATABASE_URL": services.database_url,
            "REDIS_URL": services.redis_url,
        }
    )
    svc = start_services(settings)

    assert svc.postgres is None and svc.redis is None
    assert svc.database_url == services.database_url
    assert not (data_dir / "postgres").exists()
