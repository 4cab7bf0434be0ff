"""A websocket client over a bare socket: the handshake, then only what the
test says (it can refuse to read, ignore pings, or put several frames in
one write)."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
from typing import Any

import msgspec
from websockets.frames import Close, Frame, Opcode


def text_frame(frame: dict[str, Any]) -> bytes:
    """One masked text frame holding ``frame`` as JSON."""
    return Frame(Opcode.TEXT, msgspec.json.encode(frame)).serialize(
        mask=True, extensions=[]
    )


def close_frame(code: int = 1000) -> bytes:
    """One masked close frame."""
    payload = Close(code, "").serialize()
    return Frame(Opcode.CLOSE, payload).serialize(mask=True, extensions=[])


class RawSocket:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int, rcvbuf: int = 4096) -> RawSocket:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET /v1/session HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101")
        return cls(reader, writer)

    def send(self, frame: dict[str, Any]) -> None:
        self.writer.write(text_frame(frame))

    def close(self) -> None:
        self.writer.transport.abort()
