"""Syntax errors and how they read: what was expected, what came, a hint."""

from __future__ import annotations

import pytest

from sessionpush.dsl.errors import Diagnostic, RulesError
from sessionpush.dsl.parse import MAX_NESTING, parse_text


def error_of(text: str) -> str:
    with pytest.raises(RulesError) as caught:
        parse_text(text, "shop.rules")
    return caught.value.render()


# -- rendering ------------------------------------------------------------------


def test_a_diagnostic_renders_location_line_carets_and_hint() -> None:
    diagnostic = Diagnostic(
        "rules/shop.rules",
        14,
        32,
        39,
        "unknown filter 'truncat'",
        "did you mean 'truncate'?",
    )
    source = '        title "{search.query | truncat: 30}"'
    assert diagnostic.format(source) == (
        "rules/shop.rules:14:32: unknown filter 'truncat'\n"
        '    title "{search.query | truncat: 30}"\n'
        "                           ^^^^^^^\n"
        "did you mean 'truncate'?"
    )


def test_render_uses_the_line_the_diagnostic_carries() -> None:
    diagnostic = Diagnostic("a.rules", 1, 1, 5, "bad", None, "rule x {")
    assert diagnostic.render() == "a.rules:1:1: bad\n    rule x {\n    ^^^^"


def test_without_a_source_line_only_the_header_and_hint_remain() -> None:
    diagnostic = Diagnostic("a.rules", 3, 2, 4, "bad", "fix it")
    assert diagnostic.render() == "a.rules:3:2: bad\nfix it"


def test_a_whole_file_problem_has_no_line_or_column() -> None:
    diagnostic = Diagnostic("gone.rules", 0, 0, 0, "no such file or directory")
    assert diagnostic.render() == "gone.rules: no such file or directory"


def test_carets_keep_tabs_so_they_line_up() -> None:
    diagnostic = Diagnostic("a.rules", 1, 5, 8, "bad", None, "\tx\ty abc")
    assert diagnostic.render() == "a.rules:1:5: bad\n    x\ty abc\n     \t ^^^"


def test_an_end_column_of_zero_underlines_to_the_end_of_the_line() -> None:
    diagnostic = Diagnostic("a.rules", 1, 6, 0, "bad", None, "rule x {")
    assert diagnostic.render().endswith("    rule x {\n         ^^^")


def test_a_rules_error_shows_every_diagnostic_with_blank_lines_between() -> None:
    error = RulesError(
        [Diagnostic("a.rules", 1, 1, 2, "one"), Diagnostic("b.rules", 2, 1, 2, "two")]
    )
    assert str(error) == "a.rules:1:1: one\n\nb.rules:2:1: two"
    assert len(error.diagnostics) == 2


def test_a_rules_error_without_diagnostics_is_a_bug() -> None:
    with pytest.raises(ValueError, match="at least one"):
        RulesError([])


# -- golden syntax errors ----------------------------------------------------------


def test_a_misspelt_clause_keyword_lists_the_clauses_and_suggests_one() -> None:
    assert error_of('rule r {\n    whenn view\n    push { title "a" }\n}') == (
        "shop.rules:2:5: expected one of: a clause (when, wait, push, ...), "
        "'}', came 'whenn'\n"
        "    whenn view\n"
        "    ^^^^^\n"
        "did you mean 'when'?"
    )


def test_an_unknown_word_where_a_clause_belongs_explains_a_rule() -> None:
    assert error_of('rule r { when view send { title "a" } }') == (
        "shop.rules:1:20: expected one of: a clause (when, wait, push, ...), "
        "where, as, then, '}', came 'send'\n"
        '    rule r { when view send { title "a" } }\n'
        "                       ^^^^\n"
        "a rule holds a trigger (when), an action (push, inapp or webhook, or "
        "variants of them) and optionally wait, at, unless, if, limit, quiet "
        "hours, holdout, goal and priority clauses"
    )


def test_a_number_without_a_unit_asks_for_a_duration() -> None:
    assert error_of('rule r { when view wait 10 push { title "a" } }') == (
        "shop.rules:1:25: expected a duration like 10m or 24h, came '10'\n"
        '    rule r { when view wait 10 push { title "a" } }\n'
        "                            ^^\n"
        "add a unit (ms, s, m, h or d), for example 10m"
    )


def test_an_unknown_unit_is_not_a_duration() -> None:
    assert error_of('rule r { when view wait 10min push { title "a" } }') == (
        "shop.rules:1:25: expected a duration like 10m or 24h, came '10min'\n"
        '    rule r { when view wait 10min push { title "a" } }\n'
        "                            ^^^^^\n"
        "a number stands alone, and a duration is a number and a unit "
        "(ms, s, m, h or d), like 10m"
    )


def test_a_single_equals_sign_suggests_a_double_one() -> None:
    assert error_of('rule r { when view where plan = "pro" push { title "a" } }') == (
        "shop.rules:1:31: expected a comparison (==, !=, <, <=, >, >=), "
        "came '='\n"
        '    rule r { when view where plan = "pro" push { title "a" } }\n'
        "                                  ^\n"
        "compare with '==', not '='"
    )


