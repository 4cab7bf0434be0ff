"""Checks that a parsed rule set means something, before any server runs it.

The parser accepts what the grammar describes; this module rejects what
would parse but cannot work: a rule without a trigger, a wait of zero, a
filter that does not exist, a ``javascript:`` link, a name used twice. Every
problem is a :class:`~sessionpush.dsl.errors.Diagnostic` with a hint, and the
checks collect them all instead of stopping at the first.

Two entry points check trees (:func:`check_file`, :func:`check_files`); two
more (:func:`check_clauses`, :func:`check_action_fields`) check the clause
list of a rule while the parser builds it, because :class:`~sessionpush.dsl.
tree.Rule` cannot even hold a rule with two triggers.
"""

from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Literal as TypingLiteral

from sessionpush.dsl import tree as t
from sessionpush.dsl.errors import Diagnostic
from sessionpush.dsl.regex import pattern_problem
from sessionpush.engine.filters import FILTERS
from sessionpush.engine.links import FORBIDDEN_SCHEMES, as_read, link_scheme

__all__ = [
    "MAX_TTL",
    "SESSION_FIELDS",
    "ClauseKind",
    "check_action_fields",
    "check_clauses",
    "check_file",
    "check_files",
    "format_duration",
    "format_path",
]

ClauseKind = TypingLiteral[
    "trigger",
    "action",
    "variant",
    "wait",
    "at",
    "unless",
    "if",
    "limit",
    "quiet",
    "holdout",
    "goal",
    "priority",
]
_REPEATABLE = ("unless", "limit", "variant")

SESSION_FIELDS = ("events", "duration", "count", "clock")
"""What ``session.`` can read: the number of events, the seconds so far,
``count(E)`` the number of E events, and ``clock`` the user's local time of
day (compare it with a clock time like ``18:00``)."""

IDLE_TIMEOUT = 1800.0
"""The default idle timeout: a window longer than it cannot close in a
session, so a rule waiting for it can never fire."""

COLLAPSE_LIMIT = 64
"""APNs refuses an ``apns-collapse-id`` over 64 bytes, the tightest of the
push services."""

PAYLOAD_LIMIT = 4096
"""APNs and FCM refuse a payload over 4 KB: fixed text longer than that can
never be sent, whatever the placeholders fill in."""

URGENCIES = ("very_low", "low", "normal", "high")

MAX_TTL = 28 * 86400.0
"""FCM refuses a time to live above 28 days, and it is the shortest cap of
the push services we deliver through."""

_LINK_FORMS = "an https: URL, an app link like shop://cart, or a path like /cart"
_UNITS = (("d", 86400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0), ("ms", 0.001))


def format_duration(seconds: float) -> str:
    """Seconds written back the way a rule author writes them: ``10m``, ``1.5h``.

    Args:
        seconds: A duration; negative values keep their sign.

    Returns:
        The largest unit that shows the value in at most three decimals.
    """
    sign = "-" if seconds < 0 else ""
    size = abs(seconds)
    for unit, factor in _UNITS:
        count = round(size / factor, 3)
        if count >= 1 and abs(count * factor - size) < 1e-9 * max(size, 1):
            return f"{sign}{count:g}{unit}"
    return f"{sign}{size:g}s"


def format_path(path: t.Path) -> str:
    """A path written back as in a rule: ``last(cart).brand``, ``user.plan``."""
    if path.root == "last":
        head = f"last({path.event_name})"
    elif path.root == "event":
        # Bare paths and event.* are the same path; print the explicit form.
        head = "event"
    else:
        head = path.root
    return ".".join([head, *path.parts])


def _at(path: str, span: t.Span, message: str, hint: str | None) -> Diagnostic:
    # A span over several lines is underlined to the end of its first line.
    end_column = span.end_column if span.end_line == span.line else 0
    return Diagnostic(path, span.line, span.column, end_column, message, hint)


def _where(path: str, span: t.Span) -> str:
    return f"{path}:{span.line}:{span.column}"


