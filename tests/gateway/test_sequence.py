"""Sequence numbers over real sockets: each seq applied at most once per
session, the ack names the highest applied, welcome says where a resumed
session stands."""

from __future__ import annotations

from typing import Any

from tests.gateway.conftest import receive, send

ECHO = """
rule echo {
    when view
    push { title "{n}" }
}
"""

HELLO = {"type": "hello", "user": "u1", "device": {"platform": "web"}}


def view(n: int, seq: int | None) -> dict[str, Any]:
    return {"type": "event", "name": "view", "props": {"n": n}, "seq": seq}


def titles(gw: Any) -> list[str]:
    return [push["title"] for push in gw.pushes()]


async def test_a_copy_of_an_applied_seq_is_acked_and_not_applied(gateway: Any) -> None:
    gw = await gateway(ECHO)
    async with await gw.connect() as ws:
        await send(ws, HELLO)
        assert (await receive(ws))["seq"] is None
        for seq, acked in [(1, 1), (2, 2), (2, 2), (1, 2)]:
            await send(ws, view(seq, seq))
            assert await receive(ws) == {"type": "ack", "seq": acked}
    assert titles(gw) == ["1", "2"]


async def test_a_gap_is_applied_and_its_missing_numbers_never_later(
    gateway: Any,
) -> None:
    gw = await gateway(ECHO)
    async with await gw.connect() as ws:
        await send(ws, HELLO)
        await receive(ws)
        await send(ws, view(1, 1))
        assert await receive(ws) == {"type": "ack", "seq": 1}
        await send(ws, view(5, 5))
        assert await receive(ws) == {"type": "ack", "seq": 5}
        await send(ws, view(3, 3))
        assert await receive(ws) == {"type": "ack", "seq": 5}
    assert titles(gw) == ["1", "5"]


async def test_events_without_seq_are_applied_every_time(gateway: Any) -> None:
    gw = await gateway(ECHO)
    async with await gw.connect() as ws:
        await send(ws, HELLO)
        await receive(ws)
        for _ in range(2):
            await send(ws, view(9, None))
            assert await receive(ws) == {"type": "ack", "seq": None}
    assert titles(gw) == ["9", "9"]


async def test_a_resumed_session_is_welcomed_with_its_highest_applied_seq(
    gateway: Any,
) -> None:
    gw = await gateway(ECHO)
    async with await gw.connect() as ws:
        await send(ws, HELLO)
        session = (await receive(ws))["session"]
        await send(ws, view(1, 1))
        await receive(ws)
        await send(ws, view(2, 2))
        await receive(ws)
    async with await gw.connect() as ws:
        await send(ws, {**HELLO, "session": session})
        welcome = await receive(ws)
        assert (welcome["resumed"], welcome["seq"]) == (True, 2)
        # The copy of seq 2 the client could not know was applied, then 3.
        await send(ws, view(2, 2))
        assert await receive(ws) == {"type": "ack", "seq": 2}
        await send(ws, view(3, 3))
        assert await receive(ws) == {"type": "ack", "seq": 3}
    assert titles(gw) == ["1", "2", "3"]


async def test_a_refused_event_does_not_use_up_its_seq(gateway: Any) -> None:
    gw = await gateway(ECHO)
    async with await gw.connect() as ws:
        await send(ws, HELLO)
        await receive(ws)
        deep: dict[str, Any] = {"n": 1}
        for _ in range(10):
            deep = {"d": deep}
        await send(ws, {"type": "event", "name": "view", "props": deep, "seq": 1})
        error = await receive(ws)
        assert (error["code"], error["seq"]) == ("too_large", 1)
        await send(ws, view(1, 1))
        assert await receive(ws) == {"type": "ack", "seq": 1}
    assert titles(gw) == ["1"]


async def test_a_seq_beyond_javascripts_exact_integers_is_refused(
    gateway: Any,
) -> None:
    gw = await gateway(ECHO)
    async with await gw.connect() as ws:
        await send(ws, HELLO)
        await receive(ws)
        await send(ws, view(1, 2**53))
        error = await receive(ws)
        assert error["code"] == "invalid_frame"
        assert "$.seq" in error["message"]
