"""The store contract: every behaviour the engine relies on, run unchanged
against the SQLite store (in memory and on a file) and the Redis store."""

from __future__ import annotations

import asyncio
import time

import pytest

from sessionpush.engine.rules import CompiledLimit as Limit
from sessionpush.store.base import (
    Claim,
    Device,
    Store,
    Subscription,
    UserProfile,
)
from sessionpush.store.errors import StoreError
from tests.store.records import decision, goal, timer

# users, devices, consent, subscriptions


async def test_an_unknown_user_gets_consent_utc_and_no_attributes(
    store: Store,
) -> None:
    assert await store.get_user("shop", "nobody") == UserProfile(
        app="shop", user="nobody", attributes={}, timezone="UTC", consent=True
    )


async def test_a_device_creates_the_user_with_the_device_time_zone(
    store: Store,
) -> None:
    await store.upsert_device(
        Device(app="shop", user="u1", device_id="d1", timezone="Europe/Paris")
    )

    assert await store.get_user("shop", "u1") == UserProfile(
        app="shop", user="u1", timezone="Europe/Paris"
    )


async def test_the_latest_device_time_zone_becomes_the_user_time_zone(
    store: Store,
) -> None:
    await store.upsert_device(
        Device(app="shop", user="u1", device_id="d1", timezone="Europe/Paris")
    )
    await store.upsert_device(
        Device(app="shop", user="u1", device_id="d2", timezone="Asia/Tokyo")
    )

    assert (await store.get_user("shop", "u1")).timezone == "Asia/Tokyo"


async def test_a_device_keeps_the_user_consent_and_attributes(
    store: Store,
) -> None:
    await store.set_consent("shop", "u1", False)
    await store.set_user_attributes("shop", "u1", {"plan": "pro"})

    await store.upsert_device(
        Device(app="shop", user="u1", device_id="d1", timezone="America/Lima")
    )

    assert await store.get_user("shop", "u1") == UserProfile(
        app="shop",
        user="u1",
        attributes={"plan": "pro"},
        timezone="America/Lima",
        consent=False,
    )


async def test_attributes_merge_key_by_key_and_replace_nested_values(
    store: Store,
) -> None:
    await store.set_user_attributes(
        "shop", "u1", {"plan": "free", "address": {"city": "Lyon", "zip": "69001"}}
    )
    await store.set_user_attributes(
        "shop", "u1", {"address": {"city": "Nice"}, "orders": 3, "vip": None}
    )

    profile = await store.get_user("shop", "u1")
    assert profile.attributes == {
        "plan": "free",
        "address": {"city": "Nice"},
        "orders": 3,
        "vip": None,
    }
    assert profile.consent is True
    assert profile.timezone == "UTC"


async def test_consent_can_be_withdrawn_and_granted_again(store: Store) -> None:
    await store.set_consent("shop", "u1", False)
    assert (await store.get_user("shop", "u1")).consent is False

    await store.set_consent("shop", "u1", True)
    assert (await store.get_user("shop", "u1")).consent is True


async def test_two_apps_never_see_each_other_users(store: Store) -> None:
    await store.set_consent("shop", "u1", False)
    await store.set_user_attributes("shop", "u1", {"plan": "pro"})
    await store.add_subscription(
        Subscription(
            app="shop", user="u1", device_id="d1", channel="fcm", data={"t": "x"}
        )
    )

    assert await store.get_user("blog", "u1") == UserProfile(app="blog", user="u1")
    assert await store.subscriptions("blog", "u1") == []


