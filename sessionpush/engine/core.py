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
from the store with a lease, so any process may fire any timer; the claim
is settled (:meth:`Store.finish`) just before its decision, and a claimant
fenced off there sends nothing.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from sessionpush.engine.calendar import next_local
from sessionpush.engine.clock import Clock, VirtualClock, iso
from sessionpush.engine.deadlines import Deadline, DeadlineQueue
from sessionpush.engine.links import link_problem
from sessionpush.engine.policy import choose_action, held_out, quiet_until
from sessionpush.engine.rules import CompiledRule, RuleSet
from sessionpush.engine.session import Session, SessionState
from sessionpush.errors import SessionpushError
from sessionpush.store.base import (
    Claim,
    Decision,
    Device,
    GoalEvent,
    PendingTimer,
    Store,
)
from sessionpush.transports.base import OutboundMessage, Transport, webhook_target

if TYPE_CHECKING:
    from sessionpush.transports.queue import DeliveryQueue

__all__ = [
    "CLOSE_ENDED",
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


class NoSessionError(SessionpushError):
    """A frame that needs a session came on a connection without one."""


class Peer(Protocol):
    """A client connection as the engine sees it."""

    def deliver(self, frame: dict[str, Any]) -> bool:
        """Queue a frame to the client without waiting; False if it cannot."""

    def close(self, code: int, reason: str) -> None:
        """Close the connection soon, with a websocket close code."""


DecisionListener = Callable[[Decision], None]

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
    ) -> None:
        self.rules = rules
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

    def set_rules(self, rules: RuleSet) -> None:
        """Swap the rule set; pending timers fire under the rule of that name."""
        self.rules = rules

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
        self, peer: Peer, device: Device, session_id: str | None = None
    ) -> tuple[Session, bool]:
        """Attach a new connection: resume ``session_id`` or start a session.

        A session id that is live for the same user resumes it (a reconnect
        inside the grace period); any other id names the new session, so that
        replays keep their recorded ids.
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
        log.debug("session %s started for %s/%s", sid, app, user)
        self._arm_idle_rules(session)
        for rule in self.rules.on_session_start(session):
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
        matches = self.rules.on_event(session, name, props, now)
        for rule in self.rules.unless_matches(session, name, props):
            await self._suppress(session, rule, name, now)
        for rule, due, bound in matches:
            session.bound = bound
            snapshot = rule.snapshot(props, session)
            if due is None:
                await self._trigger(session, rule, snapshot, now)
            else:
                self._push(due, "absence", (session, rule, due, snapshot))
        session.bound = _UNBOUND
        for rule in self.rules.goal_matches(session, name, props):
            goal = GoalEvent(
                app=session.app,
                rule=rule.name,
                user=session.user,
                session=session.id,
                at=now,
            )
            await self.store.record_goal(goal)
        if self.rules.idle_rules:
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
        quiet = self.rules.next_idle(session)
        if quiet is None:
            return
        due = session.last_at + quiet
        entry = session.idle_rule
        if entry is not None:
            if entry.due <= due:
                return  # fires early and moves itself on, as the idle timeout
            self._queue.cancel(entry)
        session.idle_rule = self._push(due, "idle_rule", session)

    async def _fire_idle_rules(self, entry: Deadline) -> None:
        session: Session = entry.ref
        if session.idle_rule is not entry or session.state is SessionState.ENDED:
            return
        session.idle_rule = None
        quiet = self.rules.next_idle(session)
        if quiet is None:
            return
        if entry.due < session.last_at + quiet:
            self._arm_idle_rules(session)  # events came since it was set
            return
        for rule in self.rules.on_idle(session, entry.due - session.last_at):
            await self._trigger(session, rule, rule.snapshot({}, session), entry.due)
        self._arm_idle_rules(session)

    def _idle_due(self, session: Session) -> float:
        # The session ends after MORE than ``idle`` seconds without an event:
        # an event at exactly the limit still belongs to it (replays split
        # recorded sessions by the same rule).
        return math.nextafter(session.last_at + self.idle, math.inf)

    async def _fire_deadline(self, entry: Deadline) -> None:
        kind = entry.kind
        if kind == "timer":
            timer: PendingTimer = entry.ref
            self._timers.pop(timer.timer_id, None)
            await self._fire_timer(timer)
        elif kind == "grace":
            session: Session = entry.ref
            if session.state is SessionState.DETACHED and session.grace is entry:
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
            if session.absence.get(rule.index) == due:
                del session.absence[rule.index]
                session.armed_bound.pop(rule.index, None)
                await self._trigger(session, rule, snapshot, entry.due)
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
        )

        empty: dict[str, Any] = {}
        for rule in self.rules.on_session_end(session):
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
        self, claimed: PendingTimer, claim: Claim | None = None
    ) -> None:
        """Send a timer's message; with a ``claim``, only if it settles."""
        rule = self.rules.by_name.get(claimed.rule)
        if rule is None:
            if claim is not None and not await self.store.finish(claim):
                return
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
        )

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
        for limit in rule.limits:
            key = limit.key(app, user, session, rule.name)
            since = limit.since(now, profile.timezone)
            if await self.store.cap_count(key, since) >= limit.count:
                await self._decide(
                    app,
                    rule.name,
                    user,
                    session,
                    "capped",
                    f"{limit.describe()} reached",
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
    ) -> None:
        now = self.clock.now()
        action, variant = choose_action(rule, user)
        channel = action.channel

        async def settled() -> bool:
            # A claimed timer decides once: the claimant fenced off here
            # (its lease ran out and another process claimed the timer)
            # records nothing and sends nothing.
            if claim is None or await self.store.finish(claim):
                return True
            log.info("timer %s settled elsewhere; skip refused", claim.timer.timer_id)
            return False

        async def skip(decision: str, reason: str) -> None:
            if not await settled():
                return
            await self._decide(
                app, rule.name, user, session, decision, reason, channel, triggered_at
            )

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
            if reason[0]:
                await skip(*reason)
            else:
                await settled()  # deferred: a new timer carries the send
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
        if link is not None and (problem := link_problem(link)) is not None:
            await skip("failed", f"the link {link[:200]!r} is refused: {problem}")
            return

        if rule.limits:
            caps = [
                (
                    lim.key(app, user, session, rule.name),
                    lim.count,
                    lim.since(now, profile.timezone),
                )
                for lim in rule.limits
            ]
            send_id = None if claim is None else claim.timer.timer_id
            full = await self.store.cap_take_all(caps, now, send_id)
            if full is not None:
                await skip("capped", f"{rule.limits[full].describe()} reached")
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
            ok, detail = await self._push_out(message, targets, triggered_at)
        if claim is not None and not await self.store.finish(claim):
            log.warning(
                "timer %s was claimed again while its send went out",
                claim.timer.timer_id,
            )
            return
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
        """``if`` again, quiet hours, holdout: why not to send now, if so.

        Returns ``None`` to send, ``(decision, reason)`` to record a skip,
        or ``("", "")`` when the send was deferred to the end of the quiet
        hours (a durable timer sends it then).
        """
        if rule.guard_at_send is not None:
            # The user's profile as it is now; the session's facts as they
            # were at the trigger, since the session may be over.
            standin = Session(app, user, session, triggered_at, {}, profile.attributes)
            if not rule.guard_at_send(snapshot, standin):
                return "unmet", "the 'if' condition no longer held at send time"
        now = self.clock.now()
        if rule.quiet is not None:
            until = quiet_until(rule.quiet, now, profile.timezone)
            if until is not None and rule.quiet.drop:
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
                log.debug(
                    "%s for %s/%s deferred to %s", rule.name, app, user, iso(until)
                )
                return "", ""
        if held_out(rule, user):
            return "held_out", f"in the {rule.holdout:g}% holdout of this rule"
        return None

    async def _push_out(
        self, message: OutboundMessage, targets: list[Any], triggered_at: float
    ) -> tuple[bool, str]:
        """Send to every target; the reason names who took it or why not."""
        if targets and self.delivery is not None:
            from sessionpush.transports.queue import idempotency_key

            key = idempotency_key(
                message.app, message.user, message.rule, message.session, triggered_at
            )
            return await self.delivery.submit(message, targets, key)
        if not targets:
            assert self.fallback is not None
            pairs = [(self.fallback, None)]
        else:
            pairs = [(self.transports[s.channel], s) for s in targets]
        took, refused = [], []
        for transport, subscription in pairs:
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
            live.absence.pop(rule.index, None)
            kept = []
            for held in live.after_end:
                if held[0] is rule:
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
        log.debug("%s %s for %s/%s: %s", rule, decision, app, user, reason)
        for listener in self.listeners:
            listener(record)
