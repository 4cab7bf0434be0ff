"""Two engines on one Redis store act as two gateway processes would."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import redis

from sessionpush.engine.clock import WallClock
from sessionpush.engine.core import Engine
from sessionpush.engine.timers import fire_due
from sessionpush.store.base import Device
from sessionpush.store.redis import RedisStore
from tests.engine.conftest import Peer, RecordingTransport
from tests.redis_server import RedisServer
from tests.rulesets import ruleset_from_text

CAPPED = """
rule welcome "Welcome" {
    when open
    limit 1 per user per 24h
    push { title "Welcome back" }
}
"""

WAITING = """
rule cart "Cart" {
    when cart
    wait 1s
    push { title "Your cart" }
}
"""


@pytest.fixture
async def stores(redis_server: RedisServer) -> AsyncIterator[list[RedisStore]]:
    """Two store objects, two connection pools: two processes' views."""
    with redis.Redis(port=redis_server.port) as client:
        client.flushdb()
    opened = [RedisStore(redis_server.url), RedisStore(redis_server.url)]
    for store in opened:
        await store.open()
    yield opened
    for store in opened:
        await store.close()


def _engines(
    text: str, stores: list[RedisStore]
) -> tuple[list[Engine], list[RecordingTransport]]:
    outs = [RecordingTransport(), RecordingTransport()]
    engines = [
        Engine(ruleset_from_text(text), store, WallClock(), fallback=out)
        for store, out in zip(stores, outs, strict=True)
    ]
    return engines, outs


async def test_two_devices_triggering_at_once_on_two_processes_get_one_message(
    stores: list[RedisStore],
) -> None:
    engines, outs = _engines(CAPPED, stores)
    peers = [Peer(), Peer()]
    for i, (engine, peer) in enumerate(zip(engines, peers, strict=True)):
        device = Device(app="shop", user="ana", device_id=f"phone-{i}")
        await engine.open(peer, device)

    await asyncio.gather(
        *(e.event(p, "open", {}) for e, p in zip(engines, peers, strict=True))
    )

    assert len(outs[0].sent) + len(outs[1].sent) == 1
    outcomes = sorted(d.decision for d in await stores[0].decisions())
    assert outcomes == ["capped", "sent"]


async def test_a_stalled_claimant_is_fenced_off_and_the_timer_fires_once(
    stores: list[RedisStore],
) -> None:
    engines, outs = _engines(WAITING, stores)
    peer = Peer()
    await engines[0].open(peer, Device(app="shop", user="bo", device_id="web"))
    await engines[0].event(peer, "cart", {})
    await asyncio.sleep(1.1)

    # Process A claims the due timer, then stalls past its lease.
    (stalled,) = await stores[0].claim_due(time.time(), 10, 0.2)
    await asyncio.sleep(0.3)
    assert await fire_due(engines[1]) == 1  # process B takes it over
    await engines[0].fire_claimed(stalled.timer, stalled)  # A wakes up, late

    assert [m.id for m in outs[1].sent] == [stalled.timer.timer_id]
    assert outs[0].sent == []
    assert [d.decision for d in await stores[0].decisions()] == ["sent"]
    assert await stores[0].pending_timers() == []


async def test_a_timer_cancelled_by_an_unless_event_is_gone_for_every_process(
    stores: list[RedisStore],
) -> None:
    text = WAITING.replace("wait 1s", "wait 1s\n    unless purchase")
    engines, outs = _engines(text, stores)
    peer = Peer()
    await engines[0].open(peer, Device(app="shop", user="cy", device_id="web"))
    await engines[0].event(peer, "cart", {})
    other = Peer()
    await engines[1].open(other, Device(app="shop", user="cy", device_id="phone"))
    await engines[1].event(other, "purchase", {})
    await asyncio.sleep(1.1)

    assert await fire_due(engines[0]) == 0
    assert await fire_due(engines[1]) == 0
    assert outs[0].sent == outs[1].sent == []