async def test_subscriptions_list_one_user_in_the_order_added(
    store: Store,
) -> None:
    webpush = Subscription(
        app="shop",
        user="u1",
        device_id="d1",
        channel="webpush",
        data={"endpoint": "https://push.example/abc", "keys": {"p256dh": "k"}},
        created_at=10.0,
    )
    apns = Subscription(
        app="shop",
        user="u1",
        device_id="d1",
        channel="apns",
        data={"token": "f00d"},
        created_at=11.0,
    )
    other = Subscription(
        app="shop", user="u2", device_id="d9", channel="fcm", data={"token": "x"}
    )
    for subscription in (webpush, apns, other):
        await store.add_subscription(subscription)

    assert await store.subscriptions("shop", "u1") == [webpush, apns]
    assert await store.subscriptions("shop", "u2") == [other]
    assert await store.subscriptions("shop", "u3") == []


async def test_a_new_subscription_of_the_same_device_and_channel_replaces_the_old(
    store: Store,
) -> None:
    first = Subscription(
        app="shop", user="u1", device_id="d1", channel="fcm", data={"token": "old"}
    )
    second = Subscription(
        app="shop", user="u1", device_id="d2", channel="fcm", data={"token": "b"}
    )
    renewed = Subscription(
        app="shop",
        user="u1",
        device_id="d1",
        channel="fcm",
        data={"token": "new"},
        created_at=50.0,
    )
    for subscription in (first, second, renewed):
        await store.add_subscription(subscription)

    assert await store.subscriptions("shop", "u1") == [renewed, second]


# caps


async def test_cap_take_grants_until_the_limit_then_refuses(store: Store) -> None:
    results = [await store.cap_take("u1:day", 3, 0.0, 100.0 + i) for i in range(5)]

    assert results == [True, True, True, False, False]
    assert await store.cap_count("u1:day", 0.0) == 3


async def test_cap_count_counts_sends_at_or_after_since(store: Store) -> None:
    for at in (100.0, 200.0, 300.0):
        assert await store.cap_take("k", 10, 0.0, at)

    assert await store.cap_count("k", 0.0) == 3
    assert await store.cap_count("k", 200.0) == 2
    assert await store.cap_count("k", 200.5) == 1
    assert await store.cap_count("k", 301.0) == 0
    assert await store.cap_count("unknown", 0.0) == 0


async def test_a_slot_frees_when_its_send_leaves_the_window(store: Store) -> None:
    assert await store.cap_take("k", 1, 0.0, 100.0)
    assert not await store.cap_take("k", 1, 100.0, 150.0)

    assert await store.cap_take("k", 1, 100.5, 200.0)


async def test_cap_take_deletes_the_key_events_older_than_since(
    store: Store,
) -> None:
    for at in (100.0, 200.0, 300.0):
        await store.cap_take("k", 10, 0.0, at)
    await store.cap_take("other", 10, 0.0, 100.0)

    await store.cap_take("k", 10, 250.0, 400.0)

    assert await store.cap_count("k", 0.0) == 2  # 300 and 400 remain
    assert await store.cap_count("other", 0.0) == 1


async def test_cap_take_prunes_even_when_it_refuses(store: Store) -> None:
    for at in (100.0, 200.0):
        await store.cap_take("k", 10, 0.0, at)

    assert not await store.cap_take("k", 1, 150.0, 250.0)
    assert await store.cap_count("k", 0.0) == 1


async def test_caps_under_different_keys_do_not_share_slots(
    store: Store,
) -> None:
    assert await store.cap_take("u1", 1, 0.0, 1.0)
    assert await store.cap_take("u2", 1, 0.0, 1.0)
    assert not await store.cap_take("u1", 1, 0.0, 2.0)


async def test_a_limit_of_zero_never_grants(store: Store) -> None:
    assert not await store.cap_take("k", 0, 0.0, 1.0)
    assert await store.cap_count("k", 0.0) == 0


# suppression


async def test_a_rule_never_suppressed_has_no_suppression_time(
    store: Store,
) -> None:
    assert await store.suppressed_at("shop", "u1", "cart") is None


