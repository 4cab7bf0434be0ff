"""A gateway with an app config (two apps, secrets, origins, limits), served
by uvicorn on a loopback port with the settings ``serve`` would use."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from websockets.asyncio.client import ClientConnection, connect

from sessionpush.gateway.app import Settings, create_app
from sessionpush.gateway.apps import load_gateway_config
from sessionpush.gateway.auth import sign_token
from tests.in_loop import served_in_loop

SHOP_SECRET = "shop-signing-secret-0123456789abcdef"
NEWS_SECRET = "news-signing-secret-0123456789abcdef"
SHOP_ADMIN = "shop-admin-key-0123456789abcdef"
NEWS_ADMIN = "news-admin-key-0123456789abcdef"
OPERATOR = "operator-key-0123456789abcdef"
SHOP_ORIGIN = "https://shop.example"
SHOP_PUBLIC = "pk_shop_public_key"

SHOP_RULES = """
rule shop_hello {
    when view
    limit 1 per session
    inapp { title "shop says hi" }
}
rule shop_soon {
    when search
    wait 1s
    push { title "shop, soon" }
}
rule shop_later {
    when cart
    wait 1h
    push { title "shop, later" }
}
"""
NEWS_RULES = """
rule news_hello {
    when view
    limit 1 per session
    inapp { title "news says hi" }
}
"""


def config_text(limits: str = "") -> str:
    return f"""
[limits]
{limits}

[apps.shop]
signing_secret = "{SHOP_SECRET}"
admin_keys = ["{SHOP_ADMIN}"]
allowed_origins = ["{SHOP_ORIGIN}"]
public_key = "{SHOP_PUBLIC}"
rules = ["shop.rules"]

[apps.news]
signing_secret = "{NEWS_SECRET}"
admin_keys = ["{NEWS_ADMIN}"]
allowed_origins = ["https://news.example"]
rules = ["news.rules"]
"""


def token(app: str = "shop", user: str = "alice", expires_in: float = 600) -> str:
    secret = SHOP_SECRET if app == "shop" else NEWS_SECRET
    return sign_token(secret.encode(), app, user, expires_in)


def hello(user: str = "alice", app: str = "shop", **fields: Any) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "hello", "user": user, "app": app}
    if "token" not in fields and "key" not in fields:
        fields["token"] = token(app, user)
    return {**frame, **{k: v for k, v in fields.items() if v is not None}}


class Secured:
    def __init__(self, port: int, tmp: Path) -> None:
        self.port = port
        self.tmp = tmp
        self.url = f"ws://127.0.0.1:{port}/v1/session"
        self.http = f"http://127.0.0.1:{port}"

    async def connect(self, **options: Any) -> ClientConnection:
        return await connect(self.url, **options)

    async def health(self) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=self.http) as client:
            answer: dict[str, Any] = (await client.get("/healthz")).json()
            return answer


async def send(ws: ClientConnection, frame: dict[str, Any] | str) -> None:
    await ws.send(
        frame if isinstance(frame, str) else msgspec.json.encode(frame).decode()
    )


async def receive(ws: ClientConnection, timeout: float = 5.0) -> dict[str, Any]:
    frame: dict[str, Any] = msgspec.json.decode(
        await asyncio.wait_for(ws.recv(), timeout)
    )
    return frame


async def closed_with(ws: ClientConnection, timeout: float = 5.0) -> int | None:
    """Read until the server closes; the close code it sent."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(timeout):
            async for _ in ws:
                pass
    return ws.close_code


@pytest.fixture
async def secured(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    async with contextlib.AsyncExitStack() as servers:

        async def start(limits: str = "", **options: Any) -> Secured:
            (tmp_path / "shop.rules").write_text(SHOP_RULES)
            (tmp_path / "news.rules").write_text(NEWS_RULES)
            path = tmp_path / "sessionpush.toml"
            path.write_text(config_text(limits))
            path.chmod(0o600)
            gateway = load_gateway_config(str(path))
            (tmp_path / "default.rules").write_text(NEWS_RULES)
            settings = Settings(
                rules=(str(tmp_path / "default.rules"),),
                store=str(tmp_path / "state.db"),
                outbox=str(tmp_path / "outbox.jsonl"),
                gateway=gateway,
                admin_key=OPERATOR,
                **options,
            )
            app = create_app(settings)
            port = await servers.enter_async_context(served_in_loop(app, gateway))
            return Secured(port, tmp_path)

        yield start
