"""Web Push (RFC 8030) with message encryption (RFC 8291) and VAPID (RFC 8292).

Encryption is pywebpush's (``aes128gcm`` only: RFC 8291 section 4 fixes
that coding; the older ``aesgcm`` draft is not offered). Requests go through
pywebpush's async path on one shared :class:`aiohttp.ClientSession`, so
connections to each push service are reused, with a timeout on every
request and redirects never followed: a push service answers, it does not
send us elsewhere.

Answers (RFC 8030 section 5 and 8.3) become verdicts: 201 delivered; 404
and 410 the subscription is gone; 413 this message is too large; 429 and
5xx retry, honouring ``Retry-After``; anything else fails the message.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any, cast

import aiohttp
import msgspec
from pywebpush import WebPusher, WebPushException

from sessionpush.store.base import Subscription
from sessionpush.transports.base import DeliveryResult, OutboundMessage, Verdict
from sessionpush.transports.endpoints import (
    EndpointRefused,
    PublicResolver,
    check_endpoint,
)
from sessionpush.transports.retry import parse_retry_after
from sessionpush.transports.vapid import VapidSigner

__all__ = [
    "DEFAULT_TTL",
    "MAX_PLAINTEXT",
    "MAX_RECORD",
    "WebPushTransport",
    "classify",
]

log = logging.getLogger("sessionpush.transports")

#: RFC 8291 section 4: push services must accept 4,096 bytes of body.
MAX_RECORD = 4096
#: The body is the RFC 8188 header (16 salt + 4 record size + 1 key id
#: length + 65 key id = 86 bytes), the plaintext, one padding delimiter and
#: the 16-byte tag: 4096 - 86 - 1 - 16 leaves 3,993 bytes of plaintext.
MAX_PLAINTEXT = MAX_RECORD - 86 - 1 - 16
#: RFC 8030 section 5.2: TTL is required; a rule without one keeps a day.
DEFAULT_TTL = 86400
_URGENCIES = frozenset({"very-low", "low", "normal", "high"})
#: RFC 8030 section 5.4: a topic is at most 32 base64url characters.
_TOPIC = re.compile(r"[A-Za-z0-9_-]{1,32}")
_encoder = msgspec.json.Encoder()


class _NoRedirects:
    """The one method of a ClientSession that pywebpush calls, with
    redirects off: a 3xx comes back as the answer, to be refused."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session

    async def post(self, url: str, **options: Any) -> aiohttp.ClientResponse:
        return await self._session.post(url, allow_redirects=False, **options)


def classify(status: int, retry_after: float | None, body: str) -> DeliveryResult:
    """Turn a push service's status code into a verdict."""
    if status in (200, 201, 202):
        return DeliveryResult(ok=True, detail=f"push service answered {status}")
    detail = f"push service answered {status}: {body[:200]}".rstrip(": ")
    if status in (404, 410):
        return DeliveryResult(ok=False, detail=detail, verdict=Verdict.GONE)
    if status == 429 or status >= 500:
        return DeliveryResult(
            ok=False, detail=detail, verdict=Verdict.RETRY, retry_after=retry_after
        )
    if 300 <= status < 400:
        detail = f"push service answered {status} (a redirect, never followed)"
    return DeliveryResult(ok=False, detail=detail, verdict=Verdict.FAILED)


class WebPushTransport:
    """Sends Web Push messages; one instance serves every app.

    Args:
        signers: The VAPID signer of each app, by app name.
        timeout: Seconds a request may take in all.
        allow_loopback: Testing only: let endpoints on loopback through.
        session: An aiohttp session to share; one is made if not given.
    """

    name = "webpush"

    def __init__(
        self,
        signers: Mapping[str, VapidSigner],
        *,
        timeout: float = 10.0,
        allow_loopback: bool = False,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.signers = dict(signers)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._allow_loopback = allow_loopback
        self._session = session
        self._own_session = session is None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                resolver=PublicResolver(allow_loopback=self._allow_loopback),
                limit=0,
            )
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    def plaintext(self, message: OutboundMessage) -> bytes:
        """The bytes that get encrypted: the message payload as JSON."""
        return _encoder.encode(message.payload())

    def headers(self, message: OutboundMessage, endpoint: str) -> dict[str, str]:
        """TTL, Urgency, Topic (RFC 8030 section 5) and VAPID authorization."""
        signer = self.signers[message.app]
        ttl = DEFAULT_TTL if message.ttl is None else max(0, int(message.ttl))
        headers = {"TTL": str(ttl), "Authorization": signer.header(endpoint)}
        if message.urgency is not None:
            headers["Urgency"] = message.urgency
        if message.collapse is not None:
            headers["Topic"] = message.collapse
        return headers

    async def send(
        self, message: OutboundMessage, subscription: Subscription | None
    ) -> DeliveryResult:
        if subscription is None:
            return DeliveryResult(ok=False, detail="webpush needs a subscription")
        if message.app not in self.signers:
            return DeliveryResult(
                ok=False,
                detail=f"no VAPID key for app {message.app!r}: add it under "
                "[webpush] keys_dir (sessionpush keys generate)",
            )
        endpoint = str(subscription.data.get("endpoint", ""))
        try:
            check_endpoint(endpoint, allow_loopback=self._allow_loopback)
        except EndpointRefused as exc:
            return DeliveryResult(ok=False, detail=f"endpoint refused: {exc}")
        if message.urgency is not None and message.urgency not in _URGENCIES:
            return DeliveryResult(
                ok=False,
                detail=f"urgency {message.urgency!r} is not one of "
                f"{', '.join(sorted(_URGENCIES))} (RFC 8030 section 5.3)",
            )
        if message.collapse is not None and not _TOPIC.fullmatch(message.collapse):
            return DeliveryResult(
                ok=False,
                detail=f"collapse {message.collapse!r} cannot be a Topic: at most "
                "32 base64url characters (RFC 8030 section 5.4)",
            )
        body = self.plaintext(message)
        if len(body) > MAX_PLAINTEXT:
            return DeliveryResult(
                ok=False,
                detail=f"payload of {len(body)} bytes would encrypt to "
                f"{len(body) + MAX_RECORD - MAX_PLAINTEXT} bytes, over the "
                f"{MAX_RECORD}-byte limit of RFC 8291 section 4; shorten the "
                f"title, body or data to at most {MAX_PLAINTEXT} bytes of JSON",
            )

        headers = self.headers(message, endpoint)
        try:
            pusher = WebPusher(
                subscription.data,
                aiohttp_session=cast(
                    aiohttp.ClientSession, _NoRedirects(self._client())
                ),
            )
            response = await pusher.send_async(
                data=body,
                headers=headers,
                ttl=int(headers["TTL"]),
                content_encoding="aes128gcm",
                timeout=self._timeout,
            )
        except WebPushException as exc:
            return DeliveryResult(ok=False, detail=f"cannot encrypt: {exc}")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return DeliveryResult(
                ok=False,
                detail=f"request failed: {type(exc).__name__}: {exc}",
                verdict=Verdict.RETRY,
            )
        assert not isinstance(response, str)  # only curl=True returns a string
        text = await response.text()
        retry_after = parse_retry_after(
            response.headers.get("Retry-After"), _wall_now()
        )
        result = classify(response.status, retry_after, text)
        if response.status in (401, 403):
            log.warning(
                "push service %s refused the VAPID credential of app %s (%d)",
                endpoint.split("/")[2],
                message.app,
                response.status,
            )
        return result

    async def close(self) -> None:
        if self._session is not None and self._own_session:
            await self._session.close()
        self._session = None


def _wall_now() -> float:
    import time

    return time.time()
