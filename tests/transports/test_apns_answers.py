"""Each APNs answer of a local HTTP/2 server over TLS, and the state after it."""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from sessionpush.engine.clock import VirtualClock
from sessionpush.store.base import Subscription
from sessionpush.store.sqlite import SQLiteStore
from sessionpush.transports.apns import ApnsTransport
from sessionpush.transports.apns_token import ProviderToken
from sessionpush.transports.queue import DeliveryQueue
from tests.transports.apns_server import ApnsServer, self_signed
from tests.transports.conftest import T0, Sleeps, message, no_jitter

TOKEN = "a1" * 32
TOPIC = "com.shop.app"


class Servers:
    def __init__(self, production: ApnsServer, sandbox: ApnsServer) -> None:
        self.production = production
        self.sandbox = sandbox


@pytest.fixture
def tls(tmp_path: Path) -> tuple[Path, Path, ssl.SSLContext]:
    cert_file, key_file, pem = self_signed(tmp_path)
    return cert_file, key_file, ssl.create_default_context(cadata=pem)


@pytest.fixture
async def apns(tls: tuple[Path, Path, ssl.SSLContext]) -> AsyncIterator[Servers]:
    production, sandbox = ApnsServer(), ApnsServer()
    await production.start(tls[0], tls[1])
    await sandbox.start(tls[0], tls[1])
    yield Servers(production, sandbox)
    await production.stop()
    await sandbox.stop()


@pytest.fixture
def signing_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def transport(
    apns: Servers,
    tls: tuple[Path, Path, ssl.SSLContext],
    signing_key: ec.EllipticCurvePrivateKey,
    clock: VirtualClock,
) -> ApnsTransport:
    token = ProviderToken(signing_key, "KEY1234567", "TEAM123456", clock=clock.now)
    return ApnsTransport(
        token,
        {"default": TOPIC},
        hosts={"production": apns.production.url, "sandbox": apns.sandbox.url},
        verify=tls[2],
        timeout=5,
        clock=clock.now,
    )


@pytest.fixture
async def queue(
    transport: ApnsTransport, store: SQLiteStore, clock: VirtualClock, sleeps: Sleeps
) -> AsyncIterator[DeliveryQueue]:
    made = DeliveryQueue(
        {"apns": transport},
        store,
        clock,
        backoff=no_jitter(),
        sleep=sleeps,
        max_attempts=4,
    )
    yield made
    await made.close()
    await transport.close()


def device(environment: str = "production", at: float = T0) -> Subscription:
    return Subscription(
        app="default",
        user="alice",
        device_id="iphone",
        channel="apns",
        data={"token": TOKEN, "environment": environment},
        created_at=at,
    )


async def deliver(
    queue: DeliveryQueue, store: SQLiteStore, environment: str = "production"
) -> list[str]:
    target = device(environment)
    await store.add_subscription(target)
    ok, _ = await queue.submit(message(), [target], "key-1")
    assert ok
    await queue.join()
    return [o.outcome for o in await store.outcomes("m1")]


async def test_200_delivers_with_the_documented_headers_over_http2(
    queue: DeliveryQueue,
    store: SQLiteStore,
    apns: Servers,
    signing_key: ec.EllipticCurvePrivateKey,
) -> None:
    outcomes = await deliver(queue, store)

    assert outcomes == ["sent", "delivered"]
    (request,) = apns.production.received
    headers = request.headers
    assert headers[":method"] == "POST"
    assert headers[":path"] == f"/3/device/{TOKEN}"
    assert headers["apns-push-type"] == "alert"
    assert headers["apns-priority"] == "10"
    assert headers["apns-expiration"] == str(int(T0 + 3600))
    assert headers["apns-collapse-id"] == "m1"
    assert headers["apns-topic"] == TOPIC
    assert request.json["aps"]["alert"] == {
        "title": "Still thinking about it?",
        "body": "Your cart is saved.",
    }
    assert request.json["link"] == "https://shop.example/cart"
    scheme, token = headers["authorization"].split(" ")
    assert scheme == "bearer"
    assert jwt.get_unverified_header(token)["kid"] == "KEY1234567"
    claims = jwt.decode(
        token,
        signing_key.public_key(),
        algorithms=["ES256"],
        options={"verify_iat": False},  # the test clock is in the future
    )
    assert claims == {"iss": "TEAM123456", "iat": int(T0)}
    assert len(await store.subscriptions("default", "alice")) == 1


