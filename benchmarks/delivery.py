"""Web Push messages per second per core, and APNs requests per second.

Web Push: measures, in one process (one core), what the Web Push transport
spends on each message before the network: the RFC 8291 encryption of a
typical payload through pywebpush, and the VAPID ``Authorization`` header,
with the per-origin cache (the default) against a baseline that signs a
new token for every message. The two are interleaved and the median of
``--repeat`` runs is printed.

APNs: the APNs transport sends ``--apns-requests`` notifications to the
local HTTP/2 server of the tests (TLS, self-signed certificate, in a child
process on 127.0.0.1, stopped at the end), with ``--apns-concurrency``
requests multiplexed on one connection against a baseline of one request
at a time.

Run: ``python -m benchmarks.delivery [--messages N] [--repeat N]
[--apns-requests N] [--apns-concurrency N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import multiprocessing.synchronize
import ssl
import statistics
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec
from pywebpush import WebPusher

from sessionpush.store.base import Subscription
from sessionpush.transports.apns import ApnsTransport
from sessionpush.transports.apns_token import ProviderToken
from sessionpush.transports.vapid import VapidSigner, public_key_b64
from sessionpush.transports.webpush import WebPushTransport
from tests.transports.apns_server import ApnsServer, self_signed
from tests.transports.conftest import Browser, b64, message

ENDPOINTS = [f"https://push{i}.example/send/abc" for i in range(4)]


def run(messages: int, cached: bool) -> float:
    """Messages per second, encrypting and authorizing each one."""
    key = ec.generate_private_key(ec.SECP256R1())
    signer = VapidSigner(key, "mailto:ops@shop.example")
    transport = WebPushTransport({"default": signer})
    browser = Browser()
    info = {
        "endpoint": ENDPOINTS[0],
        "keys": {"p256dh": browser.p256dh, "auth": b64(browser.auth)},
    }
    outbound = message()
    start = time.perf_counter()
    for i in range(messages):
        endpoint = ENDPOINTS[i % len(ENDPOINTS)]
        if not cached:
            signer = VapidSigner(key, "mailto:ops@shop.example")
            transport.signers["default"] = signer
        transport.headers(outbound, endpoint)
        WebPusher(info).encode(transport.plaintext(outbound), "aes128gcm")
    return messages / (time.perf_counter() - start)


#: The child process serves at most this long, whatever happens.
SERVER_LIMIT = 300.0


def _serve_apns(
    cert: Path,
    key: Path,
    ports: multiprocessing.Queue[int],
    stop: multiprocessing.synchronize.Event,
) -> None:
    async def serve() -> None:
        server = ApnsServer()
        await server.start(cert, key)
        ports.put(server.port)
        deadline = time.monotonic() + SERVER_LIMIT
        while not stop.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await server.stop()

    asyncio.run(serve())


async def apns_run(
    url: str, verify: ssl.SSLContext, requests: int, width: int
) -> float:
    """Notifications per second, ``width`` in flight at once."""
    token = ProviderToken(ec.generate_private_key(ec.SECP256R1()), "KEY1", "TEAM1")
    transport = ApnsTransport(
        token, {"default": "com.shop.app"}, hosts={"production": url}, verify=verify
    )
    device = Subscription(
        app="default",
        user="alice",
        device_id="iphone",
        channel="apns",
        data={"token": "a1" * 32, "environment": "production"},
    )
    outbound = message()
    await transport.send(outbound, device)  # connect and handshake first
    slots = asyncio.Semaphore(width)

    async def one() -> None:
        async with slots:
            result = await transport.send(outbound, device)
            assert result.ok, result.detail

    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(requests)))
    elapsed = time.perf_counter() - start
    await transport.close()
    return requests / elapsed


def apns_bench(requests: int, width: int, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        cert, key, pem = self_signed(Path(directory))
        verify = ssl.create_default_context(cadata=pem)
        ports: multiprocessing.Queue[int] = multiprocessing.Queue()
        stop = multiprocessing.Event()
        child = multiprocessing.Process(
            target=_serve_apns, args=(cert, key, ports, stop), daemon=True
        )
        child.start()
        try:
            url = f"https://127.0.0.1:{ports.get(timeout=30)}"
            wide, narrow = [], []
            for _ in range(repeat):
                wide.append(asyncio.run(apns_run(url, verify, requests, width)))
                narrow.append(asyncio.run(apns_run(url, verify, requests // 4, 1)))
        finally:
            stop.set()
            child.join(10)
            if child.is_alive():
                child.terminate()
    print()
    print(f"APNs, local HTTP/2 server over TLS, {requests} requests x {repeat} runs")
    print(f"{'in flight':<28} {'req/s':>10}")
    print(f"{f'{width} on one connection':<28} {statistics.median(wide):>10,.0f}")
    print(f"{'1 at a time':<28} {statistics.median(narrow):>10,.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--apns-requests", type=int, default=2000)
    parser.add_argument("--apns-concurrency", type=int, default=64)
    args = parser.parse_args()
    cached, uncached = [], []
    for _ in range(args.repeat):
        cached.append(run(args.messages, cached=True))
        uncached.append(run(args.messages, cached=False))
    key = public_key_b64(ec.generate_private_key(ec.SECP256R1()))
    print(f"Web Push, one core, {args.messages} messages x {args.repeat} runs")
    print(
        f"(payload {len(WebPushTransport({}).plaintext(message()))} bytes, VAPID "
        f"key {key[:8]}...)"
    )
    print(f"{'VAPID':<28} {'msgs/s':>10}")
    print(f"{'cached per origin (ours)':<28} {statistics.median(cached):>10,.0f}")
    print(f"{'signed every message':<28} {statistics.median(uncached):>10,.0f}")
    ratio = statistics.median(cached) / statistics.median(uncached)
    print(f"ratio {ratio:.2f}x")
    apns_bench(args.apns_requests, args.apns_concurrency, args.repeat)


if __name__ == "__main__":
    main()
