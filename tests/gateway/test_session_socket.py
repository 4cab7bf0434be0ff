"""The session socket itself (gateway.connection): handshake paths,
fragmented messages, pipelined frames, the address a socket is counted
under, and a stop that asks clients to reconnect."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from sessionpush.gateway.addresses import client_address
from tests.gateway.raw_socket import RawSocket, close_frame, text_frame
from tests.gateway.secured import closed_with, hello, receive, secured, send

__all__ = ["secured"]  # the fixture, imported for these tests


async def test_an_upgrade_to_another_path_is_answered_404(secured: Any) -> None:
    gw = await secured()
    with pytest.raises(InvalidStatus) as caught:
        await connect(f"ws://127.0.0.1:{gw.port}/v1/elsewhere")
    assert caught.value.response.status_code == 404
    assert b"connect to /v1/session" in caught.value.response.body
    # The HTTP API on the same port is untouched.
    assert (await gw.health())["status"] == "ok"


async def test_a_fragmented_frame_is_put_together_before_it_is_read(
    secured: Any,
) -> None:
    gw = await secured()
    async with await gw.connect() as ws:
        await send(ws, hello(user="frag"))
        assert (await receive(ws))["type"] == "welcome"
        text = msgspec.json.encode(
            {"type": "event", "name": "tick", "seq": 1, "props": {"x": "y" * 300}}
        ).decode()
        # Three websocket frames: a text frame and two continuations.
        await ws.send([text[:100], text[100:200], text[200:]])
        assert await receive(ws) == {"type": "ack", "seq": 1}


async def test_pipelined_frames_are_all_answered_in_order(secured: Any) -> None:
    gw = await secured("frames_per_second = 100000\nframe_burst = 100000")
    async with await gw.connect() as ws:
        await send(ws, hello(user="pipeline"))
        assert (await receive(ws))["type"] == "welcome"
        # Far more than the inbox holds before the socket stops being read.
        for seq in range(1, 1001):
            await send(ws, {"type": "event", "name": "tick", "seq": seq})
        acks = [(await receive(ws))["seq"] for _ in range(1000)]
    assert acks == list(range(1, 1001))


async def test_a_trusted_proxy_counts_each_forwarded_client_apart(
    secured: Any,
) -> None:
    gw = await secured(
        'connections_per_ip = 1\n\n[server]\ntrusted_proxies = ["127.0.0.1"]'
    )

    async def opened(forwarded: str) -> Any:
        ws = await connect(gw.url, additional_headers={"X-Forwarded-For": forwarded})
        await send(ws, hello(user=f"user-{forwarded}"))
        return ws

    first = await opened("203.0.113.7")
    second = await opened("203.0.113.8")
    assert (await receive(first))["type"] == "welcome"
    assert (await receive(second))["type"] == "welcome"
    # One socket per address: a second one from .7 is refused.
    third = await connect(
        gw.url, additional_headers={"X-Forwarded-For": "198.51.100.1, 203.0.113.7"}
    )
    assert await closed_with(third) == 4009
    await first.close()
    await second.close()


async def test_without_trusted_proxies_a_forwarded_header_is_ignored(
    secured: Any,
) -> None:
    gw = await secured("connections_per_ip = 1")
    first = await connect(gw.url, additional_headers={"X-Forwarded-For": "203.0.113.7"})
    await send(first, hello(user="one"))
    assert (await receive(first))["type"] == "welcome"
    second = await connect(
        gw.url, additional_headers={"X-Forwarded-For": "203.0.113.8"}
    )
    assert await closed_with(second) == 4009
    await first.close()


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "expected"),
    [
        (("10.0.0.5", 4321), None, (), "10.0.0.5"),
        (("10.0.0.5", 4321), "203.0.113.7", (), "10.0.0.5"),
        (("10.0.0.5", 4321), "203.0.113.7", ("10.0.0.0/8",), "203.0.113.7"),
        # The right-most hop we do not trust is the client; a client can
        # put anything before it.
        (
            ("10.0.0.5", 4321),
            "6.6.6.6, 203.0.113.7, 10.0.0.9",
            ("10.0.0.0/8",),
            "203.0.113.7",
        ),
        (("10.0.0.5", 4321), "10.0.0.8, 10.0.0.9", ("10.0.0.0/8",), "10.0.0.8"),
        # A peer that is no proxy of ours is believed about nothing.
        (("192.0.2.1", 1), "203.0.113.7", ("10.0.0.0/8",), "192.0.2.1"),
        (("::1", 1, 0, 0), "2001:db8::1", ("::1",), "2001:db8::1"),
        (("10.0.0.5", 1), "not-an-ip", ("10.0.0.0/8",), "not-an-ip"),
        (None, None, (), ""),
    ],
)
def test_the_counted_address(
    peer: Any, forwarded: str | None, trusted: tuple[str, ...], expected: str
) -> None:
    assert client_address(peer, forwarded, trusted) == expected


async def test_frames_sent_before_a_disconnect_are_still_applied(
    gateway: Any,
) -> None:
    gw = await gateway(
        "rule bye_push {\n  when session ends where session has checkout\n"
        '  push { title "thanks" }\n}\n',
        grace=0.1,
    )
    ws = await gw.connect()
    await send(ws, {"type": "hello", "user": "leaver"})
    assert (await receive(ws))["type"] == "welcome"
    await send(ws, {"type": "event", "name": "checkout", "seq": 1})
    await send(ws, {"type": "end"})
    await ws.close()
    async with asyncio.timeout(5):
        while not gw.pushes():
            await asyncio.sleep(0.05)
    assert [p["rule"] for p in gw.pushes()] == ["bye_push"]


async def test_frames_that_arrive_with_the_close_frame_are_all_applied(
    gateway: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # A tab that closes right after `end`: the frames and the close frame
    # reach the server in one read, so the protocol is already closing
    # when they are handled; the session must still end as asked.
    caplog.set_level("INFO")
    gw = await gateway(
        "rule tab_closed {\n  when session ends where session has checkout\n"
        '  push { title "thanks" }\n}\n'
    )
    raw = await RawSocket.open(gw.port)
    raw.send({"type": "hello", "user": "closing-tab"})
    await raw.reader.read(1)  # the welcome is on its way
    raw.writer.write(
        text_frame({"type": "event", "name": "view", "seq": 1})
        + text_frame({"type": "event", "name": "checkout", "seq": 2})
        + text_frame({"type": "end"})
        + close_frame()
    )
    await raw.writer.drain()
    try:
        async with asyncio.timeout(5):
            while not gw.pushes():
                await asyncio.sleep(0.05)
    finally:
        raw.close()
    assert [p["title"] for p in gw.pushes()] == ["thanks"]
    failures = [r for r in caplog.records if r.levelname == "ERROR"]
    assert failures == []
