"""What each client frame does: the session protocol of ``docs/protocol.md``.

:func:`handle` takes one frame (a JSON object, or an array of events) and
applies it to the engine; every answer goes back through
:meth:`Connection.deliver`, errors included, so a bad frame never ends the
connection. Sequence numbers are checked in one place (:func:`_event`, and
:func:`_batch` for each element) by ``gateway.sequence``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from sessionpush.engine.calendar import TimeZoneError, check_zone
from sessionpush.engine.clock import VirtualClock
from sessionpush.engine.core import Engine, NoSessionError
from sessionpush.engine.session import Session
from sessionpush.gateway.auth import (
    ANONYMOUS_PREFIX,
    CLOSE_TOKEN_EXPIRED,
    CLOSE_UNAUTHORIZED,
    AuthError,
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

if TYPE_CHECKING:
    from sessionpush.gateway.connection import Connection

__all__ = ["handle", "refuse_flood"]

log = logging.getLogger("sessionpush.gateway")


def refuse_flood(conn: Connection, bucket: TokenBucket) -> None:
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


async def handle(conn: Connection, engine: Engine, guard: Guard, data: bytes) -> None:
    """Apply one client frame; a bad one is answered with an ``error``."""
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
            await _hello(conn, engine, guard, frame)
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
    conn.deliver(
        {"type": "error", "code": "unauthorized", "message": message, "seq": None}
    )
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


async def _hello(conn: Connection, engine: Engine, guard: Guard, hello: Hello) -> None:
    if engine.session_of(conn) is not None or conn.said_bye:
        raise ProtocolError("duplicate_hello", "this connection already has a session")
    try:
        user = _authenticate(conn, guard, conn.origin, hello)
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
                    "seq": None,
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
