"""When a schedule is due, and what to do about fires that came late: pure functions.

Everything here is a function of a trigger config, instants and policies; no database, no
clock (the caller passes ``now``). :mod:`triggers.schedule` is the I/O around it.

**Cron in a time zone.** Expressions are five-field cron evaluated on the wall clock of an
IANA zone (croniter iterates naive wall times; we place each one in the zone ourselves,
because what a wall time *means* around a DST change is a policy, not arithmetic):

* a wall time that does not exist (spring forward, 02:30 in Europe/Berlin on the last
  Sunday of March) fires at the same distance past the gap (03:30 CEST): a daily job is
  never silently dropped;
* a wall time that happens twice (fall back, 02:30 on the last Sunday of October) fires
  once, at its first occurrence (CEST), unless the expression fires every hour (hour field
  ``*``): then both hours are real hours and both fire.

Rejected: croniter's own time-zone mode (it does the arithmetic on aware datetimes and its
DST behaviour has changed between releases) and APScheduler's ``CronTrigger`` (its
six-field syntax and day-of-week numbering differ from the five-field cron that
``haste validate`` accepts).

**Misfires** (after downtime), modelled on Temporal schedules. A fire is *on time* when it
is at most ``grace`` late (the tick interval and a slow batch must not count as downtime);
later ones are *missed* and ``misfire`` decides: ``skip`` them, ``run_once`` (one fire for
all of them, the latest; none when an on-time fire already covers them) or ``run_all``
(each, oldest first). Missed fires older than ``catch_up_window`` are skipped whatever the
policy. Default: ``run_once`` within one hour.

**Overlap** (the previous run is still going = a live execution of the automation):
``skip`` the fire, ``buffer_one`` (keep one, emitted when the run is over; more are
skipped) or ``allow``. Default: skip. The catch-up fires of one tick (``run_all``) are
judged against the runs that were live when the tick began, not against each other:
``run_all`` means each missed fire runs, so they go out together.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import lru_cache
from typing import Any, Literal

from croniter import croniter

from engine.definitions import parse_duration
from engine.values import Duration, shift, zone

MAX_CATCH_UP = 100
"""Most missed fires enumerated per automation and tick; older ones count as skipped."""

DEFAULT_MISFIRE = "run_once"
DEFAULT_OVERLAP = "skip"
DEFAULT_CATCH_UP_WINDOW = timedelta(hours=1)
MISFIRE_POLICIES = ("skip", "run_once", "run_all")
OVERLAP_POLICIES = ("skip", "buffer_one", "allow")

Mode = Literal["cron", "at", "date_field"]
OverlapDecision = Literal["fire", "buffer", "skip"]


@dataclass(frozen=True)
class ScheduleSpec:
    """A time_based trigger_config, parsed once (the schema already checked its shape)."""

    mode: Mode
    cron: str | None = None
    at: datetime | None = None
    timezone: str = "workspace"
    date_field: str | None = None
    offset: Mapping[str, int] = field(default_factory=dict)
    time: str | None = None
    misfire: str = DEFAULT_MISFIRE
    catch_up_window: timedelta = DEFAULT_CATCH_UP_WINDOW
    overlap: str = DEFAULT_OVERLAP

    @property
    def entity(self) -> str | None:
        return self.date_field.split(".", 1)[0] if self.date_field else None

    @property
    def column(self) -> str | None:
        return self.date_field.split(".", 1)[1] if self.date_field else None


def parse_spec(config: Mapping[str, Any]) -> ScheduleSpec:
    """The schedule of a trigger_config; ValueError names what is wrong (a document that
    was valid when deployed should never get here with one). Cached by content: the
    claimer parses thousands of identical configs per second."""
    try:
        key = json.dumps(config, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return _parse_spec(config)
    return _parse_cached(key)


@lru_cache(maxsize=4096)
def _parse_cached(key: str) -> ScheduleSpec:
    return _parse_spec(json.loads(key))


def _parse_spec(config: Mapping[str, Any]) -> ScheduleSpec:
    misfire = config.get("misfire", DEFAULT_MISFIRE)
    overlap = config.get("overlap", DEFAULT_OVERLAP)
    if misfire not in MISFIRE_POLICIES:
        raise ValueError(f"misfire must be one of {MISFIRE_POLICIES}, got {misfire!r}")
    if overlap not in OVERLAP_POLICIES:
        raise ValueError(f"overlap must be one of {OVERLAP_POLICIES}, got {overlap!r}")
    window = config.get("catch_up_window")
    common: dict[str, Any] = {
        "misfire": misfire,
        "overlap": overlap,
        "catch_up_window": parse_duration(window) if window else DEFAULT_CATCH_UP_WINDOW,
        "timezone": config.get("timezone") or "workspace",
    }
    if config.get("cron"):
        expression = str(config["cron"])
        if not croniter.is_valid(expression):
            raise ValueError(f"invalid cron expression {expression!r}")
        return ScheduleSpec(mode="cron", cron=expression, **common)
    if config.get("at"):
        at = datetime.fromisoformat(str(config["at"]).replace("Z", "+00:00"))
        if at.tzinfo is None:
            raise ValueError(f"'at' needs an offset: {config['at']!r}")
        return ScheduleSpec(mode="at", at=at.astimezone(UTC), **common)
    if config.get("date_field"):
        path = str(config["date_field"])
        if path.count(".") != 1:
            raise ValueError(f"date_field must be <entity>.<column>, got {path!r}")
        return ScheduleSpec(
            mode="date_field",
            date_field=path,
            offset=dict(config.get("offset") or {}),
            time=config.get("time"),
            **common,
        )
    raise ValueError("a time_based trigger needs one of cron, at, date_field")


# --- cron on a wall clock ----------------------------------------------------------------


@lru_cache(maxsize=1024)
def _every_hour(expression: str) -> bool:
    """Does the hour field select every hour (so both copies of a repeated hour fire)?"""
    hours = croniter(expression, datetime(2000, 1, 1)).expanded[1]
    return hours == ["*"] or len(hours) == 24


def _placements(wall: datetime, tz: tzinfo, repeat: bool) -> list[datetime]:
    """The UTC instants that the naive wall time ``wall`` denotes in ``tz``."""
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    second = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    if first == second:
        return [first]
    if first.astimezone(tz).replace(tzinfo=None) != wall:
        # A gap: fold=0 reads the wall time with the offset before the change, i.e. the
        # same distance past the gap (02:30 → 03:30 CEST).
        return [first]
    return [first, second] if repeat else [first]


_local = threading.local()


def _iterator(expression: str) -> croniter:
    """A croniter per expression and thread: building one parses the expression (about
    100 µs); moving an existing one to a new start costs a fifth of that."""
    cache: dict[str, croniter] | None = getattr(_local, "iterators", None)
    if cache is None:
        cache = _local.iterators = {}
    found = cache.get(expression)
    if found is None:
        if len(cache) > 1024:
            cache.clear()
        found = cache[expression] = croniter(expression, datetime(2000, 1, 1))
    return found


DST_SLACK = timedelta(hours=3)
"""Larger than any UTC offset change (2 h at most, Antarctica/Troll)."""


def _near_change(instant: datetime, tz: tzinfo) -> bool:
    """Does the zone's UTC offset change within DST_SLACK of ``instant``?"""
    offsets = {(instant + k * DST_SLACK).astimezone(tz).utcoffset() for k in (-1, 0, 1)}
    return len(offsets) > 1