async def test_the_latest_suppression_wins_and_an_older_one_is_ignored(
    store: Store,
) -> None:
    await store.mark_suppressed("shop", "u1", "cart", 100.0)
    await store.mark_suppressed("shop", "u1", "cart", 300.0)
    await store.mark_suppressed("shop", "u1", "cart", 200.0)

    assert await store.suppressed_at("shop", "u1", "cart") == 300.0


async def test_suppression_is_per_app_user_and_rule(store: Store) -> None:
    await store.mark_suppressed("shop", "u1", "cart", 100.0)

    assert await store.suppressed_at("shop", "u1", "winback") is None
    assert await store.suppressed_at("shop", "u2", "cart") is None
    assert await store.suppressed_at("blog", "u1", "cart") is None


# timers


async def test_pending_timers_are_listed_earliest_due_first_then_in_the_order_added(
    store: Store,
) -> None:
    timers = [
        timer("late", due=300.0),
        timer("tie-1", due=200.0),
        timer("early", due=100.0),
        timer("tie-2", due=200.0),
        timer("tie-3", due=200.0),
    ]
    for t in timers:
        await store.add_timer(t)

    pending = await store.pending_timers()
    assert [t.timer_id for t in pending] == ["early", "tie-1", "tie-2", "tie-3", "late"]
    assert pending[0] == timers[2]


async def test_an_empty_store_has_no_pending_timers(store: Store) -> None:
    assert await store.pending_timers() == []


async def test_a_timer_keeps_its_context_exactly(store: Store) -> None:
    context = {
        "event": {"name": "add_to_cart", "props": {"price": 19.99, "sku": "A-1"}},
        "bound": [{"name": "view", "at": 1700000000.123456}],
        "session": {"id": "s1", "events": 12, "started": 1700000000.5},
        "device": {"lang": "fr", "emoji": "panier \N{SHOPPING TROLLEY}"},
        "flags": [True, False, None],
    }
    await store.add_timer(timer("t1", context=context))

    (pending,) = await store.pending_timers()
    assert pending.context == context


async def test_adding_a_timer_id_again_replaces_it_in_place(
    store: Store,
) -> None:
    await store.add_timer(timer("a", due=100.0))
    await store.add_timer(timer("b", due=100.0))
    replacement = timer("a", due=100.0, session="s2", context={"v": 2})
    await store.add_timer(replacement)

    assert await store.pending_timers() == [replacement, timer("b", due=100.0)]


async def test_a_timer_is_claimed_once(store: Store) -> None:
    t = timer("t1", context={"cart": ["sku-1"]})
    await store.add_timer(t)

    assert await store.claim_timer("t1") == t
    assert await store.claim_timer("t1") is None
    assert await store.pending_timers() == []


async def test_claiming_an_unknown_timer_returns_none(store: Store) -> None:
    await store.add_timer(timer("t1"))

    assert await store.claim_timer("nope") is None
    assert len(await store.pending_timers()) == 1


async def test_cancel_removes_the_rule_timers_triggered_at_or_before_the_time(
    store: Store,
) -> None:
    before = timer("before", triggered_at=50.0, due=900.0)
    at_the_time = timer("at", triggered_at=100.0, due=800.0)
    after = timer("after", triggered_at=150.0)
    other_rule = timer("other-rule", rule="winback", triggered_at=50.0)
    other_user = timer("other-user", user="u2", triggered_at=50.0)
    other_app = timer("other-app", app="blog", triggered_at=50.0)
    for t in (before, at_the_time, after, other_rule, other_user, other_app):
        await store.add_timer(t)

    cancelled = await store.cancel_timers("shop", "u1", "cart", 100.0)

    assert cancelled == [at_the_time, before]  # earliest due first
    remaining = {t.timer_id for t in await store.pending_timers()}
    assert remaining == {"after", "other-rule", "other-user", "other-app"}


async def test_a_cancelled_timer_cannot_be_claimed(store: Store) -> None:
    await store.add_timer(timer("t1"))
    await store.cancel_timers("shop", "u1", "cart", 1e12)

    assert await store.claim_timer("t1") is None


