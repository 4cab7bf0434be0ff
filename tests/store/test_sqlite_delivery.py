"""The store's delivery state: removed and disabled subscriptions,
idempotency keys, sent messages and outcomes."""

from __future__ import annotations

from sessionpush.store.base import DeliveryOutcome, SentMessage, Subscription
from sessionpush.store.sqlite import SQLiteStore


def token(value: str, at: float) -> Subscription:
    return Subscription(
        app="a",
        user="u",
        device_id="phone",
        channel="apns",
        data={"token": value, "environment": "sandbox"},
        created_at=at,
    )


async def test_removing_needs_the_address_that_failed(store: SQLiteStore) -> None:
    await store.add_subscription(token("new", 10.0))

    assert not await store.remove_subscription("a", "u", "phone", "apns", "old")
    assert await store.remove_subscription("a", "u", "phone", "apns", "new")
    assert await store.subscriptions("a", "u") == []


async def test_a_token_registered_after_the_answer_is_not_disabled(
    store: SQLiteStore,
) -> None:
    await store.add_subscription(token("t1", 100.0))

    kept = await store.disable_subscription(
        "a", "u", "phone", "apns", "t1", "Unregistered", registered_before=50.0
    )

    assert not kept
    assert len(await store.subscriptions("a", "u")) == 1


async def test_a_disabled_token_is_hidden_until_registered_again(
    store: SQLiteStore,
) -> None:
    await store.add_subscription(token("t1", 10.0))

    assert await store.disable_subscription(
        "a", "u", "phone", "apns", "t1", "BadDeviceToken (sandbox)"
    )
    assert await store.subscriptions("a", "u") == []
    assert await store.disabled_subscriptions("a", "u") == [
        (token("t1", 10.0), "BadDeviceToken (sandbox)")
    ]

    await store.add_subscription(token("t1", 20.0))
    assert await store.subscriptions("a", "u") == [token("t1", 20.0)]


async def test_an_idempotency_key_is_claimed_once(store: SQLiteStore) -> None:
    assert await store.claim_send("k", "m1", 1.0) is None
    assert await store.claim_send("k", "m2", 2.0) == "m1"


async def test_messages_and_outcomes_read_back_in_order(store: SQLiteStore) -> None:
    sent = SentMessage(
        id="m1", app="a", user="u", rule="r", channel="push", at=1.0, link="https://x"
    )
    await store.record_message(sent)
    for step, outcome in enumerate(["sent", "retry", "delivered"]):
        await store.record_outcome(
            DeliveryOutcome(
                message_id="m1",
                app="a",
                user="u",
                rule="r",
                channel="webpush",
                outcome=outcome,
                at=float(step),
                device_id="d",
                retry_at=5.0 if outcome == "retry" else None,
            )
        )

    assert await store.sent_message("m1") == sent
    assert await store.sent_message("m2") is None
    assert [o.outcome for o in await store.outcomes("m1")] == [
        "sent",
        "retry",
        "delivered",
    ]
    assert (await store.outcomes(app="a"))[1].retry_at == 5.0


async def test_a_version_1_file_migrates_and_keeps_its_subscriptions(
    db_path: str,
) -> None:
    import sqlite3

    from sessionpush.store import sqlite as sqlite_module

    conn = sqlite3.connect(db_path)
    for statement in sqlite_module._MIGRATIONS[0]:
        conn.execute(statement)
    conn.execute(
        "INSERT INTO subscriptions (app, user, device_id, channel, data, created_at)"
        " VALUES ('a', 'u', 'phone', 'apns', '{\"token\":\"t1\"}', 1.0)"
    )
    conn.execute("PRAGMA user_version=1")
    conn.commit()
    conn.close()

    store = SQLiteStore(db_path)
    await store.open()
    try:
        (kept,) = await store.subscriptions("a", "u")
        assert kept.address == "t1"
        assert await store.claim_send("k", "m1", 1.0) is None
    finally:
        await store.close()
