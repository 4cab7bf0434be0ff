"""The store contract, erasure part: erasing a user leaves nothing of them
behind in any kind of store, and nothing of anyone else goes.

The leftover checks read the stores' own storage (every row of every
SQLite table; every Redis key, field, member and stream entry), because
the interface can only show what it knows to look for."""

from __future__ import annotations

from typing import Any

from sessionpush.engine.rules import CompiledLimit as Limit
from sessionpush.store.base import (
    Decision,
    DeliveryOutcome,
    Device,
    GoalEvent,
    PendingTimer,
    SentMessage,
    Store,
    Subscription,
    send_key_prefix,
    user_cap_prefix,
)
from sessionpush.store.redis import RedisStore
from sessionpush.store.sqlite import SQLiteStore
from sessionpush.transports.queue import idempotency_key

NOW = 1_800_000_000.0
# Due long ago, so that claim_due takes it on every store (Redis compares
# due times with its own clock, not with NOW).
PAST = 1_000_000.0

ALICE_REMOVED = {
    "send_keys": 3,
    "caps": 2,
    "profile": 1,
    "devices": 1,
    "subscriptions": 2,
    "timers": 2,
    "suppressions": 1,
    "decisions": 1,
    "messages": 2,
    "outcomes": 1,
    "goals": 1,
}


def pending(timer_id: str, app: str, user: str, session: str, due: float) -> Any:
    return PendingTimer(
        timer_id=timer_id,
        app=app,
        user=user,
        session=session,
        rule="cart",
        due=due,
        triggered_at=due - 60,
        context={"snapshot": {"user": user, "session": session}},
    )


async def remember(store: Store, app: str, user: str, session: str) -> None:
    """One of everything the store keeps about a user: a pending timer, and
    two that claim_due will take (one to be settled, one left claimed)."""
    await store.record_goal(
        GoalEvent(app=app, rule="cart_recovery", user=user, session=session, at=5.0)
    )
    await store.upsert_device(
        Device(app=app, user=user, device_id=f"{user}-phone", timezone="Europe/Rome")
    )
    await store.set_user_attributes(app, user, {"tier": "gold", "name": user})
    await store.set_consent(app, user, False)
    for device, token in ((f"{user}-phone", "live"), (f"{user}-tablet", "old")):
        await store.add_subscription(
            Subscription(
                app=app,
                user=user,
                device_id=device,
                channel="fcm",
                data={"token": f"fcm-{token}-token-of-{user}"},
            )
        )
    await store.disable_subscription(
        app, user, f"{user}-tablet", "fcm", f"fcm-old-token-of-{user}", "UNREGISTERED"
    )
    await store.add_timer(pending(f"t-{app}-{user}", app, user, session, NOW + 60))
    await store.add_timer(pending(f"settled-{app}-{user}", app, user, session, PAST))
    await store.add_timer(pending(f"claimed-{app}-{user}", app, user, session, PAST))
    for limit in (
        Limit(count=1, per="user", window=86400.0),
        Limit(count=1, per="session", window=None),
    ):
        key = limit.key(app, user, session, "cart")
        assert await store.cap_take(key, 1, NOW - 10, NOW)
    await store.mark_suppressed(app, user, "cart", NOW)
    await store.record_decision(
        Decision(
            app=app,
            rule="cart",
            user=user,
            session=session,
            decision="sent",
            reason="ok",
            at=NOW,
            channel="push",
            triggered_at=NOW,
            message={"title": f"hi {user}"},
        )
    )
    message_id = f"m-{app}-{user}"
    key = idempotency_key(app, user, "cart", session, NOW)
    assert await store.claim_send(key, message_id, NOW) is None
    # A key not built by the engine (an operator's retry), found by its
    # message.
    assert await store.claim_send(f"retry-{app}-{user}", message_id, NOW) is None
    await store.record_message(
        SentMessage(
            id=message_id, app=app, user=user, rule="cart", channel="fcm", at=NOW
        )
    )
    await store.record_outcome(
        DeliveryOutcome(
            message_id=message_id,
            app=app,
            user=user,
            rule="cart",
            channel="fcm",
            outcome="delivered",
            at=NOW,
        )
    )
    # The settled timer's message has the timer's id and no outcome yet.
    settled = f"settled-{app}-{user}"
    key = idempotency_key(app, user, "cart", session, PAST - 60)
    assert await store.claim_send(key, settled, NOW) is None
    await store.record_message(
        SentMessage(id=settled, app=app, user=user, rule="cart", channel="fcm", at=NOW)
    )


