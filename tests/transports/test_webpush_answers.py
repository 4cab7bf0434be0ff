"""Each RFC 8030 answer of a local push service, and the state after it."""

from __future__ import annotations

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from sessionpush.engine.clock import VirtualClock
from sessionpush.store.sqlite import SQLiteStore
from sessionpush.transports.queue import DeliveryQueue
from sessionpush.transports.vapid import VapidSigner
from sessionpush.transports.webpush import WebPushTransport
from tests.transports.conftest import (
    T0,
    Browser,
    PushService,
    Sleeps,
    message,
    no_jitter,
)


@pytest.fixture
async def queue(
    store: SQLiteStore, clock: VirtualClock, sleeps: Sleeps
) -> DeliveryQueue:
    signer = VapidSigner(
        ec.generate_private_key(ec.SECP256R1()),
        "mailto:ops@shop.example",
        clock=clock.now,
    )
    transport = WebPushTransport({"default": signer}, allow_loopback=True, timeout=5)
    made = DeliveryQueue(
        {"webpush": transport},
        store,
        clock,
        backoff=no_jitter(),
        sleep=sleeps,
        max_attempts=4,
    )
    yield made
    await made.close()
    await transport.close()


async def deliver(
    queue: DeliveryQueue, store: SQLiteStore, subscription_endpoint: str, b: Browser
) -> list[str]:
    subscription = b.subscription(subscription_endpoint)
    await store.add_subscription(subscription)
    ok, _ = await queue.submit(message(), [subscription], "key-1")
    assert ok
    await queue.join()
    return [o.outcome for o in await store.outcomes("m1")]


async def test_201_records_delivered_and_keeps_the_subscription(
    queue: DeliveryQueue,
    store: SQLiteStore,
    push_service: PushService,
    browser: Browser,
) -> None:
    outcomes = await deliver(queue, store, push_service.url(), browser)

    assert outcomes == ["sent", "delivered"]
    assert len(await store.subscriptions("default", "alice")) == 1
    (request,) = push_service.received
    assert request.headers["ttl"] == "3600"
    assert request.headers["content-encoding"] == "aes128gcm"
    assert b'"title":"Still thinking about it?"' in browser.decrypt(request.body)


async def test_the_vapid_token_names_the_endpoint_origin_and_expires_within_12_hours(
    queue: DeliveryQueue,
    store: SQLiteStore,
    push_service: PushService,
    browser: Browser,
) -> None:
    await deliver(queue, store, push_service.url(), browser)

    authorization = push_service.received[0].headers["authorization"]
    assert authorization.startswith("vapid t=")
    token = authorization.split("t=")[1].split(",")[0]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["aud"] == f"http://127.0.0.1:{push_service.port}"
    assert claims["sub"] == "mailto:ops@shop.example"
    assert T0 < claims["exp"] <= T0 + 12 * 3600


@pytest.mark.parametrize("status", [404, 410])
async def test_a_gone_answer_deletes_the_subscription(
    status: int,
    queue: DeliveryQueue,
    store: SQLiteStore,
    push_service: PushService,
    browser: Browser,
) -> None:
    push_service.script = [(status, {})]

    outcomes = await deliver(queue, store, push_service.url(), browser)

    assert outcomes == ["sent", "unsubscribed"]
    assert await store.subscriptions("default", "alice") == []


async def test_a_410_for_an_old_endpoint_keeps_the_device_s_new_subscription(
    queue: DeliveryQueue,
    store: SQLiteStore,
    push_service: PushService,
    browser: Browser,
) -> None:
    push_service.script = [(410, {})]
    old = browser.subscription(push_service.url("/push/old"))
    await store.add_subscription(old)
    new = browser.subscription(push_service.url("/push/new"), at=T0 + 5)

    await queue.submit(message(), [old], "key-1")
    await store.add_subscription(new)  # the device re-subscribed meanwhile
    await queue.join()

    assert await store.subscriptions("default", "alice") == [new]
    (last,) = [o for o in await store.outcomes("m1") if o.outcome == "unsubscribed"]
    assert "re-subscribed since" in last.reason