async def test_cancelling_when_nothing_matches_returns_an_empty_list(
    store: Store,
) -> None:
    await store.add_timer(timer("t1", triggered_at=200.0))

    assert await store.cancel_timers("shop", "u1", "cart", 100.0) == []
    assert len(await store.pending_timers()) == 1


async def test_a_context_that_is_not_json_is_refused_with_a_store_error(
    store: Store,
) -> None:
    with pytest.raises(StoreError, match="timer context cannot be stored as JSON"):
        await store.add_timer(timer("t1", context={"bad": object()}))

    assert await store.pending_timers() == []


# decisions


async def test_decisions_are_listed_in_the_order_they_were_made(
    store: Store,
) -> None:
    made = [
        decision(at=300.0, decision="sent", message={"title": "Your cart"}),
        decision(at=100.0, decision="capped", reason="cap 1 per day reached"),
        decision(at=200.0, decision="suppressed", reason="purchase at 150"),
    ]
    for d in made:
        await store.record_decision(d)

    assert await store.decisions() == made


async def test_decisions_filter_by_app_by_user_or_both(store: Store) -> None:
    a = decision(app="shop", user="u1")
    b = decision(app="shop", user="u2")
    c = decision(app="blog", user="u1")
    d = decision(app="shop", user="u1", decision="no_consent", message=None)
    for item in (a, b, c, d):
        await store.record_decision(item)

    assert await store.decisions(app="shop") == [a, b, d]
    assert await store.decisions(user="u1") == [a, c, d]
    assert await store.decisions(app="shop", user="u1") == [a, d]
    assert await store.decisions(app="none") == []


async def test_a_decision_keeps_its_message_or_its_lack_of_one(
    store: Store,
) -> None:
    message = {"title": "Still thinking?", "body": "2 items", "data": {"n": 2}}
    await store.record_decision(decision(message=message))
    await store.record_decision(decision(message=None))

    first, second = await store.decisions()
    assert first.message == message
    assert second.message is None


# goals


async def test_goal_events_are_listed_in_the_order_recorded(store: Store) -> None:
    recorded = [
        goal(at=1700000300.0, session="s2"),
        goal(at=1700000100.5),
        goal(at=1700000200.0, user="u2"),
    ]
    for item in recorded:
        await store.record_goal(item)

    assert await store.goals() == recorded


async def test_goal_events_filter_by_app_by_rule_or_both(store: Store) -> None:
    a = goal(app="shop", rule="cart")
    b = goal(app="shop", rule="winback")
    c = goal(app="blog", rule="cart")
    d = goal(app="shop", rule="cart", user="u2", at=1700000500.0)
    for item in (a, b, c, d):
        await store.record_goal(item)

    assert await store.goals(app="shop") == [a, b, d]
    assert await store.goals(rule="cart") == [a, c, d]
    assert await store.goals(app="shop", rule="cart") == [a, d]
    assert await store.goals(app="shop", rule="browse") == []


async def test_a_new_store_has_no_goal_events(store: Store) -> None:
    assert await store.goals() == []


# claiming due timers: lease, fencing, idempotency


async def test_claim_due_takes_only_due_timers_earliest_first(store: Store) -> None:
    now = time.time()
    await store.add_timer(timer("later", due=now + 3600))
    await store.add_timer(timer("second", due=now - 5, user="u2"))
    await store.add_timer(timer("first", due=now - 10, user="u3"))

    claims = await store.claim_due(now, 10, 30.0)

    assert [c.timer.timer_id for c in claims] == ["first", "second"]
    assert all(c.lease_until >= now + 29 for c in claims)
    assert [t.timer_id for t in await store.pending_timers()] == [
        "first",
        "second",
        "later",
    ]


