"""A rule set reload keeps each session's match state with the rule of the
same name and shape, drops the rest, and never hands state to another
rule or fails on it."""

from __future__ import annotations

from typing import Any

from tests.engine.conftest import T0, Harness
from tests.rulesets import ruleset_from_text

CHECKOUT = """
rule checkout_path {
    when view then cart within 10m then checkout within 10m
    push { title "checkout" }
}
"""
SEARCHED = """
rule searched_then_viewed {
    when search then view within 10m
    push { title "searched" }
}
"""
PRICING = """
rule pricing_help {
    when view where page == "pricing"
    then no signup within 2m
    push { title "pricing" }
}
"""
TWICE = 'rule twice { when search within 5m push { title "twice" } }'


def reload(h: Harness, text: str) -> None:
    h.engine.set_rules(ruleset_from_text(text))


async def test_a_reordered_rule_set_keeps_sequence_progress_with_its_rule(
    harness: Any,
) -> None:
    """Before, progress was kept by position: after the swap the view that
    began checkout_path was taken as the search of searched_then_viewed."""
    h = await harness(CHECKOUT + SEARCHED)
    peer = await h.open()
    await h.event(peer, "view")
    reload(h, SEARCHED + CHECKOUT)
    await h.event(peer, "view")
    await h.event(peer, "cart")
    await h.event(peer, "checkout")
    assert [m.title for m in h.outbox.sent] == ["checkout"]


async def test_an_open_absence_window_survives_a_rule_added_before_it(
    harness: Any,
) -> None:
    h = await harness(PRICING)
    peer = await h.open()
    await h.event(peer, "view", page="pricing")
    reload(h, SEARCHED + PRICING)
    await h.at(60)
    await h.event(peer, "signup")
    await h.at(180)
    assert h.outbox.sent == []


async def test_an_open_absence_window_fires_under_the_reloaded_rule(
    harness: Any,
) -> None:
    h = await harness(PRICING)
    peer = await h.open()
    await h.event(peer, "view", page="pricing")
    reload(h, SEARCHED + PRICING.replace('"pricing" }', '"pricing, v2" }'))
    await h.at(120)
    assert [(m.title, m.at) for m in h.outbox.sent] == [("pricing, v2", T0 + 120)]


async def test_a_sequence_that_changed_shape_starts_over_without_failing(
    harness: Any,
) -> None:
    """Two steps became three: the old progress cannot continue, so it goes."""
    two = 'rule path { when view then cart within 10m push { title "two" } }'
    three = (
        "rule path { when view then cart within 10m then checkout within 10m "
        'push { title "three" } }'
    )
    h = await harness(three)
    peer = await h.open()
    await h.event(peer, "view")
    await h.event(peer, "cart")
    reload(h, two)
    await h.event(peer, "checkout")
    await h.event(peer, "cart")
    assert h.outbox.sent == []
    reload(h, three)
    await h.event(peer, "checkout")
    await h.event(peer, "view")
    await h.event(peer, "cart")
    await h.event(peer, "checkout")
    assert [m.title for m in h.outbox.sent] == ["three"]


async def test_a_count_that_changed_its_number_starts_counting_again(
    harness: Any,
) -> None:
    h = await harness(TWICE.replace("search within", "3 times search within"))
    peer = await h.open()
    await h.event(peer, "search")
    await h.event(peer, "search")
    reload(h, TWICE.replace("search within", "2 times search within"))
    await h.event(peer, "search")
    assert h.outbox.sent == []
    await h.event(peer, "search")
    assert [m.title for m in h.outbox.sent] == ["twice"]


async def test_a_removed_rule_leaves_no_state_behind(harness: Any) -> None:
    h = await harness(CHECKOUT + PRICING)
    peer = await h.open()
    await h.event(peer, "view", page="pricing")
    reload(h, SEARCHED)
    session = h.engine.session_of(peer)
    assert session is not None
    assert (session.progress, session.absence, session.armed_bound) == ({}, {}, {})
    await h.at(180)
    assert h.outbox.sent == []


async def test_an_unless_cancels_a_trigger_held_from_before_a_reload(
    harness: Any,
) -> None:
    text = """
    rule later {
        when cart
        wait 10m after session end
        unless purchase
        push { title "later" }
    }
    """
    h = await harness(text)
    peer = await h.open()
    await h.event(peer, "cart")
    reload(h, text)
    await h.event(peer, "purchase")
    await h.engine.end(peer)
    await h.at(1200)
    assert h.outbox.sent == []
    assert await h.outcomes("later") == ["suppressed"]


async def test_idle_rules_already_due_do_not_fire_again_after_a_reload(
    harness: Any,
) -> None:
    text = """
    rule short_idle { when idle 1m push { title "short" } }
    rule long_idle { when idle 5m push { title "long" } }
    """
    h = await harness(text)
    await h.open()
    await h.at(120)
    reload(h, text)
    await h.at(400)
    assert [m.title for m in h.outbox.sent] == ["short", "long"]
