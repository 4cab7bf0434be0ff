"""The outcome model: what became of each rule's triggers, and conversions.

Everything is computed from three logs the store already keeps: the
decisions (one per trigger, plus a ``deferred`` step for each quiet-hours
deferral), the goal events of rules with a ``goal``, and the delivery
outcomes of messages handed to a provider.

Definitions (``docs/measurement.md`` says the same for operators):

- **triggered**: the trigger's final decision, whatever it was.
- **exposure**: a decision that put a user in one of the two groups the
  holdout compares. Treated: ``sent``, or ``failed`` after the message was
  rendered and handed to delivery (intent to treat: a provider refusing it
  does not move the user to the other group). Held out: ``held_out``, which
  the engine decides last, where the send would have left.
- **conversion**: a goal event of the rule, by the same user, more than 0
  and at most ``within`` seconds after an exposure. Each goal event converts
  at most one exposure (the latest open one before it) and each exposure is
  converted at most once.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import msgspec

from sessionpush.dsl.check import format_duration
from sessionpush.engine.rules import CompiledRule
from sessionpush.report.stats import Comparison, compare
from sessionpush.store.base import Decision, DeliveryOutcome, GoalEvent

__all__ = [
    "SKIP_KINDS",
    "Funnel",
    "Report",
    "RuleReport",
    "build_report",
    "converted_exposures",
    "is_exposure",
    "link_messages",
]

#: Decisions that stop a message, in the order the report lists them.
SKIP_KINDS = (
    "no_consent",
    "unreachable",
    "suppressed",
    "capped",
    "quiet",
    "unmet",
    "held_out",
    "dropped",
)

# An outcome recorded this many seconds before its decision still belongs to
# it: the queue records ``sent`` while the engine is deciding, on a wall
# clock a few milliseconds before the decision's own time.
_LINK_SLACK = 5.0


class Funnel(msgspec.Struct, kw_only=True):
    """Counts for one rule, one variant or the holdout.

    ``skipped`` holds every kind of :data:`SKIP_KINDS` (zero included) for
    a whole rule, and is empty for a variant, whose users are only known
    from the send on. ``deferred`` counts quiet-hours deferrals, which are
    steps before a final decision, not decisions of their own.
    """

    triggered: int = 0
    skipped: dict[str, int] = {}
    deferred: int = 0
    sent: int = 0
    delivered: int = 0
    failed: int = 0
    opened: int = 0
    clicked: int = 0
    exposed: int = 0
    converted: int = 0


class RuleReport(msgspec.Struct, kw_only=True):
    """One rule: its funnel, its variants, its holdout and the lifts."""

    rule: str
    title: str | None
    goal: str | None
    goal_within: float | None
    holdout_percent: float | None
    funnel: Funnel
    variants: dict[str, Funnel]
    holdout: Funnel
    comparisons: list[Comparison]


class Report(msgspec.Struct, kw_only=True):
    """Every rule's report; ``since`` is the earliest decision time counted."""

    rules_version: str
    since: float | None
    rules: list[RuleReport]


def is_exposure(decision: Decision) -> bool:
    """Whether ``decision`` puts its user in the treated or held-out group."""
    kind = decision.decision
    if kind == "failed":
        return decision.message is not None
    return kind in ("sent", "held_out")


def link_messages(
    decisions: Sequence[Decision], outcomes: Iterable[DeliveryOutcome]
) -> dict[int, set[str]]:
    """The delivery outcomes of each sent decision, by index in ``decisions``.

    A decision does not carry its message's id (replays compare decisions
    across runs, and ids are random), so each message is joined to the
    latest sent decision of the same app, rule and user made no later than
    the message's first outcome (an open of an outbox message has no other
    outcome, and joins the send it follows).
    """
    by_message: dict[str, list[DeliveryOutcome]] = {}
    for outcome in outcomes:
        by_message.setdefault(outcome.message_id, []).append(outcome)
    sends: dict[tuple[str, str, str], tuple[list[float], list[int]]] = {}
    for index, decision in enumerate(decisions):
        if decision.decision in ("sent", "failed") and decision.message is not None:
            key = (decision.app, decision.rule, decision.user)
            times, indices = sends.setdefault(key, ([], []))
            times.append(decision.at)
            indices.append(index)
    linked: dict[int, set[str]] = defaultdict(set)
    for steps in by_message.values():
        first = steps[0]
        found = sends.get((first.app, first.rule, first.user))
        if found is None:
            continue
        times, indices = found
        position = bisect.bisect_right(times, first.at + _LINK_SLACK) - 1
        if position < 0:
            continue
        linked[indices[position]].update(step.outcome for step in steps)
    return linked


def converted_exposures(
    decisions: Sequence[Decision],
    goals: Iterable[GoalEvent],
    windows: dict[str, float],
) -> set[int]:
    """Indices of the exposures in ``decisions`` that converted.

    ``windows`` maps each rule with a goal to its ``within`` in seconds.
    """
    goal_times: dict[tuple[str, str, str], list[GoalEvent]] = defaultdict(list)
    for goal in goals:
        goal_times[(goal.app, goal.rule, goal.user)].append(goal)
    exposures: dict[tuple[str, str, str], list[tuple[int, Decision]]] = defaultdict(
        list
    )
    for index, decision in enumerate(decisions):
        if decision.rule in windows and is_exposure(decision):
            key = (decision.app, decision.rule, decision.user)
            exposures[key].append((index, decision))
    converted: set[int] = set()
    for key, exposed in exposures.items():
        exposed.sort(key=lambda pair: pair[1].at)
        found = sorted(goal_times.get(key, []), key=lambda goal: goal.at)
        converted |= _conversions(exposed, found, windows[key[1]])
    return converted


