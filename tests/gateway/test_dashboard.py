"""The dashboard in headless Chromium (Debian's package, driven by
Playwright): it asks for the admin key, then its live numbers and funnel
follow a client that streams events, and "explain" answers for a user.

The screenshot it takes is the one in the README (docs/dashboard.png).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, async_playwright

from tests.gateway.conftest import receive, send

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "docs" / "dashboard.png"
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
KEY = "dashboard-test-key"
RULES = """\
rule cart_nudge "Nudge a cart" {
    when cart
    holdout 30%
    goal purchase within 1h
    push { title "Your cart" }
}
rule big_order_thanks "Thank big orders" {
    when purchase where price >= 300
    push { title "Thank you" }
}
"""


async def shop(gw: Any, user: str, buys: bool) -> None:
    ws = await gw.connect()
    await send(ws, {"type": "hello", "user": user, "device": {"platform": "web"}})
    await receive(ws)
    names = ["view", "cart", *(["purchase"] if buys else [])]
    for seq, name in enumerate(names, start=1):
        props = {"price": 420} if name == "purchase" else {}
        await send(ws, {"type": "event", "name": name, "props": props, "seq": seq})
        assert (await receive(ws))["type"] == "ack"
    await ws.close()


async def number(page: Page, selector: str) -> float:
    return float(await page.text_content(selector) or "nan")


async def test_the_dashboard_follows_live_events_and_explains_a_user(
    gateway: Any,
) -> None:
    if shutil.which(CHROMIUM) is None:
        pytest.fail("Debian's chromium is missing: apt-get install chromium")
    gw = await gateway(
        RULES, admin_key=KEY, dashboard_interval=0.2, dashboard_report_every=1
    )
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        # The page's policy forbids eval, which is how wait_for_function
        # runs its predicates; the page's own script is unaffected.
        page = await browser.new_page(
            viewport={"width": 1200, "height": 820}, bypass_csp=True
        )
        await page.goto(gw.http + "/")
        await page.fill("#key", "wrong")
        await page.click("#login-form button")
        await page.wait_for_selector("#login-error:has-text('admin key')")

        await page.fill("#key", KEY)
        await page.click("#login-form button")
        await page.wait_for_selector("#status:has-text('live')")
        assert await number(page, "#events") == 0
        assert len(await page.text_content("#rules-version") or "") == 12

        # Forty shoppers, every other one buys: the events counter, the
        # funnel and the lift follow while they stream.
        for n in range(40):
            await shop(gw, f"shopper{n}", buys=n % 2 == 0)
            if n == 3:
                await page.wait_for_function(
                    "Number(document.getElementById('events').textContent) >= 8"
                )
                mid = await number(page, "#events")
        await page.wait_for_function(
            "Number(document.getElementById('events').textContent) === 100"
        )
        assert mid < 100
        row = page.locator("tr[data-rule='cart_nudge']")
        await page.wait_for_function(
            "document.querySelector(\"tr[data-rule='cart_nudge'] .triggered\")"
            ".textContent.trim() === '40'"
        )
        sent = int(await row.locator(".sent").text_content() or "0")
        assert 0 < sent < 40
        assert await page.locator("#lift rect.ci").count() == 1

        await page.fill("#explain-user", "shopper0")
        await page.click("#explain-form button")
        await page.wait_for_selector("#explain-list li")
        trail = await page.text_content("#explain-list") or ""
        assert "cart_nudge" in trail and "big_order_thanks" in trail

        await page.screenshot(path=str(SCREENSHOT), full_page=True)
        await browser.close()
