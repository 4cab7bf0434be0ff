"""Clocks: the only way the engine learns the time.

Nothing in ``sessionpush.engine`` reads the system clock or sleeps; it asks
the clock it was given. Live servers use :class:`WallClock`; ``replay`` and
``serve --clock playback`` use :class:`VirtualClock`, which follows recorded
timestamps; tests use :class:`VirtualClock` too and move it by hand.

All clocks answer in UTC seconds since the epoch, so that a durable timer
written by one run is understood by the next.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Protocol

__all__ = ["Clock", "VirtualClock", "WallClock", "iso", "parse_iso"]


class Clock(Protocol):
    """Tells the time in UTC epoch seconds."""

    @property
    def virtual(self) -> bool:
        """True when the engine moves this clock itself while firing timers."""

    def now(self) -> float: ...


class WallClock:
    """UTC time that never runs backwards.

    Durations (grace periods, absence windows, waits) must not jump when NTP
    steps the system clock, so the time is the wall time read once at start
    plus the monotonic time elapsed since.
    """

    virtual = False

    def __init__(self) -> None:
        self._wall_at_start = time.time()
        self._mono_at_start = time.monotonic()

    def now(self) -> float:
        return self._wall_at_start + (time.monotonic() - self._mono_at_start)


class VirtualClock:
    """A clock that only moves when told to, and never backwards.

    ``set`` to an earlier time is ignored: recorded data may hold events a
    little out of order across users, and time inside the engine must still
    be monotonic.
    """

    virtual = True

    def __init__(self, start: float = 0.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def set(self, when: float) -> None:
        if when > self._now:
            self._now = when

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"cannot move a clock back by {seconds} s")
        self._now += seconds


def iso(ts: float) -> str:
    """UTC ISO-8601 with a ``Z``; milliseconds only when there are some."""
    moment = dt.datetime.fromtimestamp(ts, dt.UTC)
    spec = "milliseconds" if moment.microsecond else "seconds"
    return moment.isoformat(timespec=spec).replace("+00:00", "Z")


def parse_iso(text: str) -> float:
    """The time :func:`iso` wrote (to its millisecond), or any ISO-8601 time;
    one without an offset is UTC."""
    moment = dt.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()
