"""Web Push messages per second per core: encryption plus VAPID.

Measures, in one process (one core), what the Web Push transport spends on
each message before the network: the RFC 8291 encryption of a typical
payload through pywebpush, and the VAPID ``Authorization`` header, with the
per-origin cache (the default) against a baseline that signs a new token
for every message. The two are interleaved and the median of ``--repeat``
runs is printed.

Run: ``python -m benchmarks.delivery [--messages N] [--repeat N]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

from cryptography.hazmat.primitives.asymmetric import ec
from pywebpush import WebPusher

from sessionpush.transports.vapid import VapidSigner, public_key_b64
from sessionpush.transports.webpush import WebPushTransport
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=3)
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


if __name__ == "__main__":
    main()
