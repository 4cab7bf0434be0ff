"""The parser: every construct of the core language becomes the right tree."""

from __future__ import annotations

import pytest

from sessionpush.dsl import tree as t
from sessionpush.dsl.parse import parse_text

PUSH_A = 'push { title "a" }'


def only_rule(text: str) -> t.Rule:
    rules = parse_text(text, "test.rules").rules
    assert len(rules) == 1
    return rules[0]


def where_of(condition: str) -> t.Expr | None:
    trigger = only_rule(f"rule r {{ when view where {condition} {PUSH_A} }}").trigger
    assert isinstance(trigger, t.EventTrigger)
    return trigger.where


def ev(*parts: str) -> t.Path:
    return t.Path("event", parts)


def lit(value: t.LiteralValue, is_duration: bool = False) -> t.Literal:
    return t.Literal(value, is_duration)


def text(*parts: str | t.Placeholder) -> t.Template:
    return t.Template(parts)


# -- files and rules ------------------------------------------------------------


def test_an_empty_file_or_one_of_comments_has_no_rules() -> None:
    assert parse_text("", "a.rules") == t.RuleFile("a.rules", ())
    assert parse_text("# nothing yet\n\n   # really\n").rules == ()


def test_a_file_holds_several_rules_in_written_order() -> None:
    rule_file = parse_text(
        f"rule b {{ when view {PUSH_A} }}\nrule a {{ when cart {PUSH_A} }}"
    )
    assert [rule.name for rule in rule_file.rules] == ["b", "a"]


def test_a_rule_may_have_a_title() -> None:
    rule = only_rule(f'rule r "Recover carts" {{ when view {PUSH_A} }}')
    assert rule.name == "r"
    assert rule.title == "Recover carts"


def test_a_minimal_rule_is_a_trigger_and_an_action() -> None:
    assert only_rule(f"rule r {{ when view {PUSH_A} }}") == t.Rule(
        name="r",
        trigger=t.EventTrigger("view"),
        action=t.PushAction(title=text("a")),
    )


def test_clauses_come_in_any_order() -> None:
    first = only_rule(
        f"rule r {{ when view wait 1m unless buy limit 1 per session {PUSH_A} }}"
    )
    shuffled = only_rule(
        f"rule r {{ {PUSH_A} limit 1 per session unless buy wait 1m when view }}"
    )
    assert first == shuffled


def test_keywords_are_names_where_only_a_name_can_come() -> None:
    rule = only_rule(
        "rule push { when view where event.title == user.session "
        'and last(rule).when == 1 inapp { title "a" } }'
    )
    assert rule.name == "push"
    assert rule.trigger == t.EventTrigger(
        "view",
        t.And(
            t.Compare("==", ev("title"), t.Path("user", ("session",))),
            t.Compare("==", t.Path("last", ("when",), "rule"), lit(1)),
        ),
    )


def test_a_keyword_inside_a_longer_word_is_not_a_keyword() -> None:
    rule = only_rule(f"rule r {{ when whenever where nothing == 1 {PUSH_A} }}")
    assert rule.trigger == t.EventTrigger(
        "whenever", t.Compare("==", ev("nothing"), lit(1))
    )


# -- triggers ---------------------------------------------------------------------


def test_when_event_with_a_condition() -> None:
    rule = only_rule(f"rule r {{ when add_to_cart where price > 5 {PUSH_A} }}")
    assert rule.trigger == t.EventTrigger(
        "add_to_cart", t.Compare(">", ev("price"), lit(5))
    )


def test_when_event_then_no_other_event_within_a_duration() -> None:
    rule = only_rule(
        "rule r { when view where price > 500 then no cart where qty >= 2 "
        f"within 2m {PUSH_A} }}"
    )
    assert rule.trigger == t.AbsenceTrigger(
        first=t.EventTrigger("view", t.Compare(">", ev("price"), lit(500))),
        absent="cart",
        absent_where=t.Compare(">=", ev("qty"), lit(2)),
        within=120.0,
    )


def test_absence_without_conditions() -> None:
    rule = only_rule(f"rule r {{ when view then no cart within 30s {PUSH_A} }}")
    assert rule.trigger == t.AbsenceTrigger(t.EventTrigger("view"), "cart", None, 30.0)