# -- while parsing --------------------------------------------------------------


def check_clauses(
    path: str,
    rule_name: str,
    rule_span: t.Span,
    clauses: Sequence[tuple[ClauseKind, t.Span]],
) -> list[Diagnostic]:
    """Check that a rule's clauses make one rule.

    A rule needs exactly one trigger and one action, and waits at most once;
    the order of the clauses is free.

    Args:
        path: The rule file.
        rule_name: The rule, for the messages.
        rule_span: Where the rule is, for what is missing.
        clauses: Each clause's kind and span, in the order written.

    Returns:
        One diagnostic per missing or repeated clause.
    """
    problems: list[Diagnostic] = []
    first: dict[ClauseKind, t.Span] = {}
    for kind, span in clauses:
        if kind in _REPEATABLE:
            first.setdefault(kind, span)
            continue
        if kind not in first:
            first[kind] = span
            continue
        earlier = f"the first is at line {first[kind].line}"
        if kind == "trigger":
            message = f"rule '{rule_name}' has a second trigger"
            hint = f"{earlier}; a rule has one 'when': write a second rule"
        elif kind == "action":
            message = f"rule '{rule_name}' has a second action"
            hint = (
                f"{earlier}; a rule sends one push, inapp or webhook; for a "
                "split, write variants"
            )
        elif kind == "wait":
            message = f"rule '{rule_name}' waits twice"
            hint = f"{earlier}; keep one wait clause"
        else:
            word = "if" if kind == "if" else kind.replace("quiet", "quiet hours")
            message = f"rule '{rule_name}' has a second '{word}'"
            hint = f"{earlier}; keep one" + (
                ", joining the conditions with 'and'" if kind == "if" else ""
            )
        problems.append(_at(path, span, message, hint))

    if "action" in first and "variant" in first:
        message = f"rule '{rule_name}' has both an action and variants"
        hint = "put every action inside a variant, or drop the variants"
        problems.append(_at(path, first["variant"], message, hint))
    if "wait" in first and "at" in first:
        message = f"rule '{rule_name}' has both 'wait' and 'at'"
        hint = "keep one: wait D sends D after the trigger, at HH:MM at a time"
        problems.append(_at(path, first["at"], message, hint))
    if "trigger" not in first:
        message = f"rule '{rule_name}' has no trigger"
        hint = "add one, like: when purchase, or: when session ends"
        problems.append(_at(path, rule_span, message, hint))
    if "action" not in first and "variant" not in first:
        message = f"rule '{rule_name}' has no action"
        hint = 'add one, like: push { title "..." } or inapp { title "..." }'
        problems.append(_at(path, rule_span, message, hint))
    return sorted(problems, key=lambda d: (d.line, d.column))


def check_action_fields(
    path: str, action: str, action_span: t.Span, fields: Sequence[tuple[str, t.Span]]
) -> list[Diagnostic]:
    """Check the fields of a ``push { }`` or ``inapp { }`` block.

    Args:
        path: The rule file.
        action: ``"push"`` or ``"inapp"``.
        action_span: Where the block is, for a missing title.
        fields: Each field's name and span, in the order written.

    Returns:
        A diagnostic for a missing title, a repeated field, or a ``ttl``
        on an in-app message.
    """
    problems: list[Diagnostic] = []
    seen: set[str] = set()
    for name, span in fields:
        if name in seen:
            message = f"{action} has a second {name}"
            hint = "each field comes at most once; keep one"
            problems.append(_at(path, span, message, hint))
        elif name in _PUSH_ONLY and action == "inapp":
            message = f"inapp has no {name}"
            hint = (
                "an in-app message shows while the session is open, or is "
                f"dropped; {name} is for push"
            )
            problems.append(_at(path, span, message, hint))
        seen.add(name)
    if "title" not in seen:
        message = f"{action} has no title"
        hint = 'add one, like: title "Still there?"; body and link are optional'
        problems.append(_at(path, action_span, message, hint))
    return problems


