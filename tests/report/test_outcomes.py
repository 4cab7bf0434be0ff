"""The outcome model: funnels, exposures and conversions, attributed once."""

from __future__ import annotations

from typing import Any

from sessionpush.report.outcomes import build_report
from sessionpush.store.base import Decision, DeliveryOutcome, GoalEvent
from tests.rulesets import ruleset_from_text

T0 = 1_700_000_000.0
RULES = ruleset_from_text(
    "rule r { when cart holdout 50% goal purchase within 1h "
    'variant a 50% { push { title "A" } } variant b 50% { push { title "B" } } }'
).rules


def decision(
    user: str, kind: str, at: float, variant: str | None = None, **extra: Any
) -> Decision:
    message = None if kind not in ("sent", "failed") else {"title": "x"}
    if message is not None and variant is not None:
        message["variant"] = variant
    return Decision(
        app="default",
        rule="r",
        user=user,
        session=f"s-{user}",
        decision=kind,
        reason="why",
        at=T0 + at,
        channel="push",
        triggered_at=T0 + at,
        message=extra.get("message", message),
    )


def goal(user: str, at: float) -> GoalEvent:
    return GoalEvent(app="default", rule="r", user=user, session="s", at=T0 + at)


def outcome(message: str, user: str, kind: str, at: float) -> DeliveryOutcome:
    return DeliveryOutcome(
        message_id=message,
        app="default",
        user=user,
        rule="r",
        channel="webpush",
        outcome=kind,
        at=T0 + at,
    )


def test_a_goal_inside_the_window_converts_treated_and_held_out_alike() -> None:
    decisions = [
        decision("ann", "sent", 0, "a"),
        decision("bob", "held_out", 0),
        decision("cy", "sent", 0, "b"),
        decision("dee", "held_out", 0),
    ]
    # ann and bob buy 59 minutes later; cy buys after the hour; dee never.
    goals = [goal("ann", 3540), goal("bob", 3540), goal("cy", 3601)]
    report = build_report(RULES, decisions, goals, [])
    rule = report.rules[0]
    assert (rule.funnel.exposed, rule.funnel.converted) == (2, 1)
    assert (rule.holdout.exposed, rule.holdout.converted) == (2, 1)
    assert rule.variants["a"].converted == 1
    assert rule.variants["b"].converted == 0
    treated = rule.comparisons[0]
    assert (treated.arm, treated.treated_rate, treated.holdout_rate) == (
        "treated",
        0.5,
        0.5,
    )
    assert [c.arm for c in rule.comparisons] == ["treated", "a", "b"]


def test_a_goal_at_the_instant_of_the_send_does_not_convert() -> None:
    report = build_report(RULES, [decision("ann", "sent", 0)], [goal("ann", 0)], [])
    assert report.rules[0].funnel.converted == 0


def test_one_goal_converts_one_exposure_and_one_exposure_converts_once() -> None:
    """Two sends 10 minutes apart and one purchase after both: the purchase
    goes to the later send. Two purchases after one send: one conversion."""
    twice = [decision("ann", "sent", 0), decision("ann", "sent", 600)]
    report = build_report(RULES, twice, [goal("ann", 900)], [])
    assert report.rules[0].funnel.converted == 1
    report = build_report(
        RULES, [decision("ann", "sent", 0)], [goal("ann", 60), goal("ann", 120)], []
    )
    assert report.rules[0].funnel.converted == 1


def test_skips_are_counted_by_reason_and_deferrals_apart() -> None:
    decisions = [
        decision("ann", "deferred", 0),
        decision("ann", "sent", 100),
        decision("bob", "capped", 0),
        decision("cy", "no_consent", 0),
        decision("dee", "unreachable", 0),
        decision("eve", "suppressed", 0),
        decision("fay", "quiet", 0),
        decision("gus", "held_out", 0),
    ]
    funnel = build_report(RULES, decisions, [], []).rules[0].funnel
    assert funnel.triggered == 7
    assert funnel.deferred == 1
    assert funnel.sent == 1
    assert {k: n for k, n in funnel.skipped.items() if n} == {
        "capped": 1,
        "no_consent": 1,
        "unreachable": 1,
        "suppressed": 1,
        "quiet": 1,
        "held_out": 1,
    }


def test_provider_outcomes_follow_their_message_to_its_decision() -> None:
    decisions = [decision("ann", "sent", 0, "a"), decision("bob", "sent", 0, "b")]
    outcomes = [
        outcome("m1", "ann", "sent", -0.01),
        outcome("m1", "ann", "delivered", 1),
        outcome("m1", "ann", "opened", 60),
        outcome("m1", "ann", "clicked", 61),
        outcome("m2", "bob", "sent", -0.01),
        outcome("m2", "bob", "failed", 2),
    ]
    rule = build_report(RULES, decisions, [], outcomes).rules[0]
    funnel = rule.funnel
    assert (funnel.sent, funnel.delivered, funnel.failed) == (2, 1, 1)
    assert (funnel.opened, funnel.clicked) == (1, 1)
    assert (rule.variants["a"].opened, rule.variants["b"].failed) == (1, 1)


def test_a_failed_delivery_stays_in_the_treated_group() -> None:
    """Intent to treat: the user was meant to get the message."""
    report = build_report(RULES, [decision("ann", "failed", 0)], [goal("ann", 5)], [])
    funnel = report.rules[0].funnel
    assert (funnel.failed, funnel.exposed, funnel.converted) == (1, 1, 1)
    refused_link = decision("bob", "failed", 0, message=None)
    report = build_report(RULES, [refused_link], [], [])
    assert report.rules[0].funnel.exposed == 0


def test_since_and_rule_narrow_the_report() -> None:
    decisions = [decision("ann", "sent", 0), decision("bob", "sent", 7200)]
    report = build_report(RULES, decisions, [], [], since=T0 + 3600)
    assert report.rules[0].funnel.sent == 1
    assert build_report(RULES, decisions, [], [], only="other").rules[0].rule == (
        "other"
    )


def test_a_rule_without_a_goal_has_no_comparison() -> None:
    rules = ruleset_from_text('rule r { when cart holdout 10% push { title "a" } }')
    report = build_report(rules.rules, [decision("ann", "held_out", 0)], [], [])
    assert report.rules[0].comparisons == []
    assert report.rules[0].holdout.exposed == 1


def test_the_rich_tables_name_every_rule_and_the_lift() -> None:
    import io

    from sessionpush.report.render import print_rich

    decisions = [decision("ann", "sent", 0, "a"), decision("bob", "held_out", 0)]
    out = io.StringIO()
    print_rich(build_report(RULES, decisions, [goal("ann", 60)], []), out, 200)
    text = out.getvalue()
    assert "Outcomes per rule" in text and "Lift against the holdout" in text
    assert "variant a" in text and "1/1 100.0%" in text
