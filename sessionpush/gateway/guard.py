"""What the gateway knows about all its connections at once.

One :class:`Guard` per gateway holds the app config, the connection
counters (per user, per address) and the set of open connections; each
connection asks it before it opens a session. It holds no secret of its
own beyond the config it was given.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from sessionpush.gateway.apps import GatewayConfig
from sessionpush.gateway.limits import ConnectionCounter, Limits

if TYPE_CHECKING:
    from sessionpush.gateway.connection import Connection

__all__ = ["Guard"]


class Guard:
    """Shared state of the connections of one gateway."""

    def __init__(
        self,
        config: GatewayConfig,
        *,
        limited: bool = True,
        allow_loopback: Callable[[], bool] = lambda: False,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.limits: Limits = config.limits
        #: False on a playback gateway, whose client replays recorded
        #: sessions as fast as it can: no rate or connection-count limits.
        self.limited = limited
        self.per_user = ConnectionCounter(config.limits.connections_per_user)
        self.per_ip = ConnectionCounter(config.limits.connections_per_ip)
        self.connections: set[Connection] = set()
        #: Testing only: accept Web Push endpoints on loopback.
        self.allow_loopback = allow_loopback
        #: Token expiry is wall time (``exp`` is epoch seconds).
        self.wall = wall
