"""Each method of the SQLite store, with real values."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from sessionpush.store import sqlite as sqlite_module
from sessionpush.store.base import (
    Decision,
    Device,
    PendingTimer,
    Store,
    Subscription,
    UserProfile,
)
from sessionpush.store.errors import StoreError
from sessionpush.store.sqlite import SQLiteStore


def timer(timer_id: str, **fields: Any) -> PendingTimer:
    values: dict[str, Any] = {
        "app": "shop",
        "user": "u1",
        "session": "s1",
        "rule": "cart",
        "due": 1000.0,
        "triggered_at": 100.0,
    }
    values.update(fields)
    return PendingTimer(timer_id=timer_id, **values)


def decision(**fields: Any) -> Decision:
    values: dict[str, Any] = {
        "app": "shop",
        "rule": "cart",
        "user": "u1",
        "session": "s1",
        "decision": "sent",
        "reason": "all checks passed",
        "at": 2000.0,
        "channel": "webpush",
        "triggered_at": 1000.0,
    }
    values.update(fields)
    return Decision(**values)


@pytest.fixture(params=[True, False], ids=["returning", "select-delete"])
def returning(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run a test with DELETE ... RETURNING and with the fallback for SQLite
    older than 3.35, whichever library this Python is linked with."""
    monkeypatch.setattr(sqlite_module, "_HAS_RETURNING", request.param)


def test_the_sqlite_store_satisfies_the_store_protocol() -> None:
    store: Store = SQLiteStore(":memory:")  # mypy checks the assignment
    assert isinstance(store, SQLiteStore)


# users, devices, consent, subscriptions


async def test_an_unknown_user_gets_consent_utc_and_no_attributes(
    store: SQLiteStore,
) -> None:
    assert await store.get_user("shop", "nobody") == UserProfile(
        app="shop", user="nobody", attributes={}, timezone="UTC", consent=True
    )


async def test_a_device_creates_the_user_with_the_device_time_zone(
    store: SQLiteStore,
) -> None:
    await store.upsert_device(
        Device(app="shop", user="u1", device_id="d1", timezone="Europe/Paris")
    )

    assert await store.get_user("shop", "u1") == UserProfile(
        app="shop", user="u1", timezone="Europe/Paris"
    )


async def test_the_latest_device_time_zone_becomes_the_user_time_zone(
    store: SQLiteStore,
) -> None:
    await store.upsert_device(
        Device(app="shop", user="u1", device_id="d1", timezone="Europe/Paris")
    )
    await store.upsert_device(
        Device(app="shop", user="u1", device_id="d2", timezone="Asia/Tokyo")
    )

    assert (await store.get_user("shop", "u1")).timezone == "Asia/Tokyo"


