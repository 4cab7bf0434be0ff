"""What an app's config adds to every rule: global caps (with ``priority``
deciding who gets the last slot), default quiet hours and link schemes."""

from __future__ import annotations

import re
from typing import Any

from sessionpush.engine.policy import AppPolicy
from sessionpush.engine.rules import CompiledLimit, QuietWindow
from sessionpush.engine.timers import fire_due
from sessionpush.store.base import user_cap_prefix
from sessionpush.store.redis_keys import Keys
from tests.engine.conftest import T0, Harness

THREE_RULES = """
rule browse { when view push { title "browse" } }
rule basket { when cart push { title "basket" } }
rule crm { when cart webhook "crm" }
"""

# Three rules fire on one cart event; the file order is low, high, tie_a,
# tie_b, so priority and not position must decide.
CROWD = """
rule low { when cart push { title "low" } }
rule high { when cart priority 5 push { title "high" } }
rule tie_a { when cart priority 2 push { title "tie_a" } }
rule tie_b { when cart priority 2 push { title "tie_b" } }
"""


def per_user(count: int, hours: float = 24) -> AppPolicy:
    return AppPolicy(caps=(CompiledLimit(count, "user", hours * 3600),))


async def with_policy(harness: Any, text: str, policy: AppPolicy) -> Harness:
    h: Harness = await harness(text)
    h.engine.app_policy["default"] = policy
    return h


async def test_a_global_cap_counts_the_sends_of_every_rule_together(
    harness: Any,
) -> None:
    h = await with_policy(harness, THREE_RULES, per_user(2))
    peer = await h.open()
    await h.event(peer, "view")
    await h.event(peer, "cart")
    await h.event(peer, "view")
    assert [(d.rule, d.decision) for d in await h.decisions() if d.rule != "crm"] == [
        ("browse", "sent"),
        ("basket", "sent"),
        ("browse", "capped"),
    ]
    [capped] = [d for d in await h.decisions() if d.decision == "capped"]
    assert capped.reason == "global cap 2 per user per 24h reached"


async def test_a_webhook_does_not_count_against_the_global_cap(harness: Any) -> None:
    h = await with_policy(harness, THREE_RULES, per_user(1))
    peer = await h.open()
    await h.event(peer, "cart")
    await h.event(peer, "cart")
    assert await h.outcomes("crm") == ["sent", "sent"]
    assert await h.outcomes("basket") == ["sent", "capped"]


async def test_the_global_cap_is_per_user_and_frees_up_after_its_window(
    harness: Any,
) -> None:
    h = await with_policy(harness, THREE_RULES, per_user(1, hours=0.25))
    ann = await h.open(user="ann", session="s1")
    bob = await h.open(user="bob", session="s2")
    await h.event(ann, "view")
    await h.event(bob, "view")
    await h.at(899)
    await h.event(ann, "view")
    await h.at(901)
    await h.event(ann, "view")
    assert [(d.user, d.decision) for d in await h.decisions("browse")] == [
        ("ann", "sent"),
        ("bob", "sent"),
        ("ann", "capped"),
        ("ann", "sent"),
    ]


async def test_a_full_global_cap_refuses_a_waiting_rule_at_its_trigger(
    harness: Any,
) -> None:
    text = THREE_RULES + 'rule later { when search wait 10m push { title "l" } }'
    h = await with_policy(harness, text, per_user(1))
    peer = await h.open()
    await h.event(peer, "view")
    await h.at(5)
    await h.event(peer, "search")
    [decision] = await h.decisions("later")
    assert (decision.decision, decision.at) == ("capped", T0 + 5)
    assert decision.reason == "global cap 1 per user per 24h reached"


