"""The checker: rules that parse but cannot work are refused, with a hint."""

from __future__ import annotations

import pytest

from sessionpush.dsl import tree as t
from sessionpush.dsl.check import check_file, check_files, format_duration
from sessionpush.dsl.errors import Diagnostic
from sessionpush.dsl.parse import parse_text


def problems(text: str, path: str = "shop.rules") -> list[Diagnostic]:
    return check_file(parse_text(text, path))


def only(text: str) -> tuple[str, str | None, tuple[int, int, int]]:
    found = problems(text)
    assert len(found) == 1, found
    d = found[0]
    return d.message, d.hint, (d.line, d.column, d.end_column)


def in_rule(clauses: str) -> str:
    return f"rule r {{\n    {clauses}\n}}"


# -- a clean rule ----------------------------------------------------------------


def test_a_sound_rule_has_no_problems() -> None:
    assert (
        problems(
            "rule r { when view where price > 5 and session.events > 3 "
            "wait 10m unless purchase limit 1 per user per 24h "
            "push { title \"{brand | default: 'x' | truncate: 20}\" "
            'link "https://shop.example/a?b={sku | urlencode}" ttl 28d } }'
        )
        == []
    )


# -- durations and limits --------------------------------------------------------


@pytest.mark.parametrize("duration", ["0s", "-5m"])
def test_a_wait_of_zero_or_less_is_refused(duration: str) -> None:
    assert only(in_rule(f'when view wait {duration} push {{ title "a" }}')) == (
        f"wait must be longer than zero, got {duration}",
        "remove the wait to send at once, or wait a positive time like 10m",
        (2, 15, 15 + 5 + len(duration)),
    )


def test_within_of_zero_is_refused() -> None:
    message, hint, _ = only(
        in_rule('when view then no cart within 0ms push { title "a" }')
    )
    assert message == "'within' must be longer than zero, got 0s"
    assert hint == "give 'cart' time to come, like: within 2m"


def test_a_limit_below_one_is_refused() -> None:
    assert only(in_rule('when view limit 0 per session push { title "a" }')) == (
        "limit 0 would never let a message through",
        "a limit counts from 1, like: limit 1 per session",
        (2, 15, 34),
    )


def test_a_limit_per_user_needs_a_window() -> None:
    assert only(in_rule('when view limit 3 per user push { title "a" }')) == (
        "a limit per user needs a window",
        "add one, like: limit 3 per user per 24h",
        (2, 15, 31),
    )


def test_a_limit_window_of_zero_is_refused() -> None:
    message, _, _ = only(
        in_rule('when view limit 1 per user per 0s push { title "a" }')
    )
    assert message == "a limit window must be longer than zero, got 0s"


def test_a_ttl_above_28_days_is_refused() -> None:
    assert only(in_rule('when view push { title "a" ttl 29d }')) == (
        "ttl 29d is longer than 28 days",
        "use 28d or less: push services (FCM first) keep a message at most 28 days",
        (2, 15, 41),
    )


def test_a_ttl_of_zero_is_refused() -> None:
    message, _, _ = only(in_rule('when view push { title "a" ttl 0s }'))
    assert message == "ttl must be longer than zero, got 0s"


# -- filters ------------------------------------------------------------------------


def test_an_unknown_filter_suggests_the_closest_one() -> None:
    found = problems(
        'rule r {\n    when view\n    push {\n        title "{search.query | '
        'truncat: 30}"\n    }\n}',
        "rules/shop.rules",
    )
    source = '        title "{search.query | truncat: 30}"'
    assert [d.format(source) for d in found] == [
        "rules/shop.rules:4:32: unknown filter 'truncat'\n"
        '    title "{search.query | truncat: 30}"\n'
        "                           ^^^^^^^\n"
        "did you mean 'truncate'?"
    ]


def test_an_unknown_filter_far_from_any_lists_them_all() -> None:
    message, hint, _ = only(in_rule('when view push { title "{x | zzz}" }'))
    assert message == "unknown filter 'zzz'"
    assert hint == (
        "the filters are: default, lower, money, title, truncate, upper, urlencode"
    )


