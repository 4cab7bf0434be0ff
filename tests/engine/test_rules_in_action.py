"""The engine end to end on a hand-moved clock: triggers, waits,
suppression, caps, sessions ending once, restarts."""

from __future__ import annotations

from typing import Any

from sessionpush.engine.clock import VirtualClock
from sessionpush.engine.core import CLOSE_IDLE, Engine
from sessionpush.store.sqlite import SQLiteStore
from tests.engine.conftest import T0, RecordingTransport
from tests.rulesets import ruleset_from_text

CART_RECOVERY = """
rule cart_recovery {
    when session ends where session has cart and not session has purchase
    wait 10m
    unless purchase
    limit 1 per user per 24h
    push {
        title "Still thinking about {last(cart).brand | default: 'your cart'}?"
        link "shop://cart"
        ttl 6h
    }
}
"""


async def test_an_event_rule_sends_at_once_with_its_template(harness: Any) -> None:
    h = await harness(
        "rule thanks { when purchase where price >= 300 "
        'push { title "Thanks for the {brand | upper}" } }'
    )
    peer = await h.open()
    await h.event(peer, "purchase", price=299.0, brand="acme")
    await h.event(peer, "purchase", price=300.0, brand="acme")
    assert await h.outcomes() == ["sent"]
    assert [m.title for m in h.outbox.sent] == ["Thanks for the ACME"]
    assert h.outbox.sent[0].at == T0


async def test_cart_recovery_sends_ten_minutes_after_the_session_ends(
    harness: Any,
) -> None:
    h = await harness(CART_RECOVERY)
    peer = await h.open()
    await h.event(peer, "view")
    await h.at(60)
    await h.event(peer, "cart", brand="acme")
    await h.engine.detach(peer)  # session ends at 60 + 30 s grace
    await h.at(60 + 30 + 599)
    assert h.outbox.sent == []
    await h.at(60 + 30 + 600)
    [message] = h.outbox.sent
    assert message.title == "Still thinking about acme?"
    assert message.link == "shop://cart"
    assert message.ttl == 6 * 3600
    [decision] = await h.decisions()
    assert (decision.decision, decision.at, decision.triggered_at) == (
        "sent",
        T0 + 690,
        T0 + 90,
    )


async def test_a_missing_brand_falls_back_to_the_default(harness: Any) -> None:
    h = await harness(CART_RECOVERY)
    peer = await h.open()
    await h.event(peer, "cart")
    await h.engine.detach(peer)
    await h.at(1000)
    assert [m.title for m in h.outbox.sent] == ["Still thinking about your cart?"]


async def test_a_session_with_a_purchase_does_not_trigger(harness: Any) -> None:
    h = await harness(CART_RECOVERY)
    peer = await h.open()
    await h.event(peer, "cart")
    await h.event(peer, "purchase")
    await h.engine.detach(peer)
    await h.at(3600)
    assert await h.decisions() == []


async def test_a_purchase_during_the_wait_from_another_session_cancels(
    harness: Any,
) -> None:
    h = await harness(CART_RECOVERY)
    first = await h.open(session="s1")
    await h.event(first, "cart")
    await h.engine.detach(first)
    await h.at(30 + 300)  # ended at 30, due at 630
    phone = await h.open(session="s2")
    await h.event(phone, "purchase")
    await h.at(3600)
    assert h.outbox.sent == []
    [decision] = await h.decisions("cart_recovery")
    assert decision.decision == "suppressed"
    assert "'purchase' arrived" in decision.reason
    assert decision.at == T0 + 330
    assert await h.store.pending_timers() == []


async def test_a_purchase_by_another_user_cancels_nothing(harness: Any) -> None:
    h = await harness(CART_RECOVERY)
    mine = await h.open(user="u1", session="s1")
    await h.event(mine, "cart")
    await h.engine.detach(mine)
    await h.at(100)
    theirs = await h.open(user="u2", session="s2")
    await h.event(theirs, "purchase")
    await h.at(3600)
    assert await h.outcomes("cart_recovery") == ["sent"]


