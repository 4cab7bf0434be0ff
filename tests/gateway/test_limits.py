"""Limits attacked over real sockets: big frames, a compression bomb, a
flood, many connections, bad values, a client that never reads, a silent
socket; each gets its documented answer and other users carry on."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import msgspec
import pytest

from sessionpush.gateway.limits import Limits, TokenBucket, check_props
from sessionpush.gateway.protocol import ProtocolError
from tests.gateway.raw_socket import RawSocket
from tests.gateway.secured import closed_with, hello, receive, secured, send

__all__ = ["secured"]  # the fixture, imported for these tests


async def welcomed(gw: Any, user: str = "alice") -> Any:
    ws = await gw.connect()
    await send(ws, hello(user=user))
    assert (await receive(ws))["type"] == "welcome"
    return ws


async def still_serves(gw: Any, user: str = "bystander") -> None:
    """Another user is served as usual."""
    async with await welcomed(gw, user) as ws:
        await send(ws, {"type": "event", "name": "ping", "seq": 9})
        assert await receive(ws) == {"type": "ack", "seq": 9}


def test_a_bucket_lets_a_burst_through_then_the_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=2.0, burst=3, clock=lambda: now[0])
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    now[0] += 0.5
    assert bucket.take() is True
    assert bucket.take() is False
    assert bucket.refused == 1


def test_props_beyond_the_count_or_depth_are_refused_by_path() -> None:
    limits = Limits(properties_per_event=4, property_depth=3)
    check_props({"a": 1, "b": {"c": [1]}}, limits)
    with pytest.raises(ProtocolError, match="more than 4"):
        check_props({"a": [1, 2, 3, 4]}, limits)
    with pytest.raises(ProtocolError, match="deeper than 3"):
        check_props({"a": {"b": {"c": [1]}}}, limits)


async def test_a_frame_over_64_kib_closes_with_1009(secured: Any) -> None:
    gw = await secured()
    ws = await welcomed(gw)
    await send(ws, {"type": "event", "name": "view", "props": {"x": "a" * 70_000}})
    assert await closed_with(ws) == 1009
    await still_serves(gw)


async def test_a_compression_bomb_closes_with_1009(secured: Any) -> None:
    gw = await secured("compression = true")
    ws = await gw.connect(compression="deflate")
    await send(ws, hello())
    assert (await receive(ws))["type"] == "welcome"
    # 8 MiB of one letter deflates to a few KiB on the wire.
    await send(ws, {"type": "event", "name": "view", "props": {"x": "a" * 2**23}})
    assert await closed_with(ws) == 1009
    await still_serves(gw)


async def test_a_flood_is_refused_then_closed_with_4029(secured: Any) -> None:
    gw = await secured("frames_per_second = 5\nframe_burst = 10")
    ws = await welcomed(gw)
    for seq in range(40):
        await send(ws, {"type": "event", "name": "ping", "seq": seq})
    frames = []
    with contextlib.suppress(Exception):
        while True:
            frames.append(await receive(ws, 3))
    acks = [f for f in frames if f["type"] == "ack"]
    refused = [f for f in frames if f.get("code") == "rate_limited"]
    assert 9 <= len(acks) <= 12
    assert refused
    assert ws.close_code == 4029
    await still_serves(gw)


async def test_a_thousand_sockets_of_one_user_get_the_limit_and_4009(
    secured: Any,
) -> None:
    gw = await secured("connections_per_user = 3\nconnections_per_ip = 5000")

    async def one() -> str:
        ws = await gw.connect()
        await send(ws, hello(user="mallory"))
        answer = await receive(ws, 20)
        if answer["type"] == "welcome":
            return "welcome"
        code = await closed_with(ws)
        await ws.close()
        return f"{answer.get('code')}:{code}"

    results: list[str] = []
    for _ in range(10):
        results += await asyncio.gather(*(one() for _ in range(100)))
    assert results.count("welcome") == 3
    assert results.count("too_many_connections:4009") == 997
    await still_serves(gw)


async def test_sockets_beyond_the_per_address_limit_close_with_4009(
    secured: Any,
) -> None:
    gw = await secured("connections_per_ip = 2")
    first, second = await gw.connect(), await gw.connect()
    third = await gw.connect()
    assert await closed_with(third) == 4009
    await first.close()
    await asyncio.sleep(0.1)
    async with await welcomed(gw, "later") as ws:
        await send(ws, {"type": "event", "name": "ping", "seq": 1})
        assert await receive(ws) == {"type": "ack", "seq": 1}
    await second.close()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ('{"type": "event", "name": "view", "props": {"a": NaN}}', "malformed_json"),
        (
            '{"type": "event", "name": "view", "props": {"a": Infinity}}',
            "malformed_json",
        ),
        ('{"type": "event", "name": "view", "props": {"a": 1e999}}', "invalid_frame"),
        ('{"type": "event", "name": 7}', "invalid_frame"),
        ('{"type": "event", "name": "view", "seq": -1}', "invalid_frame"),
        ('{"type": "event", "name": "' + "n" * 200 + '"}', "invalid_frame"),
        (
            '{"type": "event", "name": "v", "props": {"a": '
            + "[" * 20000
            + "]" * 20000
            + "}}",
            "too_large",
        ),
        (
            '{"type": "event", "name": "v", "props": {"a": ' + "[" * 9 + "]" * 9 + "}}",
            "too_large",
        ),
        (
            msgspec.json.encode(
                {"type": "event", "name": "v", "props": {str(i): i for i in range(300)}}
            ).decode(),
            "too_large",
        ),
        ('{"type": "hello", "user": "bob\\u0000"}', "invalid_frame"),
        ("[]", "invalid_frame"),
        ("\u0000", "malformed_json"),
    ],
    ids=[
        "nan",
        "infinity",
        "overflow",
        "wrong-type",
        "negative-seq",
        "huge-name",
        "deep-nesting",
        "too-deep-props",
        "too-many-props",
        "control-char-id",
        "not-an-object",
        "nul",
    ],
)
async def test_a_bad_value_gets_its_error_and_the_connection_stays(
    secured: Any, frame: str, code: str
) -> None:
    gw = await secured()
    async with await welcomed(gw) as ws:
        await send(ws, frame)
        error = await receive(ws)
        assert error["type"] == "error"
        assert error["code"] == code
        await send(ws, {"type": "event", "name": "ping", "seq": 2})
        assert (await receive(ws)) == {"type": "ack", "seq": 2}


async def test_a_socket_without_hello_closes_with_4010(secured: Any) -> None:
    gw = await secured("hello_timeout = 0.3")
    ws = await gw.connect()
    assert await closed_with(ws) == 4010


async def test_a_client_that_never_reads_is_dropped_and_others_carry_on(
    secured: Any,
) -> None:
    gw = await secured(
        "outbound_queue = 8\nclose_timeout = 0.5\nframes_per_second = 100000\n"
        "frame_burst = 100000"
    )
    raw = await RawSocket.open(gw.port)
    raw.send(hello(user="sloth"))
    sent = 0
    try:
        async with asyncio.timeout(20):
            while (await gw.health())["connections"] > 0 and sent < 200_000:
                for _ in range(2000):
                    raw.send({"type": "event", "name": "ping", "props": {}})
                sent += 2000
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(raw.writer.drain(), 0.2)
                await still_serves(gw)
    finally:
        raw.close()
    assert (await gw.health())["connections"] == 0


async def test_a_half_open_socket_is_closed_by_keepalive_and_ends_once(
    secured: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", "sessionpush.engine")
    gw = await secured("ping_interval = 0.2\nping_timeout = 0.2", grace=0.2)
    raw = await RawSocket.open(gw.port)
    raw.send(hello(user="ghost"))
    # The client reads nothing from here on, so it never answers a ping.
    try:
        async with asyncio.timeout(5):
            while (await gw.health())["sessions"] > 0 or not caplog.records:
                await asyncio.sleep(0.1)
        ended = [r for r in caplog.records if "ended" in r.getMessage()]
        assert len(ended) == 1
        assert (await gw.health())["connections"] == 0
    finally:
        raw.close()
