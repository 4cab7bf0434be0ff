"""What the checker says about the newer clauses."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from sessionpush.dsl.check import check_file
from sessionpush.dsl.errors import RulesError
from sessionpush.dsl.load import run_check, run_fmt
from sessionpush.dsl.parse import MAX_BYTES, parse_text


def problems(body: str) -> list[tuple[str, str | None, str]]:
    found = check_file(parse_text(f"rule r {{\n    {body}\n}}", "shop.rules"))
    return [(d.message, d.hint, d.severity) for d in found]


def test_variants_that_do_not_sum_to_100_are_an_error() -> None:
    assert problems(
        'when cart variant a 50% { push { title "a" } } '
        'variant b 40% { push { title "b" } }'
    ) == [
        (
            "the variants add up to 90% (50% + 40%), not 100%",
            "every user gets one variant: make the shares sum to 100%",
            "error",
        )
    ]


def test_quiet_hours_with_equal_ends_are_an_error() -> None:
    assert problems('when cart quiet hours 08:00-08:00 push { title "a" }') == [
        (
            "quiet hours that start when they end are empty",
            "give two different times, like: quiet hours 22:00-08:00",
            "error",
        )
    ]


def test_a_catastrophic_pattern_is_refused_before_it_runs() -> None:
    [(message, _, severity)] = problems(
        'when search where query matches "(a+)+$" push { title "a" }'
    )
    assert message.startswith("the pattern '(a+)+$' is refused: a repeat inside")
    assert severity == "error"


def test_if_may_not_read_the_event() -> None:
    [(message, _, _)] = problems('when cart if price > 3 push { title "a" }')
    assert message.startswith("'if' cannot read 'event.price'")


def test_a_collapse_key_over_64_bytes_is_an_error() -> None:
    key = "k" * 65
    [(message, _, _)] = problems(f'when cart push {{ title "a" collapse "{key}" }}')
    assert message == "a collapse key of 65 bytes is over the 64 bytes APNs takes"


def test_an_absence_longer_than_the_idle_timeout_is_accepted() -> None:
    # The window outlives its session (tests/engine: it fires after the end).
    assert problems('when view then no cart within 2h push { title "a" }') == []


def test_a_goal_equal_to_the_trigger_is_a_warning() -> None:
    [(message, _, severity)] = problems(
        'when purchase goal purchase within 1d push { title "a" }'
    )
    assert "is the trigger itself" in message and severity == "warning"


def test_a_misspelt_event_name_used_elsewhere_is_suggested(tmp_path: Path) -> None:
    path = tmp_path / "shop.rules"
    path.write_text(
        'rule a { when purchase push { title "a" } }\n'
        'rule b { when cart unless purchse push { title "b" } }\n'
        'rule c { when view unless purchase push { title "c" } }\n'
    )
    out = io.StringIO()
    assert run_check([str(path)], out) == 0
    assert "warning: no other rule names the event 'purchse'" in out.getvalue()
    assert "did you mean 'purchase'?" in out.getvalue()


def test_a_file_over_the_size_limit_is_refused_at_once() -> None:
    with pytest.raises(RulesError, match="a rule file holds at most"):
        parse_text("#" * (MAX_BYTES + 1), "huge.rules")


def test_fmt_check_lists_unformatted_files_and_fmt_rewrites_them(
    tmp_path: Path,
) -> None:
    path = tmp_path / "a.rules"
    path.write_text('rule r { when cart push { title "a" } }')
    out = io.StringIO()
    assert run_fmt([str(path)], out, check=True) == 1
    assert f"would reformat {path}" in out.getvalue()
    assert run_fmt([str(path)], io.StringIO()) == 0
    assert run_fmt([str(path)], io.StringIO(), check=True) == 0
