"""Stream one shopping session to a local gateway, as an SDK would.

Run with ``python examples/tour/stream_session.py [ws://127.0.0.1:8000]``.
"""

from __future__ import annotations

import asyncio
import json
import sys

from websockets.asyncio.client import connect


async def main(base: str) -> None:
    async with connect(f"{base}/v1/session") as ws:
        hello = {"type": "hello", "user": "alice", "device": {"platform": "web"}}
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
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:8000"))
