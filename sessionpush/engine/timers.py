"""Live durable timers: claim what is due from the store and fire it.

Any process may fire any due timer. :func:`fire_due` claims a batch under a
lease and fires each claim through the engine, which settles it with the
store just before its decision: a process that dies holding claims leaves
them to be claimed again once the lease runs out (at-least-once claim), and
the settle step lets one claimant through (effectively-once send).

No loop and no sleep here: the gateway calls :func:`fire_due` on its poll
interval, as the engine reads no clock and sleeps nowhere.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sessionpush.engine.core import Engine
    from sessionpush.store.base import PendingTimer

__all__ = ["DEFAULT_BATCH", "DEFAULT_LEASE", "fire_due"]

log = logging.getLogger("sessionpush.engine")

#: Timers claimed per call: enough to drain a burst in few round trips, few
#: enough to fire well inside one lease.
DEFAULT_BATCH = 200
#: Seconds a claim holds its timers. Firing one timer takes milliseconds;
#: the lease only bounds how long a dead process delays its claims.
DEFAULT_LEASE = 30.0


async def fire_due(
    engine: Engine, *, batch: int = DEFAULT_BATCH, lease: float = DEFAULT_LEASE
) -> int:
    """Claim up to ``batch`` due timers and fire them in due order.

    Returns:
        How many were claimed; ``batch`` means more may be waiting.
    """
    claims = await engine.store.claim_due(engine.clock.now(), batch, lease)
    # Timers due at the same moment go highest priority first, then in rule
    # order, as on a virtual clock: the first send takes a global cap's
    # last slot, and ``priority`` says which rule that should be.
    claims.sort(key=lambda claim: _order(engine, claim.timer))
    for claim in claims:
        await engine.fire_claimed(claim.timer, claim)
    if claims:
        log.debug("fired %d claimed timers", len(claims))
    return len(claims)


def _order(engine: Engine, timer: PendingTimer) -> tuple[float, int, int]:
    rule = engine.rules_for(timer.app).by_name.get(timer.rule)
    if rule is None:
        return (timer.due, 0, -1)
    return (timer.due, -rule.priority, rule.index)
