"""Push delivery through a real gateway: registering devices over HTTP and
the socket, a rule's push reaching a local push service, clicks and opens."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from sessionpush.store.sqlite import SQLiteStore
from sessionpush.transports.vapid import generate_key_file, public_key_b64
from tests.gateway.conftest import receive, send
from tests.transports.conftest import Browser, PushService, b64, push_service

__all__ = ["push_service"]  # the fixture, imported for these tests

BIG_CART = """
rule big_cart {
    when cart where price > 100
    push { title "Free shipping on that one" link "https://shop.example/cart" }
}
"""

ADMIN = {"Authorization": "Bearer s3cret-admin"}


@pytest.fixture
def delivery_config(tmp_path: Path) -> tuple[str, str]:
    key = generate_key_file(tmp_path / "keys" / "default.pem")
    config = tmp_path / "delivery.toml"
    config.write_text(
        """
[delivery]
timeout = 5
max_attempts = 2
click_base = "https://push.shop.example"
allow_loopback_endpoints = true

[webpush]
subject = "mailto:ops@shop.example"
keys_dir = "keys"
"""
    )
    return str(config), public_key_b64(key)


async def start(gateway: Any, config: str) -> Any:
    return await gateway(BIG_CART, delivery_config=config, admin_key="s3cret-admin")


def registration(browser: Browser, endpoint: str) -> dict[str, Any]:
    return {
        "channel": "webpush",
        "subscription": {
            "endpoint": endpoint,
            "expirationTime": None,
            "keys": {"p256dh": browser.p256dh, "auth": b64(browser.auth)},
        },
    }


async def test_the_vapid_public_key_is_served_for_the_app(
    gateway: Any, delivery_config: tuple[str, str]
) -> None:
    gw = await start(gateway, delivery_config[0])
    async with httpx.AsyncClient(base_url=gw.http) as client:
        found = await client.get("/v1/vapid-public-key")
        missing = await client.get("/v1/vapid-public-key", params={"app": "other"})
    assert found.json() == {"app": "default", "publicKey": delivery_config[1]}
    assert missing.status_code == 404


async def test_registering_a_device_needs_the_admin_key(
    gateway: Any, delivery_config: tuple[str, str], push_service: PushService
) -> None:
    gw = await start(gateway, delivery_config[0])
    body = registration(Browser(), push_service.url())
    async with httpx.AsyncClient(base_url=gw.http) as client:
        anonymous = await client.put("/v1/users/alice/devices/d1", json=body)
        wrong = await client.put(
            "/v1/users/alice/devices/d1",
            json=body,
            headers={"Authorization": "Bearer guess"},
        )
        right = await client.put("/v1/users/alice/devices/d1", json=body, headers=ADMIN)
    assert anonymous.status_code == wrong.status_code == 401
    assert right.status_code == 200


async def test_a_bad_p256dh_is_refused_with_400_naming_the_field(
    gateway: Any, delivery_config: tuple[str, str], push_service: PushService
) -> None:
    gw = await start(gateway, delivery_config[0])
    body = registration(Browser(), push_service.url())
    body["subscription"]["keys"]["p256dh"] = b64(b"\x04" + b"\x00" * 64)
    async with httpx.AsyncClient(base_url=gw.http) as client:
        answer = await client.put(
            "/v1/users/alice/devices/d1", json=body, headers=ADMIN
        )
    assert answer.status_code == 400
    assert "$.subscription.keys.p256dh" in answer.json()["message"]


async def test_a_push_reaches_the_device_and_its_click_redirects_to_its_link(
    gateway: Any,
    delivery_config: tuple[str, str],
    push_service: PushService,
    tmp_path: Path,
) -> None:
    gw = await start(gateway, delivery_config[0])
    browser = Browser()
    async with await gw.connect() as ws:
        await send(ws, {"type": "hello", "user": "alice", "device": {"id": "d1"}})
        await receive(ws)
        await send(
            ws, {"type": "subscribe", **registration(browser, push_service.url())}
        )
        assert await receive(ws) == {"type": "ack", "seq": None}
        await send(
            ws, {"type": "event", "name": "cart", "props": {"price": 150}, "seq": 1}
        )
        assert await receive(ws) == {"type": "ack", "seq": 1}

        for _ in range(200):
            if push_service.received:
                break
            await asyncio.sleep(0.01)
        (request,) = push_service.received
        shown = msgspec.json.decode(browser.decrypt(request.body))
        assert shown["title"] == "Free shipping on that one"
        assert shown["link"] == f"https://push.shop.example/r/{shown['id']}"

        await send(
            ws,
            {
                "type": "event",
                "name": "push_opened",
                "props": {"message": shown["id"]},
                "seq": 2,
            },
        )
        assert await receive(ws) == {"type": "ack", "seq": 2}

    async with httpx.AsyncClient(base_url=gw.http) as client:
        click = await client.get(f"/r/{shown['id']}?to=https://evil.example")
        unknown = await client.get("/r/nope")
    assert click.status_code == 302
    assert click.headers["location"] == "https://shop.example/cart"
    assert unknown.status_code == 404
    store = SQLiteStore(str(tmp_path / "state.db"))
    await store.open()
    outcomes = [o.outcome for o in await store.outcomes(shown["id"])]
    await store.close()
    assert outcomes == ["sent", "delivered", "opened", "clicked"]


async def test_a_subscribe_frame_with_a_private_endpoint_is_refused(
    gateway: Any, delivery_config: tuple[str, str]
) -> None:
    gw = await start(gateway, delivery_config[0])
    async with await gw.connect() as ws:
        await send(ws, {"type": "hello", "user": "alice"})
        await receive(ws)
        frame = registration(Browser(), "https://192.168.0.10/push")
        await send(ws, {"type": "subscribe", **frame})
        error = await receive(ws)
    assert error["code"] == "invalid_subscription"
    assert "$.subscription.endpoint" in error["message"]
