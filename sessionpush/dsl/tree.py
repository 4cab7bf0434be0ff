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
    "At",
    "Compare",
    "CompareOp",
    "CountTrigger",
    "EventTrigger",
    "Exists",
    "Expr",
    "Filter",
    "Goal",
    "IdleTrigger",
    "InList",
    "InappAction",
    "Limit",
    "ListExpr",
    "Literal",
    "Localised",
    "Not",
    "Or",
    "Path",
    "Placeholder",
    "PushAction",
    "QuietHours",
    "Rule",
    "RuleFile",
    "SequenceTrigger",
    "SessionEndTrigger",
    "SessionHas",
    "SessionStartTrigger",
    "Span",
    "Step",
    "Template",
    "Text",
    "TextTest",
    "Trigger",
    "Unless",
    "Variant",
    "Wait",
    "WebhookAction",
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
    #: A clock time ``22:00``: ``value`` is minutes after midnight.
    is_clock: bool = False
    span: Span = field(default=_NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class ListExpr:
    items: tuple[Literal, ...]
    span: Span = field(default=_NOWHERE, compare=False, repr=False)


PathRoot = TypingLiteral["event", "user", "device", "session", "last", "bound"]


@dataclass(frozen=True, slots=True)
class Path:
    """A dotted property path.

    ``root`` says where the lookup starts: the event being matched (plain
    ``price`` inside ``where`` is ``event.price``), the user's profile, the
    device of the connection, the session's own facts (``session.events``,
    ``session.duration``), or the last event of a name in this session
    (``last(cart).brand``: ``root="last"``, ``event_name="cart"``), or an
    event bound with ``as`` (``c.price`` after ``when cart as c``:
    ``root="bound"``, ``event_name="c"``). ``session.count(cart)`` is
    ``root="session"``, ``parts=("count",)``, ``event_name="cart"``.
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
    """``x in [..]`` or, with ``negated``, ``x not in [..]``.

    The options may also be a path to a list, like ``user.tags``.
    """

    operand: Path | Literal
    options: ListExpr | Path
    negated: bool = False
    span: Span = field(default=_NOWHERE, compare=False, repr=False)


TextOp = TypingLiteral["contains", "starts with", "matches"]


@dataclass(frozen=True, slots=True)
class TextTest:
    """``x contains y``, ``x starts with y`` or ``x matches "regex"``.

    ``contains`` also tests membership when ``x`` is a list.
    """

    op: TextOp
    left: Path | Literal
    right: Path | Literal
    span: Span = field(default=_NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Exists:
    """``x exists``: the path has a value other than ``null``."""

    operand: Path
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


Expr = (
    Compare | InList | TextTest | Exists | And | Or | Not | SessionHas | Path | Literal
)


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


@dataclass(frozen=True, slots=True)
class Localised:
    """``{ en "Still there?" de "Noch da?" }``: one template per language.

    Picked by ``device.lang`` at render time; the first entry is the
    fallback for a language that is not listed.
    """

    entries: tuple[tuple[str, Template], ...]
    span: Span = field(default=_NOWHERE, compare=False, repr=False)


Text = Template | Localised


# -- triggers ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventTrigger:
    """``when E [where P]``: fires at each matching event."""

    event: str
    where: Expr | None = None
    span: Span = field(default=_NOWHERE, compare=False, repr=False)
    binding: str | None = None


@dataclass(frozen=True, slots=True)
class Step:
    """``then F [as f] [where Q] within D``: one later step of a sequence."""

    event: str
    within: float
    where: Expr | None = None
    binding: str | None = None
    span: Span = field(default=_NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class SequenceTrigger:
    """``when E [where P] then F [where Q] within D ...``.

    Fires at the event that completes the last step; each step must come
    less than its ``within`` after the step before, and one event fills at
    most one step.
    """

    first: EventTrigger
    steps: tuple[Step, ...]
    span: Span = field(default=_NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class AbsenceTrigger:
    """``when E [where P] [then F within D ...] then no G [where Q] within D``.

    Fires when ``within`` seconds pass after a matching E (and the ``steps``
    after it, if any) with no matching G in the same session; the timer
    fires it, no later event is needed.
    """

    first: EventTrigger
    absent: str
    absent_where: Expr | None
    within: float
    span: Span = field(default=_NOWHERE, compare=False, repr=False)
    steps: tuple[Step, ...] = ()
    absent_binding: str | None = None


@dataclass(frozen=True, slots=True)
class CountTrigger:
    """``when N times E [where P] within D``: the N-th match inside D."""

    count: int
    event: EventTrigger
    within: float
    span: Span = field(default=_NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class IdleTrigger:
    """``when idle D [where P]``: no event in the session for D."""

    seconds: float
    where: Expr | None = None
    span: Span = field(default=_NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class SessionStartTrigger:
    """``when session starts [where P]``: once, when a session begins."""

    where: Expr | None = None
    span: Span = field(default=_NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class SessionEndTrigger:
    """``when session ends [where P]``: fires once, at the session's end."""

    where: Expr | None = None
    span: Span = field(default=_NOWHERE, compare=False, repr=False)


Trigger = (
    EventTrigger
    | SequenceTrigger
    | AbsenceTrigger
    | CountTrigger
    | IdleTrigger
    | SessionStartTrigger
    | SessionEndTrigger
)


# -- policy and actions -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Wait:
    """``wait D`` or ``wait D after session end``."""

    seconds: float
    after_session_end: bool = False
    span: Span = field(default=_NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class At:
    """``at HH:MM``: send at the next such time in the user's zone."""

    minutes: int
    span: Span = field(default=_NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Unless:
    """``unless E [where P]``: cancels a pending send when E arrives."""

    event: str
    where: Expr | None = None
    span: Span = field(default=_NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Limit:
    """``limit N per session``, ``per user per D`` or ``per user per day``.

    ``per="day"`` is the calendar day in the user's zone.
    """

    count: int
    per: TypingLiteral["session", "user", "day"]
    window: float | None = None
    span: Span = field(default=_NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class QuietHours:
    """``quiet hours HH:MM-HH:MM [drop]``, in minutes after midnight."""

    start: int
    end: int
    drop: bool = False
    span: Span = field(default=_NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Goal:
    """``goal E [where P] within D``: what counts as a conversion."""

    event: str
    within: float
    where: Expr | None = None
    span: Span = field(default=_NOWHERE, compare=False, repr=False)


Urgency = TypingLiteral["very_low", "low", "normal", "high"]


@dataclass(frozen=True, slots=True)
class PushAction:
    title: Text
    body: Text | None = None
    link: Template | None = None
    ttl: float | None = None
    span: Span = field(default=_NOWHERE, compare=False, repr=False)
    image: Template | None = None
    urgency: str | None = None
    collapse: Template | None = None
    data: tuple[tuple[str, Template], ...] = ()


@dataclass(frozen=True, slots=True)
class InappAction:
    """``inapp { .. }``; ``else_push`` sends it as a push when no socket is
    open."""

    title: Text
    body: Text | None = None
    link: Template | None = None
    span: Span = field(default=_NOWHERE, compare=False, repr=False)
    image: Template | None = None
    data: tuple[tuple[str, Template], ...] = ()
    else_push: bool = False


@dataclass(frozen=True, slots=True)
class WebhookAction:
    """``webhook "name"``: POST the decision to a configured endpoint."""

    name: str
    span: Span = field(default=_NOWHERE, compare=False, repr=False)


Action = PushAction | InappAction | WebhookAction


@dataclass(frozen=True, slots=True)
class Variant:
    """``variant NAME P% { action }``; ``percent`` is 0 to 100."""

    name: str
    percent: float
    action: Action
    span: Span = field(default=_NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule. ``action`` is ``None`` exactly when ``variants`` are given."""

    name: str
    trigger: Trigger
    action: Action | None
    title: str | None = None
    wait: Wait | None = None
    unless: tuple[Unless, ...] = ()
    limits: tuple[Limit, ...] = ()
    span: Span = field(default=_NOWHERE, compare=False, repr=False)
    at: At | None = None
    condition: Expr | None = None
    quiet: QuietHours | None = None
    holdout: float | None = None
    variants: tuple[Variant, ...] = ()
    goal: Goal | None = None
    priority: int = 0


@dataclass(frozen=True, slots=True)
class RuleFile:
    """The rules of one file, in the order they were written."""

    path: str
    rules: tuple[Rule, ...]