def _conversions(
    exposures: Sequence[tuple[int, Decision]],
    goals: Sequence[GoalEvent],
    within: float,
) -> set[int]:
    """Indices of the exposures a goal event converted, each at most once.

    ``exposures`` and ``goals`` belong to one app, rule and user, in time
    order. A goal at the very instant of an exposure does not count: it is
    the event that triggered the rule, or happened before any message
    could be read.
    """
    converted: set[int] = set()
    for goal in goals:
        for index, decision in reversed(exposures):
            if index in converted or decision.at >= goal.at:
                continue
            if goal.at - decision.at <= within:
                converted.add(index)
            break  # the latest open exposure before the goal, or none
    return converted


@dataclass(slots=True)
class _RuleInfo:
    title: str | None = None
    goal: str | None = None
    within: float | None = None
    holdout: float | None = None
    variants: tuple[str, ...] = ()


def _info(rule: CompiledRule) -> _RuleInfo:
    goal = rule.goal
    return _RuleInfo(
        title=rule.title,
        goal=None
        if goal is None
        else f"{goal.event} within {format_duration(goal.within)}",
        within=None if goal is None else goal.within,
        holdout=rule.holdout,
        variants=tuple(v.name for v in rule.variants),
    )


def build_report(
    rules: Sequence[CompiledRule],
    decisions: Sequence[Decision],
    goals: Iterable[GoalEvent],
    outcomes: Iterable[DeliveryOutcome],
    *,
    rules_version: str = "",
    since: float | None = None,
    only: str | None = None,
) -> Report:
    """Count every rule's funnel and compare its arms with its holdout.

    Args:
        rules: The rule set, for goals, holdouts and variants; rules that
            only appear in the decisions (removed since) get a row without
            them.
        decisions: Every recorded decision, in the order they were made.
        goals: Every recorded goal event.
        outcomes: Every recorded delivery outcome.
        rules_version: Shown with the report.
        since: Only decisions made at or after this time count.
        only: Only this rule.
    """
    info = {rule.name: _info(rule) for rule in rules}
    kept = [
        d
        for d in decisions
        if (since is None or d.at >= since) and (only is None or d.rule == only)
    ]
    delivery = link_messages(kept, outcomes)

    windows = {name: r.within for name, r in info.items() if r.within is not None}
    converted = converted_exposures(kept, goals, windows)

    names = [*info, *(d.rule for d in kept if d.rule not in info)]
    if only is not None:
        names = [only]
    funnels = {
        name: Funnel(skipped=dict.fromkeys(SKIP_KINDS, 0))
        for name in dict.fromkeys(names)
    }
    variants: dict[str, dict[str, Funnel]] = {
        name: {v: Funnel() for v in info.get(name, _RuleInfo()).variants}
        for name in funnels
    }
    holdouts = {name: Funnel() for name in funnels}
    for index, decision in enumerate(kept):
        funnel = funnels[decision.rule]
        kind = decision.decision
        if kind == "deferred":
            funnel.deferred += 1
            continue
        funnel.triggered += 1
        if kind == "held_out":
            holdout = holdouts[decision.rule]
            holdout.exposed += 1
            holdout.converted += index in converted
        if kind in funnel.skipped:
            funnel.skipped[kind] += 1
            continue
        if kind not in ("sent", "failed"):
            funnel.skipped[kind] = funnel.skipped.get(kind, 0) + 1
            continue
        name = (decision.message or {}).get("variant")
        groups = [funnel]
        if isinstance(name, str):
            groups.append(variants[decision.rule].setdefault(name, Funnel()))
        steps = delivery.get(index, set())
        for group in groups:
            _count_send(group, kind, steps, index in converted, is_exposure(decision))

    reports = []
    for name, funnel in funnels.items():
        rule = info.get(name, _RuleInfo())
        holdout = holdouts[name]
        comparisons = []
        if rule.within is not None and (rule.holdout or holdout.exposed):
            arms = [("treated", funnel), *variants[name].items()]
            comparisons = [
                compare(
                    arm,
                    group.converted,
                    group.exposed,
                    holdout.converted,
                    holdout.exposed,
                )
                for arm, group in arms
            ]
        reports.append(
            RuleReport(
                rule=name,
                title=rule.title,
                goal=rule.goal,
                goal_within=rule.within,
                holdout_percent=rule.holdout,
                funnel=funnel,
                variants=variants[name],
                holdout=holdout,
                comparisons=comparisons,
            )
        )
    return Report(rules_version=rules_version, since=since, rules=reports)


def _count_send(
    group: Funnel, kind: str, steps: set[str], converted: bool, exposed: bool
) -> None:
    """Count one sent or failed decision and what its message went through."""
    if kind == "sent":
        group.sent += 1
        provider_failed = ("failed" in steps or "unsubscribed" in steps) and (
            "delivered" not in steps
        )
        # Without provider outcomes the channel took the message while the
        # decision was made (outbox, in-app socket): that is the delivery.
        if "delivered" in steps or not steps & {"sent", "retry", "failed"}:
            group.delivered += 1
        elif provider_failed:
            group.failed += 1
    else:
        group.failed += 1
    group.opened += "opened" in steps
    group.clicked += "clicked" in steps
    group.exposed += exposed
    group.converted += converted
