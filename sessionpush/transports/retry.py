"""When to try again: ``Retry-After`` and exponential backoff with jitter."""

from __future__ import annotations

import email.utils
import random as _random
from collections.abc import Callable

__all__ = ["Backoff", "parse_retry_after"]


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` value, or None if absent or bad.

    RFC 9110 section 10.2.3: either a number of seconds or an HTTP-date.
    """
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


class Backoff:
    """Delays for attempt 1, 2, ...: ``base * 2**(n-1)`` capped at ``cap``,
    with "equal jitter" (half fixed, half random) so that many senders
    rate-limited at once do not come back at once."""

    def __init__(
        self,
        base: float = 1.0,
        cap: float = 300.0,
        random: Callable[[], float] = _random.random,
    ) -> None:
        self.base = base
        self.cap = cap
        self._random = random

    def delay(
        self, attempt: int, retry_after: float | None = None, floor: float = 0.0
    ) -> float:
        """The wait before attempt ``attempt + 1``; never less than what the
        provider asked for (``retry_after``) or ``floor``."""
        step = min(self.cap, self.base * 2.0 ** (attempt - 1))
        jittered = step / 2 + self._random() * step / 2
        return max(jittered, retry_after or 0.0, floor)
