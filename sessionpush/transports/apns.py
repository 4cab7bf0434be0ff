"""APNs: Apple's provider API over HTTP/2 with token authentication.

Requests go through one :class:`httpx.AsyncClient` with HTTP/2 (h2), which
keeps one connection per APNs host and multiplexes requests on it, as
Apple asks ("Sending notification requests to APNs": keep connections
open, reuse them). httpx rather than aioapns: aioapns fixes its hosts in
class attributes, has no request timeout, leaves a request waiting for
ever when an error answer has no body, signs one token per connection
with a fixed 30-minute life and no way to force a renewal, and encodes
the payload itself, so the bytes sent are not the bytes counted
(``docs/delivery.md`` says more).

The host follows the environment the device token was registered with:
a sandbox (development build) token is only known to the sandbox host.
"""

from __future__ import annotations

import logging
import ssl
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import msgspec

from sessionpush.store.base import Subscription
from sessionpush.transports.apns_token import ProviderToken
from sessionpush.transports.base import DeliveryResult, OutboundMessage, Verdict
from sessionpush.transports.retry import parse_retry_after

__all__ = [
    "APNS_HOSTS",
    "DEFAULT_TTL",
    "MAX_COLLAPSE_ID",
    "MAX_PAYLOAD",
    "ApnsTransport",
    "classify",
]

log = logging.getLogger("sessionpush.transports")

APNS_HOSTS = {
    "production": "https://api.push.apple.com",
    "sandbox": "https://api.sandbox.push.apple.com",
}
#: Apple, "Generating a remote notification": 4,096 bytes for a regular
#: push, counted on the JSON body as sent.
MAX_PAYLOAD = 4096
#: Apple, "Sending notification requests": apns-collapse-id is at most 64
#: bytes.
MAX_COLLAPSE_ID = 64
#: A message without a ttl keeps a day, as Web Push does.
DEFAULT_TTL = 86400
_LOW_URGENCY = frozenset({"very-low", "low"})
#: 403 reasons that mean our credential, not the message, is wrong.
_CREDENTIAL_REASONS = frozenset(
    {
        "ExpiredProviderToken",
        "InvalidProviderToken",
        "MissingProviderToken",
        "Forbidden",
        "BadCertificate",
        "BadCertificateEnvironment",
    }
)
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()


def classify(
    status: int, reason: str, timestamp_ms: int | None, environment: str
) -> DeliveryResult:
    """Turn an APNs answer into a verdict.

    Apple, "Handling notification responses from APNs": the body of an
    error is ``{"reason": ..., "timestamp": ...}``, the timestamp (410 only)
    in milliseconds since the epoch.
    """
    if status == 200:
        return DeliveryResult(ok=True, detail="APNs answered 200")
    detail = f"APNs answered {status} {reason}".rstrip()
    if status == 410:
        # The token stopped being valid at ``timestamp``; a registration
        # newer than that is a new token for the same device and stays.
        answered = None if timestamp_ms is None else timestamp_ms / 1000.0
        return DeliveryResult(
            ok=False, detail=detail, verdict=Verdict.DISABLE, answered_at=answered
        )
    if status == 400 and reason == "BadDeviceToken":
        return DeliveryResult(
            ok=False,
            detail=f"{detail} (token registered for the {environment} host)",
            verdict=Verdict.DISABLE,
        )
    if status == 429 or status >= 500:
        return DeliveryResult(ok=False, detail=detail, verdict=Verdict.RETRY)
    return DeliveryResult(ok=False, detail=detail, verdict=Verdict.FAILED)


def apns_id(message_id: str) -> str:
    """The canonical UUID APNs wants in ``apns-id``; the same for every
    retry of one message, so Apple's logs show one notification."""
    try:
        return str(uuid.UUID(hex=message_id))
    except ValueError:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"sessionpush:{message_id}"))


