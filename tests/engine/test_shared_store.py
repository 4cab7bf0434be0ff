"""Two engines on one Redis store act as two gateway processes would, on
one Redis and on a Redis Cluster."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
import redis

from sessionpush.engine.clock import WallClock
from sessionpush.engine.core import Engine
from sessionpush.engine.timers import fire_due
from sessionpush.store.base import Claim, Device
from sessionpush.store.redis import RedisStore
from sessionpush.transports.outbox import Outbox
from tests.engine.conftest import Peer, RecordingTransport
from tests.redis_server import RedisClusterServers, RedisServer
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


@pytest.fixture(params=["redis", "redis-cluster"])
def url(request: pytest.FixtureRequest) -> str:
    """The store URL of an emptied Redis, or of an emptied Redis Cluster."""
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        with redis.Redis(port=server.port) as client:
            client.flushdb()
        return server.url
    cluster: RedisClusterServers = request.getfixturevalue("redis_cluster")
    cluster.flush()
    return cluster.url


@pytest.fixture
async def stores(url: str) -> AsyncIterator[list[RedisStore]]:
    """Two store objects, two connection pools: two processes' views."""
    opened = [RedisStore(url), RedisStore(url)]
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


class _Killed(Exception):
    """Stands for SIGKILL at one step of a send: nothing after it runs."""


class _DiesBeforeSettling(RedisStore):
    """A process killed after its send went out, before the settle."""

    async def finish(self, claim: Claim) -> bool:
        raise _Killed


class _DiesAfterClaimingTheKey(RedisStore):
    """A process killed once the idempotency key was its, before the write."""

    async def claim_send(self, key: str, message_id: str, at: float) -> str | None:
        await super().claim_send(key, message_id, at)
        raise _Killed


async def _killed_mid_send(
    store: RedisStore, url: str, outbox: Outbox
) -> tuple[Engine, str]:
    """A process on ``store`` claims one due timer with a 0.2 s lease and
    dies mid-send; a second process on ``url`` sharing ``outbox`` is returned
    with the timer id, once the lease ran out."""
    await store.open()
    alive = RedisStore(url)
    await alive.open()
    engines = [
        Engine(ruleset_from_text(WAITING), s, WallClock(), fallback=outbox)
        for s in (store, alive)
    ]
    peer = Peer()
    await engines[0].open(peer, Device(app="shop", user="di", device_id="web"))
    await engines[0].event(peer, "cart", {})
    await asyncio.sleep(1.1)
    (claim,) = await store.claim_due(time.time(), 10, 0.2)
    with pytest.raises(_Killed):
        await engines[0].fire_claimed(claim.timer, claim)
    await asyncio.sleep(0.3)
    return engines[1], claim.timer.timer_id


async def test_a_timer_whose_claimant_died_after_writing_is_not_written_again(
    stores: list[RedisStore], url: str, tmp_path: Path
) -> None:
    outbox = Outbox(tmp_path / "outbox.jsonl")
    dying = _DiesBeforeSettling(url)
    alive, timer_id = await _killed_mid_send(dying, url, outbox)
    assert outbox.has_sent(timer_id)

    assert await fire_due(alive) == 1

    lines = (tmp_path / "outbox.jsonl").read_bytes().splitlines()
    assert [msgspec.json.decode(line)["id"] for line in lines] == [timer_id]
    (decision,) = await stores[0].decisions()
    assert (decision.decision, decision.reason) == (
        "sent",
        "delivered by outbox (before a crash)",
    )
    assert await stores[0].pending_timers() == []
    await dying.close()
    await alive.store.close()
    await outbox.close()


async def test_a_timer_whose_claimant_died_before_writing_is_written_once(
    stores: list[RedisStore], url: str, tmp_path: Path
) -> None:
    outbox = Outbox(tmp_path / "outbox.jsonl")
    dying = _DiesAfterClaimingTheKey(url)
    alive, timer_id = await _killed_mid_send(dying, url, outbox)
    assert not outbox.has_sent(timer_id)

    assert await fire_due(alive) == 1

    lines = (tmp_path / "outbox.jsonl").read_bytes().splitlines()
    assert [msgspec.json.decode(line)["id"] for line in lines] == [timer_id]
    (decision,) = await stores[0].decisions()
    assert (decision.decision, decision.reason) == ("sent", "delivered by outbox")
    await dying.close()
    await alive.store.close()
    await outbox.close()
