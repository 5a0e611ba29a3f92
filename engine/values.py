"""Typed values shared by conditions and templates: what "1234.50", "2026-03-29" or
"2026-03-29T01:30:00+01:00" mean, once.

Contexts reach the engine in two dialects: JSON out of the outbox (timestamps and dates as
ISO-8601 strings, numerics as numbers or strings like ``"1234.50"``) and Python values out
of psycopg (``datetime``, ``date``, ``Decimal``, ``UUID``). Conditions and templates must
read both the same way, so every coercion lives here and nowhere else.

Rules (docs/conditions.md is the author-facing copy):

* Numbers compare as :class:`~decimal.Decimal`, never as floats: ``"0.30"`` equals ``0.3``
  and ``Decimal("1234.50")`` equals ``"1234.5"``. A float goes through its shortest
  ``repr`` (``0.1`` is ``Decimal("0.1")``). NaN and infinities are not numbers here.
* Timestamps compare as instants (normalised to UTC, because two datetimes that share a
  ``ZoneInfo`` compare by wall time and ignore ``fold`` — a DST bug waiting to happen).
  A timestamp without an offset is read in the zone the caller passes; an ambiguous local
  time is its first occurrence, a time in the spring-forward gap takes the offset from
  before the change (``fold=0``, as :mod:`zoneinfo` does).
* A date (no time) is a calendar day. When a day meets a timestamp, the timestamp becomes
  the day it falls on in the caller's zone: a day is never silently turned into midnight
  UTC.
* Without a forced type, the comparison type is inferred from both sides: boolean if either
  is a boolean, else number if either is a number, else date if either is a day, else
  timestamp if either is a timestamp, else JSON equality for arrays and objects, else text
  — except that ordering two numeric-looking strings compares them as numbers.

Rejected: float comparison (``0.1 + 0.2 != 0.3``), ``dateutil`` parsing (accepts "tomorrow
at 5" style input we cannot document), comparing ISO strings lexically (wrong as soon as
offsets differ).

No I/O: :func:`zone` reads the tz database through :mod:`zoneinfo`, which caches it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, Literal
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

Kind = Literal["decimal", "timestamp", "date", "boolean", "string", "array", "json"]
"""How two values are compared. ``json`` is deep equality of arrays and objects."""

TYPE_KINDS: Mapping[str, Kind] = {
    "number": "decimal",
    "decimal": "decimal",
    "timestamp": "timestamp",
    "date": "date",
    "boolean": "boolean",
    "string": "string",
    "array": "array",
}
"""The ``type`` an author may force on a leaf, and the comparison it selects."""

ORDERED_KINDS: frozenset[str] = frozenset({"decimal", "timestamp", "date", "string"})
"""Kinds with an order; ``gt`` on booleans or arrays is a type error, not a guess."""

MAX_NUMBER_CHARS = 100
"""Longest numeric string we parse; longer input is not a number a CRM stores."""

MAX_NESTING = 32
"""Deepest array/object nesting compared or rendered for a trace; deeper is an error."""

MAX_DURATION_DAYS = 36_600
"""About a century: durations beyond it are typos and would overflow date arithmetic."""

TRACE_MAX_CHARS = 1_000
"""Strings longer than this are cut in traces (decision log, dry-run), not in comparisons."""

TRACE_MAX_ITEMS = 100
"""Arrays/objects longer than this are cut in traces."""

_NUMBER_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,6})?")
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_TIMESTAMP_RE = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")
_TRUE = frozenset({"true"})
_FALSE = frozenset({"false"})


class CoercionError(ValueError):
    """A value cannot be read as the asked type; callers turn it into a leaf or template
    error that names the value, so this never escapes as a crash."""


def is_mapping(value: Any) -> bool:
    """``isinstance(value, Mapping)`` with a fast path for dict: the ABC check costs
    ~8x more and runs several times per leaf."""
    return type(value) is dict or isinstance(value, Mapping)


def describe(value: Any) -> str:
    """A short JSON-ish rendering of a value for error messages (``"abc"``, ``12``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = value if len(value) <= 60 else value[:57] + "..."
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, int | float | Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return f"a {type(value).__name__}"


def type_name(value: Any) -> str:
    """The JSON type name of a value, for messages like "needs an array, got number"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float | Decimal):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, datetime):
        return "timestamp"
    if isinstance(value, date):
        return "date"
    if isinstance(value, UUID):
        return "uuid"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


# --- zones -------------------------------------------------------------------------------


@lru_cache(maxsize=512)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def zone(name: Any) -> tzinfo:
    """The IANA zone called ``name``; a clear error instead of zoneinfo's mix of
    ValueError, KeyError and ZoneInfoNotFoundError for junk keys."""
    if not isinstance(name, str) or not name or len(name) > 64:
        raise CoercionError(f"unknown timezone {describe(name)}")
    if name in ("UTC", "Etc/UTC", "Z"):
        return UTC
    try:
        return _zone(name)
    except (ZoneInfoNotFoundError, ValueError, KeyError, OSError) as exc:
        raise CoercionError(f"unknown timezone {describe(name)}") from exc


# --- shapes ------------------------------------------------------------------------------


def text_shape(text: str) -> Literal["date", "timestamp"] | None:
    """Whether a string looks like an ISO-8601 day or timestamp (without parsing it)."""
    if len(text) == 10 and _DATE_RE.fullmatch(text):
        return "date"
    if 16 <= len(text) <= 40 and _TIMESTAMP_RE.match(text):
        return "timestamp"
    return None


def is_number(value: Any) -> bool:
    """A JSON number or a Python numeric (booleans are not numbers in JSON)."""
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def is_day(value: Any) -> bool:
    """A calendar day: a ``date`` that is not a ``datetime``, or an ISO ``YYYY-MM-DD``."""
    if isinstance(value, datetime):
        return False
    if isinstance(value, date):
        return True
    return isinstance(value, str) and text_shape(value) == "date"


def is_temporal(value: Any) -> bool:
    """A day or a timestamp in either dialect (shape only; parsing may still fail)."""
    if isinstance(value, date):
        return True
    return isinstance(value, str) and text_shape(value) is not None


# --- coercions ---------------------------------------------------------------------------


def to_decimal(value: Any) -> Decimal:
    """Exact decimal of a JSON number, a numeric string or a Python numeric."""
    if isinstance(value, bool):
        raise CoercionError(f"{describe(value)} is not a number")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        return Decimal(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise CoercionError(f"{describe(value)} is not a number")
        return Decimal(repr(value))
    elif isinstance(value, str):
        text = value.strip()
        if len(text) > MAX_NUMBER_CHARS or not _NUMBER_RE.fullmatch(text):
            raise CoercionError(f"{describe(value)} is not a number")
        try:
            result = Decimal(text)
        except InvalidOperation as exc:  # pragma: no cover - the regex admits only valid text
            raise CoercionError(f"{describe(value)} is not a number") from exc
    else:
        raise CoercionError(f"{describe(value)} is not a number")
    if not result.is_finite():
        raise CoercionError(f"{describe(value)} is not a number")
    return result


def to_instant(value: Any, tz: tzinfo) -> datetime:
    """The UTC instant of a timestamp; a naive one is read in ``tz``, a day is its start
    in ``tz``."""
    if isinstance(value, datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=tz)
    elif isinstance(value, date):
        moment = datetime.combine(value, time(), tz)
    elif isinstance(value, str):
        shape = text_shape(value)
        try:
            if shape == "date":
                moment = datetime.combine(date.fromisoformat(value), time(), tz)
            elif shape == "timestamp":
                moment = datetime.fromisoformat(value)
                if moment.tzinfo is None:
                    moment = moment.replace(tzinfo=tz)
            else:
                raise CoercionError(f"{describe(value)} is not an ISO-8601 timestamp")
        except ValueError as exc:
            if isinstance(exc, CoercionError):
                raise
            raise CoercionError(f"{describe(value)} is not an ISO-8601 timestamp") from exc
    else:
        raise CoercionError(f"{describe(value)} is not a timestamp")
    try:
        return moment.astimezone(UTC)
    except (OverflowError, ValueError) as exc:
        raise CoercionError(f"{describe(value)} is out of range") from exc


def to_day(value: Any, tz: tzinfo) -> date:
    """The calendar day of a value: a day as is, a timestamp as the day it falls on in
    ``tz``."""
    if isinstance(value, datetime):
        return day_in(to_instant(value, tz), tz)
    if isinstance(value, date):
        return value
    if isinstance(value, str) and text_shape(value) == "date":
        try:
            return date.fromisoformat(value)
        except ValueError as exc:
            raise CoercionError(f"{describe(value)} is not an ISO-8601 date") from exc
    if isinstance(value, str):
        try:
            return day_in(to_instant(value, tz), tz)
        except CoercionError as exc:
            raise CoercionError(f"{describe(value)} is not an ISO-8601 date") from exc
    raise CoercionError(f"{describe(value)} is not a date")


def day_in(instant: datetime, tz: tzinfo) -> date:
    """The calendar day an instant falls on in ``tz``."""
    try:
        return instant.astimezone(tz).date()
    except (OverflowError, ValueError) as exc:
        raise CoercionError(f"{instant.isoformat()} is out of range") from exc


def to_bool(value: Any) -> bool:
    """A boolean, or the strings "true"/"false" (any case) that JSONB fields often hold."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        folded = value.strip().lower()
        if folded in _TRUE:
            return True
        if folded in _FALSE:
            return False
    raise CoercionError(f"{describe(value)} is not true or false")


def to_text(value: Any) -> str:
    """Text for string comparisons: strings and UUIDs (canonical lower-case form) only,
    so a number is never compared as its digits by accident."""
    if isinstance(value, str):
        return value
    if isinstance(value, UUID):
        return str(value)
    raise CoercionError(f"{describe(value)} is not a string")


def to_array(value: Any) -> list[Any]:
    """An array (a JSON list or a Python tuple); strings are not arrays of characters."""
    if isinstance(value, list):
        return value
    if isinstance(value, tuple):
        return list(value)
    raise CoercionError(f"{describe(value)} is not an array")


# --- comparison --------------------------------------------------------------------------


def _natural(value: Any) -> str:
    cls = type(value)
    if cls is str:
        return text_shape(value) or "string"
    if cls is int or cls is float:
        return "decimal"
    if isinstance(value, bool):
        return "boolean"
    if is_number(value):
        return "decimal"
    if isinstance(value, datetime):
        return "timestamp"
    if isinstance(value, date):
        return "date"
    if isinstance(value, str):
        return text_shape(value) or "string"
    if isinstance(value, list | tuple) or is_mapping(value):
        return "json"
    return "string"


_PRIORITY: tuple[Kind, ...] = ("boolean", "decimal", "date", "timestamp", "json")


def looks_numeric(text: str) -> bool:
    """A decimal literal ("1234.50", "-3", "1e3"), whitespace around allowed."""
    stripped = text.strip()
    return len(stripped) <= MAX_NUMBER_CHARS and _NUMBER_RE.fullmatch(stripped) is not None


def comparison_kind(left: Any, right: Any, *, ordering: bool = False) -> Kind:
    """The comparison two values get when the author forced no type (see module doc).

    With ``ordering`` (gt, lt, between...), two numeric-looking strings compare as
    numbers: ordering "999.00" before "1000.00" by characters is never what anyone means,
    and decimals often arrive as text. Equality of two strings stays exact text
    equality ("01234" is not "1234").
    """
    kinds = {_natural(left), _natural(right)}
    for kind in _PRIORITY:
        if kind in kinds:
            return kind
    if (
        ordering
        and isinstance(left, str)
        and isinstance(right, str)
        and (looks_numeric(left) and looks_numeric(right))
    ):
        return "decimal"
    return "string"


def coerce(value: Any, kind: Kind, tz: tzinfo) -> Any:
    """``value`` read as ``kind``; raises :class:`CoercionError`."""
    if kind == "decimal":
        return to_decimal(value)
    if kind == "timestamp":
        return to_instant(value, tz)
    if kind == "date":
        return to_day(value, tz)
    if kind == "boolean":
        return to_bool(value)
    if kind == "string":
        return to_text(value)
    if kind == "array":
        return to_array(value)
    return value


def equal(
    left: Any,
    right: Any,
    kind: Kind | None = None,
    *,
    tz: tzinfo = UTC,
    case_insensitive: bool = False,
    _depth: int = 0,
) -> bool:
    """Typed equality. Values that cannot be read as the comparison type are unequal
    (``eq`` never errors on data: "abc" simply is not 5); null equals only null."""
    if left is None or right is None:
        return left is None and right is None
    if _depth > MAX_NESTING:
        raise CoercionError("values are nested too deeply to compare")
    kind = kind or comparison_kind(left, right)
    if kind in ("json", "array"):
        return _equal_json(left, right, tz=tz, case_insensitive=case_insensitive, depth=_depth)
    try:
        a = coerce(left, kind, tz)
        b = coerce(right, kind, tz)
    except CoercionError:
        return False
    if kind == "string":
        if isinstance(left, UUID) or isinstance(right, UUID):
            return _uuid_equal(a, b)
        if case_insensitive:
            return bool(a.casefold() == b.casefold())
    return bool(a == b)


def _uuid_equal(a: str, b: str) -> bool:
    try:
        return UUID(a) == UUID(b)
    except ValueError:
        return False


def _equal_json(left: Any, right: Any, *, tz: tzinfo, case_insensitive: bool, depth: int) -> bool:
    if isinstance(left, list | tuple) and isinstance(right, list | tuple):
        return len(left) == len(right) and all(
            equal(a, b, tz=tz, case_insensitive=case_insensitive, _depth=depth + 1)
            for a, b in zip(left, right, strict=True)
        )
    if is_mapping(left) and is_mapping(right):
        if set(left) != set(right):
            return False
        return all(
            equal(left[k], right[k], tz=tz, case_insensitive=case_insensitive, _depth=depth + 1)
            for k in left
        )
    return False


def compare(
    left: Any,
    right: Any,
    kind: Kind | None = None,
    *,
    tz: tzinfo = UTC,
    case_insensitive: bool = False,
) -> int:
    """-1, 0 or 1; raises :class:`CoercionError` when either side cannot be read as an
    ordered type (ordering "abc" against 5 is an author error worth reporting)."""
    if left is None or right is None:
        raise CoercionError("null has no order")
    kind = kind or comparison_kind(left, right, ordering=True)
    if kind not in ORDERED_KINDS:
        raise CoercionError(f"{type_name(left)} and {type_name(right)} values have no order")
    a = coerce(left, kind, tz)
    b = coerce(right, kind, tz)
    if kind == "string" and case_insensitive:
        a, b = a.casefold(), b.casefold()
    return (a > b) - (a < b)


# --- durations ---------------------------------------------------------------------------

DURATION_UNITS: tuple[str, ...] = ("weeks", "days", "hours", "minutes")
"""Units of a duration object, largest first. Months and years are left out on purpose:
their length varies and authors disagree on what "a month ago" is."""


@dataclass(frozen=True, slots=True)
class Duration:
    """``{"days": 3, "hours": 12}``: weeks and days move the local calendar (so "1 day"
    before 12:00 on the day after a DST change is 12:00 the day before, 23 or 25 hours
    earlier); hours and minutes are elapsed time."""

    weeks: int = 0
    days: int = 0
    hours: int = 0
    minutes: int = 0

    @property
    def calendar_days(self) -> int:
        return self.weeks * 7 + self.days

    @property
    def elapsed(self) -> timedelta:
        return timedelta(hours=self.hours, minutes=self.minutes)


def parse_duration(value: Any) -> Duration:
    """The one duration form: an object of non-negative integer ``weeks``, ``days``,
    ``hours``, ``minutes`` (at least one)."""
    if not is_mapping(value) or not value:
        raise CoercionError(f'a duration is an object like {{"days": 3}}, got {describe(value)}')
    unknown = [k for k in value if k not in DURATION_UNITS]
    if unknown:
        raise CoercionError(
            f"unknown duration unit {describe(unknown[0])}; use {', '.join(DURATION_UNITS)}"
        )
    parts: dict[str, int] = {}
    for unit, amount in value.items():
        if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
            raise CoercionError(
                f"duration {unit} must be a whole number >= 0, got {describe(amount)}"
            )
        parts[unit] = amount
    duration = Duration(**parts)
    total_days = duration.calendar_days + (duration.hours // 24) + (duration.minutes // 1440)
    if total_days > MAX_DURATION_DAYS:
        raise CoercionError(f"duration is longer than {MAX_DURATION_DAYS} days")
    return duration


def shift(instant: datetime, duration: Duration, sign: int, tz: tzinfo) -> datetime:
    """``instant`` moved by ``duration`` (``sign`` is 1 or -1): calendar days on the wall
    clock of ``tz``, then elapsed hours and minutes. Returns a UTC instant."""
    try:
        moved = instant.astimezone(UTC)
        if duration.calendar_days:
            local = instant.astimezone(tz).replace(tzinfo=None)
            wall = local + sign * timedelta(days=duration.calendar_days)
            moved = wall.replace(tzinfo=tz).astimezone(UTC)
        # Aware + timedelta is wall-clock arithmetic in Python; elapsed time needs UTC.
        return moved + sign * duration.elapsed
    except (OverflowError, ValueError) as exc:
        raise CoercionError("the duration moves past the supported date range") from exc


# --- traces ------------------------------------------------------------------------------


def json_safe(value: Any, *, cut: bool = True, _depth: int = 0) -> Any:
    """A JSON-serialisable copy: Decimal as its exact text, instants and days as ISO-8601.

    ``cut`` (the default, for traces and reports) shortens long strings and collections
    (marked with "…"); data that is stored and used again (payloads, snapshots) passes
    ``cut=False`` and is only converted, never shortened.
    """
    cls = type(value)
    if cls is int or cls is bool or value is None:
        return value
    if cls is str and (not cut or len(value) <= TRACE_MAX_CHARS):
        return value
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return value if len(value) <= TRACE_MAX_CHARS else value[:TRACE_MAX_CHARS] + "…"
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if cut and _depth >= MAX_NESTING:
        return "…"
    limit = TRACE_MAX_ITEMS if cut else None
    if is_mapping(value):
        out: dict[str, Any] = {}
        for i, (k, v) in enumerate(value.items()):
            if limit is not None and i >= limit:
                out["…"] = f"{len(value) - limit} more"
                break
            out[str(k)] = json_safe(v, cut=cut, _depth=_depth + 1)
        return out
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        items = [json_safe(v, cut=cut, _depth=_depth + 1) for v in value[:limit]]
        if limit is not None and len(value) > limit:
            items.append(f"… {len(value) - limit} more")
        return items
    return f"<{type(value).__name__}>"
