"""Per-send policy that needs no store: holdout, variants, quiet hours, and
what an app's config adds to every rule (:class:`AppPolicy`).

Holdout and variant choices must be the same for a user in every process,
after every restart and in every replay, so they come from a hash of the
rule and the user, never from a random generator or process state. The two
use different salts, so being held out says nothing about the variant.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sessionpush.engine.calendar import in_window, local_minutes, next_local
from sessionpush.engine.rules import (
    CompiledAction,
    CompiledLimit,
    CompiledRule,
    QuietWindow,
)

__all__ = [
    "DEFAULT_POLICY",
    "GLOBAL_CAP_RULE",
    "AppPolicy",
    "bucket",
    "choose_action",
    "held_out",
    "quiet_until",
]

#: The rule part of a global cap's key. No rule name can contain ``*``, so a
#: global cap never shares a counter with a rule's own limit, and the key
#: still starts with the user's prefix (``store.base.user_cap_prefix``), which
#: erasure and Redis Cluster slots rely on.
GLOBAL_CAP_RULE = "*"


@dataclass(frozen=True, slots=True)
class AppPolicy:
    """What an app's config adds to every rule of the app.

    ``caps`` count the sends of all the app's rules together, per user
    (webhooks are not sends to the user and do not count); ``quiet`` applies
    to every rule without quiet hours of its own; ``link_schemes`` are the
    app schemes a rendered link may use besides ``https:`` and paths, or
    ``None`` (development mode) for any scheme that is not forbidden.
    """

    caps: tuple[CompiledLimit, ...] = ()
    quiet: QuietWindow | None = None
    link_schemes: frozenset[str] | None = None

    def cap_key(self, limit: CompiledLimit, app: str, user: str, session: str) -> str:
        """The counter of one global cap for one user (and session)."""
        return limit.key(app, user, session, GLOBAL_CAP_RULE)


#: The policy of an app without a config: development mode.
DEFAULT_POLICY = AppPolicy()

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
