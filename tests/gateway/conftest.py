"""A real gateway on a loopback port, served by uvicorn inside the test's
event loop, and a websocket client that speaks to it."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
import uvicorn
from websockets.asyncio.client import ClientConnection, connect

from sessionpush.gateway.app import Settings, create_app
from sessionpush.gateway.apps import dev_config
from sessionpush.gateway.shutdown import server_config


class Gateway:
    def __init__(self, port: int, outbox: Path) -> None:
        self.port = port
        self.outbox = outbox
        self.url = f"ws://127.0.0.1:{port}/v1/session"
        self.http = f"http://127.0.0.1:{port}"

    async def connect(self) -> ClientConnection:
        return await connect(self.url)

    def pushes(self) -> list[dict[str, Any]]:
        if not self.outbox.exists():
            return []
        return [
            msgspec.json.decode(line) for line in self.outbox.read_bytes().splitlines()
        ]


async def send(ws: ClientConnection, frame: dict[str, Any] | str) -> None:
    await ws.send(
        frame if isinstance(frame, str) else msgspec.json.encode(frame).decode()
    )


async def receive(ws: ClientConnection, timeout: float = 5.0) -> dict[str, Any]:
    frame: dict[str, Any] = msgspec.json.decode(
        await asyncio.wait_for(ws.recv(), timeout)
    )
    return frame


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    servers: list[tuple[uvicorn.Server, asyncio.Task[None]]] = []

    async def start(rules: str, **options: Any) -> Gateway:
        rule_file = tmp_path / "test.rules"
        rule_file.write_text(rules)
        outbox = tmp_path / "outbox.jsonl"
        settings = Settings(
            rules=(str(rule_file),),
            store=str(tmp_path / "state.db"),
            outbox=str(outbox),
            **options,
        )
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = server_config(create_app(settings), dev_config(), "127.0.0.1", port)
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        servers.append((server, task))
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        return Gateway(port, outbox)

    yield start
    for server, task in servers:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
