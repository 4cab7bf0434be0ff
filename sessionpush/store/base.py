"""The store interface: everything sessionpush must keep across restarts.

One interface, several implementations: the embedded SQLite store (the
default, ``sessionpush.store.sqlite``) and, for several processes, Redis.
The engine only ever talks to :class:`Store`.

All times are UTC seconds since the epoch as floats, taken from the engine's
clock (never from the store's own), so that replays with a virtual clock and
tests with a manual clock see the same behaviour as a live server.

Users are keyed by ``(app, user)``: two apps never see each other's users.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import msgspec

__all__ = [
    "Decision",
    "Device",
    "GoalEvent",
    "PendingTimer",
    "Store",
    "Subscription",
    "UserProfile",
]


class Device(msgspec.Struct, frozen=True, kw_only=True):
    """A device a user connected from, as announced in ``hello``."""

    app: str
    user: str
    device_id: str
    platform: str = "unknown"
    timezone: str = "UTC"
    lang: str | None = None
    app_version: str | None = None
    last_seen: float = 0.0


class Subscription(msgspec.Struct, frozen=True, kw_only=True):
    """Where a push for one device goes: a Web Push subscription or a token.

    ``channel`` names the transport (``webpush``, ``apns``, ``fcm``);
    ``data`` holds what that transport needs (endpoint and keys, or token).
    """

    app: str
    user: str
    device_id: str
    channel: str
    data: dict[str, Any]
    created_at: float = 0.0


class UserProfile(msgspec.Struct, frozen=True, kw_only=True):
    """What rules may read as ``user.*``, plus consent and time zone."""

    app: str
    user: str
    attributes: dict[str, Any] = {}
    timezone: str = "UTC"
    consent: bool = True


class PendingTimer(msgspec.Struct, frozen=True, kw_only=True):
    """A send that waits: ``wait D``, ``wait D after session end``.

    ``context`` is the snapshot the message renders from at fire time (the
    triggering event, bound events, session facts, device), so that a timer
    loaded after a restart renders the same text as it would have before.
    """

    timer_id: str
    app: str
    user: str
    session: str
    rule: str
    due: float
    triggered_at: float
    context: dict[str, Any] = {}


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    """One outcome of one trigger: sent, or not sent and why.

    ``decision`` is ``sent`` or the kind of skip (``suppressed``, ``capped``,
    ``no_consent``, ``unreachable``, ``failed``); ``reason`` says it in plain
    words for the operator.
    """

    app: str
    rule: str
    user: str
    session: str
    decision: str
    reason: str
    at: float
    channel: str
    triggered_at: float
    message: dict[str, Any] | None = None


class GoalEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An event that a rule names as its ``goal``, for conversion reports.

    Recorded for every matching event of a user the rule has a decision
    about; reports join it with the decisions (sent and ``held_out``) whose
    trigger came no more than the goal's ``within`` before ``at``.
    """

    app: str
    rule: str
    user: str
    session: str
    at: float


class Store(Protocol):
    """Durable state behind one interface; see the module docstring."""

    async def open(self) -> None:
        """Create or migrate the schema; safe to call on an existing store."""

    async def close(self) -> None: ...

    # users, devices, consent, subscriptions

    async def upsert_device(self, device: Device) -> None:
        """Remember a device and, as the user's time zone, its zone."""

    async def get_user(self, app: str, user: str) -> UserProfile:
        """The user's profile; an unknown user gets the defaults."""

    async def set_user_attributes(
        self, app: str, user: str, attributes: dict[str, Any]
    ) -> None:
        """Merge ``attributes`` into the profile (``identify`` traits)."""

    async def set_consent(self, app: str, user: str, granted: bool) -> None: ...

    async def add_subscription(self, subscription: Subscription) -> None:
        """Add or replace the subscription of one device on one channel."""

    async def subscriptions(self, app: str, user: str) -> list[Subscription]: ...

    # caps

    async def cap_count(self, key: str, since: float) -> int:
        """How many sends were counted under ``key`` at or after ``since``."""

    async def cap_take(self, key: str, limit: int, since: float, now: float) -> bool:
        """Count one send under ``key`` if fewer than ``limit`` since ``since``.

        Check and count are one atomic step: two callers racing for the last
        slot get one ``True`` and one ``False``.
        """

    async def cap_take_all(
        self, caps: Sequence[tuple[str, int, float]], now: float
    ) -> int | None:
        """Count one send under every ``(key, limit, since)``, or under none.

        Returns ``None`` when all had room (and were counted), else the
        index of the first full cap.
        """

    # suppression (``unless``)

    async def mark_suppressed(self, app: str, user: str, rule: str, at: float) -> None:
        """Record that an ``unless`` event of ``rule`` arrived at ``at``."""

    async def suppressed_at(self, app: str, user: str, rule: str) -> float | None:
        """When the latest ``unless`` event of ``rule`` arrived, if ever."""

    # timers

    async def add_timer(self, timer: PendingTimer) -> None: ...

    async def cancel_timers(
        self, app: str, user: str, rule: str, triggered_before: float
    ) -> list[PendingTimer]:
        """Remove and return the user's pending timers of ``rule`` that were
        triggered at or before ``triggered_before``."""

    async def claim_timer(self, timer_id: str) -> PendingTimer | None:
        """Take a timer for firing: it is removed and returned once; a
        cancelled or already claimed timer returns ``None``."""

    async def pending_timers(self) -> list[PendingTimer]:
        """Every pending timer, earliest due first (for start-up)."""

    # decisions

    async def record_decision(self, decision: Decision) -> None: ...

    async def decisions(
        self, app: str | None = None, user: str | None = None
    ) -> list[Decision]:
        """Recorded decisions in the order they were made."""

    # goals (``goal E within D``)

    async def record_goal(self, goal: GoalEvent) -> None:
        """Append one goal event of one rule and user."""

    async def goals(
        self, app: str | None = None, rule: str | None = None
    ) -> list[GoalEvent]:
        """Recorded goal events in the order they happened."""
