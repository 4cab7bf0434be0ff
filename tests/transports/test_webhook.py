"""Webhooks against a local receiver that checks the HMAC and the timestamp."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from sessionpush.engine.clock import VirtualClock
from sessionpush.errors import ConfigError
from sessionpush.store.sqlite import SQLiteStore
from sessionpush.transports.config import build_queue, load_config
from sessionpush.transports.queue import DeliveryQueue
from sessionpush.transports.webhook import (
    MESSAGE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Webhook,
    WebhookTransport,
    sign,
    verify,
    webhook_target,
)
from tests.transports.conftest import T0, Sleeps, message, no_jitter

SECRET = b"5f0c1d9e8a7b6c5d4e3f2a1b0c9d8e7f"


@dataclass
class Receiver:
    """Accepts a POST only with a fresh timestamp and a valid signature."""

    clock: VirtualClock
    secret: bytes = SECRET
    script: list[tuple[int, dict[str, str]]] = field(
        default_factory=lambda: [(204, {})]
    )
    accepted: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/sessionpush"

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.headers.append(dict(request.headers))
        self.bodies.append(body)
        if not verify(
            self.secret,
            request.headers.get(TIMESTAMP_HEADER, ""),
            request.headers.get(SIGNATURE_HEADER, ""),
            body,
            self.clock.now(),
        ):
            return web.Response(status=401, text="bad signature")
        index = min(len(self.bodies), len(self.script)) - 1
        status, headers = self.script[index]
        if 200 <= status < 300:
            self.accepted.append(json.loads(body))
        return web.Response(status=status, headers=headers)


@pytest.fixture
async def receiver(clock: VirtualClock) -> AsyncIterator[Receiver]:
    made = Receiver(clock)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", made.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server: Any = site._server
    made.port = server.sockets[0].getsockname()[1]
    yield made
    await runner.cleanup()


@pytest.fixture
async def transport(
    receiver: Receiver, clock: VirtualClock
) -> AsyncIterator[WebhookTransport]:
    made = WebhookTransport(
        {"crm": Webhook("crm", receiver.url, SECRET)},
        httpx.AsyncClient(timeout=5, follow_redirects=False, trust_env=False),
        clock=clock.now,
    )
    yield made
    await made.close()


@pytest.fixture
async def queue(
    transport: WebhookTransport, store: SQLiteStore, clock: VirtualClock, sleeps: Sleeps
) -> AsyncIterator[DeliveryQueue]:
    made = DeliveryQueue(
        {"webhook": transport},
        store,
        clock,
        backoff=no_jitter(),
        sleep=sleeps,
        max_attempts=3,
    )
    yield made
    await made.close()


async def post(
    queue: DeliveryQueue, store: SQLiteStore, name: str = "crm"
) -> list[str]:
    target = webhook_target("default", "alice", name)
    ok, _ = await queue.submit(message(channel="webhook"), [target], "key-1")
    assert ok
    await queue.join()
    return [o.outcome for o in await store.outcomes("m1")]


async def test_a_signed_decision_is_accepted_by_a_receiver_that_checks_it(
    queue: DeliveryQueue, store: SQLiteStore, receiver: Receiver
) -> None:
    outcomes = await post(queue, store)

    assert outcomes == ["sent", "delivered"]
    (decision,) = receiver.accepted
    assert decision == {
        "type": "decision",
        "decision": "sent",
        "id": "m1",
        "app": "default",
        "user": "alice",
        "session": "s1",
        "rule": "cart_recovery",
        "at": "2027-01-15T08:00:00Z",
        "message": {
            "title": "Still thinking about it?",
            "body": "Your cart is saved.",
            "link": "https://shop.example/cart",
        },
    }
    headers = receiver.headers[0]
    assert headers[TIMESTAMP_HEADER] == str(int(T0))
    assert headers["Content-Type"] == "application/json"
    assert headers[MESSAGE_HEADER] == "m1"


async def test_a_receiver_with_another_secret_refuses_and_the_message_fails(
    queue: DeliveryQueue, store: SQLiteStore, receiver: Receiver
) -> None:
    receiver.secret = b"another-secret-of-32-bytes-long!"

    outcomes = await post(queue, store)

    assert outcomes == ["sent", "failed"]
    assert receiver.accepted == []


async def test_a_503_is_retried_with_a_fresh_signature_and_the_same_body(
    queue: DeliveryQueue,
    store: SQLiteStore,
    receiver: Receiver,
    sleeps: Sleeps,
) -> None:
    receiver.script = [(503, {"Retry-After": "20"}), (200, {})]

    outcomes = await post(queue, store)

    assert outcomes == ["sent", "retry", "delivered"]
    assert sleeps.delays == [20.0]
    first, second = receiver.headers
    assert first[TIMESTAMP_HEADER] == str(int(T0))
    assert second[TIMESTAMP_HEADER] == str(int(T0 + 20))
    assert first[SIGNATURE_HEADER] != second[SIGNATURE_HEADER]
    assert first[MESSAGE_HEADER] == second[MESSAGE_HEADER] == "m1"
    assert receiver.bodies[0] == receiver.bodies[1]
    assert len(receiver.accepted) == 1


async def test_a_redirect_is_not_followed(
    queue: DeliveryQueue, store: SQLiteStore, receiver: Receiver
) -> None:
    receiver.script = [(307, {"Location": "http://127.0.0.1:9/elsewhere"})]

    outcomes = await post(queue, store)

    assert outcomes == ["sent", "failed"]
    assert len(receiver.bodies) == 1


async def test_a_name_missing_from_the_config_fails_without_a_request(
    queue: DeliveryQueue, store: SQLiteStore, receiver: Receiver
) -> None:
    outcomes = await post(queue, store, name="billing")

    assert outcomes == ["sent", "failed"]
    (failed,) = [o for o in await store.outcomes("m1") if o.outcome == "failed"]
    assert "no webhook named 'billing'" in failed.reason
    assert receiver.bodies == []


def test_verify_refuses_a_stale_timestamp_and_a_changed_body() -> None:
    body = b'{"id":"m1"}'
    signature = sign(SECRET, int(T0), body)

    assert verify(SECRET, str(int(T0)), signature, body, now=T0 + 299)
    assert not verify(SECRET, str(int(T0)), signature, body, now=T0 + 301)
    assert not verify(SECRET, str(int(T0)), signature, b'{"id":"m2"}', now=T0)
    assert not verify(SECRET, "soon", signature, body, now=T0)


WEBHOOK = """
[delivery]
allow_loopback_endpoints = {loopback}

