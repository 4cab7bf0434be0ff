"""Soak: memory of a real gateway under steady load with connection churn.

Starts ``sessionpush serve --config`` (two apps, tokens) on a free loopback
port, then keeps ``--clients`` sockets busy: each opens, says ``hello`` with
a fresh token, sends ``--events`` events at a steady pace, closes, and
opens again, so sessions start and end all the time. Every ``--sample``
seconds it prints the server's resident memory (``/proc/PID/status``),
sessions and connections. At the end it compares the median RSS of the
last quarter of the samples with the second quarter (after warm-up).

Bounded by time (``--minutes``, at most 30) and by count (``--max-sessions``),
loopback only; the server is stopped on the way out.

Run: ``python -m benchmarks.soak [--minutes 3] [--clients 200]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import msgspec
from websockets.asyncio.client import connect

from sessionpush.gateway.auth import sign_token

RULES = """
rule soak_view {
    when view where price > 500
    limit 1 per session
    inapp { title "Need help?" }
}
rule soak_cart {
    when session ends where session has cart and not session has purchase
    wait 2s
    unless purchase
    limit 1 per user per 24h
    push { title "Still thinking about it?" }
}
"""


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def health(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
        answer: dict[str, Any] = msgspec.json.decode(r.read())
        return answer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def client(
    port: int, secret: bytes, n: int, events: int, stop: float, counter: list[int]
) -> None:
    url = f"ws://127.0.0.1:{port}/v1/session"
    round_ = 0
    while time.monotonic() < stop and counter[0] > 0:
        counter[0] -= 1
        round_ += 1
        user = f"user-{n}-{round_ % 50}"
        token = sign_token(secret, "soak", user, 300)
        hello = {"type": "hello", "app": "soak", "user": user, "token": token}
        try:
            async with connect(url) as ws:
                await ws.send(msgspec.json.encode(hello).decode())
                await ws.recv()
                for seq in range(events):
                    name = "cart" if seq == events // 2 else "view"
                    frame = {
                        "type": "event",
                        "name": name,
                        "seq": seq,
                        "props": {"price": 100 + 7 * seq},
                    }
                    await ws.send(msgspec.json.encode(frame).decode())
                    while msgspec.json.decode(await ws.recv())["type"] != "ack":
                        pass
                    await asyncio.sleep(0.05)
                await ws.send('{"type":"end"}')
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.recv(), 2)
        except OSError:
            await asyncio.sleep(0.1)


async def soak(args: argparse.Namespace) -> None:
    secret = secrets.token_urlsafe(32).encode()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        (base / "soak.rules").write_text(RULES)
        config = base / "sessionpush.toml"
        config.write_text(
            f"[limits]\nconnections_per_ip = {args.clients * 2}\n\n"
            f'[apps.soak]\nsigning_secret = "{secret.decode()}"\n'
            'rules = ["soak.rules"]\n'
        )
        config.chmod(0o600)
        port = free_port()
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sessionpush",
                "--log-level",
                "warning",
                "serve",
                "--config",
                str(config),
                "--rules",
                "soak.rules",
                "--store",
                str(base / "state.db"),
                "--outbox",
                str(base / "outbox.jsonl"),
                "--grace",
                "1",
                "--port",
                str(port),
            ],
            cwd=base,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    health(port)
                    break
                except OSError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise
                    await asyncio.sleep(0.1)
            stop = time.monotonic() + min(args.minutes, 30) * 60
            counter = [args.max_sessions]
            tasks = [
                asyncio.create_task(client(port, secret, n, args.events, stop, counter))
                for n in range(args.clients)
            ]
            samples: list[int] = []
            print(" seconds   rss KiB  sessions  connections  sessions left")
            start = time.monotonic()
            while time.monotonic() < stop and counter[0] > 0:
                await asyncio.sleep(args.sample)
                h = await asyncio.to_thread(health, port)
                samples.append(rss_kib(server.pid))
                print(
                    f"{time.monotonic() - start:8.0f}  {samples[-1]:8d}  "
                    f"{h['sessions']:8d}  {h['connections']:11d}  {counter[0]:13d}"
                )
            await asyncio.gather(*tasks)
            started = args.max_sessions - counter[0]
            q = max(1, len(samples) // 4)
            warm = statistics.median(samples[q : 2 * q] or samples)
            late = statistics.median(samples[-q:])
            print(
                f"\n{started} sessions; median RSS {warm:.0f} KiB (2nd quarter) -> "
                f"{late:.0f} KiB (last quarter): {100 * (late - warm) / warm:+.1f}%"
            )
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--sample", type=float, default=10.0)
    parser.add_argument("--max-sessions", type=int, default=200_000)
    asyncio.run(soak(parser.parse_args()))


if __name__ == "__main__":
    main()