_PUSH_ONLY = ("ttl", "urgency", "collapse")


# -- after parsing --------------------------------------------------------------


def check_files(files: Sequence[t.RuleFile]) -> list[Diagnostic]:
    """Check a whole rule set: every file, and names across the files.

    Args:
        files: The parsed files, in load order.

    Returns:
        Every problem, file by file in the given order, each file's in line
        order. Empty when the rule set may run.
    """
    problems: list[Diagnostic] = []
    first_seen: dict[str, tuple[str, t.Span]] = {}
    uses = Counter(
        name
        for rule_file in files
        for rule in rule_file.rules
        for name, _ in _event_uses(rule)
    )
    for rule_file in files:
        found = list(_check_rules(rule_file))
        for rule in rule_file.rules:
            if rule.name in first_seen:
                where = _where(*first_seen[rule.name])
                message = f"rule '{rule.name}' is defined twice"
                hint = (
                    f"the first is at {where}; rule names are unique across "
                    "all rule files, rename one"
                )
                found.append(_at(rule_file.path, rule.span, message, hint))
            else:
                first_seen[rule.name] = (rule_file.path, rule.span)
        found.extend(_misspelt_events(rule_file, uses))
        problems.extend(sorted(found, key=lambda d: (d.line, d.column)))
    return problems


def _event_uses(rule: t.Rule) -> Iterator[tuple[str, t.Span]]:
    """Every event name a rule names, with where it is named."""
    trigger = rule.trigger
    if isinstance(trigger, t.EventTrigger):
        yield trigger.event, trigger.span
    elif isinstance(trigger, t.CountTrigger):
        yield trigger.event.event, trigger.span
    elif isinstance(trigger, t.SequenceTrigger | t.AbsenceTrigger):
        yield trigger.first.event, trigger.first.span
        for step in trigger.steps:
            yield step.event, step.span
        if isinstance(trigger, t.AbsenceTrigger):
            yield trigger.absent, trigger.span
    for unless in rule.unless:
        yield unless.event, unless.span
    if rule.goal is not None:
        yield rule.goal.event, rule.goal.span


def _misspelt_events(rule_file: t.RuleFile, uses: Counter[str]) -> Iterator[Diagnostic]:
    # A name that only one place uses, and that is one typo away from a
    # name used elsewhere, is most likely that name misspelt.
    for rule in rule_file.rules:
        for name, span in _event_uses(rule):
            if uses[name] != 1:
                continue
            others = [other for other in uses if other != name]
            close = difflib.get_close_matches(name, others, n=1, cutoff=0.8)
            if close:
                yield replace(
                    _at(
                        rule_file.path,
                        span,
                        f"no other rule names the event '{name}'",
                        f"did you mean '{close[0]}'?",
                    ),
                    severity="warning",
                )


def check_file(rule_file: t.RuleFile) -> list[Diagnostic]:
    """Check one file on its own (its rule names only among themselves).

    Args:
        rule_file: The parsed file.

    Returns:
        Every problem, in line order.
    """
    return check_files([rule_file])


def _check_rules(rule_file: t.RuleFile) -> Iterator[Diagnostic]:
    for rule in rule_file.rules:
        yield from _RuleChecker(rule_file.path, rule).run()