async def test_a_device_keeps_the_user_consent_and_attributes(
    store: SQLiteStore,
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


async def test_a_device_seen_again_replaces_its_stored_fields(db_path: str) -> None:
    store = SQLiteStore(db_path)
    await store.open()
    await store.upsert_device(
        Device(
            app="shop",
            user="u1",
            device_id="d1",
            platform="web",
            timezone="UTC",
            lang="en",
            app_version="1.0",
            last_seen=10.0,
        )
    )
    await store.upsert_device(
        Device(
            app="shop",
            user="u1",
            device_id="d1",
            platform="ios",
            timezone="Europe/Oslo",
            lang=None,
            app_version="2.0",
            last_seen=20.0,
        )
    )
    await store.close()

    # The Store interface has no way to list devices; read the table itself.
    conn = sqlite3.connect(db_path)
    try:
        rows = conn.execute(
            "SELECT app, user, device_id, platform, timezone, lang, app_version,"
            " last_seen FROM devices"
        ).fetchall()
    finally:
        conn.close()
    assert rows == [("shop", "u1", "d1", "ios", "Europe/Oslo", None, "2.0", 20.0)]


async def test_attributes_merge_key_by_key_and_replace_nested_values(
    store: SQLiteStore,
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


async def test_consent_can_be_withdrawn_and_granted_again(store: SQLiteStore) -> None:
    await store.set_consent("shop", "u1", False)
    assert (await store.get_user("shop", "u1")).consent is False

    await store.set_consent("shop", "u1", True)
    assert (await store.get_user("shop", "u1")).consent is True


async def test_two_apps_never_see_each_other_users(store: SQLiteStore) -> None:
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
    store: SQLiteStore,
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
    store: SQLiteStore,
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


async def test_cap_take_grants_until_the_limit_then_refuses(store: SQLiteStore) -> None:
    results = [await store.cap_take("u1:day", 3, 0.0, 100.0 + i) for i in range(5)]

    assert results == [True, True, True, False, False]
    assert await store.cap_count("u1:day", 0.0) == 3


async def test_cap_count_counts_sends_at_or_after_since(store: SQLiteStore) -> None:
    for at in (100.0, 200.0, 300.0):
        assert await store.cap_take("k", 10, 0.0, at)

    assert await store.cap_count("k", 0.0) == 3
    assert await store.cap_count("k", 200.0) == 2
    assert await store.cap_count("k", 200.5) == 1
    assert await store.cap_count("k", 301.0) == 0
    assert await store.cap_count("unknown", 0.0) == 0


async def test_a_slot_frees_when_its_send_leaves_the_window(store: SQLiteStore) -> None:
    assert await store.cap_take("k", 1, 0.0, 100.0)
    assert not await store.cap_take("k", 1, 100.0, 150.0)

    assert await store.cap_take("k", 1, 100.5, 200.0)


async def test_cap_take_deletes_the_key_events_older_than_since(
    store: SQLiteStore,
) -> None:
    for at in (100.0, 200.0, 300.0):
        await store.cap_take("k", 10, 0.0, at)
    await store.cap_take("other", 10, 0.0, 100.0)

    await store.cap_take("k", 10, 250.0, 400.0)

    assert await store.cap_count("k", 0.0) == 2  # 300 and 400 remain
    assert await store.cap_count("other", 0.0) == 1


async def test_cap_take_prunes_even_when_it_refuses(store: SQLiteStore) -> None:
    for at in (100.0, 200.0):
        await store.cap_take("k", 10, 0.0, at)

    assert not await store.cap_take("k", 1, 150.0, 250.0)
    assert await store.cap_count("k", 0.0) == 1


async def test_caps_under_different_keys_do_not_share_slots(
    store: SQLiteStore,
) -> None:
    assert await store.cap_take("u1", 1, 0.0, 1.0)
    assert await store.cap_take("u2", 1, 0.0, 1.0)
    assert not await store.cap_take("u1", 1, 0.0, 2.0)


async def test_a_limit_of_zero_never_grants(store: SQLiteStore) -> None:
    assert not await store.cap_take("k", 0, 0.0, 1.0)
    assert await store.cap_count("k", 0.0) == 0


# suppression


async def test_a_rule_never_suppressed_has_no_suppression_time(
    store: SQLiteStore,
) -> None:
    assert await store.suppressed_at("shop", "u1", "cart") is None


async def test_the_latest_suppression_wins_and_an_older_one_is_ignored(
    store: SQLiteStore,
) -> None:
    await store.mark_suppressed("shop", "u1", "cart", 100.0)
    await store.mark_suppressed("shop", "u1", "cart", 300.0)
    await store.mark_suppressed("shop", "u1", "cart", 200.0)

    assert await store.suppressed_at("shop", "u1", "cart") == 300.0


async def test_suppression_is_per_app_user_and_rule(store: SQLiteStore) -> None:
    await store.mark_suppressed("shop", "u1", "cart", 100.0)

    assert await store.suppressed_at("shop", "u1", "winback") is None
    assert await store.suppressed_at("shop", "u2", "cart") is None
    assert await store.suppressed_at("blog", "u1", "cart") is None


# timers


async def test_pending_timers_are_listed_earliest_due_first_then_in_the_order_added(
    store: SQLiteStore,
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


async def test_an_empty_store_has_no_pending_timers(store: SQLiteStore) -> None:
    assert await store.pending_timers() == []


async def test_a_timer_keeps_its_context_exactly(store: SQLiteStore) -> None:
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
    store: SQLiteStore,
) -> None:
    await store.add_timer(timer("a", due=100.0))
    await store.add_timer(timer("b", due=100.0))
    replacement = timer("a", due=100.0, session="s2", context={"v": 2})
    await store.add_timer(replacement)

    assert await store.pending_timers() == [replacement, timer("b", due=100.0)]


@pytest.mark.usefixtures("returning")
async def test_a_timer_is_claimed_once(store: SQLiteStore) -> None:
    t = timer("t1", context={"cart": ["sku-1"]})
    await store.add_timer(t)

    assert await store.claim_timer("t1") == t
    assert await store.claim_timer("t1") is None
    assert await store.pending_timers() == []


@pytest.mark.usefixtures("returning")
async def test_claiming_an_unknown_timer_returns_none(store: SQLiteStore) -> None:
    await store.add_timer(timer("t1"))

    assert await store.claim_timer("nope") is None
    assert len(await store.pending_timers()) == 1


@pytest.mark.usefixtures("returning")
async def test_cancel_removes_the_rule_timers_triggered_at_or_before_the_time(
    store: SQLiteStore,
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


@pytest.mark.usefixtures("returning")
async def test_a_cancelled_timer_cannot_be_claimed(store: SQLiteStore) -> None:
    await store.add_timer(timer("t1"))
    await store.cancel_timers("shop", "u1", "cart", 1e12)

    assert await store.claim_timer("t1") is None


@pytest.mark.usefixtures("returning")
async def test_cancelling_when_nothing_matches_returns_an_empty_list(
    store: SQLiteStore,
) -> None:
    await store.add_timer(timer("t1", triggered_at=200.0))

    assert await store.cancel_timers("shop", "u1", "cart", 100.0) == []
    assert len(await store.pending_timers()) == 1


async def test_a_context_that_is_not_json_is_refused_with_a_store_error(
    store: SQLiteStore,
) -> None:
    with pytest.raises(StoreError, match="timer context cannot be stored as JSON"):
        await store.add_timer(timer("t1", context={"bad": object()}))

    assert await store.pending_timers() == []


# decisions


async def test_decisions_are_listed_in_the_order_they_were_made(
    store: SQLiteStore,
) -> None:
    made = [
        decision(at=300.0, decision="sent", message={"title": "Your cart"}),
        decision(at=100.0, decision="capped", reason="cap 1 per day reached"),
        decision(at=200.0, decision="suppressed", reason="purchase at 150"),
    ]
    for d in made:
        await store.record_decision(d)

    assert await store.decisions() == made


async def test_decisions_filter_by_app_by_user_or_both(store: SQLiteStore) -> None:
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
    store: SQLiteStore,
) -> None:
    message = {"title": "Still thinking?", "body": "2 items", "data": {"n": 2}}
    await store.record_decision(decision(message=message))
    await store.record_decision(decision(message=None))

    first, second = await store.decisions()
    assert first.message == message
    assert second.message is None


# lifecycle and errors


async def test_a_store_that_was_never_opened_says_to_open_it() -> None:
    store = SQLiteStore(":memory:")

    with pytest.raises(StoreError, match=r"not open: await store\.open\(\) first"):
        await store.get_user("shop", "u1")


async def test_a_closed_store_refuses_to_work() -> None:
    store = SQLiteStore(":memory:")
    await store.open()
    await store.close()

    with pytest.raises(StoreError, match="not open"):
        await store.add_timer(timer("t1"))


async def test_opening_and_closing_twice_is_harmless(db_path: str) -> None:
    store = SQLiteStore(db_path)
    await store.open()
    await store.add_timer(timer("t1"))
    await store.open()

    assert len(await store.pending_timers()) == 1
    await store.close()
    await store.close()


async def test_a_file_store_runs_in_wal_mode_with_the_current_schema_version(
    db_path: str,
) -> None:
    store = SQLiteStore(db_path)
    await store.open()
    await store.close()

    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("PRAGMA user_version").fetchone() == (
            sqlite_module.SCHEMA_VERSION,
        )
    finally:
        conn.close()


async def test_a_schema_version_newer_than_the_code_is_refused(db_path: str) -> None:
    store = SQLiteStore(db_path)
    await store.open()
    await store.close()
    conn = sqlite3.connect(db_path)
    conn.execute(f"PRAGMA user_version={sqlite_module.SCHEMA_VERSION + 1}")
    conn.close()

    newer = SQLiteStore(db_path)
    with pytest.raises(StoreError) as caught:
        await newer.open()

    text = str(caught.value)
    assert f"schema version {sqlite_module.SCHEMA_VERSION + 1}" in text
    assert f"knows versions up to {sqlite_module.SCHEMA_VERSION}" in text
    assert "upgrade sessionpush" in text
    with pytest.raises(StoreError, match="not open"):
        await newer.pending_timers()


async def test_a_database_of_another_program_is_refused(db_path: str) -> None:
    conn = sqlite3.connect(db_path)
    conn.execute("CREATE TABLE invoices (id INTEGER)")
    conn.close()

    with pytest.raises(
        StoreError, match=r"holds tables \(invoices\).*not a sessionpush"
    ):
        await SQLiteStore(db_path).open()


async def test_a_file_that_is_not_a_database_is_refused(db_path: str) -> None:
    with open(db_path, "wb") as garbage:
        garbage.write(b"this is a text file, not SQLite\n" * 200)

    with pytest.raises(StoreError, match="not a usable SQLite database") as caught:
        await SQLiteStore(db_path).open()
    assert isinstance(caught.value.__cause__, sqlite3.DatabaseError)


async def test_a_memory_store_starts_empty_after_reopening() -> None:
    store = SQLiteStore(":memory:")
    await store.open()
    await store.add_timer(timer("t1"))
    await store.close()

    await store.open()
    assert await store.pending_timers() == []
    await store.close()
