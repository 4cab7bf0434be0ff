"""The store interface: everything sessionpush must keep across restarts.

One interface, several implementations: the embedded SQLite store (the
default, ``sessionpush.store.sqlite``) and, for several processes, Redis.
The engine only ever talks to :class:`Store`.

All times are UTC seconds since the epoch as floats, taken from the engine's
clock (never from the store's own), so that replays with a virtual clock and
tests with a manual clock see the same behaviour as a live server.

Users are keyed by ``(app, user)``: two apps never see each other's users.

Durable timers are fired in two ways. A single process on a virtual clock
(replay, tests) mirrors its own timers in memory and takes each with
:meth:`Store.claim_timer`. Live processes poll :meth:`Store.claim_due`: any
process may take any due timer, under a lease and a fencing token, and
settles it with :meth:`Store.finish` just before the send; a claimant whose
lease ran out and whose timer was claimed again is refused there, so the
user sees one message. A store shared by several processes compares due
times with its own clock (Redis ``TIME``) so that they all agree.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

import msgspec

__all__ = [
    "Claim",
    "Decision",
    "DeliveryOutcome",
    "Device",
    "ErasureReport",
    "GoalEvent",
    "PendingTimer",
    "SentMessage",
    "Store",
    "StoredRules",
    "Subscription",
    "UserProfile",
    "send_key_prefix",
    "user_cap_prefix",
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
    ``created_at`` is when it was last registered: an answer about an older
    registration must not remove a newer one.
    """

    app: str
    user: str
    device_id: str
    channel: str
    data: dict[str, Any]
    created_at: float = 0.0

    @property
    def address(self) -> str:
        """What the provider knows the device by: the endpoint or the token."""
        return str(self.data.get("endpoint") or self.data.get("token") or "")


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


class Claim(msgspec.Struct, frozen=True, kw_only=True):
    """A due timer taken for firing by one process, until ``lease_until``.

    ``token`` is the fencing token: it grows with every claim of the same
    timer, so a claimant whose lease ran out and whose timer was claimed
    again holds a smaller token, and :meth:`Store.finish` refuses it.
    """

    timer: PendingTimer
    token: int
    lease_until: float


class StoredRules(msgspec.Struct, frozen=True, kw_only=True):
    """A checked rule set saved through ``PUT /v1/rules``, with its version."""

    version: int
    source: str
    saved_at: float


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


class SentMessage(msgspec.Struct, frozen=True, kw_only=True):
    """A message handed to a provider, kept for click and open tracking."""

    id: str
    app: str
    user: str
    rule: str
    channel: str
    at: float
    link: str | None = None


class DeliveryOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """One step in the life of one message to one device.

    ``outcome`` is ``sent`` (handed to the queue), ``delivered`` (the
    provider accepted it), ``retry`` (the provider asked to wait until
    ``retry_at``), ``failed`` (with ``reason``), ``unsubscribed`` (the
    provider said the device is gone; its subscription was removed or
    disabled), ``opened`` or ``clicked``.
    """

    message_id: str
    app: str
    user: str
    rule: str
    channel: str
    outcome: str
    at: float
    device_id: str | None = None
    reason: str = ""
    retry_at: float | None = None


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


def user_cap_prefix(app: str, user: str) -> str:
    """The start of every cap key of ``user``, per-session ones too (see
    ``engine.rules.Limit.key``; a test keeps the two in step)."""
    return f"{app}\x1fu\x1f{user}\x1f"


def send_key_prefix(app: str, user: str) -> str:
    """The start of every idempotency key of ``user`` (see
    ``transports.queue.idempotency_key``)."""
    return f"{app}\x1f{user}\x1f"


class ErasureReport(msgspec.Struct, frozen=True, kw_only=True):
    """What :meth:`Store.erase_user` removed: rows (or keys) per kind.

    The kinds are ``profile``, ``devices``, ``subscriptions``, ``timers``,
    ``caps``, ``suppressions``, ``decisions``, ``messages``, ``outcomes``,
    ``goals`` and ``send_keys``; a kind with nothing to remove counts 0.
    """

    app: str
    user: str
    removed: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.removed.values())


