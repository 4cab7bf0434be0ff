"""The delivery queue's idempotency key: one message per trigger, and the
same message again when a timer is sent again after its claimant died."""

from __future__ import annotations

from sessionpush.engine.clock import VirtualClock
from sessionpush.store.base import Subscription
from sessionpush.store.sqlite import SQLiteStore
from sessionpush.transports.queue import DeliveryQueue
from tests.engine.conftest import RecordingTransport
from tests.transports.conftest import message

PHONE = Subscription(
    app="default",
    user="alice",
    device_id="pixel",
    channel="fcm",
    data={"token": "fcm-token:APA91b-pixel"},
)


async def test_the_same_message_claiming_its_key_again_is_queued_again(
    store: SQLiteStore, clock: VirtualClock
) -> None:
    provider = RecordingTransport("fcm")
    queue = DeliveryQueue({"fcm": provider}, store, clock)

    first = await queue.submit(message(id="timer-7"), [PHONE], "shop-alice-cart")
    again = await queue.submit(message(id="timer-7"), [PHONE], "shop-alice-cart")
    await queue.join()

    assert first == (True, "queued to fcm:pixel")
    assert again == (True, "queued again to fcm:pixel")
    assert [m.id for m in provider.sent] == ["timer-7", "timer-7"]


async def test_another_message_for_a_claimed_trigger_is_refused(
    store: SQLiteStore, clock: VirtualClock
) -> None:
    provider = RecordingTransport("fcm")
    queue = DeliveryQueue({"fcm": provider}, store, clock)

    await queue.submit(message(id="m1"), [PHONE], "shop-alice-cart")
    refused = await queue.submit(message(id="m2"), [PHONE], "shop-alice-cart")
    await queue.join()

    assert refused == (False, "duplicate trigger: message m1 was already sent")
    assert [m.id for m in provider.sent] == ["m1"]