class _RuleChecker:
    def __init__(self, path: str, rule: t.Rule) -> None:
        self.path = path
        self.rule = rule
        # Triggers that match no event: their conditions and templates
        # cannot read one.
        self.eventless = isinstance(
            rule.trigger, t.SessionEndTrigger | t.SessionStartTrigger | t.IdleTrigger
        )
        self.at_session_end = self.eventless
        trigger = rule.trigger
        if isinstance(trigger, t.SessionStartTrigger):
            self.trigger_words = "'when session starts'"
        elif isinstance(trigger, t.IdleTrigger):
            self.trigger_words = "'when idle'"
        else:
            self.trigger_words = "'when session ends'"

    def error(self, span: t.Span, message: str, hint: str | None) -> Diagnostic:
        return _at(self.path, span, message, hint)

    def warning(self, span: t.Span, message: str, hint: str | None) -> Diagnostic:
        return replace(_at(self.path, span, message, hint), severity="warning")

    def run(self) -> Iterator[Diagnostic]:
        rule = self.rule
        yield from self.trigger(rule.trigger)
        if rule.wait is not None and rule.wait.seconds <= 0:
            yield self.error(
                rule.wait.span,
                "wait must be longer than zero, got "
                f"{format_duration(rule.wait.seconds)}",
                "remove the wait to send at once, or wait a positive time like 10m",
            )
        for unless in rule.unless:
            yield from self.condition(unless.where, session_end=False)
        if rule.condition is not None:
            yield from self.guard(rule.condition)
        for limit in rule.limits:
            yield from self.limit(limit)
        yield from self.policy(rule)
        if rule.action is not None:
            yield from self.action(rule.action)
        for variant in rule.variants:
            yield from self.action(variant.action)

    # -- triggers and policy ------------------------------------------------------

    def trigger(self, trigger: t.Trigger) -> Iterator[Diagnostic]:
        if isinstance(trigger, t.SessionEndTrigger | t.SessionStartTrigger):
            yield from self.condition(trigger.where, session_end=True)
        elif isinstance(trigger, t.IdleTrigger):
            yield from self.condition(trigger.where, session_end=True)
            yield from self.positive(trigger.seconds, trigger.span, "idle")
            if trigger.seconds > IDLE_TIMEOUT:
                yield self.warning(
                    trigger.span,
                    f"'when idle {format_duration(trigger.seconds)}' can never fire:"
                    " a session ends after "
                    f"{format_duration(IDLE_TIMEOUT)} without an event",
                    "idle for less than the idle timeout, or use "
                    "'when session ends' with a wait",
                )
        elif isinstance(trigger, t.EventTrigger):
            yield from self.condition(trigger.where, session_end=False)
        elif isinstance(trigger, t.CountTrigger):
            yield from self.condition(trigger.event.where, session_end=False)
            yield from self.positive(trigger.within, trigger.span, "within")
            if trigger.count < 1:
                yield self.error(
                    trigger.span,
                    f"'{trigger.count} times' can never happen",
                    "count from 1, like: when 2 times search within 5m",
                )
        else:
            yield from self.condition(trigger.first.where, session_end=False)
            for step in trigger.steps:
                yield from self.condition(step.where, session_end=False)
                yield from self.positive(step.within, step.span, "within", step.event)
            if isinstance(trigger, t.AbsenceTrigger):
                yield from self.condition(trigger.absent_where, session_end=False)
                yield from self.positive(
                    trigger.within, trigger.span, "within", trigger.absent
                )

    def positive(
        self, seconds: float, span: t.Span, word: str, event: str | None = None
    ) -> Iterator[Diagnostic]:
        if seconds <= 0:
            give = f"give '{event}' time to come, " if event else ""
            yield self.error(
                span,
                f"'{word}' must be longer than zero, got {format_duration(seconds)}",
                f"{give}like: {word} 2m",
            )

    def guard(self, expr: t.Expr) -> Iterator[Diagnostic]:
        yield from self.condition(expr, session_end=False, event=False)
        for path in _paths(expr):
            if path.root in ("event", "bound", "last"):
                yield self.error(
                    path.span,
                    f"'if' cannot read '{format_path(path)}': it is checked "
                    "again at send time, when there is no event",
                    "test the event in the trigger's 'where'; 'if' reads "
                    "user.*, device.* and session.*",
                )

    def policy(self, rule: t.Rule) -> Iterator[Diagnostic]:
        quiet = rule.quiet
        if quiet is not None and quiet.start == quiet.end:
            yield self.error(
                quiet.span,
                "quiet hours that start when they end are empty",
                "give two different times, like: quiet hours 22:00-08:00",
            )
        if rule.holdout is not None and rule.holdout >= 100:
            yield self.error(
                rule.span,
                f"holdout {rule.holdout:g}% holds out every user",
                "hold out a slice, like: holdout 10%",
            )
        if rule.variants:
            total = sum(variant.percent for variant in rule.variants)
            if abs(total - 100) > 1e-9:
                shares = " + ".join(f"{v.percent:g}%" for v in rule.variants)
                yield self.error(
                    rule.variants[0].span,
                    f"the variants add up to {total:g}% ({shares}), not 100%",
                    "every user gets one variant: make the shares sum to 100%",
                )
            names: set[str] = set()
            for variant in rule.variants:
                if variant.name in names:
                    yield self.error(
                        variant.span,
                        f"variant '{variant.name}' comes twice",
                        "give each variant its own name",
                    )
                names.add(variant.name)
        goal = rule.goal
        if goal is not None:
            yield from self.condition(goal.where, session_end=False)
            yield from self.positive(goal.within, goal.span, "within")
            trigger = rule.trigger
            if isinstance(trigger, t.EventTrigger) and (
                trigger.event,
                trigger.where,
            ) == (goal.event, goal.where):
                yield self.warning(
                    goal.span,
                    f"the goal '{goal.event}' is the trigger itself: every "
                    "trigger would count as a conversion",
                    "name what the message should lead to, like: goal purchase",
                )

    def limit(self, limit: t.Limit) -> Iterator[Diagnostic]:
        if limit.count < 1:
            yield self.error(
                limit.span,
                f"limit {limit.count} would never let a message through",
                "a limit counts from 1, like: limit 1 per session",
            )
        if limit.per == "user" and limit.window is None:
            yield self.error(
                limit.span,
                "a limit per user needs a window",
                f"add one, like: limit {max(limit.count, 1)} per user per 24h",
            )
        elif limit.window is not None and limit.window <= 0:
            yield self.error(
                limit.span,
                "a limit window must be longer than zero, got "
                f"{format_duration(limit.window)}",
                "like: limit 1 per user per 24h",
            )

    # -- conditions -----------------------------------------------------------------

    def condition(
        self, expr: t.Expr | None, *, session_end: bool, event: bool = True
    ) -> Iterator[Diagnostic]:
        for test in _patterns(expr):
            problem = pattern_problem(test)
            if problem is not None:
                yield self.error(
                    _pattern_span(expr, test),
                    f"the pattern {_shorten(repr(test))} is refused: {problem}",
                    "simplify it: no repeat inside a repeat, no alternation "
                    "under a repeat, no back-references",
                )
        for path in _paths(expr):
            yield from self.session_path(path)
            if session_end and path.root in ("event", "bound"):
                yield self.error(
                    path.span,
                    f"'{format_path(path)}' reads the event being matched, but "
                    f"{self.trigger_words} matches no event",
                    "test the session instead, like: session has cart, or "
                    "session.events > 3",
                )
            elif session_end and path.root == "last":
                yield self.error(
                    path.span,
                    f"'{format_path(path)}' cannot be used in the 'where' of "
                    f"{self.trigger_words}",
                    f"test the session with: session has {path.event_name}; "
                    "last(...) is for templates",
                )

    def session_path(self, path: t.Path) -> Iterator[Diagnostic]:
        if path.root != "session" or not path.parts:
            return
        field = path.parts[0]
        if field == "count" and path.event_name is None:
            yield self.error(
                path.span,
                "session.count needs an event name",
                "write it like: session.count(cart)",
            )
        elif field not in SESSION_FIELDS:
            close = difflib.get_close_matches(field, SESSION_FIELDS, n=1)
            hint = (
                f"did you mean 'session.{close[0]}'?"
                if close
                else "a session has: events, duration, count(E), clock; to test "
                "for an event, write: session has cart"
            )
            yield self.error(path.span, f"unknown session field '{field}'", hint)
        elif len(path.parts) > 1:
            yield self.error(
                path.span,
                f"session.{field} is a number and has no field '{path.parts[1]}'",
                f"write session.{field} alone",
            )

    # -- actions --------------------------------------------------------------------

    def action(self, action: t.Action) -> Iterator[Diagnostic]:
        if isinstance(action, t.WebhookAction):
            if not action.name.strip():
                yield self.error(
                    action.span,
                    "a webhook needs the name of a configured endpoint",
                    'like: webhook "crm"',
                )
            return
        texts: list[t.Template] = []
        for text in (action.title, action.body):
            if isinstance(text, t.Localised):
                texts.extend(template for _, template in text.entries)
            elif text is not None:
                texts.append(text)
        for template in (action.link, action.image):
            if template is not None:
                texts.append(template)
        texts.extend(value for _, value in action.data)
        collapse = action.collapse if isinstance(action, t.PushAction) else None
        if collapse is not None:
            texts.append(collapse)
        for template in texts:
            yield from self.template(template)
        for link in (action.link, action.image):
            if link is not None:
                yield from self.link(link)
        fixed = sum(len(_static(template).encode()) for template in texts)
        if fixed > PAYLOAD_LIMIT:
            yield self.error(
                action.span,
                f"the fixed text of this message is {fixed:,} bytes and can "
                f"never fit the {PAYLOAD_LIMIT:,} bytes push services take",
                "shorten the title, body and data",
            )
        if isinstance(action, t.PushAction):
            if action.ttl is not None:
                yield from self.ttl(action.ttl, action.span)
            if action.urgency is not None and action.urgency not in URGENCIES:
                close = difflib.get_close_matches(action.urgency, URGENCIES, n=1)
                yield self.error(
                    action.span,
                    f"unknown urgency '{action.urgency}'",
                    f"did you mean '{close[0]}'?"
                    if close
                    else "urgency is one of: " + ", ".join(URGENCIES),
                )
            if collapse is not None:
                size = len(_static(collapse).encode())
                if size > COLLAPSE_LIMIT:
                    yield self.error(
                        collapse.span,
                        f"a collapse key of {size} bytes is over the "
                        f"{COLLAPSE_LIMIT} bytes APNs takes",
                        'use a short key, like: collapse "cart"',
                    )

    def ttl(self, ttl: float, span: t.Span) -> Iterator[Diagnostic]:
        if ttl <= 0:
            yield self.error(
                span,
                f"ttl must be longer than zero, got {format_duration(ttl)}",
                "like: ttl 6h; leave it out for the push service's default",
            )
        elif ttl > MAX_TTL:
            yield self.error(
                span,
                f"ttl {format_duration(ttl)} is longer than 28 days",
                "use 28d or less: push services (FCM first) keep a message "
                "at most 28 days",
            )

    def template(self, template: t.Template) -> Iterator[Diagnostic]:
        for part in template.parts:
            if isinstance(part, str):
                continue
            yield from self.session_path(part.path)
            if self.at_session_end and part.path.root == "event":
                yield self.error(
                    part.path.span,
                    f"'{format_path(part.path)}' reads the event that "
                    f"triggered the rule, but {self.trigger_words} has none",
                    "read the last event of a name instead, like: last(cart).price",
                )
            for used in part.filters:
                yield from self.filter(used)

    def filter(self, used: t.Filter) -> Iterator[Diagnostic]:
        spec = FILTERS.get(used.name)
        if spec is None:
            name_span = t.Span(
                used.span.line,
                used.span.column,
                used.span.line,
                used.span.column + len(used.name),
            )
            close = difflib.get_close_matches(used.name, FILTERS, n=1)
            hint = (
                f"did you mean '{close[0]}'?"
                if close
                else "the filters are: " + ", ".join(sorted(FILTERS))
            )
            yield self.error(name_span, f"unknown filter '{used.name}'", hint)
            return

        count = len(used.args)
        if not spec.min_args <= count <= spec.max_args:
            yield self.error(
                used.span,
                f"filter '{used.name}' takes {_arity(spec.min_args, spec.max_args)}"
                f", got {count}",
                f"write it like: {{price | {spec.usage}}}",
            )
        elif used.name == "truncate":
            length = used.args[0].value
            if isinstance(length, bool) or not isinstance(length, int) or length < 1:
                yield self.error(
                    used.args[0].span,
                    "truncate takes a whole number of characters, 1 or more",
                    "like: truncate: 30",
                )
        elif used.name == "money" and count and not isinstance(used.args[0].value, str):
            yield self.error(
                used.args[0].span,
                "money takes a currency in quotes",
                "like: money: 'EUR'",
            )

    def link(self, link: t.Template) -> Iterator[Diagnostic]:
        head = link.parts[0] if link.parts else ""
        if not isinstance(head, str):
            yield self.error(
                link.span,
                "a link must begin with fixed text, not a placeholder",
                "the start says where the link goes, and must be checked here: "
                "begin with https://, an app scheme like shop://, or /",
            )
            return

        # Read as a browser reads it, so "java\tscript:" is still script.
        seen = as_read(head)
        scheme = link_scheme(head)
        if scheme is None:
            if seen.startswith(("//", "/\\")):
                yield self.error(
                    link.span,
                    "a link starting with // goes to another site",
                    "write the full https:// URL, or a path with a single /",
                )
            elif not seen.startswith("/"):
                yield self.error(
                    link.span,
                    f"'{_shorten(head)}' is not a link",
                    f"a link is {_LINK_FORMS}",
                )
            return

        if scheme in FORBIDDEN_SCHEMES:
            yield self.error(
                link.span,
                f"'{scheme}:' links are not allowed",
                "they run code or carry content in the receiver; "
                f"a link is {_LINK_FORMS}",
            )
        elif scheme == "http":
            yield self.error(
                link.span,
                "links must use https, not http",
                f"write https:{seen[len(scheme) + 1 :]}",
            )