@pytest.mark.parametrize(
    ("placeholder", "message", "hint"),
    [
        (
            "x | truncate",
            "filter 'truncate' takes 1 argument, got 0",
            "write it like: {price | truncate: 30}",
        ),
        (
            "x | upper: 1",
            "filter 'upper' takes no arguments, got 1",
            "write it like: {price | upper}",
        ),
        (
            "x | money: 'EUR', 2",
            "filter 'money' takes 0 to 1 arguments, got 2",
            "write it like: {price | money: 'EUR'}",
        ),
        (
            "x | default: 'a', 'b'",
            "filter 'default' takes 1 argument, got 2",
            "write it like: {price | default: 'fallback'}",
        ),
    ],
)
def test_a_filter_with_the_wrong_number_of_arguments(
    placeholder: str, message: str, hint: str
) -> None:
    found = only(in_rule(f'when view push {{ title "{{{placeholder}}}" }}'))
    assert found[:2] == (message, hint)


def test_truncate_needs_a_positive_whole_length() -> None:
    message, _, where = only(
        in_rule("when view push { title \"{x | truncate: 'a'}\" }")
    )
    assert message == "truncate takes a whole number of characters, 1 or more"
    assert where == (2, 44, 47)


def test_money_takes_a_currency_in_quotes() -> None:
    message, _, _ = only(in_rule('when view push { title "{x | money: 2}" }'))
    assert message == "money takes a currency in quotes"


# -- paths ----------------------------------------------------------------------------


def test_an_unknown_session_field_suggests_the_closest() -> None:
    assert only(in_rule('when view where session.evnts > 3 push { title "a" }')) == (
        "unknown session field 'evnts'",
        "did you mean 'session.events'?",
        (2, 21, 34),
    )


def test_an_unknown_session_field_far_from_any_explains_session_has() -> None:
    message, hint, _ = only(in_rule('when view where session.cart push { title "a" }'))
    assert message == "unknown session field 'cart'"
    assert hint == (
        "a session has: events, duration, count(E), clock; to test for an "
        "event, write: session has cart"
    )


def test_session_fields_have_no_fields() -> None:
    message, _, _ = only(
        in_rule('when view where session.duration.x > 1 push { title "a" }')
    )
    assert message == "session.duration is a number and has no field 'x'"


def test_an_unknown_session_field_in_a_template_is_found_too() -> None:
    message, _, _ = only(in_rule('when view push { title "{session.counts}" }'))
    assert message == "unknown session field 'counts'"


@pytest.mark.parametrize("path", ["price", "event.price"])
def test_event_paths_are_refused_when_the_session_ends(path: str) -> None:
    message, hint, _ = only(
        in_rule(f'when session ends where {path} > 3 push {{ title "a" }}')
    )
    assert message == (
        "'event.price' reads the event being matched, but 'when session ends' "
        "matches no event"
    )
    assert hint == (
        "test the session instead, like: session has cart, or session.events > 3"
    )


def test_an_event_path_under_idle_names_the_idle_trigger() -> None:
    message, _, _ = only(in_rule('when idle 5m where price > 3 push { title "a" }'))
    assert message == (
        "'event.price' reads the event being matched, but 'when idle' matches no event"
    )


def test_last_is_refused_in_a_session_end_condition() -> None:
    assert only(
        in_rule('when session ends where last(cart).price > 3 push { title "a" }')
    ) == (
        "'last(cart).price' cannot be used in the 'where' of 'when session ends'",
        "test the session with: session has cart; last(...) is for templates",
        (2, 29, 45),
    )


def test_a_session_end_template_reads_last_events_not_the_trigger() -> None:
    assert (
        problems(in_rule('when session ends push { title "{last(cart).brand}" }')) == []
    )
    message, hint, _ = only(in_rule('when session ends push { title "{brand}" }'))
    assert message == (
        "'event.brand' reads the event that triggered the rule, but 'when "
        "session ends' has none"
    )
    assert hint == "read the last event of a name instead, like: last(cart).price"


def test_event_paths_in_unless_and_absence_conditions_are_fine() -> None:
    assert (
        problems(
            in_rule(
                'when session ends unless purchase where price > 3 push { title "a" }'
            )
        )
        == []
    )
    assert (
        problems(
            in_rule(
                "when view where price > 3 then no cart where qty > 1 within 1m "
                'push { title "a" }'
            )
        )
        == []
    )


