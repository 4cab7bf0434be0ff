"""FCM HTTP v1: ``projects/{project}/messages:send`` with an OAuth token.

One request per device token carries both an ``android`` and a
``webpush`` block; FCM applies the one for the token's platform (FCM,
"Build app server send requests": platform overrides). Every retry sends
the same body: the Android notification ``tag`` and the Web Push
``Topic`` are the rule's collapse key or, without one, the message id, so
a retry after a lost answer replaces the shown notification instead of
adding a second one.

Answers (FCM reference, ``ErrorCode``): ``UNREGISTERED`` deletes the
token; ``INVALID_ARGUMENT`` fails this message and keeps it;
``QUOTA_EXCEEDED`` and any 429 wait at least 60 s; ``UNAVAILABLE`` and
``INTERNAL`` retry after ``Retry-After`` or backoff; a 401 renews the
access token once and retries.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import msgspec

from sessionpush.store.base import Subscription
from sessionpush.transports.base import DeliveryResult, OutboundMessage, Verdict
from sessionpush.transports.google_oauth import AccessTokens, TokenRefused
from sessionpush.transports.retry import parse_retry_after

__all__ = ["FCM_BASE", "QUOTA_BACKOFF", "FcmTransport", "classify"]

log = logging.getLogger("sessionpush.transports")

FCM_BASE = "https://fcm.googleapis.com"
#: FCM, "QUOTA_EXCEEDED": back off, the quota window is a minute.
QUOTA_BACKOFF = 60.0
#: FCM wants the TTL as a duration string of seconds; a day by default.
DEFAULT_TTL = 86400
#: RFC 8030 section 5.4: a Web Push Topic is at most 32 base64url characters.
_TOPIC = re.compile(r"[A-Za-z0-9_-]{1,32}")
_FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()


def error_code(body: bytes) -> tuple[str, str]:
    """The FCM ``errorCode`` (else the RPC ``status``) and the message."""
    try:
        answer = _decoder.decode(body)
    except msgspec.DecodeError:
        return "", body[:200].decode(errors="replace")
    error = answer.get("error") if isinstance(answer, dict) else None
    if not isinstance(error, dict):
        return "", ""
    code = str(error.get("status", ""))
    for detail in error.get("details") or ():
        if isinstance(detail, dict) and detail.get("@type") == _FCM_ERROR:
            code = str(detail.get("errorCode", code))
    return code, str(error.get("message", ""))[:200]


def classify(
    status: int, code: str, text: str, retry_after: float | None
) -> DeliveryResult:
    """Turn an FCM answer into a verdict."""
    if status == 200:
        return DeliveryResult(ok=True, detail="FCM answered 200")
    detail = f"FCM answered {status} {code}: {text}".rstrip(": ")
    if code == "UNREGISTERED" or status == 404:
        return DeliveryResult(ok=False, detail=detail, verdict=Verdict.GONE)
    if code == "SENDER_ID_MISMATCH":
        # The token belongs to another Firebase project: never ours to use.
        return DeliveryResult(ok=False, detail=detail, verdict=Verdict.DISABLE)
    if code == "QUOTA_EXCEEDED" or status == 429:
        return DeliveryResult(
            ok=False,
            detail=detail,
            verdict=Verdict.RETRY,
            retry_after=retry_after,
            min_backoff=QUOTA_BACKOFF,
        )
    if status >= 500 or code in ("UNAVAILABLE", "INTERNAL"):
        return DeliveryResult(
            ok=False, detail=detail, verdict=Verdict.RETRY, retry_after=retry_after
        )
    return DeliveryResult(ok=False, detail=detail, verdict=Verdict.FAILED)


def _string(value: Any) -> str:
    return value if isinstance(value, str) else _encoder.encode(value).decode()


class FcmTransport:
    """Sends FCM messages; one instance serves every app.

    Args:
        tokens: The access tokens of each app's service account, by app.
        client: The HTTP client for FCM (and the token endpoint).
        base: FCM's base URL; tests point it at a local server.
        clock: Wall time, for ``Retry-After`` dates.
    """

    name = "fcm"

    def __init__(
        self,
        tokens: Mapping[str, AccessTokens],
        client: httpx.AsyncClient,
        *,
        base: str = FCM_BASE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.tokens = dict(tokens)
        self._client = client
        self.base = base.rstrip("/")
        self._clock = clock

    def body(self, message: OutboundMessage, token: str) -> dict[str, Any]:
        """The ``messages:send`` request body."""
        tag = message.collapse or message.id
        ttl = DEFAULT_TTL if message.ttl is None else max(0, int(message.ttl))
        # FCM data values must be strings (Message.data is map<string, string>).
        data = {"id": message.id, "rule": message.rule}
        if message.link is not None:
            data["link"] = message.link
        for key, value in (message.data or {}).items():
            data[key] = _string(value)
        android: dict[str, Any] = {
            "ttl": f"{ttl}s",
            "priority": "NORMAL" if message.urgency in ("very-low", "low") else "HIGH",
        }
        webpush: dict[str, Any] = {"headers": {"TTL": str(ttl)}, "data": data}
        if _TOPIC.fullmatch(tag):
            webpush["headers"]["Topic"] = tag
        if message.urgency is not None:
            webpush["headers"]["Urgency"] = message.urgency
        out: dict[str, Any] = {"token": token, "data": data}
        if message.title or message.body:
            notification: dict[str, str] = {"title": message.title}
            if message.body is not None:
                notification["body"] = message.body
            if message.image is not None:
                notification["image"] = message.image
            out["notification"] = notification
            android["notification"] = {"tag": tag}
            webpush["notification"] = {"tag": tag}
            if message.link is not None and message.link.startswith("https://"):
                # FCM, WebpushFcmOptions.link: HTTPS only.
                webpush["fcm_options"] = {"link": message.link}
        if message.collapse is not None:
            android["collapse_key"] = message.collapse
        out["android"] = android
        out["webpush"] = webpush
        return {"message": out}

    async def send(
        self, message: OutboundMessage, subscription: Subscription | None
    ) -> DeliveryResult:
        if subscription is None:
            return DeliveryResult(ok=False, detail="fcm needs a registration token")
        tokens = self.tokens.get(message.app)
        if tokens is None:
            return DeliveryResult(
                ok=False,
                detail=f"no FCM service account for app {message.app!r}: add "
                "its key file under [fcm.credentials]",
            )
        url = f"{self.base}/v1/projects/{tokens.account.project_id}/messages:send"
        body = _encoder.encode(self.body(message, subscription.address))
        for attempt in (1, 2):
            try:
                access = await tokens.get()
            except TokenRefused as exc:
                if not exc.retry:
                    log.warning(
                        "the token endpoint refused service account %s: %s",
                        tokens.account.client_email,
                        exc,
                    )
                return DeliveryResult(
                    ok=False,
                    detail=str(exc),
                    verdict=Verdict.RETRY if exc.retry else Verdict.FAILED,
                )
            try:
                response = await self._client.post(
                    url,
                    content=body,
                    headers={
                        "authorization": f"Bearer {access}",
                        "content-type": "application/json",
                    },
                )
            except httpx.TimeoutException as exc:
                return DeliveryResult(
                    ok=False,
                    detail=f"no answer from FCM: {type(exc).__name__}",
                    verdict=Verdict.RETRY,
                )
            except httpx.TransportError as exc:
                return DeliveryResult(
                    ok=False,
                    detail=f"request failed: {type(exc).__name__}: {exc}",
                    verdict=Verdict.RETRY,
                )
            if response.status_code == 401 and attempt == 1:
                # The access token lapsed or was revoked: a new one, once.
                tokens.invalidate(access)
                continue
            break
        code, text = (
            error_code(response.content) if response.status_code != 200 else ("", "")
        )
        retry_after = parse_retry_after(
            response.headers.get("retry-after"), self._clock()
        )
        result = classify(response.status_code, code, text, retry_after)
        if response.status_code in (401, 403) and code != "SENDER_ID_MISMATCH":
            log.warning(
                "FCM refused service account %s of app %s: %s",
                tokens.account.client_email,
                message.app,
                result.detail,
            )
        return result

    async def close(self) -> None:
        await self._client.aclose()
