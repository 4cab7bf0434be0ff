"""The store contract, delivery part: removed and disabled subscriptions,
idempotency keys, sent messages and outcomes, run unchanged against every
kind of store."""

from __future__ import annotations

from sessionpush.store.base import DeliveryOutcome, SentMessage, Store, Subscription

APNS_OLD = "a3f1" * 16
APNS_NEW = "9c0e" * 16
ENDPOINT = "https://fcm.googleapis.com/fcm/send/dQw4w9WgXcQ:APA91bH"


def token(value: str, at: float, device_id: str = "iphone-15") -> Subscription:
    return Subscription(
        app="shop",
        user="u1",
        device_id=device_id,
        channel="apns",
        data={"token": value, "environment": "sandbox"},
        created_at=at,
    )


def webpush(endpoint: str, at: float) -> Subscription:
    return Subscription(
        app="shop",
        user="u1",
        device_id="firefox-laptop",
        channel="webpush",
        data={"endpoint": endpoint, "keys": {"p256dh": "BNc", "auth": "tBH"}},
        created_at=at,
    )


def outcome(
    message_id: str,
    step: str,
    at: float,
    *,
    app: str = "shop",
    device_id: str | None = "iphone-15",
    reason: str = "",
    retry_at: float | None = None,
) -> DeliveryOutcome:
    return DeliveryOutcome(
        message_id=message_id,
        app=app,
        user="u1",
        rule="cart",
        channel="apns",
        outcome=step,
        at=at,
        device_id=device_id,
        reason=reason,
        retry_at=retry_at,
    )


# removing


async def test_removing_needs_the_address_that_failed(store: Store) -> None:
    await store.add_subscription(token(APNS_NEW, 10.0))

    assert not await store.remove_subscription(
        "shop", "u1", "iphone-15", "apns", APNS_OLD
    )
    assert await store.subscriptions("shop", "u1") == [token(APNS_NEW, 10.0)]
    assert await store.remove_subscription("shop", "u1", "iphone-15", "apns", APNS_NEW)
    assert await store.subscriptions("shop", "u1") == []


async def test_a_web_push_subscription_is_removed_by_its_endpoint(store: Store) -> None:
    await store.add_subscription(webpush(ENDPOINT, 10.0))

    assert await store.remove_subscription(
        "shop", "u1", "firefox-laptop", "webpush", ENDPOINT
    )
    assert await store.subscriptions("shop", "u1") == []


async def test_removing_an_unknown_subscription_removes_nothing(store: Store) -> None:
    await store.add_subscription(token(APNS_OLD, 10.0))

    assert not await store.remove_subscription(
        "shop", "u1", "iphone-15", "fcm", APNS_OLD
    )
    assert not await store.remove_subscription("shop", "u2", "iphone-15", "apns", "")
    assert await store.subscriptions("shop", "u1") == [token(APNS_OLD, 10.0)]


async def test_a_subscription_removed_and_added_again_goes_last(store: Store) -> None:
    await store.add_subscription(token(APNS_OLD, 10.0))
    await store.add_subscription(webpush(ENDPOINT, 11.0))

    assert await store.remove_subscription("shop", "u1", "iphone-15", "apns", APNS_OLD)
    await store.add_subscription(token(APNS_NEW, 12.0))

    assert await store.subscriptions("shop", "u1") == [
        webpush(ENDPOINT, 11.0),
        token(APNS_NEW, 12.0),
    ]


async def test_removing_a_disabled_subscription_forgets_it_entirely(
    store: Store,
) -> None:
    await store.add_subscription(token(APNS_OLD, 10.0))
    assert await store.disable_subscription(
        "shop", "u1", "iphone-15", "apns", APNS_OLD, "BadDeviceToken"
    )

    assert await store.remove_subscription("shop", "u1", "iphone-15", "apns", APNS_OLD)
    assert await store.disabled_subscriptions("shop", "u1") == []
    assert await store.subscriptions("shop", "u1") == []


# disabling


async def test_a_token_registered_after_the_answer_is_not_disabled(
    store: Store,
) -> None:
    await store.add_subscription(token(APNS_OLD, 100.0))

    kept = await store.disable_subscription(
        "shop",
        "u1",
        "iphone-15",
        "apns",
        APNS_OLD,
        "Unregistered",
        registered_before=50.0,
    )

    assert not kept
    assert await store.subscriptions("shop", "u1") == [token(APNS_OLD, 100.0)]
    assert await store.disabled_subscriptions("shop", "u1") == []


