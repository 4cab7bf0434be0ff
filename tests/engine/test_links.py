"""Rendered links: what may be sent and what is refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sessionpush.engine.links import link_problem


@pytest.mark.parametrize(
    "link",
    ["https://shop.example/cart", "shop://cart", "/help/choosing", "/", "app+x://a"],
)
def test_https_app_links_and_paths_are_allowed(link: str) -> None:
    assert link_problem(link) is None


@pytest.mark.parametrize(
    ("link", "problem"),
    [
        ("//evil.example", "it starts with // and would go to another site"),
        ("/\\evil.example", "it starts with // and would go to another site"),
        ("javascript:alert(1)", "'javascript:' links run code or carry content"),
        (" Java\tScript:alert(1)", "'javascript:' links run code or carry content"),
        ("data:text/html,hi", "'data:' links run code or carry content"),
        ("http://shop.example", "it uses http, not https"),
        ("cart", "it is neither a URL nor a path"),
    ],
)
def test_links_elsewhere_or_running_code_are_refused(link: str, problem: str) -> None:
    assert link_problem(link) == problem


@given(st.text(alphabet=st.sampled_from("/\\\t\nab:."), max_size=12))
def test_any_text_after_a_fixed_path_start_stays_on_the_site_or_is_refused(
    tail: str,
) -> None:
    problem = link_problem("/" + tail)
    # A browser drops tabs and line breaks anywhere in a URL.
    seen = tail.replace("\t", "").replace("\n", "").replace("\r", "")
    stays = not seen.startswith(("/", "\\"))
    assert (problem is None) == stays


@pytest.mark.parametrize(
    ("link", "allowed"),
    [
        ("shop://cart", True),
        ("SHOP://cart", True),
        ("https://shop.example", True),
        ("/cart", True),
        ("mailto:team@shop.example", False),
        ("s\thop://cart", True),
        ("ftp://files", False),
        ("http://shop.example", False),
    ],
)
def test_declared_app_schemes_limit_the_links_that_may_be_sent(
    link: str, allowed: bool
) -> None:
    assert (link_problem(link, frozenset({"shop"})) is None) is allowed