async def test_the_global_cap_is_taken_at_send_with_the_rules_own_limit(
    harness: Any,
) -> None:
    """Two waits end together: the first send takes the one global slot,
    the second is capped at send time, and its own limit is left untouched."""
    text = """
    rule one { when cart wait 10m push { title "one" } }
    rule two { when cart wait 10m limit 1 per user per 24h push { title "two" } }
    """
    h = await with_policy(harness, text, per_user(1))
    peer = await h.open()
    await h.event(peer, "cart")
    await h.at(600)
    assert [(d.rule, d.decision) for d in await h.decisions()] == [
        ("one", "sent"),
        ("two", "capped"),
    ]
    assert (await h.decisions("two"))[0].reason == (
        "global cap 1 per user per 24h reached"
    )
    own = CompiledLimit(1, "user", 86400.0).key("default", "u1", "s1", "two")
    assert await h.store.cap_count(own, T0) == 0


async def test_the_highest_priority_gets_the_last_slot_of_the_global_cap(
    harness: Any,
) -> None:
    h = await with_policy(harness, CROWD, per_user(1))
    peer = await h.open()
    await h.event(peer, "cart")
    assert [m.title for m in h.outbox.sent] == ["high"]
    assert [(d.rule, d.decision) for d in await h.decisions()] == [
        ("high", "sent"),
        ("tie_a", "capped"),
        ("tie_b", "capped"),
        ("low", "capped"),
    ]


async def test_rules_of_equal_priority_take_the_global_cap_in_file_order(
    harness: Any,
) -> None:
    h = await with_policy(harness, CROWD, per_user(2))
    peer = await h.open()
    await h.event(peer, "cart")
    assert [m.title for m in h.outbox.sent] == ["high", "tie_a"]
    assert await h.outcomes("tie_b") == ["capped"]
    assert await h.outcomes("low") == ["capped"]


async def test_priority_decides_among_session_start_rules_under_a_global_cap(
    harness: Any,
) -> None:
    text = """
    rule hello { when session starts push { title "hello" } }
    rule vip { when session starts priority 1 push { title "vip" } }
    """
    h = await with_policy(harness, text, per_user(1))
    await h.open()
    assert [m.title for m in h.outbox.sent] == ["vip"]
    assert await h.outcomes("hello") == ["capped"]


async def test_priority_decides_among_waits_that_end_together(harness: Any) -> None:
    text = """
    rule first { when cart wait 5m push { title "first" } }
    rule urgent { when cart wait 5m priority 3 push { title "urgent" } }
    """
    h = await with_policy(harness, text, per_user(1))
    peer = await h.open()
    await h.event(peer, "cart")
    await h.at(300)
    assert [m.title for m in h.outbox.sent] == ["urgent"]
    assert await h.outcomes("first") == ["capped"]


async def test_a_per_session_global_cap_starts_again_in_a_new_session(
    harness: Any,
) -> None:
    policy = AppPolicy(caps=(CompiledLimit(1, "session", None),))
    h = await with_policy(harness, THREE_RULES, policy)
    peer = await h.open(session="s1")
    await h.event(peer, "view")
    await h.event(peer, "view")
    await h.engine.end(peer)
    peer = await h.open(session="s2")
    await h.event(peer, "view")
    assert await h.outcomes("browse") == ["sent", "capped", "sent"]
    [capped] = [d for d in await h.decisions() if d.decision == "capped"]
    assert capped.reason == "global cap 1 per session reached"


async def test_erasure_forgets_the_global_cap_counts(harness: Any) -> None:
    h = await with_policy(harness, THREE_RULES, per_user(1))
    peer = await h.open()
    await h.event(peer, "view")
    await h.engine.erase_user("default", "u1")
    peer = await h.open(session="s2")
    await h.event(peer, "view")
    assert await h.outcomes("browse") == ["sent"]


def test_global_cap_keys_share_the_user_prefix_and_redis_slot() -> None:
    policy = AppPolicy(
        caps=(
            CompiledLimit(3, "user", 86400.0),
            CompiledLimit(1, "day", None),
            CompiledLimit(1, "session", None),
        )
    )
    made = [policy.cap_key(cap, "shop", "ann", "s1") for cap in policy.caps]
    assert all(key.startswith(user_cap_prefix("shop", "ann")) for key in made)
    assert len(set(made)) == 3
    rule_keys = {cap.key("shop", "ann", "s1", "browse") for cap in policy.caps}
    assert not rule_keys & set(made)
    keys = Keys("sp", shards=8)
    tags = {re.findall(r"\{([^}]*)\}", keys.cap(key))[0] for key in made}
    assert tags == {"c:shop\x1fu\x1fann"}