[webhooks.crm]
url = "{url}"
{secret}
"""


def config_file(tmp_path: Path, url: str, secret: str, loopback: bool = True) -> str:
    path = tmp_path / "delivery.toml"
    path.write_text(
        WEBHOOK.format(url=url, secret=secret, loopback=str(loopback).lower())
    )
    return str(path)


async def test_a_webhooks_section_builds_the_transport_with_the_env_secret(
    tmp_path: Path,
    store: SQLiteStore,
    clock: VirtualClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CRM_WEBHOOK_SECRET", SECRET.decode())
    path = config_file(
        tmp_path, "https://crm.shop.example/hook", 'secret_env = "CRM_WEBHOOK_SECRET"'
    )

    queue = build_queue(load_config(path), store, clock)

    transport = queue.transports["webhook"]
    assert isinstance(transport, WebhookTransport)
    assert transport.hooks["crm"].secret == SECRET
    await transport.close()


@pytest.mark.parametrize(
    ("url", "secret", "loopback", "error"),
    [
        (
            "http://crm.shop.example/hook",
            'secret_file = "crm.secret"',
            True,
            r"webhooks\.crm\.url: .* not an https URL",
        ),
        (
            "http://127.0.0.1:8080/hook",
            'secret_file = "crm.secret"',
            False,
            r"webhooks\.crm\.url",
        ),
        (
            "https://crm.shop.example/hook",
            'secret_env = "NOT_SET_ANYWHERE_4711"',
            True,
            r"webhooks\.crm\.secret_env: .*NOT_SET_ANYWHERE_4711 is not set",
        ),
        (
            "https://crm.shop.example/hook",
            'secret_file = "short.secret"',
            True,
            r"webhooks\.crm: the signing secret is 5 bytes",
        ),
        (
            "https://crm.shop.example/hook",
            "",
            True,
            r"webhooks\.crm: set exactly one of secret_env",
        ),
    ],
)
def test_a_bad_webhook_section_refuses_the_start_naming_the_key(
    tmp_path: Path, url: str, secret: str, loopback: bool, error: str
) -> None:
    (tmp_path / "crm.secret").write_bytes(SECRET)
    (tmp_path / "short.secret").write_text("abcde\n")

    with pytest.raises(ConfigError, match=error):
        load_config(config_file(tmp_path, url, secret, loopback))
