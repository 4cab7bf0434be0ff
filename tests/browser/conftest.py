"""Shared fixtures of the browser tests: Debian's headless Chromium driven
by Playwright, and a gateway that also serves the test's pages.

Chromium is the system's (``/usr/bin/chromium``, which ``.ci/run``
installs when it is missing), never a build a test tool downloads. Each
test gets a fresh profile, so service workers, permissions and storage
never leak from one test to the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import BrowserContext, async_playwright
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from sessionpush.gateway.app import Settings, create_app
from sessionpush.gateway.apps import dev_config
from tests.in_loop import served_in_loop

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]

# The page imports the SDK the gateway serves and waits for the test to
# call window.start(options); ?min=1 takes the minified copy instead.
PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>sessionpush test page</title></head>
<body>
<script type="module">
const min = new URLSearchParams(location.search).has("min");
const sp = await import(min ? "/sdk/sessionpush.min.js" : "/sdk/sessionpush.js");
window.sp = sp;
window.start = (options) => sp.init({ url: location.origin, ...options });
</script>
</body></html>
"""


class Site:
    """A gateway on a loopback port that also serves ``/test/page.html``."""

    def __init__(self, port: int, tmp: Path) -> None:
        self.port = port
        self.tmp = tmp
        self.origin = f"http://127.0.0.1:{port}"
        self.page = f"{self.origin}/test/page.html"
        self.outbox = tmp / "outbox.jsonl"

    def pushes(self) -> list[dict[str, Any]]:
        import msgspec

        if not self.outbox.exists():
            return []
        return [
            msgspec.json.decode(line) for line in self.outbox.read_bytes().splitlines()
        ]


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    async with contextlib.AsyncExitStack() as servers:

        async def start(rules: str, **options: Any) -> Site:
            rule_file = tmp_path / "test.rules"
            rule_file.write_text(rules)
            settings = Settings(
                rules=(str(rule_file),),
                store=str(tmp_path / "state.db"),
                outbox=str(tmp_path / "outbox.jsonl"),
                **options,
            )
            app = create_app(settings)

            async def page(request: Request) -> Response:
                return HTMLResponse(PAGE)

            app.router.routes.append(Route("/test/page.html", page))
            port = await servers.enter_async_context(served_in_loop(app, dev_config()))
            return Site(port, tmp_path)

        yield start


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[BrowserContext]:
    """A fresh headless Chromium profile; fails (never skips) without
    Debian's chromium."""
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} not found: apt-get install chromium (.ci/run does)")
    profile = tmp_path / "profile"
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
        )
        try:
            yield context
        finally:
            await context.close()


async def eventually(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"still {value!r} after {timeout} s")
        await asyncio.sleep(0.05)
