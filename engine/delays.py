"""When a ``delay`` step is over: the instant an execution waiting on it is due again.

Pure functions of the step's rendered params, the run's context and "now"; the executor
stores the answer as the execution's ``resume_at`` (state ``waiting``) and the scheduler
wakes it then. The four forms (exactly one per step, as the schema says):

* ``duration`` — weeks and days move the wall clock of the workspace's time zone (a day
  across a DST change lasts 23 or 25 hours), hours, minutes and seconds are elapsed time;
* ``until`` — an instant; one in the past does not wait;
* ``until_field`` — a date or timestamp in the context (``deal.expected_close_date``),
  moved by a signed ``offset``, at ``time`` of day in ``timezone`` (workspace | owner |
  IANA); a date without ``time`` means midnight in that zone;
* ``business_hours`` — the next moment inside the working days and hours of a zone
  (now, when already inside).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any

from engine.conditions import resolve
from engine.values import CoercionError, Duration, shift, to_instant, zone

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class DelayError(ValueError):
    """The delay cannot be computed (empty field, bad zone...); the message says which."""


def _zone_of(ref: Any, context: Mapping[str, Any], owner_zone: Callable[[], str | None]) -> tzinfo:
    name: Any = ref or "workspace"
    if name == "workspace":
        name = (context.get("workspace") or {}).get("timezone") or "UTC"
    elif name == "owner":
        name = owner_zone() or (context.get("workspace") or {}).get("timezone") or "UTC"
    try:
        return zone(name)
    except CoercionError as exc:
        raise DelayError(str(exc)) from None


def _move(instant: datetime, amounts: Mapping[str, Any], tz: tzinfo) -> datetime:
    """``instant`` moved by a signed duration object (calendar weeks/days, elapsed rest)."""
    for unit in ("weeks", "days", "hours", "minutes"):
        amount = int(amounts.get(unit) or 0)
        if amount:
            duration = Duration(**{unit: abs(amount)})
            instant = shift(instant, duration, 1 if amount > 0 else -1, tz)
    return instant + timedelta(seconds=int(amounts.get("seconds") or 0))


def _at_time(day: date, hhmm: str, tz: tzinfo) -> datetime:
    hours, minutes = (int(part) for part in hhmm.split(":"))
    return datetime.combine(day, time(hours, minutes), tzinfo=tz).astimezone(UTC)


def _field_instant(params: Mapping[str, Any], context: Mapping[str, Any], tz: tzinfo) -> datetime:
    path = str(params["until_field"])
    found, value = resolve(context, path.split("."))
    if not found or value is None or value == "":
        raise DelayError(f"until_field {path} is empty")
    try:
        if isinstance(value, date) and not isinstance(value, datetime):
            instant = datetime.combine(value, time(), tzinfo=tz)
        elif isinstance(value, str) and len(value) == 10:
            instant = datetime.combine(date.fromisoformat(value), time(), tzinfo=tz)
        else:
            instant = to_instant(value, tz)
    except (CoercionError, ValueError) as exc:
        raise DelayError(f"until_field {path}: {exc}") from None
    instant = _move(instant, params.get("offset") or {}, tz)
    if params.get("time"):
        instant = _at_time(instant.astimezone(tz).date(), str(params["time"]), tz)
    return instant.astimezone(UTC)


def next_business_moment(now: datetime, hours: Mapping[str, Any], tz: tzinfo) -> datetime:
    """``now`` when inside the working hours, else the start of the next working window."""
    days = {WEEKDAYS.index(d) for d in hours.get("days") or WEEKDAYS}
    start, end = str(hours["start"]), str(hours["end"])
    local = now.astimezone(tz)
    for offset in range(8):
        day = local.date() + timedelta(days=offset)
        if day.weekday() not in days:
            continue
        opens, closes = _at_time(day, start, tz), _at_time(day, end, tz)
        if now < opens:
            return opens
        if now < closes:
            return now
    raise DelayError("business_hours has no working day")


def resume_at(
    params: Mapping[str, Any],
    context: Mapping[str, Any],
    now: datetime,
    *,
    owner_zone: Callable[[], str | None] = lambda: None,
) -> datetime:
    """The instant the delay is over (``now`` or earlier means: do not wait)."""
    workspace_zone = _zone_of("workspace", context, owner_zone)
    if params.get("duration") is not None:
        return _move(now, params["duration"], workspace_zone)
    if params.get("until") is not None:
        try:
            return to_instant(params["until"], workspace_zone).astimezone(UTC)
        except CoercionError as exc:
            raise DelayError(f"until: {exc}") from None
    if params.get("until_field") is not None:
        tz = _zone_of(params.get("timezone"), context, owner_zone)
        return _field_instant(params, context, tz)
    if params.get("business_hours") is not None:
        hours = params["business_hours"]
        tz = _zone_of(hours.get("timezone"), context, owner_zone)
        return next_business_moment(now, hours, tz)
    raise DelayError("a delay needs one of duration, until, until_field, business_hours")