async def test_a_claimed_timer_is_not_claimed_again_while_its_lease_runs(
    store: Store,
) -> None:
    now = time.time()
    await store.add_timer(timer("t1", due=now - 1))

    assert len(await store.claim_due(now, 10, 30.0)) == 1
    assert await store.claim_due(now, 10, 30.0) == []


async def test_claim_due_takes_at_most_the_limit(store: Store) -> None:
    now = time.time()
    for i in range(6):
        await store.add_timer(timer(f"t{i}", user=f"u{i}", due=now - 10 + i))

    first = await store.claim_due(now, 2, 30.0)
    rest = await store.claim_due(now, 10, 30.0)

    assert len(first) <= 3  # a sharded store may round its share up
    assert sorted(c.timer.timer_id for c in first + rest) == [f"t{i}" for i in range(6)]


async def test_finish_settles_a_claimed_timer_once(store: Store) -> None:
    now = time.time()
    await store.add_timer(timer("t1", due=now - 1, context={"cart": ["sku-1"]}))
    (claim,) = await store.claim_due(now, 10, 30.0)

    assert claim.timer.context == {"cart": ["sku-1"]}
    assert await store.finish(claim) is True
    assert await store.finish(claim) is False
    assert await store.pending_timers() == []
    assert await store.claim_due(now + 60, 10, 30.0) == []


async def test_finish_many_settles_each_claim_once_and_answers_in_order(
    store: Store,
) -> None:
    now = time.time()
    for i, user in enumerate(["ana", "bo", "cy", "di"]):
        await store.add_timer(timer(f"t{i}", user=user, due=now - 1))
    claims = await store.claim_due(now, 10, 30.0)
    by_id = {c.timer.timer_id: c for c in claims}
    await store.cancel_timers("shop", "cy", "cart", now)

    answers = await store.finish_many(
        [by_id["t1"], by_id["t0"], by_id["t2"], by_id["t1"], by_id["t3"]]
    )

    assert answers == [True, True, False, False, True]
    assert await store.pending_timers() == []
    assert await store.finish_many([]) == []


async def test_finish_many_fences_off_a_claim_whose_lease_was_taken_over(
    store: Store,
) -> None:
    await store.add_timer(timer("t1", due=time.time() - 1))
    await store.add_timer(timer("t2", user="bo", due=time.time() - 1))
    stale = await store.claim_due(time.time(), 10, 0.2)

    await asyncio.sleep(0.3)
    fresh = {c.timer.timer_id: c for c in await store.claim_due(time.time(), 1, 30)}

    answers = await store.finish_many(stale)
    assert answers == [c.timer.timer_id not in fresh for c in stale]
    assert await store.finish_many(list(fresh.values())) == [True] * len(fresh)


async def test_a_timer_whose_lease_ran_out_is_claimed_again_with_a_newer_token(
    store: Store,
) -> None:
    await store.add_timer(timer("t1", due=time.time() - 1))
    (stale,) = await store.claim_due(time.time(), 10, 0.2)

    await asyncio.sleep(0.3)
    (fresh,) = await store.claim_due(time.time(), 10, 30.0)

    assert fresh.timer == stale.timer
    assert fresh.token > stale.token
    assert await store.finish(stale) is False  # the late claimant is fenced off
    assert await store.finish(fresh) is True


async def test_only_the_newest_unsettled_claim_holds_its_timer(store: Store) -> None:
    await store.add_timer(timer("t1", due=time.time() - 1))
    (stale,) = await store.claim_due(time.time(), 10, 0.2)
    assert await store.holds(stale)

    await asyncio.sleep(0.3)
    (fresh,) = await store.claim_due(time.time(), 10, 30.0)

    assert not await store.holds(stale)
    assert await store.holds(fresh)
    assert await store.finish(fresh)
    assert not await store.holds(fresh)


async def test_a_cancelled_claim_cannot_be_finished(store: Store) -> None:
    await store.add_timer(timer("t1", due=time.time() - 1, triggered_at=100.0))
    (claim,) = await store.claim_due(time.time(), 10, 30.0)

    assert [t.timer_id for t in await store.cancel_timers("shop", "u1", "cart", 100.0)]
    assert await store.finish(claim) is False