class Store(Protocol):
    """Durable state behind one interface; see the module docstring."""

    #: True when no method ever waits on I/O (it runs to completion when
    #: called): the gateway then handles frames inline, without a task per
    #: frame. False for a store across a network, whose client may also
    #: need to run inside a task (redis-py's timeouts do).
    inline: bool

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

    async def subscriptions(self, app: str, user: str) -> list[Subscription]:
        """The user's subscriptions that are not disabled."""

    async def remove_subscription(
        self, app: str, user: str, device_id: str, channel: str, address: str
    ) -> bool:
        """Delete a subscription if it still has ``address``; True if deleted.

        A device that registered again with a new endpoint or token keeps it
        even when an answer about its old one arrives late.
        """

    async def disable_subscription(
        self,
        app: str,
        user: str,
        device_id: str,
        channel: str,
        address: str,
        reason: str,
        registered_before: float | None = None,
    ) -> bool:
        """Stop sending to a subscription that still has ``address``.

        With ``registered_before``, only a subscription registered at or
        before that time is disabled (APNs: a token registered again after
        the provider's answer stays). Registering it again with
        :meth:`add_subscription` enables it. True if it was disabled.
        """

    async def disabled_subscriptions(
        self, app: str, user: str
    ) -> list[tuple[Subscription, str]]:
        """The user's disabled subscriptions, each with the reason."""

    # caps

    async def cap_count(self, key: str, since: float) -> int:
        """How many sends were counted under ``key`` at or after ``since``."""

    async def cap_take(self, key: str, limit: int, since: float, now: float) -> bool:
        """Count one send under ``key`` if fewer than ``limit`` since ``since``.

        Check and count are one atomic step: two callers racing for the last
        slot get one ``True`` and one ``False``.
        """

    async def cap_take_all(
        self,
        caps: Sequence[tuple[str, int, float]],
        now: float,
        send_id: str | None = None,
    ) -> int | None:
        """Count one send under every ``(key, limit, since)``, or under none.

        Returns ``None`` when all had room (and were counted), else the
        index of the first full cap. A ``send_id`` already counted under
        every key is granted again without counting twice: a timer fired a
        second time after its first claimant died keeps the slot it took.
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

    # delivery

    async def claim_send(self, key: str, message_id: str, at: float) -> str | None:
        """Claim an idempotency key for one message, atomically.

        Returns ``None`` when the key was free and is now ``message_id``'s,
        else the id of the message that claimed it first (do not send again).
        """

    async def record_message(self, message: SentMessage) -> None:
        """Keep a message that was handed to a provider."""

    async def sent_message(self, message_id: str) -> SentMessage | None:
        """The message with that id, if it was ever handed to a provider."""

    async def record_outcome(self, outcome: DeliveryOutcome) -> None:
        """Append one delivery outcome."""

    async def outcomes(
        self, message_id: str | None = None, app: str | None = None
    ) -> list[DeliveryOutcome]:
        """Recorded outcomes in the order they were recorded."""

    async def claim_due(self, now: float, limit: int, lease: float) -> list[Claim]:
        """Take up to ``limit`` timers due at ``now`` for ``lease`` seconds.

        A timer already claimed is due again once its lease ran out. The
        timers stay pending until :meth:`finish`; a shared store may read
        ``now`` from its own clock instead, so that processes agree.
        """

    async def holds(self, claim: Claim) -> bool:
        """Whether ``claim`` is still the timer's newest, unsettled claim:
        the fence checked just before a send leaves the process."""

    async def finish(self, claim: Claim) -> bool:
        """Settle a claimed timer before its send: remove it, or refuse.

        Returns ``False`` when the send must not happen: the timer was
        cancelled, settled already, or claimed again with a newer token.
        """

    async def finish_many(self, claims: Sequence[Claim]) -> list[bool]:
        """:meth:`finish` each claim, in order, in as few round trips as the
        store allows; one answer per claim, as :meth:`finish` would give."""

    # rule sets

    async def save_rules(self, source: str, now: float) -> int:
        """Store a checked rule set and return its new version (1, 2, ...);
        every process watching :meth:`rule_versions` hears of it."""

    async def load_rules(self) -> StoredRules | None:
        """The latest saved rule set, or ``None`` if none was ever saved."""

    def rule_versions(self) -> AsyncIterator[int]:
        """``0`` once listening, then the version of each rule set saved
        from then on by any process (so a caller that loads the latest
        after the ``0`` misses none)."""

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

    # erasure

    async def erase_user(self, app: str, user: str) -> ErasureReport:
        """Remove everything kept about ``user`` of ``app``, in one step.

        Profile and consent, devices, subscriptions (also disabled ones),
        pending timers, cap counters (per user, and per session for the
        user's sessions), ``unless`` marks, decisions, sent messages, their
        outcomes and idempotency keys. Nothing of another user or app is
        touched. Erasing an unknown user removes nothing and is not an
        error.
        """
