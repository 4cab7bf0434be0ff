"""The web SDK's push path in headless Chromium: requestPush registers the
worker and the subscription, a rule's push reaches a local push service,
and the DevTools protocol hands its payload to the worker
(``ServiceWorker.deliverPushMessage``), which shows it and reports the open."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from playwright.async_api import BrowserContext, Page

from sessionpush.store.sqlite import SQLiteStore
from sessionpush.transports.vapid import generate_key_file, public_key_b64
from tests.browser.conftest import eventually
from tests.browser.test_web_sdk import open_page, settled
from tests.transports.conftest import Browser, PushService, b64, push_service

__all__ = ["push_service"]  # the fixture, imported for these tests

CART = """
rule cart_push {
    when cart
    push {
        title "Still thinking about it?"
        body "Checkout takes one tap."
        link "/cart"
    }
}
"""

# Read inside the worker, a second after the push: evaluating in the worker
# or the page while the push event ran lost the notification in about one
# run in three (Chromium 156); waiting first never did in twenty runs.
NOTIFICATIONS = """async () => {
  return (await self.registration.getNotifications()).map((n) => ({
    title: n.title, body: n.body, tag: n.tag, data: n.data, icon: n.icon,
    image: n.image, actions: n.actions.map((a) => a.action),
  }));
}"""


@pytest.fixture
def delivery_config(tmp_path: Path) -> tuple[str, str]:
    key = generate_key_file(tmp_path / "keys" / "default.pem")
    config = tmp_path / "delivery.toml"
    config.write_text(
        """
[delivery]
timeout = 5
max_attempts = 2
allow_loopback_endpoints = true

[webpush]
subject = "mailto:ops@shop.example"
keys_dir = "keys"
"""
    )
    return str(config), public_key_b64(key)


def fake_subscribe(endpoint: str, device: Browser) -> str:
    """Chromium's own push service is out of reach here: the page's
    PushManager answers with the keys of a device the test can decrypt for,
    and records the options it was called with."""
    subscription = {
        "endpoint": endpoint,
        "expirationTime": None,
        "keys": {"p256dh": device.p256dh, "auth": b64(device.auth)},
    }
    return f"""
PushManager.prototype.getSubscription = async () => null;
PushManager.prototype.subscribe = async function (options) {{
  window.subscribedWith = Array.from(new Uint8Array(options.applicationServerKey));
  return {{ toJSON: () => ({json.dumps(subscription)}) }};
}};
"""


async def registration_id(browser: BrowserContext, page: Page, scope: str) -> str:
    """The DevTools id of the worker registration at ``scope``, once its
    worker is activated and not starting or stopping: enabling the
    ServiceWorker domain restarts the worker under DevTools, and a push
    delivered during that restart was lost in about one run in three."""
    cdp = await browser.new_cdp_session(page)
    found: dict[str, str] = {}
    steady: set[str] = set()

    def registrations(params: dict[str, Any]) -> None:
        for registration in params["registrations"]:
            if registration["scopeURL"] == scope and not registration["isDeleted"]:
                found["id"] = registration["registrationId"]

    def versions(params: dict[str, Any]) -> None:
        for version in params["versions"]:
            settled = version["status"] == "activated" and version["runningStatus"] in (
                "running",
                "stopped",
            )
            (steady.add if settled else steady.discard)(version["registrationId"])

    cdp.on("ServiceWorker.workerRegistrationUpdated", registrations)
    cdp.on("ServiceWorker.workerVersionUpdated", versions)
    await cdp.send("ServiceWorker.enable")
    await eventually(lambda: found.get("id") in steady)
    page.cdp = cdp  # type: ignore[attr-defined]
    return found["id"]


async def push(
    page: Page, worker: Any, deliver: dict[str, Any], payload: dict[str, Any]
) -> dict[str, Any]:
    """Deliver a push through DevTools; the notification it showed."""
    await page.cdp.send(  # type: ignore[attr-defined]
        "ServiceWorker.deliverPushMessage", {**deliver, "data": json.dumps(payload)}
    )
    await asyncio.sleep(1.0)  # see NOTIFICATIONS

    async def shown() -> dict[str, Any] | None:
        found = await worker.evaluate(NOTIFICATIONS)
        return found[0] if found and found[0]["tag"] == payload["id"] else None

    result: dict[str, Any] = await eventually(shown)
    return result


async def test_a_push_is_shown_by_the_worker_and_its_open_reported(
    site: Any,
    browser: BrowserContext,
    delivery_config: tuple[str, str],
    push_service: PushService,
    tmp_path: Path,
) -> None:
    gw = await site(CART, delivery_config=delivery_config[0])
    await browser.grant_permissions(["notifications"], origin=gw.origin)
    device = Browser()
    page = await browser.new_page()
    await page.add_init_script(fake_subscribe(push_service.url(), device))
    await open_page(page, gw, user="erin", serviceWorker="/sdk/sw.js")

    assert await page.evaluate("window.sp.requestPush().then((s) => !!s)") is True
    vapid = base64.urlsafe_b64decode(delivery_config[1] + "==")
    assert bytes(await page.evaluate("window.subscribedWith")) == vapid
    await page.evaluate("window.sp.track('cart', {price: 150})")
    await settled(page)
    (request,) = await eventually(lambda: push_service.received)
    payload = msgspec.json.decode(device.decrypt(request.body))
    assert payload["title"] == "Still thinking about it?"

    cdp_id = await registration_id(browser, page, f"{gw.origin}/sdk/")
    (worker,) = browser.service_workers
    deliver = {"origin": gw.origin, "registrationId": cdp_id}
    shown = await push(page, worker, deliver, payload)
    assert (shown["title"], shown["body"], shown["tag"]) == (
        "Still thinking about it?",
        "Checkout takes one tap.",
        payload["id"],
    )
    assert shown["data"]["link"] == "/cart"

    # The same message with an icon, an image and buttons replaces it (tag).
    rich = {
        **payload,
        "icon": "/icon.png",
        "image": "/hero.png",
        "actions": [{"action": "buy", "title": "Buy now", "link": "/checkout"}],
    }
    shown = await push(page, worker, deliver, rich)
    assert len(await worker.evaluate(NOTIFICATIONS)) == 1
    assert shown["icon"] == f"{gw.origin}/icon.png"
    assert shown["image"] == f"{gw.origin}/hero.png"
    assert shown["actions"] == ["buy"]

    targets = await worker.evaluate(
        "[self.sessionpush.target('/cart'), self.sessionpush.target('javascript:x')]"
    )
    assert targets == [f"{gw.origin}/cart", f"{gw.origin}/"]
    await worker.evaluate(
        """async () => {
          const [n] = await self.registration.getNotifications();
          await self.sessionpush.click(n, "buy");
        }"""
    )
    assert await worker.evaluate(NOTIFICATIONS) == []
    store = SQLiteStore(str(tmp_path / "state.db"))
    await store.open()
    try:
        outcomes = [o.outcome for o in await store.outcomes(payload["id"])]
    finally:
        await store.close()
    assert outcomes == ["sent", "delivered", "opened", "clicked"]
