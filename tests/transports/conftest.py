"""Local protocol servers and the pieces every transport test needs.

Every server listens on 127.0.0.1 on a port the OS picks, answers from a
script the test writes, and records what it received; nothing here can
reach a real provider.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import http_ece
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sessionpush.engine.clock import VirtualClock
from sessionpush.store.base import Subscription
from sessionpush.store.sqlite import SQLiteStore
from sessionpush.transports.base import OutboundMessage
from sessionpush.transports.retry import Backoff

T0 = 1_800_000_000.0


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass
class Browser:
    """A user agent's side of Web Push: its key pair and auth secret."""

    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    auth: bytes = b"\x01" * 16

    @property
    def p256dh(self) -> str:
        raw = self.key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return b64(raw)

    def decrypt(self, body: bytes) -> bytes:
        plain: bytes = http_ece.decrypt(
            body, private_key=self.key, auth_secret=self.auth, version="aes128gcm"
        )
        return plain

    def subscription(
        self, endpoint: str, *, user: str = "alice", device: str = "d1", at: float = T0
    ) -> Subscription:
        return Subscription(
            app="default",
            user=user,
            device_id=device,
            channel="webpush",
            data={
                "endpoint": endpoint,
                "keys": {"p256dh": self.p256dh, "auth": b64(self.auth)},
            },
            created_at=at,
        )


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class PushService:
    """An RFC 8030 push service: answers each POST from ``script`` in turn
    (the last answer repeats) and records the request."""

    def __init__(self) -> None:
        self.script: list[tuple[int, dict[str, str]]] = [(201, {})]
        self.received: list[Received] = []
        self.port = 0

    def url(self, path: str = "/push/abc") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append(
            Received(
                request.path,
                {k.lower(): v for k, v in request.headers.items()},
                await request.read(),
            )
        )
        index = min(len(self.received), len(self.script)) - 1
        status, headers = self.script[index]
        if 300 <= status < 400:
            return web.Response(status=status, headers=headers)
        return web.Response(status=status, headers=headers, text="")


@pytest.fixture
async def push_service() -> AsyncIterator[PushService]:
    service = PushService()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", service.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server: Any = site._server
    service.port = server.sockets[0].getsockname()[1]
    yield service
    await runner.cleanup()


@pytest.fixture
def browser() -> Browser:
    return Browser()


@pytest.fixture
async def store() -> AsyncIterator[SQLiteStore]:
    opened = SQLiteStore(":memory:")
    await opened.open()
    yield opened
    await opened.close()


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(T0)


class Sleeps:
    """Stands in for asyncio.sleep: records each delay and moves the clock."""

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.clock.advance(seconds)


@pytest.fixture
def sleeps(clock: VirtualClock) -> Sleeps:
    return Sleeps(clock)


def no_jitter() -> Backoff:
    """Backoff whose random part is always its maximum: delays are exact."""
    return Backoff(base=1.0, cap=300.0, random=lambda: 1.0)


def message(**fields: Any) -> OutboundMessage:
    values: dict[str, Any] = {
        "id": "m1",
        "app": "default",
        "user": "alice",
        "session": "s1",
        "rule": "cart_recovery",
        "channel": "push",
        "at": T0,
        "title": "Still thinking about it?",
        "body": "Your cart is saved.",
        "link": "https://shop.example/cart",
        "ttl": 3600.0,
    }
    values.update(fields)
    return OutboundMessage(**values)
