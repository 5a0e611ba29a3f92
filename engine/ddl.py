"""A small parser for the DDL of the CRM schema spec.

The spec (docs/crm-schema.md) is the contract the migrations in schemas/sql
must honour. Reading its CREATE statements mechanically lets the contract
tests enumerate every table, column, constraint, index, policy, view and
function instead of a hand-kept list that silently drifts from the document.

It is deliberately not a SQL parser: it understands the statement shapes the
spec and the migrations use (CREATE TABLE / INDEX / POLICY / [MATERIALIZED]
VIEW / FUNCTION, ALTER TABLE ... ENABLE ROW LEVEL SECURITY) and ignores every
other statement, so prose-like blocks (shell scripts, postgresql.conf lines)
in the markdown do no harm. It is pure: no database, no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "Column",
    "Constraint",
    "Function",
    "Index",
    "Policy",
    "Spec",
    "Table",
    "View",
    "normalize_type",
    "parse_spec",
    "split_statements",
    "sql_blocks",
    "string_literals",
]

ConstraintKind = Literal["CHECK", "UNIQUE", "PK", "FK"]


@dataclass(frozen=True)
class Column:
    """One column as declared; ``type`` keeps the spec's spelling (see normalize_type)."""

    name: str
    type: str
    not_null: bool = False
    default: str | None = None
    primary_key: bool = False
    unique: bool = False
    references: str | None = None
    references_column: str | None = None
    on_delete: str | None = None


@dataclass(frozen=True)
class Constraint:
    """A table constraint; inline column constraints are exposed the same way
    by Table.all_constraints so callers need not care where they were written."""

    name: str | None
    kind: ConstraintKind
    columns: tuple[str, ...]
    expression: str | None = None
    ref_table: str | None = None
    ref_columns: tuple[str, ...] = ()
    on_delete: str | None = None


@dataclass
class Table:
    name: str
    columns: dict[str, Column] = field(default_factory=dict)
    constraints: list[Constraint] = field(default_factory=list)
    partition_of: str | None = None
    partition_bound: str | None = None
    partition_by: str | None = None

    @property
    def primary_key(self) -> tuple[str, ...]:
        for con in self.constraints:
            if con.kind == "PK":
                return con.columns
        return tuple(c.name for c in self.columns.values() if c.primary_key)

    def all_constraints(self) -> list[Constraint]:
        out = list(self.constraints)
        for col in self.columns.values():
            if col.primary_key:
                out.append(Constraint(None, "PK", (col.name,)))
            if col.unique:
                out.append(Constraint(None, "UNIQUE", (col.name,)))
            if col.references:
                out.append(
                    Constraint(
                        None,
                        "FK",
                        (col.name,),
                        ref_table=col.references,
                        ref_columns=(col.references_column,) if col.references_column else (),
                        on_delete=col.on_delete,
                    )
                )
        return out


@dataclass(frozen=True)
class Index:
    name: str
    table: str
    method: str
    elements: tuple[str, ...]
    unique: bool = False
    where: str | None = None

    @property
    def columns(self) -> tuple[str | None, ...]:
        """Plain column per element, None for an expression element: an
        expression's catalogue spelling differs from the source, a column's
        does not, so callers compare only what is comparable."""
        return tuple(_element_column(e) for e in self.elements)


@dataclass(frozen=True)
class Policy:
    name: str
    table: str
    command: str = "ALL"
    roles: tuple[str, ...] = ("public",)
    permissive: bool = True
    using: str | None = None
    with_check: str | None = None


@dataclass(frozen=True)
class View:
    name: str
    query: str
    materialized: bool = False


@dataclass(frozen=True)
class Function:
    name: str
    arguments: tuple[str, ...]
    returns: str
    language: str | None
    body: str

    @property
    def argument_types(self) -> tuple[str, ...]:
        """Types in format_type spelling: a function's identity in the catalogue
        is its name plus these, parameter names do not count."""
        return tuple(_argument_type(a) for a in self.arguments)


