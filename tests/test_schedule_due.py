"""triggers.due: cron on a wall clock across DST, misfire and overlap policies, date-field
due times. Pure: no database, no clock."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from triggers import due

BERLIN = "Europe/Berlin"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def fires(spec: due.ScheduleSpec, tz: str, start: datetime, count: int) -> list[datetime]:
    found, cursor = [], start
    for _ in range(count):
        nxt = due.next_fire(spec, tz, cursor)
        assert nxt is not None
        found.append(nxt)
        cursor = nxt
    return found


def test_daily_nine_oclock_in_berlin_moves_one_hour_in_utc_at_the_spring_change() -> None:
    spec = due.parse_spec({"cron": "0 9 * * *", "timezone": BERLIN})
    assert fires(spec, BERLIN, utc(2025, 3, 28, 12), 3) == [
        utc(2025, 3, 29, 8),  # CET, UTC+1
        utc(2025, 3, 30, 7),  # CEST, UTC+2 (the change is at 01:00 UTC that night)
        utc(2025, 3, 31, 7),
    ]


def test_a_wall_time_inside_the_spring_gap_fires_after_the_gap_not_never() -> None:
    spec = due.parse_spec({"cron": "30 2 * * *", "timezone": BERLIN})
    assert fires(spec, BERLIN, utc(2025, 3, 28, 12), 3) == [
        utc(2025, 3, 29, 1, 30),  # 02:30 CET
        utc(2025, 3, 30, 1, 30),  # 02:30 does not exist: 03:30 CEST
        utc(2025, 3, 31, 0, 30),  # 02:30 CEST
    ]


def test_a_repeated_wall_time_in_autumn_fires_once_at_its_first_occurrence() -> None:
    spec = due.parse_spec({"cron": "30 2 * * *", "timezone": BERLIN})
    assert fires(spec, BERLIN, utc(2025, 10, 24, 12), 3) == [
        utc(2025, 10, 25, 0, 30),  # 02:30 CEST
        utc(2025, 10, 26, 0, 30),  # 02:30 CEST, the first of two
        utc(2025, 10, 27, 1, 30),  # 02:30 CET
    ]


def test_an_hourly_schedule_fires_in_both_copies_of_the_repeated_hour() -> None:
    spec = due.parse_spec({"cron": "30 * * * *", "timezone": BERLIN})
    assert fires(spec, BERLIN, utc(2025, 10, 25, 23, 45), 4) == [
        utc(2025, 10, 26, 0, 30),  # 02:30 CEST
        utc(2025, 10, 26, 1, 30),  # 02:30 CET
        utc(2025, 10, 26, 2, 30),  # 03:30 CET
        utc(2025, 10, 26, 3, 30),
    ]


def test_one_off_at_fires_once() -> None:
    spec = due.parse_spec({"at": "2025-06-01T09:00:00+02:00"})
    assert due.first_run(spec, "UTC", utc(2025, 1, 1)) == utc(2025, 6, 1, 7)
    assert due.next_fire(spec, "UTC", utc(2025, 6, 1, 7)) is None


def test_defaults_are_run_once_within_an_hour_and_skip_overlaps() -> None:
    spec = due.parse_spec({"cron": "* * * * *"})
    assert (spec.misfire, spec.catch_up_window, spec.overlap) == (
        "run_once",
        timedelta(hours=1),
        "skip",
    )
    assert spec.timezone == "workspace"


@pytest.mark.parametrize(
    "config",
    [{}, {"cron": "not a cron"}, {"cron": "* * * * *", "misfire": "later"}, {"at": "2025-01-01"}],
)
def test_unusable_configs_are_refused(config: dict) -> None:
    with pytest.raises(ValueError):
        due.parse_spec(config)


# --- misfire -----------------------------------------------------------------------------

EVERY_5 = {"cron": "*/5 * * * *", "timezone": "UTC"}
GRACE = timedelta(seconds=60)
DOWN_UNTIL = utc(2025, 1, 1, 10, 18)  # missed 10:05, 10:10, 10:15


def plan(**overrides: object) -> due.FirePlan:
    spec = due.parse_spec({**EVERY_5, **overrides})
    return due.plan_fires(spec, "UTC", utc(2025, 1, 1, 10, 5), DOWN_UNTIL, grace=GRACE)


def test_misfire_skip_drops_every_missed_fire() -> None:
    result = plan(misfire="skip")
    assert result.fire == []
    assert [t for t, _ in result.skipped] == [utc(2025, 1, 1, 10, m) for m in (5, 10, 15)]
    assert result.next_run_at == utc(2025, 1, 1, 10, 20)


def test_misfire_run_once_fires_the_latest_missed_one() -> None:
    result = plan(misfire="run_once")
    assert result.fire == [utc(2025, 1, 1, 10, 15)]
    assert {why for _, why in result.skipped} == {"skipped_misfire"}
    assert len(result.skipped) == 2


def test_misfire_run_all_fires_each_missed_one_oldest_first() -> None:
    assert plan(misfire="run_all").fire == [utc(2025, 1, 1, 10, m) for m in (5, 10, 15)]


def test_catch_up_window_skips_older_misses_whatever_the_policy() -> None:
    result = plan(misfire="run_all", catch_up_window={"minutes": 10})
    assert result.fire == [utc(2025, 1, 1, 10, 10), utc(2025, 1, 1, 10, 15)]
    assert result.skipped == [(utc(2025, 1, 1, 10, 5), "skipped_window")]


def test_a_fire_late_by_less_than_the_grace_is_on_time_even_with_skip() -> None:
    spec = due.parse_spec({**EVERY_5, "misfire": "skip"})
    now = utc(2025, 1, 1, 10, 5, 30)
    result = due.plan_fires(spec, "UTC", utc(2025, 1, 1, 10, 5), now, grace=GRACE)
    assert result.fire == [utc(2025, 1, 1, 10, 5)]


def test_run_once_adds_nothing_when_an_on_time_fire_covers_the_missed_ones() -> None:
    spec = due.parse_spec(EVERY_5)
    now = utc(2025, 1, 1, 10, 15, 10)
    result = due.plan_fires(spec, "UTC", utc(2025, 1, 1, 10, 5), now, grace=GRACE)
    assert result.fire == [utc(2025, 1, 1, 10, 15)]
    assert len(result.skipped) == 2


def test_long_downtime_enumerates_at_most_the_cap_and_jumps_to_the_next_fire() -> None:
    spec = due.parse_spec(
        {"cron": "* * * * *", "misfire": "run_all", "catch_up_window": {"days": 7}}
    )
    now = utc(2025, 1, 3, 0, 0, 30)
    result = due.plan_fires(spec, "UTC", utc(2025, 1, 1), now, grace=GRACE)
    assert result.more_skipped
    assert len(result.fire) == due.MAX_CATCH_UP
    assert result.fire[-1] == utc(2025, 1, 3)
    assert result.next_run_at == utc(2025, 1, 3, 0, 1)


# --- overlap -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "running", "buffered", "expected"),
    [
        ("skip", False, False, ["fire", "fire", "fire"]),
        ("skip", True, False, ["skip", "skip", "skip"]),
        ("buffer_one", True, False, ["buffer", "skip", "skip"]),
        ("buffer_one", True, True, ["skip", "skip", "skip"]),
        ("buffer_one", False, False, ["fire", "fire", "fire"]),
        ("allow", True, True, ["fire", "fire", "fire"]),
    ],
)
def test_overlap_decisions(policy: str, running: bool, buffered: bool, expected: list) -> None:
    assert due.overlap_decisions(policy, 3, running=running, buffered=buffered) == expected


# --- date fields -------------------------------------------------------------------------


def test_three_days_before_a_date_at_nine_on_the_local_wall_clock() -> None:
    # 2025-03-31 - 3 days = 03-28, 09:00 CET = 08:00 UTC
    assert due.date_due(date(2025, 3, 31), {"days": -3}, "09:00", BERLIN) == utc(2025, 3, 28, 8)
    # across the change: 2025-04-02 - 3 days = 03-30 (CEST) 09:00 = 07:00 UTC
    assert due.date_due(date(2025, 4, 2), {"days": -3}, "09:00", BERLIN) == utc(2025, 3, 30, 7)


def test_a_date_without_time_is_due_at_local_midnight() -> None:
    assert due.date_due(date(2025, 7, 1), {}, None, "America/New_York") == utc(2025, 7, 1, 4)


def test_a_timestamp_keeps_its_instant_and_moves_by_elapsed_hours() -> None:
    value = utc(2025, 7, 1, 15, 30)
    assert due.date_due(value, {"hours": -2}, None, BERLIN) == utc(2025, 7, 1, 13, 30)
    assert due.date_due(value, {"days": 1}, "08:00", BERLIN) == utc(2025, 7, 2, 6)


def test_record_fire_decision_applies_grace_window_and_policy() -> None:
    spec = due.parse_spec({"date_field": "deal.expected_close_date", "misfire": "skip"})
    at = utc(2025, 1, 1, 9)
    assert due.record_fire_decision(spec, at, at + timedelta(seconds=30), grace=GRACE) == "fire"
    assert (
        due.record_fire_decision(spec, at, at + timedelta(minutes=5), grace=GRACE)
        == "skipped_misfire"
    )
    assert (
        due.record_fire_decision(spec, at, at + timedelta(hours=2), grace=GRACE) == "skipped_window"
    )


def test_date_value_keys_are_canonical() -> None:
    assert due.date_value_key(date(2025, 1, 2)) == "2025-01-02"
    assert due.date_value_key(datetime(2025, 1, 2, 10, tzinfo=UTC)) == "2025-01-02T10:00:00+00:00"
    assert due.parse_date_value("2025-01-02") == date(2025, 1, 2)
    assert due.parse_date_value(None) is None


def test_last_fire_before_now_crosses_long_gaps_without_walking_them() -> None:
    last = due.last_fire_at_or_before(
        "* * * * *", "UTC", utc(2024, 1, 1), utc(2025, 1, 1, 0, 0, 30)
    )
    assert last == utc(2025, 1, 1)
    monthly = due.last_fire_at_or_before("0 8 1 * *", BERLIN, utc(2024, 11, 15), utc(2025, 1, 20))
    assert monthly == utc(2025, 1, 1, 7)
    assert due.last_fire_at_or_before("0 8 1 * *", "UTC", utc(2025, 1, 2), utc(2025, 1, 20)) is None
