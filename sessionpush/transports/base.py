"""What every transport implements: turn a rendered message into a send.

A transport owns one channel (``webpush``, ``apns``, ``fcm``, ``webhook``,
``outbox``). It takes an :class:`OutboundMessage` and, for device channels,
the :class:`~sessionpush.store.base.Subscription` to send to, and answers with
a :class:`DeliveryResult`; it never raises for a provider's refusal, because
a refusal is an outcome to record, not a crash.

The :class:`Verdict` of a result tells the delivery queue
(:mod:`sessionpush.transports.queue`) what the answer means for the
message and the subscription; the transport itself changes no state.
"""

from __future__ import annotations

import enum
from typing import Any, Protocol, runtime_checkable

import msgspec

from sessionpush.store.base import Subscription

__all__ = [
    "DeliveryResult",
    "OutboundMessage",
    "RemembersSends",
    "Transport",
    "Verdict",
    "webhook_target",
]


class OutboundMessage(msgspec.Struct, frozen=True, kw_only=True):
    """One rendered message on its way to one user."""

    id: str
    app: str
    user: str
    session: str
    rule: str
    channel: str
    at: float
    title: str
    body: str | None = None
    link: str | None = None
    ttl: float | None = None
    #: Optional push fields a rule may set; providers that lack one ignore it.
    image: str | None = None
    #: Web Push spelling: ``very-low``, ``low``, ``normal``, ``high``.
    urgency: str | None = None
    collapse: str | None = None
    data: dict[str, str] | None = None
    #: The configured endpoint of a ``webhook "NAME"`` action.
    webhook: str | None = None

    def payload(self) -> dict[str, Any]:
        """The fields a device shows, without routing data."""
        out: dict[str, Any] = {"id": self.id, "rule": self.rule, "title": self.title}
        if self.body is not None:
            out["body"] = self.body
        if self.link is not None:
            out["link"] = self.link
        if self.image is not None:
            out["image"] = self.image
        if self.data:
            out["data"] = self.data
        return out


class Verdict(enum.Enum):
    """What a provider's answer means for the message and the subscription."""

    #: The provider accepted the message.
    DELIVERED = "delivered"
    #: This message failed; the subscription is kept.
    FAILED = "failed"
    #: The subscription is gone for good: delete it (if still the same).
    GONE = "gone"
    #: The token is invalid: disable it (if not registered again since).
    DISABLE = "disable"
    #: Try again later (rate limits, provider errors, timeouts).
    RETRY = "retry"


class DeliveryResult(msgspec.Struct, frozen=True, kw_only=True):
    """A provider's answer, classified.

    Attributes:
        ok: The provider took the message.
        detail: The answer in words, for the outcome log.
        verdict: What to do; defaults to DELIVERED or FAILED from ``ok``.
        retry_after: Seconds the provider asked to wait (``Retry-After``).
        min_backoff: The least wait before a retry, whatever the answer said.
        answered_at: The provider's own time of the answer (APNs
            ``timestamp``), compared with when the token was registered.
    """

    ok: bool
    detail: str = ""
    verdict: Verdict | None = None
    retry_after: float | None = None
    min_backoff: float = 0.0
    answered_at: float | None = None

    @property
    def action(self) -> Verdict:
        if self.verdict is not None:
            return self.verdict
        return Verdict.DELIVERED if self.ok else Verdict.FAILED


class Transport(Protocol):
    """One outbound channel."""

    name: str

    async def send(
        self, message: OutboundMessage, subscription: Subscription | None
    ) -> DeliveryResult: ...

    async def close(self) -> None: ...


@runtime_checkable
class RemembersSends(Protocol):
    """A transport that can tell whether it took a message already (the
    outbox, by reading its file); asked only when a timer is sent again."""

    def has_sent(self, message_id: str) -> bool: ...


def webhook_target(app: str, user: str, name: str) -> Subscription:
    """The delivery target of a ``webhook "NAME"`` action.

    A webhook has no subscription in the store; this stands in for one so
    that the delivery queue retries and records it like any device.
    """
    return Subscription(
        app=app,
        user=user,
        device_id=f"webhook:{name}",
        channel="webhook",
        data={"webhook": name},
    )