def _paths(expr: t.Expr | None) -> Iterator[t.Path]:
    # The parser bounds nesting (MAX_NESTING), so recursion stays shallow.
    if expr is None or isinstance(expr, t.Literal | t.SessionHas):
        return
    if isinstance(expr, t.Path):
        yield expr
    elif isinstance(expr, t.And | t.Or):
        yield from _paths(expr.left)
        yield from _paths(expr.right)
    elif isinstance(expr, t.Not):
        yield from _paths(expr.operand)
    elif isinstance(expr, t.Compare | t.TextTest):
        yield from _paths(expr.left)
        yield from _paths(expr.right)
    elif isinstance(expr, t.InList):
        yield from _paths(expr.operand)
        if isinstance(expr.options, t.Path):
            yield expr.options
    else:
        yield expr.operand


def _patterns(expr: t.Expr | None) -> Iterator[str]:
    if isinstance(expr, t.And | t.Or):
        yield from _patterns(expr.left)
        yield from _patterns(expr.right)
    elif isinstance(expr, t.Not):
        yield from _patterns(expr.operand)
    elif (
        isinstance(expr, t.TextTest)
        and expr.op == "matches"
        and isinstance(expr.right, t.Literal)
    ):
        yield str(expr.right.value)


def _pattern_span(expr: t.Expr | None, pattern: str) -> t.Span:
    if isinstance(expr, t.And | t.Or):
        for side in (expr.left, expr.right):
            if pattern in _patterns(side):
                return _pattern_span(side, pattern)
    if isinstance(expr, t.Not):
        return _pattern_span(expr.operand, pattern)
    if isinstance(expr, t.TextTest):
        return expr.right.span
    return t.Span(0, 0, 0, 0)


def _static(template: t.Template) -> str:
    return "".join(part for part in template.parts if isinstance(part, str))


def _arity(low: int, high: int) -> str:
    if high == 0:
        return "no arguments"
    if low == high:
        return f"{low} argument" + ("" if low == 1 else "s")
    return f"{low} to {high} arguments"


def _shorten(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"
