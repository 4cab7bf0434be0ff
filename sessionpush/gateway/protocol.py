"""The wire protocol between SDKs and the gateway: one JSON object a frame.

Client frames are decoded straight into the structs below with msgspec,
which rejects unknown fields and wrong types and names the path of the
problem (``Expected `str`, got `int` - at `$.name```). Every frame is a JSON
object whose ``type`` says which struct it is, or a JSON array of ``event``
objects: a batch, acknowledged once. ``docs/protocol.md`` is the
reference for SDK authors; keep the two in step.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from sessionpush.errors import SessionpushError
from sessionpush.transports.subscriptions import PushSubscriptionJSON

__all__ = [
    "MAX_BATCH",
    "Bye",
    "ClientFrame",
    "Consent",
    "DeviceInfo",
    "End",
    "Event",
    "Hello",
    "Identify",
    "ProtocolError",
    "Refresh",
    "Screen",
    "Subscribe",
    "decode_batch",
    "decode_frame",
    "encode_frame",
    "is_batch",
]

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
# Ids take no control characters: they end up in keys joined by \x1f (cap
# counters, idempotency keys) and in log lines.
Id = Annotated[
    str, msgspec.Meta(min_length=1, max_length=256, pattern="^[^\x00-\x1f\x7f]+$")
]
Token = Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]
Short = Annotated[str, msgspec.Meta(max_length=64)]
# Client timestamps are epoch milliseconds, as JavaScript's Date.now().
Millis = Annotated[float, msgspec.Meta(ge=0, le=1e14)]
# Sequence numbers stay exact in a JavaScript number (2**53 - 1).
Seq = Annotated[int, msgspec.Meta(ge=0, le=2**53 - 1)]


class ProtocolError(SessionpushError):
    """A client frame that cannot be used; ``code`` goes into the error frame."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _Frame(msgspec.Struct, tag_field="type", forbid_unknown_fields=True):
    pass


class DeviceInfo(msgspec.Struct, forbid_unknown_fields=True):
    id: Id | None = None
    platform: Short = "web"
    timezone: Short = "UTC"
    lang: Short | None = None
    app_version: Short | None = None


class Hello(_Frame, tag="hello"):
    """Opens or resumes a session; must be the first frame."""

    user: Id
    app: Id = "default"
    device: DeviceInfo = msgspec.field(default_factory=DeviceInfo)
    session: Id | None = None
    #: A connection token signed by the app's backend (gateway.auth).
    token: Token | None = None
    #: The app's public key, for anonymous web mode instead of a token.
    key: Token | None = None
    ts: Millis | None = None

    def __repr__(self) -> str:
        # The token is a credential: keep it out of reprs, logs and tracebacks.
        return f"Hello(user={self.user!r}, app={self.app!r}, session={self.session!r})"


class Event(_Frame, tag="event"):
    """Something the user did.

    ``seq`` numbers the events of one session; the gateway applies each
    number at most once (``gateway.sequence``), so that a client may send
    again whatever was not acknowledged before a reconnect.
    """

    name: Name
    props: dict[str, Any] = msgspec.field(default_factory=dict)
    ts: Millis | None = None
    seq: Seq | None = None


class Screen(_Frame, tag="screen"):
    """The user opened a screen or page: the event ``screen`` whose props
    carry ``name``, numbered in the same sequence as events."""

    name: Name
    props: dict[str, Any] = msgspec.field(default_factory=dict)
    ts: Millis | None = None
    seq: Seq | None = None

    def as_event(self) -> Event:
        return Event(
            name="screen",
            props={**self.props, "name": self.name},
            ts=self.ts,
            seq=self.seq,
        )


class Identify(_Frame, tag="identify"):
    """The session's user becomes ``user`` (an anonymous visitor signed in),
    and ``traits`` are merged into the profile that rules read as ``user.*``.

    Outside development mode, becoming another user takes a connection
    token for that user, exactly as ``hello`` would.
    """

    user: Id
    traits: dict[str, Any] = msgspec.field(default_factory=dict)
    token: Token | None = None
    ts: Millis | None = None

    def __repr__(self) -> str:
        return f"Identify(user={self.user!r})"


class End(_Frame, tag="end"):
    """The user's visit is over: end the session now."""

    ts: Millis | None = None


class Bye(_Frame, tag="bye"):
    """The client is about to close this socket and may resume later.

    The server starts the grace period at once and acknowledges, so the
    close is ordered with the frames around it.
    """

    ts: Millis | None = None


class Consent(_Frame, tag="consent"):
    """The user granted or withdrew consent to messages."""

    granted: bool
    ts: Millis | None = None


class Refresh(_Frame, tag="refresh"):
    """A new connection token before (or soon after) the current one expires."""

    token: Token
    ts: Millis | None = None

    def __repr__(self) -> str:
        return "Refresh(token=...)"


class Subscribe(_Frame, tag="subscribe"):
    """Register this device for pushes: a Web Push subscription (the
    browser's ``PushSubscription.toJSON()``) or an APNs or FCM token."""

    channel: Literal["webpush", "apns", "fcm"]
    subscription: PushSubscriptionJSON | None = None
    token: Annotated[str, msgspec.Meta(max_length=4096)] | None = None
    environment: Literal["production", "sandbox"] = "production"
    ts: Millis | None = None

    def __repr__(self) -> str:
        # Subscription keys and device tokens are credentials.
        return f"Subscribe(channel={self.channel!r})"


ClientFrame = (
    Hello | Event | Screen | Identify | End | Bye | Consent | Subscribe | Refresh
)

#: The most events one batch frame may hold.
MAX_BATCH = 1000

_decoder = msgspec.json.Decoder(ClientFrame)
# A batch is all or nothing: one bad event refuses the whole frame, so that a
# client resending it after a fix never applies an event twice.
_batch_decoder = msgspec.json.Decoder(
    Annotated[list[Event], msgspec.Meta(min_length=1, max_length=MAX_BATCH)]
)
_encoder = msgspec.json.Encoder()


def decode_frame(data: str | bytes) -> ClientFrame:
    """Decode one client frame, or raise :class:`ProtocolError` saying why."""
    try:
        return _decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise ProtocolError("invalid_frame", str(exc)) from exc
    except msgspec.DecodeError as exc:
        raise ProtocolError("malformed_json", str(exc)) from exc
    except RecursionError:
        # msgspec recurses once per nesting level; a frame of 64 KiB can
        # nest 32,000 deep. The frame is refused, the connection stays.
        raise ProtocolError(
            "too_large", "the frame nests too deeply: flatten it - at `$`"
        ) from None


def is_batch(data: str | bytes) -> bool:
    """A frame that is a JSON array is a batch of events."""
    head = data[:1]
    if head.isspace():
        # Rare: only then pay for a stripped copy of the frame.
        head = data.lstrip()[:1]
    return head == "[" or head == b"["


def decode_batch(data: str | bytes) -> list[Event]:
    """Decode a batch frame (a JSON array of ``event`` frames), or raise
    :class:`ProtocolError` saying why; the path names the element
    (``$[3].name``)."""
    try:
        return _batch_decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise ProtocolError("invalid_frame", str(exc)) from exc
    except msgspec.DecodeError as exc:
        raise ProtocolError("malformed_json", str(exc)) from exc


def encode_frame(frame: dict[str, Any]) -> bytes:
    return _encoder.encode(frame)