async def test_live_claims_due_together_go_highest_priority_first(
    harness: Any,
) -> None:
    """The gateway's timer claimer orders a batch the way the virtual clock
    does, so the urgent rule takes the last global slot live too."""
    text = """
    rule first { when cart wait 5m push { title "first" } }
    rule urgent { when cart wait 5m priority 3 push { title "urgent" } }
    """
    h = await with_policy(harness, text, per_user(1))
    peer = await h.open()
    await h.event(peer, "cart")
    h.clock.set(T0 + 300)
    assert await fire_due(h.engine) == 2
    assert [m.title for m in h.outbox.sent] == ["urgent"]
    assert await h.outcomes("first") == ["capped"]


# default quiet hours (T0 is 22:13:20 UTC; the harness's devices are in UTC)

NIGHT = AppPolicy(quiet=QuietWindow(22 * 60, 8 * 60))
EIGHT_AM = T0 + 9 * 3600 + 46 * 60 + 40


async def test_default_quiet_hours_defer_a_rule_without_its_own(
    harness: Any,
) -> None:
    h = await with_policy(harness, THREE_RULES, NIGHT)
    peer = await h.open()
    await h.event(peer, "view")
    [deferred] = await h.decisions("browse")
    assert (deferred.decision, deferred.reason) == (
        "deferred",
        "inside quiet hours; deferred to 2023-11-15T08:00:00Z",
    )
    await h.at(EIGHT_AM - T0)
    assert await h.outcomes("browse") == ["deferred", "sent"]
    assert (await h.decisions("browse"))[1].at == EIGHT_AM


async def test_a_rules_own_quiet_hours_win_over_the_apps(harness: Any) -> None:
    text = 'rule late { when view quiet hours 23:00-06:00 push { title "l" } }'
    h = await with_policy(harness, text, NIGHT)
    peer = await h.open()
    await h.event(peer, "view")
    assert await h.outcomes("late") == ["sent"]


async def test_default_quiet_hours_with_drop_record_quiet(harness: Any) -> None:
    policy = AppPolicy(quiet=QuietWindow(22 * 60, 8 * 60, drop=True))
    h = await with_policy(harness, THREE_RULES, policy)
    peer = await h.open()
    await h.event(peer, "view")
    [dropped] = await h.decisions("browse")
    assert (dropped.decision, dropped.reason) == (
        "quiet",
        "inside quiet hours until 2023-11-15T08:00:00Z; dropped",
    )
    assert h.outbox.sent == []


# link schemes at send time


async def test_a_rendered_link_with_an_undeclared_app_scheme_fails_at_send(
    harness: Any,
) -> None:
    text = """
    rule app_link { when cart push { title "c" link "shop://cart/{id}" } }
    rule ftp_link { when cart push { title "f" link "ftp://files/{id}" } }
    rule web_link { when cart push { title "w" link "https://shop.example/" } }
    """
    h = await with_policy(harness, text, AppPolicy(link_schemes=frozenset({"shop"})))
    peer = await h.open()
    await h.event(peer, "cart", id=7)
    assert [m.link for m in h.outbox.sent] == ["shop://cart/7", "https://shop.example/"]
    [failed] = await h.decisions("ftp_link")
    assert (failed.decision, failed.reason) == (
        "failed",
        "the link 'ftp://files/7' is refused: "
        "the app scheme 'ftp:' is not in the app's link_schemes",
    )


async def test_without_a_config_any_app_scheme_is_sent(harness: Any) -> None:
    h = await harness('rule r { when cart push { title "f" link "ftp://files" } }')
    peer = await h.open()
    await h.event(peer, "cart")
    assert [m.link for m in h.outbox.sent] == ["ftp://files"]
