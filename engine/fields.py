"""The field catalogue: which dotted paths exist in a run's context, and their types.

Authors write paths such as ``contact.score``, ``previous.contact.lifecycle_stage``,
``deal.contact.email`` or ``steps.classify.output.category`` in conditions, trigger options
and templates. Validation needs to know which exist (to say "unknown field 'scroe' on
contact; did you mean 'score'?") and their types (to refuse ``gte "abc"`` on a number).

The record columns are read from the migrations (``schemas/sql/*.sql``, parsed by
:mod:`engine.ddl`) rather than from a hand-kept list, so a column added by a migration is a
field at once and a typo in this module cannot invent one. Catalogue:

* ``<entity>.<column>`` for contact, deal, company, email, task, note (their tables);
  vector columns are not fields; a JSON column has any sub-path (``contact.custom_fields.x``,
  typed "json": a leaf may force a type with ``"type"``).
* ``<entity>.<relation>.<column>``: one hop along a foreign key to another entity table,
  named for the column without ``_id`` (``deal.contact``, ``email.deal``,
  ``company.parent_company``). One hop only: each hop is a query at run time.
* ``previous.<entity>.<column>``: the record's values before the change (no relations:
  only the changed row's old image is captured).
* ``trigger.*`` (webhook payload, manual input, raw event data) and ``event.*`` (event
  metadata): JSON, any sub-path.
* ``steps.<id>.output`` and below: JSON (engine.validation checks that the step exists and
  runs earlier).
* ``workspace.id|slug|name|timezone`` and ``now``.

Virtual fields that are no column: ``contact.tags`` (array of tag names, from
contact_tags), so that "has any of these tags" is a plain leaf.

Pure: the SQL files are read once and cached; no database.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from engine.ddl import normalize_type, parse_spec
from schemas import SQL_DIR

__all__ = [
    "ENTITIES",
    "FIELD_TYPES",
    "ROOTS",
    "columns",
    "field_type",
    "relations",
    "required_columns",
    "suggest",
    "unknown_field_message",
    "writable_columns",
]

ENTITIES: Mapping[str, str] = {
    "contact": "contacts",
    "deal": "deals",
    "company": "companies",
    "email": "emails",
    "task": "tasks",
    "note": "notes",
}
"""Entity name in paths → table."""

FIELD_TYPES = (
    "string",
    "number",
    "decimal",
    "timestamp",
    "date",
    "boolean",
    "array",
    "json",
    "uuid",
)
"""Every type field_type can return; also the values of a condition leaf's ``type``."""

WORKSPACE_FIELDS: Mapping[str, str] = {
    "id": "uuid",
    "slug": "string",
    "name": "string",
    "timezone": "string",
}

VIRTUAL_FIELDS: Mapping[str, Mapping[str, str]] = {"contact": {"tags": "array"}}
"""Fields that are no column of the entity's table but that the context provides."""

SYSTEM_COLUMNS = frozenset(
    {"id", "workspace_id", "created_at", "updated_at", "deleted_at", "created_by"}
)
"""Columns the engine maintains; actions may not write them."""

SUGGESTION_CUTOFF = 0.7
"""difflib similarity a name needs to be offered as "did you mean"; at 0.6 'deal' would
suggest 'email'."""

ROOTS = (*ENTITIES, "previous", "trigger", "event", "steps", "workspace", "now")
"""First segments a path may start with."""


def _type_of(declared: str) -> str | None:
    """Field type of a column's declared SQL type; None for types that are no field."""
    spelled = normalize_type(declared)
    if spelled.endswith("[]"):
        return "array"
    if spelled.startswith("vector") or spelled == "tsvector":
        return None
    if spelled == "uuid":
        return "uuid"
    if spelled in ("integer", "smallint", "bigint", "real", "double precision"):
        return "number"
    if spelled.startswith("numeric"):
        return "decimal"
    if spelled.startswith("timestamp"):
        return "timestamp"
    if spelled == "date":
        return "date"
    if spelled == "boolean":
        return "boolean"
    if spelled in ("json", "jsonb"):
        return "json"
    return "string"  # text, varchar, char, time, inet, interval: compared as text


@dataclass(frozen=True)
class _Entity:
    columns: dict[str, str]
    relations: dict[str, str]
    required: tuple[str, ...]


@cache
def _catalogue(sql_dir: Path = SQL_DIR) -> dict[str, _Entity]:
    """entity → its fields, relations and NOT NULL columns without default, from the
    migrations."""
    text = "\n".join(p.read_text(encoding="utf-8") for p in sorted(sql_dir.glob("*.sql")))
    spec = parse_spec(text)
    table_entity = {table: entity for entity, table in ENTITIES.items()}
    out: dict[str, _Entity] = {}
    for entity, table_name in ENTITIES.items():
        table = spec.tables.get(table_name)
        cols: dict[str, str] = {}
        rels: dict[str, str] = {}
        required: list[str] = []
        for column in table.columns.values() if table else ():
            if (
                column.not_null
                and column.default is None
                and not column.primary_key
                and column.name not in SYSTEM_COLUMNS
            ):
                required.append(column.name)
            kind = _type_of(column.type)
            if kind is not None:
                cols[column.name] = kind
            target = table_entity.get(column.references or "")
            if target and column.name.endswith("_id"):
                rels[column.name[: -len("_id")]] = target
        cols.update(VIRTUAL_FIELDS.get(entity, {}))
        out[entity] = _Entity(cols, rels, tuple(required))
    return out


