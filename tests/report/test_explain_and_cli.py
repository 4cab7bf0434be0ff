"""``explain`` and ``report`` over a store the engine wrote."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import pytest

from sessionpush.cli import main
from sessionpush.engine.clock import VirtualClock
from sessionpush.engine.core import Engine
from sessionpush.engine.policy import bucket
from sessionpush.report.explain import explain, explain_text
from sessionpush.store.base import Device
from sessionpush.store.sqlite import SQLiteStore
from tests.engine.conftest import T0, Peer, RecordingTransport
from tests.rulesets import ruleset_from_text

RULES = """\
rule cart_nudge {
    when cart
    holdout 50%
    limit 1 per user per 24h
    goal purchase within 1h
    push { title "a" }
}
"""


def users_in_each_group() -> tuple[str, str]:
    names = [f"user{n}" for n in range(20)]
    held = next(u for u in names if bucket("holdout", "cart_nudge", u) < 5000)
    treated = next(u for u in names if bucket("holdout", "cart_nudge", u) >= 5000)
    return treated, held


async def write_store(path: Path) -> None:
    """The treated user carts twice (the second is capped) and buys after
    ten minutes; the held-out user carts once and never buys."""
    store = SQLiteStore(str(path))
    await store.open()
    clock = VirtualClock(T0)
    engine = Engine(
        ruleset_from_text(RULES), store, clock, fallback=RecordingTransport()
    )
    await engine.start()
    treated, held = users_in_each_group()
    for user in (treated, held):
        peer = Peer()
        device = Device(app="default", user=user, device_id=f"{user}:web")
        await engine.open(peer, device, f"s-{user}")
        await engine.event(peer, "cart", {})
        await engine.event(peer, "cart", {})
        if user == treated:
            await engine.advance(T0 + 600)
            await engine.event(peer, "purchase", {})
    await store.close()


@pytest.fixture
def store_file(tmp_path: Path) -> Path:
    path = tmp_path / "state.db"
    asyncio.run(write_store(path))
    (tmp_path / "r.rules").write_text(RULES)
    return path


def test_explain_tells_the_trail_newest_first_in_plain_words(
    store_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    treated, held = users_in_each_group()
    rules = str(store_file.parent / "r.rules")
    args = ["explain", "--store", str(store_file), "--rules", rules]
    assert main([*args, "--user", treated, "--json"]) == 0
    entries = msgspec.json.decode(capsys.readouterr().out)
    assert [e["decision"] for e in entries] == ["capped", "sent"]
    assert entries[0]["explanation"] == (
        "not sent: a limit was reached (limit 1 per user per 24h reached)"
    )
    assert entries[1]["converted"] is True
    assert entries[1]["delivery"] == []

    assert main([*args, "--user", held]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert "cart_nudge: not sent: a limit was reached" in lines[0]
    assert "in the rule's holdout" in lines[1]
    assert lines[1].endswith("[not converted]")


def test_explain_of_an_unknown_user_says_so() -> None:
    assert explain_text(explain("nobody", [], [], [], [])) == (
        "no decisions recorded for this user"
    )


def test_report_prints_the_funnel_and_the_lift(
    store_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = str(store_file.parent / "r.rules")
    assert main(["report", "--store", str(store_file), "--rules", rules]) == 0
    out = capsys.readouterr().out
    funnel, lift = out.split("\n\n")[:2]
    header, _, row = funnel.splitlines()
    assert header.split()[:6] == ["rule", "triggered", "capped", "held", "out", "sent"]
    # Four carts: the treated user's first is sent and its second capped;
    # the held-out user's first is held out and takes the cap slot, so its
    # second is capped too. The treated user's purchase converts the send.
    assert row.split() == ["cart_nudge", "4", "2", "1", "1", "1", "0", "0", "0", "1"]
    assert "1/1 100.0%" in lift and "0/1 0.0%" in lift and "+100.0" in lift


def test_report_as_json_carries_exact_rates(
    store_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = str(store_file.parent / "r.rules")
    args = ["report", "--store", str(store_file), "--rules", rules, "--json"]
    assert main([*args, "--since", "2023-11-14T00:00:00Z"]) == 0
    report = msgspec.json.decode(capsys.readouterr().out)
    (rule,) = report["rules"]
    assert rule["funnel"]["skipped"]["capped"] == 2
    assert rule["comparisons"][0]["treated_rate"] == 1.0
    assert rule["comparisons"][0]["holdout_rate"] == 0.0
    assert main([*args, "--since", "1h"]) == 0
    report = msgspec.json.decode(capsys.readouterr().out)
    assert report["rules"][0]["funnel"]["triggered"] == 0


def test_report_refuses_a_since_it_cannot_read(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["report", "--since", "yesterday"])
    assert "neither an ISO-8601 time" in capsys.readouterr().err
