"""Configuration: one env-var surface, invalid values named at start-up."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from engine.config import VARIABLES, ConfigError, load_settings

README = Path(__file__).resolve().parents[1] / "README.md"


def test_defaults_need_no_variables() -> None:
    settings = load_settings({})

    assert settings.database_url is None
    assert settings.redis_url is None
    assert settings.data_dir == Path(".haste")
    assert settings.log_level == "INFO"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DATABASE_URL", "mysql://localhost/crm"),
        ("DATABASE_URL", "postgresql://"),
        ("REDIS_URL", "http://localhost:6379"),
        ("HASTE_LOG_LEVEL", "LOUD"),
        ("HASTE_LOG_FORMAT", "xml"),
        ("HASTE_DB_POOL_SIZE", "0"),
        ("HASTE_DB_POOL_SIZE", "ten"),
        ("HASTE_SHUTDOWN_TIMEOUT", "-1"),
    ],
)
def test_invalid_value_names_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{name}='{re.escape(value)}' is invalid: "):
        load_settings({name: value})


def test_choices_are_case_insensitive() -> None:
    assert load_settings({"HASTE_LOG_LEVEL": "debug"}).log_level == "DEBUG"
    assert load_settings({"HASTE_LOG_FORMAT": "JSON"}).log_format == "json"


def test_unix_socket_urls_are_accepted() -> None:
    settings = load_settings(
        {
            "DATABASE_URL": "postgresql://postgres@/haste?host=/tmp/pg",
            "REDIS_URL": "unix:///tmp/redis.sock",
        }
    )
    assert settings.redis_url == "unix:///tmp/redis.sock"


def test_readme_config_table_lists_every_variable() -> None:
    rows = re.findall(r"^\| `([A-Z_]+)` \|", README.read_text(), re.MULTILINE)

    assert sorted(rows) == sorted(v.name for v in VARIABLES)