class ApnsTransport:
    """Sends APNs notifications; one instance serves every app.

    Args:
        token: The provider token (one signing key, one team).
        topics: The bundle id (``apns-topic``) of each app, by app name.
        timeout: Seconds a request may take in all.
        hosts: The base URL for each environment; tests point both at a
            local server.
        verify: TLS verification: True for the system's CAs, or a context
            (tests trust their self-signed certificate).
        clock: Wall time, for ``apns-expiration`` of messages without
            their own time.
    """

    name = "apns"

    def __init__(
        self,
        token: ProviderToken,
        topics: Mapping[str, str],
        *,
        timeout: float = 10.0,
        hosts: Mapping[str, str] = APNS_HOSTS,
        verify: ssl.SSLContext | bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.token = token
        self.topics = dict(topics)
        self.hosts = dict(hosts)
        self._clock = clock
        self._client = httpx.AsyncClient(
            http2=True,
            verify=verify,
            timeout=timeout,
            follow_redirects=False,
            trust_env=False,
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=8),
        )

    def payload(self, message: OutboundMessage) -> bytes:
        """The exact bytes sent as the request body."""
        aps: dict[str, Any]
        if self._background(message):
            # Apple, "Pushing background updates": content-available only.
            aps = {"content-available": 1}
        else:
            alert: dict[str, str] = {"title": message.title}
            if message.body is not None:
                alert["body"] = message.body
            aps = {"alert": alert, "sound": "default"}
            if message.image is not None:
                # A notification service extension fetches the image; it
                # runs only when mutable-content is 1.
                aps["mutable-content"] = 1
        out: dict[str, Any] = {"aps": aps, "id": message.id, "rule": message.rule}
        if message.link is not None:
            out["link"] = message.link
        if message.image is not None:
            out["image"] = message.image
        if message.data is not None:
            out["data"] = message.data
        return _encoder.encode(out)

    def headers(self, message: OutboundMessage, topic: str) -> dict[str, str]:
        """The ``apns-*`` request headers (without ``authorization``)."""
        background = self._background(message)
        # Apple: 10 sends at once; 5 weighs the device's power, and is the
        # only priority a background push may have.
        low = background or message.urgency in _LOW_URGENCY
        priority = "5" if low else "10"
        ttl = DEFAULT_TTL if message.ttl is None else max(0.0, message.ttl)
        # 0 asks APNs to try once and not store; otherwise an absolute time
        # from when the message was made, so retries keep the same deadline.
        expiration = 0 if ttl == 0 else int(message.at + ttl)
        return {
            "apns-push-type": "background" if background else "alert",
            "apns-priority": priority,
            "apns-expiration": str(expiration),
            # The same id on every retry: a retry after a lost answer
            # replaces the shown notification instead of adding one.
            "apns-collapse-id": message.collapse or message.id,
            "apns-topic": topic,
            "apns-id": apns_id(message.id),
        }

    async def send(
        self, message: OutboundMessage, subscription: Subscription | None
    ) -> DeliveryResult:
        if subscription is None:
            return DeliveryResult(ok=False, detail="apns needs a device token")
        topic = self.topics.get(message.app)
        if topic is None:
            return DeliveryResult(
                ok=False,
                detail=f"no APNs topic for app {message.app!r}: add its bundle "
                "id under [apns.topics]",
            )
        environment = str(subscription.data.get("environment", "production"))
        host = self.hosts.get(environment)
        if host is None:
            return DeliveryResult(
                ok=False,
                detail=f"token environment {environment!r} is neither "
                "production nor sandbox; register the device again",
            )
        collapse = message.collapse or message.id
        if len(collapse.encode()) > MAX_COLLAPSE_ID:
            return DeliveryResult(
                ok=False,
                detail=f"collapse {collapse[:80]!r} is {len(collapse.encode())} "
                f"bytes; apns-collapse-id allows at most {MAX_COLLAPSE_ID}",
            )
        body = self.payload(message)
        if len(body) > MAX_PAYLOAD:
            return DeliveryResult(
                ok=False,
                detail=f"payload of {len(body)} bytes is over the APNs limit of "
                f"{MAX_PAYLOAD}; shorten the title, body or data",
            )

        url = f"{host}/3/device/{subscription.address}"
        headers = self.headers(message, topic)
        token = self.token.current()
        result, reason = await self._post(url, headers, body, token, environment)
        if reason == "ExpiredProviderToken":
            # Renew once and retry at once: the message is not at fault.
            token = self.token.renew(token)
            result, reason = await self._post(url, headers, body, token, environment)
            if reason == "ExpiredProviderToken":
                log.warning(
                    "APNs calls a token signed just now expired; check the "
                    "server's clock (iat %d)",
                    self.token.issued_at,
                )
        if reason in _CREDENTIAL_REASONS:
            log.warning(
                "APNs refused the provider token of key %s, team %s: %s",
                self.token.key_id,
                self.token.team_id,
                result.detail,
            )
        if reason == "BadDeviceToken":
            log.warning(
                "APNs calls a %s token of app %s bad (user %s, device %s); a "
                "sandbox token sent to production or the reverse also says so",
                environment,
                message.app,
                subscription.user,
                subscription.device_id,
            )
        return result

    async def _post(
        self,
        url: str,
        headers: dict[str, str],
        body: bytes,
        token: str,
        environment: str,
    ) -> tuple[DeliveryResult, str]:
        """One request; the answer and APNs' ``reason`` ("" if none)."""
        try:
            response = await self._client.post(
                url,
                content=body,
                headers={**headers, "authorization": f"bearer {token}"},
            )
        except httpx.TimeoutException as exc:
            return DeliveryResult(
                ok=False,
                detail=f"no answer from APNs: {type(exc).__name__}",
                verdict=Verdict.RETRY,
            ), ""
        except httpx.TransportError as exc:
            return DeliveryResult(
                ok=False,
                detail=f"request failed: {type(exc).__name__}: {exc}",
                verdict=Verdict.RETRY,
            ), ""
        reason, timestamp = "", None
        if response.status_code != 200 and response.content:
            try:
                answer = _decoder.decode(response.content)
            except msgspec.DecodeError:
                answer = {}
            if isinstance(answer, dict):
                reason = str(answer.get("reason", ""))
                stamp = answer.get("timestamp")
                timestamp = stamp if isinstance(stamp, int) else None
        result = classify(response.status_code, reason, timestamp, environment)
        retry_after = parse_retry_after(
            response.headers.get("retry-after"), self._clock()
        )
        if retry_after is not None and result.verdict is Verdict.RETRY:
            result = msgspec.structs.replace(result, retry_after=retry_after)
        return result, reason

    @staticmethod
    def _background(message: OutboundMessage) -> bool:
        """A message with neither title nor body only wakes the app."""
        return not message.title and not message.body

    async def close(self) -> None:
        await self._client.aclose()
