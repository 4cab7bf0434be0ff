"""Two apps on one gateway: rules, keys, users and erasure stay apart; CORS
is closed; secrets stay out of logs and answers."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from sessionpush.store.sqlite import SQLiteStore
from tests.gateway.secured import (
    NEWS_ADMIN,
    NEWS_SECRET,
    OPERATOR,
    SHOP_ADMIN,
    SHOP_SECRET,
    closed_with,
    hello,
    receive,
    secured,
    send,
    token,
)

__all__ = ["secured"]  # the fixture, imported for these tests

FCM = {"channel": "fcm", "token": "fcm-registration-token-0123456789abcdef"}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def view(gw: Any, app: str, user: str = "alice") -> dict[str, Any]:
    async with await gw.connect() as ws:
        await send(ws, hello(user=user, app=app))
        await receive(ws)
        await send(ws, {"type": "event", "name": "view", "seq": 1})
        return await receive(ws)


async def stored(gw: Any) -> SQLiteStore:
    store = SQLiteStore(str(gw.tmp / "state.db"))
    await store.open()
    return store


async def test_each_app_runs_its_own_rules(secured: Any) -> None:
    gw = await secured()
    assert (await view(gw, "shop"))["title"] == "shop says hi"
    assert (await view(gw, "news"))["title"] == "news says hi"


async def test_an_apps_admin_key_acts_on_that_app_only(secured: Any) -> None:
    gw = await secured()
    async with httpx.AsyncClient(base_url=gw.http) as client:
        url = "/v1/users/alice/devices/phone"
        mine = await client.put(
            url, params={"app": "shop"}, json=FCM, headers=bearer(SHOP_ADMIN)
        )
        theirs = await client.put(
            url, params={"app": "news"}, json=FCM, headers=bearer(SHOP_ADMIN)
        )
        erase = await client.delete(
            "/v1/users/alice", params={"app": "news"}, headers=bearer(SHOP_ADMIN)
        )
        operator = await client.put(
            url, params={"app": "news"}, json=FCM, headers=bearer(OPERATOR)
        )
        secret = await client.put(
            url, params={"app": "shop"}, json=FCM, headers=bearer(SHOP_SECRET)
        )
    assert mine.status_code == 200
    assert theirs.status_code == 401
    assert erase.status_code == 401
    assert operator.status_code == 200
    # A signing secret is not an admin key.
    assert secret.status_code == 401
    for answer in (theirs, erase, secret):
        assert SHOP_ADMIN not in answer.text
        assert SHOP_SECRET not in answer.text


async def test_erasure_closes_the_users_sockets_and_forgets_them_in_one_app(
    secured: Any,
) -> None:
    gw = await secured()
    shop = await gw.connect()
    await send(shop, hello(user="alice", app="shop"))
    await receive(shop)
    await send(shop, {"type": "event", "name": "cart", "seq": 1})
    assert await receive(shop) == {"type": "ack", "seq": 1}
    news = await gw.connect()
    await send(news, hello(user="alice", app="news"))
    await receive(news)
    assert (await gw.health())["pending"] >= 1

    async with httpx.AsyncClient(base_url=gw.http) as client:
        answer = await client.delete(
            "/v1/users/alice", params={"app": "shop"}, headers=bearer(SHOP_ADMIN)
        )
    assert answer.status_code == 200
    assert answer.json()["removed"]["timers"] == 1
    assert await closed_with(shop) == 4005

    await send(news, {"type": "event", "name": "ping", "seq": 2})
    assert await receive(news) == {"type": "ack", "seq": 2}
    store = await stored(gw)
    try:
        assert await store.pending_timers() == []
        assert await store.decisions(app="shop", user="alice") == []
        assert (await store.get_user("news", "alice")).app == "news"
    finally:
        await store.close()
    await news.close()


async def test_opting_out_stops_a_message_already_scheduled(secured: Any) -> None:
    gw = await secured()
    async with await gw.connect() as ws:
        await send(ws, hello(user="carol"))
        await receive(ws)
        await send(ws, {"type": "event", "name": "search", "seq": 1})
        await receive(ws)
        await send(ws, {"type": "consent", "granted": False})
        await receive(ws)
        await asyncio.sleep(1.5)
    store = await stored(gw)
    try:
        [decision] = await store.decisions(app="shop", user="carol")
    finally:
        await store.close()
    assert decision.rule == "shop_soon"
    assert decision.decision == "no_consent"
    assert not (gw.tmp / "outbox.jsonl").exists()


async def test_cors_is_closed_by_default(secured: Any) -> None:
    gw = await secured()
    async with httpx.AsyncClient(base_url=gw.http) as client:
        origin = {"Origin": "https://shop.example"}
        health = await client.get("/healthz", headers=origin)
        preflight = await client.options(
            "/v1/users/alice",
            headers={**origin, "Access-Control-Request-Method": "DELETE"},
        )
    assert "access-control-allow-origin" not in health.headers
    assert preflight.status_code == 405
    assert "access-control-allow-origin" not in preflight.headers


async def test_tokens_keys_and_secrets_never_reach_logs_or_answers(
    secured: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    gw = await secured()
    good = token("shop", "dave")
    stolen = token("news", "dave")
    p256dh = (
        "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1Xbjhaz"
        "Akj7I99e8QcYP7DkM"
    )
    auth = "tBHItJI5svbpez7KI4CCXg"
    frames: list[dict[str, Any]] = []
    async with await gw.connect() as ws:
        await send(ws, hello(user="dave", token=stolen))
        frames.append(await receive(ws))
    async with await gw.connect() as ws:
        await send(ws, hello(user="dave", token=good))
        frames.append(await receive(ws))
        subscription = {
            "endpoint": "https://10.0.0.1/push",
            "keys": {"p256dh": p256dh, "auth": auth},
        }
        await send(
            ws,
            {"type": "subscribe", "channel": "webpush", "subscription": subscription},
        )
        frames.append(await receive(ws))
        await send(ws, {"type": "refresh", "token": stolen})
        frames.append(await receive(ws))
    async with httpx.AsyncClient(base_url=gw.http) as client:
        answer = await client.delete(
            "/v1/users/dave", params={"app": "news"}, headers=bearer(SHOP_ADMIN)
        )
    assert [f.get("code") for f in frames] == [
        "unauthorized",
        None,
        "invalid_subscription",
        "unauthorized",
    ]
    text = (
        "\n".join(r.getMessage() for r in caplog.records) + repr(frames) + answer.text
    )
    text += "".join(str(r.exc_info) for r in caplog.records)
    for secret in (
        good,
        stolen,
        p256dh,
        auth,
        SHOP_SECRET,
        NEWS_SECRET,
        SHOP_ADMIN,
        NEWS_ADMIN,
        OPERATOR,
    ):
        assert secret not in text


def test_the_config_repr_hides_every_secret(tmp_path: Path) -> None:
    from sessionpush.gateway.apps import load_gateway_config
    from tests.gateway.secured import config_text

    path = tmp_path / "c.toml"
    path.write_text(config_text())
    text = repr(load_gateway_config(str(path)))
    assert "shop" in text
    for secret in (SHOP_SECRET, NEWS_SECRET, SHOP_ADMIN, NEWS_ADMIN):
        assert secret not in text
