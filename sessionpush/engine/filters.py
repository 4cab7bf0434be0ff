"""The filters of template placeholders: ``{last(cart).brand | default: 'x'}``.

Each filter is a plain function of the value and its arguments. Values come
from events and profiles that the rule author does not control, so a filter
never raises: ``None`` reads as empty text, numbers as their text, and a
filter that cannot apply to a value hands it on unchanged.

:data:`FILTERS` is the registry the checker validates names and argument
counts against, and the renderer calls through.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from urllib.parse import quote

__all__ = [
    "FILTERS",
    "FilterSpec",
    "default",
    "lower",
    "money",
    "title",
    "truncate",
    "upper",
    "urlencode",
]

_ELLIPSIS = "\u2026"
_CENTS = Decimal("0.01")
_WORD = re.compile(r"\S+")


@dataclass(frozen=True, slots=True)
class FilterSpec:
    """A filter and how many arguments it takes.

    Attributes:
        func: Called as ``func(value, *args)``.
        min_args: The fewest arguments a placeholder may give.
        max_args: The most arguments a placeholder may give.
        usage: How the filter is written, for error hints.
    """

    func: Callable[..., object]
    min_args: int
    max_args: int
    usage: str = ""


def _text(value: object) -> str:
    # Booleans print the way rule authors write them, not as Python does.
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    try:
        return str(value)
    except ValueError:
        # Python refuses to print an int of more than 4300 digits (a guard
        # against CVE-2020-10735); Decimal prints it in scientific notation.
        return f"{Decimal(value):.6e}" if isinstance(value, int) else ""
    except RecursionError:
        return ""


def default(value: object, fallback: object) -> object:
    """``default: x``: the value, or ``x`` when it is null or empty text."""
    if value is None or value == "":
        return fallback
    return value


def truncate(value: object, length: object) -> str:
    """``truncate: n``: at most ``n`` characters, ending in "…" when cut.

    A length that is not a whole number of zero or more leaves the text
    whole: a typo in a rule should not blank a message.
    """
    text = _text(value)
    if isinstance(length, bool) or not isinstance(length, int | float):
        return text
    if not math.isfinite(length) or length < 0:
        return text
    limit = int(length)
    if len(text) <= limit:
        return text
    if limit == 0:
        return ""
    return text[: limit - 1] + _ELLIPSIS


def upper(value: object) -> str:
    """``upper``: the text in capitals."""
    return _text(value).upper()


def lower(value: object) -> str:
    """``lower``: the text in small letters."""
    return _text(value).lower()


def title(value: object) -> str:
    """``title``: each word capitalised, the spaces between kept as they are.

    Unlike :meth:`str.title`, a word is what lies between spaces, so that
    "don't" becomes "Don't", not "Don'T".
    """
    return _WORD.sub(lambda m: m[0][:1].upper() + m[0][1:].lower(), _text(value))


def urlencode(value: object) -> str:
    """``urlencode``: the text percent-encoded for a URL, ``/`` included."""
    # "replace": a lone surrogate from a JSON payload must not raise.
    return quote(_text(value), safe="", errors="replace")


def money(value: object, currency: object = None) -> object:
    """``money`` or ``money: 'EUR'``: ``1,234.50`` or ``1,234.50 EUR``.

    Rounds half up to cents, as people do on receipts (binary floats would
    print 2.675 as 2.67). Anything that is not a finite number, numeric text
    included, is handed on unchanged.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return value
    try:
        amount = Decimal(repr(value) if isinstance(value, float) else value)
        if not amount.is_finite():
            return value
        text = f"{amount.quantize(_CENTS, rounding=ROUND_HALF_UP):,.2f}"
    except (InvalidOperation, ValueError):
        return value
    unit = _text(currency).strip()
    return f"{text} {unit}" if unit else text


FILTERS: dict[str, FilterSpec] = {
    "default": FilterSpec(default, 1, 1, "default: 'fallback'"),
    "truncate": FilterSpec(truncate, 1, 1, "truncate: 30"),
    "upper": FilterSpec(upper, 0, 0, "upper"),
    "lower": FilterSpec(lower, 0, 0, "lower"),
    "title": FilterSpec(title, 0, 0, "title"),
    "urlencode": FilterSpec(urlencode, 0, 0, "urlencode"),
    "money": FilterSpec(money, 0, 1, "money: 'EUR'"),
}
