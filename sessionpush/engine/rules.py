"""Compiled rules and the rule set index the engine matches against.

``sessionpush.dsl.compile`` builds these from the syntax tree. Conditions
arrive as plain closures over ``(props, session)``, templates as lists of
parts, so that matching an event costs one dict lookup for its name and then
only the rules that name it: a rule about ``purchase`` costs nothing on a
``view``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sessionpush.engine.filters import FILTERS
from sessionpush.engine.session import Session

__all__ = [
    "CompiledAction",
    "CompiledLimit",
    "CompiledRule",
    "Getter",
    "Pred",
    "RuleSet",
    "TemplatePart",
]

Pred = Callable[[dict[str, Any], Session], bool]
Getter = Callable[[dict[str, Any], Session], Any]

# A template part: literal text, or (snapshot key, filters with their args).
TemplatePart = str | tuple[str, tuple[tuple[str, tuple[Any, ...]], ...]]


@dataclass(frozen=True, slots=True)
class CompiledLimit:
    count: int
    per: Literal["session", "user"]
    window: float | None

    def key(self, app: str, user: str, session: str, rule: str) -> str:
        # Per-user keys carry the window so that two limits of one rule with
        # different windows never share a counter.
        if self.per == "session":
            return f"{app}\x1fs\x1f{session}\x1f{rule}"
        return f"{app}\x1fu\x1f{user}\x1f{rule}\x1f{self.window:g}"

    def since(self, now: float) -> float:
        # A per-session limit counts every send of the session.
        return now - self.window if self.window is not None else float("-inf")

    def describe(self) -> str:
        if self.per == "session":
            return f"limit {self.count} per session"
        return f"limit {self.count} per user per {_duration_text(self.window)}"


def _duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "ever"
    # A day is written as 24h, as rule authors write it; 2d and up in days.
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size * (2 if unit == "d" else 1) and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


@dataclass(frozen=True, slots=True)
class CompiledAction:
    """What to send and where: ``push``, ``inapp`` or ``webhook`` with its
    templates; ``webhook`` names a ``[webhooks.NAME]`` of the delivery config."""

    channel: Literal["push", "inapp", "webhook"]
    fields: tuple[tuple[str, tuple[TemplatePart, ...]], ...]
    ttl: float | None = None
    webhook: str | None = None

    def render(self, snapshot: dict[str, Any]) -> dict[str, Any]:
        """The message's text fields, filled from a trigger's snapshot."""
        out: dict[str, Any] = {}
        for name, parts in self.fields:
            chunks: list[str] = []
            for part in parts:
                if isinstance(part, str):
                    chunks.append(part)
                    continue
                key, filters = part
                value = snapshot.get(key)
                for filter_name, args in filters:
                    value = FILTERS[filter_name].func(value, *args)
                chunks.append("" if value is None else _text(value))
            out[name] = "".join(chunks)
        if self.ttl is not None:
            out["ttl"] = self.ttl
        return out


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass(eq=False, slots=True)
class CompiledRule:
    """One rule, ready to match. ``index`` is its position in the rule set."""

    name: str
    kind: Literal["event", "absence", "session_end"]
    action: CompiledAction
    title: str | None = None
    event: str | None = None
    where: Pred | None = None
    absent: str | None = None
    absent_where: Pred | None = None
    within: float = 0.0
    wait: float | None = None
    wait_after_end: bool = False
    unless: tuple[tuple[str, Pred | None], ...] = ()
    limits: tuple[CompiledLimit, ...] = ()
    # What the templates read, captured when the rule triggers.
    captures: tuple[tuple[str, Getter], ...] = ()
    # Event names this rule asks ``session has`` / ``last(..)`` about.
    needs_seen: frozenset[str] = frozenset()
    needs_last: frozenset[str] = frozenset()
    source: str = ""
    index: int = field(default=-1)

    def snapshot(self, props: dict[str, Any], session: Session) -> dict[str, Any]:
        """The values the message will render from, as JSON-able data."""
        return {key: get(props, session) for key, get in self.captures}


class _Handlers:
    """What one event name sets off; built once per rule set."""

    __slots__ = ("absence_arm", "absence_cancel", "fire", "track_last", "track_seen")

    def __init__(self) -> None:
        self.fire: list[CompiledRule] = []
        self.absence_arm: list[CompiledRule] = []
        self.absence_cancel: list[CompiledRule] = []
        self.track_seen = False
        self.track_last = False


# A match result: (rule, None) fires now; (rule, due) opens an absence window.
Match = tuple[CompiledRule, float | None]


class RuleSet:
    """The compiled rules, indexed by the event names they react to."""

    def __init__(self, rules: Iterable[CompiledRule], version: str = "") -> None:
        self.rules: list[CompiledRule] = list(rules)
        self.version = version
        self.by_name: dict[str, CompiledRule] = {}
        self._handlers: dict[str, _Handlers] = {}
        self.session_end_rules: list[CompiledRule] = []
        self._unless: dict[str, list[tuple[CompiledRule, Pred | None]]] = {}
        for index, rule in enumerate(self.rules):
            rule.index = index
            self._index(rule)

    def _handler(self, name: str) -> _Handlers:
        handler = self._handlers.get(name)
        if handler is None:
            handler = self._handlers[name] = _Handlers()
        return handler

    def _index(self, rule: CompiledRule) -> None:
        if rule.name in self.by_name:
            raise ValueError(f"two rules are named {rule.name!r}")
        self.by_name[rule.name] = rule
        if rule.kind == "event":
            assert rule.event is not None
            self._handler(rule.event).fire.append(rule)
        elif rule.kind == "absence":
            assert rule.event is not None and rule.absent is not None
            self._handler(rule.event).absence_arm.append(rule)
            self._handler(rule.absent).absence_cancel.append(rule)
        else:
            self.session_end_rules.append(rule)
        for name in rule.needs_seen:
            self._handler(name).track_seen = True
        for name in rule.needs_last:
            self._handler(name).track_last = True
        for event, pred in rule.unless:
            self._unless.setdefault(event, []).append((rule, pred))

    def __len__(self) -> int:
        return len(self.rules)

    def on_event(
        self, session: Session, name: str, props: dict[str, Any], now: float
    ) -> Sequence[Match]:
        """Match one event of a session; the hot path of the engine.

        Conditions see the session as it was before this event (``session
        has cart`` on a ``cart`` event is about an earlier cart); the event
        is recorded afterwards.
        """
        session.events += 1
        session.last_at = now
        handler = self._handlers.get(name)
        if handler is None:
            return ()
        matches: list[Match] = []
        for rule in handler.absence_cancel:
            if rule.index in session.absence and (
                rule.absent_where is None or rule.absent_where(props, session)
            ):
                del session.absence[rule.index]
        for rule in handler.fire:
            if rule.where is None or rule.where(props, session):
                matches.append((rule, None))
        for rule in handler.absence_arm:
            # One window at a time: a repeat of E inside the window does not
            # push the deadline out, or a busy user would never be nudged.
            if rule.index not in session.absence and (
                rule.where is None or rule.where(props, session)
            ):
                due = now + rule.within
                session.absence[rule.index] = due
                matches.append((rule, due))
        if handler.track_seen:
            session.seen.add(name)
        if handler.track_last:
            session.last[name] = props
        return matches

    def on_session_end(self, session: Session) -> list[CompiledRule]:
        """The ``when session ends`` rules whose condition holds."""
        empty: dict[str, Any] = {}
        return [
            rule
            for rule in self.session_end_rules
            if rule.where is None or rule.where(empty, session)
        ]

    def unless_matches(
        self, session: Session, name: str, props: dict[str, Any]
    ) -> list[CompiledRule]:
        """The rules whose pending sends this event cancels."""
        entries = self._unless.get(name)
        if not entries:
            return []
        return [rule for rule, pred in entries if pred is None or pred(props, session)]
