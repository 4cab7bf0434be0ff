"""Per-send policy that needs no store: holdout, variants, quiet hours.

Holdout and variant choices must be the same for a user in every process,
after every restart and in every replay, so they come from a hash of the
rule and the user, never from a random generator or process state. The two
use different salts, so being held out says nothing about the variant.
"""

from __future__ import annotations

import hashlib

from sessionpush.engine.calendar import in_window, local_minutes, next_local
from sessionpush.engine.rules import CompiledAction, CompiledRule, QuietWindow

__all__ = ["bucket", "choose_action", "held_out", "quiet_until"]

_BUCKETS = 10_000  # hundredths of a percent: shares like 12.5% are exact


def bucket(salt: str, rule: str, user: str) -> int:
    """A stable number in ``[0, 10000)`` for a rule and a user."""
    digest = hashlib.sha256(f"{salt}\x1f{rule}\x1f{user}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % _BUCKETS


def held_out(rule: CompiledRule, user: str) -> bool:
    """Whether ``user`` is in the rule's holdout slice."""
    if not rule.holdout:
        return False
    return bucket("holdout", rule.name, user) < round(rule.holdout * 100)


def choose_action(rule: CompiledRule, user: str) -> tuple[CompiledAction, str | None]:
    """The action this user gets, and the name of its variant if any."""
    if not rule.variants:
        return rule.action, None
    point = bucket("variant", rule.name, user)
    edge = 0.0
    for variant in rule.variants:
        edge += variant.percent * 100
        if point < round(edge):
            return variant.action, variant.name
    # Shares sum to 100 (the checker makes sure): only rounding lands here.
    last = rule.variants[-1]
    return last.action, last.name


def quiet_until(window: QuietWindow, now: float, zone: str) -> float | None:
    """When the quiet hours around ``now`` end, or ``None`` outside them.

    The start is inclusive and the end exclusive, in the user's local time.
    """
    if not in_window(local_minutes(now, zone), window.start, window.end):
        return None
    return next_local(now, window.end, zone)
