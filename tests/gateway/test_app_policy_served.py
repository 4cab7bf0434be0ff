"""The app config's policy reaches the engine of a served gateway: a
global cap of one app holds across its rules and leaves other apps alone."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sessionpush.engine.policy import AppPolicy
from sessionpush.engine.rules import CompiledLimit
from sessionpush.gateway.apps import AppConfig, GatewayConfig
from sessionpush.gateway.auth import sign_token
from tests.gateway.conftest import receive, send

RULES = """
rule viewed { when view push { title "viewed" } }
rule carted { when cart push { title "carted" } }
"""
SHOP = "shop-signing-secret-0123456789abcdef"
NEWS = "news-signing-secret-0123456789abcdef"


async def test_a_configured_global_cap_holds_across_rules_of_its_app_only(
    gateway: Callable[..., Any],
) -> None:
    capped = AppPolicy(caps=(CompiledLimit(1, "user", 86400.0),))
    config = GatewayConfig(
        apps={
            "shop": AppConfig(name="shop", signing_secret=SHOP.encode(), policy=capped),
            "news": AppConfig(name="news", signing_secret=NEWS.encode()),
        }
    )
    gw = await gateway(RULES, gateway=config)
    for app, secret in (("shop", SHOP), ("news", NEWS)):
        ws = await gw.connect()
        token = sign_token(secret.encode(), app, "ann", 600)
        await send(ws, {"type": "hello", "user": "ann", "app": app, "token": token})
        assert (await receive(ws))["type"] == "welcome"
        for seq, name in enumerate(("view", "cart"), 1):
            await send(ws, {"type": "event", "name": name, "seq": seq})
            assert await receive(ws) == {"type": "ack", "seq": seq}
        await ws.close()
    assert [(p["app"], p["title"]) for p in gw.pushes()] == [
        ("shop", "viewed"),
        ("news", "viewed"),
        ("news", "carted"),
    ]
