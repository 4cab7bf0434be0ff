"""``matches "regex"`` at run time: real matches, and a time bound that a
slow pattern cannot outrun."""

from __future__ import annotations

from typing import Any

from sessionpush.dsl import tree
from sessionpush.dsl.compile import compile_expr
from sessionpush.engine.session import Session


def _matches(pattern: str) -> Any:
    node = tree.TextTest(
        op="matches",
        left=tree.Path(root="event", parts=("q",)),
        right=tree.Literal(pattern),
    )
    pred = compile_expr(node)
    session = Session("a", "u", "s", 0.0, {}, {})
    return lambda value: pred({"q": value}, session)


def test_a_pattern_matches_anywhere_in_the_value() -> None:
    test = _matches(r"^red (shoes|boots)$")
    assert test("red shoes") is True
    assert test("red hat") is False
    assert test(None) is False
    assert test(42) is False


def test_a_cubic_pattern_gives_up_in_bounded_time_and_does_not_match() -> None:
    # With Python's re this search takes over a minute on 1,000 characters;
    # the time bound makes it a non-match instead of a stalled engine.
    test = _matches("a*a*a*b")
    assert test("a" * 5000) is False
    assert test("aaab") is True
