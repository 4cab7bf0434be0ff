"""Local clock times, quiet hours and calendar days in the user's zone."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sessionpush.engine.calendar import (
    TimeZoneError,
    check_zone,
    in_window,
    next_local,
    start_of_day,
)
from sessionpush.engine.policy import quiet_until
from sessionpush.engine.rules import QuietWindow


def utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("minutes", "start", "end", "inside"),
    [
        (22 * 60, 22 * 60, 8 * 60, True),  # start inclusive
        (8 * 60, 22 * 60, 8 * 60, False),  # end exclusive
        (0, 22 * 60, 8 * 60, True),  # across midnight
        (12 * 60, 22 * 60, 8 * 60, False),
        (13 * 60, 12 * 60, 14 * 60, True),
        (14 * 60, 12 * 60, 14 * 60, False),
    ],
)
def test_quiet_windows_include_their_start_and_exclude_their_end(
    minutes: int, start: int, end: int, inside: bool
) -> None:
    assert in_window(minutes, start, end) is inside


@pytest.mark.parametrize(
    ("zone", "now", "minutes", "due"),
    [
        # Spring forward: 02:30 does not exist; the first instant after it.
        ("Europe/Berlin", "2024-03-30T23:00:00", 150, "2024-03-31T01:00:00"),
        ("America/New_York", "2024-03-10T05:00:00", 150, "2024-03-10T07:00:00"),
        # Fall back: 02:30 (Berlin) and 01:30 (New York) happen twice: once.
        ("Europe/Berlin", "2024-10-26T23:00:00", 150, "2024-10-27T00:30:00"),
        ("America/New_York", "2024-11-03T04:00:00", 90, "2024-11-03T05:30:00"),
        # An ordinary day, and a time already past today.
        ("Europe/Berlin", "2024-06-01T06:00:00", 9 * 60, "2024-06-01T07:00:00"),
        ("Europe/Berlin", "2024-06-01T08:00:00", 9 * 60, "2024-06-02T07:00:00"),
    ],
)
def test_the_next_local_time_handles_both_daylight_saving_days(
    zone: str, now: str, minutes: int, due: str
) -> None:
    assert next_local(utc(now), minutes, zone) == utc(due)


@pytest.mark.parametrize(
    ("zone", "now", "until"),
    [
        ("Europe/Berlin", "2024-03-31T00:30:00", "2024-03-31T06:00:00"),
        ("Europe/Berlin", "2024-10-27T00:30:00", "2024-10-27T07:00:00"),
        ("America/New_York", "2024-03-10T06:30:00", "2024-03-10T12:00:00"),
        ("America/New_York", "2024-11-03T05:30:00", "2024-11-03T13:00:00"),
    ],
)
def test_quiet_hours_end_at_the_local_end_on_daylight_saving_days(
    zone: str, now: str, until: str
) -> None:
    window = QuietWindow(22 * 60, 8 * 60)
    assert quiet_until(window, utc(now), zone) == utc(until)


def test_a_time_outside_the_quiet_hours_is_not_deferred() -> None:
    window = QuietWindow(22 * 60, 8 * 60)
    assert quiet_until(window, utc("2024-06-01T06:00:00"), "Europe/Berlin") is None


@pytest.mark.parametrize(
    ("zone", "now", "day_start"),
    [
        ("Europe/Berlin", "2024-06-01T21:59:59", "2024-05-31T22:00:00"),
        ("Europe/Berlin", "2024-06-01T22:00:00", "2024-06-01T22:00:00"),
        ("America/New_York", "2024-06-02T03:59:59", "2024-06-01T04:00:00"),
        ("America/New_York", "2024-06-02T04:00:00", "2024-06-02T04:00:00"),
        # A zone whose midnight does not exist on its spring-forward day.
        ("America/Havana", "2024-03-10T12:00:00", "2024-03-10T05:00:00"),
    ],
)
def test_a_calendar_day_starts_at_the_users_midnight(
    zone: str, now: str, day_start: str
) -> None:
    assert start_of_day(utc(now), zone) == utc(day_start)


@pytest.mark.parametrize("name", ["+02:00", "UTC+2", "GMT-5", "-0500"])
def test_a_bare_utc_offset_is_rejected_with_a_hint(name: str) -> None:
    with pytest.raises(TimeZoneError, match="IANA name, like Europe/Berlin"):
        check_zone(name)


@settings(max_examples=200, deadline=None)
@given(
    st.floats(1.5e9, 2.0e9),
    st.integers(0, 24 * 60 - 1),
    st.sampled_from(["Europe/Berlin", "America/New_York", "Australia/Lord_Howe"]),
)
def test_the_next_local_time_is_never_before_now_and_within_two_days(
    now: float, minutes: int, zone: str
) -> None:
    due = next_local(now, minutes, zone)
    assert now <= due < now + 2 * 86400
    assert start_of_day(now, zone) <= now
