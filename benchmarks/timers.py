"""Timer rates and memory: in-session deadlines, SQLite and Redis timers.

Prints, for each kind of timer the engine keeps:

- *in-session deadlines* (``DeadlineQueue``, in memory): schedule and
  cancel rates and bytes per pending deadline, with 1,000,000 pending
  (targets: at most 150 bytes each; schedule plus cancel under 1 µs);
- *durable timers* in the SQLite store and in a private Redis started on a
  free loopback port: schedule (``add_timer``), cancel (``cancel_timers``)
  and fire (``claim_due`` then ``finish``) rates, and Redis bytes per
  pending timer (target: 20,000 fires per second from one Redis);
- with ``--cluster``, the same on a private Redis Cluster of three
  primaries on this machine (all on one host: it shows the cost of the
  cluster client, not the capacity of three machines).

Run: ``python -m benchmarks.timers`` (``--deadlines N``, ``--timers N``,
``--cluster``).
Numbers drift on shared machines: compare runs made on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import redis

from sessionpush.engine.deadlines import DeadlineQueue
from sessionpush.store.base import PendingTimer, Store
from sessionpush.store.redis import RedisStore
from sessionpush.store.sqlite import SQLiteStore
from tests.redis_server import RedisClusterServers, RedisServer

# How many store calls are in flight at once: the Redis client pipelines
# them over its connections as a busy gateway's tasks would.
CONCURRENCY = 64
# Timers claimed (and settled) per round trip when firing.
BATCH = 500


def deadlines(count: int) -> None:
    # Memory and time in separate passes: tracemalloc slows every allocation.
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    queue = DeadlineQueue()
    entries = [
        queue.push(1_700_000_000.0 + i * 0.001, "absence", None) for i in range(count)
    ]
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    # The list of handles is the benchmark's, not the queue's; the handles
    # themselves are counted (the engine keeps each in a session).
    per = (used - len(entries) * 8) / count
    del queue, entries
    gc.collect()

    # Three deadlines per session, as grace, idle and a `when idle` rule.
    sessions = [_Session() for _ in range(max(1, count // 3))]
    refs = [sessions[i % len(sessions)] for i in range(count)]
    scheduled, cancelled = _schedule_and_cancel(refs)
    each = (scheduled + cancelled) / count * 1e6
    bare = sum(_schedule_and_cancel([None] * count)) / count * 1e6
    fresh = sum(_schedule_and_cancel(refs, fresh=True)) / count * 1e6
    paused = sum(_schedule_and_cancel(refs, collect=False)) / count * 1e6
    del sessions, refs
    print("in-session deadlines (DeadlineQueue, in memory)")
    print(f"  pending           {count:>12,}")
    print(f"  schedule          {count / scheduled:>12,.0f} /s")
    print(f"  cancel            {count / cancelled:>12,.0f} /s")
    print(f"  schedule+cancel   {each:>12.3f} µs each (target < 1)")
    print("    the target's figure: garbage collector on (Python's defaults), each")
    print(f"    ref one of {max(1, count // 3):,} session-like objects made before")
    print(f"    ref None                      {bare:.3f} µs")
    print(f"    ref a new tuple per deadline  {fresh:.3f} µs (as an absence window's:")
    print("                                  the tuple is tracked and pending too)")
    print(f"    garbage collector paused      {paused:.3f} µs")
    print(f"  memory            {per:>12.0f} bytes per pending (target <= 150)")


class _Session:
    """Stands in for a session: an object the collector tracks, with the
    containers a session holds, made before its deadlines are set."""

    __slots__ = ("bound", "peers", "tally")

    def __init__(self) -> None:
        self.bound: dict[str, Any] = {}
        self.peers: set[Any] = set()
        self.tally: dict[str, int] = {}


def _schedule_and_cancel(
    refs: list[Any], fresh: bool = False, collect: bool = True
) -> tuple[float, float]:
    """Seconds to schedule then cancel a deadline for each of ``refs``.

    With ``fresh`` each ref is a new tuple holding it instead, as the engine
    makes for an absence window; with ``collect`` False the garbage
    collector is paused, to show what it costs.
    """
    gc.collect()
    if not collect:
        gc.disable()
    try:
        queue = DeadlineQueue()
        push = queue.push
        start = time.perf_counter()
        if fresh:
            entries = [
                push(1_700_000_000.0 + i * 0.001, "absence", (ref, "rule", i, None))
                for i, ref in enumerate(refs)
            ]
        else:
            entries = [
                push(1_700_000_000.0 + i * 0.001, "absence", ref)
                for i, ref in enumerate(refs)
            ]
        scheduled = time.perf_counter() - start

        cancel = queue.cancel
        start = time.perf_counter()
        for entry in entries:
            cancel(entry)
        cancelled = time.perf_counter() - start
    finally:
        gc.enable()
    return scheduled, cancelled


def _timer(i: int, due: float) -> PendingTimer:
    return PendingTimer(
        timer_id=f"timer-{i}",
        app="shop",
        user=f"user-{i}",
        session=f"session-{i}",
        rule="cart_recovery",
        due=due,
        triggered_at=due - 600,
        context={"snapshot": {"brand": "acme", "price": 19.99}},
    )


async def _bounded(calls: list[Awaitable[Any]], concurrency: int) -> list[Any]:
    gate = asyncio.Semaphore(concurrency)

    async def one(call: Awaitable[Any]) -> Any:
        async with gate:
            return await call

    return await asyncio.gather(*(one(c) for c in calls))


async def durable(
    name: str, store: Store, count: int, memory: Callable[[], int] | None
) -> None:
    await store.open()
    past = time.time() - 60
    start = time.perf_counter()
    await _bounded(
        [store.add_timer(_timer(i, past)) for i in range(count)], CONCURRENCY
    )
    scheduled = time.perf_counter() - start
    used = memory() if memory is not None else None

    start = time.perf_counter()
    fired = 0
    while True:
        # As the engine's fire_batch: one claim and one settle per batch.
        claims = await store.claim_due(time.time(), BATCH, 30.0)
        if not claims:
            break
        fired += sum(await store.finish_many(claims))
    firing = time.perf_counter() - start

    await _bounded(
        [store.add_timer(_timer(i, past + 3600)) for i in range(count)], CONCURRENCY
    )
    start = time.perf_counter()
    await _bounded(
        [
            store.cancel_timers("shop", f"user-{i}", "cart_recovery", 1e12)
            for i in range(count)
        ],
        CONCURRENCY,
    )
    cancelled = time.perf_counter() - start
    await store.close()

    print(f"durable timers ({name})")
    print(f"  timers            {count:>12,}")
    print(f"  schedule          {count / scheduled:>12,.0f} /s")
    print(f"  fire (claim+settle){fired / firing:>11,.0f} /s")
    print(f"  cancel            {count / cancelled:>12,.0f} /s")
    if used is not None:
        print(f"  memory            {used / count:>12.0f} bytes per pending (Redis)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--deadlines", type=int, default=1_000_000)
    parser.add_argument("--timers", type=int, default=20_000)
    parser.add_argument(
        "--cluster", action="store_true", help="also on a Redis Cluster"
    )
    args = parser.parse_args()

    deadlines(args.deadlines)
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(
            durable(
                "SQLite file", SQLiteStore(str(Path(tmp) / "b.db")), args.timers, None
            )
        )
        server = RedisServer(Path(tmp) / "redis").start()
        try:
            client = redis.Redis(port=server.port)
            base = int(client.info("memory")["used_memory"])

            def memory() -> int:
                return int(client.info("memory")["used_memory"]) - base

            asyncio.run(durable("Redis", RedisStore(server.url), args.timers, memory))
            client.close()
        finally:
            server.stop()
        if args.cluster:
            cluster(Path(tmp) / "cluster", args.timers)


def cluster(directory: Path, count: int) -> None:
    servers = RedisClusterServers(directory).start()
    try:
        clients = [redis.Redis(port=port) for port in servers.ports]

        def used() -> int:
            return sum(int(c.info("memory")["used_memory"]) for c in clients)

        base = used()
        asyncio.run(
            durable(
                "Redis Cluster, 3 primaries on this host",
                RedisStore(servers.url),
                count,
                lambda: used() - base,
            )
        )
        for client in clients:
            client.close()
    finally:
        servers.stop()


if __name__ == "__main__":
    main()