async def test_the_daily_cap_lets_one_push_through_per_user(harness: Any) -> None:
    h = await harness(CART_RECOVERY)
    for n, start in enumerate((0, 2000, 4000)):
        await h.at(start)
        peer = await h.open(session=f"s{n}")
        await h.event(peer, "cart")
        await h.engine.detach(peer)
    await h.at(90_000)
    outcomes = await h.outcomes("cart_recovery")
    assert outcomes == ["sent", "capped", "capped"]
    [_, second, _] = await h.decisions("cart_recovery")
    assert second.reason == "limit 1 per user per 24h reached"
    # A day after the first send the cap has room again.
    await h.at(86_400 + 630 + 1)
    peer = await h.open(session="s-next-day")
    await h.event(peer, "cart")
    await h.engine.detach(peer)
    await h.at(200_000)
    assert (await h.outcomes("cart_recovery"))[-1] == "sent"


async def test_limit_per_session_counts_sends_of_that_session(harness: Any) -> None:
    h = await harness(
        "rule pricey { when view where price > 500 limit 1 per session "
        'inapp { title "Need help choosing?" } }'
    )
    peer = await h.open(session="a")
    await h.event(peer, "view", price=900)
    await h.event(peer, "view", price=950)
    other = await h.open(session="b")
    await h.event(other, "view", price=700)
    assert await h.outcomes() == ["sent", "capped", "sent"]
    assert [m["title"] for m in peer.messages] == ["Need help choosing?"] * 2


async def test_an_inapp_message_needs_an_open_socket(harness: Any) -> None:
    h = await harness('rule later { when view wait 1m inapp { title "Still there?" } }')
    peer = await h.open()
    await h.event(peer, "view")
    await h.engine.detach(peer)
    await h.at(30)  # the grace period ends the session
    await h.at(60)
    [decision] = await h.decisions()
    assert decision.decision == "unreachable"
    assert decision.reason == "no open socket for an in-app message"


async def test_absence_fires_by_timer_without_a_later_event(harness: Any) -> None:
    h = await harness(
        'rule hesitate { when view where page == "pricing" then no signup '
        'within 2m inapp { title "Questions about plans?" } }'
    )
    peer = await h.open()
    await h.event(peer, "view", page="pricing")
    await h.at(60)
    await h.event(peer, "view", page="pricing")  # does not push the deadline
    await h.at(119)
    assert peer.messages == []
    await h.at(120)
    assert [m["title"] for m in peer.messages] == ["Questions about plans?"]


async def test_the_absent_event_closes_the_window(harness: Any) -> None:
    h = await harness(
        'rule hesitate { when view where page == "pricing" then no signup '
        'within 2m inapp { title "Questions?" } }'
    )
    peer = await h.open()
    await h.event(peer, "view", page="pricing")
    await h.at(90)
    await h.event(peer, "signup")
    await h.at(600)
    assert peer.messages == []
    assert await h.decisions() == []


async def test_wait_after_session_end_starts_when_the_session_ends(
    harness: Any,
) -> None:
    h = await harness(
        "rule alert { when search where results == 0 wait 1h after session end "
        'push { title "We found {query}" } }'
    )
    peer = await h.open()
    await h.event(peer, "search", results=0, query="red shoes")
    await h.at(500)
    await h.event(peer, "view")
    await h.engine.detach(peer)  # ends at 530
    await h.at(530 + 3599)
    assert h.outbox.sent == []
    await h.at(530 + 3600)
    assert [m.title for m in h.outbox.sent] == ["We found red shoes"]
    [decision] = await h.decisions()
    assert decision.triggered_at == T0


