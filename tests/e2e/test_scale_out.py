"""Several real gateway processes on one real Redis behave as one: every
post-session timer fires exactly once, whatever dies on the way.

The gateways of a test share one outbox file, as processes of one host
may: a timer sent again after its claimant was killed finds the line the
dead process wrote there, so each timer shows up as exactly one line."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import redis
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.e2e.servers import Served, start_serve
from tests.redis_server import RedisServer

RULES = """
rule come_back "Bring the cart back" {
    when session ends where session has cart
    wait WAIT
    push { title "Your cart misses you" link "shop://cart" }
}
"""


async def _session(port: int, user: str) -> str:
    """hello, a cart, end: the session ends at once and its timer is written."""
    async with connect(f"ws://127.0.0.1:{port}/v1/session") as ws:
        hello = {"type": "hello", "user": user, "device": {"platform": "web"}}
        await ws.send(msgspec.json.encode(hello).decode())
        welcome = msgspec.json.decode(await ws.recv())
        cart = {"type": "event", "name": "cart", "props": {"sku": user}, "seq": 1}
        await ws.send(msgspec.json.encode(cart).decode())
        assert msgspec.json.decode(await ws.recv()) == {"type": "ack", "seq": 1}
        await ws.send('{"type": "end"}')
        with contextlib.suppress(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
    session: str = welcome["session"]
    return session


async def _drive(ports: list[int], count: int) -> list[str]:
    """``count`` sessions spread over the gateways, at most 50 at a time."""
    gate = asyncio.Semaphore(50)

    async def one(i: int) -> str:
        async with gate:
            return await _session(ports[i % len(ports)], f"user-{i}")

    return await asyncio.gather(*(one(i) for i in range(count)))


def _pushed(outbox: Path) -> list[str]:
    """The session of every line of the outbox, repeats included."""
    if not outbox.exists():
        return []
    return [
        msgspec.json.decode(line)["session"]
        for line in outbox.read_bytes().splitlines()
    ]


def _wait_until_written(port: int, outbox: Path, count: int) -> None:
    """Until every timer is in Redis or out: a gateway closes the socket of an
    ended session before its timer is written, so a client's view lags."""
    deadline = time.monotonic() + 15
    with redis.Redis(port=port) as client:
        while time.monotonic() < deadline:
            pending = sum(client.hlen(f"sp:{{t:{n}}}:data") for n in range(8))
            if pending + len(_pushed(outbox)) >= count:
                return
            time.sleep(0.01)
    raise AssertionError(f"the gateways did not write {count} timers in time")


def _wait_for(outbox: Path, count: int, seconds: float) -> list[str]:
    deadline = time.monotonic() + seconds
    while len(set(_pushed(outbox))) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # a duplicate would show up now
    return _pushed(outbox)


@contextlib.contextmanager
def _gateways(
    tmp_path: Path, redis_url: str, count: int, wait: str
) -> Iterator[tuple[list[Served], Path]]:
    rules = tmp_path / "shop.rules"
    rules.write_text(RULES.replace("WAIT", wait))
    served: list[Served] = []
    outbox = tmp_path / "outbox.jsonl"
    try:
        for i in range(count):
            cwd = tmp_path / f"gateway-{i}"
            cwd.mkdir()
            served.append(
                start_serve(
                    *("--rules", str(rules), "--store", redis_url),
                    *("--outbox", str(outbox), "--grace", "0.2"),
                    *("--timer-lease", "2"),
                    cwd=cwd,
                )
            )
        yield served, outbox
    finally:
        for process in served:
            process.stop()


