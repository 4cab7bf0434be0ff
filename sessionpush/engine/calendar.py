"""Calendar arithmetic in the user's time zone: local days and clock times.

Durations run on plain seconds; only three questions need a calendar:
"when is the next 09:00 for this user" (``at``), "is it inside the quiet
hours, and when do they end" (``quiet hours``) and "when did the user's day
begin" (``limit .. per user per day``). All answers are UTC seconds, from
the IANA zone of the user through :mod:`zoneinfo`, never a stored offset.

Daylight saving, as the architecture fixes it: a local time that does not
exist (the clocks spring forward over it) moves to the first instant after
the gap; a local time that exists twice (the clocks fall back) is taken at
its first occurrence, so a message is sent once.
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sessionpush.errors import SessionpushError

__all__ = [
    "TimeZoneError",
    "check_zone",
    "in_window",
    "local_minutes",
    "next_local",
    "resolve_local",
    "start_of_day",
    "zone",
]

_OFFSET = re.compile(r"(UTC|GMT)?\s*[+-]\d{1,2}(:?\d{2})?")


class TimeZoneError(SessionpushError):
    """A time zone name is not an IANA zone (``Europe/Berlin``)."""


def check_zone(name: str) -> ZoneInfo:
    """The zone of an IANA name, or an error that says how to write one.

    Raises:
        TimeZoneError: ``name`` is a bare offset (``+02:00``) or unknown.
    """
    if _OFFSET.fullmatch(name.strip()):
        raise TimeZoneError(
            f"time zone {name!r} is an offset, not a zone: offsets change "
            "with daylight saving, zones do not; send the IANA name, like "
            "Europe/Berlin (in a browser: Intl.DateTimeFormat()"
            ".resolvedOptions().timeZone)"
        )
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise TimeZoneError(
            f"unknown time zone {name!r}: send an IANA name like Europe/Berlin "
            "or America/New_York"
        ) from exc


@functools.lru_cache(maxsize=512)
def zone(name: str) -> tzinfo:
    """The zone of ``name``; UTC for a name that is not a zone.

    The engine must decide something for a user whatever their device
    sent; the gateway rejects bad names up front with :func:`check_zone`.
    """
    try:
        return check_zone(name)
    except TimeZoneError:
        return UTC


def _local(now: float, name: str) -> datetime:
    return datetime.fromtimestamp(now, zone(name))


def local_minutes(now: float, name: str) -> float:
    """The local clock time at ``now``, in minutes after midnight."""
    moment = _local(now, name)
    return moment.hour * 60 + moment.minute + moment.second / 60


def resolve_local(day: date, minutes: int, name: str) -> float:
    """The UTC instant of local ``day`` at ``minutes`` after midnight.

    A time inside a spring-forward gap gives the first instant after the
    gap; a time that exists twice gives its first occurrence.
    """
    tz = zone(name)
    wall = datetime.combine(day, time(minutes // 60, minutes % 60))
    first = wall.replace(tzinfo=tz, fold=0)
    if first.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == wall:
        return first.timestamp()
    # In a gap: fold=0 and fold=1 read it with the offsets before and after
    # the change, which brackets the instant of the change. Bisect to it on
    # whole seconds (zone transitions fall on whole seconds).
    low, high = sorted(
        (int(first.timestamp()), int(wall.replace(tzinfo=tz, fold=1).timestamp()))
    )
    while low < high:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, tz).replace(tzinfo=None) >= wall:
            high = middle
        else:
            low = middle + 1
    return float(low)


def next_local(now: float, minutes: int, name: str) -> float:
    """The first instant at or after ``now`` when the local clock shows
    ``minutes`` after midnight (or, in a gap, just after it)."""
    today = _local(now, name).date()
    for offset in range(3):
        due = resolve_local(today + timedelta(days=offset), minutes, name)
        if due >= now:
            return due
    raise RuntimeError("no local time in three days")  # pragma: no cover


def start_of_day(now: float, name: str) -> float:
    """When the user's local calendar day that holds ``now`` began."""
    return resolve_local(_local(now, name).date(), 0, name)


def in_window(minutes: float, start: int, end: int) -> bool:
    """Whether a local time lies in ``[start, end)``, which may cross midnight."""
    if start < end:
        return start <= minutes < end
    return minutes >= start or minutes < end
