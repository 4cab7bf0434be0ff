"""``matches "regex"``: patterns that cannot hang the engine.

Python's ``re`` backtracks, so a pattern like ``(a+)+$`` takes exponential
time on ``aaaa...!``: one event could stall every session of a process.
Rules are checked before they run, so the dangerous shapes are refused
there, from the parsed pattern: a repeat inside a repeat, an alternation
under a repeat, and back-references. What is left runs in time polynomial
in the text, which can still be slow (``a*a*a*b`` is cubic), so the text is
cut to :data:`MAX_SUBJECT` characters and every match runs with a time
bound of :data:`MATCH_SECONDS` (the ``regex`` package's ``timeout``).
"""

from __future__ import annotations

import importlib
import re
from typing import Any

__all__ = ["MATCH_SECONDS", "MAX_SUBJECT", "pattern_problem"]

MAX_SUBJECT = 1000
"""Characters of a value a pattern looks at; the rest is not searched."""

MATCH_SECONDS = 0.01
"""The most one match may take; a slower one counts as no match."""

# The parser behind re.compile; imported by name because the public alias
# (sre_parse) warns on import since Python 3.11.
_parser: Any = importlib.import_module("re._parser")
_constants: Any = importlib.import_module("re._constants")

_REPEATS = {_constants.MAX_REPEAT, _constants.MIN_REPEAT}
_POSSESSIVE = getattr(_constants, "POSSESSIVE_REPEAT", None)


def pattern_problem(pattern: str) -> str | None:
    """Why ``pattern`` may not be used, or ``None`` when it is safe.

    Returns:
        A sentence for the rule author: the pattern does not compile, or it
        has a shape that can backtrack for ever.
    """
    try:
        re.compile(pattern)
        parsed = _parser.parse(pattern)
    except (re.error, RecursionError, OverflowError) as exc:
        return f"the pattern does not compile: {exc}"
    return _walk(list(parsed), inside_repeat=False)


def _walk(items: list[Any], inside_repeat: bool) -> str | None:
    for op, arg in items:
        if op == _constants.GROUPREF or op == _constants.GROUPREF_EXISTS:
            return "back-references can take exponential time"
        if op in _REPEATS:
            _low, high, body = arg
            repeats = high is _constants.MAXREPEAT or high > 1
            if repeats and inside_repeat:
                return "a repeat inside a repeat, like (a+)+, can take exponential time"
            problem = _walk(list(body), inside_repeat or repeats)
            if problem:
                return problem
        elif op == _POSSESSIVE:
            continue  # possessive repeats never backtrack
        elif op == _constants.BRANCH:
            if inside_repeat:
                return (
                    "an alternation inside a repeat, like (a|ab)*, can take "
                    "exponential time"
                )
            for branch in arg[1]:
                problem = _walk(list(branch), inside_repeat)
                if problem:
                    return problem
        elif op == _constants.SUBPATTERN:
            problem = _walk(list(arg[-1]), inside_repeat)
            if problem:
                return problem
        elif op in (_constants.ASSERT, _constants.ASSERT_NOT):
            problem = _walk(list(arg[1]), inside_repeat)
            if problem:
                return problem
    return None