def test_when_session_ends_with_and_without_a_condition() -> None:
    plain = only_rule(f"rule r {{ when session ends {PUSH_A} }}")
    assert plain.trigger == t.SessionEndTrigger()

    rule = only_rule(
        "rule r { when session ends where session has cart "
        f"and not session has purchase {PUSH_A} }}"
    )
    assert rule.trigger == t.SessionEndTrigger(
        t.And(t.SessionHas("cart"), t.Not(t.SessionHas("purchase")))
    )


# -- after the trigger ------------------------------------------------------------


@pytest.mark.parametrize(
    ("clause", "expected"),
    [
        ("wait 10m", t.Wait(600.0)),
        ("wait 500ms", t.Wait(0.5)),
        ("wait 1.5h", t.Wait(5400.0)),
        ("wait 7d after session end", t.Wait(604800.0, after_session_end=True)),
    ],
)
def test_wait(clause: str, expected: t.Wait) -> None:
    assert only_rule(f"rule r {{ when view {clause} {PUSH_A} }}").wait == expected


def test_several_unless_clauses_with_and_without_conditions() -> None:
    rule = only_rule(
        "rule r { when view unless purchase unless refund where amount > 10 "
        f"{PUSH_A} }}"
    )
    assert rule.unless == (
        t.Unless("purchase"),
        t.Unless("refund", t.Compare(">", ev("amount"), lit(10))),
    )


def test_limits_per_session_and_per_user() -> None:
    rule = only_rule(
        "rule r { when view limit 1 per session limit 3 per user per 24h "
        f"limit 2 per user {PUSH_A} }}"
    )
    assert rule.limits == (
        t.Limit(1, "session"),
        t.Limit(3, "user", 86400.0),
        t.Limit(2, "user", None),
    )


# -- actions ------------------------------------------------------------------------


def test_push_with_every_field_in_any_order() -> None:
    rule = only_rule(
        'rule r { when view push { ttl 6h link "shop://cart" body "b" title "t" } }'
    )
    assert rule.action == t.PushAction(
        title=text("t"), body=text("b"), link=text("shop://cart"), ttl=21600.0
    )


def test_inapp_with_title_body_and_link() -> None:
    rule = only_rule(
        'rule r { when view inapp { title "t" body \'b\' link "/pricing#x" } }'
    )
    assert rule.action == t.InappAction(
        title=text("t"), body=text("b"), link=text("/pricing#x")
    )


# -- conditions ---------------------------------------------------------------------


@pytest.mark.parametrize("op", ["==", "!=", "<", "<=", ">", ">="])
def test_every_comparison_operator(op: str) -> None:
    assert where_of(f"price {op} 3") == t.Compare(op, ev("price"), lit(3))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("price", ev("price")),
        ("event.price", ev("price")),
        ("event.a.b", ev("a", "b")),
        ("a.b", ev("a", "b")),
        ("user.plan", t.Path("user", ("plan",))),
        ("device.platform", t.Path("device", ("platform",))),
        ("session.events", t.Path("session", ("events",))),
        ("session.duration", t.Path("session", ("duration",))),
        ("last(cart).brand", t.Path("last", ("brand",), "cart")),
        ("last(cart).brand.name", t.Path("last", ("brand", "name"), "cart")),
    ],
)
def test_paths(source: str, expected: t.Path) -> None:
    assert where_of(f"{source} == 1") == t.Compare("==", expected, lit(1))


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('"hi"', lit("hi")),
        ("'hi'", lit("hi")),
        (r'"a\"b\\c\n\t\r\u00e9"', lit('a"b\\c\n\t\r\u00e9')),
        (r"'it\'s'", lit("it's")),
        ("42", lit(42)),
        ("-7", lit(-7)),
        ("2.5", lit(2.5)),
        ("-0.25", lit(-0.25)),
        ("true", lit(True)),
        ("false", lit(False)),
        ("null", lit(None)),
        ("500ms", lit(0.5, True)),
        ("30s", lit(30.0, True)),
        ("10m", lit(600.0, True)),
        ("6h", lit(21600.0, True)),
        ("7d", lit(604800.0, True)),
        ("1.5h", lit(5400.0, True)),
        ("1.1m", lit(66.0, True)),
    ],
)
def test_literals(source: str, expected: t.Literal) -> None:
    condition = where_of(f"x == {source}")
    assert isinstance(condition, t.Compare)
    assert condition.right == expected
    assert type(condition.right.value) is type(expected.value)