async def test_a_sandbox_token_goes_to_the_sandbox_host(
    queue: DeliveryQueue, store: SQLiteStore, apns: Servers
) -> None:
    outcomes = await deliver(queue, store, environment="sandbox")

    assert outcomes == ["sent", "delivered"]
    assert len(apns.sandbox.received) == 1
    assert apns.production.received == []


async def test_the_provider_token_is_reused_then_renewed_after_45_minutes(
    transport: ApnsTransport, apns: Servers, clock: VirtualClock
) -> None:
    await transport.send(message(), device())
    clock.advance(30 * 60)
    await transport.send(message(id="m2"), device())
    clock.advance(15 * 60)
    await transport.send(message(id="m3"), device())
    await transport.close()

    tokens = [r.headers["authorization"] for r in apns.production.received]
    assert tokens[0] == tokens[1] != tokens[2]
    assert transport.token.signed == 2


async def test_410_unregistered_disables_the_token(
    queue: DeliveryQueue, store: SQLiteStore, apns: Servers
) -> None:
    stamp = int((T0 + 10) * 1000)
    apns.production.script = [(410, {"reason": "Unregistered", "timestamp": stamp})]

    outcomes = await deliver(queue, store)

    assert outcomes == ["sent", "unsubscribed"]
    assert await store.subscriptions("default", "alice") == []
    ((disabled, why),) = await store.disabled_subscriptions("default", "alice")
    assert disabled.address == TOKEN
    assert "410 Unregistered" in why


async def test_410_keeps_a_token_registered_again_after_the_answer_s_timestamp(
    queue: DeliveryQueue, store: SQLiteStore, apns: Servers
) -> None:
    # APNs says the token stopped being valid at T0 + 10; the app registered
    # it again at T0 + 20 (a reinstall), so the new registration stands.
    stamp = int((T0 + 10) * 1000)
    apns.production.script = [(410, {"reason": "Unregistered", "timestamp": stamp})]
    await store.add_subscription(device(at=T0))

    await queue.submit(message(), [device(at=T0)], "key-1")
    await store.add_subscription(device(at=T0 + 20))
    await queue.join()

    assert await store.subscriptions("default", "alice") == [device(at=T0 + 20)]
    (last,) = [o for o in await store.outcomes("m1") if o.outcome == "unsubscribed"]
    assert "registered again since" in last.reason


async def test_bad_device_token_disables_it_and_logs_the_environment(
    queue: DeliveryQueue,
    store: SQLiteStore,
    apns: Servers,
    caplog: pytest.LogCaptureFixture,
) -> None:
    apns.sandbox.script = [(400, {"reason": "BadDeviceToken"})]

    with caplog.at_level(logging.WARNING, "sessionpush.transports"):
        outcomes = await deliver(queue, store, environment="sandbox")

    assert outcomes == ["sent", "unsubscribed"]
    assert await store.subscriptions("default", "alice") == []
    assert "sandbox token" in caplog.text
    (last,) = [o for o in await store.outcomes("m1") if o.outcome == "unsubscribed"]
    assert "registered for the sandbox host" in last.reason


async def test_expired_provider_token_is_renewed_once_and_the_message_retried(
    queue: DeliveryQueue, store: SQLiteStore, apns: Servers, sleeps: Sleeps
) -> None:
    apns.production.script = [(403, {"reason": "ExpiredProviderToken"}), (200, None)]

    outcomes = await deliver(queue, store)

    assert outcomes == ["sent", "delivered"]
    first, second = apns.production.received
    assert first.headers["authorization"] != second.headers["authorization"]
    assert first.body == second.body
    assert sleeps.delays == []


async def test_a_token_still_expired_after_renewal_fails_without_a_third_try(
    queue: DeliveryQueue, store: SQLiteStore, apns: Servers
) -> None:
    apns.production.script = [(403, {"reason": "ExpiredProviderToken"})]

    outcomes = await deliver(queue, store)

    assert outcomes == ["sent", "failed"]
    assert len(apns.production.received) == 2
    assert len(await store.subscriptions("default", "alice")) == 1


async def test_429_backs_off_then_delivers_one_notification(
    queue: DeliveryQueue, store: SQLiteStore, apns: Servers, sleeps: Sleeps
) -> None:
    apns.production.script = [(429, {"reason": "TooManyRequests"}), (200, None)]

    outcomes = await deliver(queue, store)

    assert outcomes == ["sent", "retry", "delivered"]
    assert sleeps.delays == [1.0]
    assert (await store.outcomes("m1"))[1].retry_at == T0 + 1.0
    first, second = apns.production.received
    for name in ("apns-id", "apns-collapse-id", "apns-expiration"):
        assert first.headers[name] == second.headers[name]


