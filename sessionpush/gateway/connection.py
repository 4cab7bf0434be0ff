"""One websocket connection: reads client frames, writes server frames.

Reading and writing are separate: the reader handles frames in order and
answers each with an ``ack`` or an ``error``; the engine may hand a
``message`` to any connection at any time (an in-app message fired by a
timer), so everything outbound goes through a bounded queue drained by one
writer task. A client that stops reading fills its queue and is closed,
instead of growing the server's memory.

Before a session exists the connection passes, in order: the ``Origin``
check at the handshake (403), the per-address count (4009), ``hello`` within
the hello timeout (4010), then authentication of ``hello`` (4003) and the
per-user count (4009). Every close code is listed in ``docs/protocol.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from sessionpush.engine.calendar import TimeZoneError, check_zone
from sessionpush.engine.clock import VirtualClock
from sessionpush.engine.core import Engine, NoSessionError
from sessionpush.engine.session import Session
from sessionpush.gateway.auth import (
    ANONYMOUS_PREFIX,
    CLOSE_TOKEN_EXPIRED,
    CLOSE_UNAUTHORIZED,
    AuthError,
    handshake_origin_allowed,
    hello_origin_allowed,
    public_key_matches,
    verify_token,
)
from sessionpush.gateway.guard import Guard
from sessionpush.gateway.limits import (
    CLOSE_FLOOD,
    CLOSE_TOO_MANY,
    TokenBucket,
    check_props,
)
from sessionpush.gateway.protocol import (
    Bye,
    Consent,
    End,
    Event,
    Hello,
    Identify,
    ProtocolError,
    Refresh,
    Screen,
    Subscribe,
    decode_batch,
    decode_frame,
    encode_frame,
    is_batch,
)
from sessionpush.gateway.push_api import record_engagement
from sessionpush.gateway.sequence import ack_frame, admit, last_applied
from sessionpush.store.base import Device
from sessionpush.transports.subscriptions import (
    InvalidSubscription,
    Registration,
    to_subscription,
)

__all__ = ["CLOSE_NO_HELLO", "CLOSE_SLOW_CONSUMER", "Connection", "serve_connection"]

log = logging.getLogger("sessionpush.gateway")

#: Close code when a client does not read its frames fast enough.
CLOSE_SLOW_CONSUMER = 4008
#: Close code when no ``hello`` came within the hello timeout.
CLOSE_NO_HELLO = 4010
HEARTBEAT_SECONDS = 30


class Connection:
    """The engine's :class:`~sessionpush.engine.core.Peer` for a websocket."""

    def __init__(
        self, websocket: WebSocket, queue_size: int = 256, close_timeout: float = 5.0
    ) -> None:
        self.websocket = websocket
        self._outbound: asyncio.Queue[str | tuple[int, str]] = asyncio.Queue(queue_size)
        self.closing = False
        self.said_bye = False
        #: Testing only: accept Web Push endpoints on loopback.
        self.allow_loopback = False
        #: The (app, user) counted against the per-user limit, once known.
        self.counted: tuple[str, str] | None = None
        #: Epoch seconds when the connection token runs out (None: never).
        self.expires: float | None = None
        self._close_timeout = close_timeout
        self._task: asyncio.Task[Any] | None = None
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self.aborted = False

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
                break
            except asyncio.QueueFull:
                self._outbound.get_nowait()
        # A client that reads nothing leaves the writer waiting on a full
        # socket buffer, where no close frame can pass: give it a moment,
        # then stop serving the socket.
        self.later("abort", self._close_timeout, self._abort)

    def later(self, name: str, delay: float, action: Any) -> None:
        """Run ``action`` after ``delay`` seconds, replacing any ``name``."""
        self.cancel(name)
        self._timers[name] = asyncio.get_running_loop().call_later(delay, action)

    def cancel(self, name: str) -> None:
        handle = self._timers.pop(name, None)
        if handle is not None:
            handle.cancel()

    def _abort(self) -> None:
        if self._task is not None and not self._task.done():
            self.aborted = True
            self._task.cancel()

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
    websocket: WebSocket, engine: Engine, guard: Guard | None = None
) -> None:
    """Run one client connection to its end."""
    guard = guard or _open_guard()
    limits = guard.limits
    origin = websocket.headers.get("origin")
    if not handshake_origin_allowed(
        guard.config, origin, websocket.query_params.get("app")
    ):
        # Closing before accepting answers the handshake with HTTP 403, so
        # that no session, no counter and no task exists for it.
        log.info("refused a websocket handshake from origin %.200r", origin)
        await websocket.close(CLOSE_UNAUTHORIZED)
        return
    await websocket.accept()
    address = websocket.client.host if websocket.client is not None else ""
    if guard.limited and not guard.per_ip.acquire(address):
        with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError):
            await websocket.close(
                CLOSE_TOO_MANY, "too many connections from this address"
            )
        return

    conn = Connection(websocket, limits.outbound_queue, limits.close_timeout)
    conn.allow_loopback = guard.allow_loopback()
    conn._task = asyncio.current_task()
    guard.connections.add(conn)
    bucket = (
        TokenBucket(limits.frames_per_second, limits.frame_burst)
        if guard.limited
        else None
    )
    conn.later(
        "hello",
        limits.hello_timeout,
        lambda: conn.close(CLOSE_NO_HELLO, "no hello in time"),
    )
    writer = asyncio.create_task(conn.write_loop())
    try:
        while not conn.closing:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            if bucket is not None and not bucket.take():
                _refuse_flood(conn, bucket)
                continue
            data = message.get("text")
            if data is None:
                data = message.get("bytes") or b""
            try:
                await _handle(conn, engine, guard, origin, data)
            except Exception:
                # Our bug, not the client's: keep the connection and say so.
                log.exception("frame handling failed")
                conn.deliver(
                    {"type": "error", "code": "internal", "message": "internal error"}
                )
    except WebSocketDisconnect:
        pass
    except asyncio.CancelledError:
        if not conn.aborted:
            raise
        # Our own abort of a socket that would not close (see close()).
        if conn._task is not None:
            conn._task.uncancel()
    finally:
        for name in list(conn._timers):
            conn.cancel(name)
        guard.connections.discard(conn)
        if guard.limited:
            guard.per_ip.release(address)
        if conn.counted is not None:
            guard.per_user.release(conn.counted)
        if not conn.said_bye:
            await engine.detach(conn)
        if not conn.closing or conn.aborted:
            conn.closing = True
            writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer


