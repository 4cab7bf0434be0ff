"""Erasing a user from the SQLite store leaves nothing of them behind, and
nothing of anyone else goes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sessionpush.engine.rules import CompiledLimit as Limit
from sessionpush.store.base import (
    Decision,
    DeliveryOutcome,
    Device,
    GoalEvent,
    PendingTimer,
    SentMessage,
    Subscription,
    send_key_prefix,
    user_cap_prefix,
)
from sessionpush.store.sqlite import SQLiteStore
from sessionpush.transports.queue import idempotency_key

NOW = 1_800_000_000.0


async def remember(store: SQLiteStore, app: str, user: str, session: str) -> None:
    """One of everything the store keeps about a user."""
    await store.record_goal(
        GoalEvent(app=app, rule="cart_recovery", user=user, session=session, at=5.0)
    )
    await store.upsert_device(
        Device(app=app, user=user, device_id=f"{user}-phone", timezone="Europe/Rome")
    )
    await store.set_user_attributes(app, user, {"tier": "gold", "name": user})
    await store.set_consent(app, user, False)
    await store.add_subscription(
        Subscription(
            app=app,
            user=user,
            device_id=f"{user}-phone",
            channel="fcm",
            data={"token": f"fcm-token-of-{user}"},
        )
    )
    await store.add_timer(
        PendingTimer(
            timer_id=f"t-{app}-{user}",
            app=app,
            user=user,
            session=session,
            rule="cart",
            due=NOW + 60,
            triggered_at=NOW,
            context={"snapshot": {"user": user}},
        )
    )
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


def cells(path: Path) -> list[str]:
    """Every text cell of every table, to look for leftovers."""
    with sqlite3.connect(path) as conn:
        tables = [
            row[0]
            for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
        ]
        found = []
        for table in tables:
            for row in conn.execute(f"SELECT * FROM {table}"):
                found += [str(value) for value in row if value is not None]
    return found


async def test_erasing_a_user_leaves_no_row_that_names_them_or_their_session(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.db"
    store = SQLiteStore(str(path))
    await store.open()
    await remember(store, "shop", "alice", "sess-alice")
    await remember(store, "shop", "bob", "sess-bob")
    await remember(store, "news", "alice", "sess-news-alice")

    report = await store.erase_user("shop", "alice")
    await store.close()

    assert report.removed == {
        "send_keys": 1,
        "caps": 2,
        "profile": 1,
        "devices": 1,
        "subscriptions": 1,
        "timers": 1,
        "suppressions": 1,
        "decisions": 1,
        "messages": 1,
        "outcomes": 1,
        "goals": 1,
    }
    left = cells(path)
    assert not [c for c in left if "sess-alice" in c or "m-shop-alice" in c]
    assert not [c for c in left if "shop" in c and "alice" in c]
    # Bob of the same app and Alice of another app keep everything.
    assert sum("sess-bob" in c for c in left) >= 3
    assert sum("sess-news-alice" in c for c in left) >= 3


async def test_erasing_twice_or_an_unknown_user_removes_nothing(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(str(tmp_path / "state.db"))
    await store.open()
    await remember(store, "shop", "alice", "s1")
    assert (await store.erase_user("shop", "alice")).total == 12
    assert (await store.erase_user("shop", "alice")).total == 0
    assert (await store.erase_user("shop", "nobody")).total == 0
    profile = await store.get_user("shop", "alice")
    assert profile.consent is True
    assert profile.attributes == {}
    await store.close()


def test_the_erasure_prefixes_match_the_keys_the_engine_and_queue_make() -> None:
    per_user = Limit(count=1, per="user", window=3600.0)
    per_session = Limit(count=1, per="session", window=None)
    assert per_user.key("a", "u", "s", "r").startswith(user_cap_prefix("a", "u"))
    assert per_session.key("a", "u", "s", "r").startswith(user_cap_prefix("a", "u"))
    assert idempotency_key("a", "u", "r", "s", 1.0).startswith(
        send_key_prefix("a", "u")
    )