async def test_413_fails_the_message_and_keeps_the_token(
    queue: DeliveryQueue, store: SQLiteStore, apns: Servers
) -> None:
    apns.production.script = [(413, {"reason": "PayloadTooLarge"})]

    outcomes = await deliver(queue, store)

    assert outcomes == ["sent", "failed"]
    assert len(await store.subscriptions("default", "alice")) == 1


async def test_403_invalid_provider_token_fails_and_warns_the_operator(
    queue: DeliveryQueue,
    store: SQLiteStore,
    apns: Servers,
    caplog: pytest.LogCaptureFixture,
) -> None:
    apns.production.script = [(403, {"reason": "InvalidProviderToken"})]

    with caplog.at_level(logging.WARNING, "sessionpush.transports"):
        outcomes = await deliver(queue, store)

    assert outcomes == ["sent", "failed"]
    assert "refused the provider token of key KEY1234567" in caplog.text
    assert len(await store.subscriptions("default", "alice")) == 1


async def test_503_retries_until_max_attempts_then_fails(
    queue: DeliveryQueue, store: SQLiteStore, apns: Servers, sleeps: Sleeps
) -> None:
    apns.production.script = [(503, {"reason": "ServiceUnavailable"})]

    outcomes = await deliver(queue, store)

    assert outcomes == ["sent", "retry", "retry", "retry", "failed"]
    assert sleeps.delays == [1.0, 2.0, 4.0]
    assert len(await store.subscriptions("default", "alice")) == 1


async def test_payload_size_counts_utf8_bytes_and_refuses_over_4096(
    transport: ApnsTransport, apns: Servers
) -> None:
    # 2,100 "e-acute" characters are 4,200 bytes of UTF-8: the JSON is
    # under 4,096 characters long but over 4,096 bytes.
    wide = message(body="\u00e9" * 2100)

    result = await transport.send(wide, device())
    await transport.close()

    assert not result.ok
    assert "payload of 4" in result.detail and "over the APNs limit of 4096" in (
        result.detail
    )
    assert len(transport.payload(wide).decode()) < 4096 < len(transport.payload(wide))
    assert apns.production.received == []


async def test_the_body_sent_is_exactly_the_bytes_counted(
    transport: ApnsTransport, apns: Servers
) -> None:
    fits = message(body="\u00e9" * 1900, data={"sku": "\u2603"})

    result = await transport.send(fits, device())
    await transport.close()

    assert result.ok
    assert apns.production.received[0].body == transport.payload(fits)


async def test_a_collapse_id_over_64_bytes_is_refused_without_a_request(
    transport: ApnsTransport, apns: Servers
) -> None:
    result = await transport.send(message(collapse="\u00e9" * 33), device())
    await transport.close()

    assert not result.ok
    assert "66 bytes" in result.detail
    assert apns.production.received == []


async def test_a_message_without_text_is_a_background_push_with_priority_5(
    transport: ApnsTransport, apns: Servers
) -> None:
    await transport.send(message(title="", body=None, data={"sync": 1}), device())
    await transport.close()

    (request,) = apns.production.received
    assert request.headers["apns-push-type"] == "background"
    assert request.headers["apns-priority"] == "5"
    assert request.json["aps"] == {"content-available": 1}


async def test_low_urgency_and_the_rule_s_collapse_key_reach_the_headers(
    transport: ApnsTransport, apns: Servers
) -> None:
    await transport.send(message(urgency="low", collapse="cart-alice"), device())
    await transport.close()

    headers = apns.production.received[0].headers
    assert headers["apns-priority"] == "5"
    assert headers["apns-collapse-id"] == "cart-alice"


async def test_no_answer_within_the_timeout_is_a_retry(
    apns: Servers,
    tls: tuple[Path, Path, ssl.SSLContext],
    signing_key: ec.EllipticCurvePrivateKey,
) -> None:
    apns.production.delay = 0.5
    slow = ApnsTransport(
        ProviderToken(signing_key, "KEY1234567", "TEAM123456"),
        {"default": TOPIC},
        hosts={"production": apns.production.url},
        verify=tls[2],
        timeout=0.1,
    )

    result = await slow.send(message(), device())
    await slow.close()

    assert result.action.value == "retry"
    assert "no answer from APNs" in result.detail
