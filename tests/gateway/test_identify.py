"""``identify`` and ``screen`` over real sockets."""

from __future__ import annotations

from typing import Any

from tests.gateway.conftest import receive, send
from tests.gateway.secured import SHOP_ORIGIN, SHOP_PUBLIC, secured, token
from tests.gateway.secured import receive as secured_receive
from tests.gateway.secured import send as secured_send

__all__ = ["secured"]  # the fixture, imported for these tests

GOLD = """
rule gold_view {
    when view where user.plan == "gold"
    push { title "gold {user.plan}" }
}
rule checkout_screen {
    when screen where name == "checkout"
    push { title "screen {name} from {from}" }
}
"""


async def test_identify_makes_the_visitor_a_known_user_with_traits(
    gateway: Any,
) -> None:
    gw = await gateway(GOLD)
    async with await gw.connect() as ws:
        await send(ws, {"type": "hello", "user": "visitor-7f"})
        await receive(ws)
        await send(ws, {"type": "event", "name": "view", "seq": 1})
        assert await receive(ws) == {"type": "ack", "seq": 1}
        identify = {"type": "identify", "user": "alice", "traits": {"plan": "gold"}}
        await send(ws, identify)
        assert await receive(ws) == {"type": "ack", "seq": None}
        await send(ws, {"type": "event", "name": "view", "seq": 2})
        assert await receive(ws) == {"type": "ack", "seq": 2}
    pushes = gw.pushes()
    assert [(p["user"], p["title"]) for p in pushes] == [("alice", "gold gold")]


async def test_screen_is_the_event_screen_with_its_name_in_props(
    gateway: Any,
) -> None:
    gw = await gateway(GOLD)
    async with await gw.connect() as ws:
        await send(ws, {"type": "hello", "user": "u1"})
        await receive(ws)
        frame = {"type": "screen", "name": "checkout", "props": {"from": "cart"}}
        await send(ws, {**frame, "seq": 1})
        assert await receive(ws) == {"type": "ack", "seq": 1}
        await send(ws, {**frame, "name": "home", "seq": 2})
        assert await receive(ws) == {"type": "ack", "seq": 2}
    assert [p["title"] for p in gw.pushes()] == ["screen checkout from cart"]


async def test_identify_as_another_user_needs_their_token(secured: Any) -> None:
    gw = await secured()
    async with await gw.connect(origin=SHOP_ORIGIN) as ws:
        await secured_send(
            ws, {"type": "hello", "user": "v1", "app": "shop", "key": SHOP_PUBLIC}
        )
        assert (await secured_receive(ws))["type"] == "welcome"
        # The anonymous visitor's own id: traits only, no token needed.
        await secured_send(ws, {"type": "identify", "user": "v1", "traits": {"a": 1}})
        assert await secured_receive(ws) == {"type": "ack", "seq": None}
        await secured_send(ws, {"type": "identify", "user": "alice"})
        refused = await secured_receive(ws)
        assert refused["code"] == "unauthorized"
        await secured_send(
            ws, {"type": "identify", "user": "alice", "token": token(user="bob")}
        )
        assert (await secured_receive(ws))["code"] == "unauthorized"
        await secured_send(
            ws, {"type": "identify", "user": "alice", "token": token(user="alice")}
        )
        assert await secured_receive(ws) == {"type": "ack", "seq": None}
        await secured_send(ws, {"type": "event", "name": "view", "seq": 1})
        frames = [await secured_receive(ws), await secured_receive(ws)]
        assert {"type": "ack", "seq": 1} in frames
