"""One websocket of ``/v1/session``, straight on the socket.

:class:`Connection` is an asyncio protocol that speaks websocket through
the ``websockets`` library's Sans-I/O layer; uvicorn hands it the socket
when a request asks to upgrade (``ws=Connection`` in
:func:`~sessionpush.gateway.shutdown.server_config`), so the HTTP API stays
on Starlette while session frames never pass through ASGI. Measured in
``benchmarks/``: ASGI's message dicts, the per-socket queue and writer
task, and uvicorn's own websocket objects cost a third of the CPU per
event and half the memory per idle socket.

How it spends: no task while a socket is idle. Frames that arrive wait in a
small inbox and are handled in order (:mod:`gateway.handlers`): inline, in
the callback that received them, when the store never waits (SQLite,
:mod:`gateway.eager`), else by a task that ends when the inbox is empty.
Writes are synchronous: an ``ack`` goes to the transport as soon as it is
made. When the transport's buffer is full (a client that does not read),
frames wait in a backlog of at most ``outbound_queue``; past that the socket
is closed with 4008, and a socket that will not take its close frame either
is dropped after ``close_timeout``. An inbox that fills faster than it is
handled pauses reading from the socket, so a client cannot queue unbounded
work.

Before a session exists the connection passes, in order: the ``Origin``
check at the handshake (403), the per-address count (4009), ``hello``
within the hello timeout (4010), then authentication of ``hello`` (4003)
and the per-user count (4009). Every close code is listed in
``docs/protocol.md``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import urllib.parse
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, cast

from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import OPEN
from websockets.server import ServerProtocol

from sessionpush.engine.core import Engine
from sessionpush.gateway.addresses import client_address
from sessionpush.gateway.auth import handshake_origin_allowed
from sessionpush.gateway.eager import run_eagerly
from sessionpush.gateway.guard import Guard
from sessionpush.gateway.handlers import handle, refuse_flood
from sessionpush.gateway.limits import CLOSE_TOO_MANY, TokenBucket
from sessionpush.gateway.metrics import GatewayMetrics
from sessionpush.gateway.protocol import encode_frame

__all__ = [
    "CLOSE_NO_HELLO",
    "CLOSE_SLOW_CONSUMER",
    "SERVICE_KEY",
    "SESSION_PATH",
    "Connection",
    "SessionService",
]

log = logging.getLogger("sessionpush.gateway")
# The Sans-I/O layer logs every handshake at INFO; that is uvicorn's job.
_websockets_log = logging.getLogger("sessionpush.gateway.websocket")

#: Close code when a client does not read its frames fast enough.
CLOSE_SLOW_CONSUMER = 4008
#: Close code when no ``hello`` came within the hello timeout.
CLOSE_NO_HELLO = 4010
#: Close code when a ping gets no pong within ``ping_timeout``.
CLOSE_NO_PONG = 1011
#: Close code for a gateway that is stopping: reconnect elsewhere.
CLOSE_RESTART = 1012
SESSION_PATH = "/v1/session"
#: Where the gateway's lifespan puts its :class:`SessionService` in the
#: state uvicorn hands every protocol it creates.
SERVICE_KEY = "sessionpush.sessions"
# Frames received but not yet handled, above which the socket is not read
# until the handler catches up (and below which it is read again).
_INBOX_HIGH = 64
_INBOX_LOW = 16
_INTERNAL_ERROR = {"type": "error", "code": "internal", "message": "internal error"}


@dataclass(frozen=True, slots=True)
class SessionService:
    """What every connection of a gateway shares."""

    engine: Engine
    guard: Guard
    metrics: GatewayMetrics | None = None


class Connection(asyncio.Protocol):
    """One client socket, and the engine's
    :class:`~sessionpush.engine.core.Peer` for it."""

    __slots__ = (
        "_backlog",
        "_bucket",
        "_connections",
        "_inbox",
        "_ip_counted",
        "_lost",
        "_open",
        "_parts",
        "_ping_data",
        "_read_paused",
        "_reading",
        "_tasks",
        "_timers",
        "_transport",
        "_write_paused",
        "_ws",
        "address",
        "allow_loopback",
        "closing",
        "counted",
        "engine",
        "expires",
        "guard",
        "metrics",
        "origin",
        "said_bye",
    )

    def __init__(
        self,
        config: object = None,
        server_state: Any = None,
        app_state: dict[str, Any] | None = None,
        _loop: object = None,
        *,
        service: SessionService | None = None,
    ) -> None:
        # uvicorn's signature for a ws_protocol_class; ``service`` serves a
        # connection without uvicorn (the tests' raw sockets, benchmarks).
        if service is None:
            if app_state is None or SERVICE_KEY not in app_state:
                raise RuntimeError(
                    "the gateway's lifespan did not run: serve the app with "
                    "lifespan='on' (server_config does)"
                )
            service = app_state[SERVICE_KEY]
        self.engine = service.engine
        self.guard = service.guard
        self.metrics = service.metrics
        limits = self.guard.limits
        self._ws = ServerProtocol(
            extensions=_deflate() if limits.compression else None,
            # Checked after inflating, so it also caps what a compressed
            # frame may expand to (close 1009).
            max_size=limits.frame_bytes,
            logger=_websockets_log,
        )
        self._connections: set[Any] | None = (
            None if server_state is None else server_state.connections
        )
        self._tasks: set[asyncio.Task[None]] | None = (
            None if server_state is None else server_state.tasks
        )
        self._transport: asyncio.Transport | None = None
        self._inbox: deque[bytes] = deque()
        self._parts: list[bytes] | None = None
        # True while frames are being handled (inline, or by a task once
        # one of them had to wait).
        self._reading = False
        self._backlog: deque[bytes] | None = None
        self._read_paused = False
        self._write_paused = False
        self._open = False
        self._lost = False
        self._ip_counted = False
        self._bucket: TokenBucket | None = None
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._ping_data: bytes | None = None
        self.closing = False
        self.said_bye = False
        #: Testing only: accept Web Push endpoints on loopback.
        self.allow_loopback = False
        #: The (app, user) counted against the per-user limit, once known.
        self.counted: tuple[str, str] | None = None
        #: Epoch seconds when the connection token runs out (None: never).
        self.expires: float | None = None
        self.origin: str | None = None
        self.address = ""

    # -- the engine's Peer --------------------------------------------------

    def deliver(self, frame: dict[str, Any]) -> bool:
        """Send a frame now, or as soon as the socket takes it."""
        if self.closing or self._lost or self._ws.state is not OPEN:
            # Not open: before the handshake, or the client's close frame
            # came (frames received before it are still being handled).
            return False
        data = encode_frame(frame)
        backlog = self._backlog
        if backlog is None and not self._write_paused:
            self._ws.send_text(data)
            self._write_out()
            return True
        if backlog is None:
            backlog = self._backlog = deque()
        if len(backlog) >= self.guard.limits.outbound_queue:
            self.close(CLOSE_SLOW_CONSUMER, "outbound queue full: read faster")
            return False
        backlog.append(data)
        return True

    def close(self, code: int, reason: str) -> None:
        """Close after what is already waiting; a socket that cannot take
        the close frame is dropped ``close_timeout`` later."""
        if self.closing or self._lost:
            return
        self.closing = True
        transport = self._transport
        if transport is None:
            return
        if not self._open:
            transport.close()
            return
        if self._ws.state is not OPEN:
            # The client closed first: the protocol answered its close
            # frame, and the socket ends once the client hangs up.
            self.later("abort", self.guard.limits.close_timeout, transport.abort)
            return
        backlog = self._backlog
        self._backlog = None
        # A full backlog belongs to a client that does not read: it will
        # not read these either.
        if backlog and len(backlog) < self.guard.limits.outbound_queue:
            for data in backlog:
                self._ws.send_text(data)
        self._ws.send_close(code, reason[:120])
        self._write_out()
        self.later("abort", self.guard.limits.close_timeout, transport.abort)

    # -- timers of this connection -----------------------------------------

    def later(self, name: str, delay: float, action: Callable[[], object]) -> None:
        """Run ``action`` after ``delay`` seconds, replacing any ``name``."""
        self.cancel(name)
        loop = asyncio.get_running_loop()
        self._timers[name] = loop.call_later(delay, action)

    def cancel(self, name: str) -> None:
        handle = self._timers.pop(name, None)
        if handle is not None:
            handle.cancel()

    # -- asyncio protocol ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses.
        self._transport = cast(asyncio.Transport, transport)
        if self._connections is not None:
            self._connections.add(self)

    def data_received(self, data: bytes) -> None:
        ws = self._ws
        ws.receive_data(data)
        self._on_events()

    def eof_received(self) -> bool | None:
        self._ws.receive_eof()
        self._on_events()
        return None

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        backlog = self._backlog
        self._backlog = None
        if backlog is None or self._ws.state is not OPEN:
            return
        for data in backlog:
            self._ws.send_text(data)
        self._write_out()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        for name in list(self._timers):
            self.cancel(name)
        if self._connections is not None:
            self._connections.discard(self)
        if not self._open:
            return
        guard = self.guard
        guard.connections.discard(self)
        if self.metrics is not None:
            self.metrics.disconnected()
        if self._ip_counted:
            guard.per_ip.release(self.address)
        if self.counted is not None:
            guard.per_user.release(self.counted)
        if self._read_paused:
            self._read_paused = False
        # Frames already received are still handled, then the session is
        # detached (ended after the grace unless the client comes back).
        if not self._reading:
            self._start(self._detach())

    def shutdown(self) -> None:
        """uvicorn's call on SIGTERM: ask the client to reconnect elsewhere."""
        if not self._open:
            if self._transport is not None:
                self._transport.close()
            return
        self.close(CLOSE_RESTART, "service restart")

    # -- receiving -----------------------------------------------------------

    def _on_events(self) -> None:
        for event in self._ws.events_received():
            if isinstance(event, Frame):
                self._on_frame(event)
            elif isinstance(event, Request):
                self._on_request(event)
        self._write_out()
        inbox = self._inbox
        if inbox and not self._reading and not self.closing:
            self._reading = True
            if self.engine.store.inline:
                try:
                    run_eagerly(self._read(), self._start)
                except Exception:
                    log.exception("frame handling failed")
            else:
                self._start(self._read())
        if len(inbox) > _INBOX_HIGH and not self._read_paused and not self._lost:
            self._read_paused = True
            assert self._transport is not None
            self._transport.pause_reading()

    def _on_frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            if frame.fin:
                self._inbox.append(bytes(frame.data))
            else:
                self._parts = [bytes(frame.data)]
        elif opcode is Opcode.CONT:
            # The protocol refuses a continuation without a start (1002) and
            # counts the parts against max_size.
            assert self._parts is not None
            self._parts.append(bytes(frame.data))
            if frame.fin:
                self._inbox.append(b"".join(self._parts))
                self._parts = None
        elif opcode is Opcode.PONG:
            self._ping_data = None
            self.cancel("pong")
        # PING is answered and CLOSE echoed by the protocol itself.

    def _on_request(self, request: Request) -> None:
        ws = self._ws
        guard = self.guard
        path, _, query = request.path.partition("?")
        if path != SESSION_PATH:
            ws.send_response(
                ws.reject(404, f"no websocket at {path}: connect to {SESSION_PATH}\n")
            )
            return
        origin = request.headers.get("Origin")
        app = dict(urllib.parse.parse_qsl(query)).get("app")
        if not handshake_origin_allowed(guard.config, origin, app):
            # Refused before accepting: no session, no counter, no task.
            log.info("refused a websocket handshake from origin %.200r", origin)
            ws.send_response(
                ws.reject(
                    403,
                    "this origin may not connect: add it to the app's "
                    "allowed_origins in the app config\n",
                )
            )
            return
        response = ws.accept(request)
        ws.send_response(response)
        if response.status_code != 101:
            return
        assert self._transport is not None
        self._open = True
        self.origin = origin
        self.address = client_address(
            self._transport.get_extra_info("peername"),
            request.headers.get("X-Forwarded-For"),
            guard.config.trusted_proxies,
        )
        self.allow_loopback = guard.allow_loopback()
        guard.connections.add(self)
        if self.metrics is not None:
            self.metrics.connected()
        limits = guard.limits
        if guard.limited:
            if not guard.per_ip.acquire(self.address):
                self.close(CLOSE_TOO_MANY, "too many connections from this address")
                return
            self._ip_counted = True
            self._bucket = TokenBucket(limits.frames_per_second, limits.frame_burst)
        self.later(
            "hello",
            limits.hello_timeout,
            lambda: self.close(CLOSE_NO_HELLO, "no hello in time"),
        )
        self.later("ping", limits.ping_interval, self._ping)

    async def _read(self) -> None:
        """Handle the frames in the inbox, in order, then stop."""
        inbox = self._inbox
        engine = self.engine
        guard = self.guard
        bucket = self._bucket
        try:
            while inbox and not self.closing:
                data = inbox.popleft()
                if self._read_paused and len(inbox) < _INBOX_LOW and not self._lost:
                    self._read_paused = False
                    assert self._transport is not None
                    self._transport.resume_reading()
                if bucket is not None and not bucket.take():
                    refuse_flood(self, bucket)
                    continue
                try:
                    await handle(self, engine, guard, data)
                except Exception:
                    # Our bug, not the client's: keep the connection, say so.
                    log.exception("frame handling failed")
                    self.deliver(_INTERNAL_ERROR)
        finally:
            self._reading = False
            if self._lost:
                await self._detach()

    async def _detach(self) -> None:
        if not self.said_bye:
            self.said_bye = True
            await self.engine.detach(self)

    def _start(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """A task uvicorn waits for on shutdown, before the store closes."""
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        tasks = self._tasks
        if tasks is not None:
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        return task

    # -- sending -------------------------------------------------------------

    def _write_out(self) -> None:
        transport = self._transport
        if transport is None:
            return
        for data in self._ws.data_to_send():
            if data:
                transport.write(data)
            else:
                # The protocol's end of stream: the handshake was refused,
                # or both close frames have passed. A server closes TCP.
                transport.close()

    def _ping(self) -> None:
        if self._ws.state is not OPEN:
            return  # closing: the close handshake has its own timeout
        limits = self.guard.limits
        if self._ping_data is None:
            self._ping_data = os.urandom(4)
            self._ws.send_ping(self._ping_data)
            self._write_out()
            self.later("pong", limits.ping_timeout, self._no_pong)
        self.later("ping", limits.ping_interval, self._ping)

    def _no_pong(self) -> None:
        # The peer is gone or wedged: say why if the socket still takes
        # bytes, then drop it without waiting for a close handshake.
        timeout = self.guard.limits.ping_timeout
        log.info("no pong within %g s: closing the connection", timeout)
        self.close(CLOSE_NO_PONG, "keepalive ping timeout")
        if self._transport is not None:
            self._transport.abort()


def _deflate() -> list[ServerPerMessageDeflateFactory]:
    # Windows of 4 KiB and memLevel 5, as uvicorn used: compression stays
    # worthwhile on small JSON frames while each socket keeps less state.
    return [
        ServerPerMessageDeflateFactory(
            server_max_window_bits=12,
            client_max_window_bits=12,
            compress_settings={"memLevel": 5},
        )
    ]