async def test_a_claim_for_a_timer_that_was_never_added_is_refused(
    store: Store,
) -> None:
    ghost = Claim(timer=timer("ghost"), token=1, lease_until=time.time() + 30)

    assert await store.finish(ghost) is False


# several caps of one send: all or none

# Keys as the engine builds them: one user's, so one cluster slot.
SESSION = Limit(count=1, per="session", window=None).key("shop", "u1", "s1", "cart")
USER_DAY = Limit(count=1, per="day", window=None).key("shop", "u1", "s1", "cart")


async def test_all_caps_with_room_are_counted_together(store: Store) -> None:
    caps = [(SESSION, 2, float("-inf")), (USER_DAY, 5, 0.0)]

    assert await store.cap_take_all(caps, 10.0) is None
    assert await store.cap_count(SESSION, float("-inf")) == 1
    assert await store.cap_count(USER_DAY, 0.0) == 1


async def test_a_full_second_cap_leaves_the_first_untouched(store: Store) -> None:
    assert await store.cap_take(USER_DAY, 1, 0.0, 5.0)
    caps = [(SESSION, 3, float("-inf")), (USER_DAY, 1, 0.0)]

    assert await store.cap_take_all(caps, 10.0) == 1
    assert await store.cap_count(SESSION, float("-inf")) == 0
    assert await store.cap_count(USER_DAY, 0.0) == 1


async def test_no_caps_at_all_grant_the_send(store: Store) -> None:
    assert await store.cap_take_all([], 10.0) is None


# caps taken once per send


async def test_a_send_id_counted_already_is_granted_again_without_counting(
    store: Store,
) -> None:
    caps = [("app\x1fu\x1fu1\x1fcart\x1f86400", 1, 0.0)]

    assert await store.cap_take_all(caps, 10.0, send_id="timer-1") is None
    assert await store.cap_take_all(caps, 11.0, send_id="timer-1") is None
    assert await store.cap_take_all(caps, 12.0, send_id="timer-2") == 0
    assert await store.cap_count(caps[0][0], 0.0) == 1


# rule sets


async def test_no_rule_set_was_saved_in_a_new_store(store: Store) -> None:
    assert await store.load_rules() is None


async def test_each_saved_rule_set_gets_the_next_version(store: Store) -> None:
    first = await store.save_rules('rule a "A" { when x push { title "a" } }', 10.0)
    second = await store.save_rules('rule b "B" { when y push { title "b" } }', 20.0)

    loaded = await store.load_rules()
    assert (first, second) == (1, 2)
    assert loaded is not None
    assert (loaded.version, loaded.saved_at) == (2, 20.0)
    assert loaded.source.startswith("rule b")


async def test_a_watcher_hears_of_every_rule_set_saved_after_it_started(
    store: Store,
) -> None:
    versions = store.rule_versions()
    assert await asyncio.wait_for(anext(versions), 5) == 0  # listening now

    first = await store.save_rules("", 1.0)
    second = await store.save_rules("", 2.0)

    assert await asyncio.wait_for(anext(versions), 5) == first
    assert await asyncio.wait_for(anext(versions), 5) == second
    await versions.aclose()  # type: ignore[attr-defined]


# lifecycle


async def test_a_closed_store_says_to_open_it(store: Store) -> None:
    await store.close()

    with pytest.raises(StoreError, match=r"not open: await store\.open\(\) first"):
        await store.get_user("shop", "u1")
    await store.open()  # the fixture closes it again


async def test_the_store_answers_after_closing_and_opening_again(
    store: Store,
) -> None:
    await store.set_consent("shop", "u1", False)
    await store.close()
    await store.open()
    await store.open()

    profile = await store.get_user("shop", "u1")
    assert isinstance(profile, UserProfile)