# -- links --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "link",
    ["https://shop.example/p?x=1", "/pricing#compare", "shop://cart", "app://x/{id}"],
)
def test_https_paths_and_app_schemes_are_valid_links(link: str) -> None:
    assert problems(in_rule(f'when view push {{ title "a" link "{link}" }}')) == []


@pytest.mark.parametrize(
    ("link", "scheme"),
    [
        ("javascript:alert(1)", "javascript"),
        ("JavaScript:alert(1)", "javascript"),
        (" java\\tscript:alert(1)", "javascript"),
        ("data:text/html,<b>x</b>", "data"),
        ("vbscript:x", "vbscript"),
        # The same set the send refuses (engine.links): check agrees with it.
        ("file:///etc/passwd", "file"),
        ("blob:https://x.example/1", "blob"),
    ],
)
def test_script_and_data_links_are_refused(link: str, scheme: str) -> None:
    message, hint, _ = only(in_rule(f'when view push {{ title "a" link "{link}" }}'))
    assert message == f"'{scheme}:' links are not allowed"
    assert hint == (
        "they run code or carry content in the receiver; a link is an https: "
        "URL, an app link like shop://cart, or a path like /cart"
    )


def test_a_plain_http_link_is_refused_with_the_https_form() -> None:
    assert only(in_rule('when view push { title "a" link "http://x.example/a" }')) == (
        "links must use https, not http",
        "write https://x.example/a",
        (2, 37, 57),
    )


def test_a_protocol_relative_link_is_refused() -> None:
    message, _, _ = only(in_rule('when view push { title "a" link "//evil.example" }'))
    assert message == "a link starting with // goes to another site"


def test_a_link_that_is_no_link_is_refused() -> None:
    message, hint, _ = only(in_rule('when view inapp { title "a" link "cart" }'))
    assert message == "'cart' is not a link"
    assert hint == (
        "a link is an https: URL, an app link like shop://cart, or a path like /cart"
    )


def test_a_link_must_not_start_with_a_placeholder() -> None:
    message, _, _ = only(in_rule('when view push { title "a" link "{user.url}" }'))
    assert message == "a link must begin with fixed text, not a placeholder"


# -- names ----------------------------------------------------------------------------


def test_a_rule_name_used_twice_in_a_file_is_refused() -> None:
    found = problems(
        'rule r { when view push { title "a" } }\n'
        'rule r { when cart push { title "b" } }'
    )
    assert [(d.message, d.hint, d.line) for d in found] == [
        (
            "rule 'r' is defined twice",
            "the first is at shop.rules:1:1; rule names are unique across all "
            "rule files, rename one",
            2,
        )
    ]


def test_a_rule_name_used_in_two_files_is_refused() -> None:
    first = parse_text('rule r { when view push { title "a" } }', "a.rules")
    second = parse_text('\n\nrule r { when view push { title "a" } }', "b.rules")
    found = check_files([first, second])
    assert [(d.path, d.line, d.message) for d in found] == [
        ("b.rules", 3, "rule 'r' is defined twice")
    ]
    assert found[0].hint is not None
    assert found[0].hint.startswith("the first is at a.rules:1:1")


def test_every_problem_of_a_file_is_reported_in_line_order() -> None:
    found = problems(
        "rule r {\n"
        "    when view where session.x > 1\n"
        "    wait 0s\n"
        "    limit 0 per user\n"
        '    push { title "{a | nope}" link "javascript:x" ttl 30d }\n'
        "}"
    )
    assert [(d.line, d.message) for d in found] == [
        (2, "unknown session field 'x'"),
        (3, "wait must be longer than zero, got 0s"),
        (4, "limit 0 would never let a message through"),
        (4, "a limit per user needs a window"),
        (5, "ttl 30d is longer than 28 days"),
        (5, "unknown filter 'nope'"),
        (5, "'javascript:' links are not allowed"),
    ]


# -- helpers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (600.0, "10m"),
        (86400.0, "1d"),
        (5400.0, "1.5h"),
        (0.5, "500ms"),
        (0.0, "0s"),
        (-300.0, "-5m"),
        (90.0, "1.5m"),
    ],
)
def test_durations_are_written_back_as_rule_authors_write_them(
    seconds: float, text: str
) -> None:
    assert format_duration(seconds) == text


def test_check_file_accepts_an_empty_file() -> None:
    assert check_file(t.RuleFile("a.rules", ())) == []
