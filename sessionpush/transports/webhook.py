"""Webhooks: a rule's decision POSTed as JSON to a URL the operator named.

A rule says ``webhook "NAME"``; the URL and the secret of ``NAME`` come
from the delivery config (``[webhooks.NAME]``) and nowhere else, so no
rule, event or user can point a request at an address of their choosing.

Every request is signed: ``Sessionpush-Timestamp`` is the Unix time of
the attempt and ``Sessionpush-Signature`` is ``v1=`` and the hex
HMAC-SHA256 (RFC 2104) of ``"{timestamp}." + body`` under the webhook's
secret. A receiver recomputes it over the raw body, compares in constant
time and refuses a timestamp older than a few minutes, so a captured
request cannot be replayed later. Retries carry a new timestamp and
signature but the same ``Sessionpush-Message`` id, by which a receiver
drops a duplicate.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec

from sessionpush.engine.clock import iso
from sessionpush.store.base import Subscription
from sessionpush.transports.base import (
    DeliveryResult,
    OutboundMessage,
    Verdict,
    webhook_target,
)
from sessionpush.transports.retry import parse_retry_after

__all__ = [
    "MESSAGE_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "Webhook",
    "WebhookTransport",
    "sign",
    "verify",
    "webhook_target",
]

SIGNATURE_HEADER = "Sessionpush-Signature"
TIMESTAMP_HEADER = "Sessionpush-Timestamp"
MESSAGE_HEADER = "Sessionpush-Message"
_encoder = msgspec.json.Encoder()


@dataclass(frozen=True)
class Webhook:
    """A named webhook from the config: where to POST and the secret."""

    name: str
    url: str
    secret: bytes


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The signature header value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"v1={mac.hexdigest()}"


def verify(
    secret: bytes,
    timestamp: str,
    signature: str,
    body: bytes,
    now: float,
    tolerance: float = 300.0,
) -> bool:
    """What a receiver checks: a fresh timestamp and a matching signature."""
    if not timestamp.isdigit() or abs(now - int(timestamp)) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, int(timestamp), body), signature)


class WebhookTransport:
    """POSTs decisions to the configured webhooks.

    Args:
        hooks: The webhooks by name.
        client: The HTTP client (no redirects, a timeout).
        clock: Wall time for the signature timestamp.
    """

    name = "webhook"

    def __init__(
        self,
        hooks: Mapping[str, Webhook],
        client: httpx.AsyncClient,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.hooks = dict(hooks)
        self._client = client
        self._clock = clock

    def body(self, message: OutboundMessage) -> bytes:
        """The decision as JSON, the same bytes on every retry."""
        decision: dict[str, Any] = {
            "type": "decision",
            "decision": "sent",
            "id": message.id,
            "app": message.app,
            "user": message.user,
            "session": message.session,
            "rule": message.rule,
            "at": iso(message.at),
            "message": {
                key: value
                for key, value in (
                    ("title", message.title),
                    ("body", message.body),
                    ("link", message.link),
                    ("image", message.image),
                    ("urgency", message.urgency),
                    ("collapse", message.collapse),
                    ("data", message.data),
                )
                if value is not None
            },
        }
        return _encoder.encode(decision)

    async def send(
        self, message: OutboundMessage, subscription: Subscription | None
    ) -> DeliveryResult:
        name = "" if subscription is None else str(subscription.data.get("webhook"))
        hook = self.hooks.get(name)
        if hook is None:
            known = ", ".join(sorted(self.hooks)) or "none"
            return DeliveryResult(
                ok=False,
                detail=f"no webhook named {name!r} in the delivery config "
                f"(configured: {known}); add [webhooks.{name or 'NAME'}]",
            )
        body = self.body(message)
        timestamp = int(self._clock())
        headers = {
            "content-type": "application/json",
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(hook.secret, timestamp, body),
            MESSAGE_HEADER: message.id,
        }
        try:
            response = await self._client.post(hook.url, content=body, headers=headers)
        except httpx.TimeoutException as exc:
            return DeliveryResult(
                ok=False,
                detail=f"no answer from webhook {name}: {type(exc).__name__}",
                verdict=Verdict.RETRY,
            )
        except httpx.TransportError as exc:
            return DeliveryResult(
                ok=False,
                detail=f"webhook {name} unreachable: {type(exc).__name__}: {exc}",
                verdict=Verdict.RETRY,
            )
        status = response.status_code
        if 200 <= status < 300:
            return DeliveryResult(ok=True, detail=f"webhook {name} answered {status}")
        detail = f"webhook {name} answered {status}: {response.text[:200]}"
        if status == 429 or status >= 500:
            retry_after = parse_retry_after(
                response.headers.get("retry-after"), self._clock()
            )
            return DeliveryResult(
                ok=False,
                detail=detail.rstrip(": "),
                verdict=Verdict.RETRY,
                retry_after=retry_after,
            )
        if 300 <= status < 400:
            detail = f"webhook {name} answered {status} (a redirect, never followed)"
        return DeliveryResult(ok=False, detail=detail.rstrip(": "))

    async def close(self) -> None:
        await self._client.aclose()
