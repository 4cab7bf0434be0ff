"""PUT /v1/rules: guarded by the admin key, checked before it replaces
anything, and loaded without dropping connections."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from tests.gateway.conftest import receive, send

OLD = 'rule hi "Hi" {\n    when open\n    push { title "hi" }\n}\n'
NEW = 'rule bye "Bye" {\n    when close\n    push { title "bye" }\n}\n'


async def test_without_an_admin_key_the_endpoint_is_disabled_and_says_how_to_enable(
    gateway: Callable[..., Any],
) -> None:
    gw = await gateway(OLD)
    async with httpx.AsyncClient(base_url=gw.http) as client:
        answer = await client.put("/v1/rules", content=NEW)

    assert answer.status_code == 403
    assert "--admin-key" in answer.text


async def test_a_wrong_key_is_refused(gateway: Callable[..., Any]) -> None:
    gw = await gateway(OLD, admin_key="s3cret-key")
    async with httpx.AsyncClient(base_url=gw.http) as client:
        answer = await client.put(
            "/v1/rules", content=NEW, headers={"Authorization": "Bearer guess"}
        )

    assert answer.status_code == 401


async def test_a_rule_set_that_does_not_check_is_refused_and_the_old_one_stays(
    gateway: Callable[..., Any],
) -> None:
    gw = await gateway(OLD, admin_key="s3cret-key")
    auth = {"Authorization": "Bearer s3cret-key"}
    async with httpx.AsyncClient(base_url=gw.http) as client:
        answer = await client.put("/v1/rules", content="rule {", headers=auth)
        health = (await client.get("/healthz")).json()

    assert answer.status_code == 422
    assert "api.rules:1:" in answer.text
    assert health["rules"] == 1


async def test_a_new_rule_set_gets_a_version_and_open_sockets_keep_working(
    gateway: Callable[..., Any],
) -> None:
    gw = await gateway(OLD, admin_key="s3cret-key")
    ws = await gw.connect()
    await send(ws, {"type": "hello", "user": "ana", "device": {"platform": "web"}})
    assert (await receive(ws))["type"] == "welcome"
    auth = {"Authorization": "Bearer s3cret-key"}
    async with httpx.AsyncClient(base_url=gw.http) as client:
        answer = await client.put("/v1/rules", content=NEW, headers=auth)
        health = (await client.get("/healthz")).json()

    await send(ws, {"type": "event", "name": "close", "props": {}, "seq": 1})
    assert await receive(ws) == {"type": "ack", "seq": 1}
    await ws.close()
    assert answer.json() == {"version": "1", "rules": 1}
    assert health["rules_version"] == "1"
