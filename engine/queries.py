"""Named SQL queries, kept in ``schemas/queries/*.sql`` rather than in Python strings.

A file holds blocks introduced by ``-- name: entity_verb`` lines (the Procrastinate
convention). Names are unique across files; they are parsed once and looked up with
:func:`query`. Keeping SQL in SQL files lets a reader (and ``psql``) see every statement
the engine runs against a table in one place.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from schemas import ROOT

QUERY_DIR = ROOT / "queries"
_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


def parse_queries(text: str, origin: str = "<string>") -> dict[str, str]:
    """Split a file into its named blocks; a duplicate name is a programming error."""
    parts = _NAME.split(text)
    found: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in found:
            raise ValueError(f"{origin}: query {name!r} is defined twice")
        found[name] = body.strip().rstrip(";").strip()
    return found


@cache
def all_queries(directory: Path = QUERY_DIR) -> dict[str, str]:
    merged: dict[str, str] = {}
    for path in sorted(directory.glob("*.sql")):
        for name, body in parse_queries(path.read_text(), path.name).items():
            if name in merged:
                raise ValueError(f"{path.name}: query {name!r} is also defined in another file")
            merged[name] = body
    return merged


def query(name: str) -> str:
    """The SQL text of a named query; KeyError names what is missing."""
    try:
        return all_queries()[name]
    except KeyError:
        raise KeyError(f"no SQL query named {name!r} in {QUERY_DIR}") from None
