"""The newer constructs of the rule language, run through the engine."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sessionpush.engine.policy import bucket
from sessionpush.store.base import Device
from tests.engine.conftest import T0, Peer


async def open_in(h: Any, zone: str, user: str = "u1", lang: str | None = None) -> Peer:
    peer = Peer()
    device = Device(
        app="default", user=user, device_id=f"{user}:d", timezone=zone, lang=lang
    )
    await h.engine.open(peer, device, f"s-{user}")
    return peer


def utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


async def test_a_sequence_fires_at_the_event_that_completes_it(harness: Any) -> None:
    h = await harness(
        'rule r { when view as v then cart within 5m push { title "{v.brand}" } }'
    )
    peer = await h.open()
    await h.event(peer, "view", brand="acme")
    await h.at(60)
    await h.event(peer, "cart")
    assert await h.outcomes("r") == ["sent"]
    assert h.outbox.sent[0].title == "acme"


async def test_a_sequence_step_must_come_before_its_window_ends(harness: Any) -> None:
    h = await harness('rule r { when view then cart within 5m push { title "a" } }')
    peer = await h.open()
    await h.event(peer, "view")
    await h.at(300)
    await h.event(peer, "cart")
    assert await h.outcomes("r") == []


async def test_one_event_never_fills_two_steps_of_a_sequence(harness: Any) -> None:
    h = await harness('rule r { when view then view within 1m push { title "a" } }')
    peer = await h.open()
    for second in (0, 1, 2):
        await h.at(second)
        await h.event(peer, "view")
    assert await h.outcomes("r") == ["sent"]


async def test_an_absence_window_longer_than_the_idle_timeout_still_fires(
    harness: Any,
) -> None:
    h = await harness('rule r { when view then no cart within 2h push { title "a" } }')
    peer = await h.open()
    await h.event(peer, "view")
    await h.at(7199)
    assert h.engine.sessions == 0  # ended idle after 30 minutes
    assert await h.outcomes("r") == []
    await h.at(7200)
    assert await h.outcomes("r") == ["sent"]


async def test_a_count_fires_on_the_nth_match_inside_the_window(harness: Any) -> None:
    h = await harness(
        'rule r { when 2 times search where results == 0 within 5m push { title "a" } }'
    )
    peer = await h.open()
    await h.event(peer, "search", results=0)
    await h.at(100)
    await h.event(peer, "search", results=3)
    assert await h.outcomes("r") == []
    await h.at(299)
    await h.event(peer, "search", results=0)
    assert await h.outcomes("r") == ["sent"]


async def test_count_matches_further_apart_than_the_window_do_not_fire(
    harness: Any,
) -> None:
    h = await harness('rule r { when 2 times search within 5m push { title "a" } }')
    peer = await h.open()
    await h.event(peer, "search")
    await h.at(300)
    await h.event(peer, "search")
    assert await h.outcomes("r") == []


async def test_idle_fires_once_after_a_quiet_spell_and_again_after_an_event(
    harness: Any,
) -> None:
    h = await harness(
        'rule r { when idle 5m where session.events > 0 inapp { title "a" } }'
    )
    peer = await h.open()
    await h.event(peer, "view")
    await h.at(299)
    await h.event(peer, "view")
    await h.at(598)
    assert await h.outcomes("r") == []
    await h.at(599)
    await h.at(1200)
    assert await h.outcomes("r") == ["sent"]
    await h.event(peer, "view")
    await h.at(1500)
    assert await h.outcomes("r") == ["sent", "sent"]


async def test_session_start_fires_when_the_session_begins(harness: Any) -> None:
    h = await harness(
        'rule r { when session starts where device.platform == "web" '
        'inapp { title "hi" } }'
    )
    peer = await h.open()
    assert [m["title"] for m in peer.messages] == ["hi"]


async def test_if_is_checked_again_at_send_time(harness: Any) -> None:
    h = await harness(
        'rule r { when cart wait 10m if user.plan == "free" push { title "a" } }'
    )
    await h.store.set_user_attributes("default", "u1", {"plan": "free"})
    peer = await h.open()
    await h.event(peer, "cart")
    await h.store.set_user_attributes("default", "u1", {"plan": "pro"})
    await h.at(600)
    assert await h.outcomes("r") == ["unmet"]


async def test_quiet_hours_defer_the_push_to_their_end_in_the_users_zone(
    harness: Any,
) -> None:
    # T0 is 23:13 in UTC: inside 22:00-08:00; the push goes out at 08:00.
    h = await harness('rule r { when cart quiet hours 22:00-08:00 push { title "a" } }')
    peer = await open_in(h, "UTC")
    await h.event(peer, "cart")
    assert await h.outcomes("r") == ["deferred"]
    await h.engine.advance(utc("2023-11-15T07:59:59"))
    assert await h.outcomes("r") == ["deferred"]
    await h.engine.advance(utc("2023-11-15T08:00:00"))
    decisions = await h.decisions("r")
    assert [(d.decision, d.at) for d in decisions] == [
        ("deferred", T0),
        ("sent", utc("2023-11-15T08:00:00")),
    ]
    assert decisions[0].reason == "inside quiet hours; deferred to 2023-11-15T08:00:00Z"


async def test_quiet_hours_with_drop_record_the_drop(harness: Any) -> None:
    h = await harness(
        'rule r { when cart quiet hours 22:00-08:00 drop push { title "a" } }'
    )
    peer = await open_in(h, "UTC")
    await h.event(peer, "cart")
    assert await h.outcomes("r") == ["quiet"]


async def test_quiet_hours_read_the_users_zone_not_utc(harness: Any) -> None:
    # 22:13 UTC is 17:13 in New York: outside the quiet hours there.
    h = await harness('rule r { when cart quiet hours 22:00-08:00 push { title "a" } }')
    peer = await open_in(h, "America/New_York")
    await h.event(peer, "cart")
    assert await h.outcomes("r") == ["sent"]


async def test_holdout_users_are_recorded_and_never_sent_to(harness: Any) -> None:
    h = await harness('rule r { when cart holdout 50% push { title "a" } }')
    users = [f"user{n}" for n in range(40)]
    for user in users:
        await h.event(await h.open(user=user, session=user), "cart")
    decisions = {d.user: d.decision for d in await h.decisions("r")}
    expected = {
        user: "held_out" if bucket("holdout", "r", user) < 5000 else "sent"
        for user in users
    }
    assert decisions == expected
    assert set(decisions.values()) == {"held_out", "sent"}
    assert len(h.outbox.sent) == list(decisions.values()).count("sent")


async def test_a_held_out_user_takes_the_cap_slot_a_send_would_have(
    harness: Any,
) -> None:
    """The holdout is decided after the caps, so a held-out user is capped
    exactly as a treated one: the two groups see the same rule."""
    h = await harness(
        'rule r { when cart holdout 50% limit 1 per user per 1h push { title "a" } }'
    )
    users = [f"user{n}" for n in range(12)]
    for user in users:
        peer = await h.open(user=user, session=user)
        await h.event(peer, "cart")
        await h.event(peer, "cart")
    outcomes: dict[str, list[str]] = {}
    for d in await h.decisions("r"):
        outcomes.setdefault(d.user, []).append(d.decision)
    for user in users:
        first = "held_out" if bucket("holdout", "r", user) < 5000 else "sent"
        assert outcomes[user] == [first, "capped"]
    assert {o[0] for o in outcomes.values()} == {"held_out", "sent"}


async def test_variants_split_users_by_a_stable_hash(harness: Any) -> None:
    h = await harness(
        "rule r { when cart "
        'variant a 30% { push { title "A" } } '
        'variant b 70% { push { title "B" } } }'
    )
    for user in ("ann", "bob", "cy", "dee", "eve", "fay"):
        await h.event(await h.open(user=user, session=user), "cart")
    got = {m.user: m.title for m in h.outbox.sent}
    want = {user: "A" if bucket("variant", "r", user) < 3000 else "B" for user in got}
    assert got == want and len(got) == 6
    assert {d.message["variant"] for d in await h.decisions("r") if d.message}


async def test_a_goal_event_is_recorded_per_rule_and_user(harness: Any) -> None:
    h = await harness(
        "rule r { when cart goal purchase where price > 10 within 1d "
        'push { title "a" } }'
    )
    peer = await h.open()
    await h.event(peer, "cart")
    await h.event(peer, "purchase", price=5)
    await h.at(60)
    await h.event(peer, "purchase", price=50)
    goals = await h.store.goals()
    assert [(g.rule, g.user, g.at) for g in goals] == [("r", "u1", T0 + 60)]


async def test_at_sends_at_the_next_local_clock_time(harness: Any) -> None:
    h = await harness('rule r { when cart at 09:00 push { title "a" } }')
    peer = await open_in(h, "Europe/Berlin")
    await h.event(peer, "cart")
    await h.engine.advance(utc("2023-11-15T08:00:00"))
    decisions = await h.decisions("r")
    assert [(d.decision, d.at) for d in decisions] == [
        ("sent", utc("2023-11-15T08:00:00"))
    ]


async def test_a_per_day_limit_resets_at_the_users_midnight(harness: Any) -> None:
    h = await harness(
        'rule r { when cart limit 1 per user per day push { title "a" } }', idle=7200
    )
    # 22:13 UTC is 23:13 in Berlin; local midnight is 23:00 UTC.
    peer = await open_in(h, "Europe/Berlin")
    await h.event(peer, "cart")
    await h.engine.advance(utc("2023-11-14T22:59:59"))
    await h.event(peer, "cart")
    await h.engine.advance(utc("2023-11-14T23:00:00"))
    await h.event(peer, "cart")
    assert await h.outcomes("r") == ["sent", "capped", "sent"]


async def test_inapp_else_push_goes_out_as_a_push_when_no_socket_is_open(
    harness: Any,
) -> None:
    h = await harness(
        'rule r { when session ends where session has cart inapp { title "a" } '
        "else push }",
        grace=5,
    )
    peer = await h.open()
    await h.event(peer, "cart")
    await h.engine.detach(peer)
    await h.at(10)
    assert [(d.decision, d.channel) for d in await h.decisions("r")] == [
        ("sent", "push")
    ]


async def test_a_webhook_action_reaches_the_webhook_transport(harness: Any) -> None:
    h = await harness('rule r { when purchase webhook "crm" }')
    await h.event(await h.open(), "purchase")
    assert [(m.channel, m.webhook) for m in h.outbox.sent] == [("webhook", "crm")]


async def test_localised_text_follows_the_device_language_with_fallback(
    harness: Any,
) -> None:
    h = await harness('rule r { when cart push { title { en "Hi" de "Hallo" } } }')
    await h.event(await open_in(h, "UTC", "a", lang="de-AT"), "cart")
    await h.event(await open_in(h, "UTC", "b", lang="fr"), "cart")
    assert [m.title for m in h.outbox.sent] == ["Hallo", "Hi"]


async def test_push_fields_reach_the_outbound_message(harness: Any) -> None:
    h = await harness(
        'rule r { when cart as c push { title "a" image "https://x/{c.sku}.png" '
        'urgency high collapse "cart" data { sku: "{c.sku}" } } }'
    )
    await h.event(await h.open(), "cart", sku="k1")
    message = h.outbox.sent[0]
    assert (message.image, message.urgency, message.collapse, message.data) == (
        "https://x/k1.png",
        "high",
        "cart",
        {"sku": "k1"},
    )


async def test_higher_priority_rules_are_decided_first(harness: Any) -> None:
    h = await harness(
        'rule low { when cart push { title "low" } }\n'
        'rule high { when cart priority 5 push { title "high" } }'
    )
    await h.event(await h.open(), "cart")
    assert [m.title for m in h.outbox.sent] == ["high", "low"]


async def test_an_apps_own_idle_rule_fires_when_the_shared_set_has_none(
    harness: Any,
) -> None:
    from tests.rulesets import ruleset_from_text

    h = await harness('rule shared { when cart push { title "s" } }')
    h.engine.app_rules = {
        "shop": ruleset_from_text('rule nudge { when idle 5m inapp { title "n" } }')
    }
    peer = await h.open(app="shop")
    await h.event(peer, "view")
    await h.at(299)
    assert await h.outcomes("nudge") == []
    await h.at(300)
    assert await h.outcomes("nudge") == ["sent"]