def _open_guard() -> Guard:
    from sessionpush.gateway.apps import dev_config

    return Guard(dev_config())


def _refuse_flood(conn: Connection, bucket: TokenBucket) -> None:
    if bucket.refused > bucket.burst:
        conn.close(CLOSE_FLOOD, "too many frames: slow down")
        return
    conn.deliver(
        {
            "type": "error",
            "code": "rate_limited",
            "message": f"more than {bucket.rate:g} frames a second: this frame "
            "was dropped; slow down",
            "seq": None,
        }
    )


async def _handle(
    conn: Connection,
    engine: Engine,
    guard: Guard,
    origin: str | None,
    data: str | bytes,
) -> None:
    seq: int | None = None
    try:
        if is_batch(data):
            await _batch(conn, engine, guard, data)
            return
        frame = decode_frame(data)
        if isinstance(engine.clock, VirtualClock) and frame.ts is not None:
            # Playback: the recorded time drives the clock, and whatever
            # falls due before this frame fires first.
            await engine.advance(frame.ts / 1000.0)
        if isinstance(frame, Screen):
            frame = frame.as_event()
        if isinstance(frame, Event):
            seq = frame.seq
            await _event(conn, engine, guard, frame)
        elif isinstance(frame, Identify):
            await _identify(conn, engine, guard, frame)
        elif isinstance(frame, Hello):
            await _hello(conn, engine, guard, origin, frame)
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
        elif isinstance(frame, Refresh):
            _refresh(conn, engine, guard, frame)
    except ProtocolError as exc:
        conn.deliver(
            {"type": "error", "code": exc.code, "message": exc.message, "seq": seq}
        )
    except NoSessionError as exc:
        conn.deliver(
            {"type": "error", "code": "no_session", "message": str(exc), "seq": seq}
        )


