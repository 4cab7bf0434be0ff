"""Registering a device: parse and check what a client sends, or refuse it.

A registration arrives over HTTP (``PUT /v1/users/{id}/devices/{device}``)
or as a ``subscribe`` frame; both decode into :class:`Registration` and go
through :func:`to_subscription`, so both refuse the same input with the
same words, and nothing is stored unless every part checks.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated, Literal

import msgspec
from cryptography.hazmat.primitives.asymmetric import ec

from sessionpush.errors import SessionpushError
from sessionpush.store.base import Subscription
from sessionpush.transports.endpoints import EndpointRefused, check_endpoint

__all__ = [
    "InvalidSubscription",
    "PushSubscriptionJSON",
    "Registration",
    "decode_b64url",
    "parse_auth",
    "parse_p256dh",
    "to_subscription",
]

_B64URL = re.compile(r"[A-Za-z0-9_-]*={0,2}")
_HEX = re.compile(r"[0-9a-fA-F]{64,200}")
_FCM_TOKEN = re.compile(r"[A-Za-z0-9_:.-]{20,4096}")


class InvalidSubscription(SessionpushError):
    """A registration that cannot be stored; ``path`` names the bad field."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{message} - at `{path}`")
        self.path = path


class PushSubscriptionKeys(msgspec.Struct, forbid_unknown_fields=True):
    p256dh: Annotated[str, msgspec.Meta(max_length=256)]
    auth: Annotated[str, msgspec.Meta(max_length=64)]


class PushSubscriptionJSON(msgspec.Struct, forbid_unknown_fields=True):
    """What the browser's ``PushSubscription.toJSON()`` returns."""

    endpoint: Annotated[str, msgspec.Meta(max_length=2048)]
    keys: PushSubscriptionKeys
    expirationTime: float | None = None


class Registration(msgspec.Struct, forbid_unknown_fields=True):
    """A device registration: a Web Push subscription or a provider token."""

    channel: Literal["webpush", "apns", "fcm"]
    subscription: PushSubscriptionJSON | None = None
    token: Annotated[str, msgspec.Meta(max_length=4096)] | None = None
    environment: Literal["production", "sandbox"] = "production"


def decode_b64url(text: str, path: str) -> bytes:
    """Decode unpadded or padded base64url (RFC 4648 section 5)."""
    if not _B64URL.fullmatch(text):
        raise InvalidSubscription(path, "expected base64url characters")
    try:
        return base64.urlsafe_b64decode(text.rstrip("=") + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise InvalidSubscription(path, f"not valid base64url: {exc}") from exc


def parse_p256dh(text: str, path: str = "$.subscription.keys.p256dh") -> bytes:
    """The client's ECDH public key: a 65-byte uncompressed P-256 point.

    RFC 8291 section 3.2: the key is in uncompressed form (X9.62, leading
    0x04); the point must lie on the curve, or the shared secret is
    attacker-chosen.
    """
    raw = decode_b64url(text, path)
    if len(raw) != 65 or raw[0] != 0x04:
        raise InvalidSubscription(
            path,
            f"expected a 65-byte uncompressed P-256 point (0x04 then X and Y), "
            f"got {len(raw)} bytes; send the browser's subscription unchanged",
        )
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
    except ValueError as exc:
        raise InvalidSubscription(path, "the point is not on the P-256 curve") from exc
    return raw


def parse_auth(text: str, path: str = "$.subscription.keys.auth") -> bytes:
    """The authentication secret: 16 bytes (RFC 8291 section 3.2)."""
    raw = decode_b64url(text, path)
    if len(raw) != 16:
        raise InvalidSubscription(
            path, f"expected a 16-byte authentication secret, got {len(raw)} bytes"
        )
    return raw


def to_subscription(
    registration: Registration,
    *,
    app: str,
    user: str,
    device_id: str,
    now: float,
    allow_loopback: bool = False,
) -> Subscription:
    """Check a registration and turn it into a storable subscription.

    Raises:
        InvalidSubscription: A part does not check; nothing may be stored.
    """
    channel = registration.channel
    if channel == "webpush":
        sub = registration.subscription
        if sub is None:
            raise InvalidSubscription(
                "$.subscription",
                "a webpush registration needs the browser's PushSubscription "
                "(its toJSON(): endpoint and keys)",
            )
        try:
            check_endpoint(sub.endpoint, allow_loopback=allow_loopback)
        except EndpointRefused as exc:
            raise InvalidSubscription("$.subscription.endpoint", str(exc)) from exc
        parse_p256dh(sub.keys.p256dh)
        parse_auth(sub.keys.auth)
        data = {
            "endpoint": sub.endpoint,
            "keys": {"p256dh": sub.keys.p256dh, "auth": sub.keys.auth},
        }
    else:
        token = registration.token
        if token is None:
            raise InvalidSubscription(
                "$.token", f"a {channel} registration needs a token"
            )
        if channel == "apns":
            if not _HEX.fullmatch(token):
                raise InvalidSubscription(
                    "$.token",
                    "an APNs device token is 64 or more hexadecimal characters; "
                    "send the deviceToken bytes hex-encoded",
                )
            data = {"token": token.lower(), "environment": registration.environment}
        else:
            if not _FCM_TOKEN.fullmatch(token):
                raise InvalidSubscription(
                    "$.token",
                    "an FCM registration token is 20 or more characters of "
                    "letters, digits and '_:.-'",
                )
            data = {"token": token}
    return Subscription(
        app=app,
        user=user,
        device_id=device_id,
        channel=channel,
        data=data,
        created_at=now,
    )
