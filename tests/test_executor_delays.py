"""When a delay step is over (pure): durations on the workspace's wall clock, instants,
date fields with offset and time of day, business hours."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from engine.delays import DelayError, resume_at

NOW = datetime(2025, 3, 29, 10, 0, tzinfo=UTC)  # Saturday; Paris moves to summer time on the 30th
PARIS = {"workspace": {"timezone": "Europe/Paris"}}


def test_a_day_keeps_the_wall_clock_across_a_dst_change() -> None:
    due = resume_at({"duration": {"days": 1}}, PARIS, NOW)

    assert due == datetime(2025, 3, 30, 9, 0, tzinfo=UTC)  # 11:00 Paris both days: 23 h later


def test_hours_minutes_and_seconds_are_elapsed_time() -> None:
    due = resume_at({"duration": {"hours": 1, "seconds": 30}}, PARIS, NOW)

    assert due == datetime(2025, 3, 29, 11, 0, 30, tzinfo=UTC)


def test_until_an_instant_in_the_past_does_not_wait() -> None:
    assert resume_at({"until": "2025-01-01T00:00:00Z"}, PARIS, NOW) < NOW


def test_until_field_with_offset_and_time_in_the_record_owner_zone() -> None:
    context = {**PARIS, "deal": {"expected_close_date": "2025-04-10"}}
    params = {
        "until_field": "deal.expected_close_date",
        "offset": {"days": -3},
        "time": "09:00",
        "timezone": "owner",
    }

    due = resume_at(params, context, NOW, owner_zone=lambda: "America/New_York")

    assert due == datetime(2025, 4, 7, 13, 0, tzinfo=UTC)  # 09:00 EDT


def test_an_empty_date_field_is_an_error_naming_it() -> None:
    with pytest.raises(DelayError, match=r"deal\.expected_close_date is empty"):
        resume_at({"until_field": "deal.expected_close_date"}, {"deal": {}}, NOW)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (datetime(2025, 3, 28, 10, 0, tzinfo=UTC), datetime(2025, 3, 28, 10, 0, tzinfo=UTC)),
        (datetime(2025, 3, 28, 17, 0, tzinfo=UTC), datetime(2025, 3, 31, 7, 0, tzinfo=UTC)),
        (datetime(2025, 3, 28, 6, 0, tzinfo=UTC), datetime(2025, 3, 28, 8, 0, tzinfo=UTC)),
    ],
)
def test_business_hours_waits_for_the_next_window(now, expected) -> None:
    hours = {"timezone": "Europe/Paris", "days": ["mon", "tue", "wed", "thu", "fri"]}
    params = {"business_hours": {**hours, "start": "09:00", "end": "17:00"}}

    assert resume_at(params, PARIS, now) == expected
