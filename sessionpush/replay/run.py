"""Drive the engine over recorded sessions, in process or through a gateway.

Both ways make the same calls on the same engine in the same order, which is
what makes their decisions identical:

- each recorded session is one connection, opened at its first event and
  closed (``bye``) right after its last, so it ends when the grace period
  runs out;
- before each event the virtual clock moves to the event's time and every
  deadline due by then fires, in order;
- after the last event the clock runs on until nothing is pending.

Every user counts as subscribed and consenting: pushes go to the outbox.
"""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import Sequence
from typing import Any

import msgspec

from sessionpush.client import Client, Pacer
from sessionpush.engine.clock import VirtualClock
from sessionpush.engine.core import Engine
from sessionpush.engine.rules import RuleSet
from sessionpush.replay.formats import RecordedEvent
from sessionpush.report.outcomes import Report, build_report
from sessionpush.store.base import Decision, Device
from sessionpush.store.sqlite import SQLiteStore
from sessionpush.transports.outbox import Outbox

__all__ = ["REPLAY_APP", "replay_in_process", "replay_measured", "replay_via"]

REPLAY_APP = "default"


def wire_millis(ts: float) -> float:
    """The time as it travels in frames: epoch milliseconds."""
    return ts * 1000.0


def clock_time(millis: float) -> float:
    """The engine's time for a frame's milliseconds (both paths use this)."""
    return millis / 1000.0


def _key(event: RecordedEvent) -> tuple[str, str]:
    # Sessions belong to users: two users' sessions that happen to share an
    # id in the data are two connections.
    return (event.user, event.session)


def _last_index(events: Sequence[RecordedEvent]) -> dict[tuple[str, str], int]:
    return {_key(event): i for i, event in enumerate(events)}


class _ReplayPeer:
    """A connection that exists only in the replay: it reads everything."""

    __slots__ = ("messages",)

    def __init__(self) -> None:
        self.messages = 0

    def deliver(self, frame: dict[str, Any]) -> bool:
        self.messages += frame.get("type") == "message"
        return True

    def close(self, code: int, reason: str) -> None:
        pass


async def replay_in_process(
    rules: RuleSet, events: Sequence[RecordedEvent], outbox: str | None = None
) -> list[Decision]:
    """Replay ``events`` through a fresh engine and return its decisions."""
    decisions, _ = await replay_measured(rules, events, outbox)
    return decisions


async def replay_measured(
    rules: RuleSet, events: Sequence[RecordedEvent], outbox: str | None = None
) -> tuple[list[Decision], Report]:
    """Replay ``events`` through a fresh engine: its decisions and the report
    of the rule set over them (funnels, conversions, lift)."""
    store = SQLiteStore(":memory:")
    await store.open()
    sink = Outbox(outbox)
    start = clock_time(wire_millis(events[0].ts)) if events else 0.0
    engine = Engine(rules, store, VirtualClock(start), fallback=sink)
    await engine.start()
    last = _last_index(events)
    peers: dict[tuple[str, str], _ReplayPeer] = {}
    try:
        for i, event in enumerate(events):
            await engine.advance(clock_time(wire_millis(event.ts)))
            key = _key(event)
            peer = peers.get(key)
            if peer is None:
                peer = peers[key] = _ReplayPeer()
                await engine.open(peer, _device(event.user), event.session)
            await engine.event(peer, event.name, event.props)
            if last[key] == i:
                await engine.detach(peers.pop(key))
        await engine.drain()
        decisions = await store.decisions()
        report = build_report(
            rules.rules,
            decisions,
            await store.goals(),
            await store.outcomes(),
            rules_version=rules.version,
        )
        return decisions, report
    finally:
        await sink.close()
        await store.close()


def _device(user: str) -> Device:
    # What the gateway derives from a hello with ``{"platform": "web"}``.
    return Device(app=REPLAY_APP, user=user, device_id=f"{user}:web", platform="web")


async def replay_via(url: str, events: Sequence[RecordedEvent]) -> list[dict[str, Any]]:
    """Replay ``events`` through a gateway started with ``--clock playback``.

    Each recorded session is one :class:`~sessionpush.client.Client`.
    Frames go one at a time, each answered before the next is sent
    (``flush`` after every event), so the gateway sees them in the same
    order as the in-process replay. Returns the gateway's decisions in
    their JSON form.
    """
    last = _last_index(events)
    clients: dict[tuple[str, str], Client] = {}
    try:
        for i, event in enumerate(events):
            ts = wire_millis(event.ts)
            key = _key(event)
            client = clients.get(key)
            if client is None:
                client = clients[key] = Client(
                    url,
                    event.user,
                    app=REPLAY_APP,
                    session=event.session,
                    device={"platform": "web"},
                    # A playback gateway has no rate limit, and a replay
                    # must not wait for one.
                    pacer=Pacer.unlimited(),
                )
                await client.start(ts=ts)
            client.track(event.name, event.props, ts=ts)
            await client.flush()
            if client.refused:
                raise RuntimeError(f"gateway refused a frame: {client.refused[0][1]}")
            if last[key] == i:
                await clients.pop(key).close(ts=ts)
    finally:
        for client in clients.values():
            await client.close()
    return await asyncio.to_thread(_drain, url)


def _drain(url: str) -> list[dict[str, Any]]:
    http = url.replace("ws://", "http://", 1).replace("wss://", "https://", 1)
    drain_url = http.rsplit("/v1/", 1)[0] + "/v1/playback/drain"
    request = urllib.request.Request(drain_url, method="POST", data=b"")
    with urllib.request.urlopen(request, timeout=600) as response:
        body = response.read()
    return [msgspec.json.decode(line) for line in body.splitlines() if line]
