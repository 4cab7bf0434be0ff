"""A gateway app served by uvicorn inside the test's own event loop, on a
free loopback port, with the settings ``sessionpush serve`` uses."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import uvicorn
from starlette.types import ASGIApp

from sessionpush.gateway.apps import GatewayConfig
from sessionpush.gateway.shutdown import server_config


@contextlib.asynccontextmanager
async def served_in_loop(app: ASGIApp, gateway: GatewayConfig) -> AsyncIterator[int]:
    """Serve ``app`` until the block ends; yields the port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    server = uvicorn.Server(server_config(app, gateway, "127.0.0.1", port))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield port
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 15)
