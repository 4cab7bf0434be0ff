"""The delivery queue: every (message, device) pair is its own task.

Each pair is one task, so a slow push service or a user with a backed-off
device never holds anyone else up (no head-of-line blocking); a semaphore
per provider bounds how many requests are in flight to it at once; every
request has a timeout. A retry waits *outside* the semaphore, so a
rate-limited message does not occupy a slot while it sleeps.

An idempotency key per (rule, user, trigger) is claimed in the store
before anything is sent, so a trigger fired twice (a retried timer, a
restart between claim and record) hands one message to the providers. A
retry resends the same message: same id, same collapse key and topic, so a
device shows it once.

Answers change state here and only here: GONE deletes the subscription if
its endpoint or token is still the one that failed; DISABLE disables a
token unless it was registered again after the provider's answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

import msgspec

from sessionpush.engine.clock import Clock
from sessionpush.store.base import DeliveryOutcome, SentMessage, Store, Subscription
from sessionpush.transports.base import (
    DeliveryResult,
    OutboundMessage,
    Transport,
    Verdict,
)
from sessionpush.transports.retry import Backoff

__all__ = ["DeliveryQueue", "idempotency_key"]

log = logging.getLogger("sessionpush.transports")


def idempotency_key(
    app: str, user: str, rule: str, session: str, triggered_at: float
) -> str:
    """One key per trigger: the rule, the user and when and where it fired."""
    return f"{app}\x1f{user}\x1f{rule}\x1f{session}\x1f{triggered_at!r}"


class DeliveryQueue:
    """Hands messages to transports in the background and records outcomes.

    Args:
        transports: The transport of each channel, by channel name.
        store: Where outcomes, messages and subscription changes go.
        clock: The engine's clock (outcome times, retry times).
        concurrency: Requests in flight at once, per provider.
        timeout: Seconds one request may take before it counts as a retry.
        max_attempts: Attempts per device before the message fails.
        backoff: Retry delays; tests pass one with a tiny ``base``.
        sleep: How to wait before a retry (tests record instead of waiting).
        click_base: When set, links go through ``{click_base}/r/{id}`` so
            clicks are counted.
    """

    def __init__(
        self,
        transports: Mapping[str, Transport],
        store: Store,
        clock: Clock,
        *,
        concurrency: int = 64,
        timeout: float = 10.0,
        max_attempts: int = 5,
        backoff: Backoff | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        click_base: str | None = None,
    ) -> None:
        self.transports = dict(transports)
        self.store = store
        self.clock = clock
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff = backoff or Backoff()
        self._sleep = sleep
        self.click_base = click_base.rstrip("/") if click_base else None
        self._slots = {name: asyncio.Semaphore(concurrency) for name in transports}
        self._tasks: set[asyncio.Task[None]] = set()
        #: Called with every outcome and the seconds since its message was
        #: created (the gateway's delivery latency metrics).
        self.listeners: list[Callable[[DeliveryOutcome, float], None]] = []

    async def submit(
        self, message: OutboundMessage, targets: list[Subscription], key: str
    ) -> tuple[bool, str]:
        """Queue ``message`` to every target; return at once.

        Returns ``(False, why)`` when the key was claimed already (nothing
        is queued), else ``(True, what was queued)``.
        """
        owner = await self.store.claim_send(key, message.id, self.clock.now())
        if owner is not None:
            return False, f"duplicate trigger: message {owner} was already sent"
        await self.store.record_message(
            SentMessage(
                id=message.id,
                app=message.app,
                user=message.user,
                rule=message.rule,
                channel=message.channel,
                at=message.at,
                link=message.link,
            )
        )
        if self.click_base is not None and message.link is not None:
            message = msgspec.structs.replace(
                message, link=f"{self.click_base}/r/{message.id}"
            )
        for target in targets:
            await self._outcome(message, target, "sent", "queued")
            task = asyncio.create_task(self._deliver(message, target))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        names = ", ".join(f"{t.channel}:{t.device_id}" for t in targets)
        return True, f"queued to {names}"

    async def join(self) -> None:
        """Wait until every queued delivery has finished (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        """Cancel what is still waiting; its outcomes stay at the last step."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def _deliver(self, message: OutboundMessage, target: Subscription) -> None:
        try:
            await self._attempts(message, target)
        except Exception:
            log.exception("delivery of %s to %s failed", message.id, target.device_id)
            await self._outcome(message, target, "failed", "internal error")

    async def _attempts(self, message: OutboundMessage, target: Subscription) -> None:
        transport = self.transports[target.channel]
        for attempt in range(1, self.max_attempts + 1):
            async with self._slots[target.channel]:
                result = await self._send_once(transport, message, target)
            action = result.action
            if action is Verdict.DELIVERED:
                await self._outcome(message, target, "delivered", result.detail)
                return
            if action is Verdict.FAILED:
                await self._outcome(message, target, "failed", result.detail)
                return
            if action is Verdict.GONE:
                removed = await self.store.remove_subscription(
                    target.app,
                    target.user,
                    target.device_id,
                    target.channel,
                    target.address,
                )
                note = "subscription deleted" if removed else "re-subscribed since"
                await self._outcome(
                    message, target, "unsubscribed", f"{result.detail}; {note}"
                )
                return
            if action is Verdict.DISABLE:
                disabled = await self.store.disable_subscription(
                    target.app,
                    target.user,
                    target.device_id,
                    target.channel,
                    target.address,
                    result.detail,
                    registered_before=result.answered_at,
                )
                note = "token disabled" if disabled else "registered again since"
                await self._outcome(
                    message, target, "unsubscribed", f"{result.detail}; {note}"
                )
                return
            if attempt == self.max_attempts:
                break
            delay = self.backoff.delay(attempt, result.retry_after, result.min_backoff)
            await self._outcome(
                message,
                target,
                "retry",
                result.detail,
                retry_at=self.clock.now() + delay,
            )
            await self._sleep(delay)
        await self._outcome(
            message,
            target,
            "failed",
            f"gave up after {self.max_attempts} attempts: {result.detail}",
        )

    async def _send_once(
        self, transport: Transport, message: OutboundMessage, target: Subscription
    ) -> DeliveryResult:
        try:
            return await asyncio.wait_for(transport.send(message, target), self.timeout)
        except TimeoutError:
            return DeliveryResult(
                ok=False,
                detail=f"no answer within {self.timeout} s",
                verdict=Verdict.RETRY,
            )

    async def _outcome(
        self,
        message: OutboundMessage,
        target: Subscription,
        outcome: str,
        reason: str,
        retry_at: float | None = None,
    ) -> None:
        record = DeliveryOutcome(
            message_id=message.id,
            app=message.app,
            user=message.user,
            rule=message.rule,
            channel=target.channel,
            outcome=outcome,
            at=self.clock.now(),
            device_id=target.device_id,
            reason=reason,
            retry_at=retry_at,
        )
        await self.store.record_outcome(record)
        for listener in self.listeners:
            listener(record, record.at - message.at)
        log.debug("%s %s to %s: %s", message.id, outcome, target.device_id, reason)