def columns(entity: str) -> dict[str, str]:
    """Fields of an entity (columns and virtual fields) with their types."""
    return dict(_catalogue()[entity].columns) if entity in ENTITIES else {}


def relations(entity: str) -> dict[str, str]:
    """Records one foreign-key hop away: relation name → entity (deal → contact, ...)."""
    return dict(_catalogue()[entity].relations) if entity in ENTITIES else {}


def required_columns(entity: str) -> tuple[str, ...]:
    """Columns a create_record step must set: NOT NULL, no default, not engine-maintained."""
    return _catalogue()[entity].required if entity in ENTITIES else ()


def writable_columns(entity: str) -> dict[str, str]:
    """Columns an update_record/create_record step may set."""
    virtual = VIRTUAL_FIELDS.get(entity, {})
    return {
        name: kind
        for name, kind in columns(entity).items()
        if name not in SYSTEM_COLUMNS and name not in virtual
    }


def _record_field(entity: str, rest: list[str], *, hop: bool) -> str | None:
    if not rest:
        return "json"  # the record as a whole
    cols = columns(entity)
    name = rest[0]
    if name in cols:
        kind = cols[name]
        if len(rest) == 1:
            return kind
        return "json" if kind == "json" else None
    target = relations(entity).get(name)
    if hop and target:
        return _record_field(target, rest[1:], hop=False)
    return None


def field_type(path: str) -> str | None:
    """Type of a field path, or None when no such field exists."""
    parts = path.split(".")
    if any(not part for part in parts):
        return None
    root, rest = parts[0], parts[1:]
    if root == "now":
        return None if rest else "timestamp"
    if root in ("trigger", "event"):
        return "json"
    if root == "workspace":
        return WORKSPACE_FIELDS.get(rest[0]) if len(rest) == 1 else None
    if root == "steps":
        return "json" if len(rest) >= 2 and rest[1] == "output" else None
    if root == "previous":
        if rest and rest[0] in ENTITIES:
            return _record_field(rest[0], rest[1:], hop=False)
        return None
    if root in ENTITIES:
        return _record_field(root, rest, hop=True)
    return None


def _a(kind: str) -> str:
    return f"an {kind}" if kind == "array" else f"a {kind}"


def _close(word: str, options: list[str]) -> str | None:
    found = difflib.get_close_matches(word, options, n=1, cutoff=SUGGESTION_CUTOFF)
    return found[0] if found else None


def _diagnose(path: str) -> tuple[str, str | None, str | None]:
    """Why ``path`` is not a field: (message without hint, bad segment, closest valid one)."""
    parts = path.split(".")
    root, rest = parts[0], parts[1:]
    if root not in ROOTS:
        return f"unknown name '{root}'", root, _close(root, list(ROOTS))
    if root == "now":
        return "'now' has no fields", None, None
    if root == "workspace":
        name = rest[0] if rest else ""
        if len(rest) == 1:
            close = _close(name, list(WORKSPACE_FIELDS))
            return f"unknown field '{name}' on workspace", name, close
        return "workspace fields are workspace.id, .slug, .name and .timezone", None, None
    if root == "steps":
        if len(rest) >= 1 and (len(rest) < 2 or rest[1] != "output"):
            return f"'{path}' is not a step output: use steps.<id>.output", None, None
        return "step outputs are steps.<id>.output...", None, None
    entity_rest = rest
    entity = root
    label = root
    hop = True
    if root == "previous":
        if not rest or rest[0] not in ENTITIES:
            name = rest[0] if rest else ""
            return f"unknown record '{name}' in previous", name, _close(name, list(ENTITIES))
        entity, entity_rest, label, hop = rest[0], rest[1:], f"previous.{rest[0]}", False
    cols = columns(entity)
    rels = relations(entity) if hop else {}
    name = entity_rest[0]
    if name in cols:
        return f"'{label}.{name}' is {_a(cols[name])} and has no fields", None, None
    if name in rels:
        sub = entity_rest[1] if len(entity_rest) > 1 else ""
        sub_cols = columns(rels[name])
        if sub in sub_cols:
            return f"'{label}.{name}.{sub}' is {_a(sub_cols[sub])} and has no fields", None, None
        return f"unknown field '{sub}' on {label}.{name}", sub, _close(sub, list(sub_cols))
    if root == "previous" and name in relations(entity):
        return f"previous values exist only for the {entity}'s own fields", None, None
    return f"unknown field '{name}' on {label}", name, _close(name, [*cols, *rels])


def suggest(path: str) -> str | None:
    """The closest existing path to an unknown one ("contact.scroe" → "contact.score")."""
    if field_type(path) is not None:
        return path
    _, bad, close = _diagnose(path)
    if bad is None or close is None:
        return None
    parts = path.split(".")
    index = parts.index(bad)
    fixed = ".".join([*parts[:index], close, *parts[index + 1 :]])
    return fixed if field_type(fixed) is not None else close


def unknown_field_message(path: str) -> str:
    """The author-facing message for a path that is no field."""
    message, _, close = _diagnose(path)
    return f"{message}; did you mean '{close}'?" if close else message
