"""A harness that drives the engine the way the gateway does, on a clock
the test moves by hand."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from sessionpush.engine.clock import VirtualClock
from sessionpush.engine.core import Engine
from sessionpush.engine.rules import RuleSet
from sessionpush.store.base import Decision, Device, Subscription
from sessionpush.store.sqlite import SQLiteStore
from sessionpush.transports.base import DeliveryResult, OutboundMessage
from tests.rulesets import ruleset_from_text

T0 = 1_700_000_000.0


class RecordingTransport:
    """A push channel that keeps what it is given, as a provider would."""

    def __init__(self, name: str = "outbox") -> None:
        self.name = name
        self.sent: list[OutboundMessage] = []

    async def send(
        self, message: OutboundMessage, subscription: Subscription | None
    ) -> DeliveryResult:
        self.sent.append(message)
        return DeliveryResult(ok=True, detail="recorded")

    async def close(self) -> None:
        pass


class Peer:
    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []
        self.closed: tuple[int, str] | None = None

    def deliver(self, frame: dict[str, Any]) -> bool:
        self.frames.append(frame)
        return True

    def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    @property
    def messages(self) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["type"] == "message"]


class Harness:
    def __init__(
        self,
        engine: Engine,
        store: SQLiteStore,
        clock: VirtualClock,
        outbox: RecordingTransport,
    ) -> None:
        self.engine = engine
        self.store = store
        self.clock = clock
        self.outbox = outbox

    async def open(
        self, user: str = "u1", session: str | None = "s1", app: str = "default"
    ) -> Peer:
        peer = Peer()
        device = Device(app=app, user=user, device_id=f"{user}:web", platform="web")
        await self.engine.open(peer, device, session)
        return peer

    async def event(self, peer: Peer, name: str, **props: Any) -> None:
        await self.engine.event(peer, name, props)

    async def at(self, seconds: float) -> None:
        """Move the clock to T0 + seconds, firing what falls due."""
        await self.engine.advance(T0 + seconds)

    async def decisions(self, rule: str | None = None) -> list[Decision]:
        found = await self.store.decisions()
        return [d for d in found if rule is None or d.rule == rule]

    async def outcomes(self, rule: str | None = None) -> list[str]:
        return [d.decision for d in await self.decisions(rule)]


MakeHarness = Callable[[str], "Any"]


@pytest.fixture
async def harness() -> AsyncIterator[Callable[..., Any]]:
    stores: list[SQLiteStore] = []

    async def make(
        text: str,
        *,
        path: str = ":memory:",
        grace: float = 30.0,
        idle: float = 1800.0,
    ) -> Harness:
        rules: RuleSet = ruleset_from_text(text)
        store = SQLiteStore(path)
        await store.open()
        stores.append(store)
        clock = VirtualClock(T0)
        outbox = RecordingTransport()
        engine = Engine(rules, store, clock, fallback=outbox, grace=grace, idle=idle)
        await engine.start()
        return Harness(engine, store, clock, outbox)

    yield make
    for store in stores:
        await store.close()
