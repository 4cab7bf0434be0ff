"""Random frames against a live gateway: it stays up, and every answer is a
well-formed server frame."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from sessionpush.gateway.app import Settings, create_app
from sessionpush.gateway.apps import load_gateway_config
from sessionpush.gateway.shutdown import server_config
from tests.gateway.secured import NEWS_RULES, SHOP_RULES, config_text, hello

#: Wall-clock bound of the whole run, on top of the example count.
BUDGET_SECONDS = 20.0
SERVER_TYPES = {"ack", "error", "message", "welcome"}

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=30,
)
field_names = st.sampled_from(
    [
        "name",
        "props",
        "seq",
        "ts",
        "user",
        "app",
        "token",
        "key",
        "granted",
        "channel",
        "subscription",
        "session",
        "device",
        "extra",
    ]
)
frames = (
    st.builds(
        lambda kind, fields: {"type": kind, **fields},
        st.sampled_from(["event", "hello", "consent", "subscribe", "refresh", "nope"]),
        st.dictionaries(field_names, values, max_size=5),
    ).map(lambda f: msgspec.json.encode(f).decode())
    | st.text(max_size=200)
    | st.binary(max_size=200)
    | st.sampled_from(
        ["{", "[]", "null", '{"type":"event","name":"v","props":{"a":NaN}}']
    )
)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    (tmp / "shop.rules").write_text(SHOP_RULES)
    (tmp / "news.rules").write_text(NEWS_RULES)
    path = tmp / "c.toml"
    path.write_text(config_text("frames_per_second = 100000\nframe_burst = 100000"))
    path.chmod(0o600)
    gateway = load_gateway_config(str(path))
    app = create_app(
        Settings(
            rules=(str(tmp / "news.rules"),),
            store=str(tmp / "state.db"),
            outbox=str(tmp / "outbox.jsonl"),
            gateway=gateway,
        )
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(server_config(app, gateway, "127.0.0.1", port))
    thread = threading.Thread(
        target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    yield f"ws://127.0.0.1:{port}/v1/session"
    server.should_exit = True
    thread.join(15)
    sock.close()


class Client:
    def __init__(self, url: str) -> None:
        self.url = url
        self.ws: ClientConnection | None = None
        self.started = time.monotonic()

    def socket(self) -> ClientConnection:
        if self.ws is None:
            self.ws = connect(self.url, legacy=True)
            self.ws.send(msgspec.json.encode(hello(user="fuzz")).decode())
            assert self.answer()["type"] == "welcome"
        return self.ws

    def answer(self) -> dict[str, Any]:
        assert self.ws is not None
        frame = msgspec.json.decode(self.ws.recv(timeout=5))
        assert isinstance(frame, dict)
        assert frame["type"] in SERVER_TYPES
        if frame["type"] == "error":
            assert isinstance(frame["code"], str)
            assert isinstance(frame["message"], str)
            # "internal" means our bug: a random frame must never cause one.
            assert frame["code"] != "internal", frame
        return frame


def test_random_frames_get_well_formed_answers_and_the_gateway_stays_up(
    live: str,
) -> None:
    client = Client(live)

    @settings(
        max_examples=400,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
        database=None,
    )
    @given(frames)
    def one(frame: str | bytes) -> None:
        if time.monotonic() - client.started > BUDGET_SECONDS:
            return
        ws = client.socket()
        try:
            ws.send(frame)
            while client.answer()["type"] not in ("ack", "error"):
                pass
        except ConnectionClosed:
            # Only a documented close may end the connection (1009 or 4003:
            # a refused refresh or hello never closes, but a too-big frame does).
            assert ws.close_code in (1000, 1009, 4003), ws.close_code
            client.ws = None

    try:
        one()
        # Still up, still answering.
        ws = client.socket()
        ws.send('{"type":"event","name":"view","seq":1}')
        answers = [client.answer(), client.answer()]
        assert {"type": "ack", "seq": 1} in answers
    finally:
        if client.ws is not None:
            with contextlib.suppress(Exception):
                client.ws.close()
