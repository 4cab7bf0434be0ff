"""Batched frames: a JSON array of events in one websocket message, applied
in order and acknowledged once with the highest ``seq``."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from sessionpush.gateway.protocol import (
    MAX_BATCH,
    ProtocolError,
    decode_batch,
    is_batch,
)
from tests.gateway.conftest import receive, send

PRICEY = """
rule pricey {
    when view where price > 500
    inapp { title "Need help with the {brand | default: 'item'}?" }
}
"""

HELLO = {"type": "hello", "user": "u1", "device": {"platform": "web"}}


def view(price: float, seq: int | None) -> dict[str, Any]:
    return {"type": "event", "name": "view", "props": {"price": price}, "seq": seq}


def test_only_a_json_array_is_a_batch() -> None:
    assert is_batch('[{"name":"view"}]')
    assert is_batch(b'  \n[{"name":"view"}]')
    assert not is_batch('{"type":"event","name":"view"}')
    assert not is_batch(b"")


def test_a_batch_with_one_bad_event_is_refused_whole_naming_its_index() -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_batch('[{"type":"event","name":"a"},{"type":"event","name":7}]')
    assert caught.value.code == "invalid_frame"
    assert "$[1].name" in caught.value.message


def test_a_batch_holds_only_events_and_at_most_max_batch() -> None:
    with pytest.raises(ProtocolError, match=r"\$\[0\]\.type"):
        decode_batch('[{"type":"hello","user":"u"}]')
    with pytest.raises(ProtocolError, match="length"):
        decode_batch("[]")
    too_many = "[" + ",".join(['{"name":"a"}'] * (MAX_BATCH + 1)) + "]"
    with pytest.raises(ProtocolError, match="length"):
        decode_batch(too_many)


async def test_a_batch_is_acknowledged_once_with_its_highest_seq(
    gateway: Any,
) -> None:
    gw = await gateway(PRICEY)
    async with await gw.connect() as ws:
        await send(ws, HELLO)
        await receive(ws)
        batch = [view(10, 1), view(20, None), view(30, 3)]
        await ws.send(msgspec.json.encode(batch).decode())
        assert await receive(ws) == {"type": "ack", "seq": 3}


async def test_each_event_of_a_batch_goes_to_the_rules_in_order(
    gateway: Any,
) -> None:
    gw = await gateway(PRICEY)
    async with await gw.connect() as ws:
        await send(ws, HELLO)
        await receive(ws)
        batch = [view(900, 1), {**view(10, 2), "props": {"price": 1}}, view(700, 3)]
        batch[2]["props"]["brand"] = "acme"
        await ws.send(msgspec.json.encode(batch).decode())
        first, second, ack = [await receive(ws) for _ in range(3)]
        assert first["title"] == "Need help with the item?"
        assert second["title"] == "Need help with the acme?"
        assert ack == {"type": "ack", "seq": 3}


async def test_a_refused_batch_applies_nothing_and_keeps_the_connection(
    gateway: Any,
) -> None:
    gw = await gateway(PRICEY)
    async with await gw.connect() as ws:
        await send(ws, HELLO)
        await receive(ws)
        await send(ws, '[{"type":"event","name":"view","props":{"price":900}},{}]')
        error = await receive(ws)
        assert error["type"] == "error"
        assert error["code"] == "invalid_frame"
        assert "$[1]" in error["message"]
        await send(ws, view(10, 9))
        assert await receive(ws) == {"type": "ack", "seq": 9}


async def test_a_batch_before_hello_is_refused(gateway: Any) -> None:
    gw = await gateway(PRICEY)
    async with await gw.connect() as ws:
        await send(ws, '[{"name":"view"}]')
        error = await receive(ws)
        assert error["code"] == "no_session"
