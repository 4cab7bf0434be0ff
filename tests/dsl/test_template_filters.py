"""The template filters: what each does, and that none raises on odd values."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sessionpush.engine.filters import (
    FILTERS,
    default,
    lower,
    money,
    title,
    truncate,
    upper,
    urlencode,
)


def test_the_registry_holds_the_filters_of_the_language_with_their_arity() -> None:
    assert {name: (s.min_args, s.max_args) for name, s in FILTERS.items()} == {
        "default": (1, 1),
        "truncate": (1, 1),
        "upper": (0, 0),
        "lower": (0, 0),
        "title": (0, 0),
        "urlencode": (0, 0),
        "money": (0, 1),
    }
    assert FILTERS["truncate"].func is truncate


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, "x"), ("", "x"), ("a", "a"), (0, 0), (False, False), (" ", " ")],
)
def test_default_replaces_only_null_and_empty_text(
    value: object, expected: object
) -> None:
    assert default(value, "x") == expected


@pytest.mark.parametrize(
    ("value", "length", "expected"),
    [
        ("abcdef", 10, "abcdef"),
        ("abcdef", 6, "abcdef"),
        ("abcdef", 4, "abc\u2026"),
        ("abcdef", 1, "\u2026"),
        ("abcdef", 0, ""),
        (None, 3, ""),
        (12345, 3, "12\u2026"),
        ("abc", "x", "abc"),
        ("abc", -1, "abc"),
        ("abc", True, "abc"),
        ("abcdef", 4.9, "abc\u2026"),
        ("abc", float("nan"), "abc"),
    ],
)
def test_truncate_cuts_to_at_most_n_characters_with_an_ellipsis(
    value: object, length: object, expected: str
) -> None:
    assert truncate(value, length) == expected


def test_case_filters() -> None:
    assert upper("straße") == "STRASSE"
    assert lower("ÀB") == "àb"
    assert title("don't  stop me") == "Don't  Stop Me"
    assert upper(None) == lower(None) == title(None) == ""
    assert upper(True) == "TRUE"


def test_urlencode_quotes_everything_but_unreserved_characters() -> None:
    assert urlencode("a b/c?d=é&") == "a%20b%2Fc%3Fd%3D%C3%A9%26"
    assert urlencode(None) == ""
    assert urlencode("\ud800") == "%3F"


@pytest.mark.parametrize(
    ("value", "currency", "expected"),
    [
        (1234.5, None, "1,234.50"),
        (1234.5, "EUR", "1,234.50 EUR"),
        (2.675, None, "2.68"),
        (-1000000, None, "-1,000,000.00"),
        (0, "", "0.00"),
        (Decimal("9.995"), "USD", "10.00 USD"),
        ("12", "EUR", "12"),
        (None, "EUR", None),
        (True, None, True),
        (float("inf"), None, float("inf")),
        (1e40, None, 1e40),
    ],
)
def test_money_formats_numbers_and_hands_on_the_rest(
    value: object, currency: object, expected: object
) -> None:
    assert money(value, currency) == expected


def test_an_integer_too_long_to_print_still_renders() -> None:
    assert upper(10**5000) == "1.000000E+5000"
    assert money(10**5000) == 10**5000


ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.decimals(),
    st.text(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@given(
    name=st.sampled_from(sorted(FILTERS)),
    value=ODD_VALUES,
    args=st.lists(ODD_VALUES, max_size=1),
)
def test_no_filter_raises_on_any_value(
    name: str, value: object, args: list[object]
) -> None:
    spec = FILTERS[name]
    if len(args) < spec.min_args:
        args = [*args, None]
    args = args[: spec.max_args]
    spec.func(value, *args)