async def test_a_token_registered_exactly_at_the_answer_is_disabled(
    store: Store,
) -> None:
    await store.add_subscription(token(APNS_OLD, 1700000000.25))

    assert await store.disable_subscription(
        "shop",
        "u1",
        "iphone-15",
        "apns",
        APNS_OLD,
        "Unregistered",
        registered_before=1700000000.25,
    )
    assert await store.subscriptions("shop", "u1") == []


async def test_a_token_that_changed_since_the_send_is_not_disabled(
    store: Store,
) -> None:
    await store.add_subscription(token(APNS_NEW, 10.0))

    assert not await store.disable_subscription(
        "shop", "u1", "iphone-15", "apns", APNS_OLD, "BadDeviceToken"
    )
    assert not await store.disable_subscription(
        "shop", "u1", "ipad", "apns", APNS_NEW, "BadDeviceToken"
    )
    assert await store.subscriptions("shop", "u1") == [token(APNS_NEW, 10.0)]


async def test_a_disabled_token_is_hidden_until_registered_again(
    store: Store,
) -> None:
    await store.add_subscription(token(APNS_OLD, 10.0))

    assert await store.disable_subscription(
        "shop", "u1", "iphone-15", "apns", APNS_OLD, "BadDeviceToken (sandbox)"
    )
    assert await store.subscriptions("shop", "u1") == []
    assert await store.disabled_subscriptions("shop", "u1") == [
        (token(APNS_OLD, 10.0), "BadDeviceToken (sandbox)")
    ]

    await store.add_subscription(token(APNS_OLD, 20.0))
    assert await store.subscriptions("shop", "u1") == [token(APNS_OLD, 20.0)]
    assert await store.disabled_subscriptions("shop", "u1") == []


async def test_a_subscription_enabled_again_keeps_its_place(store: Store) -> None:
    await store.add_subscription(token(APNS_OLD, 10.0))
    await store.add_subscription(webpush(ENDPOINT, 11.0))
    await store.disable_subscription(
        "shop", "u1", "iphone-15", "apns", APNS_OLD, "Unregistered"
    )

    await store.add_subscription(token(APNS_NEW, 30.0))

    assert await store.subscriptions("shop", "u1") == [
        token(APNS_NEW, 30.0),
        webpush(ENDPOINT, 11.0),
    ]


async def test_disabling_again_keeps_the_latest_reason(store: Store) -> None:
    await store.add_subscription(token(APNS_OLD, 10.0))

    assert await store.disable_subscription(
        "shop", "u1", "iphone-15", "apns", APNS_OLD, "BadDeviceToken"
    )
    assert await store.disable_subscription(
        "shop", "u1", "iphone-15", "apns", APNS_OLD, "Unregistered"
    )
    assert await store.disabled_subscriptions("shop", "u1") == [
        (token(APNS_OLD, 10.0), "Unregistered")
    ]


async def test_disabled_subscriptions_list_one_user_oldest_first(
    store: Store,
) -> None:
    phone = token(APNS_OLD, 10.0)
    tablet = token(APNS_NEW, 11.0, device_id="ipad")
    laptop = webpush(ENDPOINT, 12.0)
    other_user = Subscription(
        app="shop",
        user="u2",
        device_id="pixel-8",
        channel="fcm",
        data={"token": "fcm-token-of-u2-0123456789"},
    )
    for subscription in (phone, tablet, laptop, other_user):
        await store.add_subscription(subscription)

    await store.disable_subscription(
        "shop", "u1", "ipad", "apns", APNS_NEW, "Unregistered"
    )
    await store.disable_subscription(
        "shop", "u1", "iphone-15", "apns", APNS_OLD, "BadDeviceToken"
    )
    await store.disable_subscription(
        "shop", "u2", "pixel-8", "fcm", "fcm-token-of-u2-0123456789", "UNREGISTERED"
    )

    assert await store.disabled_subscriptions("shop", "u1") == [
        (phone, "BadDeviceToken"),
        (tablet, "Unregistered"),
    ]
    assert await store.subscriptions("shop", "u1") == [laptop]
    assert await store.disabled_subscriptions("blog", "u1") == []


