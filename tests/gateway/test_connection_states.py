"""Connection driven by hand with a recording transport: what it may still
do once the client's close frame has come."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from sessionpush.dsl import load_ruleset
from sessionpush.engine.clock import WallClock
from sessionpush.engine.core import Engine
from sessionpush.gateway.apps import dev_config
from sessionpush.gateway.connection import Connection, SessionService
from sessionpush.gateway.guard import Guard
from sessionpush.store.sqlite import SQLiteStore
from tests.gateway.raw_socket import close_frame, text_frame

UPGRADE = (
    b"GET /v1/session HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)


class Recorder:
    """The transport calls Connection makes; raises on a write after close."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "write after close"
        self.written.append(data)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


@pytest.fixture
async def opened() -> AsyncIterator[tuple[Connection, Recorder]]:
    store = SQLiteStore(":memory:")
    await store.open()
    engine = Engine(load_ruleset([]), store, WallClock())
    conn = Connection(service=SessionService(engine, Guard(dev_config())))
    transport = Recorder()
    conn.connection_made(transport)  # type: ignore[arg-type]
    conn.data_received(UPGRADE)
    assert transport.written[0].startswith(b"HTTP/1.1 101")
    yield conn, transport
    conn.connection_lost(None)
    await store.close()


async def test_frames_held_while_paused_are_dropped_once_the_client_closed(
    opened: tuple[Connection, Recorder],
) -> None:
    conn, transport = opened
    conn.pause_writing()
    assert conn.deliver({"type": "message", "title": "held"}) is True
    before = len(transport.written)
    conn.data_received(close_frame())
    # The protocol echoed the close and ended the stream.
    assert transport.closed
    assert len(transport.written) == before + 1
    conn.resume_writing()  # nothing more may be written, and nothing raises
    assert len(transport.written) == before + 1
    assert conn.deliver({"type": "ack", "seq": 1}) is False


async def test_no_ping_goes_out_once_the_close_handshake_began(
    opened: tuple[Connection, Recorder],
) -> None:
    conn, transport = opened
    conn.data_received(close_frame())
    written = len(transport.written)
    conn._ping()
    assert len(transport.written) == written
    conn.close(1000, "bye")  # the client closed first: no second close frame
    assert len(transport.written) == written


async def test_an_open_socket_sends_its_ping_and_frames(
    opened: tuple[Connection, Recorder],
) -> None:
    conn, transport = opened
    written = len(transport.written)
    conn._ping()
    assert conn.deliver({"type": "ack", "seq": 3}) is True
    # The ping frame (opcode 0x9) then the ack as a text frame (0x1).
    assert [w[0] & 0x0F for w in transport.written[written:]] == [0x9, 0x1]
    conn.data_received(text_frame({"type": "bye"}))
