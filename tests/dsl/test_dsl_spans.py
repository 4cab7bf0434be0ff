"""Spans: every node points at the line and columns it was written at."""

from __future__ import annotations

from sessionpush.dsl import tree as t
from sessionpush.dsl.parse import parse_text

SOURCE = """\
# the first line is a comment
rule cart_recovery "Recover" {
    when session ends
        where session has cart and user.plan in ["free", "pro"]
    wait 10m
    unless purchase
    limit 1 per user per 24h
    push {
        title "Still thinking about {last(cart).brand | default: 'it'}?"
        body  "Esc\\"aped {price}"
        ttl   6h
    }
}
"""


def parse() -> t.Rule:
    return parse_text(SOURCE, "shop.rules").rules[0]


def test_a_rule_spans_from_its_keyword_to_its_closing_brace() -> None:
    assert parse().span == t.Span(2, 1, 13, 2)


def test_clauses_span_their_own_text() -> None:
    rule = parse()
    assert rule.trigger.span == t.Span(3, 5, 4, 64)
    assert rule.wait is not None
    assert rule.wait.span == t.Span(5, 5, 5, 13)
    assert rule.unless[0].span == t.Span(6, 5, 6, 20)
    assert rule.limits[0].span == t.Span(7, 5, 7, 29)
    assert rule.action.span == t.Span(8, 5, 12, 6)


def test_condition_nodes_span_their_operands() -> None:
    trigger = parse().trigger
    assert isinstance(trigger, t.SessionEndTrigger)
    condition = trigger.where
    assert isinstance(condition, t.And)
    assert condition.span == t.Span(4, 15, 4, 64)
    assert condition.left.span == t.Span(4, 15, 4, 31)
    in_list = condition.right
    assert isinstance(in_list, t.InList)
    assert in_list.operand.span == t.Span(4, 36, 4, 45)
    assert in_list.options.span == t.Span(4, 49, 4, 64)
    assert in_list.options.items[1].span == t.Span(4, 58, 4, 63)


def test_a_template_spans_its_string_with_the_quotes() -> None:
    assert parse().action.title.span == t.Span(9, 15, 9, 73)


def test_placeholder_spans_point_inside_the_string() -> None:
    title = parse().action.title
    placeholder = title.parts[1]
    assert isinstance(placeholder, t.Placeholder)
    assert placeholder.span == t.Span(9, 37, 9, 71)
    assert placeholder.path.span == t.Span(9, 38, 9, 54)
    assert placeholder.filters[0].span == t.Span(9, 57, 9, 70)
    assert placeholder.filters[0].args[0].span == t.Span(9, 66, 9, 70)


def test_an_escape_before_a_placeholder_does_not_shift_its_columns() -> None:
    body = parse().action.body
    assert body is not None
    placeholder = body.parts[1]
    assert isinstance(placeholder, t.Placeholder)
    # `body  "Esc\"aped {price}"`: the brace is at column 26 of the file,
    # although it is the 10th character of the decoded text.
    assert placeholder.span == t.Span(10, 26, 10, 33)
    assert placeholder.path.span == t.Span(10, 27, 10, 32)


def test_spans_do_not_take_part_in_equality() -> None:
    moved = parse_text("\n\n" + SOURCE, "shop.rules").rules[0]
    assert moved == parse()
    assert moved.span != parse().span
