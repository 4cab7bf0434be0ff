"""Rule text to a compiled rule set, for tests that write rules inline."""

from __future__ import annotations

from sessionpush.dsl.compile import compile_rules
from sessionpush.dsl.parse import parse_text
from sessionpush.engine.rules import RuleSet


def ruleset_from_text(text: str, path: str = "test.rules") -> RuleSet:
    return compile_rules([parse_text(text, path)])
