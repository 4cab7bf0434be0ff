"""Serving with uvicorn, and stopping without losing anything.

On ``SIGTERM`` (or Ctrl-C) uvicorn stops listening, closes every websocket
with 1012 ("service restart": reconnect, to another process if there is
one) and waits for the connections to finish, at most
``SHUTDOWN_TIMEOUT`` seconds; then the gateway's lifespan ends, which
:func:`close_gateway` runs in order: the timer loop stops (pending timers
stay in the store, where the next start finds them), the delivery queue
and its transports close, the outbox is flushed and closed, and the store
is closed last, so that everything before it could still write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from types import FrameType
from typing import TYPE_CHECKING

import uvicorn
from starlette.types import ASGIApp

from sessionpush.gateway.apps import GatewayConfig
from sessionpush.gateway.connection import Connection

if TYPE_CHECKING:
    from sessionpush.store.base import Store
    from sessionpush.transports.outbox import Outbox
    from sessionpush.transports.queue import DeliveryQueue

__all__ = ["SHUTDOWN_TIMEOUT", "GracefulServer", "close_gateway", "server_config"]

log = logging.getLogger("sessionpush.gateway")

#: Seconds connections get to finish after SIGTERM before they are dropped.
SHUTDOWN_TIMEOUT = 10


def server_config(
    app: ASGIApp, gateway: GatewayConfig, host: str, port: int
) -> uvicorn.Config:
    """The uvicorn settings the gateway's limits call for."""
    proxies = list(gateway.trusted_proxies)
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        # The lifespan hands the engine to the websocket protocol.
        lifespan="on",
        # /v1/session upgrades to our own protocol, which reads frame size,
        # compression and keepalive from the same limits.
        ws=Connection,
        # uvicorn believes X-Forwarded-For from 127.0.0.1 by default, which
        # would let any local client pick its address for the per-IP limit.
        proxy_headers=bool(proxies),
        forwarded_allow_ips=proxies or None,
        server_header=False,
        timeout_graceful_shutdown=SHUTDOWN_TIMEOUT,
    )


class GracefulServer(uvicorn.Server):
    """uvicorn's server, logging the start of a graceful shutdown."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self.should_exit:
            log.info(
                "signal %d: no new connections; closing the open ones with 1012",
                sig,
            )
        super().handle_exit(sig, frame)


async def close_gateway(
    tasks: Sequence[asyncio.Task[None]],
    delivery: DeliveryQueue | None,
    outbox: Outbox,
    store: Store,
) -> None:
    """Stop in the order the module docstring gives; ``tasks`` are the
    background loops (timers, timer claims, rule-set reloads)."""
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    if delivery is not None:
        await delivery.close()
        for transport in delivery.transports.values():
            await transport.close()
    await outbox.close()
    await store.close()
    log.info("gateway stopped; pending timers stay in the store")