async def _event(conn: Connection, engine: Engine, guard: Guard, frame: Event) -> None:
    """Apply one event, unless its ``seq`` was applied before; then ack.

    The one place events enter the engine from a socket, and so the one
    place sequence numbers are checked (``gateway.sequence``).
    """
    check_props(frame.props, guard.limits)
    session = engine.session_of(conn)
    if session is None:
        raise NoSessionError("send hello before events")
    if admit(session, frame.seq):
        if frame.name == "push_opened":
            await _opened(conn, engine, frame.props)
        await engine.event(conn, frame.name, frame.props)
    conn.deliver(ack_frame(session, frame.seq))


async def _identify(
    conn: Connection, engine: Engine, guard: Guard, frame: Identify
) -> None:
    session = engine.session_of(conn)
    if session is None:
        raise NoSessionError("send hello before identify")
    check_props(frame.traits, guard.limits)
    user = frame.user
    if ANONYMOUS_PREFIX + user == session.user:
        # An anonymous visitor naming itself as in hello: traits only.
        user = session.user
    if not guard.config.dev_mode and user != session.user:
        if frame.token is None:
            raise ProtocolError(
                "unauthorized",
                "identify as another user needs a connection token for that "
                "user in its token field",
            )
        try:
            expires = verify_token(
                frame.token,
                guard.config.apps[session.app],
                user,
                guard.wall(),
                guard.limits.token_max_lifetime,
            )
        except AuthError as exc:
            raise ProtocolError("unauthorized", str(exc)) from None
        conn.expires = expires
        _watch_expiry(conn, guard)
    if guard.limited and conn.counted is not None and user != session.user:
        # The per-user count follows the socket to its new user.
        if not guard.per_user.acquire((session.app, user)):
            raise ProtocolError(
                "too_many_connections",
                f"user {user!r} has {guard.per_user.limit} open connections "
                "already: close one first",
            )
        guard.per_user.release(conn.counted)
        conn.counted = (session.app, user)
    await engine.identify(conn, user, frame.traits)
    conn.deliver({"type": "ack", "seq": None})


async def _batch(
    conn: Connection, engine: Engine, guard: Guard, data: str | bytes
) -> None:
    """A JSON array of events: applied in order, each through the same
    checks as a single event (props limits, sequence numbers), answered by
    one ``ack`` carrying the highest ``seq`` applied (docs/protocol.md)."""
    events = decode_batch(data)
    session = engine.session_of(conn)
    if session is None:
        raise NoSessionError("send hello before events")
    for frame in events:
        check_props(frame.props, guard.limits)
    virtual = isinstance(engine.clock, VirtualClock)
    top: int | None = None
    for frame in events:
        if virtual and frame.ts is not None:
            await engine.advance(frame.ts / 1000.0)
        if admit(session, frame.seq):
            if frame.name == "push_opened":
                await _opened(conn, engine, frame.props)
            await engine.event(conn, frame.name, frame.props)
        if frame.seq is not None and (top is None or frame.seq > top):
            top = frame.seq
    conn.deliver(ack_frame(session, top))


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


def _unauthorized(conn: Connection, message: str) -> None:
    conn.deliver({"type": "error", "code": "unauthorized", "message": message})
    conn.close(CLOSE_UNAUTHORIZED, "unauthorized")


def _authenticate(
    conn: Connection, guard: Guard, origin: str | None, hello: Hello
) -> str:
    """The user id the session runs as; raises AuthError if none may."""
    config = guard.config
    if config.dev_mode:
        return hello.user
    app = config.apps.get(hello.app)
    if app is None:
        raise AuthError(f"no app {hello.app!r} on this gateway: check hello's app")
    if not hello_origin_allowed(config, app, origin):
        raise AuthError(f"this page's origin may not connect to app {app.name!r}")
    if hello.token is not None:
        conn.expires = verify_token(
            hello.token,
            app,
            hello.user,
            guard.wall(),
            guard.limits.token_max_lifetime,
        )
        return hello.user
    if hello.key is not None:
        if origin is None or not public_key_matches(app, hello.key):
            raise AuthError(
                f"anonymous mode needs app {app.name!r}'s public key, sent from a "
                "page on its allowed_origins"
            )
        return ANONYMOUS_PREFIX + hello.user
    raise AuthError("hello needs a token (or, from a web page, the app's key)")


