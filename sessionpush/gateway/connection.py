"""One websocket connection: reads client frames, writes server frames.

Reading and writing are separate: the reader handles frames in order and
answers each with an ``ack`` or an ``error``; the engine may hand a
``message`` to any connection at any time (an in-app message fired by a
timer), so everything outbound goes through a bounded queue drained by one
writer task. A client that stops reading fills its queue and is closed,
instead of growing the server's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from starlette.websockets import WebSocket, WebSocketDisconnect

from sessionpush.engine.clock import VirtualClock
from sessionpush.engine.core import Engine, NoSessionError
from sessionpush.gateway.protocol import (
    Bye,
    Consent,
    End,
    Event,
    Hello,
    ProtocolError,
    Subscribe,
    decode_batch,
    decode_frame,
    encode_frame,
    is_batch,
)
from sessionpush.gateway.push_api import record_engagement
from sessionpush.store.base import Device
from sessionpush.transports.subscriptions import (
    InvalidSubscription,
    Registration,
    to_subscription,
)

__all__ = ["Connection", "serve_connection"]

log = logging.getLogger("sessionpush.gateway")

#: Close code when a client does not read its frames fast enough.
CLOSE_SLOW_CONSUMER = 4008
HEARTBEAT_SECONDS = 30


class Connection:
    """The engine's :class:`~sessionpush.engine.core.Peer` for a websocket."""

    def __init__(self, websocket: WebSocket, queue_size: int = 256) -> None:
        self.websocket = websocket
        self._outbound: asyncio.Queue[str | tuple[int, str]] = asyncio.Queue(queue_size)
        self.closing = False
        self.said_bye = False
        #: Testing only: accept Web Push endpoints on loopback.
        self.allow_loopback = False

    def deliver(self, frame: dict[str, Any]) -> bool:
        if self.closing:
            return False
        try:
            self._outbound.put_nowait(encode_frame(frame))
        except asyncio.QueueFull:
            self.close(CLOSE_SLOW_CONSUMER, "outbound queue full: read faster")
            return False
        return True

    def close(self, code: int, reason: str) -> None:
        if self.closing:
            return
        self.closing = True
        # The close goes after what is already queued; a full queue is
        # emptied first, since a slow client will not read it anyway.
        while True:
            try:
                self._outbound.put_nowait((code, reason))
                return
            except asyncio.QueueFull:
                self._outbound.get_nowait()

    async def write_loop(self) -> None:
        websocket = self.websocket
        while True:
            item = await self._outbound.get()
            if isinstance(item, tuple):
                code, reason = item
                with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError):
                    await websocket.close(code, reason[:120])
                return
            try:
                await websocket.send_text(item)
            except (RuntimeError, WebSocketDisconnect, OSError):
                return


async def serve_connection(
    websocket: WebSocket, engine: Engine, *, allow_loopback: bool = False
) -> None:
    """Run one client connection to its end."""
    await websocket.accept()
    conn = Connection(websocket)
    conn.allow_loopback = allow_loopback
    writer = asyncio.create_task(conn.write_loop())
    try:
        while not conn.closing:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            data = message.get("text")
            if data is None:
                data = message.get("bytes") or b""
            try:
                await _handle(conn, engine, data)
            except Exception:
                # Our bug, not the client's: keep the connection and say so.
                log.exception("frame handling failed")
                conn.deliver(
                    {"type": "error", "code": "internal", "message": "internal error"}
                )
    except WebSocketDisconnect:
        pass
    finally:
        if not conn.said_bye:
            await engine.detach(conn)
        if not conn.closing:
            conn.closing = True
            writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer


async def _handle(conn: Connection, engine: Engine, data: str | bytes) -> None:
    seq: int | None = None
    try:
        if is_batch(data):
            await _batch(conn, engine, data)
            return
        frame = decode_frame(data)
        if isinstance(engine.clock, VirtualClock) and frame.ts is not None:
            # Playback: the recorded time drives the clock, and whatever
            # falls due before this frame fires first.
            await engine.advance(frame.ts / 1000.0)
        if isinstance(frame, Event):
            seq = frame.seq
            if frame.name == "push_opened":
                await _opened(conn, engine, frame.props)
            await engine.event(conn, frame.name, frame.props)
            conn.deliver({"type": "ack", "seq": seq})
        elif isinstance(frame, Hello):
            await _hello(conn, engine, frame)
        elif isinstance(frame, Bye):
            await engine.detach(conn)
            conn.said_bye = True
            conn.deliver({"type": "ack", "seq": None})
        elif isinstance(frame, End):
            await engine.end(conn)
        elif isinstance(frame, Consent):
            session = engine.session_of(conn)
            if session is None:
                raise NoSessionError("send hello before consent")
            await engine.store.set_consent(session.app, session.user, frame.granted)
            conn.deliver({"type": "ack", "seq": None})
        elif isinstance(frame, Subscribe):
            await _subscribe(conn, engine, frame)
    except ProtocolError as exc:
        conn.deliver(
            {"type": "error", "code": exc.code, "message": exc.message, "seq": seq}
        )
    except NoSessionError as exc:
        conn.deliver(
            {"type": "error", "code": "no_session", "message": str(exc), "seq": seq}
        )


async def _batch(conn: Connection, engine: Engine, data: str | bytes) -> None:
    """A JSON array of events: applied in order, answered by one ``ack``
    carrying the highest ``seq`` of the batch (docs/protocol.md)."""
    events = decode_batch(data)
    if engine.session_of(conn) is None:
        raise NoSessionError("send hello before events")
    virtual = isinstance(engine.clock, VirtualClock)
    top: int | None = None
    for frame in events:
        if virtual and frame.ts is not None:
            await engine.advance(frame.ts / 1000.0)
        if frame.name == "push_opened":
            await _opened(conn, engine, frame.props)
        await engine.event(conn, frame.name, frame.props)
        if frame.seq is not None and (top is None or frame.seq > top):
            top = frame.seq
    conn.deliver({"type": "ack", "seq": top})


async def _subscribe(conn: Connection, engine: Engine, frame: Subscribe) -> None:
    session = engine.session_of(conn)
    if session is None:
        raise NoSessionError("send hello before subscribe")
    registration = Registration(
        channel=frame.channel,
        subscription=frame.subscription,
        token=frame.token,
        environment=frame.environment,
    )
    try:
        subscription = to_subscription(
            registration,
            app=session.app,
            user=session.user,
            device_id=str(session.device["id"]),
            now=engine.clock.now(),
            allow_loopback=conn.allow_loopback,
        )
    except InvalidSubscription as exc:
        raise ProtocolError("invalid_subscription", str(exc)) from exc
    await engine.store.add_subscription(subscription)
    conn.deliver({"type": "ack", "seq": None})


async def _opened(conn: Connection, engine: Engine, props: dict[str, Any]) -> None:
    """``push_opened`` with ``{"message": id}``: count the open of a push the
    user was sent; the event still goes to the rules like any other."""
    session = engine.session_of(conn)
    message_id = props.get("message")
    if session is not None and isinstance(message_id, str):
        await record_engagement(engine, message_id, session.app, session.user, "opened")


async def _hello(conn: Connection, engine: Engine, hello: Hello) -> None:
    if engine.session_of(conn) is not None or conn.said_bye:
        raise ProtocolError("duplicate_hello", "this connection already has a session")
    try:
        ZoneInfo(hello.device.timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ProtocolError(
            "invalid_frame",
            f"unknown time zone {hello.device.timezone!r}: use an IANA name such "
            "as 'Europe/Berlin' - at `$.device.timezone`",
        ) from exc
    device = Device(
        app=hello.app,
        user=hello.user,
        device_id=hello.device.id or f"{hello.user}:{hello.device.platform}",
        platform=hello.device.platform,
        timezone=hello.device.timezone,
        lang=hello.device.lang,
        app_version=hello.device.app_version,
        last_seen=engine.clock.now(),
    )
    session, resumed = await engine.open(conn, device, hello.session)
    conn.deliver(
        {
            "type": "welcome",
            "session": session.id,
            "resumed": resumed,
            "heartbeat": HEARTBEAT_SECONDS,
        }
    )
