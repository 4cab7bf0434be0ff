"""``sessionpush serve`` as a newcomer runs it: a real process, a real
websocket, a push in the outbox after the wait."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from pathlib import Path

import msgspec
from websockets.asyncio.client import connect

from tests.e2e.servers import serve

RULES = """
rule cart_recovery "Recover abandoned carts" {
    when session ends where session has cart and not session has purchase
    wait 1s
    unless purchase
    limit 1 per user per 24h
    push { title "Still thinking about {last(cart).brand | default: 'your cart'}?"
           link "shop://cart" }
}
"""


async def _stream_session(port: int) -> str:
    async with connect(f"ws://127.0.0.1:{port}/v1/session") as ws:
        hello = {"type": "hello", "user": "alice", "device": {"platform": "web"}}
        await ws.send(msgspec.json.encode(hello).decode())
        welcome = msgspec.json.decode(await ws.recv())
        for seq, (name, props) in enumerate(
            [("view", {"product_id": "p1"}), ("cart", {"brand": "acme"})]
        ):
            frame = {"type": "event", "name": name, "props": props, "seq": seq}
            await ws.send(msgspec.json.encode(frame).decode())
            assert msgspec.json.decode(await ws.recv()) == {"type": "ack", "seq": seq}
    session: str = welcome["session"]
    return session


def test_a_closed_session_with_a_cart_gets_its_push_in_the_outbox(
    tmp_path: Path,
) -> None:
    (tmp_path / "shop.rules").write_text(RULES)
    outbox = tmp_path / "outbox.jsonl"
    args = ["--rules", "shop.rules", "--store", "state.db", "--outbox", str(outbox)]
    with serve(*args, "--grace", "0.5", cwd=tmp_path) as port:
        session = asyncio.run(_stream_session(port))
        deadline = time.monotonic() + 20
        while not outbox.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
    [push] = [msgspec.json.decode(line) for line in outbox.read_bytes().splitlines()]
    assert push["rule"] == "cart_recovery"
    assert push["user"] == "alice"
    assert push["session"] == session
    assert push["title"] == "Still thinking about acme?"
    assert push["link"] == "shop://cart"
    assert push["channel"] == "push"


def test_apps_with_their_own_rules_need_no_shared_rules_directory(
    tmp_path: Path,
) -> None:
    # Started where there is no examples/rules: every app names its rules.
    (tmp_path / "shop.rules").write_text(RULES)
    config = tmp_path / "sessionpush.toml"
    config.write_text(
        '[apps.shop]\nsigning_secret = "shop-secret-0123456789abcdef0123"\n'
        'rules = ["shop.rules"]\n[apps.shop.policy]\nlink_schemes = ["shop"]\n'
    )
    config.chmod(0o600)
    args = ["--config", str(config), "--store", "state.db"]
    with serve(*args, cwd=tmp_path) as port:
        answer = urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz")
        health = msgspec.json.decode(answer.read())
    # No shared rules were loaded; the app's own rule set is served.
    assert health["status"] == "ok"
    assert health["rules"] == 0
