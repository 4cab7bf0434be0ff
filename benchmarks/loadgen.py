"""The load generator: worker processes that replay real sessions over
websockets to a server on 127.0.0.1 and time the answers.

Each worker owns every ``n_workers``-th of the ``connections`` sockets.
The recorded events of the Taobao slice and the REES46 sample are laid on
one time line (each file's first event at zero) and every user is pinned
to one socket, so a socket carries its users' events in recorded order, as
a server-side app or a busy tab would. A socket says ``hello`` once and
stays open for the whole run.

Time is compressed so that the whole time line is offered at ``rate``
events per second; with ``rate`` 0 the events go as fast as the in-flight
window allows (full load). The window (unacknowledged events per worker)
keeps an overloaded server from queueing without bound: the sender waits
for acks when it is full.

Measured per worker: events acknowledged, the time from sending an event
to its ``ack`` (for a batch, each event of it counts the batch's time).
Probes, from worker 0, open short sessions at a steady pace during the
run: ``hello``, a ``view``, a ``bench_probe`` (timed to the in-app
``message`` its rule sends) and ``end`` (its time is kept, so that the
parent can time the post-session push to its outbox line).

Everything is bounded: connecting by ``connect_timeout``, the run by
``max_seconds`` and by the number of recorded events times ``rounds``.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing.connection
import os
import time
import zlib
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from benchmarks.servers import HOST, raise_open_files

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SESSIONPUSH_DATA", ROOT.parent / "shared" / "data"))


@dataclass(frozen=True)
class WorkerPlan:
    port: int
    worker: int
    n_workers: int
    connections: int
    mode: str = "single"  # "single": one event a frame; "batch"; "idle"
    batch: int = 50
    rate: float = 0.0
    window: int = 2000
    rounds: int = 1
    max_seconds: float = 60.0
    probes: int = 0
    deflate: bool = False
    connect_timeout: float = 120.0
    events_limit: int = 0


@dataclass
class WorkerResult:
    connected: int = 0
    failed: int = 0
    events: int = 0
    frames: int = 0
    seconds: float = 0.0
    ack_ms: list[float] = field(default_factory=list)
    message_ms: list[float] = field(default_factory=list)
    #: (session id, wall time the ``end`` left) of each probe session
    probe_ends: list[tuple[str, float]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class _Reply(msgspec.Struct):
    type: str
    seq: int | None = None
    session: str | None = None


_reply = msgspec.json.Decoder(_Reply)
# (due seconds, socket index, payload, highest seq in it, events in it)
Frame = tuple[float, int, str, int, int]
_encode = msgspec.json.Encoder().encode


def load_timeline() -> list[tuple[float, str, str, dict[str, Any]]]:
    """(seconds from start, user, event name, props) of both data sets."""
    from sessionpush.replay.formats import load_events

    timeline: list[tuple[float, str, str, dict[str, Any]]] = []
    for name, fmt in (
        ("taobao-slice-20171126.csv", "taobao"),
        ("rees46-2019oct-head.csv", "rees46"),
    ):
        events = load_events(DATA / name, fmt)
        start = events[0].ts
        timeline.extend(
            (e.ts - start, f"{fmt}:{e.user}", e.name, e.props) for e in events
        )
    timeline.sort(key=lambda item: item[0])
    return timeline


class _Socket:
    """One client connection and what is in flight on it."""

    __slots__ = ("conn", "inflight", "session")

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        # (highest seq of the frame, events in it, time sent)
        self.inflight: deque[tuple[int, int, float]] = deque()
        self.session = ""


class _Worker:
    def __init__(self, plan: WorkerPlan) -> None:
        self.plan = plan
        self.result = WorkerResult()
        self.sockets: list[_Socket] = []
        self.outstanding = 0
        self.room = asyncio.Event()
        self.done = asyncio.Event()
        self.expected = 0

    async def connect_all(self) -> None:
        from websockets.asyncio.client import connect

        plan = self.plan
        mine = range(plan.worker, plan.connections, plan.n_workers)
        url = f"ws://{HOST}:{plan.port}/v1/session"
        gate = asyncio.Semaphore(200)

        async def one(index: int) -> _Socket | None:
            async with gate:
                try:
                    conn = await connect(
                        url,
                        compression="deflate" if plan.deflate else None,
                        max_size=1 << 20,
                        ping_interval=None,
                        open_timeout=30,
                    )
                    hello = {"type": "hello", "user": f"load-{index}"}
                    await conn.send(_encode(hello).decode())
                    welcome = _reply.decode(await asyncio.wait_for(conn.recv(), 30))
                except (OSError, TimeoutError, Exception) as exc:
                    self.result.failed += 1
                    if len(self.result.errors) < 5:
                        self.result.errors.append(f"connect: {exc!r}")
                    return None
                sock = _Socket(conn)
                sock.session = welcome.session or ""
                return sock

        found = await asyncio.wait_for(
            asyncio.gather(*(one(i) for i in mine)), plan.connect_timeout
        )
        self.sockets = [s for s in found if s is not None]
        self.result.connected = len(self.sockets)

    async def read(self, sock: _Socket) -> None:
        ack_ms = self.result.ack_ms
        low = self.plan.window * 9 // 10
        with contextlib.suppress(Exception):
            async for data in sock.conn:
                now = time.perf_counter()
                reply = _reply.decode(data)
                if reply.type == "ack" and reply.seq is not None:
                    inflight = sock.inflight
                    while inflight and inflight[0][0] <= reply.seq:
                        _, count, sent = inflight.popleft()
                        ms = (now - sent) * 1000.0
                        ack_ms.extend([ms] * count)
                        self.result.events += count
                        self.outstanding -= count
                    if self.outstanding <= low:
                        self.room.set()
                    if self.result.events >= self.expected:
                        self.done.set()

    def frames(self) -> list[Frame]:
        """(due, socket, payload, highest seq, events), by due time."""
        plan = self.plan
        timeline = load_timeline()
        if plan.events_limit:
            timeline = timeline[: plan.events_limit]
        span = timeline[-1][0] + 1.0
        total = len(timeline) * plan.rounds
        scale = 0.0 if plan.rate <= 0 else total / plan.rate / (span * plan.rounds)
        n = len(self.sockets)
        seqs = [0] * n
        pending: dict[int, list[tuple[float, str, int]]] = {}
        out: list[Frame] = []
        for round_ in range(plan.rounds):
            for at, user, name, props in timeline:
                pinned = zlib.crc32(user.encode()) % plan.connections
                if pinned % plan.n_workers != plan.worker:
                    continue
                index = (pinned // plan.n_workers) % n
                seqs[index] += 1
                due = (round_ * span + at) * scale
                frame = {"type": "event", "name": name, "props": props}
                frame["seq"] = seqs[index]
                if plan.mode == "single":
                    text = _encode(frame).decode()
                    out.append((due, index, text, seqs[index], 1))
                    continue
                group = pending.setdefault(index, [])
                group.append((due, _encode(frame).decode(), seqs[index]))
                if len(group) == plan.batch:
                    out.append(_batch_frame(index, group))
                    del pending[index]
        out.extend(_batch_frame(index, group) for index, group in pending.items())
        out.sort(key=lambda item: item[0])
        return out

    async def send_all(self, frames: list[Frame]) -> None:
        plan = self.plan
        self.expected = sum(f[4] for f in frames)
        started = time.perf_counter()
        stop_at = started + plan.max_seconds
        sockets = self.sockets
        for due, index, payload, seq, count in frames:
            now = time.perf_counter()
            if now > stop_at:
                break
            if due > now - started:
                await asyncio.sleep(due - (now - started))
            while self.outstanding >= plan.window:
                self.room.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.room.wait(), stop_at - now)
                if time.perf_counter() > stop_at:
                    break
            if time.perf_counter() > stop_at:
                break
            sock = sockets[index]
            sent = time.perf_counter()
            sock.inflight.append((seq, count, sent))
            self.outstanding += count
            self.result.frames += 1
            try:
                await sock.conn.send(payload)
            except Exception as exc:
                if len(self.result.errors) < 5:
                    self.result.errors.append(f"send: {exc!r}")
        self.expected = self.result.events + self.outstanding
        if self.outstanding:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self.done.wait(), max(0.1, stop_at + 5 - time.perf_counter())
                )
        self.result.seconds = time.perf_counter() - started

    async def probe(self, count: int, seconds: float) -> None:
        """Short sessions ending with ``end``, spread over ``seconds``."""
        from websockets.asyncio.client import connect

        url = f"ws://{HOST}:{self.plan.port}/v1/session"
        pause = seconds / max(1, count)
        for n in range(count):
            await asyncio.sleep(pause)
            try:
                async with asyncio.timeout(10):
                    async with connect(url, compression=None) as conn:
                        hello = {"type": "hello", "user": f"probe-{self.plan.port}-{n}"}
                        await conn.send(_encode(hello).decode())
                        session = _reply.decode(await conn.recv()).session or ""
                        for seq, name in enumerate(("view", "bench_probe"), 1):
                            frame = {"type": "event", "name": name, "seq": seq}
                            sent = time.perf_counter()
                            await conn.send(_encode(frame).decode())
                            while (
                                kind := _reply.decode(await conn.recv()).type
                            ) != "ack":
                                if kind == "message":
                                    ms = (time.perf_counter() - sent) * 1000.0
                                    self.result.message_ms.append(ms)
                        ended = time.time()
                        await conn.send('{"type":"end"}')
                        with contextlib.suppress(Exception):
                            while True:
                                await conn.recv()
                self.result.probe_ends.append((session, ended))
            except Exception as exc:
                if len(self.result.errors) < 5:
                    self.result.errors.append(f"probe: {exc!r}")

    async def close_all(self) -> None:
        async def close(sock: _Socket) -> None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(sock.conn.close(), 5)

        gate = 500
        for start in range(0, len(self.sockets), gate):
            await asyncio.gather(
                *(close(s) for s in self.sockets[start : start + gate])
            )


def _batch_frame(index: int, group: list[tuple[float, str, int]]) -> Frame:
    payload = "[" + ",".join(text for _, text, _ in group) + "]"
    return (group[-1][0], index, payload, group[-1][2], len(group))


async def _run(plan: WorkerPlan, pipe: multiprocessing.connection.Connection) -> None:
    worker = _Worker(plan)
    try:
        await worker.connect_all()
        readers = [asyncio.create_task(worker.read(s)) for s in worker.sockets]
        frames = [] if plan.mode == "idle" else worker.frames()
        pipe.send(("ready", worker.result.connected, worker.result.failed))
        # The parent measures the server between "ready" and "go".
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, pipe.recv)
        if plan.mode != "idle":
            tasks = [asyncio.create_task(worker.send_all(frames))]
            if plan.probes and plan.worker == 0:
                tasks.append(asyncio.create_task(worker.probe(plan.probes, 3.0)))
            await asyncio.gather(*tasks)
        await worker.close_all()
        for task in readers:
            task.cancel()
    finally:
        result = worker.result
        pipe.send(("result", msgspec.to_builtins(result)))


def worker_main(plan: WorkerPlan, pipe: multiprocessing.connection.Connection) -> None:
    """Entry point of a worker process."""
    import uvloop

    raise_open_files()
    uvloop.run(_run(plan, pipe))
