"""Compiled rules and the rule set index the engine matches against.

``sessionpush.dsl.compile`` builds these from the syntax tree. Conditions
arrive as plain closures over ``(props, session)``, templates as lists of
parts, so that matching an event costs one dict lookup for its name and then
only the rules that name it: a rule about ``purchase`` costs nothing on a
``view``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sessionpush.engine.calendar import start_of_day
from sessionpush.engine.filters import FILTERS
from sessionpush.engine.session import Session

__all__ = [
    "LANG_KEY",
    "CompiledAction",
    "CompiledGoal",
    "CompiledLimit",
    "CompiledRule",
    "CompiledStep",
    "CompiledVariant",
    "Getter",
    "Match",
    "Pred",
    "QuietWindow",
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
    per: Literal["session", "user", "day"]
    window: float | None

    def key(self, app: str, user: str, session: str, rule: str) -> str:
        """The counter of this limit for one user (and session).

        Every key starts ``APP<US>u<US>USER``: the Redis store hashes that
        part to a cluster slot (``store.redis_keys``), so all the caps one
        send takes are in one slot, and a session id that another user
        sends again never shares that user's count. Per-user keys carry the
        window so that two limits of one rule never share a counter; the
        session key has the word ``session`` where they have a window.
        """
        if self.per == "session":
            return f"{app}\x1fu\x1f{user}\x1f{rule}\x1fsession\x1f{session}"
        if self.per == "day":
            return f"{app}\x1fu\x1f{user}\x1f{rule}\x1fday"
        return f"{app}\x1fu\x1f{user}\x1f{rule}\x1f{self.window:g}"

    def since(self, now: float, zone: str = "UTC") -> float:
        # A per-session limit counts every send of the session; a per-day
        # limit every send since the user's local midnight.
        if self.per == "day":
            return start_of_day(now, zone)
        return now - self.window if self.window is not None else float("-inf")

    def describe(self, word: str = "limit") -> str:
        """``limit 1 per user per 24h``; ``word`` names a global cap instead."""
        if self.per == "session":
            return f"{word} {self.count} per session"
        if self.per == "day":
            return f"{word} {self.count} per user per day"
        return f"{word} {self.count} per user per {_duration_text(self.window)}"


def _duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "ever"
    # A day is written as 24h, as rule authors write it; 2d and up in days.
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size * (2 if unit == "d" else 1) and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


Parts = tuple[TemplatePart, ...]
# A text field: one template, or one per language (the first is the fallback).
TextParts = Parts | tuple[tuple[str, Parts], ...]

#: The snapshot key the language of the device is captured under.
LANG_KEY = "device.lang"


@dataclass(frozen=True, slots=True)
class CompiledAction:
    """What to send and where: ``push``, ``inapp`` or ``webhook``.

    ``fields`` are the text fields (title, body, link, image, collapse),
    each a template or, localised, ``(language, template)`` pairs; ``data``
    the templates of the ``data { }`` block; ``webhook`` names a
    ``[webhooks.NAME]`` of the delivery config.
    """

    channel: Literal["push", "inapp", "webhook"]
    fields: tuple[tuple[str, TextParts], ...] = ()
    ttl: float | None = None
    urgency: str | None = None
    data: tuple[tuple[str, Parts], ...] = ()
    localised: frozenset[str] = frozenset()
    else_push: bool = False
    webhook: str | None = None

    def render(self, snapshot: dict[str, Any]) -> dict[str, Any]:
        """The message's fields, filled from a trigger's snapshot."""
        out: dict[str, Any] = {}
        lang = snapshot.get(LANG_KEY)
        for name, parts in self.fields:
            if name in self.localised:
                out[name] = _fill(_pick(parts, lang), snapshot)  # type: ignore[arg-type]
            else:
                out[name] = _fill(parts, snapshot)  # type: ignore[arg-type]
        if self.ttl is not None:
            out["ttl"] = self.ttl
        if self.urgency is not None:
            # Web Push (RFC 8030 section 5.3) spells it very-low.
            out["urgency"] = self.urgency.replace("_", "-")
        if self.data:
            out["data"] = {key: _fill(parts, snapshot) for key, parts in self.data}
        if self.webhook is not None:
            out["webhook"] = self.webhook
        return out


def _pick(entries: tuple[tuple[str, Parts], ...], lang: Any) -> Parts:
    # "de-AT" tries de-AT, then de; anything else falls back to the first.
    if isinstance(lang, str) and lang:
        wanted = lang.lower().replace("_", "-")
        by_lang = {key.lower().replace("_", "-"): parts for key, parts in entries}
        for key in (wanted, wanted.split("-")[0]):
            if key in by_lang:
                return by_lang[key]
    return entries[0][1]


def _fill(parts: Parts, snapshot: dict[str, Any]) -> str:
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
    return "".join(chunks)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass(frozen=True, slots=True)
class CompiledStep:
    """One step of a sequence: ``then E [as b] [where P] within D``."""

    event: str
    where: Pred | None = None
    within: float = 0.0
    binding: str | None = None


@dataclass(frozen=True, slots=True)
class QuietWindow:
    """``quiet hours``: minutes after local midnight, end exclusive."""

    start: int
    end: int
    drop: bool = False


@dataclass(frozen=True, slots=True)
class CompiledVariant:
    name: str
    percent: float
    action: CompiledAction


@dataclass(frozen=True, slots=True)
class CompiledGoal:
    event: str
    where: Pred | None
    within: float


RuleKind = Literal[
    "event", "sequence", "absence", "count", "idle", "session_start", "session_end"
]


@dataclass(eq=False, slots=True)
class CompiledRule:
    """One rule, ready to match. ``index`` is its position in the rule set.

    ``steps`` are the positive steps of a sequence or of the run-up to an
    absence (the first step is the ``when`` event); ``guard`` is the ``if``
    condition at trigger time, ``guard_at_send`` the same condition over the
    snapshot (and the profile as it is then) at send time.
    """

    name: str
    kind: RuleKind
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
    # Event names this rule asks ``session has`` / ``last(..)`` /
    # ``session.count(..)`` about.
    needs_seen: frozenset[str] = frozenset()
    needs_last: frozenset[str] = frozenset()
    needs_tally: frozenset[str] = frozenset()
    source: str = ""
    index: int = field(default=-1)
    binding: str | None = None
    steps: tuple[CompiledStep, ...] = ()
    absent_binding: str | None = None
    count: int = 0
    idle: float = 0.0
    guard: Pred | None = None
    guard_at_send: Pred | None = None
    at: int | None = None
    quiet: QuietWindow | None = None
    holdout: float | None = None
    variants: tuple[CompiledVariant, ...] = ()
    goal: CompiledGoal | None = None
    priority: int = 0
    #: ``(scheme, line, column)`` of each link and image whose fixed start
    #: names a scheme, so that a server can refuse app schemes its config
    #: does not declare before it runs the rule.
    links: tuple[tuple[str, int, int], ...] = ()

    def snapshot(self, props: dict[str, Any], session: Session) -> dict[str, Any]:
        """The values the message will render from, as JSON-able data."""
        return {key: get(props, session) for key, get in self.captures}

    def shape(self) -> tuple[Any, ...]:
        """What a session's match state for this rule depends on: its kind,
        events, steps and windows. Conditions are closures and cannot be
        compared, so a reload that changes only a ``where`` keeps the state."""
        steps = tuple((step.event, step.within, step.binding) for step in self.steps)
        return (
            self.kind,
            self.event,
            steps,
            self.absent,
            self.within,
            self.count,
            self.binding,
        )


class _Handlers:
    """What one event name sets off; built once per rule set."""

    __slots__ = (
        "absence_cancel",
        "count",
        "fire",
        "steps",
        "track_last",
        "track_seen",
        "track_tally",
    )

    def __init__(self) -> None:
        self.fire: list[CompiledRule] = []
        # (rule, step number), later steps of a rule first
        self.steps: list[tuple[CompiledRule, int]] = []
        self.count: list[CompiledRule] = []
        self.absence_cancel: list[CompiledRule] = []
        self.track_seen = False
        self.track_last = False
        self.track_tally = False


_NO_BINDINGS: dict[str, Any] = {}

# A match: (rule, None, bindings) fires now; (rule, due, bindings) opens an
# absence window that fires at ``due`` unless the absent event comes.
Match = tuple[CompiledRule, float | None, dict[str, Any]]


class RuleSet:
    """The compiled rules, indexed by the event names they react to."""

    def __init__(self, rules: Iterable[CompiledRule], version: str = "") -> None:
        self.rules: list[CompiledRule] = list(rules)
        self.version = version
        self.by_name: dict[str, CompiledRule] = {}
        self._handlers: dict[str, _Handlers] = {}
        self.session_end_rules: list[CompiledRule] = []
        self.session_start_rules: list[CompiledRule] = []
        self.idle_rules: list[CompiledRule] = []
        self._unless: dict[str, list[tuple[CompiledRule, Pred | None]]] = {}
        self._goals: dict[str, list[CompiledRule]] = {}
        for index, rule in enumerate(self.rules):
            rule.index = index
            self._index(rule)
        for handler in self._handlers.values():
            handler.steps.sort(key=lambda pair: (pair[0].index, -pair[1]))
        # Shortest first: the session's idle deadline walks them in order.
        # Equal ones by priority, as rules that trigger together elsewhere.
        self.idle_rules.sort(key=lambda rule: (rule.idle, -rule.priority, rule.index))
        for key in ("session_end_rules", "session_start_rules"):
            ordered = sorted(getattr(self, key), key=lambda r: -r.priority)
            setattr(self, key, ordered)

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
        elif rule.kind in ("sequence", "absence"):
            for number, step in enumerate(rule.steps):
                self._handler(step.event).steps.append((rule, number))
            if rule.kind == "absence":
                assert rule.absent is not None
                self._handler(rule.absent).absence_cancel.append(rule)
        elif rule.kind == "count":
            assert rule.event is not None
            self._handler(rule.event).count.append(rule)
        elif rule.kind == "idle":
            self.idle_rules.append(rule)
        elif rule.kind == "session_start":
            self.session_start_rules.append(rule)
        else:
            self.session_end_rules.append(rule)
        for name in rule.needs_seen:
            self._handler(name).track_seen = True
        for name in rule.needs_last:
            self._handler(name).track_last = True
        for name in rule.needs_tally:
            self._handler(name).track_tally = True
        for event, pred in rule.unless:
            self._unless.setdefault(event, []).append((rule, pred))
        if rule.goal is not None:
            self._goals.setdefault(rule.goal.event, []).append(rule)

    def __len__(self) -> int:
        return len(self.rules)

    def keep_state(self, session: Session, old: RuleSet, now: float) -> None:
        """Carry a session's match state over from ``old`` to this rule set.

        State stays with a rule of the same name and shape; the state of a
        rule that is gone or changed shape is dropped (a sequence of two
        steps cannot continue as one of three). ``when idle`` rules already
        due in the current quiet spell count as passed, so none fires twice.
        """
        for state in (session.absence, session.progress, session.counts):
            for name in list(state):
                rule, before = self.by_name.get(name), old.by_name.get(name)
                if rule is None or before is None or rule.shape() != before.shape():
                    del state[name]
        for name in list(session.armed_bound):
            if name not in session.absence:
                del session.armed_bound[name]
        quiet = now - session.last_at
        session.idle_next = sum(1 for rule in self.idle_rules if rule.idle <= quiet)

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
        session.idle_next = 0
        handler = self._handlers.get(name)
        if handler is None:
            return ()
        matches: list[Match] = []
        for rule in handler.absence_cancel:
            if rule.name in session.absence:
                bound = session.armed_bound.get(rule.name, _NO_BINDINGS)
                if rule.absent_binding is not None:
                    bound = {**bound, rule.absent_binding: props}
                session.bound = bound
                if rule.absent_where is None or rule.absent_where(props, session):
                    del session.absence[rule.name]
                    session.armed_bound.pop(rule.name, None)
        for rule in handler.fire:
            bound = _NO_BINDINGS if rule.binding is None else {rule.binding: props}
            session.bound = bound
            if rule.where is None or rule.where(props, session):
                matches.append((rule, None, bound))
        if handler.steps:
            self._steps(handler.steps, session, props, now, matches)
        for rule in handler.count:
            self._count(rule, session, props, now, matches)
        if handler.track_seen:
            session.seen.add(name)
        if handler.track_last:
            session.last[name] = props
        if handler.track_tally:
            session.tally[name] = session.tally.get(name, 0) + 1
        session.bound = _NO_BINDINGS
        if len(matches) > 1:
            # Highest priority first; stable, so rule order breaks ties.
            matches.sort(key=lambda match: -match[0].priority)
        return matches

    def _steps(
        self,
        entries: list[tuple[CompiledRule, int]],
        session: Session,
        props: dict[str, Any],
        now: float,
        matches: list[Match],
    ) -> None:
        # Later steps of a rule come first, and once an event has filled a
        # step of a rule it fills no other step of it: events are distinct.
        filled = -1
        for rule, number in entries:
            if rule.index == filled:
                continue
            step = rule.steps[number]
            progress = session.progress.get(rule.name)
            if number == 0:
                bound: dict[str, Any] = _NO_BINDINGS
            else:
                before = None if progress is None else progress[number - 1]
                # The window is start inclusive, end exclusive, as deadlines.
                if before is None or now - before[0] >= step.within:
                    continue
                bound = before[1]
            if step.binding is not None:
                bound = {**bound, step.binding: props}
            session.bound = bound
            if step.where is not None and not step.where(props, session):
                continue
            filled = rule.index
            last = len(rule.steps) - 1
            if number < last:
                if progress is None:
                    progress = session.progress[rule.name] = [None] * last
                progress[number] = (now, bound)
                if number:
                    progress[number - 1] = None
                continue
            session.progress.pop(rule.name, None)
            if rule.kind == "sequence":
                matches.append((rule, None, bound))
            elif rule.name not in session.absence:
                # One window at a time: a repeat inside the window does not
                # push the deadline out, or a busy user would never be nudged.
                due = now + rule.within
                session.absence[rule.name] = due
                session.armed_bound[rule.name] = bound
                matches.append((rule, due, bound))

    def _count(
        self,
        rule: CompiledRule,
        session: Session,
        props: dict[str, Any],
        now: float,
        matches: list[Match],
    ) -> None:
        bound = _NO_BINDINGS if rule.binding is None else {rule.binding: props}
        session.bound = bound
        if rule.where is not None and not rule.where(props, session):
            return
        times = session.counts.get(rule.name)
        if times is None:
            times = session.counts[rule.name] = deque()
        times.append(now)
        while now - times[0] >= rule.within:
            times.popleft()
        if len(times) >= rule.count:
            # The N events are used up: the next fire needs N new ones.
            times.clear()
            matches.append((rule, None, bound))

    def on_session_start(self, session: Session) -> list[CompiledRule]:
        """The ``when session starts`` rules whose condition holds."""
        return self._session_rules(self.session_start_rules, session)

    def on_session_end(self, session: Session) -> list[CompiledRule]:
        """The ``when session ends`` rules whose condition holds."""
        return self._session_rules(self.session_end_rules, session)

    @staticmethod
    def _session_rules(
        rules: list[CompiledRule], session: Session
    ) -> list[CompiledRule]:
        empty: dict[str, Any] = {}
        session.bound = _NO_BINDINGS
        return [
            rule for rule in rules if rule.where is None or rule.where(empty, session)
        ]

    def on_idle(self, session: Session, idle_for: float) -> list[CompiledRule]:
        """The ``when idle`` rules due after ``idle_for`` quiet seconds.

        Each fires at most once per quiet spell: ``session.idle_next`` moves
        past it, and the next event moves it back to the start.
        """
        fired: list[CompiledRule] = []
        empty: dict[str, Any] = {}
        session.bound = _NO_BINDINGS
        rules = self.idle_rules
        while session.idle_next < len(rules):
            rule = rules[session.idle_next]
            if rule.idle > idle_for:
                break
            session.idle_next += 1
            if rule.where is None or rule.where(empty, session):
                fired.append(rule)
        return fired

    def next_idle(self, session: Session) -> float | None:
        """Seconds of quiet after which the next idle rule is due, if any."""
        if session.idle_next < len(self.idle_rules):
            return self.idle_rules[session.idle_next].idle
        return None

    def unless_matches(
        self, session: Session, name: str, props: dict[str, Any]
    ) -> list[CompiledRule]:
        """The rules whose pending sends this event cancels."""
        entries = self._unless.get(name)
        if not entries:
            return []
        session.bound = _NO_BINDINGS
        return [rule for rule, pred in entries if pred is None or pred(props, session)]

    def goal_matches(
        self, session: Session, name: str, props: dict[str, Any]
    ) -> list[CompiledRule]:
        """The rules for which this event counts as a goal (a conversion)."""
        rules = self._goals.get(name)
        if not rules:
            return []
        session.bound = _NO_BINDINGS
        return [
            rule
            for rule in rules
            if rule.goal is not None
            and (rule.goal.where is None or rule.goal.where(props, session))
        ]