def _watch_expiry(conn: Connection, guard: Guard) -> None:
    """At ``exp`` say so; ``token_refresh_grace`` later, close (4004)."""
    if conn.expires is None:
        return
    grace = guard.limits.token_refresh_grace

    def expired() -> None:
        conn.deliver(
            {
                "type": "error",
                "code": "token_expired",
                "message": f"the connection token expired: send a refresh frame "
                f"with a new one within {grace:g} s",
                "seq": None,
            }
        )
        conn.later(
            "grace",
            grace,
            lambda: conn.close(CLOSE_TOKEN_EXPIRED, "token expired"),
        )

    conn.cancel("grace")
    conn.later("expiry", max(0.0, conn.expires - guard.wall()), expired)


def _refresh(conn: Connection, engine: Engine, guard: Guard, frame: Refresh) -> None:
    session = engine.session_of(conn)
    if session is None:
        raise NoSessionError("send hello before refresh")
    if guard.config.dev_mode or conn.expires is None:
        conn.deliver({"type": "ack", "seq": None})
        return
    app = guard.config.apps[session.app]
    try:
        conn.expires = verify_token(
            frame.token,
            app,
            session.user,
            guard.wall(),
            guard.limits.token_max_lifetime,
        )
    except AuthError as exc:
        # The current token still holds until it expires: refuse the frame,
        # keep the connection.
        raise ProtocolError("unauthorized", str(exc)) from None
    _watch_expiry(conn, guard)
    conn.deliver({"type": "ack", "seq": None})


async def _hello(
    conn: Connection, engine: Engine, guard: Guard, origin: str | None, hello: Hello
) -> None:
    if engine.session_of(conn) is not None or conn.said_bye:
        raise ProtocolError("duplicate_hello", "this connection already has a session")
    try:
        user = _authenticate(conn, guard, origin, hello)
    except AuthError as exc:
        log.info("refused hello for app %.100r: %s", hello.app, exc)
        _unauthorized(conn, str(exc))
        return
    try:
        # The engine reads local days, quiet hours and `at` times from this
        # zone; an offset would be wrong for half the year, so refuse it here.
        check_zone(hello.device.timezone)
    except TimeZoneError as exc:
        raise ProtocolError("invalid_frame", f"{exc} - at `$.device.timezone`") from exc
    if guard.limited:
        if not guard.per_user.acquire((hello.app, user)):
            conn.deliver(
                {
                    "type": "error",
                    "code": "too_many_connections",
                    "message": f"this user has {guard.per_user.limit} open "
                    "connections already: close one first",
                }
            )
            conn.close(CLOSE_TOO_MANY, "too many connections for this user")
            return
        conn.counted = (hello.app, user)
    conn.cancel("hello")
    device = Device(
        app=hello.app,
        user=user,
        device_id=hello.device.id or f"{user}:{hello.device.platform}",
        platform=hello.device.platform,
        timezone=hello.device.timezone,
        lang=hello.device.lang,
        app_version=hello.device.app_version,
        last_seen=engine.clock.now(),
    )

    def welcome(session: Session, resumed: bool) -> None:
        # Sent by the engine before any rule of a new session can answer,
        # so a client always hears `welcome` first.
        conn.deliver(
            {
                "type": "welcome",
                "session": session.id,
                "resumed": resumed,
                "heartbeat": _seconds(guard.limits.ping_interval),
                "seq": last_applied(session),
            }
        )

    await engine.open(conn, device, hello.session, welcome)
    _watch_expiry(conn, guard)


def _seconds(value: float) -> float | int:
    # 30, not 30.0, as the protocol has always said.
    return int(value) if value.is_integer() else value
