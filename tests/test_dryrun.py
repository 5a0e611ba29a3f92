"""haste dry-run: trigger, each condition leaf with its actual value, each step's rendered
params and effect, and nothing written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from engine.automations import find_workspace
from engine.cli import main
from engine.dryrun import DryRunError, dry_run, parse_record_ref
from tests.fakes.crm import make_contact, make_workspace

SCORING: dict[str, Any] = {
    "name": "Hot lead",
    "trigger_type": "contact_updated",
    "trigger_config": {"watch": ["score"]},
    "conditions": {"all": [{"field": "contact.score", "op": "gte", "value": 80}]},
    "actions": [
        {"id": "mql", "type": "update_record", "params": {"fields": {"lifecycle_stage": "MQL"}}},
        {"id": "tag", "type": "add_tag", "params": {"tag": "hot", "create_if_missing": True}},
        {
            "id": "notify",
            "type": "http_request",
            "params": {"url": "https://hooks.example.test/{{ contact.email }}", "method": "POST"},
        },
    ],
}


def lifecycle(db: psycopg.Connection[Any], contact: Any) -> str:
    row = db.execute("SELECT lifecycle_stage FROM contacts WHERE id = %s", (contact,)).fetchone()
    assert row is not None
    return str(row[0])


@pytest.fixture
def acme(db: psycopg.Connection[Any]) -> Any:
    ws = make_workspace(db)
    db.execute("UPDATE workspaces SET slug = 'acme' WHERE id = %s", (ws.id,))
    return ws


def test_matching_record_would_run_and_shows_each_step_without_writing(db, acme) -> None:
    contact = make_contact(db, acme, email="ada@example.test", score=90)

    report = dry_run(db, find_workspace(db, "acme"), SCORING, record=f"contacts/{contact}")

    assert report.would_run
    assert report.trigger["matched"] is None  # a bare record has no change to watch
    assert [leaf["actual"] for leaf in report.conditions["leaves"]] == [90]
    assert [(s.id, s.status) for s in report.steps] == [
        ("mql", "would_run"),
        ("tag", "would_run"),
        ("notify", "would_run"),
    ]
    assert report.steps[2].params["url"] == "https://hooks.example.test/ada@example.test"
    assert report.steps[2].effect["not_called"] is True
    assert lifecycle(db, contact) == "lead"
    assert db.execute("SELECT count(*) FROM contact_tags").fetchone() == (0,)


def test_failing_leaf_is_reported_with_its_actual_value(db, acme) -> None:
    contact = make_contact(db, acme, email="bob@example.test", score=40)

    report = dry_run(db, find_workspace(db, "acme"), SCORING, record=f"contacts/{contact}")

    assert not report.would_run
    leaf = report.conditions["leaves"][0]
    assert (leaf["field"], leaf["actual"], leaf["result"]) == ("contact.score", 40, False)
    assert report.steps == []


def test_event_whose_watched_field_did_not_change_does_not_match(db, acme) -> None:
    contact = make_contact(db, acme, score=90)
    event = {
        "event_type": "contact_updated",
        "entity_type": "contact",
        "entity_id": str(contact),
        "old": {"city": "Paris"},
        "new": {"city": "Berlin"},
    }

    report = dry_run(db, find_workspace(db, "acme"), SCORING, event=event)

    assert not report.would_run
    assert report.trigger["matched"] is False
    assert "none of the watched fields" in report.trigger["reason"]


def test_event_values_are_what_the_conditions_see(db, acme) -> None:
    contact = make_contact(db, acme, score=50)
    event = {
        "event_type": "contact_updated",
        "entity_type": "contact",
        "entity_id": str(contact),
        "old": {"score": 50},
        "new": {"score": 95},
    }

    report = dry_run(db, find_workspace(db, "acme"), SCORING, event=event)

    assert report.would_run
    assert report.conditions["leaves"][0]["actual"] == 95


def test_record_of_another_workspace_is_not_found(db, acme) -> None:
    other = make_workspace(db, "other")
    contact = make_contact(db, other, score=90)

    with pytest.raises(DryRunError, match=r"no contact .* in workspace 'acme'"):
        dry_run(db, find_workspace(db, "acme"), SCORING, record=f"contacts/{contact}")


@pytest.mark.parametrize("ref", ["contacts", "widgets/1", "contacts/not-a-uuid"])
def test_bad_record_reference_is_a_clear_error(ref: str) -> None:
    with pytest.raises(DryRunError, match="--record"):
        parse_record_ref(ref)


def test_cli_exit_code_is_3_when_it_would_not_run(db, db_url, acme, tmp_path: Path) -> None:
    contact = make_contact(db, acme, score=10)
    doc = tmp_path / "rule.json"
    doc.write_text(json.dumps(SCORING))

    result = CliRunner().invoke(
        main,
        ["dry-run", str(doc), "--workspace", "acme", "--record", f"contacts/{contact}"],
        env={"DATABASE_URL": db_url},
    )

    assert result.exit_code == 3, result.output
    assert "✗ /all/0: contact.score gte 80 — actual 10" in result.output
    assert "would run: no" in result.output


def test_cli_exit_code_is_0_when_it_would_run(db, db_url, acme, tmp_path: Path) -> None:
    contact = make_contact(db, acme, score=99)
    doc = tmp_path / "rule.json"
    doc.write_text(json.dumps(SCORING))

    result = CliRunner().invoke(
        main,
        ["dry-run", str(doc), "--workspace", "acme", "--record", f"contacts/{contact}", "--json"],
        env={"DATABASE_URL": db_url},
    )

    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["would_run"] is True