def test_a_fractional_limit_asks_for_a_whole_number() -> None:
    assert error_of(
        'rule r { when view limit 1.5 per session push { title "a" } }'
    ) == (
        "shop.rules:1:26: expected a whole number like 3, came '1.5'\n"
        '    rule r { when view limit 1.5 per session push { title "a" } }\n'
        "                             ^^^\n"
        "a count is a whole number, like 1 or 3"
    )


def test_an_unclosed_string_is_reported_at_its_quote() -> None:
    assert error_of('rule r { when view push { title "a }\n}') == (
        "shop.rules:1:33: this string is not closed\n"
        '    rule r { when view push { title "a }\n'
        "                                    ^\n"
        'end it with " on the same line; write \\n for a line break inside '
        "a string"
    )


def test_a_long_list_of_operators_is_named_as_one_group() -> None:
    assert error_of('rule r { when view where plan ~ 1 push { title "a" } }') == (
        "shop.rules:1:31: expected one of: a clause (when, wait, push, ...), "
        "then, an operator (==, <, in, contains, and, or, ...), '.', '}', "
        "came '~'\n"
        '    rule r { when view where plan ~ 1 push { title "a" } }\n'
        "                                  ^"
    )


def test_a_missing_value_names_values_and_paths_as_one_group() -> None:
    message = error_of('rule r { when view where price > } push { title "a" }')
    assert message.split("\n")[0] == (
        "shop.rules:1:34: expected a value or a path "
        "(3, 'text', 10m, price, user.plan, ...), came '}'"
    )


@pytest.mark.parametrize(
    ("symbol", "hint"),
    [
        ("&&", "write 'and' instead of '&'"),
        ("||", "write 'or' instead of '|'"),
        ("!", "write 'not' instead of '!'; for 'not equal', write '!='"),
    ],
)
def test_a_symbol_for_a_logical_word_suggests_the_word(symbol: str, hint: str) -> None:
    text = f'rule r {{ when view where a == 1 {symbol} b push {{ title "a" }} }}'
    assert error_of(text).split("\n")[-1] == hint


def test_two_conditions_without_a_joining_word_suggest_and_or_or() -> None:
    text = 'rule r { when view where a == 1 b == 2 push { title "a" } }'
    assert error_of(text).split("\n")[-1] == ("join two conditions with 'and' or 'or'")


def test_starts_after_session_is_not_read_as_starts_with() -> None:
    message = error_of('rule r { when session push { title "a" } }')
    assert message.split("\n")[0] == (
        "shop.rules:1:23: expected one of: starts, ends, came 'push'"
    )


def test_an_unclosed_rule_is_reported_after_its_last_token() -> None:
    assert error_of("rule r {\n    when view") == (
        "shop.rules:2:14: expected one of: a clause (when, wait, push, ...), "
        "where, as, then, '}', came the end of the file\n"
        "    when view\n"
        "             ^\n"
        "a '{' is not closed: end it with '}'"
    )


def test_a_push_field_that_does_not_exist_lists_the_fields() -> None:
    assert error_of('rule r { when view push { titel "a" } }') == (
        "shop.rules:1:27: expected one of: title, body, link, image, ttl, "
        "urgency, collapse, data, '}', "
        "came 'titel'\n"
        '    rule r { when view push { titel "a" } }\n'
        "                              ^^^^^\n"
        "did you mean 'title'?"
    )


def test_an_unknown_escape_names_the_known_ones() -> None:
    assert error_of(r'rule r { when view push { title "a\qb" } }') == (
        "shop.rules:1:35: '\\q' in this string is not an escape\n"
        '    rule r { when view push { title "a\\qb" } }\n'
        "                                      ^^\n"
        "write \\\\ for a backslash; the escapes are "
        "\\n \\t \\r \\\\ \\\" \\' \\uXXXX"
    )


def test_an_escaped_half_surrogate_is_refused() -> None:
    assert "'\\ud800' in this string is half of a character" in error_of(
        r'rule r { when view push { title "\ud800" } }'
    )


def test_an_error_inside_a_placeholder_points_into_the_string() -> None:
    assert error_of('rule r { when view push { title "Hi {user. | upper}" } }') == (
        "shop.rules:1:44: expected a name, came '|'\n"
        '    rule r { when view push { title "Hi {user. | upper}" } }\n'
        "                                               ^\n"
    ).rstrip("\n")


def test_an_empty_placeholder_asks_for_a_path() -> None:
    message = error_of('rule r { when view push { title "{}" } }')
    assert message.startswith(
        "shop.rules:1:35: expected one of: a name, event, user, device, "
        "session, last, came the end of the placeholder"
    )


def test_an_unclosed_placeholder_suggests_doubling_the_brace() -> None:
    assert error_of('rule r { when view push { title "a { b" } }') == (
        "shop.rules:1:36: this placeholder is not closed\n"
        '    rule r { when view push { title "a { b" } }\n'
        "                                       ^\n"
        "end it with '}', or write '{{' for a literal brace"
    )


