"""Property: for any sequence of sessions and events, the engine decides
exactly what a plain, index-free reading of the rules decides."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sessionpush.engine.clock import VirtualClock
from sessionpush.engine.core import Engine
from sessionpush.store.base import Device
from sessionpush.store.sqlite import SQLiteStore
from tests.engine.conftest import Peer, RecordingTransport
from tests.rulesets import ruleset_from_text

RULES = """
rule pricey {
    when view where price > 500
    limit 2 per session
    push { title "pricey" }
}
rule hesitate {
    when view where price > 800 then no cart within 2m
    push { title "hesitate" }
}
rule browse_then_cart {
    when view where price > 800 then cart within 2m
    push { title "sequence" }
}
rule two_searches {
    when 2 times search within 5m
    push { title "count" }
}
rule idle_cart {
    when idle 5m where session has cart
    push { title "idle" }
}
rule hello {
    when session starts
    limit 1 per user per 1h
    push { title "start" }
}
rule recover {
    when session ends where session has cart and not session has purchase
    wait 10m
    unless purchase
    limit 1 per user per 1h
    push { title "recover" }
}
"""
GRACE, WAIT, WINDOW, CAP = 30, 600, 120, 3600
COUNT_WINDOW, IDLE = 300, 300

Event = tuple[int, str, int]  # (time, name, price)

event_names = st.sampled_from(["view", "view", "cart", "purchase", "search"])
# Values on and around every threshold and window of the rules, so that
# the edges (start inclusive, end exclusive) are hit often.
prices = st.sampled_from([0, 500, 501, 800, 801, 1000])
gaps = st.sampled_from([0, 1, 30, 60, 119, 120, 121, 299, 300, 301, 599, 600, 601])
pauses = st.sampled_from([1, 29, 30, 31, 300, 600, 629, 630, 631, 3000, 3600, 4000])
session_shape = st.lists(st.tuples(gaps, event_names, prices), min_size=1, max_size=6)


@st.composite
def histories(draw: Any) -> list[list[Event]]:
    """One user's sessions, one after another, with integer times."""
    sessions: list[list[Event]] = []
    t = 0
    for shape in draw(st.lists(session_shape, min_size=1, max_size=4)):
        t += draw(pauses)
        events = []
        for gap, name, price in shape:
            t += gap
            events.append((t, name, price))
        sessions.append(events)
    return sessions


def reference(sessions: list[list[Event]]) -> list[tuple[str, str, int, int]]:
    """The rules read literally: (rule, decision, triggered_at, at)."""
    out: list[tuple[str, str, int, int]] = []
    everything = [event for session in sessions for event in session]
    ends: list[int] = []
    hellos: list[int] = []
    for events in sessions:
        # A session starts at its first event; one start push an hour.
        start = events[0][0]
        if any(start - CAP <= s for s in hellos):
            out.append(("hello", "capped", start, start))
        else:
            hellos.append(start)
            out.append(("hello", "sent", start, start))
        out.extend(_sequences_counts_and_idle(events))
        sent = 0
        for t, name, price in events:
            if name == "view" and price > 500:
                out.append(("pricey", "sent" if sent < 2 else "capped", t, t))
                sent += 1
        due = None
        for t, name, price in events:
            if due is not None and due <= t:
                out.append(("hesitate", "sent", due, due))
                due = None
            if name == "cart":
                due = None
            if name == "view" and price > 800 and due is None:
                due = t + WINDOW
        if due is not None:
            out.append(("hesitate", "sent", due, due))
        names = {name for _, name, _ in events}
        if "cart" in names and "purchase" not in names:
            ends.append(events[-1][0] + GRACE)

    sends: list[int] = []
    for end in ends:
        due = end + WAIT
        purchases = [
            t for t, name, _ in everything if name == "purchase" and end <= t < due
        ]
        if any(end - CAP < s <= end for s in sends):
            out.append(("recover", "capped", end, end))
        elif purchases:
            out.append(("recover", "suppressed", end, purchases[0]))
        elif any(due - CAP < s <= due for s in sends):
            out.append(("recover", "capped", end, due))
        else:
            sends.append(due)
            out.append(("recover", "sent", end, due))
    return sorted(out)


def _sequences_counts_and_idle(events: list[Event]) -> list[tuple[str, str, int, int]]:
    """The triggers that keep per-session progress, read literally."""
    out: list[tuple[str, str, int, int]] = []
    viewed: int | None = None  # the latest pricey view, waiting for a cart
    searches: list[int] = []  # searches inside the count window
    seen_cart = False
    last = events[0][0]  # idle counts from the start, then each event
    for t, name, price in events:
        # A quiet spell of IDLE fires before the event that ends it; the
        # session ends GRACE after its last event, long before IDLE.
        if t - last >= IDLE and seen_cart:
            out.append(("idle_cart", "sent", last + IDLE, last + IDLE))
        last = t
        if name == "cart" and viewed is not None and t - viewed < WINDOW:
            out.append(("browse_then_cart", "sent", t, t))
            viewed = None
        if name == "view" and price > 800:
            viewed = t
        if name == "search":
            searches = [s for s in searches if t - s < COUNT_WINDOW] + [t]
            if len(searches) >= 2:
                out.append(("two_searches", "sent", t, t))
                searches = []
        seen_cart = seen_cart or name == "cart"
    return out


async def run_engine(sessions: list[list[Event]]) -> list[tuple[str, str, int, int]]:
    store = SQLiteStore(":memory:")
    await store.open()
    engine = Engine(
        ruleset_from_text(RULES),
        store,
        VirtualClock(0.0),
        fallback=RecordingTransport(),
        grace=GRACE,
    )
    await engine.start()
    device = Device(app="a", user="u", device_id="d")
    for number, events in enumerate(sessions):
        peer = Peer()
        for index, (t, name, price) in enumerate(events):
            await engine.advance(float(t))
            if index == 0:
                await engine.open(peer, device, f"s{number}")
            await engine.event(peer, name, {"price": price})
        await engine.detach(peer)
    await engine.drain()
    decisions = await store.decisions()
    await store.close()
    return sorted(
        (d.rule, d.decision, int(d.triggered_at), int(d.at)) for d in decisions
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories())
def test_the_engine_agrees_with_the_reference_reading(
    sessions: list[list[Event]],
) -> None:
    assert asyncio.run(run_engine(sessions)) == reference(sessions)
