"""What one client may cost the gateway, and the checks that hold it to it.

Every limit has a safe default, can be changed in the ``[limits]`` section
of the app config (``docs/security.md`` lists them with their answers), and
is answered with a documented error frame or close code, never silently.

- :class:`TokenBucket`: frames per second of one connection.
- :class:`ConnectionCounter`: open sockets per user and per IP address.
- :func:`check_props`: properties per event and their nesting depth.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any

import msgspec

from sessionpush.gateway.protocol import ProtocolError

__all__ = [
    "CLOSE_FLOOD",
    "CLOSE_TOO_MANY",
    "ConnectionCounter",
    "Limits",
    "TokenBucket",
    "check_props",
]

#: Close code: the client kept sending after its frames were being refused.
CLOSE_FLOOD = 4029
#: Close code: too many open sockets for this user or this address.
CLOSE_TOO_MANY = 4009

Positive = Annotated[float, msgspec.Meta(gt=0)]
Count = Annotated[int, msgspec.Meta(ge=1)]


class Limits(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """The ``[limits]`` section; every field is documented in security.md."""

    #: Largest frame, in bytes, after inflating when compression is on.
    frame_bytes: Annotated[int, msgspec.Meta(ge=1024, le=16 * 1024 * 1024)] = 65536
    #: Sustained frames per second per connection, and the burst above it.
    frames_per_second: Positive = 50.0
    frame_burst: Count = 200
    connections_per_user: Count = 20
    connections_per_ip: Count = 500
    #: Keys and list items of one event's ``props``, counted at every level.
    properties_per_event: Count = 256
    property_depth: Count = 8
    #: Frames waiting for a client that reads slowly; then close 4008.
    outbound_queue: Count = 256
    #: permessage-deflate: about 34 KiB more per idle connection when on.
    compression: bool = False
    ping_interval: Positive = 30.0
    ping_timeout: Positive = 30.0
    #: A socket that sends no ``hello`` within this is closed (4010).
    hello_timeout: Positive = 10.0
    #: After a connection token expires: time to send ``refresh`` (4004).
    token_refresh_grace: Positive = 30.0
    #: Longest lifetime a connection token may claim (``exp`` - now).
    token_max_lifetime: Positive = 24 * 3600.0
    #: How long a closing socket may take to flush before it is dropped.
    close_timeout: Positive = 5.0


class TokenBucket:
    """Frames per second of one connection: ``rate`` sustained, ``burst`` at
    once. ``take()`` is False when the frame must be refused."""

    __slots__ = ("_at", "_clock", "_tokens", "burst", "rate", "refused")

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._at = clock()
        #: Frames refused since the last one let through.
        self.refused = 0

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            self.refused = 0
            return True
        self.refused += 1
        return False


class ConnectionCounter:
    """Open sockets per key (a user, an address), each capped at ``limit``."""

    __slots__ = ("_open", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[Any, int] = {}

    def acquire(self, key: Any) -> bool:
        """Count one more socket under ``key``; False (and not counted) when
        the key is at its limit."""
        count = self._open.get(key, 0)
        if count >= self.limit:
            return False
        self._open[key] = count + 1
        return True

    def release(self, key: Any) -> None:
        count = self._open.get(key, 0) - 1
        if count > 0:
            self._open[key] = count
        else:
            # Keys without sockets are dropped, so the map holds open keys only.
            self._open.pop(key, None)

    def __len__(self) -> int:
        return len(self._open)

    def count(self, key: Any) -> int:
        return self._open.get(key, 0)


def check_props(props: dict[str, Any], limits: Limits) -> None:
    """Refuse ``props`` with more nodes or deeper nesting than ``limits``.

    Walks the value once, iteratively, so that a deep value cannot exhaust
    the interpreter's stack here either.
    """
    budget = limits.properties_per_event
    if len(props) <= budget:
        # Nearly every event is one level of scalars: one look at each
        # value settles it, without the walk below (a tenth of the frame
        # handling it replaced, measured with one event per frame).
        for value in props.values():
            if type(value) is dict or type(value) is list:
                break
        else:
            return
    most = limits.property_depth
    stack: list[tuple[Any, int]] = [(props, 1)]
    seen = 0
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > most:
            raise ProtocolError(
                "too_large",
                f"props nest deeper than {most} levels: flatten them - at `$.props`",
            )
        for child in children:
            seen += 1
            if seen > budget:
                raise ProtocolError(
                    "too_large",
                    f"props hold more than {budget} keys and items in all: send "
                    "fewer - at `$.props`",
                )
            stack.append((child, depth + 1))