async def remember_three(store: Store) -> None:
    """Alice and Bob of the shop, and Alice of the news app; their due
    timers claimed, and the ``settled-`` ones settled."""
    await remember(store, "shop", "alice", "sess-alice")
    await remember(store, "shop", "bob", "sess-bob")
    await remember(store, "news", "alice", "sess-news-alice")
    for claim in await store.claim_due(NOW, 100, 60.0):
        if claim.timer.timer_id.startswith("settled-"):
            assert await store.finish(claim)


async def everything(store: Store) -> list[str]:
    """Every record the store holds, one string each: a row of a table, or
    a Redis key with one field, member or stream entry of it."""
    if isinstance(store, SQLiteStore):
        # The connection is private; a leftover scan has to read past the
        # interface.
        conn = store._connection()
        tables = [
            row[0]
            for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
        ]
        return [
            f"{table}: " + " | ".join(str(value) for value in row)
            for table in tables
            for row in conn.execute(f"SELECT * FROM {table}")
        ]
    assert isinstance(store, RedisStore)
    client = store._redis()
    found = []
    async for raw in client.scan_iter(count=100):
        name = raw.decode()
        kind = (await client.type(raw)).decode()
        parts: list[Any]
        if kind == "string":
            parts = [await client.get(raw)]
        elif kind == "hash":
            parts = [k + b"=" + v for k, v in (await client.hgetall(raw)).items()]
        elif kind == "zset":
            parts = await client.zrange(raw, 0, -1)
        elif kind == "stream":
            parts = [fields[b"d"] for _, fields in await client.xrange(raw)]
        else:
            raise AssertionError(f"{name} is a {kind}; the store makes none")
        found += [f"{name}: {part.decode()}" for part in parts] or [name]
    return found


def about(records: list[str], *names: str) -> list[str]:
    return sorted(r for r in records if any(name in r for name in names))


async def test_erasing_a_user_leaves_no_record_that_names_them_or_their_session(
    store: Store,
) -> None:
    await remember_three(store)
    before = await everything(store)

    report = await store.erase_user("shop", "alice")

    assert report.removed == ALICE_REMOVED
    left = await everything(store)
    assert about(left, "alice") == about(left, "news")
    assert about(left, "sess-alice", "m-shop-alice", "settled-shop-alice") == []
    # Bob of the same app and Alice of another app keep everything.
    assert about(left, "bob", "news") == about(before, "bob", "news")
    assert len(about(left, "sess-bob")) >= 3
    assert len(about(left, "sess-news-alice")) >= 3


async def test_an_erased_user_reads_as_unknown_and_others_read_as_before(
    store: Store,
) -> None:
    await remember_three(store)
    cap_key = Limit(count=1, per="session", window=None).key(
        "shop", "alice", "sess-alice", "cart"
    )

    await store.erase_user("shop", "alice")

    profile = await store.get_user("shop", "alice")
    assert (profile.consent, profile.attributes, profile.timezone) == (
        True,
        {},
        "UTC",
    )
    assert await store.subscriptions("shop", "alice") == []
    assert await store.disabled_subscriptions("shop", "alice") == []
    assert await store.suppressed_at("shop", "alice", "cart") is None
    assert await store.cap_count(cap_key, NOW - 10) == 0
    assert await store.sent_message("m-shop-alice") is None
    assert await store.outcomes(message_id="m-shop-alice") == []
    assert await store.decisions(app="shop", user="alice") == []
    assert [g.user for g in await store.goals(app="shop")] == ["bob"]
    assert sorted(t.timer_id for t in await store.pending_timers()) == [
        "claimed-news-alice",
        "claimed-shop-bob",
        "t-news-alice",
        "t-shop-bob",
    ]
    again = idempotency_key("shop", "alice", "cart", "sess-alice", NOW)
    assert await store.claim_send(again, "m-new", NOW) is None
    assert (await store.get_user("news", "alice")).attributes == {
        "tier": "gold",
        "name": "alice",
    }
    assert len(await store.subscriptions("shop", "bob")) == 1
    assert await store.sent_message("m-shop-bob") is not None


