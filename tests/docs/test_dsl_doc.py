"""docs/dsl.md, tested: every ``rules`` block checks and compiles, every
``rules-error`` block fails ``sessionpush check`` with the output printed
after it, and each marked example behaves on the engine as the page says."""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sessionpush.dsl.compile import compile_rules
from sessionpush.dsl.load import load_paths, run_check, run_fmt
from sessionpush.engine.clock import VirtualClock
from sessionpush.engine.core import Engine
from sessionpush.engine.policy import AppPolicy
from sessionpush.engine.rules import CompiledLimit
from sessionpush.errors import ConfigError
from sessionpush.gateway.app import Settings, create_app
from sessionpush.gateway.apps import load_gateway_config
from sessionpush.store.base import Device, Subscription
from sessionpush.store.sqlite import SQLiteStore
from sessionpush.transports.base import DeliveryResult, OutboundMessage
from tests.engine.conftest import T0, Harness, Peer, RecordingTransport

DOC = Path(__file__).resolve().parents[2] / "docs" / "dsl.md"
_FENCE = re.compile(r"^```(\S*)\s*$")
_MARKER = re.compile(r"^# example: ([a-z0-9-]+)\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced block of the page; ``output`` follows a rules-error block."""

    lang: str
    text: str
    line: int
    output: str | None = None

    @property
    def marker(self) -> str | None:
        first = self.text.split("\n", 1)[0]
        match = _MARKER.match(first)
        return match.group(1) if match else None

    @property
    def id(self) -> str:
        return self.marker or f"line-{self.line}"


def _read_blocks() -> list[Block]:
    blocks: list[Block] = []
    lang: str | None = None
    start = 0
    body: list[str] = []
    for number, line in enumerate(DOC.read_text(encoding="utf-8").split("\n"), 1):
        fence = _FENCE.match(line)
        if lang is None:
            if fence:
                lang, start, body = fence.group(1), number, []
        elif fence and not fence.group(1):
            blocks.append(Block(lang, "\n".join(body) + "\n", start + 1))
            lang = None
        else:
            body.append(line)
    assert lang is None, f"the block opened at line {start} is not closed"

    # A rules-error block takes the text block right after it as its output.
    paired: list[Block] = []
    for i, block in enumerate(blocks):
        if block.lang == "rules-error":
            after = blocks[i + 1] if i + 1 < len(blocks) else None
            output = after.text if after and after.lang == "text" else None
            block = Block(block.lang, block.text, block.line, output)
        paired.append(block)
    return paired


BLOCKS = _read_blocks()
RULES = [b for b in BLOCKS if b.lang == "rules"]
ERRORS = [b for b in BLOCKS if b.lang == "rules-error"]


def example(name: str) -> str:
    """The text of the rules block marked ``# example: name``."""
    found = [b.text for b in RULES if b.marker == name]
    assert len(found) == 1, f"{len(found)} rules blocks are marked {name!r}"
    return found[0]


# -- the blocks themselves ------------------------------------------------------


def test_the_page_has_rules_and_error_blocks() -> None:
    """The extraction finds the page's examples (a broken fence would hide them)."""
    assert len(RULES) >= 15
    assert len(ERRORS) >= 4


@pytest.mark.parametrize("block", RULES, ids=[b.id for b in RULES])
def test_every_rules_block_is_a_valid_rule_file(block: Block, tmp_path: Path) -> None:
    """Each rules block parses, checks and compiles as a whole file."""
    path = tmp_path / "doc.rules"
    path.write_text(block.text, encoding="utf-8")
    files = load_paths([str(path)])
    ruleset = compile_rules(files)
    assert len(ruleset) >= 1


@pytest.mark.parametrize("block", ERRORS, ids=[b.id for b in ERRORS])
def test_every_error_block_fails_check_with_the_documented_output(
    block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sessionpush check prints exactly the text block that follows."""
    assert block.output is not None, f"no text block after line {block.line}"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "shop.rules").write_text(block.text, encoding="utf-8")
    out = io.StringIO()
    status = run_check(["rules/shop.rules"], out)
    assert status == 1
    assert out.getvalue() == block.output


def test_example_markers_are_unique_and_each_is_run() -> None:
    """Every marked example has a behaviour test below, and no marker repeats."""
    markers = [b.marker for b in RULES if b.marker]
    assert len(markers) == len(set(markers))
    used = set(re.findall(r'example\("([a-z0-9-]+)"\)', Path(__file__).read_text()))
    assert set(markers) == used


# -- running examples -------------------------------------------------------------


class RefusingTransport:
    """A push channel that turns every message down, as a gone endpoint does."""

    name = "webpush"

    async def send(
        self, message: OutboundMessage, subscription: Subscription | None
    ) -> DeliveryResult:
        return DeliveryResult(ok=False, detail="410 gone")

    async def close(self) -> None:
        pass


MakeEngine = Callable[[str], Awaitable[Harness]]


@pytest.fixture
async def run(tmp_path: Path) -> AsyncIterator[MakeEngine]:
    """Load a documented example from a file and drive it on a virtual clock."""
    stores: list[SQLiteStore] = []

    async def make(text: str) -> Harness:
        path = tmp_path / f"example-{len(stores)}.rules"
        path.write_text(text, encoding="utf-8")
        rules = compile_rules(load_paths([str(path)]))
        store = SQLiteStore(":memory:")
        await store.open()
        stores.append(store)
        clock = VirtualClock(T0)
        outbox = RecordingTransport()
        engine = Engine(rules, store, clock, fallback=outbox, grace=30.0, idle=1800.0)
        await engine.start()
        return Harness(engine, store, clock, outbox)

    yield make
    for store in stores:
        await store.close()


async def sent_at(h: Harness, rule: str | None = None) -> list[float]:
    return [d.at - T0 for d in await h.decisions(rule) if d.decision == "sent"]


async def open_in(
    h: Harness,
    zone: str = "UTC",
    user: str = "u1",
    lang: str | None = None,
    session: str | None = None,
) -> Peer:
    """A session of ``user`` from a device in ``zone`` speaking ``lang``."""
    peer = Peer()
    device = Device(
        app="default", user=user, device_id=f"{user}:d", timezone=zone, lang=lang
    )
    await h.engine.open(peer, device, session or f"s-{user}")
    return peer


def utc(text: str) -> float:
    """Seconds since the epoch of a UTC wall-clock time (T0 is 22:13:20)."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


# intro


async def test_cart_recovery_sends_ten_minutes_after_the_session_ends(
    run: MakeEngine,
) -> None:
    h = await run(example("cart-recovery"))
    peer = await h.open()
    await h.event(peer, "cart", brand="acme")
    await h.engine.detach(peer)  # the session ends at 30 s
    await h.at(30 + 599)
    assert await h.decisions() == []
    await h.at(30 + 600)
    [message] = h.outbox.sent
    assert message.title == "Still thinking about acme?"
    assert (message.body, message.link, message.ttl) == (
        "It is saved. Checkout takes one tap.",
        "shop://cart",
        6 * 3600,
    )
    assert await sent_at(h) == [630.0]


async def test_cart_recovery_is_suppressed_by_a_purchase_on_another_device(
    run: MakeEngine,
) -> None:
    h = await run(example("cart-recovery"))
    web = await h.open(session="web")
    await h.event(web, "cart")
    await h.engine.end(web)
    await h.at(300)
    phone = await h.open(session="phone")
    await h.event(phone, "purchase")
    await h.at(3600)
    assert h.outbox.sent == []
    assert await h.outcomes() == ["suppressed"]


async def test_a_suppressed_send_does_not_use_up_the_limit(run: MakeEngine) -> None:
    h = await run(example("cart-recovery"))
    first = await h.open(session="s1")
    await h.event(first, "cart")
    await h.engine.end(first)
    await h.event(await h.open(session="s2"), "purchase")
    later = await h.open(session="s3")
    await h.at(100)
    await h.event(later, "cart")
    await h.engine.end(later)
    await h.at(3600)
    assert await h.outcomes("cart_recovery") == ["suppressed", "sent"]


# rule blocks


async def test_clauses_come_in_any_order_and_a_file_holds_several_rules(
    run: MakeEngine,
) -> None:
    h = await run(example("rule-blocks"))
    peer = await h.open()
    await h.event(peer, "view", page="search")
    await h.event(peer, "view", page="home")
    await h.event(peer, "signup")
    assert [m.title for m in h.outbox.sent] == ["Welcome back!"]
    assert [(m["title"], m["body"]) for m in peer.messages] == [
        ("Thanks for signing up", "Your first order ships free.")
    ]


# triggers


async def test_an_event_trigger_sends_at_once_when_its_condition_holds(
    run: MakeEngine,
) -> None:
    h = await run(example("event-trigger"))
    peer = await h.open()
    await h.at(5)
    await h.event(peer, "purchase", price=299)
    await h.event(peer, "purchase", price=300)
    assert await h.outcomes() == ["sent"]
    assert [m.body for m in h.outbox.sent] == ["Your 300.00 EUR order is on its way."]
    assert await sent_at(h) == [5.0]


async def test_absence_fires_by_timer_two_minutes_after_the_view(
    run: MakeEngine,
) -> None:
    h = await run(example("absence"))
    peer = await h.open()
    await h.event(peer, "view", page="pricing")
    await h.at(119)
    assert peer.messages == []
    await h.at(120)
    assert [m["title"] for m in peer.messages] == ["Questions about plans?"]
    [decision] = await h.decisions()
    assert decision.triggered_at == T0 + 120


async def test_a_signup_inside_the_window_closes_it_without_a_decision(
    run: MakeEngine,
) -> None:
    h = await run(example("absence"))
    peer = await h.open()
    await h.event(peer, "view", page="pricing")
    await h.at(90)
    await h.event(peer, "signup")
    await h.at(600)
    assert peer.messages == []
    assert await h.decisions() == []


async def test_a_second_view_does_not_move_the_end_of_the_window(
    run: MakeEngine,
) -> None:
    h = await run(example("absence"))
    peer = await h.open()
    await h.event(peer, "view", page="pricing")
    await h.at(60)
    await h.event(peer, "view", page="pricing")
    await h.at(600)
    assert await sent_at(h) == [120.0]


async def test_a_signup_in_another_session_does_not_close_the_window(
    run: MakeEngine,
) -> None:
    h = await run(example("absence"))
    tab = await h.open(session="tab")
    await h.event(tab, "view", page="pricing")
    phone = await h.open(session="phone")
    await h.event(phone, "signup")
    await h.at(600)
    assert await sent_at(h) == [120.0]


async def test_a_sequence_fires_at_the_cart_and_reads_the_named_view(
    run: MakeEngine,
) -> None:
    h = await run(example("sequence"))
    peer = await h.open()
    await h.event(peer, "view", page="product", brand="acme")
    await h.at(300)
    await h.event(peer, "cart")
    assert [m.title for m in h.outbox.sent] == ["Good choice: acme"]
    assert await sent_at(h) == [300.0]


async def test_a_cart_at_the_end_of_the_sequence_window_is_too_late(
    run: MakeEngine,
) -> None:
    h = await run(example("sequence"))
    peer = await h.open()
    await h.event(peer, "view", page="product")
    await h.at(600)
    await h.event(peer, "cart")
    assert await h.decisions() == []


async def test_a_newer_view_restarts_the_sequence(run: MakeEngine) -> None:
    h = await run(example("sequence"))
    peer = await h.open()
    await h.event(peer, "view", page="product", brand="old")
    await h.at(500)
    await h.event(peer, "view", page="product", brand="new")
    await h.at(700)
    await h.event(peer, "cart")
    await h.event(peer, "cart")  # needs a new view first
    assert [m.title for m in h.outbox.sent] == ["Good choice: new"]


async def test_a_count_fires_on_the_second_empty_search_inside_five_minutes(
    run: MakeEngine,
) -> None:
    h = await run(example("count"))
    peer = await h.open()
    await h.event(peer, "search", results=0)
    await h.at(100)
    await h.event(peer, "search", results=4)
    await h.at(299)
    await h.event(peer, "search", results=0)
    assert [m["title"] for m in peer.messages] == ["Can we help you find it?"]
    await h.at(310)
    await h.event(peer, "search", results=0)
    assert len(peer.messages) == 1
    await h.at(320)
    await h.event(peer, "search", results=0)
    assert await sent_at(h) == [299.0, 320.0]


async def test_two_empty_searches_five_minutes_apart_do_not_count(
    run: MakeEngine,
) -> None:
    h = await run(example("count"))
    peer = await h.open()
    await h.event(peer, "search", results=0)
    await h.at(300)
    await h.event(peer, "search", results=0)
    assert await h.decisions() == []


async def test_idle_fires_five_quiet_minutes_after_the_latest_event(
    run: MakeEngine,
) -> None:
    h = await run(example("idle"))
    peer = await h.open()
    await h.event(peer, "cart")
    await h.at(200)
    await h.event(peer, "view")
    await h.at(499)
    assert peer.messages == []
    await h.at(500)
    assert [m["title"] for m in peer.messages] == ["Still deciding?"]
    await h.at(1000)
    assert await sent_at(h) == [500.0]
    await h.event(peer, "view")
    await h.at(1300)
    assert await sent_at(h) == [500.0, 1300.0]


async def test_idle_without_a_cart_sends_nothing(run: MakeEngine) -> None:
    h = await run(example("idle"))
    peer = await h.open()
    await h.event(peer, "view")
    await h.at(1000)
    assert await h.decisions() == []


async def test_session_start_greets_a_pro_user_after_the_welcome_only_once(
    run: MakeEngine,
) -> None:
    h = await run(example("session-start"))
    await h.store.set_user_attributes("default", "pro", {"plan": "pro"})
    pro = await h.open(user="pro", session="a")
    other = await h.open(user="free", session="b")
    assert [m["title"] for m in pro.messages] == ["Welcome back!"]
    assert other.messages == []
    await h.engine.detach(pro)
    again = await h.open(user="pro", session="a")  # resumed inside the grace
    assert again.messages == []
    assert await h.outcomes() == ["sent"]


async def test_named_events_feed_the_later_condition_and_the_message(
    run: MakeEngine,
) -> None:
    h = await run(example("bindings"))
    peer = await h.open()
    await h.event(peer, "view", category="shoes", price=120)
    await h.at(600)
    await h.engine.event(
        peer, "view", {"category": "shoes", "price": 80, "name": "Runner"}
    )
    [message] = h.outbox.sent
    assert (message.title, message.body) == (
        "Runner for 80.00 EUR",
        "instead of 120.00 EUR",
    )


async def test_a_dearer_second_view_sends_nothing_and_starts_over(
    run: MakeEngine,
) -> None:
    h = await run(example("bindings"))
    peer = await h.open()
    await h.event(peer, "view", category="shoes", price=120)
    await h.event(peer, "view", category="shoes", price=130)
    assert await h.decisions() == []
    await h.engine.event(
        peer, "view", {"category": "shoes", "price": 125, "name": "Trail"}
    )
    [message] = h.outbox.sent
    assert message.body == "instead of 130.00 EUR"


async def test_a_session_end_rule_fires_when_the_grace_period_ends(
    run: MakeEngine,
) -> None:
    h = await run(example("session-end"))
    busy = await h.open(session="busy")
    for _ in range(3):
        await h.event(busy, "view")
    await h.engine.detach(busy)
    await h.at(29)
    assert h.outbox.sent == []
    await h.at(30)
    assert [m.title for m in h.outbox.sent] == ["Thanks for the visit: 3 pages"]
    assert await sent_at(h) == [30.0]

    brief = await h.open(session="brief")
    await h.event(brief, "view")
    await h.event(brief, "view")
    await h.engine.end(brief)
    await h.at(1000)
    assert len(h.outbox.sent) == 1


# conditions


async def test_session_paths_read_the_earlier_cart_and_the_session_age(
    run: MakeEngine,
) -> None:
    h = await run(example("session-paths"))
    peer = await h.open()
    await h.event(peer, "cart", price=150, brand="acme")
    await h.at(200)
    await h.event(peer, "view")
    assert await h.decisions("considered_purchase") == []
    await h.at(400)
    await h.event(peer, "view")
    assert [m.title for m in h.outbox.sent] == ["Your acme is still in the cart"]


async def test_user_attributes_come_from_the_profile(run: MakeEngine) -> None:
    h = await run(example("session-paths"))
    await h.store.set_user_attributes("default", "free", {"plan": "free"})
    free = await h.open(user="free", session="a")
    await h.event(free, "view")
    unknown = await h.open(user="unknown", session="b")
    await h.event(unknown, "view")
    assert [m["title"] for m in free.messages] == ["Compare plans"]
    assert unknown.messages == []


async def test_true_is_not_one_and_text_never_orders_against_a_number(
    run: MakeEngine,
) -> None:
    h = await run(example("types"))
    peer = await h.open()
    await h.event(peer, "signup", newsletter=1)
    await h.event(peer, "view", price="5")
    assert await h.decisions() == []
    await h.event(peer, "signup", newsletter=True)
    await h.event(peer, "view", price=5)
    assert await h.outcomes("opted_in") == ["sent"]
    assert await h.outcomes("cheap_item") == ["sent"]


async def test_a_missing_property_only_makes_its_own_comparison_false(
    run: MakeEngine,
) -> None:
    h = await run(example("types"))
    peer = await h.open()
    await h.event(peer, "cart", price=150, category="voucher")
    await h.event(peer, "cart", price="150", category="shoes")
    assert await h.decisions() == []
    await h.event(peer, "cart", price=150, category="shoes")
    await h.event(peer, "cart", quantity=5)
    assert await h.outcomes("gift_or_bulk") == ["sent", "sent"]


async def test_text_tests_look_inside_texts_and_lists(run: MakeEngine) -> None:
    h = await run(example("text-tests"))
    peer = await h.open()
    for query, page in [
        ("Gift for dad", "/shop/men"),
        ("gift for dad", "/blog/gifts"),
        ("gift for dad", "/shop/men"),
    ]:
        await h.event(peer, "search", query=query, page=page)
    assert await h.outcomes("gift_search") == ["sent"]
    await h.event(peer, "view", tags=["new", "sales"])
    await h.event(peer, "view", tags=["new", "sale"], coupon="X1")
    assert await h.outcomes("sale_without_coupon") == []
    await h.event(peer, "view", tags=["new", "sale"])
    await h.event(peer, "view", tags="summer sale", coupon=None)
    assert await h.outcomes("sale_without_coupon") == ["sent", "sent"]


async def test_the_third_cart_counts_two_earlier_ones_in_the_local_evening(
    run: MakeEngine,
) -> None:
    h = await run(example("text-tests"))
    here = await open_in(h, "UTC", user="utc")
    there = await open_in(h, "Europe/Berlin", user="berlin")
    for peer in (here, there):
        for _ in range(4):
            await h.event(peer, "cart")
    decisions = await h.decisions("third_cart_in_the_evening")
    assert [(d.user, d.decision) for d in decisions] == [("utc", "sent")]


async def test_if_is_checked_at_the_trigger_and_again_at_the_send(
    run: MakeEngine,
) -> None:
    h = await run(example("if"))
    await h.store.set_user_attributes("default", "u1", {"plan": "free"})
    peer = await h.open()
    await h.event(peer, "view", page="pricing")
    await h.event(peer, "view", page="home")
    await h.at(10)
    await h.event(peer, "view", page="pricing")
    assert await h.decisions() == []
    await h.at(3610)
    assert await sent_at(h) == [3610.0]

    later = await h.open(session="s2")
    for page in ("home", "cart", "pricing"):
        await h.event(later, "view", page=page)
    await h.store.set_user_attributes("default", "u1", {"plan": "pro"})
    await h.at(7210)
    [_, unmet] = await h.decisions()
    assert (unmet.decision, unmet.reason, unmet.at) == (
        "unmet",
        "the 'if' condition no longer held at send time",
        T0 + 7210,
    )


# timing


async def test_wait_sends_after_thirty_minutes_even_after_the_session_ended(
    run: MakeEngine,
) -> None:
    h = await run(example("wait"))
    peer = await h.open()
    await h.event(peer, "cart", brand="acme")
    await h.engine.end(peer)
    await h.at(1799)
    assert h.outbox.sent == []
    await h.at(1800)
    assert [m.title for m in h.outbox.sent] == ["Your acme is waiting in the cart"]


async def test_wait_after_session_end_counts_from_the_end(run: MakeEngine) -> None:
    h = await run(example("wait"))
    peer = await h.open()
    await h.event(peer, "search", results=0, query="red & blue")
    await h.at(500)
    await h.event(peer, "view")
    await h.engine.detach(peer)  # ends at 530
    await h.at(530 + 3599)
    assert h.outbox.sent == []
    await h.at(530 + 3600)
    [message] = h.outbox.sent
    assert message.title == "New arrivals for 'red & blue'"
    assert message.link == "shop://search?q=red%20%26%20blue"
    [decision] = await h.decisions()
    assert decision.triggered_at == T0


async def test_at_nine_sends_at_nine_on_the_devices_clock(run: MakeEngine) -> None:
    h = await run(example("at"))
    berlin = await open_in(h, "Europe/Berlin", user="b")
    new_york = await open_in(h, "America/New_York", user="n")
    await h.event(berlin, "wishlist")
    await h.event(new_york, "wishlist")
    await h.engine.advance(utc("2023-11-15T07:59:59"))
    assert h.outbox.sent == []
    await h.engine.advance(utc("2023-11-15T20:00:00"))
    decisions = await h.decisions()
    assert [(d.user, d.decision, d.at) for d in decisions] == [
        ("b", "sent", utc("2023-11-15T08:00:00")),
        ("n", "sent", utc("2023-11-15T14:00:00")),
    ]


# policy


async def test_a_purchase_on_the_phone_suppresses_with_the_documented_reason(
    run: MakeEngine,
) -> None:
    h = await run(example("unless"))
    web = await h.open(session="web")
    await h.event(web, "cart")
    await h.at(600)
    phone = await h.open(session="phone")
    await h.event(phone, "purchase")
    await h.at(3600)
    assert h.outbox.sent == []
    [decision] = await h.decisions()
    assert decision.decision == "suppressed"
    assert decision.reason == (
        "'purchase' arrived at 2023-11-14T22:23:20Z before the send"
    )
    assert decision.at == T0 + 600


async def test_unless_where_filters_and_other_users_cancel_nothing(
    run: MakeEngine,
) -> None:
    h = await run(example("unless"))
    mine = await h.open(user="u1", session="s1")
    await h.event(mine, "cart")
    theirs = await h.open(user="u2", session="s2")
    await h.event(theirs, "purchase")
    await h.event(mine, "cart_cleared", items=2)
    await h.at(1900)
    assert await h.outcomes() == ["sent"]

    again = await h.open(user="u1", session="s3")
    await h.event(again, "cart")
    await h.event(again, "cart_cleared", items=0)
    await h.at(9000)
    assert await h.outcomes() == ["sent", "suppressed"]


async def test_a_cart_after_the_purchase_is_sent_as_usual(run: MakeEngine) -> None:
    h = await run(example("unless"))
    peer = await h.open()
    await h.event(peer, "purchase")
    await h.at(10)
    await h.event(peer, "cart")
    await h.at(3600)
    assert await sent_at(h) == [1810.0]


async def test_each_new_cart_restarts_the_debounced_reminder(run: MakeEngine) -> None:
    h = await run(example("debounce"))
    peer = await h.open()
    await h.event(peer, "cart")
    await h.at(60)
    await h.event(peer, "cart")
    await h.at(5000)
    decisions = await h.decisions()
    assert [(d.decision, d.at - T0) for d in decisions] == [
        ("suppressed", 60.0),
        ("sent", 1860.0),
    ]


async def test_the_second_trigger_of_a_session_is_capped_at_send_time(
    run: MakeEngine,
) -> None:
    h = await run(example("limits"))
    peer = await h.open()
    await h.event(peer, "view", price=900)
    await h.at(10)
    await h.event(peer, "view", price=950)
    await h.at(600)
    decisions = await h.decisions()
    assert [(d.decision, d.at - T0) for d in decisions] == [
        ("sent", 60.0),
        ("capped", 70.0),
    ]
    assert decisions[1].reason == "limit 1 per session reached"


async def test_the_per_user_limit_caps_a_third_session_at_trigger(
    run: MakeEngine,
) -> None:
    h = await run(example("limits"))
    for n in range(2):
        peer = await h.open(session=f"s{n}")
        await h.event(peer, "view", price=900)
        await h.at(100 * (n + 1))
    third = await h.open(session="s2")
    await h.event(third, "view", price=900)
    decisions = await h.decisions()
    assert [d.decision for d in decisions] == ["sent", "sent", "capped"]
    assert decisions[2].reason == "limit 2 per user per 24h reached"
    assert decisions[2].at == decisions[2].triggered_at == T0 + 200


async def test_the_daily_limit_starts_again_at_local_midnight(
    run: MakeEngine,
) -> None:
    h = await run(example("per-day"))
    for n, moment in enumerate(("22:13:20", "22:59:59", "23:00:00")):
        await h.engine.advance(utc(f"2023-11-14T{moment}"))
        peer = await open_in(h, "Europe/Berlin", session=f"visit{n}")
        await h.event(peer, "view", page="deals")
    decisions = await h.decisions()
    assert [(d.decision, d.reason) for d in decisions][:2] == [
        ("sent", "delivered by outbox"),
        ("capped", "limit 1 per user per day reached"),
    ]
    assert [d.decision for d in decisions] == ["sent", "capped", "sent"]


async def test_quiet_hours_defer_the_cart_push_to_eight_in_the_morning(
    run: MakeEngine,
) -> None:
    h = await run(example("quiet-hours"))
    peer = await open_in(h, "UTC")
    await h.event(peer, "cart")
    await h.engine.advance(utc("2023-11-15T07:59:59"))
    assert h.outbox.sent == []
    await h.engine.advance(utc("2023-11-15T08:00:00"))
    [deferred, decision] = await h.decisions("cart_evening")
    assert (deferred.decision, deferred.reason) == (
        "deferred",
        "inside quiet hours; deferred to 2023-11-15T08:00:00Z",
    )
    assert (decision.decision, decision.at, decision.triggered_at) == (
        "sent",
        utc("2023-11-15T08:00:00"),
        T0,
    )


async def test_default_quiet_hours_defer_a_rule_without_its_own(
    run: MakeEngine, tmp_path: Path
) -> None:
    h = await run(example("default-quiet-hours"))
    h.engine.app_policy["default"] = policy_before("default-quiet-hours", tmp_path)
    peer = await open_in(h, "UTC")
    await h.event(peer, "view", page="orders")
    await h.event(peer, "view", page="deals")
    assert await h.outcomes("late_deal") == ["sent"]
    [deferred] = await h.decisions("order_tip")
    assert (deferred.decision, deferred.reason) == (
        "deferred",
        "inside quiet hours; deferred to 2023-11-15T08:00:00Z",
    )
    await h.engine.advance(utc("2023-11-15T08:00:00"))
    assert await h.outcomes("order_tip") == ["deferred", "sent"]


async def test_outside_its_quiet_hours_a_user_is_sent_at_once(
    run: MakeEngine,
) -> None:
    h = await run(example("quiet-hours"))
    peer = await open_in(h, "America/New_York")
    await h.event(peer, "cart")
    await h.at(600)
    assert await sent_at(h, "cart_evening") == [600.0]


async def test_quiet_hours_with_drop_record_quiet_and_send_nothing(
    run: MakeEngine,
) -> None:
    h = await run(example("quiet-hours"))
    peer = await open_in(h, "UTC")
    await h.event(peer, "view", page="sale")
    [decision] = await h.decisions("flash_sale")
    assert (decision.decision, decision.reason) == (
        "quiet",
        "inside quiet hours until 2023-11-15T09:00:00Z; dropped",
    )
    assert h.outbox.sent == []


USERS = [
    "ann",
    "bob",
    "cy",
    "dee",
    "eve",
    "fay",
    "gus",
    "hal",
    "ivy",
    "jo",
    "kim",
    "lou",
    "max",
    "ned",
    "ola",
    "pat",
]
USERS += ["quinn", "rae", "sam", "tom", "uma", "vic", "wes", "xia", "yan", "zoe"]


async def test_the_holdout_holds_out_the_same_two_users_every_time(
    run: MakeEngine,
) -> None:
    h = await run(example("holdout"))
    for user in USERS:
        peer = await h.open(user=user, session=user)
        await h.event(peer, "cart")
        await h.engine.end(peer)
    decisions = await h.decisions("winback")
    held = [(d.user, d.reason) for d in decisions if d.decision == "held_out"]
    assert held == [
        ("ivy", "in the 10% holdout of this rule"),
        ("vic", "in the 10% holdout of this rule"),
    ]
    assert len([d for d in decisions if d.decision == "sent"]) == len(USERS) - 2


async def test_each_user_always_gets_the_same_variant(run: MakeEngine) -> None:
    h = await run(example("variants"))
    for round_ in range(2):
        for user in ("ann", "bob", "cy", "dee", "eve", "fay"):
            peer = await h.open(user=user, session=f"{user}{round_}")
            await h.event(peer, "cart")
        await h.at(3600 * (round_ + 1))
    got = {(d.user, d.message["variant"]) for d in await h.decisions() if d.message}
    assert got == {
        ("ann", "long"),
        ("bob", "long"),
        ("fay", "long"),
        ("cy", "short"),
        ("dee", "short"),
        ("eve", "short"),
    }
    titles = {m.user: m.title for m in h.outbox.sent}
    assert (titles["cy"], titles["ann"]) == (
        "Your cart misses you",
        "Your cart is saved",
    )


async def test_a_paid_purchase_is_recorded_as_a_goal_of_the_rule(
    run: MakeEngine,
) -> None:
    h = await run(example("goal"))
    peer = await h.open()
    await h.event(peer, "cart")
    await h.at(60)
    await h.event(peer, "purchase", price=0)
    await h.at(120)
    await h.event(peer, "purchase", price=50)
    goals = await h.store.goals()
    assert [(g.rule, g.user, g.session, g.at) for g in goals] == [
        ("cart_recovery_goal", "u1", "s1", T0 + 120)
    ]
    assert await h.outcomes() == ["suppressed"]


async def test_the_higher_priority_welcome_comes_first(run: MakeEngine) -> None:
    h = await run(example("priority"))
    await h.store.set_user_attributes("default", "u1", {"tier": "vip"})
    peer = await h.open()
    assert [m["title"] for m in peer.messages] == ["Welcome, VIP", "Welcome"]


async def test_under_a_global_cap_only_the_vip_welcome_is_sent(
    run: MakeEngine,
) -> None:
    h = await run(example("priority"))
    h.engine.app_policy["default"] = AppPolicy(
        caps=(CompiledLimit(1, "session", None),)
    )
    await h.store.set_user_attributes("default", "u1", {"tier": "vip"})
    peer = await h.open()
    assert [m["title"] for m in peer.messages] == ["Welcome, VIP"]
    [capped] = await h.decisions("generic_welcome")
    assert (capped.decision, capped.reason) == (
        "capped",
        "global cap 1 per session reached",
    )


def policy_before(name: str, tmp_path: Path) -> AppPolicy:
    """The app policy of the ``toml`` block just before the example ``name``,
    read by the config loader as ``serve --config`` reads it."""
    index = next(i for i, b in enumerate(BLOCKS) if b.marker == name)
    block = BLOCKS[index - 1]
    assert block.lang == "toml", f"no toml block before the {name!r} example"
    path = tmp_path / "config.toml"
    path.write_text(f'[apps.shop]\nsigning_secret = "{"s" * 32}"\n' + block.text)
    return load_gateway_config(str(path)).policies["shop"]


async def test_a_global_cap_counts_every_rule_but_webhooks(
    run: MakeEngine, tmp_path: Path
) -> None:
    h = await run(example("global-cap"))
    h.engine.app_policy["default"] = policy_before("global-cap", tmp_path)
    peer = await h.open()
    await h.event(peer, "view")
    await h.event(peer, "cart")
    await h.event(peer, "view")
    await h.event(peer, "cart")
    assert [m.title for m in h.outbox.sent if m.channel == "push"] == [
        "Tip of the day",
        "Your cart is saved",
    ]
    assert await h.outcomes("browse_tip") == ["sent", "capped"]
    assert await h.outcomes("cart_crm") == ["sent", "sent"]
    capped = (await h.decisions("browse_tip"))[1]
    assert capped.reason == "global cap 2 per user per 24h reached"


# actions


async def test_a_push_carries_title_body_link_and_ttl(run: MakeEngine) -> None:
    h = await run(example("push"))
    peer = await h.open()
    await h.event(peer, "shipped", order_id="A17")
    [message] = h.outbox.sent
    assert (message.title, message.body, message.link, message.ttl) == (
        "Your order is on its way",
        "Track order A17 in the app.",
        "https://shop.example/orders/A17",
        6 * 3600,
    )
    [decision] = await h.decisions()
    assert (decision.decision, decision.reason) == ("sent", "delivered by outbox")


async def test_a_push_with_nowhere_to_go_is_unreachable(run: MakeEngine) -> None:
    h = await run(example("push"))
    h.engine.fallback = None
    peer = await h.open()
    await h.event(peer, "shipped", order_id="A17")
    [decision] = await h.decisions()
    assert (decision.decision, decision.reason) == (
        "unreachable",
        "no push subscription on a configured channel",
    )


async def test_an_inapp_message_reaches_the_open_socket_after_the_wait(
    run: MakeEngine,
) -> None:
    h = await run(example("inapp"))
    peer = await h.open()
    await h.event(peer, "view", page="checkout")
    await h.at(60)
    assert [(m["title"], m["link"]) for m in peer.messages] == [
        ("Need a hand with checkout?", "/help/checkout")
    ]
    [decision] = await h.decisions()
    assert decision.reason == "delivered to 1 of 1 sockets"


async def test_an_inapp_message_without_an_open_socket_is_unreachable(
    run: MakeEngine,
) -> None:
    h = await run(example("inapp"))
    peer = await h.open()
    await h.event(peer, "view", page="checkout")
    await h.engine.detach(peer)
    await h.at(60)
    [decision] = await h.decisions()
    assert (decision.decision, decision.reason) == (
        "unreachable",
        "no open socket for an in-app message",
    )


async def test_an_inapp_message_reaches_another_session_of_the_user(
    run: MakeEngine,
) -> None:
    h = await run(example("inapp"))
    first = await h.open(session="first")
    await h.event(first, "view", page="checkout")
    await h.engine.detach(first)
    await h.at(40)
    second = await h.open(session="second")
    await h.at(60)
    assert first.messages == []
    assert [m["title"] for m in second.messages] == ["Need a hand with checkout?"]


async def test_a_push_carries_image_urgency_collapse_data_and_ttl(
    run: MakeEngine,
) -> None:
    h = await run(example("push-fields"))
    peer = await h.open()
    await h.engine.event(peer, "restock", {"name": "Trail runner", "sku": "TR-9"})
    [message] = h.outbox.sent
    assert (message.title, message.image, message.urgency) == (
        "Trail runner is back",
        "https://cdn.shop.example/TR-9.jpg",
        "high",
    )
    assert (message.collapse, message.ttl, message.data) == (
        "restock",
        86400,
        {"sku": "TR-9", "source": "restock"},
    )


async def test_localised_text_follows_the_device_language(run: MakeEngine) -> None:
    h = await run(example("localised"))
    for user, lang in [("a", "de-AT"), ("b", "fr"), ("c", "es"), ("d", None)]:
        await h.event(await open_in(h, user=user, lang=lang), "cart")
    assert [(m.title, m.body) for m in h.outbox.sent] == [
        ("Noch da?", "Dein Warenkorb ist gespeichert."),
        ("Toujours là ?", "Your cart is saved."),
        ("Still there?", "Your cart is saved."),
        ("Still there?", "Your cart is saved."),
    ]


async def test_an_inapp_message_with_else_push_becomes_a_push_without_a_socket(
    run: MakeEngine,
) -> None:
    h = await run(example("else-push"))
    tab = await h.open(session="tab")
    await h.event(tab, "view", page="checkout")
    await h.at(120)
    assert [m["title"] for m in tab.messages] == ["Need help with checkout?"]

    closed = await h.open(user="u2", session="closed")
    await h.event(closed, "view", page="checkout")
    await h.engine.detach(closed)
    await h.at(300)
    [message] = h.outbox.sent
    assert (message.user, message.title, message.link) == (
        "u2",
        "Need help with checkout?",
        "/help/checkout",
    )
    assert [(d.decision, d.channel) for d in await h.decisions()] == [
        ("sent", "inapp"),
        ("sent", "push"),
    ]


async def test_a_webhook_action_posts_the_decision_and_is_capped_like_a_push(
    run: MakeEngine,
) -> None:
    h = await run(example("webhook"))
    peer = await h.open()
    await h.event(peer, "purchase", price=999)
    await h.event(peer, "purchase", price=1200)
    await h.event(peer, "purchase", price=1500)
    assert [(m.channel, m.webhook) for m in h.outbox.sent] == [("webhook", "crm")]
    assert [(d.decision, d.channel) for d in await h.decisions()] == [
        ("sent", "webhook"),
        ("capped", "webhook"),
    ]
    h.engine.fallback = None
    later = await h.open(user="u2", session="s2")
    await h.event(later, "purchase", price=1200)
    [decision] = (await h.decisions())[-1:]
    assert (decision.decision, decision.reason) == (
        "unreachable",
        "no webhook transport is configured",
    )


# templates


async def test_the_filters_render_as_documented(run: MakeEngine) -> None:
    h = await run(example("filters"))
    peer = await h.open()
    props = {
        "brand": "aCME outdoor",
        "name": "Trail runner shoes",
        "price": 1234.5,
        "query": "red & blue/shoes",
    }
    await h.engine.event(peer, "view", props)
    [message] = h.outbox.sent
    assert message.title == "ACME OUTDOOR / acme outdoor / Acme Outdoor"
    assert message.body == "Trail runne… costs 1,234.50 EUR; no coupon"
    assert message.link == "/search?q=red%20%26%20blue%2Fshoes"


async def test_missing_values_render_empty_and_numbers_lose_a_trailing_zero(
    run: MakeEngine,
) -> None:
    h = await run(example("filters"))
    peer = await h.open()
    await h.event(peer, "cart", price=19.0, quantity=2.5, gift=True)
    assert [m.title for m in h.outbox.sent] == ["Hi ! 19 2.5 true"]


# decisions


async def test_consent_withdrawn_during_the_wait_is_no_consent(
    run: MakeEngine,
) -> None:
    h = await run(example("decisions"))
    peer = await h.open()
    await h.event(peer, "cart")
    await h.store.set_consent("default", "u1", False)
    await h.at(60)
    [decision] = await h.decisions()
    assert (decision.decision, decision.reason) == (
        "no_consent",
        "the user withdrew consent before the send",
    )


async def test_a_trigger_without_consent_is_no_consent_at_once(
    run: MakeEngine,
) -> None:
    h = await run(example("decisions"))
    await h.store.set_consent("default", "u1", False)
    peer = await h.open()
    await h.event(peer, "cart")
    [decision] = await h.decisions()
    assert (decision.decision, decision.reason, decision.at) == (
        "no_consent",
        "the user has not consented to messages",
        T0,
    )
    assert await h.store.pending_timers() == []


async def test_a_refused_push_fails_and_still_uses_up_the_limit(
    run: MakeEngine,
) -> None:
    h = await run(example("decisions"))
    h.engine.fallback = RefusingTransport()
    peer = await h.open()
    await h.event(peer, "cart")
    await h.at(70)
    await h.event(peer, "cart")
    decisions = await h.decisions()
    assert [(d.decision, d.reason) for d in decisions] == [
        ("failed", "webpush: 410 gone"),
        ("capped", "limit 1 per session reached"),
    ]


async def test_a_waiting_send_of_a_removed_rule_is_dropped(run: MakeEngine) -> None:
    h = await run(example("decisions"))
    peer = await h.open()
    await h.event(peer, "cart")
    h.engine.set_rules(compile_rules([]))
    await h.at(60)
    [decision] = await h.decisions()
    assert (decision.decision, decision.reason) == (
        "dropped",
        "the rule is no longer in the rule set",
    )


async def test_only_declared_app_schemes_are_sent(
    run: MakeEngine, tmp_path: Path
) -> None:
    h = await run(example("app-schemes"))
    h.engine.app_policy["default"] = policy_before("app-schemes", tmp_path)
    peer = await h.open()
    await h.event(peer, "cart", id="a b")
    assert [m.link for m in h.outbox.sent] == ["shop://cart/a%20b"]


def test_an_undeclared_app_scheme_refuses_the_start_as_documented(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = next(i for i, b in enumerate(BLOCKS) if b.marker == "app-schemes")
    policy, shown = BLOCKS[index - 1], BLOCKS[index + 1]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rules").mkdir()
    text = example("app-schemes").replace("shop://cart", "ftp://cart")
    (tmp_path / "rules" / "shop.rules").write_text(text, encoding="utf-8")
    (tmp_path / "c.toml").write_text(
        f'[apps.shop]\nsigning_secret = "{"s" * 32}"\n'
        'rules = ["rules/shop.rules"]\n' + policy.text
    )
    (tmp_path / "c.toml").chmod(0o600)
    with pytest.raises(ConfigError) as caught:
        create_app(Settings(rules=("rules",), config="c.toml"))
    assert str(caught.value) + "\n" == shown.text


# sessionpush fmt


def text_after(name: str) -> str:
    """The text block that follows the rules block marked ``name``."""
    index = next(i for i, b in enumerate(BLOCKS) if b.marker == name)
    after = BLOCKS[index + 1]
    assert after.lang == "text", f"no text block after the {name!r} example"
    return after.text


async def test_fmt_writes_the_documented_layout_and_the_rule_still_runs(
    run: MakeEngine, tmp_path: Path
) -> None:
    before = example("fmt")
    path = tmp_path / "messy.rules"
    path.write_text(before, encoding="utf-8")
    assert run_fmt([str(path)], io.StringIO(), check=True) == 1
    assert run_fmt([str(path)], io.StringIO()) == 0
    after = path.read_text(encoding="utf-8")
    # The marker comment between rules is kept before the rule.
    assert after == "# example: fmt\n" + text_after("fmt")
    assert run_fmt([str(path)], io.StringIO(), check=True) == 0

    for text in (before, after):
        h = await run(text)
        peer = await h.open()
        await h.event(peer, "view", page="home", price=2)
        await h.event(peer, "view", page="home", price=5)
        await h.event(peer, "view", page="home", price=6)
        assert await h.outcomes() == ["sent", "capped"]


# known limitations


async def test_an_unless_event_closes_an_open_absence_window(
    run: MakeEngine,
) -> None:
    h = await run(example("limitations"))
    peer = await h.open()
    await h.event(peer, "view", page="pricing")
    await h.at(60)
    await h.event(peer, "purchase")
    await h.at(120)
    assert await sent_at(h, "pricing_help") == []


async def test_an_absence_window_outlives_the_session(run: MakeEngine) -> None:
    h = await run(example("limitations"))
    peer = await h.open()
    await h.event(peer, "view", page="pricing")
    await h.engine.end(peer)
    await h.at(120)
    [decision] = await h.decisions("pricing_help")
    assert (decision.decision, decision.at) == ("unreachable", T0 + 120)


async def test_the_text_reads_the_current_cart_while_where_reads_the_previous(
    run: MakeEngine,
) -> None:
    h = await run(example("limitations"))
    peer = await h.open()
    await h.event(peer, "cart", brand="a")
    await h.event(peer, "cart", brand="b")
    assert [m.title for m in h.outbox.sent] == ["Now b"]


async def test_a_rendered_link_to_another_site_is_refused_at_send(
    run: MakeEngine,
) -> None:
    h = await run(example("limitations"))
    peer = await h.open()
    await h.event(peer, "share", path="/evil.example")
    assert h.outbox.sent == []
    [decision] = await h.decisions("shared_page")
    assert decision.decision == "failed"
    assert decision.reason == (
        "the link '//evil.example' is refused: "
        "it starts with // and would go to another site"
    )