# idempotency keys


async def test_an_idempotency_key_is_claimed_once(store: Store) -> None:
    key = "shop\x1fu1\x1fcart\x1fs1\x1f1700000000.5"

    assert await store.claim_send(key, "m1", 1700000001.0) is None
    assert await store.claim_send(key, "m2", 1700000002.0) == "m1"
    assert await store.claim_send(key, "m1", 1700000003.0) == "m1"


async def test_idempotency_keys_do_not_share_owners(store: Store) -> None:
    first = "shop\x1fu1\x1fcart\x1fs1\x1f1700000000.5"
    same_user_later = "shop\x1fu1\x1fcart\x1fs1\x1f1700000060.5"
    other_app = "blog\x1fu1\x1fcart\x1fs1\x1f1700000000.5"

    assert await store.claim_send(first, "m1", 1.0) is None
    assert await store.claim_send(same_user_later, "m2", 2.0) is None
    assert await store.claim_send(other_app, "m3", 3.0) is None
    assert await store.claim_send("not-an-engine-key", "m4", 4.0) is None
    assert await store.claim_send("not-an-engine-key", "m5", 5.0) == "m4"


# sent messages


async def test_a_sent_message_reads_back_by_its_id(store: Store) -> None:
    with_link = SentMessage(
        id="4f9c2a",
        app="shop",
        user="u1",
        rule="cart",
        channel="apns",
        at=1700000000.125,
        link="https://shop.example/cart?utm_source=push",
    )
    without_link = SentMessage(
        id="77d1e0", app="shop", user="u2", rule="winback", channel="fcm", at=2.0
    )
    await store.record_message(with_link)
    await store.record_message(without_link)

    assert await store.sent_message("4f9c2a") == with_link
    assert await store.sent_message("77d1e0") == without_link
    assert await store.sent_message("never-sent") is None


async def test_a_message_recorded_again_replaces_the_first_record(
    store: Store,
) -> None:
    first = SentMessage(
        id="4f9c2a", app="shop", user="u1", rule="cart", channel="apns", at=1.0
    )
    again = SentMessage(
        id="4f9c2a",
        app="shop",
        user="u1",
        rule="cart",
        channel="apns",
        at=2.0,
        link="https://shop.example/cart",
    )
    await store.record_message(first)
    await store.record_message(again)

    assert await store.sent_message("4f9c2a") == again


# outcomes


async def test_messages_and_outcomes_read_back_in_order(store: Store) -> None:
    for step, name in enumerate(["sent", "retry", "delivered"]):
        await store.record_outcome(
            outcome(
                "m1",
                name,
                float(step),
                reason="429 Too Many Requests" if name == "retry" else "",
                retry_at=5.0 if name == "retry" else None,
            )
        )

    assert [o.outcome for o in await store.outcomes("m1")] == [
        "sent",
        "retry",
        "delivered",
    ]
    retry = (await store.outcomes(app="shop"))[1]
    assert retry == outcome(
        "m1", "retry", 1.0, reason="429 Too Many Requests", retry_at=5.0
    )


async def test_outcomes_keep_the_order_recorded_not_the_order_of_their_times(
    store: Store,
) -> None:
    late_clock = outcome("m1", "delivered", 300.0)
    early_clock = outcome("m1", "opened", 100.0, device_id=None)
    await store.record_outcome(late_clock)
    await store.record_outcome(early_clock)

    assert await store.outcomes() == [late_clock, early_clock]


async def test_outcomes_filter_by_message_by_app_or_both(store: Store) -> None:
    a = outcome("m1", "sent", 1.0)
    b = outcome("m2", "sent", 2.0)
    c = outcome("m1", "delivered", 3.0, app="blog")
    d = outcome("m1", "clicked", 4.0)
    for item in (a, b, c, d):
        await store.record_outcome(item)

    assert await store.outcomes() == [a, b, c, d]
    assert await store.outcomes("m1") == [a, c, d]
    assert await store.outcomes(app="shop") == [a, b, d]
    assert await store.outcomes("m1", app="shop") == [a, d]
    assert await store.outcomes("m3") == []
