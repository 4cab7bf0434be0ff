"""Each FCM HTTP v1 answer of a local server, and the state after it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from sessionpush.engine.clock import VirtualClock
from sessionpush.errors import ConfigError
from sessionpush.store.base import Subscription
from sessionpush.store.sqlite import SQLiteStore
from sessionpush.transports.fcm import FcmTransport
from sessionpush.transports.google_oauth import (
    FCM_SCOPE,
    AccessTokens,
    load_service_account,
)
from sessionpush.transports.queue import DeliveryQueue
from tests.transports.conftest import T0, Sleeps, message, no_jitter
from tests.transports.fcm_server import EMAIL, FcmService, fcm_error, running

TOKEN = "fcm-token:APA91b" + "x" * 40


@pytest.fixture
async def fcm() -> AsyncIterator[FcmService]:
    async with running(FcmService()) as service:
        yield service


@pytest.fixture
async def transport(
    fcm: FcmService, tmp_path: Path, clock: VirtualClock
) -> AsyncIterator[FcmTransport]:
    account = load_service_account(
        fcm.key_file(tmp_path), "fcm.credentials.default", allow_loopback=True
    )
    client = httpx.AsyncClient(timeout=5, trust_env=False)
    made = FcmTransport(
        {"default": AccessTokens(account, client, clock=clock.now)},
        client,
        base=fcm.base,
        clock=clock.now,
    )
    yield made
    await made.close()


@pytest.fixture
async def queue(
    transport: FcmTransport, store: SQLiteStore, clock: VirtualClock, sleeps: Sleeps
) -> AsyncIterator[DeliveryQueue]:
    made = DeliveryQueue(
        {"fcm": transport},
        store,
        clock,
        backoff=no_jitter(),
        sleep=sleeps,
        max_attempts=4,
    )
    yield made
    await made.close()


def device(at: float = T0, token: str = TOKEN) -> Subscription:
    return Subscription(
        app="default",
        user="alice",
        device_id="pixel",
        channel="fcm",
        data={"token": token},
        created_at=at,
    )


async def deliver(queue: DeliveryQueue, store: SQLiteStore) -> list[str]:
    await store.add_subscription(device())
    ok, _ = await queue.submit(message(), [device()], "key-1")
    assert ok
    await queue.join()
    return [o.outcome for o in await store.outcomes("m1")]


async def test_200_delivers_an_android_and_web_message_with_an_oauth_token(
    queue: DeliveryQueue, store: SQLiteStore, fcm: FcmService
) -> None:
    outcomes = await deliver(queue, store)

    assert outcomes == ["sent", "delivered"]
    assert fcm.authorizations == ["Bearer ya29.test-1"]
    (claims,) = fcm.assertions
    assert claims["iss"] == EMAIL
    assert claims["scope"] == FCM_SCOPE
    assert claims["exp"] - claims["iat"] == 3600
    sent = fcm.sent[0]["message"]
    assert sent["token"] == TOKEN
    assert sent["notification"] == {
        "title": "Still thinking about it?",
        "body": "Your cart is saved.",
    }
    assert sent["data"] == {
        "id": "m1",
        "rule": "cart_recovery",
        "link": "https://shop.example/cart",
    }
    assert sent["android"] == {
        "ttl": "3600s",
        "priority": "HIGH",
        "notification": {"tag": "m1"},
    }
    assert sent["webpush"]["headers"] == {"TTL": "3600", "Topic": "m1"}
    assert sent["webpush"]["fcm_options"] == {"link": "https://shop.example/cart"}
    assert len(await store.subscriptions("default", "alice")) == 1


async def test_the_access_token_is_reused_until_five_minutes_before_expiry(
    transport: FcmTransport, fcm: FcmService, clock: VirtualClock
) -> None:
    await transport.send(message(), device())
    clock.advance(3600 - 301)
    await transport.send(message(id="m2"), device())
    clock.advance(2)
    await transport.send(message(id="m3"), device())

    assert fcm.authorizations == [
        "Bearer ya29.test-1",
        "Bearer ya29.test-1",
        "Bearer ya29.test-2",
    ]


async def test_unregistered_deletes_the_token(
    queue: DeliveryQueue, store: SQLiteStore, fcm: FcmService
) -> None:
    fcm.script = [
        (404, {}, fcm_error(404, "UNREGISTERED", "NOT_FOUND", "Requested entity")),
    ]

    outcomes = await deliver(queue, store)

    assert outcomes == ["sent", "unsubscribed"]
    assert await store.subscriptions("default", "alice") == []
    assert await store.disabled_subscriptions("default", "alice") == []


async def test_invalid_argument_fails_the_message_and_keeps_the_token(
    queue: DeliveryQueue, store: SQLiteStore, fcm: FcmService
) -> None:
    fcm.script = [
        (
            400,
            {},
            fcm_error(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "Invalid TTL"),
        ),
    ]

    outcomes = await deliver(queue, store)

    assert outcomes == ["sent", "failed"]
    assert await store.subscriptions("default", "alice") == [device()]
    (failed,) = [o for o in await store.outcomes("m1") if o.outcome == "failed"]
    assert "INVALID_ARGUMENT: Invalid TTL" in failed.reason


async def test_quota_exceeded_waits_at_least_60_seconds_then_delivers_once(
    queue: DeliveryQueue, store: SQLiteStore, fcm: FcmService, sleeps: Sleeps
) -> None:
    fcm.script = [
        (
            429,
            {},
            fcm_error(429, "QUOTA_EXCEEDED", "RESOURCE_EXHAUSTED", "Quota"),
        ),
        (200, {}, None),
    ]

    outcomes = await deliver(queue, store)

    assert outcomes == ["sent", "retry", "delivered"]
    assert sleeps.delays == [60.0]
    assert (await store.outcomes("m1"))[1].retry_at == T0 + 60.0
    assert fcm.sent[0] == fcm.sent[1]  # same tag and Topic: one notification


async def test_a_429_asking_for_longer_than_60_seconds_is_honoured(
    queue: DeliveryQueue, store: SQLiteStore, fcm: FcmService, sleeps: Sleeps
) -> None:
    fcm.script = [(429, {"Retry-After": "90"}, None), (200, {}, None)]

    outcomes = await deliver(queue, store)

    assert outcomes == ["sent", "retry", "delivered"]
    assert sleeps.delays == [90.0]


async def test_503_honours_retry_after_and_resends_the_same_collapse_key(
    queue: DeliveryQueue, store: SQLiteStore, fcm: FcmService, sleeps: Sleeps
) -> None:
    fcm.script = [
        (503, {"Retry-After": "30"}, fcm_error(503, "UNAVAILABLE", "UNAVAILABLE", "")),
        (200, {}, None),
    ]
    target = device()
    await store.add_subscription(target)

    await queue.submit(message(collapse="cart-alice"), [target], "key-1")
    await queue.join()

    assert [o.outcome for o in await store.outcomes("m1")] == [
        "sent",
        "retry",
        "delivered",
    ]
    assert sleeps.delays == [30.0]
    first, second = (sent["message"] for sent in fcm.sent)
    assert first == second
    assert first["android"]["collapse_key"] == "cart-alice"
    assert first["android"]["notification"] == {"tag": "cart-alice"}
    assert first["webpush"]["headers"]["Topic"] == "cart-alice"


async def test_a_refused_access_token_is_renewed_once_and_the_message_resent(
    transport: FcmTransport, fcm: FcmService
) -> None:
    await transport.send(message(), device())
    fcm.issued.append("ya29.rotated")  # the server revoked test-1

    result = await transport.send(message(id="m2"), device())

    assert result.ok
    assert fcm.authorizations == [
        "Bearer ya29.test-1",
        "Bearer ya29.test-1",
        "Bearer ya29.test-3",
    ]


async def test_a_refused_service_account_fails_without_a_send_and_warns(
    transport: FcmTransport, fcm: FcmService, caplog: pytest.LogCaptureFixture
) -> None:
    fcm.token_answer = (400, {"error": "invalid_grant"})

    with caplog.at_level(logging.WARNING, "sessionpush.transports"):
        result = await transport.send(message(), device())

    assert result.action.value == "failed"
    assert "invalid_grant" in result.detail
    assert f"refused service account {EMAIL}" in caplog.text
    assert fcm.sent == []


async def test_data_values_are_sent_as_strings_and_a_silent_message_has_no_alert(
    transport: FcmTransport, fcm: FcmService
) -> None:
    await transport.send(
        message(title="", body=None, link=None, data={"count": 3, "sku": "A1"}),
        device(),
    )

    sent = fcm.sent[0]["message"]
    assert sent["data"] == {
        "id": "m1",
        "rule": "cart_recovery",
        "count": "3",
        "sku": "A1",
    }
    assert "notification" not in sent
    assert "notification" not in sent["android"]


def test_a_key_file_whose_token_uri_is_not_https_is_refused(
    fcm: FcmService, tmp_path: Path
) -> None:
    path = fcm.key_file(tmp_path)

    with pytest.raises(ConfigError, match=r"fcm\.credentials\.default: token_uri"):
        load_service_account(path, "fcm.credentials.default")


def test_a_key_file_of_another_type_is_refused_naming_the_setting(
    tmp_path: Path,
) -> None:
    path = tmp_path / "client.json"
    path.write_text(
        '{"type": "authorized_user", "project_id": "p", "private_key": "",'
        ' "client_email": "a@b", "token_uri": "https://oauth2.example/token"}'
    )

    with pytest.raises(ConfigError, match=r"fcm\.credentials\.shop: .*authorized_user"):
        load_service_account(path, "fcm.credentials.shop")
