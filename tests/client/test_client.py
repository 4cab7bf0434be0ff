"""The asyncio client against a real gateway, through a proxy that can
cut the connection: order, resume, no event lost or doubled."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from sessionpush.client import Backoff, Client, ClientClosed, ClientState
from tests.gateway.secured import SHOP_ORIGIN, secured
from tests.proxy import Proxy

__all__ = ["secured"]  # the fixture, imported for these tests

ECHO = """
rule echo {
    when view
    push { title "{n}" }
}
rule pricey {
    when view where n == 3
    inapp { title "Need help with item {n}?" link "/help" }
}
"""


@pytest.fixture
async def proxied(gateway: Any) -> AsyncIterator[tuple[Any, Proxy]]:
    gw = await gateway(ECHO, grace=1.0)
    proxy = await Proxy(gw.port).start()
    yield gw, proxy
    await proxy.close()


def client(proxy: Proxy, **options: Any) -> Client:
    return Client(proxy.url(), "alice", backoff=Backoff(base=0.05, cap=0.2), **options)


def titles(gw: Any) -> list[str]:
    return [push["title"] for push in gw.pushes()]


async def test_events_reach_the_gateway_in_order(
    proxied: tuple[Any, Proxy],
) -> None:
    gw, proxy = proxied
    async with client(proxy) as alice:
        seqs = [alice.track("view", {"n": n}) for n in range(1, 46)]
        await alice.flush()
    assert seqs == list(range(1, 46))
    assert titles(gw) == [str(n) for n in range(1, 46)]


async def test_an_event_goes_out_within_the_batch_delay_without_a_flush(
    proxied: tuple[Any, Proxy],
) -> None:
    gw, proxy = proxied
    async with client(proxy) as alice:
        alice.track("view", {"n": 1})
        for _ in range(100):
            if titles(gw):
                break
            await asyncio.sleep(0.01)
        assert titles(gw) == ["1"]


async def test_an_inapp_message_arrives_in_the_messages_queue(
    proxied: tuple[Any, Proxy],
) -> None:
    _, proxy = proxied
    async with client(proxy) as alice:
        alice.track("view", {"n": 3})
        message = await asyncio.wait_for(alice.messages.get(), 5)
    assert (message["rule"], message["title"]) == ("pricey", "Need help with item 3?")


async def test_a_cut_connection_resumes_the_session_and_loses_nothing(
    proxied: tuple[Any, Proxy],
) -> None:
    gw, proxy = proxied
    async with client(proxy) as alice:
        session = alice.session
        for n in range(1, 11):
            alice.track("view", {"n": n})
        await alice.flush()
        # Cut while frames are in flight, and keep tracking while offline.
        for n in range(11, 21):
            alice.track("view", {"n": n})
        await asyncio.sleep(0)
        proxy.cut()
        for n in range(21, 31):
            alice.track("view", {"n": n})
        await asyncio.sleep(0.3)
        assert alice.state is ClientState.CONNECTING
        proxy.restore()
        await asyncio.wait_for(alice.flush(), 10)
        assert (alice.session, alice.resumed) == (session, True)
    assert titles(gw) == [str(n) for n in range(1, 31)]
    assert proxy.accepted >= 2


async def test_after_the_grace_period_the_events_go_to_a_new_session(
    proxied: tuple[Any, Proxy],
) -> None:
    gw, proxy = proxied
    async with client(proxy) as alice:
        alice.track("view", {"n": 1})
        await alice.flush()
        proxy.cut()
        alice.track("view", {"n": 2})
        await asyncio.sleep(1.5)  # the gateway's grace is 1 s
        proxy.restore()
        await asyncio.wait_for(alice.flush(), 10)
        assert alice.resumed is False
    sessions = [push["session"] for push in gw.pushes()]
    assert titles(gw) == ["1", "2"]
    assert sessions[0] == sessions[1]  # the client asks for its id again


async def test_a_full_offline_buffer_drops_the_oldest_events_and_counts_them(
    proxied: tuple[Any, Proxy],
) -> None:
    gw, proxy = proxied
    async with client(proxy, buffer_limit=5) as alice:
        proxy.cut()
        for n in range(1, 11):
            alice.track("view", {"n": n})
        proxy.restore()
        await asyncio.wait_for(alice.flush(), 10)
        assert alice.dropped == 5
    assert titles(gw) == ["6", "7", "8", "9", "10"]


async def test_end_closes_the_session_and_the_client(
    proxied: tuple[Any, Proxy],
) -> None:
    gw, proxy = proxied
    alice = client(proxy)
    await alice.start()
    alice.track("view", {"n": 1})
    await alice.end()
    assert alice.state is ClientState.CLOSED
    with pytest.raises(ClientClosed, match="the session ended"):
        alice.track("view", {"n": 2})
    assert titles(gw) == ["1"]


async def test_a_refused_hello_closes_the_client_for_good(secured: Any) -> None:
    gw = await secured()
    alice = Client(gw.url, "alice", app="shop", token="not-a-token")
    with pytest.raises(ClientClosed, match="4003"):
        await asyncio.wait_for(alice.start(), 10)
    anonymous = Client(gw.url, "v1", app="shop", key="pk", origin=SHOP_ORIGIN)
    with pytest.raises(ClientClosed, match="4003"):
        await asyncio.wait_for(anonymous.start(), 10)
