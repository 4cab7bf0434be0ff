"""A file store keeps everything across a restart and stays consistent when
two connections share the file."""

from __future__ import annotations

import asyncio
import sqlite3
import threading

import pytest

from sessionpush.store.base import (
    Decision,
    Device,
    PendingTimer,
    Subscription,
    UserProfile,
)
from sessionpush.store.errors import StoreError
from sessionpush.store.sqlite import SQLiteStore


async def test_a_restart_loses_no_pending_timer_cap_decision_consent_or_subscription(
    db_path: str,
) -> None:
    timers = [
        PendingTimer(
            timer_id=f"t{i}",
            app="shop",
            user="u1",
            session="s1",
            rule="cart",
            due=due,
            triggered_at=100.0,
            context={"event": {"name": "add_to_cart", "n": i}},
        )
        for i, due in enumerate((500.0, 300.0, 300.0, 900.0))
    ]
    subscription = Subscription(
        app="shop",
        user="u1",
        device_id="d1",
        channel="webpush",
        data={"endpoint": "https://push.example/1", "keys": {"auth": "a"}},
        created_at=5.0,
    )
    decision = Decision(
        app="shop",
        rule="cart",
        user="u1",
        session="s1",
        decision="sent",
        reason="all checks passed",
        at=600.0,
        channel="webpush",
        triggered_at=100.0,
        message={"title": "Your cart"},
    )

    before = SQLiteStore(db_path)
    await before.open()
    for t in timers:
        await before.add_timer(t)
    await before.claim_timer("t3")
    await before.cap_take("u1:day", 2, 0.0, 10.0)
    await before.upsert_device(
        Device(app="shop", user="u1", device_id="d1", timezone="Europe/Rome")
    )
    await before.set_consent("shop", "u1", False)
    await before.set_user_attributes("shop", "u1", {"plan": "pro"})
    await before.add_subscription(subscription)
    await before.mark_suppressed("shop", "u1", "winback", 42.0)
    await before.record_decision(decision)
    await before.close()

    after = SQLiteStore(db_path)
    await after.open()
    try:
        assert await after.pending_timers() == [timers[1], timers[2], timers[0]]
        assert await after.claim_timer("t3") is None
        assert await after.cap_count("u1:day", 0.0) == 1
        assert await after.cap_take("u1:day", 2, 0.0, 20.0)
        assert not await after.cap_take("u1:day", 2, 0.0, 30.0)
        assert await after.get_user("shop", "u1") == UserProfile(
            app="shop",
            user="u1",
            attributes={"plan": "pro"},
            timezone="Europe/Rome",
            consent=False,
        )
        assert await after.subscriptions("shop", "u1") == [subscription]
        assert await after.suppressed_at("shop", "u1", "winback") == 42.0
        assert await after.decisions() == [decision]
    finally:
        await after.close()


async def test_decisions_recorded_after_a_restart_follow_the_earlier_ones(
    db_path: str,
) -> None:
    def made(at: float) -> Decision:
        return Decision(
            app="shop",
            rule="cart",
            user="u1",
            session="s1",
            decision="sent",
            reason="ok",
            at=at,
            channel="inapp",
            triggered_at=0.0,
        )

    for at in (3.0, 1.0, 2.0):
        store = SQLiteStore(db_path)
        await store.open()
        await store.record_decision(made(at))
        await store.close()

    store = SQLiteStore(db_path)
    await store.open()
    assert [d.at for d in await store.decisions()] == [3.0, 1.0, 2.0]
    await store.close()


async def test_two_stores_on_one_file_share_a_cap_when_interleaved(
    db_path: str,
) -> None:
    a, b = SQLiteStore(db_path), SQLiteStore(db_path)
    await a.open()
    await b.open()
    try:
        results = []
        for i in range(3):
            results.append(await a.cap_take("u1:day", 3, 0.0, 10.0 + i))
            results.append(await b.cap_take("u1:day", 3, 0.0, 10.5 + i))

        assert results == [True, True, True, False, False, False]
        assert await a.cap_count("u1:day", 0.0) == 3
        assert await b.cap_count("u1:day", 0.0) == 3
    finally:
        await a.close()
        await b.close()


async def test_a_timer_added_by_one_store_is_claimed_once_across_two(
    db_path: str,
) -> None:
    a, b = SQLiteStore(db_path), SQLiteStore(db_path)
    await a.open()
    await b.open()
    try:
        t = PendingTimer(
            timer_id="t1",
            app="shop",
            user="u1",
            session="s1",
            rule="cart",
            due=1.0,
            triggered_at=0.0,
        )
        await a.add_timer(t)

        assert await b.claim_timer("t1") == t
        assert await a.claim_timer("t1") is None
    finally:
        await a.close()
        await b.close()


def test_two_processes_racing_for_the_last_cap_slot_get_one_true(
    db_path: str,
) -> None:
    """Two connections in two threads stand in for two processes: each round
    both call cap_take for a fresh key with limit 1 at the same moment."""
    rounds = 40
    barrier = threading.Barrier(2, timeout=10)
    results: dict[str, list[bool]] = {"a": [], "b": []}
    errors: list[BaseException] = []

    async def contend(name: str) -> None:
        store = SQLiteStore(db_path, busy_timeout=10.0)
        await store.open()
        try:
            for i in range(rounds):
                barrier.wait()
                results[name].append(await store.cap_take(f"k{i}", 1, 0.0, 1.0))
        finally:
            await store.close()

    def run(name: str) -> None:
        try:
            asyncio.run(contend(name))
        except BaseException as exc:  # reported to the test thread below
            errors.append(exc)
            barrier.abort()

    # Create the schema first so the race is about caps, not about open().
    asyncio.run(_create(db_path))
    threads = [threading.Thread(target=run, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    winners = [a + b for a, b in zip(results["a"], results["b"], strict=True)]
    assert winners == [1] * rounds


async def test_a_write_blocked_past_the_busy_timeout_fails_without_counting(
    db_path: str,
) -> None:
    await _create(db_path)
    store = SQLiteStore(db_path, busy_timeout=0.05)
    await store.open()
    locker = sqlite3.connect(db_path, isolation_level=None)
    try:
        locker.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreError, match=r"cannot take cap slots.*locked"):
            await store.cap_take("k", 1, 0.0, 1.0)
        locker.execute("ROLLBACK")

        assert await store.cap_count("k", 0.0) == 0
        assert await store.cap_take("k", 1, 0.0, 1.0)
    finally:
        locker.close()
        await store.close()


async def _create(path: str) -> None:
    store = SQLiteStore(path)
    await store.open()
    await store.close()
