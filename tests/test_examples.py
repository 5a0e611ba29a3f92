"""examples/automations: every document is valid, and together they cover every trigger
type and every action type (so each has at least one worked, checked example)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.definitions import MAIN_SCHEMA_PATH, action_types, iter_steps, trigger_types
from engine.validation import format_problem, validate_files

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "automations"
FILES = sorted(EXAMPLES.glob("*.json"))


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_example_validates_with_zero_problems(path: Path) -> None:
    assert [format_problem(p) for p in validate_files([path])] == []


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_example_points_editors_at_the_schema_file(path: Path) -> None:
    reference = load(path)["$schema"]
    assert reference == "../../schemas/automation.schema.json"
    assert (path.parent / reference).resolve() == MAIN_SCHEMA_PATH


def test_every_trigger_type_has_an_example() -> None:
    covered = {load(path)["trigger_type"] for path in FILES}
    assert sorted(set(trigger_types()) - covered) == []


def test_every_action_type_has_an_example() -> None:
    covered = {step["type"] for path in FILES for _, step in iter_steps(load(path)["actions"])}
    assert sorted(set(action_types()) - covered) == []


def test_every_time_based_mode_has_an_example() -> None:
    configs = [load(p)["trigger_config"] for p in FILES if load(p)["trigger_type"] == "time_based"]
    modes = {mode for config in configs for mode in ("cron", "at", "date_field") if mode in config}
    assert modes == {"cron", "at", "date_field"}