@pytest.fixture
def redis_with_aof(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of the test's own, with an append-only file fsynced each second."""
    try:
        server = RedisServer(tmp_path / "redis", aof=True).start()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    yield server
    server.stop()


def test_a_thousand_timers_fire_once_each_though_one_of_three_gateways_is_killed(
    tmp_path: Path, redis_with_aof: RedisServer
) -> None:
    with _gateways(tmp_path, redis_with_aof.url, 3, "2s") as (served, outbox):
        sessions = asyncio.run(_drive([s.port for s in served], 1000))
        _wait_until_written(redis_with_aof.port, outbox, 1000)
        deadline = time.monotonic() + 15
        while not _pushed(outbox) and time.monotonic() < deadline:
            time.sleep(0.01)
        served[0].kill()  # mid-way: it may hold claimed, unsent timers
        fired_before_kill = len(_pushed(outbox))

        pushed = _wait_for(outbox, 1000, 30)
        with redis.Redis(port=redis_with_aof.port) as client:
            settled = len(client.keys("sp:{t:*}:sent:*"))

    assert 0 < fired_before_kill < 1000
    assert settled == 1000
    # every timer, exactly one line: none lost, none written twice
    assert Counter(pushed) == Counter(sessions)
    assert len(set(sessions)) == 1000


def test_timers_written_a_second_before_redis_restarts_all_fire_once(
    tmp_path: Path, redis_with_aof: RedisServer
) -> None:
    with _gateways(tmp_path, redis_with_aof.url, 2, "3s") as (served, outbox):
        sessions = asyncio.run(_drive([s.port for s in served], 200))
        _wait_until_written(redis_with_aof.port, outbox, 200)
        time.sleep(1.1)  # the append-only file is fsynced every second
        assert _pushed(outbox) == []  # still pending when Redis goes down

        redis_with_aof.kill()
        redis_with_aof.start()  # same port, same directory: replays the AOF

        pushed = _wait_for(outbox, 200, 20)

    assert Counter(pushed) == Counter(sessions)


OPEN_RULES = 'rule hi "Hi" {\n    when open\n    push { title "hi" }\n}\n'
CLOSE_RULES = 'rule bye "Bye" {\n    when close\n    push { title "bye" }\n}\n'


async def _health(port: int) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        answer: dict[str, Any] = (await client.get("/healthz")).json()
    return answer


async def _rules_put_on_one_reach_the_other(ports: list[int], outbox: Path) -> float:
    """A socket open on ``ports[1]``, rules put on ``ports[0]``: seconds until
    the second process serves them; then the same socket uses them."""
    async with connect(f"ws://127.0.0.1:{ports[1]}/v1/session") as ws:
        hello = {"type": "hello", "user": "ana", "device": {"platform": "web"}}
        await ws.send(msgspec.json.encode(hello).decode())
        assert msgspec.json.decode(await ws.recv())["type"] == "welcome"

        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports[0]}") as c:
            auth = {"Authorization": "Bearer s3cret-admin-key"}
            answer = await c.put("/v1/rules", content=CLOSE_RULES, headers=auth)
        assert answer.json() == {"version": "1", "rules": 1}
        put_at = time.monotonic()
        while (await _health(ports[1]))["rules_version"] != "1":
            assert time.monotonic() - put_at < 1.0, "not loaded within a second"
            await asyncio.sleep(0.02)
        took = time.monotonic() - put_at

        close = {"type": "event", "name": "close", "props": {}, "seq": 1}
        await ws.send(msgspec.json.encode(close).decode())
        assert msgspec.json.decode(await ws.recv()) == {"type": "ack", "seq": 1}
        deadline = time.monotonic() + 5
        while not outbox.exists() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
    return took


def rules_put_across(tmp_path: Path, stores: list[str]) -> tuple[float, Path]:
    """Two gateways, one per store URL, sharing an outbox: seconds from a
    PUT /v1/rules on one to the other serving it, and the outbox."""
    rules = tmp_path / "open.rules"
    rules.write_text(OPEN_RULES)
    outbox = tmp_path / "outbox.jsonl"
    served: list[Served] = []
    try:
        for i, store in enumerate(stores):
            cwd = tmp_path / f"gateway-{i}"
            cwd.mkdir()
            served.append(
                start_serve(
                    *("--rules", str(rules), "--store", store),
                    *("--outbox", str(outbox), "--admin-key", "s3cret-admin-key"),
                    cwd=cwd,
                )
            )
        took = asyncio.run(
            _rules_put_on_one_reach_the_other([s.port for s in served], outbox)
        )
    finally:
        for process in served:
            process.stop()
    return took, outbox


def test_rules_put_on_one_gateway_are_served_by_the_other_within_a_second(
    tmp_path: Path, redis_with_aof: RedisServer
) -> None:
    took, outbox = rules_put_across(tmp_path, [redis_with_aof.url] * 2)
    assert took < 1.0
    (line,) = outbox.read_bytes().splitlines()
    push = msgspec.json.decode(line)
    assert (push["rule"], push["user"], push["title"]) == ("bye", "ana", "bye")