@dataclass
class Spec:
    tables: dict[str, Table] = field(default_factory=dict)
    indexes: dict[str, Index] = field(default_factory=dict)
    policies: list[Policy] = field(default_factory=list)
    views: dict[str, View] = field(default_factory=dict)
    functions: list[Function] = field(default_factory=list)
    rls_enabled: list[str] = field(default_factory=list)
    extensions: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------
# Lexing
# ---------------------------------------------------------------------------

_FENCE = re.compile(r"^```sql[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL | re.IGNORECASE)
_DOLLAR = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")
_LITERAL = re.compile(r"'((?:[^']|'')*)'")


def sql_blocks(markdown: str) -> list[str]:
    """The ```sql fenced blocks: only those are DDL, the rest is prose."""
    return [m.group(1) for m in _FENCE.finditer(markdown)]


def _is_ident_char(ch: str) -> bool:
    return ch.isalnum() or ch in "_$"


def split_statements(sql: str) -> list[str]:
    """Split on top-level semicolons, dropping comments.

    Quotes, quoted identifiers and dollar-quoted bodies are kept verbatim,
    because function bodies and string defaults contain ';' and '--'.
    """
    out: list[str] = []
    buf: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        nxt = sql[i + 1] if i + 1 < n else ""
        if ch == "-" and nxt == "-":
            j = sql.find("\n", i)
            i = n if j < 0 else j
            buf.append(" ")
            continue
        if ch == "/" and nxt == "*":
            depth, j = 1, i + 2
            while j < n and depth:
                if sql.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif sql.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            buf.append(" ")
            i = j
            continue
        if ch == "'":
            escapes = i > 0 and sql[i - 1] in "eE" and (i < 2 or not _is_ident_char(sql[i - 2]))
            j = i + 1
            while j < n:
                if escapes and sql[j] == "\\":
                    j += 2
                    continue
                if sql[j] == "'":
                    if j + 1 < n and sql[j + 1] == "'":
                        j += 2
                        continue
                    break
                j += 1
            buf.append(sql[i : j + 1])
            i = j + 1
            continue
        if ch == '"':
            j = i + 1
            while j < n:
                if sql[j] == '"':
                    if j + 1 < n and sql[j + 1] == '"':
                        j += 2
                        continue
                    break
                j += 1
            buf.append(sql[i : j + 1])
            i = j + 1
            continue
        if ch == "$" and (i == 0 or not _is_ident_char(sql[i - 1])):
            m = _DOLLAR.match(sql, i)
            if m:
                end = sql.find(m.group(0), m.end())
                end = n if end < 0 else end + len(m.group(0))
                buf.append(sql[i:end])
                i = end
                continue
        if ch == ";":
            stmt = "".join(buf).strip()
            if stmt:
                out.append(stmt)
            buf = []
            i += 1
            continue
        buf.append(ch)
        i += 1
    stmt = "".join(buf).strip()
    if stmt:
        out.append(stmt)
    return out


@dataclass(frozen=True)
class _Tok:
    text: str
    start: int
    end: int

    @property
    def upper(self) -> str:
        return self.text.upper()

    @property
    def is_group(self) -> bool:
        return self.text.startswith("(")


_TOKEN = re.compile(
    r"""
    "(?:[^"]|"")*"              # quoted identifier
  | [eE]?'(?:[^']|'')*'         # string
  | \$(?:[A-Za-z_][A-Za-z0-9_]*)?\$  # dollar quote opener
  | \[\d*\]                     # array suffix
  | ::
  | [A-Za-z_][A-Za-z0-9_$]*(?:\.(?:[A-Za-z_][A-Za-z0-9_$]*|"(?:[^"]|"")*"))*
  | \d+(?:\.\d+)?
  | \S
    """,
    re.VERBOSE,
)


def _tokens(text: str) -> list[_Tok]:
    """Top-level tokens; a parenthesised group is one token so that commas and
    keywords inside CHECK (...) or DEFAULT f(...) never end a clause."""
    toks: list[_Tok] = []
    pos = 0
    n = len(text)
    while pos < n:
        while pos < n and text[pos].isspace():
            pos += 1
        if pos >= n:
            break
        if text[pos] == "(":
            end = _matching_paren(text, pos)
            toks.append(_Tok(text[pos : end + 1], pos, end + 1))
            pos = end + 1
            continue
        if text[pos] == "$":
            m = _DOLLAR.match(text, pos)
            if m:
                close = text.find(m.group(0), m.end())
                end = n if close < 0 else close + len(m.group(0))
                toks.append(_Tok(text[pos:end], pos, end))
                pos = end
                continue
        m = _TOKEN.match(text, pos)
        assert m is not None  # \S always matches
        toks.append(_Tok(m.group(0), m.start(), m.end()))
        pos = m.end()
    return toks


def _matching_paren(text: str, start: int) -> int:
    depth = 0
    i, n = start, len(text)
    while i < n:
        ch = text[i]
        if ch in "'\"":
            j = i + 1
            while j < n:
                if text[j] == ch:
                    if j + 1 < n and text[j + 1] == ch:
                        j += 2
                        continue
                    break
                j += 1
            i = j + 1
            continue
        if ch == "$":
            m = _DOLLAR.match(text, i)
            if m and (i == 0 or not _is_ident_char(text[i - 1])):
                close = text.find(m.group(0), m.end())
                i = n if close < 0 else close + len(m.group(0))
                continue
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ValueError(f"unbalanced parenthesis at offset {start}: {text[start : start + 60]!r}")


def _split_top_level(text: str) -> list[str]:
    """Split a parenthesised list's inside on commas outside nested groups."""
    parts: list[str] = []
    toks = _tokens(text)
    start = 0
    for tok in toks:
        if tok.text == ",":
            parts.append(text[start : tok.start].strip())
            start = tok.end
    tail = text[start:].strip()
    if tail:
        parts.append(tail)
    return [p for p in parts if p]


def _inner(group: str) -> str:
    return group[1:-1].strip()


def _squash(text: str) -> str:
    return " ".join(text.split())


def _ident(name: str) -> str:
    """Catalogue spelling: unquoted names fold to lower case, quoted ones keep
    theirs; a schema qualifier is dropped (everything lives in one schema)."""
    parts = re.findall(r'"(?:[^"]|"")*"|[^.]+', name)
    last = parts[-1] if parts else name
    if last.startswith('"'):
        return last[1:-1].replace('""', '"')
    return last.lower()


def _span(text: str, toks: list[_Tok]) -> str:
    return _squash(text[toks[0].start : toks[-1].end]) if toks else ""


def string_literals(expr: str) -> list[str]:
    """The quoted literals of an expression, e.g. a CHECK's allowed values;
    they survive PostgreSQL's rewriting of the expression unchanged."""
    return [m.group(1).replace("''", "'") for m in _LITERAL.finditer(expr)]


# ---------------------------------------------------------------------------
# Types
# ---------------------------------------------------------------------------

_PLAIN_TYPES = {
    "uuid": "uuid",
    "text": "text",
    "boolean": "boolean",
    "bool": "boolean",
    "integer": "integer",
    "int": "integer",
    "int4": "integer",
    "serial": "integer",
    "serial4": "integer",
    "smallint": "smallint",
    "int2": "smallint",
    "smallserial": "smallint",
    "bigint": "bigint",
    "int8": "bigint",
    "bigserial": "bigint",
    "serial8": "bigint",
    "real": "real",
    "float4": "real",
    "float": "double precision",
    "float8": "double precision",
    "double precision": "double precision",
    "date": "date",
    "interval": "interval",
    "json": "json",
    "jsonb": "jsonb",
    "inet": "inet",
    "cidr": "cidr",
    "macaddr": "macaddr",
    "bytea": "bytea",
    "money": "money",
    "tsvector": "tsvector",
    "tsquery": "tsquery",
    "xml": "xml",
    "oid": "oid",
}

_MODIFIED_TYPES = {
    "varchar": "character varying",
    "character varying": "character varying",
    "char varying": "character varying",
    "char": "character",
    "character": "character",
    "bpchar": "character",
    "decimal": "numeric",
    "numeric": "numeric",
    "bit varying": "bit varying",
    "varbit": "bit varying",
    "bit": "bit",
}

# name -> (base, with time zone)
_TIME_TYPES = {
    "timestamptz": ("timestamp", True),
    "timestamp": ("timestamp", False),
    "timestamp with time zone": ("timestamp", True),
    "timestamp without time zone": ("timestamp", False),
    "timetz": ("time", True),
    "time": ("time", False),
    "time with time zone": ("time", True),
    "time without time zone": ("time", False),
}

_TYPE_SHAPE = re.compile(
    r"^(?P<base>[a-z_][a-z0-9_]*(?: [a-z_][a-z0-9_]*)*?)"
    r"\s*(?:\((?P<args>[^)]*)\))?"
    r"(?:\s+(?P<zone>with(?:out)? time zone))?$"
)


def normalize_type(declared: str) -> str:
    """Spell a declared type the way PostgreSQL's format_type() prints it, so
    the spec's shorthand (VARCHAR, TIMESTAMPTZ, DECIMAL, ...) can be compared
    with the catalogue. Unknown names (extension types such as vector) keep
    their name and modifier, which is also how format_type prints them."""
    text = _squash(declared).lower()
    array = False
    while True:
        m = re.search(r"\s*\[\d*\]$", text)
        if not m:
            break
        array = True
        text = text[: m.start()]
    if text.endswith(" array"):
        array = True
        text = text[: -len(" array")]
    m = _TYPE_SHAPE.match(text)
    if not m:
        result = text
    else:
        base = m.group("base")
        args = m.group("args")
        zone = m.group("zone")
        mod = f"({','.join(a.strip() for a in args.split(','))})" if args is not None else ""
        if zone:
            base = f"{base} {zone}"
        if base in _TIME_TYPES:
            kind, tz = _TIME_TYPES[base]
            result = f"{kind}{mod} {'with' if tz else 'without'} time zone"
        elif base in _MODIFIED_TYPES:
            name = _MODIFIED_TYPES[base]
            if name == "character" and not mod:
                mod = "(1)"
            result = f"{name}{mod}"
        elif base in _PLAIN_TYPES and not mod:
            result = _PLAIN_TYPES[base]
        elif base == "float" and args is not None:
            result = "real" if int(args) <= 24 else "double precision"
        else:
            result = f"{base}{mod}"
    return f"{result}[]" if array else result


def _argument_type(decl: str) -> str:
    words = _squash(decl)
    words = re.split(r"\s+(?:default\b|=)", words, maxsplit=1, flags=re.IGNORECASE)[0]
    parts = words.split(" ")
    if parts and parts[0].upper() in {"IN", "OUT", "INOUT", "VARIADIC"}:
        parts = parts[1:]
    whole = " ".join(parts)
    candidate = normalize_type(whole)
    first = parts[0].lower() if parts else ""
    looks_like_type = (
        first in _PLAIN_TYPES
        or first in _MODIFIED_TYPES
        or first in _TIME_TYPES
        or first.split("(")[0] in _MODIFIED_TYPES
    )
    if len(parts) > 1 and not looks_like_type:
        return normalize_type(" ".join(parts[1:]))
    return candidate


_EXPRESSION_WORDS = frozenset(
    [
        "and",
        "or",
        "not",
        "in",
        "is",
        "null",
        "true",
        "false",
        "any",
        "all",
        "some",
        "array",
        "like",
        "ilike",
        "similar",
        "to",
        "between",
        "case",
        "when",
        "then",
        "else",
        "end",
        "cast",
        "as",
        "distinct",
        "from",
        "length",
        "char_length",
        "lower",
        "upper",
        "coalesce",
        "nullif",
        "now",
        "current_date",
        "current_timestamp",
    ]
)


def _expression_columns(expr: str) -> tuple[str, ...]:
    """Best-effort column names of an expression: identifiers minus literals,
    casts, function calls and keywords. Good enough to tell which column a
    CHECK constrains, which is all it is used for."""
    text = _LITERAL.sub(" ", expr)
    text = re.sub(r"::\s*[A-Za-z_][A-Za-z0-9_ ]*(?:\([^)]*\))?(?:\[\])?", " ", text)
    names: list[str] = []
    for m in re.finditer(r'"(?:[^"]|"")*"|[A-Za-z_][A-Za-z0-9_$]*(?=\s*(\()?)', text):
        word = m.group(0)
        if m.group(1) or word.lower() in _EXPRESSION_WORDS:
            continue
        name = _ident(word)
        if name not in names:
            names.append(name)
    return tuple(names)


def _element_column(element: str) -> str | None:
    m = re.match(
        r'^("(?:[^"]|"")*"|[A-Za-z_][A-Za-z0-9_$]*)'
        r"(?:\s+(?!ASC\b|DESC\b|NULLS\b)[A-Za-z_][A-Za-z0-9_.]*)?"
        r"(?:\s+(?:ASC|DESC))?(?:\s+NULLS\s+(?:FIRST|LAST))?$",
        element.strip(),
        re.IGNORECASE,
    )
    return _ident(m.group(1)) if m else None


# ---------------------------------------------------------------------------
# Statements
# ---------------------------------------------------------------------------

_COLUMN_STOP = {
    "NOT",
    "NULL",
    "DEFAULT",
    "PRIMARY",
    "UNIQUE",
    "REFERENCES",
    "CHECK",
    "CONSTRAINT",
    "COLLATE",
    "GENERATED",
}
_TABLE_CONSTRAINT_START = {"CONSTRAINT", "PRIMARY", "UNIQUE", "CHECK", "FOREIGN"}
_REF_ACTIONS = ("CASCADE", "RESTRICT", "NO ACTION", "SET NULL", "SET DEFAULT")


def _ref_action(toks: list[_Tok], i: int) -> tuple[str, int]:
    """The referential action starting at toks[i]; returns it and the next index."""
    word = toks[i].upper
    if word in {"NO", "SET"} and i + 1 < len(toks):
        action = f"{word} {toks[i + 1].upper}"
        i += 2
        if word == "SET" and i < len(toks) and toks[i].is_group:
            i += 1
        return action, i
    return word, i + 1


def _parse_references(toks: list[_Tok], i: int) -> tuple[str, tuple[str, ...], str | None, int]:
    """After REFERENCES: table, columns, ON DELETE action, index past the clause."""
    table = _ident(toks[i].text)
    i += 1
    cols: tuple[str, ...] = ()
    if i < len(toks) and toks[i].is_group:
        cols = tuple(_ident(c) for c in _split_top_level(_inner(toks[i].text)))
        i += 1
    on_delete: str | None = None
    while i < len(toks):
        word = toks[i].upper
        if word == "ON" and i + 1 < len(toks):
            event = toks[i + 1].upper
            action, i = _ref_action(toks, i + 2)
            if event == "DELETE":
                on_delete = action
        elif word == "MATCH":
            i += 2
        elif word in {"DEFERRABLE", "INITIALLY", "IMMEDIATE", "DEFERRED"} or (
            word == "NOT" and i + 1 < len(toks) and toks[i + 1].upper == "DEFERRABLE"
        ):
            i += 1
        else:
            break
    return table, cols, on_delete, i


def _parse_table_constraint(text: str) -> Constraint | None:
    toks = _tokens(text)
    name: str | None = None
    i = 0
    if toks and toks[0].upper == "CONSTRAINT":
        name = _ident(toks[1].text)
        i = 2
    if i >= len(toks):
        return None
    word = toks[i].upper
    if word == "CHECK":
        expr = _inner(toks[i + 1].text)
        return Constraint(name, "CHECK", _expression_columns(expr), expression=_squash(expr))
    if word == "UNIQUE":
        j = i + 1
        if j < len(toks) and toks[j].upper == "NULLS":
            j += 3 if toks[j + 1].upper == "NOT" else 2
        cols = tuple(_ident(c) for c in _split_top_level(_inner(toks[j].text)))
        return Constraint(name, "UNIQUE", cols)
    if word == "PRIMARY":
        cols = tuple(_ident(c) for c in _split_top_level(_inner(toks[i + 2].text)))
        return Constraint(name, "PK", cols)
    if word == "FOREIGN":
        cols = tuple(_ident(c) for c in _split_top_level(_inner(toks[i + 2].text)))
        table, ref_cols, on_delete, _ = _parse_references(toks, i + 4)
        return Constraint(
            name, "FK", cols, ref_table=table, ref_columns=ref_cols, on_delete=on_delete
        )
    return None


def _parse_column(text: str) -> tuple[Column, list[Constraint]]:
    """A column definition; CHECKs written on the column are returned apart,
    as table constraints, because that is what they are in the catalogue."""
    toks = _tokens(text)
    name = _ident(toks[0].text)
    i = 1
    type_toks: list[_Tok] = []
    while i < len(toks) and toks[i].upper not in _COLUMN_STOP:
        type_toks.append(toks[i])
        i += 1
    col_type = _span(text, type_toks)
    not_null = primary_key = unique = False
    default: str | None = None
    references: str | None = None
    references_column: str | None = None
    on_delete: str | None = None
    checks: list[Constraint] = []
    pending_name: str | None = None
    while i < len(toks):
        word = toks[i].upper
        if word == "CONSTRAINT":
            pending_name = _ident(toks[i + 1].text)
            i += 2
            continue
        if word == "NOT" and i + 1 < len(toks) and toks[i + 1].upper == "NULL":
            not_null = True
            i += 2
        elif word == "NULL":
            i += 1
        elif word == "DEFAULT":
            j = i + 1
            expr_toks = [toks[j]]
            j += 1
            while j < len(toks) and toks[j].upper not in _COLUMN_STOP:
                expr_toks.append(toks[j])
                j += 1
            default = _span(text, expr_toks)
            i = j
        elif word == "PRIMARY":
            primary_key = True
            i += 2
        elif word == "UNIQUE":
            unique = True
            i += 1
        elif word == "REFERENCES":
            references, cols, on_delete, i = _parse_references(toks, i + 1)
            references_column = cols[0] if cols else None
        elif word == "CHECK":
            expr = _squash(_inner(toks[i + 1].text))
            checks.append(Constraint(pending_name, "CHECK", (name,), expression=expr))
            i += 2
        elif word == "COLLATE":
            i += 2
        elif word == "GENERATED":
            i += 1
            while i < len(toks) and toks[i].upper not in _COLUMN_STOP - {"NULL"}:
                i += 1
        else:
            i += 1
        pending_name = None
    column = Column(
        name=name,
        type=col_type,
        not_null=not_null,
        default=default,
        primary_key=primary_key,
        unique=unique,
        references=references,
        references_column=references_column,
        on_delete=on_delete,
    )
    return column, checks


_CREATE_TABLE = re.compile(
    r"^CREATE\s+(?:(?:GLOBAL|LOCAL)\s+)?(?:(?:TEMP|TEMPORARY|UNLOGGED)\s+)?TABLE\s+"
    r"(?:IF\s+NOT\s+EXISTS\s+)?(?P<name>\"(?:[^\"]|\"\")*\"|[\w.$]+)\s*(?P<rest>.*)$",
    re.IGNORECASE | re.DOTALL,
)
_PARTITION_OF = re.compile(
    r"^PARTITION\s+OF\s+(?P<parent>\"(?:[^\"]|\"\")*\"|[\w.$]+)\s*(?P<bound>.*)$",
    re.IGNORECASE | re.DOTALL,
)
_CREATE_INDEX = re.compile(
    r"^CREATE\s+(?P<unique>UNIQUE\s+)?INDEX\s+(?:CONCURRENTLY\s+)?(?:IF\s+NOT\s+EXISTS\s+)?"
    r"(?P<name>\"(?:[^\"]|\"\")*\"|[\w.$]+)\s+ON\s+(?:ONLY\s+)?"
    r"(?P<table>\"(?:[^\"]|\"\")*\"|[\w.$]+)\s*(?:USING\s+(?P<method>\w+)\s*)?(?P<rest>\(.*)$",
    re.IGNORECASE | re.DOTALL,
)
_CREATE_POLICY = re.compile(
    r"^CREATE\s+POLICY\s+(?P<name>\"(?:[^\"]|\"\")*\"|[\w$]+)\s+ON\s+"
    r"(?P<table>\"(?:[^\"]|\"\")*\"|[\w.$]+)(?P<rest>.*)$",
    re.IGNORECASE | re.DOTALL,
)
_CREATE_VIEW = re.compile(
    r"^CREATE\s+(?:OR\s+REPLACE\s+)?(?:(?:TEMP|TEMPORARY)\s+)?(?:RECURSIVE\s+)?"
    r"(?P<mat>MATERIALIZED\s+)?VIEW\s+(?:IF\s+NOT\s+EXISTS\s+)?"
    r"(?P<name>\"(?:[^\"]|\"\")*\"|[\w.$]+)(?P<rest>.*)$",
    re.IGNORECASE | re.DOTALL,
)
_CREATE_FUNCTION = re.compile(
    r"^CREATE\s+(?:OR\s+REPLACE\s+)?FUNCTION\s+(?P<name>\"(?:[^\"]|\"\")*\"|[\w.$]+)\s*(?P<rest>\(.*)$",
    re.IGNORECASE | re.DOTALL,
)
_ENABLE_RLS = re.compile(
    r"^ALTER\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?:ONLY\s+)?(?P<table>\"(?:[^\"]|\"\")*\"|[\w.$]+)\s+"
    r"ENABLE\s+ROW\s+LEVEL\s+SECURITY$",
    re.IGNORECASE,
)
_CREATE_EXTENSION = re.compile(
    r"^CREATE\s+EXTENSION\s+(?:IF\s+NOT\s+EXISTS\s+)?(?P<name>\"(?:[^\"]|\"\")*\"|[\w$-]+)",
    re.IGNORECASE,
)


def _parse_table(m: re.Match[str]) -> Table:
    table = Table(name=_ident(m.group("name")))
    rest = m.group("rest").strip()
    part = _PARTITION_OF.match(rest)
    if part:
        table.partition_of = _ident(part.group("parent"))
        table.partition_bound = _squash(part.group("bound")) or None
        return table
    if not rest.startswith("("):
        return table
    close = _matching_paren(rest, 0)
    for element in _split_top_level(rest[1:close]):
        toks = _tokens(element)
        # These words are reserved, so a column can only carry such a name
        # quoted, which the upper-cased token then does not match. EXCLUDE is
        # not reserved: it starts a constraint only when USING or "(" follows.
        first = toks[0].upper
        is_exclude = (
            first == "EXCLUDE" and len(toks) > 1 and (toks[1].upper == "USING" or toks[1].is_group)
        )
        if first in _TABLE_CONSTRAINT_START or is_exclude:
            con = _parse_table_constraint(element)
            if con is not None:
                table.constraints.append(con)
            continue
        column, checks = _parse_column(element)
        table.columns[column.name] = column
        table.constraints.extend(checks)
    tail = rest[close + 1 :].strip()
    pm = re.match(r"^PARTITION\s+BY\s+(.*)$", tail, re.IGNORECASE | re.DOTALL)
    if pm:
        table.partition_by = _squash(pm.group(1))
    return table


def _parse_index(m: re.Match[str]) -> Index:
    rest = m.group("rest")
    close = _matching_paren(rest, 0)
    elements = tuple(_squash(e) for e in _split_top_level(rest[1:close]))
    where_m = re.search(r"\bWHERE\s+(.*)$", rest[close + 1 :], re.IGNORECASE | re.DOTALL)
    return Index(
        name=_ident(m.group("name")),
        table=_ident(m.group("table")),
        method=(m.group("method") or "btree").lower(),
        elements=elements,
        unique=bool(m.group("unique")),
        where=_squash(where_m.group(1)) if where_m else None,
    )


def _parse_policy(m: re.Match[str]) -> Policy:
    toks = _tokens(m.group("rest"))
    command = "ALL"
    roles: list[str] = []
    permissive = True
    using: str | None = None
    with_check: str | None = None
    i = 0
    while i < len(toks):
        word = toks[i].upper
        if word == "AS" and i + 1 < len(toks):
            permissive = toks[i + 1].upper != "RESTRICTIVE"
            i += 2
        elif word == "FOR" and i + 1 < len(toks):
            command = toks[i + 1].upper
            i += 2
        elif word == "TO":
            i += 1
            while i < len(toks):
                roles.append(_ident(toks[i].text))
                i += 1
                if i < len(toks) and toks[i].text == ",":
                    i += 1
                    continue
                break
        elif word == "USING" and i + 1 < len(toks):
            using = _squash(_inner(toks[i + 1].text))
            i += 2
        elif word == "WITH" and i + 2 < len(toks) and toks[i + 1].upper == "CHECK":
            with_check = _squash(_inner(toks[i + 2].text))
            i += 3
        else:
            i += 1
    return Policy(
        name=_ident(m.group("name")),
        table=_ident(m.group("table")),
        command=command,
        roles=tuple(roles) or ("public",),
        permissive=permissive,
        using=using,
        with_check=with_check,
    )


def _parse_view(m: re.Match[str]) -> View | None:
    rest = m.group("rest")
    toks = _tokens(rest)
    for tok in toks:
        if tok.upper == "AS":
            query = rest[tok.end :].strip()
            query = re.sub(r"\s+WITH\s+(?:NO\s+)?DATA\s*$", "", query, flags=re.IGNORECASE)
            return View(_ident(m.group("name")), query, materialized=bool(m.group("mat")))
    return None


def _parse_function(m: re.Match[str]) -> Function:
    rest = m.group("rest")
    close = _matching_paren(rest, 0)
    args = tuple(_squash(a) for a in _split_top_level(rest[1:close]))
    toks = _tokens(rest[close + 1 :])
    returns_toks: list[_Tok] = []
    language: str | None = None
    body = ""
    i = 0
    while i < len(toks):
        word = toks[i].upper
        if word == "RETURNS":
            i += 1
            while i < len(toks) and toks[i].upper not in {
                "AS",
                "LANGUAGE",
                "IMMUTABLE",
                "STABLE",
                "VOLATILE",
                "SECURITY",
                "STRICT",
                "CALLED",
                "PARALLEL",
                "SET",
                "COST",
                "ROWS",
                "RETURN",
                "BEGIN",
            }:
                returns_toks.append(toks[i])
                i += 1
            continue
        if word == "LANGUAGE" and i + 1 < len(toks):
            language = toks[i + 1].text.strip("'\"").lower()
            i += 2
            continue
        if word == "AS" and i + 1 < len(toks):
            raw = toks[i + 1].text
            dm = _DOLLAR.match(raw)
            if dm:
                body = raw[len(dm.group(0)) : len(raw) - len(dm.group(0))]
            elif raw.startswith("'"):
                body = raw[1:-1].replace("''", "'")
            i += 2
            continue
        i += 1
    returns = _squash(" ".join(t.text for t in returns_toks))
    return Function(
        name=_ident(m.group("name")),
        arguments=args,
        returns=returns,
        language=language,
        body=body,
    )


def parse_spec(text: str) -> Spec:
    """Parse a markdown document (its ```sql blocks) or plain SQL.

    Statements the parser has no use for are skipped rather than rejected:
    the spec mixes DDL with operational snippets that are not migrations.
    """
    blocks = sql_blocks(text) if "```" in text else [text]
    spec = Spec()
    for block in blocks:
        for stmt in split_statements(block):
            if m := _CREATE_TABLE.match(stmt):
                table = _parse_table(m)
                spec.tables[table.name] = table
            elif m := _CREATE_INDEX.match(stmt):
                index = _parse_index(m)
                spec.indexes[index.name] = index
            elif m := _CREATE_POLICY.match(stmt):
                spec.policies.append(_parse_policy(m))
            elif m := _CREATE_VIEW.match(stmt):
                view = _parse_view(m)
                if view is not None:
                    spec.views[view.name] = view
            elif m := _CREATE_FUNCTION.match(stmt):
                spec.functions.append(_parse_function(m))
            elif m := _ENABLE_RLS.match(_squash(stmt)):
                spec.rls_enabled.append(_ident(m.group("table")))
            elif m := _CREATE_EXTENSION.match(stmt):
                name = _ident(m.group("name"))
                if name not in spec.extensions:
                    spec.extensions.append(name)
    return spec
