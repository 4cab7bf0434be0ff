"""When to reconnect, how fast to send, and which closes are final."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["FINAL_CLOSES", "NEW_SESSION_CLOSES", "Backoff", "Pacer"]

#: Close codes after which reconnecting cannot help: the session was ended
#: by this client, or the gateway refused who it is (``docs/protocol.md``).
FINAL_CLOSES = frozenset({4003, 4004, 4005})
#: The session is over but the client is not: the next frame opens a new
#: session (ended elsewhere with ``end``, or idle for too long).
NEW_SESSION_CLOSES = frozenset({1000, 4001})


@dataclass(slots=True)
class Backoff:
    """Exponential backoff with jitter: attempt ``n`` waits between half
    and all of ``min(cap, base * 2**n)`` seconds.

    The random half spreads the reconnects of many clients dropped at once
    (a gateway restart) instead of bringing them back in one wave; the
    fixed half keeps any one client from retrying at once.
    """

    base: float = 0.5
    cap: float = 30.0
    attempts: int = 0
    uniform: Callable[[float, float], float] = field(default=random.uniform, repr=False)

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.base * 2.0**self.attempts)
        self.attempts += 1
        return self.uniform(ceiling / 2.0, ceiling)

    def reset(self) -> None:
        self.attempts = 0


@dataclass(slots=True)
class Pacer:
    """Frames a client may write now without passing the gateway's rate
    limit (50 a second, bursts of 200 by default): a frame refused as
    ``rate_limited`` is dropped there, and the events after it overtake
    it, so a client keeps under the limit instead of retrying."""

    rate: float = 50.0
    burst: float = 200.0
    tokens: float = 200.0
    stamp: float | None = None

    @classmethod
    def unlimited(cls) -> Pacer:
        """No pacing: for a ``--clock playback`` gateway, which has no
        rate limit."""
        return cls(rate=1e12, burst=1e12, tokens=1e12)

    def allowance(self, now: float) -> int:
        if self.stamp is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        return int(self.tokens)

    def spend(self, count: int) -> None:
        self.tokens -= count

    def wait(self) -> float:
        """Seconds until one more frame may go."""
        return max(0.0, (1.0 - self.tokens) / self.rate)