def cron_next(expression: str, tz_name: str, after: datetime) -> datetime:
    """The first fire of ``expression`` on the wall clock of ``tz_name`` strictly after the
    UTC instant ``after``.

    Fires fall on whole minutes (UTC offsets are whole minutes), so the answer is the same
    for every ``after`` within one minute: the cache is keyed on the minute, and thousands
    of schedules due in the same second cost one computation.
    """
    after = after.astimezone(UTC)
    minute = after.replace(second=0, microsecond=0)
    return _cron_next_minute(expression, tz_name, minute)


@lru_cache(maxsize=8192)
def _cron_next_minute(expression: str, tz_name: str, after: datetime) -> datetime:
    tz = zone(tz_name)
    repeat = _every_hour(expression)
    start = after.astimezone(tz).replace(tzinfo=None)
    if _near_change(after, tz):
        # Start back on the wall clock: in a repeated hour, the second copy of a wall
        # time is "earlier" in wall time than an instant just after its first copy.
        start -= DST_SLACK
    walls = _iterator(expression)
    walls.set_current(start, force=True)
    for _ in range(100_000):
        wall = walls.get_next(datetime)
        for instant in _placements(wall, tz, repeat):
            if instant > after:
                return instant
    raise ValueError(f"cron expression {expression!r} never fires after {after.isoformat()}")


