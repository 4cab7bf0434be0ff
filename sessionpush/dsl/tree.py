"""The typed syntax tree of the rule language.

The parser (``sessionpush.dsl.parse``) turns ``.rules`` text into these nodes;
the checker validates them and the compiler (``sessionpush.dsl.compile``) turns
them into the engine's matchers. Every node carries the :class:`Span` of the
text it came from, so that any later error can point at the right column.

Nodes are frozen dataclasses: a rule set, once parsed, never changes.
Equality ignores spans, so that two parses of equivalent text compare equal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal as TypingLiteral

__all__ = [
    "AbsenceTrigger",
    "Action",
    "And",
    "Compare",
    "CompareOp",
    "EventTrigger",
    "Expr",
    "Filter",
    "InList",
    "InappAction",
    "Limit",
    "ListExpr",
    "Literal",
    "Not",
    "Or",
    "Path",
    "Placeholder",
    "PushAction",
    "Rule",
    "RuleFile",
    "SessionEndTrigger",
    "SessionHas",
    "Span",
    "Template",
    "Trigger",
    "Unless",
    "Wait",
]


@dataclass(frozen=True, slots=True)
class Span:
    """Where a node stands in its file: 1-based line and column, end exclusive."""

    line: int
    column: int
    end_line: int
    end_column: int


_NOWHERE = Span(0, 0, 0, 0)


# -- expressions -------------------------------------------------------------

LiteralValue = str | int | float | bool | None


@dataclass(frozen=True, slots=True)
class Literal:
    """A string, number, boolean or ``null``.

    Durations are numbers of seconds with ``is_duration`` set, so that the
    formatter can print ``10m`` back and comparisons stay plain arithmetic.
    """

    value: LiteralValue
    is_duration: bool = False
    span: Span = field(default=_NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class ListExpr:
    items: tuple[Literal, ...]
    span: Span = field(default=_NOWHERE, compare=False, repr=False)


PathRoot = TypingLiteral["event", "user", "device", "session", "last"]


@dataclass(frozen=True, slots=True)
class Path:
    """A dotted property path.

    ``root`` says where the lookup starts: the event being matched (plain
    ``price`` inside ``where`` is ``event.price``), the user's profile, the
    device of the connection, the session's own facts (``session.events``,
    ``session.duration``), or the last event of a name in this session
    (``last(cart).brand``: ``root="last"``, ``event_name="cart"``).
    """

    root: PathRoot
    parts: tuple[str, ...]
    event_name: str | None = None
    span: Span = field(default=_NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class SessionHas:
    """``session has E``: an event named E happened earlier in this session."""

    event: str
    span: Span = field(default=_NOWHERE, compare=False, repr=False)


CompareOp = TypingLiteral["==", "!=", "<", "<=", ">", ">="]


@dataclass(frozen=True, slots=True)
class Compare:
    op: CompareOp
    left: Path | Literal
    right: Path | Literal
    span: Span = field(default=_NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class InList:
    """``x in [..]`` or, with ``negated``, ``x not in [..]``."""

    operand: Path
    options: ListExpr
    negated: bool = False
    span: Span = field(default=_NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class And:
    left: Expr
    right: Expr
    span: Span = field(default=_NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Or:
    left: Expr
    right: Expr
    span: Span = field(default=_NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Not:
    operand: Expr
    span: Span = field(default=_NOWHERE, compare=False, repr=False)


Expr = Compare | InList | And | Or | Not | SessionHas | Path | Literal


# -- templates ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Filter:
    """``| name: arg, arg`` inside a template placeholder."""

    name: str
    args: tuple[Literal, ...] = ()
    span: Span = field(default=_NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Placeholder:
    """``{path | filter: arg | ...}`` inside a template."""

    path: Path
    filters: tuple[Filter, ...] = ()
    span: Span = field(default=_NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Template:
    """A text field: literal text interleaved with placeholders."""

    parts: tuple[str | Placeholder, ...]
    span: Span = field(default=_NOWHERE, compare=False, repr=False)

    @property
    def is_static(self) -> bool:
        return all(isinstance(part, str) for part in self.parts)


# -- triggers ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventTrigger:
    """``when E [where P]``: fires at each matching event."""

    event: str
    where: Expr | None = None
    span: Span = field(default=_NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class AbsenceTrigger:
    """``when E [where P] then no F [where Q] within D``.

    Fires when ``within`` seconds pass after a matching E with no matching F
    in the same session; the timer fires it, no later event is needed.
    """

    first: EventTrigger
    absent: str
    absent_where: Expr | None
    within: float
    span: Span = field(default=_NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class SessionEndTrigger:
    """``when session ends [where P]``: fires once, at the session's end."""

    where: Expr | None = None
    span: Span = field(default=_NOWHERE, compare=False, repr=False)


Trigger = EventTrigger | AbsenceTrigger | SessionEndTrigger


# -- policy and actions -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Wait:
    """``wait D`` or ``wait D after session end``."""

    seconds: float
    after_session_end: bool = False
    span: Span = field(default=_NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Unless:
    """``unless E [where P]``: cancels a pending send when E arrives."""

    event: str
    where: Expr | None = None
    span: Span = field(default=_NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Limit:
    """``limit N per session`` or ``limit N per user per D``."""

    count: int
    per: TypingLiteral["session", "user"]
    window: float | None = None
    span: Span = field(default=_NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class PushAction:
    title: Template
    body: Template | None = None
    link: Template | None = None
    ttl: float | None = None
    span: Span = field(default=_NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class InappAction:
    title: Template
    body: Template | None = None
    link: Template | None = None
    span: Span = field(default=_NOWHERE, compare=False, repr=False)


Action = PushAction | InappAction


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    trigger: Trigger
    action: Action
    title: str | None = None
    wait: Wait | None = None
    unless: tuple[Unless, ...] = ()
    limits: tuple[Limit, ...] = ()
    span: Span = field(default=_NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class RuleFile:
    """The rules of one file, in the order they were written."""

    path: str
    rules: tuple[Rule, ...]
