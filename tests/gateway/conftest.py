"""A real gateway on a loopback port, served by uvicorn inside the test's
event loop, and a websocket client that speaks to it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from websockets.asyncio.client import ClientConnection, connect

from sessionpush.gateway.app import Settings, create_app
from sessionpush.gateway.apps import dev_config
from tests.in_loop import served_in_loop


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
    async with contextlib.AsyncExitStack() as servers:

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
            app = create_app(settings)
            port = await servers.enter_async_context(served_in_loop(app, dev_config()))
            return Gateway(port, outbox)

        yield start