def last_fire_at_or_before(
    expression: str, tz_name: str, after: datetime, now: datetime
) -> datetime | None:
    """The latest fire of ``expression`` in (``after``, ``now``], or None: what a job that
    runs once after downtime is due for. Long gaps are crossed by probing back from now
    rather than walking every missed instant."""
    first = cron_next(expression, tz_name, after)
    if first > now:
        return None
    latest = first
    for back in (timedelta(hours=1), timedelta(days=1), timedelta(days=32), timedelta(days=367)):
        probe = now - back
        if probe <= after:
            break
        candidate = cron_next(expression, tz_name, probe)
        if candidate <= now:
            latest = candidate
            break
    while (following := cron_next(expression, tz_name, latest)) <= now:
        latest = following
    return latest


def next_fire(spec: ScheduleSpec, tz_name: str, after: datetime) -> datetime | None:
    """The schedule's first fire strictly after ``after``; None when it has no more (a
    past ``at``). Date-field schedules have no fire of their own (see :func:`date_due`)."""
    if spec.mode == "cron" and spec.cron:
        return cron_next(spec.cron, tz_name, after.astimezone(UTC))
    if spec.mode == "at" and spec.at is not None:
        return spec.at if spec.at > after else None
    return None


def first_run(spec: ScheduleSpec, tz_name: str, now: datetime) -> datetime | None:
    """next_run_at of a schedule deployed (or re-enabled) at ``now``.

    A one-off ``at`` in the past is kept as it is: the misfire policy decides whether it
    still runs (within the catch-up window) or is skipped.
    """
    if spec.mode == "at":
        return spec.at
    return next_fire(spec, tz_name, now)


# --- misfire and overlap -----------------------------------------------------------------


@dataclass(frozen=True)
class FirePlan:
    """What one claim of a due schedule does: ``fire`` these instants (oldest first),
    record ``skipped`` ones (with why), and move next_run_at to ``next_run_at``."""

    fire: list[datetime]
    skipped: list[tuple[datetime, str]]
    next_run_at: datetime | None
    more_skipped: bool = False


def due_instants(
    spec: ScheduleSpec, tz_name: str, next_run_at: datetime, now: datetime
) -> tuple[list[datetime], datetime | None, bool]:
    """Instants from ``next_run_at`` up to ``now`` (at most :data:`MAX_CATCH_UP`, the most
    recent ones), the next one after ``now``, and whether older ones were left out."""
    due: list[datetime] = []
    cursor: datetime | None = next_run_at
    while cursor is not None and cursor <= now:
        due.append(cursor)
        if len(due) > MAX_CATCH_UP:
            break
        cursor = next_fire(spec, tz_name, cursor)
    if len(due) <= MAX_CATCH_UP:
        return due, cursor, False
    # Long downtime: keep the most recent MAX_CATCH_UP. Look back from now over a span
    # that doubles until it holds enough of them (or reaches next_run_at), so a minutely
    # schedule down for a week costs a few hundred steps, not ten thousand.
    floor = next_run_at - timedelta(microseconds=1)
    span = timedelta(hours=1)
    while True:
        probe = max(now - span, floor)
        recent: list[datetime] = []
        step = next_fire(spec, tz_name, probe)
        while step is not None and step <= now:
            recent.append(step)
            step = next_fire(spec, tz_name, step)
        if len(recent) >= MAX_CATCH_UP or probe == floor:
            return recent[-MAX_CATCH_UP:], step, True
        span *= 2


