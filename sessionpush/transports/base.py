"""What every transport implements: turn a rendered message into a send.

A transport owns one channel (``webpush``, ``apns``, ``fcm``, ``webhook``,
``outbox``). It takes an :class:`OutboundMessage` and, for device channels,
the :class:`~sessionpush.store.base.Subscription` to send to, and answers with
a :class:`DeliveryResult`; it never raises for a provider's refusal, because
a refusal is an outcome to record, not a crash.
"""

from __future__ import annotations

from typing import Any, Protocol

import msgspec

from sessionpush.store.base import Subscription

__all__ = ["DeliveryResult", "OutboundMessage", "Transport"]


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


class DeliveryResult(msgspec.Struct, frozen=True, kw_only=True):
    ok: bool
    detail: str = ""


class Transport(Protocol):
    """One outbound channel."""

    name: str

    async def send(
        self, message: OutboundMessage, subscription: Subscription | None
    ) -> DeliveryResult: ...

    async def close(self) -> None: ...