async def test_413_fails_the_message_and_keeps_the_subscription(
    queue: DeliveryQueue,
    store: SQLiteStore,
    push_service: PushService,
    browser: Browser,
) -> None:
    push_service.script = [(413, {})]

    outcomes = await deliver(queue, store, push_service.url(), browser)

    assert outcomes == ["sent", "failed"]
    assert len(await store.subscriptions("default", "alice")) == 1


async def test_429_waits_the_retry_after_seconds_then_delivers_once(
    queue: DeliveryQueue,
    store: SQLiteStore,
    push_service: PushService,
    browser: Browser,
    sleeps: Sleeps,
) -> None:
    push_service.script = [(429, {"Retry-After": "120"}), (201, {})]

    outcomes = await deliver(queue, store, push_service.url(), browser)

    assert outcomes == ["sent", "retry", "delivered"]
    assert sleeps.delays == [120.0]
    retry = (await store.outcomes("m1"))[1]
    assert retry.retry_at == T0 + 120.0
    assert len(push_service.received) == 2
    assert (
        push_service.received[0].headers["ttl"]
        == push_service.received[1].headers["ttl"]
    )


async def test_5xx_backs_off_exponentially_then_gives_up(
    queue: DeliveryQueue,
    store: SQLiteStore,
    push_service: PushService,
    browser: Browser,
    sleeps: Sleeps,
) -> None:
    push_service.script = [(503, {})]

    outcomes = await deliver(queue, store, push_service.url(), browser)

    assert outcomes == ["sent", "retry", "retry", "retry", "failed"]
    assert sleeps.delays == [1.0, 2.0, 4.0]
    assert len(await store.subscriptions("default", "alice")) == 1


async def test_a_redirect_is_not_followed(
    queue: DeliveryQueue,
    store: SQLiteStore,
    push_service: PushService,
    browser: Browser,
) -> None:
    push_service.script = [(307, {"Location": push_service.url("/elsewhere")})]

    outcomes = await deliver(queue, store, push_service.url(), browser)

    assert outcomes == ["sent", "failed"]
    assert [r.path for r in push_service.received] == ["/push/abc"]


async def test_the_same_trigger_submitted_twice_reaches_the_device_once(
    queue: DeliveryQueue,
    store: SQLiteStore,
    push_service: PushService,
    browser: Browser,
) -> None:
    subscription = browser.subscription(push_service.url())
    await store.add_subscription(subscription)

    first = await queue.submit(message(), [subscription], "rule/alice/trigger")
    second = await queue.submit(message(id="m2"), [subscription], "rule/alice/trigger")
    await queue.join()

    assert first[0] and not second[0]
    assert "message m1 was already sent" in second[1]
    assert len(push_service.received) == 1


async def test_urgency_and_topic_come_from_the_message(
    queue: DeliveryQueue,
    store: SQLiteStore,
    push_service: PushService,
    browser: Browser,
) -> None:
    subscription = browser.subscription(push_service.url())
    await queue.submit(
        message(urgency="high", collapse="cart-alice"), [subscription], "k"
    )
    await queue.join()

    headers = push_service.received[0].headers
    assert headers["urgency"] == "high"
    assert headers["topic"] == "cart-alice"


async def test_a_topic_longer_than_32_characters_fails_without_a_request(
    queue: DeliveryQueue,
    store: SQLiteStore,
    push_service: PushService,
    browser: Browser,
) -> None:
    subscription = browser.subscription(push_service.url())
    await queue.submit(message(collapse="c" * 33), [subscription], "k")
    await queue.join()

    assert [o.outcome for o in await store.outcomes("m1")] == ["sent", "failed"]
    assert push_service.received == []


async def test_an_endpoint_on_a_private_address_is_refused_at_send_time(
    store: SQLiteStore, clock: VirtualClock, browser: Browser
) -> None:
    signer = VapidSigner(ec.generate_private_key(ec.SECP256R1()), "mailto:a@b.example")
    transport = WebPushTransport({"default": signer})  # no loopback allowance

    result = await transport.send(
        message(), browser.subscription("https://10.1.2.3/push/abc")
    )
    await transport.close()

    assert not result.ok
    assert "private" in result.detail