def plan_fires(
    spec: ScheduleSpec,
    tz_name: str,
    next_run_at: datetime,
    now: datetime,
    *,
    grace: timedelta,
) -> FirePlan:
    """Apply the misfire policy to the instants due at ``now`` (module doc)."""
    due, following, truncated = due_instants(spec, tz_name, next_run_at, now)
    on_time = [t for t in due if now - t <= grace]
    late = [t for t in due if now - t > grace]
    in_window = [t for t in late if now - t <= spec.catch_up_window]
    skipped = [(t, "skipped_window") for t in late if now - t > spec.catch_up_window]
    if spec.misfire == "run_all":
        catch_up = in_window
    elif spec.misfire == "run_once" and in_window and not on_time:
        catch_up = in_window[-1:]
    else:
        catch_up = []
    skipped += [(t, "skipped_misfire") for t in in_window if t not in catch_up]
    return FirePlan(
        fire=sorted(catch_up + on_time),
        skipped=sorted(skipped),
        next_run_at=following,
        more_skipped=truncated,
    )


def overlap_decisions(
    policy: str, count: int, *, running: bool, buffered: bool
) -> list[OverlapDecision]:
    """One decision per fire of a tick, oldest first. ``running``: a live execution of the
    automation exists; ``buffered``: a fire is already held back for it."""
    decisions: list[OverlapDecision] = []
    for _ in range(count):
        if not running or policy == "allow":
            decisions.append("fire")
        elif policy == "buffer_one" and not buffered:
            decisions.append("buffer")
            buffered = True
        else:
            decisions.append("skip")
    return decisions


def record_fire_decision(
    spec: ScheduleSpec, due_at: datetime, now: datetime, *, grace: timedelta
) -> str:
    """Misfire policy for one record's due time: "fire", "skipped_misfire" or
    "skipped_window" (run_once and run_all are the same for a single instant)."""
    late = now - due_at
    if late > spec.catch_up_window:
        return "skipped_window"
    if late > grace and spec.misfire == "skip":
        return "skipped_misfire"
    return "fire"


# --- date fields -------------------------------------------------------------------------


def date_value_key(value: date | datetime) -> str:
    """The canonical text of a date-field value: the fire key's half that makes "once per
    record per date value" exact (a date as YYYY-MM-DD, a timestamp as UTC ISO)."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).isoformat()
    return value.isoformat()


def parse_date_value(value: Any) -> date | datetime | None:
    """A column value (date, datetime, or their ISO text as events carry them) or None."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime | date):
        return value
    text = str(value)
    if len(text) == 10:
        return date.fromisoformat(text)
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _move(instant: datetime, amounts: Mapping[str, Any], tz: tzinfo) -> datetime:
    """``instant`` moved by a signed duration object: calendar weeks and days on the wall
    clock of ``tz``, hours/minutes/seconds as elapsed time."""
    for unit in ("weeks", "days", "hours", "minutes"):
        amount = int(amounts.get(unit) or 0)
        if amount:
            instant = shift(instant, Duration(**{unit: abs(amount)}), 1 if amount > 0 else -1, tz)
    return instant + timedelta(seconds=int(amounts.get("seconds") or 0))


def date_due(
    value: date | datetime, offset: Mapping[str, Any], at_time: str | None, tz_name: str
) -> datetime:
    """When a date-field schedule is due for a record whose field holds ``value``: the date
    at midnight (a timestamp: its instant) in ``tz_name``, moved by ``offset``, then put at
    ``at_time`` of that local day when given. UTC."""
    tz = zone(tz_name)
    if isinstance(value, datetime):
        instant = value if value.tzinfo else value.replace(tzinfo=UTC)
    else:
        instant = datetime.combine(value, time(), tzinfo=tz)
    instant = _move(instant, offset, tz)
    if at_time:
        hours, minutes = (int(part) for part in at_time.split(":"))
        local_day = instant.astimezone(tz).date()
        wall = datetime.combine(local_day, time(hours, minutes))
        instant = _placements(wall, tz, repeat=False)[0]
    return instant.astimezone(UTC)


# --- fire keys ---------------------------------------------------------------------------


def fire_key(scheduled_for: datetime) -> str:
    """Key of a cron/at fire: its UTC instant (unique per automation in schedule_fires)."""
    return scheduled_for.astimezone(UTC).isoformat()


def record_fire_key(entity_id: Any, date_value: str) -> str:
    """Key of a date-field fire: once per record per date value."""
    return f"{entity_id}:{date_value}"


def utc_instants(values: Sequence[datetime]) -> list[str]:
    """ISO texts of instants, for payloads and logs."""
    return [v.astimezone(UTC).isoformat() for v in values]