def test_a_duration_literal_is_marked_as_one() -> None:
    condition = where_of("session.duration > 10m")
    assert isinstance(condition, t.Compare)
    assert condition.right == t.Literal(600.0, is_duration=True)
    assert condition.right != t.Literal(600.0)


def test_in_and_not_in_lists() -> None:
    assert where_of("device.platform in [\"web\", 'android',]") == t.InList(
        t.Path("device", ("platform",)), t.ListExpr((lit("web"), lit("android")))
    )
    assert where_of("price not in [1, 2.5, null]") == t.InList(
        ev("price"), t.ListExpr((lit(1), lit(2.5), lit(None))), negated=True
    )
    assert where_of("price in []") == t.InList(ev("price"), t.ListExpr(()))


def test_not_binds_tighter_than_and_which_binds_tighter_than_or() -> None:
    a, b, c = (t.Compare("==", ev(n), lit(1)) for n in "abc")
    assert where_of("not a == 1 and b == 1 or c == 1") == t.Or(t.And(t.Not(a), b), c)
    assert where_of("a == 1 or b == 1 and not c == 1") == t.Or(a, t.And(b, t.Not(c)))


def test_and_and_or_group_to_the_left() -> None:
    a, b, c = (t.SessionHas(n) for n in "abc")
    assert where_of("session has a and session has b and session has c") == (
        t.And(t.And(a, b), c)
    )
    assert where_of("session has a or session has b or session has c") == (
        t.Or(t.Or(a, b), c)
    )


def test_parentheses_override_precedence() -> None:
    a, b, c = (t.SessionHas(n) for n in "abc")
    assert where_of("not (session has a or session has b) and session has c") == t.And(
        t.Not(t.Or(a, b)), c
    )


def test_a_bare_path_or_literal_is_a_condition() -> None:
    assert where_of("is_member") == ev("is_member")
    assert where_of("not true") == t.Not(lit(True))


# -- templates -----------------------------------------------------------------------


def title_of(template: str) -> t.Template:
    return only_rule(f"rule r {{ when view push {{ title {template} }} }}").action.title


def test_a_template_without_placeholders_is_static() -> None:
    template = title_of('"Hello"')
    assert template == text("Hello")
    assert template.is_static


def test_a_template_mixes_text_and_placeholders() -> None:
    template = title_of("\"Hi {user.name}, {price | money: 'EUR'}!\"")
    assert template == text(
        "Hi ",
        t.Placeholder(t.Path("user", ("name",))),
        ", ",
        t.Placeholder(ev("price"), (t.Filter("money", (lit("EUR"),)),)),
        "!",
    )
    assert not template.is_static


def test_a_placeholder_chains_filters_with_several_arguments() -> None:
    template = title_of(
        "\"{last(cart).brand | default: 'your cart' | truncate: 30 | upper}\""
    )
    assert template == text(
        t.Placeholder(
            t.Path("last", ("brand",), "cart"),
            (
                t.Filter("default", (lit("your cart"),)),
                t.Filter("truncate", (lit(30),)),
                t.Filter("upper"),
            ),
        )
    )
    several = title_of("\"{x | pick: 1, 'a', true}\"")
    assert several == text(
        t.Placeholder(ev("x"), (t.Filter("pick", (lit(1), lit("a"), lit(True))),))
    )


def test_doubled_braces_are_literal_braces() -> None:
    assert title_of('"{{not}} a {x} }}"') == text(
        "{not} a ", t.Placeholder(ev("x")), " }"
    )


def test_a_quoted_brace_inside_a_placeholder_does_not_close_it() -> None:
    assert title_of("\"{x | default: '}'}\"") == text(
        t.Placeholder(ev("x"), (t.Filter("default", (lit("}"),)),))
    )


def test_escapes_work_in_text_and_in_placeholder_arguments() -> None:
    assert title_of(r'"\"{x | default: \"it\'s\"}\""') == text(
        '"', t.Placeholder(ev("x"), (t.Filter("default", (lit("it's"),)),)), '"'
    )
