"""schemathesis against the served OpenAPI document: generated requests (valid and
invalid) to every operation, with a live key, never get a 5xx."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path
from typing import Any

import psycopg

from engine.automations import deploy
from tests.fakes.crm import Workspace as FakeWorkspace
from tests.fakes.crm import make_contact
from tests.web_support import (
    MANUAL_DOC,
    api_key,
    engine_workspace,
    serving,
    webhook_automation,
)

ROOT = Path(__file__).resolve().parents[1]


def test_schemathesis_finds_no_server_error(
    db: psycopg.Connection[Any], db_url: str, redis_url: str, tmp_path: Path
) -> None:
    ws = engine_workspace(db)
    deploy(db, ws, MANUAL_DOC)
    hook = webhook_automation(db, ws)
    make_contact(db, FakeWorkspace(ws.id, uuid.uuid4()))
    key = api_key(db, ws)

    # Real identifiers, so generated requests reach the handlers' logic, not only 404s.
    token = hook.path.rsplit("/", 1)[1]
    (tmp_path / "schemathesis.toml").write_text(
        f'[parameters]\n"path.ref" = "enrich"\n"path.token" = "{token}"\n'
    )
    with serving(db_url, redis_url) as server:
        run = subprocess.run(
            [
                str(ROOT / ".venv/bin/schemathesis"),
                "run",
                f"{server.url}/openapi.json",
                "--checks",
                "not_a_server_error",
                "--max-examples",
                "10",
                "--phases",
                "examples,fuzzing",
                "--seed",
                "1",
                "--generation-database",
                "none",
                "--no-shrink",
                "--no-color",
                "--workers",
                "2",
                "--header",
                f"Authorization: Bearer {key}",
                "--request-timeout",
                "10",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )

    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
