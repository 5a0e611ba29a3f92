"""The haste CLI skeleton: version, db commands, and `haste up` stopping cleanly."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import psycopg
from click.testing import CliRunner

from engine import __version__
from engine.cli import main
from engine.migrations import discover
from engine.processes import PROCESSES

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, env: dict[str, str]) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env=env)
    return result.exit_code, result.output


def test_version_prints_the_package_version() -> None:
    code, out = run_cli("version", env={})

    assert code == 0
    assert out.strip() == f"haste {__version__}"


def test_invalid_config_is_a_usage_error_naming_the_variable() -> None:
    code, out = run_cli("version", env={"HASTE_LOG_LEVEL": "LOUD"})

    assert code == 2
    assert "HASTE_LOG_LEVEL='LOUD' is invalid" in out


def test_db_migrate_then_status_on_an_external_database(empty_db_url: str, data_dir: Path) -> None:
    env = {"DATABASE_URL": empty_db_url, "HASTE_DATA_DIR": str(data_dir)}

    code, out = run_cli("db", "migrate", env=env)
    assert code == 0, out
    assert f"applied {discover()[-1].filename}" in out

    code, out = run_cli("db", "migrate", env=env)
    assert (code, out.strip()) == (0, "database is up to date")

    code, out = run_cli("db", "status", env=env)
    assert code == 0
    assert len(re.findall(r" applied ", out)) == len(discover())
    assert not (data_dir / "redis").exists(), "db commands must not start Redis"


def test_db_url_prints_the_configured_url(empty_db_url: str, data_dir: Path) -> None:
    code, out = run_cli(
        "db", "url", env={"DATABASE_URL": empty_db_url, "HASTE_DATA_DIR": str(data_dir)}
    )

    assert (code, out.strip()) == (0, empty_db_url)


def test_up_boots_migrates_and_stops_everything_on_ctrl_c(data_dir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update({"HASTE_DATA_DIR": str(data_dir), "HASTE_LOG_LEVEL": "WARNING"})
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "up"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            started = sum(" started (pid=" in ln for ln in lines)
            if any("Press Ctrl-C" in ln for ln in lines) and started >= len(PROCESSES):
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert ready.wait(120), "".join(lines)
    url = next(ln.split(": ", 1)[1].strip() for ln in lines if "PostgreSQL (embedded)" in ln)
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone() == (
            len(discover()),
        )

    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=90) == 0, "".join(lines)
    reader.join(timeout=10)
    assert not (data_dir / "postgres" / "postmaster.pid").exists()
    assert not (data_dir / "redis" / "redis.pid").exists()


def test_procfile_mirrors_the_process_table() -> None:
    lines = [
        ln.split(":", 1)
        for ln in (ROOT / "Procfile").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]

    assert [(n.strip(), c.strip()) for n, c in lines] == list(PROCESSES)
