"""The asyncio client: one session over one websocket, kept alive.

:class:`Client` does what the web SDK does, for server-side apps, tests,
``replay --via`` and the benchmarks: it numbers events, sends them in
batches (as soon as ``batch_size`` wait, else ``batch_delay`` after the
first), keeps them while offline (bounded, oldest dropped and counted),
reconnects with jittered exponential backoff, resumes its session inside
the gateway's grace period and sends again what was not acknowledged,
without doubles (``client.buffer``).

::

    async with Client("ws://127.0.0.1:8000/v1/session", "alice") as client:
        client.track("view", {"price": 899.0})
        await client.flush()          # sent and acknowledged
        message = client.messages.get_nowait()   # an in-app message, if any
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Origin

from sessionpush.client.backoff import FINAL_CLOSES, NEW_SESSION_CLOSES, Backoff, Pacer
from sessionpush.client.buffer import SendBuffer
from sessionpush.errors import SessionpushError

__all__ = ["Client", "ClientClosed", "ClientState"]

log = logging.getLogger("sessionpush.client")

TokenSource = str | Callable[[], Awaitable[str]]
_encode = msgspec.json.Encoder().encode


class ClientClosed(SessionpushError):
    """The client cannot send any more: it was closed, its session ended
    with ``end``, or the gateway refused it for good (the message says
    which, with the close code)."""


class ClientState(enum.Enum):
    NEW = "new"  # start() not called yet
    CONNECTING = "connecting"  # opening a socket, or waiting to retry
    OPEN = "open"  # welcomed: frames flow
    IDLE = "idle"  # the session ended (idle, or elsewhere); reconnect on demand
    CLOSED = "closed"  # final


def _now_millis() -> float:
    return time.time() * 1000.0


class Client:
    """A session with a gateway; see the module docstring.

    Args:
        url: The gateway's websocket URL, ``ws(s)://HOST/v1/session``.
        user: The user id (or the anonymous id, with ``key``).
        app: The app name.
        token: A connection token, or an async function returning a fresh
            one; called for each ``hello`` and when the token expires.
        key: The app's public key (anonymous web mode) instead of a token.
        device: The ``device`` of ``hello`` (platform, timezone, ...).
        session: A session id to resume (or to name the new session).
        origin: The ``Origin`` header to send, as a browser would.
    """

    def __init__(
        self,
        url: str,
        user: str,
        *,
        app: str = "default",
        token: TokenSource | None = None,
        key: str | None = None,
        device: dict[str, Any] | None = None,
        session: str | None = None,
        origin: str | None = None,
        batch_size: int = 20,
        batch_delay: float = 0.05,
        buffer_limit: int = 1000,
        backoff: Backoff | None = None,
        pacer: Pacer | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        self.url = url
        self.user = user
        self.app = app
        self.device = dict(device or {"platform": "server"})
        self.session = session
        self.resumed = False
        self.state = ClientState.NEW
        #: In-app messages (``message`` frames), in the order they came.
        self.messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        #: Unsolicited errors (``token_expired``), for the app to look at.
        self.errors: list[dict[str, Any]] = []
        #: Close codes of the sockets this client lost, oldest first.
        self.closes: list[int | None] = []
        self.buffer = SendBuffer(buffer_limit)
        self._token = token
        self._key = key
        self._origin = origin
        self._batch_size = batch_size
        self._batch_delay = batch_delay
        self._backoff = backoff or Backoff()
        self._pacer = pacer or Pacer()
        self._ws: ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._work = asyncio.Event()  # something was queued
        self._now = asyncio.Event()  # send without waiting for a batch
        self._welcomed = asyncio.Event()
        self._waiters: list[asyncio.Future[None]] = []
        self._hello_ts: float | None = None
        self._failure: str | None = None
        self._ending = False

    # -- the app's side ------------------------------------------------------

    @property
    def dropped(self) -> int:
        """Events dropped because the offline buffer was full."""
        return self.buffer.dropped

    @property
    def refused(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """Frames the gateway refused, each with its ``error`` frame."""
        return self.buffer.refused

    async def start(self, *, ts: float | None = None, wait: bool = True) -> None:
        """Connect; with ``wait``, until welcomed (or refused for good).

        ``ts`` goes into the first ``hello`` (epoch milliseconds; a
        ``--clock playback`` gateway sets its clock by it). Events queued
        before the welcome are sent after it.
        """
        if self.state is not ClientState.NEW:
            raise RuntimeError("start() was called already")
        self._hello_ts = ts
        self.state = ClientState.CONNECTING
        self._task = asyncio.create_task(self._run(), name=f"sessionpush {self.user}")
        if wait:
            await self._wait_welcome()

    def track(
        self, name: str, props: dict[str, Any] | None = None, *, ts: float | None = None
    ) -> int:
        """Queue an event; returns its sequence number."""
        frame = {"type": "event", "name": name, "props": props or {}}
        return self._queue_numbered(frame, ts)

    def screen(
        self, name: str, props: dict[str, Any] | None = None, *, ts: float | None = None
    ) -> int:
        """Queue a ``screen`` (the event ``screen`` with ``name`` in props)."""
        frame = {"type": "screen", "name": name, "props": props or {}}
        return self._queue_numbered(frame, ts)

    def identify(
        self,
        user: str,
        traits: dict[str, Any] | None = None,
        *,
        token: str | None = None,
    ) -> None:
        """The session's user becomes ``user``; ``traits`` go to ``user.*``.

        Outside development mode another user needs ``token``, a connection
        token for that user; it also becomes the token of later hellos.
        """
        frame: dict[str, Any] = {"type": "identify", "user": user}
        if traits:
            frame["traits"] = traits
        if token is not None:
            frame["token"] = token
            self._token = token
        self.user = user
        self._queue(frame)

    def consent(self, granted: bool) -> None:
        self._queue({"type": "consent", "granted": granted})

    def subscribe(self, registration: dict[str, Any]) -> None:
        """Register this device for pushes: ``{"channel": "webpush",
        "subscription": {...}}`` or ``{"channel": "apns", "token": ...}``."""
        self._queue({"type": "subscribe", **registration})

    async def flush(self) -> None:
        """Send what is queued now and wait until the gateway answered all."""
        self._check_open()
        if self.buffer.settled:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._now.set()
        self._work.set()
        await waiter

    async def close(self, *, ts: float | None = None) -> None:
        """Flush, say ``bye`` and close: the gateway's grace period starts,
        so the session may still be resumed by another client."""
        if self.state is ClientState.CLOSED:
            return
        if self.state is ClientState.OPEN:
            self._queue({"type": "bye", **({} if ts is None else {"ts": ts})})
            with contextlib.suppress(ClientClosed):
                await self.flush()
        await self._stop("closed by the app")

    async def end(self, *, ts: float | None = None) -> None:
        """Flush, then end the session: post-session rules start now."""
        self._check_open()
        if self.state is ClientState.OPEN:
            await self.flush()
        ws = self._ws
        if ws is not None and self.state is ClientState.OPEN:
            self._ending = True
            frame = {"type": "end", **({} if ts is None else {"ts": ts})}
            with contextlib.suppress(ConnectionClosed):
                await ws.send(_encode(frame).decode())
                await asyncio.wait_for(ws.wait_closed(), 10.0)
        await self._stop("the session ended")

    async def __aenter__(self) -> Client:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- internals -----------------------------------------------------------

    def _check_open(self) -> None:
        if self.state is ClientState.CLOSED:
            raise ClientClosed(self._failure or "the client is closed")

    def _queue(self, frame: dict[str, Any]) -> None:
        self._check_open()
        self.buffer.add(frame)
        self._wake()

    def _queue_numbered(self, frame: dict[str, Any], ts: float | None) -> int:
        self._check_open()
        frame["ts"] = _now_millis() if ts is None else ts
        seq = self.buffer.add(frame, numbered=True)
        assert seq is not None  # numbered frames always get one
        self._wake()
        return seq

    def _wake(self) -> None:
        self._work.set()
        if len(self.buffer.unsent) >= self._batch_size:
            self._now.set()

    async def _wait_welcome(self) -> None:
        closed = asyncio.ensure_future(self._closed())
        welcomed = asyncio.ensure_future(self._welcomed.wait())
        try:
            await asyncio.wait({closed, welcomed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closed.cancel()
            welcomed.cancel()
        self._check_open()

    async def _closed(self) -> None:
        if self._task is not None:
            await asyncio.shield(self._task)

    async def _stop(self, why: str) -> None:
        self._fail(why)
        if self._ws is not None:
            await self._ws.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _fail(self, why: str) -> None:
        if self.state is not ClientState.CLOSED:
            self.state = ClientState.CLOSED
            self._failure = why
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(ClientClosed(why))
        self._waiters.clear()

    def _settle(self) -> None:
        if not self.buffer.settled:
            return
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    async def _run(self) -> None:
        """Connect, serve the socket until it closes, decide what next."""
        while self.state is not ClientState.CLOSED:
            if self.state is ClientState.IDLE:
                # A new session only when there is something to send.
                await self._work.wait()
                self.session = None
            self.state = ClientState.CONNECTING
            code = await self._session_once()
            if self.state is ClientState.CLOSED or self._ending:
                return
            self.closes.append(code)
            if code in FINAL_CLOSES:
                self._fail(f"the gateway closed the session for good ({code})")
                return
            if code in NEW_SESSION_CLOSES:
                log.info("session %s ended (%s)", self.session, code)
                self.state = ClientState.IDLE
                self._work.clear()
                if not self.buffer.settled:
                    self._work.set()
                continue
            delay = self._backoff.next_delay()
            log.info("connection lost (%s); reconnecting in %.2f s", code, delay)
            await asyncio.sleep(delay)

    async def _session_once(self) -> int | None:
        """One socket from connect to close; its close code (None: never
        opened, or closed without a code)."""
        try:
            ws = await connect(
                self.url,
                origin=None if self._origin is None else Origin(self._origin),
                open_timeout=10,
            )
        except InvalidStatus as exc:
            if exc.response.status_code == 403:
                return 4003  # the handshake's origin was refused
            return None
        except (OSError, InvalidHandshake, TimeoutError):
            return None
        self._ws = ws
        try:
            if not await self._hello(ws):
                return ws.close_code
            await self._serve(ws)
        except ConnectionClosed:
            pass
        finally:
            self._ws = None
            await ws.close()
        return ws.close_code

    async def _hello(self, ws: ClientConnection) -> bool:
        hello: dict[str, Any] = {
            "type": "hello",
            "user": self.user,
            "app": self.app,
            "device": self.device,
        }
        if self.session is not None:
            hello["session"] = self.session
        token = self._token
        if callable(token):
            token = await token()
        if token is not None:
            hello["token"] = token
        if self._key is not None:
            hello["key"] = self._key
        if self._hello_ts is not None:
            hello["ts"] = self._hello_ts
            self._hello_ts = None
        await ws.send(_encode(hello).decode())
        while True:
            frame = msgspec.json.decode(await ws.recv())
            if frame.get("type") == "welcome":
                break
            if frame.get("type") == "error":
                log.warning("hello refused: %s", frame.get("message"))
                self.errors.append(frame)
                if frame.get("code") == "invalid_frame":
                    self._fail(f"hello refused: {frame.get('message')}")
                    return False
        self.session = frame["session"]
        self.resumed = bool(frame["resumed"])
        self.buffer.resume(frame.get("seq"))
        self._backoff.reset()
        self.state = ClientState.OPEN
        self._welcomed.set()
        log.debug("welcomed to session %s (resumed: %s)", self.session, self.resumed)
        return True

    async def _serve(self, ws: ClientConnection) -> None:
        writer = asyncio.create_task(self._write(ws))
        try:
            async for data in ws:
                self._receive(msgspec.json.decode(data))
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await writer

    def _receive(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "message":
            self.messages.put_nowait(frame)
        elif kind == "error" and frame.get("code") == "token_expired":
            self.errors.append(frame)
            if callable(self._token):
                asyncio.get_running_loop().create_task(self._refresh(self._token))
        elif kind in ("ack", "error"):
            item = self.buffer.answered(frame)
            if kind == "error" and item is not None:
                log.warning("frame refused: %s", frame.get("message"))
            self._settle()

    async def _refresh(self, source: Callable[[], Awaitable[str]]) -> None:
        self._queue({"type": "refresh", "token": await source()})
        self._now.set()

    async def _write(self, ws: ClientConnection) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self.buffer.unsent:
                self._work.clear()
                await self._work.wait()
            if not self._now.is_set():
                # Gather a batch: up to batch_delay, or until it is full.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._now.wait(), self._batch_delay)
            self._now.clear()
            while self.buffer.unsent:
                allowed = self._pacer.allowance(loop.time())
                if allowed < 1:
                    await asyncio.sleep(self._pacer.wait())
                    continue
                frames = self.buffer.take(min(allowed, self._batch_size))
                self._pacer.spend(len(frames))
                for frame in frames:
                    await ws.send(_encode(frame).decode())
