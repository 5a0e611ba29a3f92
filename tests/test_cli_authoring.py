"""Author commands end to end through the CLI: validate, deploy, automations ..."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
from click.testing import CliRunner

from engine.cli import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "automations"


def haste(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env=env or {})
    return result.exit_code, result.output


def write(tmp_path: Path, doc: dict[str, Any], name: str = "rule.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(doc, indent=2))
    return str(path)


RULE: dict[str, Any] = {
    "name": "Tag VIPs",
    "trigger_type": "contact_updated",
    "trigger_config": {"watch": ["score"]},
    "actions": [{"id": "tag", "type": "add_tag", "params": {"tag": "vip"}}],
}


def test_validate_accepts_every_example() -> None:
    code, _ = haste("validate", *map(str, sorted(EXAMPLES.glob("*.json"))))

    assert code == 0


def test_validate_prints_file_pointer_and_message_and_exits_1(tmp_path: Path) -> None:
    broken = {**RULE, "actions": [{"id": "tag", "type": "add_tag", "params": {}}]}
    path = write(tmp_path, broken)

    code, out = haste("validate", path)

    assert code == 1
    assert out.strip() == f"{path}:/actions/0/params/tag: 'tag' is a required property"


def test_validate_json_output_is_machine_readable(tmp_path: Path) -> None:
    broken = {**RULE, "conditions": {"field": "contact.scroe", "op": "gte", "value": 1}}
    code, out = haste("validate", "--json", write(tmp_path, broken))

    problems = json.loads(out)
    assert code == 1
    assert problems[0]["pointer"] == "/conditions/field"
    assert "did you mean 'score'" in problems[0]["message"]


def test_deploy_then_list_versions_disable(
    db: psycopg.Connection[Any], db_url: str, tmp_path: Path
) -> None:
    db.execute("INSERT INTO workspaces (name, slug) VALUES ('Acme', 'acme')")
    env = {"DATABASE_URL": db_url}
    path = write(tmp_path, RULE)

    assert haste("deploy", path, "--workspace", "acme", env=env)[1].startswith(
        "Tag VIPs: created, version 1"
    )
    assert "unchanged (version 1)" in haste("deploy", path, "--workspace", "acme", env=env)[1]
    write(tmp_path, {**RULE, "description": "v2"})
    assert "updated, version 2" in haste("deploy", path, "--workspace", "acme", env=env)[1]

    code, out = haste("automations", "list", "--workspace", "acme", env=env)
    assert code == 0 and "Tag VIPs" in out
    code, out = haste("automations", "versions", "Tag VIPs", "--workspace", "acme", env=env)
    assert [ln.split()[0] for ln in out.splitlines()] == ["v1", "v2"]
    assert haste("automations", "disable", "Tag VIPs", "--workspace", "acme", env=env)[
        1
    ].strip() == ("Tag VIPs: disabled")
    shown = json.loads(haste("automations", "show", "Tag VIPs", "--workspace", "acme", env=env)[1])
    assert shown["enabled"] is False and shown["current_version"] == 2


def test_invalid_deploy_writes_nothing(
    db: psycopg.Connection[Any], db_url: str, tmp_path: Path
) -> None:
    db.execute("INSERT INTO workspaces (name, slug) VALUES ('Acme', 'acme')")
    broken = {**RULE, "trigger_type": "contact_updatd"}

    code, out = haste(
        "deploy", write(tmp_path, broken), "--workspace", "acme", env={"DATABASE_URL": db_url}
    )

    assert code == 1
    assert "/trigger_type" in out
    assert db.execute("SELECT count(*) FROM automations").fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM automation_versions").fetchone() == (0,)


def test_deploy_to_unknown_workspace_fails_clearly(db_url: str, tmp_path: Path) -> None:
    code, out = haste(
        "deploy", write(tmp_path, RULE), "--workspace", "nope", env={"DATABASE_URL": db_url}
    )

    assert code == 1
    assert "unknown workspace 'nope'" in out


def test_cycle_refused_by_cli_with_path(
    db: psycopg.Connection[Any], db_url: str, tmp_path: Path
) -> None:
    db.execute("INSERT INTO workspaces (name, slug) VALUES ('Acme', 'acme')")
    loop = {
        **RULE,
        "name": "Bump",
        "actions": [{"id": "b", "type": "update_record", "params": {"fields": {"score": 1}}}],
    }

    code, out = haste(
        "deploy", write(tmp_path, loop), "--workspace", "acme", env={"DATABASE_URL": db_url}
    )

    assert code == 1
    assert "Bump → Bump" in out
