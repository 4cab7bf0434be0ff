"""A rule whose action is ``webhook "NAME"`` reaches the webhook transport.

The rule language gains the ``webhook`` action separately; these tests
build the compiled action directly, as the compiler will.
"""

from __future__ import annotations

from typing import Any

from sessionpush.engine.clock import VirtualClock
from sessionpush.engine.core import Engine
from sessionpush.engine.rules import CompiledAction
from sessionpush.store.base import Device, Subscription
from sessionpush.store.sqlite import SQLiteStore
from sessionpush.transports.base import DeliveryResult, OutboundMessage
from tests.engine.conftest import T0, Peer
from tests.rulesets import ruleset_from_text

RULE = 'rule vip { when purchase where price >= 300 push { title "VIP {price}" } }'


class RecordingWebhook:
    name = "webhook"

    def __init__(self) -> None:
        self.sent: list[tuple[OutboundMessage, Subscription | None]] = []

    async def send(
        self, message: OutboundMessage, subscription: Subscription | None
    ) -> DeliveryResult:
        self.sent.append((message, subscription))
        return DeliveryResult(ok=True, detail="webhook crm answered 204")

    async def close(self) -> None:
        pass


async def run(transports: dict[str, Any]) -> tuple[SQLiteStore, list[str]]:
    rules = ruleset_from_text(RULE)
    rule = rules.by_name["vip"]
    rule.action = CompiledAction("webhook", rule.action.fields, webhook="crm")
    store = SQLiteStore(":memory:")
    await store.open()
    engine = Engine(rules, store, VirtualClock(T0), transports=transports)
    await engine.start()
    peer = Peer()
    await engine.open(peer, Device(app="default", user="u1", device_id="d1"), "s1")
    await engine.event(peer, "purchase", {"price": 450.0})
    decisions = [f"{d.decision}: {d.reason}" for d in await store.decisions()]
    return store, decisions


async def test_a_webhook_action_sends_the_decision_to_the_named_webhook() -> None:
    hook = RecordingWebhook()

    store, decisions = await run({"webhook": hook})
    await store.close()

    assert decisions == ["sent: delivered by webhook"]
    ((message, target),) = hook.sent
    assert message.channel == "webhook"
    assert message.title == "VIP 450"
    assert target is not None
    assert target.device_id == "webhook:crm"
    assert target.data == {"webhook": "crm"}


async def test_a_webhook_action_without_a_webhook_transport_is_unreachable() -> None:
    store, decisions = await run({})
    await store.close()

    assert decisions == ["unreachable: no webhook transport is configured"]