async def test_a_reconnect_inside_the_grace_period_resumes_the_session(
    harness: Any,
) -> None:
    h = await harness(CART_RECOVERY)
    peer = await h.open(session="s1")
    await h.event(peer, "cart")
    await h.engine.detach(peer)
    await h.at(29)
    again = await h.open(session="s1")
    session = h.engine.session_of(again)
    assert session is not None and session.events == 1
    await h.at(100)
    assert await h.decisions() == []  # not ended, so nothing triggered
    await h.event(again, "purchase")
    await h.engine.detach(again)
    await h.at(5000)
    assert await h.decisions() == []  # it ended with a purchase


async def test_two_sockets_of_one_session_end_it_once_when_the_last_closes(
    harness: Any,
) -> None:
    h = await harness(
        'rule bye { when session ends push { title "Bye after {session.events}" } }'
    )
    tab1 = await h.open(session="s1")
    tab2 = await h.open(session="s1")
    await h.event(tab1, "view")
    await h.event(tab2, "view")
    await h.engine.detach(tab1)
    await h.at(100)
    assert h.outbox.sent == []
    await h.engine.detach(tab2)
    await h.at(131)
    await h.at(10_000)
    assert [m.title for m in h.outbox.sent] == ["Bye after 2"]
    assert h.engine.sessions == 0


async def test_an_explicit_end_ends_at_once_and_closes_every_socket(
    harness: Any,
) -> None:
    h = await harness('rule bye { when session ends push { title "Bye" } }')
    tab1 = await h.open(session="s1")
    tab2 = await h.open(session="s1")
    await h.engine.end(tab1)
    assert tab1.closed is not None and tab2.closed is not None
    assert len(h.outbox.sent) == 1
    await h.engine.detach(tab1)  # the sockets then close; nothing more ends
    await h.engine.detach(tab2)
    await h.at(10_000)
    assert len(h.outbox.sent) == 1


async def test_idle_for_longer_than_the_timeout_ends_the_session(
    harness: Any,
) -> None:
    h = await harness('rule bye { when session ends push { title "Bye" } }')
    peer = await h.open()
    await h.at(1000)
    await h.event(peer, "view")
    await h.at(1000 + 1800)  # exactly the timeout: still the same session
    assert h.engine.sessions == 1
    await h.event(peer, "view")
    await h.at(2800 + 1801)
    assert h.engine.sessions == 0
    assert peer.closed is not None and peer.closed[0] == CLOSE_IDLE
    assert len(h.outbox.sent) == 1


async def test_withdrawn_consent_stops_a_pending_push(harness: Any) -> None:
    h = await harness(CART_RECOVERY)
    peer = await h.open()
    await h.event(peer, "cart")
    await h.engine.detach(peer)
    await h.at(100)
    await h.store.set_consent("default", "u1", False)
    await h.at(1000)
    [decision] = await h.decisions()
    assert decision.decision == "no_consent"
    assert h.outbox.sent == []


async def test_a_pending_timer_survives_a_restart_and_fires_when_overdue(
    tmp_path: Any,
) -> None:
    path = str(tmp_path / "state.db")
    rules = ruleset_from_text(CART_RECOVERY)
    store = SQLiteStore(path)
    await store.open()
    clock = VirtualClock(T0)
    engine = Engine(rules, store, clock, fallback=RecordingTransport())
    await engine.start()
    from sessionpush.store.base import Device
    from tests.engine.conftest import Peer

    peer = Peer()
    await engine.open(peer, Device(app="default", user="u1", device_id="d"), "s1")
    await engine.event(peer, "cart", {"brand": "acme"})
    await engine.detach(peer)
    await engine.advance(T0 + 60)  # ended at 30, due at 630
    await store.close()  # the process stops here

    store = SQLiteStore(path)
    await store.open()
    outbox = RecordingTransport()
    later = VirtualClock(T0 + 5000)  # it comes back long after the due time
    engine = Engine(rules, store, later, fallback=outbox)
    await engine.start()
    await engine.advance(T0 + 5000)
    assert [m.title for m in outbox.sent] == ["Still thinking about acme?"]
    assert await store.pending_timers() == []
    await store.close()
