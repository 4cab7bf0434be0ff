"""The engine: sessions, matching, timers, policy and sending, without I/O.

The gateway, ``replay`` and the tests all drive the same :class:`Engine`
through the same calls (``open``, ``event``, ``detach``, ``end``,
``advance``), which is why a replay over websockets makes exactly the
decisions an in-process replay makes. The engine reads time only from its
clock, keeps state only in memory and the store, and reaches sockets only
through the :class:`Peer` objects it is handed.

Life of a trigger::

    event / session end / absence deadline
      -> trigger checks: consent, caps          (skip -> decision)
      -> no wait: send now
         wait D: durable timer in the store, due at trigger + D
         wait D after session end: held by the session until it ends
      -> at fire time: suppression, consent, reachability, the rendered
         link, caps (taken atomically), deliver     -> decision

Durable timers are found in two ways. On a virtual clock (replay, tests)
the engine mirrors its own timers in its deadline queue and fires them in
order, which keeps replays deterministic. Live, it keeps no copy: a driver
calls :func:`sessionpush.engine.timers.fire_due`, which claims due timers
from the store with a lease, so any process may fire any timer. A claimant
checks its claim (:meth:`Store.holds`) just before each send and sends
nothing once fenced off; the claims of a batch are settled together
(:meth:`Store.finish_many`) before their decisions are recorded.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from sessionpush.engine.calendar import next_local
from sessionpush.engine.clock import Clock, VirtualClock, iso
from sessionpush.engine.deadlines import Deadline, DeadlineQueue, Due
from sessionpush.engine.links import link_problem
from sessionpush.engine.policy import (
    DEFAULT_POLICY,
    AppPolicy,
    choose_action,
    held_out,
    quiet_until,
)
from sessionpush.engine.rules import CompiledLimit, CompiledRule, RuleSet
from sessionpush.engine.session import Session, SessionState
from sessionpush.errors import SessionpushError
from sessionpush.store.base import (
    Claim,
    Decision,
    Device,
    ErasureReport,
    GoalEvent,
    PendingTimer,
    Store,
)
from sessionpush.transports.base import (
    OutboundMessage,
    RemembersSends,
    Transport,
    webhook_target,
)

if TYPE_CHECKING:
    from sessionpush.transports.queue import DeliveryQueue

__all__ = [
    "CLOSE_ENDED",
    "CLOSE_ERASED",
    "CLOSE_IDLE",
    "Engine",
    "NoSessionError",
    "Peer",
]

log = logging.getLogger("sessionpush.engine")

#: Close code for sockets of a session that ended by ``end`` (normal closure).
CLOSE_ENDED = 1000
#: Close code for sockets of a session that ended by the idle timeout.
CLOSE_IDLE = 4001
#: Close code for sockets of a user erased by ``DELETE /v1/users/{id}``.
CLOSE_ERASED = 4005


class NoSessionError(SessionpushError):
    """A frame that needs a session came on a connection without one."""


class Peer(Protocol):
    """A client connection as the engine sees it."""

    def deliver(self, frame: dict[str, Any]) -> bool:
        """Queue a frame to the client without waiting; False if it cannot."""

    def close(self, code: int, reason: str) -> None:
        """Close the connection soon, with a websocket close code."""


DecisionListener = Callable[[Decision], None]
# A claim waiting to be settled, what to record once it is, and what to log
# (at which level) if it is not (see Engine.fire_batch).
_Settle = tuple[Claim, Callable[[], Awaitable[None]], str, int]

# What ``session.bound`` holds between events; shared, since nothing writes
# into it (a binding makes a new dict), so no event allocates one.
_UNBOUND: dict[str, Any] = {}


class Engine:
    """Runs a rule set over live sessions; see the module docstring."""

    def __init__(
        self,
        rules: RuleSet,
        store: Store,
        clock: Clock,
        *,
        transports: Mapping[str, Transport] | None = None,
        fallback: Transport | None = None,
        delivery: DeliveryQueue | None = None,
        grace: float = 30.0,
        idle: float = 1800.0,
        app_rules: Mapping[str, RuleSet] | None = None,
        app_policy: Mapping[str, AppPolicy] | None = None,
    ) -> None:
        #: The rule set of every app not in ``app_rules``.
        self.rules = rules
        #: Apps (tenants) with a rule set of their own.
        self.app_rules = dict(app_rules or {})
        #: What each app's config adds to its rules (global caps, default
        #: quiet hours, link schemes); other apps get ``DEFAULT_POLICY``.
        self.app_policy = dict(app_policy or {})
        self.store = store
        self.clock = clock
        self.transports = dict(transports or {})
        if delivery is not None:
            self.transports.update(delivery.transports)
        self.fallback = fallback
        #: Provider sends go through this queue (in the background, with
        #: retries and an idempotency key) instead of inline.
        self.delivery = delivery
        self.grace = grace
        self.idle = idle
        self._queue = DeadlineQueue()
        self._by_peer: dict[Peer, Session] = {}
        self._sessions: dict[tuple[str, str], Session] = {}
        self._by_user: dict[tuple[str, str], set[Session]] = {}
        self._timers: dict[str, Deadline] = {}
        self.listeners: list[DecisionListener] = []
        #: Called when a deadline earlier than all others is set, so that a
        #: live driver sleeping until the next deadline wakes up sooner.
        self.on_new_deadline: Callable[[], None] | None = None
        self.events_in = 0

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        """Virtual clock: load pending timers into the deadline queue. Live:
        nothing to load, since timers are claimed from the store when due."""
        if not self.clock.virtual:
            log.info(
                "engine started: %d rules, timers claimed when due", len(self.rules)
            )
            return
        pending = await self.store.pending_timers()
        for timer in pending:
            self._timers[timer.timer_id] = self._queue.push(timer.due, "timer", timer)
        log.info(
            "engine started: %d rules, %d pending timers", len(self.rules), len(pending)
        )

    def set_rules(self, rules: RuleSet, app: str | None = None) -> None:
        """Swap the rule set (of ``app``, if given); pending timers fire under
        the rule of that name, and live sessions keep the match state of the
        rules that kept their name and shape (:meth:`RuleSet.keep_state`)."""
        if app is None:
            old, self.rules = self.rules, rules
        else:
            old = self.rules_for(app)
            self.app_rules[app] = rules
        now = self.clock.now()
        for session in self._sessions.values():
            if self.rules_for(session.app) is rules:
                rules.keep_state(session, old, now)
                self._arm_idle_rules(session)

    def rules_for(self, app: str) -> RuleSet:
        """The rule set sessions and timers of ``app`` run under."""
        return self.app_rules.get(app, self.rules)

    def policy_for(self, app: str) -> AppPolicy:
        """The config's policy of ``app``: global caps, quiet hours, schemes."""
        return self.app_policy.get(app, DEFAULT_POLICY)

    def _caps(
        self, app: str, user: str, session: str, rule: CompiledRule, channel: str
    ) -> list[tuple[str, CompiledLimit, str]]:
        """Every cap a send of ``rule`` counts against: ``(key, limit, name)``.

        The rule's own limits come first, then the app's global caps, which
        a webhook does not count against: it reaches a system, not the user.
        """
        caps = [
            (lim.key(app, user, session, rule.name), lim, lim.describe())
            for lim in rule.limits
        ]
        policy = self.policy_for(app)
        if policy.caps and channel != "webhook":
            caps += [
                (
                    policy.cap_key(lim, app, user, session),
                    lim,
                    lim.describe("global cap"),
                )
                for lim in policy.caps
            ]
        return caps

    @property
    def sessions(self) -> int:
        return len(self._sessions)

    def next_due(self) -> float | None:
        return self._queue.peek_due()

    def pending(self) -> int:
        """Live deadlines of every kind (timers, grace, idle, absence)."""
        return len(self._queue)

    # -- connections -------------------------------------------------------

    async def open(
        self,
        peer: Peer,
        device: Device,
        session_id: str | None = None,
        welcome: Callable[[Session, bool], None] | None = None,
    ) -> tuple[Session, bool]:
        """Attach a new connection: resume ``session_id`` or start a session.

        A session id that is live for the same user resumes it (a reconnect
        inside the grace period); any other id names the new session, so that
        replays keep their recorded ids.

        Args:
            welcome: Called with the session and whether it was resumed,
                before any ``when session starts`` rule runs: the gateway
                answers ``hello`` there, so that the ``welcome`` frame comes
                before an in-app message those rules send.
        """
        now = self.clock.now()
        app, user = device.app, device.user
        if session_id is not None:
            live = self._sessions.get((app, session_id))
            if live is not None and live.user == user:
                live.attach(peer)
                if live.grace is not None:
                    self._queue.cancel(live.grace)
                    live.grace = None
                self._by_peer[peer] = live
                log.debug("session %s resumed", live.id)
                if welcome is not None:
                    welcome(live, True)
                return live, True
            if live is not None:
                session_id = None  # another user's id: never share it
        sid = session_id or uuid.uuid4().hex
        await self.store.upsert_device(device)
        profile = await self.store.get_user(app, user)
        session = Session(
            app,
            user,
            sid,
            now,
            device={
                "id": device.device_id,
                "platform": device.platform,
                "timezone": device.timezone,
                "lang": device.lang,
                "app_version": device.app_version,
            },
            user_attributes=dict(profile.attributes),
        )
        session.attach(peer)
        self._by_peer[peer] = session
        self._sessions[(app, sid)] = session
        self._by_user.setdefault((app, user), set()).add(session)
        session.idle = self._push(self._idle_due(session), "idle", session)
        log.debug(
            "session %s started for %s/%s",
            sid,
            app,
            user,
            extra={
                "event": "session_started",
                "app": app,
                "user": user,
                "session": sid,
            },
        )
        self._arm_idle_rules(session)
        if welcome is not None:
            welcome(session, False)
        for rule in self.rules_for(session.app).on_session_start(session):
            await self._trigger(session, rule, rule.snapshot({}, session), now)
        return session, False

    def session_of(self, peer: Peer) -> Session | None:
        return self._by_peer.get(peer)

    async def event(self, peer: Peer, name: str, props: dict[str, Any]) -> None:
        """Match one event of the peer's session and act on what fires."""
        session = self._by_peer.get(peer)
        if session is None:
            raise NoSessionError("send hello before events")
        now = self.clock.now()
        self.events_in += 1
        rules = self.rules_for(session.app)
        matches = rules.on_event(session, name, props, now)
        for rule in rules.unless_matches(session, name, props):
            await self._suppress(session, rule, name, now)
        for rule, due, bound in matches:
            session.bound = bound
            snapshot = rule.snapshot(props, session)
            if due is None:
                await self._trigger(session, rule, snapshot, now)
            else:
                self._push(due, "absence", (session, rule, due, snapshot))
        session.bound = _UNBOUND
        for rule in rules.goal_matches(session, name, props):
            goal = GoalEvent(
                app=session.app,
                rule=rule.name,
                user=session.user,
                session=session.id,
                at=now,
            )
            await self.store.record_goal(goal)
        if rules.idle_rules:
            # Most rule sets have no idle rule: skip the call on every event.
            self._arm_idle_rules(session)

    async def detach(self, peer: Peer) -> None:
        """The connection closed (or said ``bye``): start the grace period."""
        session = self._by_peer.pop(peer, None)
        if session is None or session.state is SessionState.ENDED:
            return
        if session.detach(peer):
            session.grace = self._push(self.clock.now() + self.grace, "grace", session)

    async def end(self, peer: Peer) -> None:
        """The client ended its session explicitly."""
        session = self._by_peer.get(peer)
        if session is None:
            raise NoSessionError("no session to end")
        await self._end(session, "ended by the client", CLOSE_ENDED)

    async def identify(self, peer: Peer, user: str, traits: dict[str, Any]) -> None:
        """The peer's session now belongs to ``user``; ``traits`` go into
        that user's profile (``user.*``).

        What the session saw so far stays with it, so a rule half-way
        through (a cart before signing in) goes on for the known user.
        Timers already scheduled, caps already counted and subscriptions
        registered before stay with the anonymous id.
        """
        session = self._by_peer.get(peer)
        if session is None:
            raise NoSessionError("send hello before identify")
        app = session.app
        if traits:
            await self.store.set_user_attributes(app, user, traits)
        if user != session.user:
            before = self._by_user.get((app, session.user))
            if before is not None:
                before.discard(session)
                if not before:
                    del self._by_user[(app, session.user)]
            log.debug("session %s now belongs to %s/%s", session.id, app, user)
            session.user = user
            self._by_user.setdefault((app, user), set()).add(session)
            info = session.device
            await self.store.upsert_device(
                Device(
                    app=app,
                    user=user,
                    device_id=str(info["id"]),
                    platform=str(info["platform"]),
                    timezone=str(info["timezone"]),
                    lang=info["lang"],
                    app_version=info["app_version"],
                    last_seen=self.clock.now(),
                )
            )
        profile = await self.store.get_user(app, user)
        session.user_attributes = dict(profile.attributes)

    async def erase_user(self, app: str, user: str) -> ErasureReport:
        """Forget a user: close their sockets (``CLOSE_ERASED``), drop their
        live sessions without running post-session rules, cancel their
        timers, then erase them from the store."""
        for session in list(self._by_user.pop((app, user), ())):
            session.end(self.clock.now(), "user erased")
            for entry in (session.grace, session.idle):
                if entry is not None:
                    self._queue.cancel(entry)
            session.grace = session.idle = None
            # Absence deadlines fire only while their window is open.
            session.absence.clear()
            session.after_end = []
            self._sessions.pop((app, session.id), None)
            for peer in list(session.peers):
                self._by_peer.pop(peer, None)
                peer.close(CLOSE_ERASED, "user erased")
            session.peers.clear()
        for timer_id, entry in list(self._timers.items()):
            timer: PendingTimer = self._queue.ref(entry)
            if timer.app == app and timer.user == user:
                self._queue.cancel(entry)
                del self._timers[timer_id]
        return await self.store.erase_user(app, user)

    # -- time --------------------------------------------------------------

    async def advance(self, until: float | None = None) -> None:
        """Fire every deadline due up to ``until`` (default: now), in order.

        A virtual clock is moved to each deadline as it fires, so that the
        decisions of a replay carry the time they would have had live.
        """
        clock = self.clock
        limit = clock.now() if until is None else until
        while (entry := self._queue.pop_due(limit)) is not None:
            if isinstance(clock, VirtualClock):
                clock.set(entry.due)
            await self._fire_deadline(entry)
        if isinstance(clock, VirtualClock) and until is not None:
            clock.set(until)

    async def drain(self) -> None:
        """Virtual clocks only: run on until no deadline is pending."""
        if not self.clock.virtual:
            raise RuntimeError("drain() would wait in real time; use advance()")
        while (due := self._queue.peek_due()) is not None:
            await self.advance(due)

    def _push(self, due: float, kind: str, ref: Any) -> Deadline:
        head = self._queue.peek_due()
        entry = self._queue.push(due, kind, ref)
        if (head is None or due < head) and self.on_new_deadline is not None:
            self.on_new_deadline()
        return entry

    def _arm_idle_rules(self, session: Session) -> None:
        """Keep one deadline per session for its next ``when idle`` rule."""
        quiet = self.rules_for(session.app).next_idle(session)
        if quiet is None:
            return
        due = session.last_at + quiet
        entry = session.idle_rule
        if entry is not None:
            set_at = self._queue.due(entry)
            if set_at is not None and set_at <= due:
                return  # fires early and moves itself on, as the idle timeout
            self._queue.cancel(entry)
        session.idle_rule = self._push(due, "idle_rule", session)

    async def _fire_idle_rules(self, entry: Due) -> None:
        session: Session = entry.ref
        if session.idle_rule != entry.handle or session.state is SessionState.ENDED:
            return
        session.idle_rule = None
        quiet = self.rules_for(session.app).next_idle(session)
        if quiet is None:
            return
        if entry.due < session.last_at + quiet:
            self._arm_idle_rules(session)  # events came since it was set
            return
        for rule in self.rules_for(session.app).on_idle(
            session, entry.due - session.last_at
        ):
            await self._trigger(session, rule, rule.snapshot({}, session), entry.due)
        self._arm_idle_rules(session)

    def _idle_due(self, session: Session) -> float:
        # The session ends after MORE than ``idle`` seconds without an event:
        # an event at exactly the limit still belongs to it (replays split
        # recorded sessions by the same rule).
        return math.nextafter(session.last_at + self.idle, math.inf)

    async def _fire_deadline(self, entry: Due) -> None:
        kind = entry.kind
        if kind == "timer":
            timer: PendingTimer = entry.ref
            self._timers.pop(timer.timer_id, None)
            await self._fire_timer(timer)
        elif kind == "grace":
            session: Session = entry.ref
            if session.state is SessionState.DETACHED and session.grace == entry.handle:
                await self._end(session, "disconnected", CLOSE_ENDED)
        elif kind == "idle":
            session = entry.ref
            if session.state is SessionState.ENDED:
                return
            due = self._idle_due(session)
            if entry.due >= due:
                await self._end(session, "idle", CLOSE_IDLE)
            else:
                # Events moved the deadline; one entry per session at a time
                # keeps the queue from growing with every event.
                session.idle = self._push(due, "idle", session)
        elif kind == "idle_rule":
            await self._fire_idle_rules(entry)
        elif kind == "absence":
            session, rule, due, snapshot = entry.ref
            if session.absence.get(rule.name) == due:
                del session.absence[rule.name]
                session.armed_bound.pop(rule.name, None)
                # A reload since the window opened kept it only for a rule of
                # the same name and shape: that rule, as it is now, fires.
                current = self.rules_for(session.app).by_name.get(rule.name, rule)
                await self._trigger(session, current, snapshot, entry.due)
        else:  # pragma: no cover - every kind pushed is handled above
            raise RuntimeError(f"unknown deadline kind {kind!r}")

    # -- sessions ending ---------------------------------------------------

    async def _end(self, session: Session, reason: str, code: int) -> None:
        now = self.clock.now()
        session.end(now, reason)
        for entry in (session.grace, session.idle, session.idle_rule):
            if entry is not None:
                self._queue.cancel(entry)
        session.grace = session.idle = session.idle_rule = None
        self._sessions.pop((session.app, session.id), None)
        users = self._by_user.get((session.app, session.user))
        if users is not None:
            users.discard(session)
            if not users:
                del self._by_user[(session.app, session.user)]
        for peer in list(session.peers):
            self._by_peer.pop(peer, None)
            peer.close(code, f"session ended: {reason}")
        session.peers.clear()
        log.info(
            "session %s of %s/%s ended: %s",
            session.id,
            session.app,
            session.user,
            reason,
            extra={
                "event": "session_ended",
                "app": session.app,
                "user": session.user,
                "session": session.id,
                "reason": reason,
            },
        )

        empty: dict[str, Any] = {}
        for rule in self.rules_for(session.app).on_session_end(session):
            await self._trigger(session, rule, rule.snapshot(empty, session), now)
        held, session.after_end = session.after_end, []
        for rule, snapshot, triggered_at in held:
            assert rule.wait is not None
            await self._schedule(session, rule, snapshot, triggered_at, now + rule.wait)

    # -- triggers, timers and sends ----------------------------------------

    async def _trigger(
        self,
        session: Session,
        rule: CompiledRule,
        snapshot: dict[str, Any],
        now: float,
    ) -> None:
        if rule.guard is not None and not rule.guard({}, session):
            return  # like a where: no trigger, nothing to record
        if await self._blocked(session.app, session.user, session.id, rule, now, now):
            return
        if rule.at is not None:
            zone = str(session.device.get("timezone") or "UTC")
            due = next_local(now, rule.at, zone)
            if due > now:
                await self._schedule(session, rule, snapshot, now, due)
                return
        if rule.wait is None:
            await self._send(session.app, session.user, session.id, rule, snapshot, now)
        elif rule.wait_after_end and session.state is not SessionState.ENDED:
            session.after_end.append((rule, snapshot, now))
        else:
            await self._schedule(session, rule, snapshot, now, now + rule.wait)

    async def _schedule(
        self,
        session: Session,
        rule: CompiledRule,
        snapshot: dict[str, Any],
        triggered_at: float,
        due: float,
    ) -> None:
        timer = PendingTimer(
            timer_id=uuid.uuid4().hex,
            app=session.app,
            user=session.user,
            session=session.id,
            rule=rule.name,
            due=due,
            triggered_at=triggered_at,
            context={"snapshot": snapshot},
        )
        await self._add_timer(timer)

    async def _add_timer(self, timer: PendingTimer) -> None:
        await self.store.add_timer(timer)
        if self.clock.virtual:
            # Live, timers are claimed from the store (engine.timers); only a
            # virtual clock fires them from the queue, in a fixed order.
            self._timers[timer.timer_id] = self._push(timer.due, "timer", timer)

    async def _fire_timer(self, timer: PendingTimer) -> None:
        claimed = await self.store.claim_timer(timer.timer_id)
        if claimed is None:
            return  # cancelled by an ``unless`` event, or fired already
        await self.fire_claimed(claimed)

    async def fire_claimed(
        self,
        claimed: PendingTimer,
        claim: Claim | None = None,
        settles: list[_Settle] | None = None,
    ) -> None:
        """Send a timer's message; with a ``claim``, only if it settles.

        Args:
            settles: When given, the settle of ``claim`` and the decision
                after it are appended here instead of done now; see
                :meth:`fire_batch`.
        """
        rule = self.rules_for(claimed.app).by_name.get(claimed.rule)
        if rule is None:

            async def dropped() -> None:
                await self._decide(
                    claimed.app,
                    claimed.rule,
                    claimed.user,
                    claimed.session,
                    "dropped",
                    "the rule is no longer in the rule set",
                    "-",
                    claimed.triggered_at,
                )

            late = "timer %s settled elsewhere"
            await self._settle_then(claim, settles, dropped, late, logging.INFO)
            return
        snapshot = claimed.context.get("snapshot", {})
        await self._send(
            claimed.app,
            claimed.user,
            claimed.session,
            rule,
            snapshot,
            claimed.triggered_at,
            claim,
            settles,
        )

    async def fire_batch(self, claims: Sequence[Claim]) -> None:
        """Fire claimed timers in order, then settle them in one store call.

        Each send still passes its fence (:meth:`Store.holds`) just before
        it leaves; the settles, and the decisions that follow them, wait
        for the end of the batch, so that settling costs one round trip
        per batch (:meth:`Store.finish_many`) instead of one per timer. A
        process that dies inside a batch leaves its timers to be claimed
        again after the lease; their sends then find their idempotency
        keys theirs already and count as resends (see :meth:`_push_out`).
        """
        settles: list[_Settle] = []
        try:
            for claim in claims:
                await self.fire_claimed(claim.timer, claim, settles)
        finally:
            # Even when a send raised: what went out before it is settled.
            if settles:
                done = await self.store.finish_many([s[0] for s in settles])
                for (claim, decide, late, level), ok in zip(settles, done, strict=True):
                    if ok:
                        await decide()
                    else:
                        log.log(level, late, claim.timer.timer_id)

    async def _settle_then(
        self,
        claim: Claim | None,
        settles: list[_Settle] | None,
        decide: Callable[[], Awaitable[None]],
        late: str,
        level: int,
    ) -> None:
        """Record a decision, after settling the claim if there is one.

        A claimed timer decides once: the claimant fenced off here (its
        lease ran out and another process claimed the timer) records
        nothing; ``late`` (with the timer id) is logged at ``level``.
        """
        if claim is None:
            await decide()
        elif settles is not None:
            settles.append((claim, decide, late, level))
        elif await self.store.finish(claim):
            await decide()
        else:
            log.log(level, late, claim.timer.timer_id)

    async def _blocked(
        self,
        app: str,
        user: str,
        session: str,
        rule: CompiledRule,
        triggered_at: float,
        now: float,
    ) -> bool:
        """Consent and caps at trigger time: no point waiting to be refused."""
        channel = rule.action.channel
        profile = await self.store.get_user(app, user)
        if not profile.consent:
            await self._decide(
                app,
                rule.name,
                user,
                session,
                "no_consent",
                "the user has not consented to messages",
                channel,
                triggered_at,
            )
            return True
        # The channel of this user's variant decides whether global caps count.
        sent_on = choose_action(rule, user)[0].channel
        for key, limit, name in self._caps(app, user, session, rule, sent_on):
            since = limit.since(now, profile.timezone)
            if await self.store.cap_count(key, since) >= limit.count:
                await self._decide(
                    app,
                    rule.name,
                    user,
                    session,
                    "capped",
                    f"{name} reached",
                    channel,
                    triggered_at,
                )
                return True
        return False

    async def _send(
        self,
        app: str,
        user: str,
        session: str,
        rule: CompiledRule,
        snapshot: dict[str, Any],
        triggered_at: float,
        claim: Claim | None = None,
        settles: list[_Settle] | None = None,
    ) -> None:
        now = self.clock.now()
        action, variant = choose_action(rule, user)
        channel = action.channel

        async def skip(decision: str, reason: str) -> None:
            async def decide() -> None:
                await self._decide(
                    app,
                    rule.name,
                    user,
                    session,
                    decision,
                    reason,
                    channel,
                    triggered_at,
                )

            late = "timer %s settled elsewhere; skip refused"
            await self._settle_then(claim, settles, decide, late, logging.INFO)

        suppressed = await self.store.suppressed_at(app, user, rule.name)
        if suppressed is not None and suppressed > triggered_at:
            await skip("suppressed", f"an unless event arrived at {iso(suppressed)}")
            return
        profile = await self.store.get_user(app, user)
        if not profile.consent:
            await skip("no_consent", "the user withdrew consent before the send")
            return
        reason = await self._policy_at_send(
            app, user, session, rule, snapshot, triggered_at, profile
        )
        if reason is not None:
            # An empty decision is a deferral: a new timer carries the send,
            # and the record says why it did not go now.
            decision, why = reason
            await skip(decision or "deferred", why)
            return

        peers: list[Any] = []
        targets: list[Any] = []
        if channel == "inapp":
            peers = [
                peer
                for live in self._by_user.get((app, user), ())
                for peer in live.peers
            ]
            if not peers and action.else_push:
                channel = "push"
            elif not peers:
                await skip("unreachable", "no open socket for an in-app message")
                return
        if channel == "webhook":
            # A webhook has no subscription: the config names its URL, the
            # rule only its name; without a webhook transport the decision
            # goes to the fallback (the outbox) like any push.
            name = action.webhook or ""
            configured = "webhook" in self.transports
            targets = [webhook_target(app, user, name)] if configured else []
            if not targets and self.fallback is None:
                await skip("unreachable", "no webhook transport is configured")
                return
        elif channel == "push":
            subscriptions = await self.store.subscriptions(app, user)
            targets = [s for s in subscriptions if s.channel in self.transports]
            if not targets and self.fallback is None:
                await skip(
                    "unreachable", "no push subscription on a configured channel"
                )
                return

        fields = action.render(snapshot)
        if variant is not None:
            fields["variant"] = variant
        link = fields.get("link")
        schemes = self.policy_for(app).link_schemes
        if link is not None and (problem := link_problem(link, schemes)) is not None:
            await skip("failed", f"the link {link[:200]!r} is refused: {problem}")
            return

        # The rule's limits and the app's global caps are taken in one atomic
        # step: a send counts against all of them or against none.
        caps = self._caps(app, user, session, rule, channel)
        if caps:
            taken = [
                (key, lim.count, lim.since(now, profile.timezone))
                for key, lim, _ in caps
            ]
            send_id = None if claim is None else claim.timer.timer_id
            full = await self.store.cap_take_all(taken, now, send_id)
            if full is not None:
                await skip("capped", f"{caps[full][2]} reached")
                return

        if held_out(rule, user):
            # Last of all the checks, so that a held-out user is one who
            # would have been sent the message: reachable, under the caps
            # (whose slot it takes, as a send would), and at the moment the
            # send would have left. Both groups then differ only in the
            # message, which is what a holdout comparison needs.
            await skip("held_out", f"in the {rule.holdout:g}% holdout of this rule")
            return
        if claim is not None and not await self.store.holds(claim):
            # The fence: another process claimed the timer after this one's
            # lease ran out, so this late send is refused.
            log.info("timer %s claimed again; late send refused", claim.timer.timer_id)
            return
        message = OutboundMessage(
            # A timer's message carries the timer id as its idempotency key:
            # sent again after a crash between send and settle, it is the
            # same message to whoever deduplicates.
            id=uuid.uuid4().hex if claim is None else claim.timer.timer_id,
            app=app,
            user=user,
            session=session,
            rule=rule.name,
            channel=channel,
            at=now,
            title=fields.get("title", ""),
            body=fields.get("body"),
            link=fields.get("link"),
            ttl=fields.get("ttl"),
            image=fields.get("image"),
            urgency=fields.get("urgency"),
            collapse=fields.get("collapse"),
            data=fields.get("data"),
            webhook=fields.get("webhook"),
        )
        if channel == "inapp":
            frame = {"type": "message", **message.payload()}
            delivered = sum(1 for peer in peers if peer.deliver(frame))
            ok, detail = (
                delivered > 0,
                f"delivered to {delivered} of {len(peers)} sockets",
            )
        else:
            ok, detail = await self._push_out(
                message, targets, triggered_at, claimed=claim is not None
            )

        async def decide() -> None:
            await self._decide(
                app,
                rule.name,
                user,
                session,
                "sent" if ok else "failed",
                detail,
                channel,
                triggered_at,
                fields,
            )

        # An operator should look: the send went out from a process whose
        # lease had run out, so the timer may be sent twice.
        late = "timer %s was claimed again while its send went out"
        await self._settle_then(claim, settles, decide, late, logging.WARNING)

    async def _policy_at_send(
        self,
        app: str,
        user: str,
        session: str,
        rule: CompiledRule,
        snapshot: dict[str, Any],
        triggered_at: float,
        profile: Any,
    ) -> tuple[str, str] | None:
        """``if`` again, quiet hours (the rule's or the app's): why not to
        send now, if so.

        Returns ``None`` to send, ``(decision, reason)`` to record a skip,
        or ``("", reason)`` when the send was deferred to the end of the
        quiet hours (a durable timer sends it then).
        """
        if rule.guard_at_send is not None:
            # The user's profile as it is now; the session's facts as they
            # were at the trigger, since the session may be over.
            standin = Session(app, user, session, triggered_at, {}, profile.attributes)
            if not rule.guard_at_send(snapshot, standin):
                return "unmet", "the 'if' condition no longer held at send time"
        now = self.clock.now()
        # A rule's own quiet hours win over the app's default ones.
        quiet = rule.quiet or self.policy_for(app).quiet
        if quiet is not None:
            until = quiet_until(quiet, now, profile.timezone)
            if until is not None and quiet.drop:
                return "quiet", f"inside quiet hours until {iso(until)}; dropped"
            if until is not None:
                timer = PendingTimer(
                    timer_id=uuid.uuid4().hex,
                    app=app,
                    user=user,
                    session=session,
                    rule=rule.name,
                    due=until,
                    triggered_at=triggered_at,
                    context={"snapshot": snapshot},
                )
                await self._add_timer(timer)
                return "", f"inside quiet hours; deferred to {iso(until)}"
        return None

    async def _push_out(
        self,
        message: OutboundMessage,
        targets: list[Any],
        triggered_at: float,
        *,
        claimed: bool = False,
    ) -> tuple[bool, str]:
        """Send to every target; the reason names who took it or why not.

        A claimed timer's send claims the trigger's idempotency key first,
        in the delivery queue or here. Found claimed by the same message
        id (the timer id), it is the resend of a timer whose claimant died
        between that claim and the settle: it may or may not have gone
        out, so it goes again, except to a transport that remembers it
        (the outbox). At-least-once claiming, effectively-once delivery.
        """
        from sessionpush.transports.queue import idempotency_key

        key = idempotency_key(
            message.app, message.user, message.rule, message.session, triggered_at
        )
        if targets and self.delivery is not None:
            return await self.delivery.submit(message, targets, key)
        resend = False
        if claimed:
            owner = await self.store.claim_send(key, message.id, message.at)
            if owner is not None and owner != message.id:
                return False, f"duplicate trigger: message {owner} was already sent"
            resend = owner is not None
        if not targets:
            assert self.fallback is not None
            pairs = [(self.fallback, None)]
        else:
            pairs = [(self.transports[s.channel], s) for s in targets]
        took, refused = [], []
        for transport, subscription in pairs:
            if (
                resend
                and isinstance(transport, RemembersSends)
                and transport.has_sent(message.id)
            ):
                took.append(f"{transport.name} (before a crash)")
                continue
            result = await transport.send(message, subscription)
            if result.ok:
                took.append(transport.name)
            else:
                refused.append(f"{transport.name}: {result.detail}")
        if took:
            return True, "delivered by " + ", ".join(took)
        return False, "; ".join(refused)

    async def _suppress(
        self, session: Session, rule: CompiledRule, event: str, now: float
    ) -> None:
        """An ``unless`` event: cancel the user's pending sends of ``rule``."""
        app, user = session.app, session.user
        await self.store.mark_suppressed(app, user, rule.name, now)
        reason = f"'{event}' arrived at {iso(now)} before the send"
        channel = rule.action.channel
        for timer in await self.store.cancel_timers(app, user, rule.name, now):
            entry = self._timers.pop(timer.timer_id, None)
            if entry is not None:
                self._queue.cancel(entry)
            await self._decide(
                app,
                rule.name,
                user,
                timer.session,
                "suppressed",
                reason,
                channel,
                timer.triggered_at,
            )
        for live in list(self._by_user.get((app, user), ())):
            # An open absence window has not triggered yet; the event that
            # cancels its sends closes it too, on every session of the user.
            live.absence.pop(rule.name, None)
            live.armed_bound.pop(rule.name, None)
            kept = []
            for held in live.after_end:
                # By name: a trigger held from before a reload holds the
                # rule object of the old rule set.
                if held[0].name == rule.name:
                    await self._decide(
                        app,
                        rule.name,
                        user,
                        live.id,
                        "suppressed",
                        reason,
                        channel,
                        held[2],
                    )
                else:
                    kept.append(held)
            live.after_end = kept

    async def _decide(
        self,
        app: str,
        rule: str,
        user: str,
        session: str,
        decision: str,
        reason: str,
        channel: str,
        triggered_at: float,
        message: dict[str, Any] | None = None,
    ) -> None:
        record = Decision(
            app=app,
            rule=rule,
            user=user,
            session=session,
            decision=decision,
            reason=reason,
            at=self.clock.now(),
            channel=channel,
            triggered_at=triggered_at,
            message=message,
        )
        await self.store.record_decision(record)
        log.debug(
            "%s %s for %s/%s: %s",
            rule,
            decision,
            app,
            user,
            reason,
            extra={
                "event": "decision",
                "rule": rule,
                "decision": decision,
                "app": app,
                "user": user,
                "session": session,
            },
        )
        for listener in self.listeners:
            listener(record)
