"""The web SDK in headless Chromium against a real gateway: order, resume
across a cut connection, in-app messages shown on the page."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import BrowserContext, Page

from tests.browser.conftest import Site, eventually
from tests.proxy import Proxy

ECHO = """
rule echo {
    when view
    push { title "{n}" }
}
rule checkout {
    when screen where name == "checkout"
    push { title "screen {name}" }
}
rule pricey {
    when view where n == 3
    inapp { title "Need help with item {n}?" body "We answer in minutes." link "/help" }
}
"""


@pytest.fixture
async def page(browser: BrowserContext) -> AsyncIterator[Page]:
    page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    assert errors == []


async def open_page(page: Page, site: Site, query: str = "", **options: Any) -> None:
    await page.goto(site.page + query)
    await page.wait_for_function("() => typeof window.start === 'function'")
    await page.evaluate("options => window.start(options)", options)


async def settled(page: Page) -> dict[str, Any]:
    """The SDK's state once it is welcomed and every frame is answered."""

    async def check() -> dict[str, Any] | None:
        state: dict[str, Any] = await page.evaluate("window.sp.state()")
        done = state["connected"] and not state["unsent"] and not state["inflight"]
        return state if done else None

    result: dict[str, Any] = await eventually(check)
    return result


async def views(page: Page, first: int, last: int) -> None:
    await page.evaluate(
        "([a, b]) => { for (let n = a; n <= b; n++) window.sp.track('view', {n}) }",
        [first, last],
    )


def titles(site: Site) -> list[str]:
    return [push["title"] for push in site.pushes()]


async def test_events_tracked_on_a_page_reach_the_gateway_in_order(
    site: Any, page: Page
) -> None:
    gw = await site(ECHO)
    await open_page(page, gw, user="alice")
    seqs = await page.evaluate(
        "() => { const s = [];"
        " for (let n = 1; n <= 45; n++) s.push(window.sp.track('view', {n}));"
        " s.push(window.sp.screen('checkout')); return s; }"
    )
    await settled(page)
    assert seqs == list(range(1, 47))
    assert titles(gw) == [str(n) for n in range(1, 46)] + ["screen checkout"]
    assert {push["user"] for push in gw.pushes()} == {"alice"}


async def test_a_cut_connection_resumes_the_session_with_nothing_lost_or_doubled(
    site: Any, page: Page
) -> None:
    gw = await site(ECHO)
    proxy = await Proxy(gw.port).start()
    try:
        await open_page(page, gw, url=f"http://127.0.0.1:{proxy.port}", user="bob")
        await views(page, 1, 10)
        before = await settled(page)
        # 20 go out at once (a full batch); the socket dies under them.
        await views(page, 11, 30)
        proxy.cut()
        await eventually(lambda: page.evaluate("!window.sp.state().connected"))
        await views(page, 31, 40)
        await asyncio.sleep(0.3)
        proxy.restore()
        after = await settled(page)
    finally:
        await proxy.close()
    assert (after["session"], after["resumed"]) == (before["session"], True)
    assert titles(gw) == [str(n) for n in range(1, 41)]
    assert proxy.accepted >= 2


async def test_an_inapp_message_is_shown_on_the_page_by_the_minified_sdk(
    site: Any, page: Page
) -> None:
    gw = await site(ECHO)
    await open_page(page, gw, "?min=1", user="carol")
    await page.evaluate("window.sp.track('view', {n: 3})")
    shown = page.locator(".sessionpush-message")
    await shown.wait_for(timeout=10_000)
    assert await shown.get_attribute("role") == "status"
    assert await shown.locator("strong").text_content() == "Need help with item 3?"
    assert await shown.locator("p").text_content() == "We answer in minutes."
    assert await shown.locator("a").get_attribute("href") == f"{gw.origin}/help"


async def test_pagehide_ends_the_session(site: Any, page: Page) -> None:
    gw = await site(
        """
rule bye_now {
    when session ends
    push { title "ended after {session.events} events" }
}
"""
    )
    await open_page(page, gw, user="dave")
    await page.evaluate("window.sp.track('view', {n: 1})")
    await settled(page)
    await page.goto("about:blank")
    await eventually(lambda: titles(gw))
    assert titles(gw) == ["ended after 1 events"]