def test_a_lone_closing_brace_suggests_doubling_it() -> None:
    assert error_of('rule r { when view push { title "a } b" } }') == (
        "shop.rules:1:36: a '}' closes no placeholder\n"
        '    rule r { when view push { title "a } b" } }\n'
        "                                       ^\n"
        "write '}}' for a literal brace"
    )


def test_a_number_too_large_for_the_stores_is_refused() -> None:
    message = error_of(
        'rule r { when view where n > 9223372036854775808 push { title "a" } }'
    )
    assert message.startswith(
        "shop.rules:1:30: the number '9223372036854775808' is too large"
    )
    assert message.endswith(
        "whole numbers must lie between -9223372036854775808 and 9223372036854775807"
    )


def test_a_condition_nested_too_deeply_is_refused_with_a_clear_error() -> None:
    deep = "not " * (MAX_NESTING + 1) + "x"
    message = error_of(f'rule r {{ when view where {deep} push {{ title "a" }} }}')
    assert (
        f"this condition nests more than {MAX_NESTING} levels of and, or and not"
        in message
    )
    assert message.endswith("split it into simpler conditions or several rules")


def test_a_long_chain_of_and_is_bounded_like_nesting() -> None:
    chain = " and ".join(["session has a"] * (MAX_NESTING + 1))
    with pytest.raises(RulesError):
        parse_text(f'rule r {{ when view where {chain} push {{ title "a" }} }}')


def test_deep_parentheses_parse_without_recursion() -> None:
    deep = "(" * 5000 + "x" + ")" * 5000
    rule_file = parse_text(f'rule r {{ when view where {deep} push {{ title "a" }} }}')
    assert len(rule_file.rules) == 1


def test_control_characters_are_shown_escaped() -> None:
    assert error_of("\x00") == (
        "shop.rules:1:1: expected one of: rule, the end of the file, came '\\x00'\n"
        "    \x00\n"
        "    ^"
    )


# -- structure ------------------------------------------------------------------------


def test_a_rule_without_trigger_or_action_reports_both() -> None:
    assert error_of("rule r {\n    limit 1 per session\n}") == (
        "shop.rules:1:1: rule 'r' has no trigger\n"
        "    rule r {\n"
        "    ^^^^^^^^\n"
        "add one, like: when purchase, or: when session ends\n"
        "\n"
        "shop.rules:1:1: rule 'r' has no action\n"
        "    rule r {\n"
        "    ^^^^^^^^\n"
        'add one, like: push { title "..." } or inapp { title "..." }'
    )


def test_a_second_trigger_action_or_wait_is_reported_where_it_stands() -> None:
    message = error_of(
        "rule r {\n"
        "    when view\n"
        "    when cart\n"
        "    wait 1m\n"
        "    wait 2m\n"
        '    push { title "a" }\n'
        '    inapp { title "b" }\n'
        "}"
    )
    assert message == (
        "shop.rules:3:5: rule 'r' has a second trigger\n"
        "    when cart\n"
        "    ^^^^^^^^^\n"
        "the first is at line 2; a rule has one 'when': write a second rule\n"
        "\n"
        "shop.rules:5:5: rule 'r' waits twice\n"
        "    wait 2m\n"
        "    ^^^^^^^\n"
        "the first is at line 4; keep one wait clause\n"
        "\n"
        "shop.rules:7:5: rule 'r' has a second action\n"
        '    inapp { title "b" }\n'
        "    ^^^^^^^^^^^^^^^^^^^\n"
        "the first is at line 6; a rule sends one push, inapp or webhook; for a "
        "split, write variants"
    )


def test_a_push_without_title_and_a_repeated_field_are_reported() -> None:
    assert error_of('rule r { when view push { body "a" body "b" } }') == (
        "shop.rules:1:36: push has a second body\n"
        '    rule r { when view push { body "a" body "b" } }\n'
        "                                       ^^^^^^^^\n"
        "each field comes at most once; keep one\n"
        "\n"
        "shop.rules:1:20: push has no title\n"
        '    rule r { when view push { body "a" body "b" } }\n'
        "                       ^^^^^^^^^^^^^^^^^^^^^^^^^^\n"
        'add one, like: title "Still there?"; body and link are optional'
    )


def test_ttl_on_an_inapp_message_is_explained() -> None:
    assert error_of('rule r { when view inapp { title "a" ttl 1h } }') == (
        "shop.rules:1:38: inapp has no ttl\n"
        '    rule r { when view inapp { title "a" ttl 1h } }\n'
        "                                         ^^^^^^\n"
        "an in-app message shows while the session is open, or is dropped; "
        "ttl is for push"
    )


def test_one_bad_rule_does_not_hide_the_errors_of_the_next() -> None:
    with pytest.raises(RulesError) as caught:
        parse_text(
            'rule a { when view }\nrule b { push { title "x" } }\n'
            'rule c { when view push { title "x\\q" } }'
        )
    messages = [d.message for d in caught.value.diagnostics]
    assert messages == [
        "rule 'a' has no action",
        "rule 'b' has no trigger",
        "'\\q' in this string is not an escape",
    ]
