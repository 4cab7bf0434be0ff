""" "Why did user U (not) get rule R?": one user's decision trail.

Each entry is one decision, newest first, with the rule's outcome said in
plain words, what became of the message when there was one (delivered,
opened, clicked) and whether the user reached the rule's goal after it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import msgspec

from sessionpush.engine.clock import iso
from sessionpush.engine.rules import CompiledRule
from sessionpush.report.outcomes import (
    converted_exposures,
    is_exposure,
    link_messages,
)
from sessionpush.store.base import Decision, DeliveryOutcome, GoalEvent

__all__ = ["ExplainEntry", "explain", "explain_text", "plain_words"]


class ExplainEntry(msgspec.Struct, kw_only=True):
    """One decision about the user, as the operator reads it."""

    at: str
    triggered_at: str
    rule: str
    session: str
    channel: str
    decision: str
    reason: str
    explanation: str
    variant: str | None = None
    delivery: list[str] = []
    converted: bool | None = None


_WORDS = {
    "sent": "sent",
    "failed": "not delivered",
    "held_out": "not sent: the user is in the rule's holdout (the group kept "
    "without messages to measure the rule)",
    "suppressed": "not sent: cancelled by an unless event",
    "capped": "not sent: a limit was reached",
    "no_consent": "not sent: no consent",
    "unreachable": "not sent: nowhere to deliver it",
    "quiet": "not sent: inside quiet hours, and the rule drops such sends",
    "deferred": "not sent yet: inside quiet hours, deferred",
    "unmet": "not sent: the 'if' condition no longer held at send time",
    "dropped": "not sent: the rule was removed while the send waited",
}


def plain_words(decision: Decision) -> str:
    """The decision and its reason as one sentence."""
    head = _WORDS.get(decision.decision, decision.decision)
    return f"{head} ({decision.reason})"


def explain(
    user: str,
    rules: Sequence[CompiledRule],
    decisions: Sequence[Decision],
    goals: Iterable[GoalEvent],
    outcomes: Iterable[DeliveryOutcome],
    *,
    rule: str | None = None,
    app: str | None = None,
) -> list[ExplainEntry]:
    """The user's decisions, newest first, each with its outcome in words."""
    mine = [
        d
        for d in decisions
        if d.user == user
        and (rule is None or d.rule == rule)
        and (app is None or d.app == app)
    ]
    outcomes = [o for o in outcomes if o.user == user]
    goals = [g for g in goals if g.user == user]
    delivery = link_messages(mine, outcomes)
    windows = {r.name: r.goal.within for r in rules if r.goal is not None}
    converted = converted_exposures(mine, goals, windows)
    entries = []
    for index, decision in enumerate(mine):
        variant = (decision.message or {}).get("variant")
        entries.append(
            ExplainEntry(
                at=iso(decision.at),
                triggered_at=iso(decision.triggered_at),
                rule=decision.rule,
                session=decision.session,
                channel=decision.channel,
                decision=decision.decision,
                reason=decision.reason,
                explanation=plain_words(decision),
                variant=variant if isinstance(variant, str) else None,
                delivery=sorted(delivery.get(index, ())),
                converted=(index in converted)
                if decision.rule in windows and is_exposure(decision)
                else None,
            )
        )
    entries.reverse()
    return entries


def explain_text(entries: Sequence[ExplainEntry]) -> str:
    """The trail as plain lines, newest first."""
    if not entries:
        return "no decisions recorded for this user"
    lines = []
    for e in entries:
        extra = []
        if e.variant:
            extra.append(f"variant {e.variant}")
        if e.delivery:
            extra.append("delivery: " + ", ".join(e.delivery))
        if e.converted is not None:
            extra.append("converted" if e.converted else "not converted")
        tail = f" [{'; '.join(extra)}]" if extra else ""
        lines.append(f"{e.at}  {e.rule}: {e.explanation}{tail}")
    return "\n".join(lines)