async def test_a_claimant_of_an_erased_user_timer_fails_its_fence(
    store: Store,
) -> None:
    await store.add_timer(pending("t-1", "shop", "alice", "s1", PAST))
    (claim,) = await store.claim_due(NOW, 10, 60.0)

    await store.erase_user("shop", "alice")

    assert not await store.holds(claim)
    assert not await store.finish(claim)
    assert await store.claim_due(NOW + 120, 10, 60.0) == []


async def test_erasing_twice_or_an_unknown_user_removes_nothing(
    store: Store,
) -> None:
    await remember_three(store)

    assert (await store.erase_user("shop", "alice")).total == sum(
        ALICE_REMOVED.values()
    )
    assert (await store.erase_user("shop", "alice")).removed == dict.fromkeys(
        ALICE_REMOVED, 0
    )
    assert (await store.erase_user("shop", "nobody")).total == 0


async def test_a_user_id_that_looks_like_a_pattern_erases_only_that_user(
    store: Store,
) -> None:
    """Redis finds keys by glob pattern; ``a*`` and ``[ab]`` are ids, not
    patterns."""
    for user in ("a*", "[ab]"):
        await remember(store, "shop", user, f"sess-{user}")
    await remember(store, "shop", "alice", "sess-alice")
    await remember(store, "shop", "b", "sess-b")
    before = await everything(store)

    assert (await store.erase_user("shop", "a*")).total > 0
    assert (await store.erase_user("shop", "[ab]")).total > 0

    left = await everything(store)
    assert about(left, "alice", "sess-b") == about(before, "alice", "sess-b")
    assert about(left, "a*", "[ab]") == []


def test_the_erasure_prefixes_match_the_keys_the_engine_and_queue_make() -> None:
    per_user = Limit(count=1, per="user", window=3600.0)
    per_session = Limit(count=1, per="session", window=None)
    assert per_user.key("a", "u", "s", "r").startswith(user_cap_prefix("a", "u"))
    assert per_session.key("a", "u", "s", "r").startswith(user_cap_prefix("a", "u"))
    assert idempotency_key("a", "u", "r", "s", 1.0).startswith(
        send_key_prefix("a", "u")
    )


async def test_on_redis_an_outcome_recorded_while_the_erasure_runs_goes_too(
    redis_server: Any, monkeypatch: Any
) -> None:
    """A delivery still in flight records its outcome between the reading
    of the streams and their trimming; the erasure reads what came since."""
    store = RedisStore(f"{redis_server.url}?prefix=late")
    await store.open()
    await remember(store, "shop", "alice", "sess-alice")
    erase_messages = store._erase_messages

    async def while_erasing(app: str, user: str, ids: list[str]) -> set[str]:
        await store.record_outcome(
            DeliveryOutcome(
                message_id="m-shop-alice",
                app="shop",
                user="alice",
                rule="cart",
                channel="fcm",
                outcome="clicked",
                at=NOW + 5,
            )
        )
        return await erase_messages(app, user, ids)

    monkeypatch.setattr(store, "_erase_messages", while_erasing)
    report = await store.erase_user("shop", "alice")

    assert report.removed["outcomes"] == 2
    assert await store.outcomes() == []
    await store.close()
