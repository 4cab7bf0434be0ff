"""The gateway serves the web SDK and its service worker as committed, and
takes the worker's open reports."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from sessionpush.store.base import SentMessage
from sessionpush.store.sqlite import SQLiteStore

SDK = Path(__file__).resolve().parents[2] / "sdk" / "web"


async def test_the_sdk_and_worker_are_served_as_javascript(gateway: Any) -> None:
    gw = await gateway("")
    async with httpx.AsyncClient(base_url=gw.http) as http:
        for name in ("sessionpush.js", "sessionpush.min.js", "sw.js"):
            answer = await http.get(f"/sdk/{name}")
            assert answer.status_code == 200
            assert answer.headers["content-type"] == "text/javascript; charset=utf-8"
            assert answer.headers["access-control-allow-origin"] == "*"
            assert answer.content == (SDK / name).read_bytes()
        worker = await http.get("/sdk/sw.js")
        assert worker.headers["service-worker-allowed"] == "/"


async def test_an_open_report_counts_an_open_and_a_button_a_click_too(
    gateway: Any, tmp_path: Path
) -> None:
    gw = await gateway("")
    store = SQLiteStore(str(tmp_path / "state.db"))
    await store.open()
    try:
        await store.record_message(
            SentMessage(
                id="3f1c2b7e9a",
                app="default",
                user="alice",
                rule="cart_recovery",
                channel="push",
                at=1.0,
                link="/cart",
            )
        )
        async with httpx.AsyncClient(base_url=gw.http) as http:
            opened = await http.post("/v1/messages/3f1c2b7e9a/opened", content=b"{}")
            clicked = await http.post(
                "/v1/messages/3f1c2b7e9a/opened",
                content=b'{"action": "buy"}',
                headers={"content-type": "text/plain"},
            )
            unknown = await http.post("/v1/messages/nope/opened", content=b"")
        assert (opened.status_code, clicked.status_code) == (204, 204)
        assert unknown.status_code == 404
        await asyncio.sleep(0)
        outcomes = [o.outcome for o in await store.outcomes("3f1c2b7e9a")]
        assert outcomes == ["opened", "opened", "clicked"]
    finally:
        await store.close()
