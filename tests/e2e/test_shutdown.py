"""SIGTERM: clients are told to reconnect (1012), the process exits cleanly,
and a pending timer survives the restart and fires."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import msgspec
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.e2e.servers import free_port

RULES = """
rule later {
    when cart
    wait 3s
    push { title "Your cart misses you" }
}
"""


def start(tmp_path: Path, port: int) -> subprocess.Popen[bytes]:
    args = ["--rules", "r.rules", "--store", "state.db", "--outbox", "outbox.jsonl"]
    with (tmp_path / "serve.log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "sessionpush", "serve", "--port", str(port), *args],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return process
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise
            time.sleep(0.1)


async def cart_then_wait_for_close(port: int, process: subprocess.Popen[bytes]) -> int:
    async with connect(f"ws://127.0.0.1:{port}/v1/session") as ws:
        await ws.send('{"type":"hello","user":"erin"}')
        await ws.recv()
        await ws.send('{"type":"event","name":"cart","seq":1}')
        assert msgspec.json.decode(await ws.recv()) == {"type": "ack", "seq": 1}
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
        assert ws.close_code is not None
        return ws.close_code


def test_sigterm_closes_with_1012_and_a_restart_fires_the_pending_push(
    tmp_path: Path,
) -> None:
    (tmp_path / "r.rules").write_text(RULES)
    port = free_port()
    process = start(tmp_path, port)
    try:
        code = asyncio.run(cart_then_wait_for_close(port, process))
        # uvicorn raises the signal again once it has shut down gracefully,
        # so that the exit status says SIGTERM, as a process manager expects.
        assert process.wait(15) in (0, -signal.SIGTERM)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert code == 1012
    assert not (tmp_path / "outbox.jsonl").exists()
    log = (tmp_path / "serve.log").read_text()
    assert "pending timers stay in the store" in log

    process = start(tmp_path, free_port())
    try:
        deadline = time.monotonic() + 15
        outbox = tmp_path / "outbox.jsonl"
        while not outbox.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        process.terminate()
        process.wait(15)
    [push] = [msgspec.json.decode(line) for line in outbox.read_bytes().splitlines()]
    assert push["user"] == "erin"
    assert push["rule"] == "later"
