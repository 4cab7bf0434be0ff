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
    "ProtocolError",
    "Subscribe",
    "decode_batch",
    "decode_frame",
    "encode_frame",
    "is_batch",
]

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
Short = Annotated[str, msgspec.Meta(max_length=64)]
# Client timestamps are epoch milliseconds, as JavaScript's Date.now().
Millis = Annotated[float, msgspec.Meta(ge=0, le=1e14)]


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
    ts: Millis | None = None


class Event(_Frame, tag="event"):
    """Something the user did."""

    name: Name
    props: dict[str, Any] = msgspec.field(default_factory=dict)
    ts: Millis | None = None
    seq: Annotated[int, msgspec.Meta(ge=0)] | None = None


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


class Subscribe(_Frame, tag="subscribe"):
    """Register this device for pushes: a Web Push subscription (the
    browser's ``PushSubscription.toJSON()``) or an APNs or FCM token."""

    channel: Literal["webpush", "apns", "fcm"]
    subscription: PushSubscriptionJSON | None = None
    token: Annotated[str, msgspec.Meta(max_length=4096)] | None = None
    environment: Literal["production", "sandbox"] = "production"
    ts: Millis | None = None


ClientFrame = Hello | Event | End | Bye | Consent | Subscribe

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


def encode_frame(frame: dict[str, Any]) -> str:
    return _encoder.encode(frame).decode()
