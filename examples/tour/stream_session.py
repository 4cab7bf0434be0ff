"""Stream one shopping session to a local gateway, as an SDK would.

Run with ``python examples/tour/stream_session.py [ws://127.0.0.1:8000] [USER]``.
Each run is a new visitor unless USER is given: the tour's rule reminds a
user at most once a day, so a second run as the same user is capped.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sys

from websockets.asyncio.client import connect


async def main(base: str, user: str) -> None:
    async with connect(f"{base}/v1/session") as ws:
        hello = {"type": "hello", "user": user, "device": {"platform": "web"}}
        await ws.send(json.dumps(hello))
        print("<", await ws.recv())
        events = [
            ("view", {"product_id": "p-1", "brand": "acme", "price": 49.9}),
            ("cart", {"product_id": "p-1", "brand": "acme", "price": 49.9}),
        ]
        for seq, (name, props) in enumerate(events, start=1):
            frame = {"type": "event", "name": name, "props": props, "seq": seq}
            await ws.send(json.dumps(frame))
            print(">", frame)
            print("<", await ws.recv())
    print("socket closed: the session ends when the grace period runs out")


if __name__ == "__main__":
    base = sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:8000"
    user = sys.argv[2] if len(sys.argv) > 2 else f"visitor-{secrets.token_hex(2)}"
    print(f"streaming a session of {user}")
    asyncio.run(main(base, user))
