"""Compile the syntax tree into the engine's matchers.

Conditions become nested closures over ``(props, session)``: no tree walk
and no dispatch on node types happens while events are matched. Every
comparison is total: a missing property is ``None``, and comparing values
of types that do not order (a string with a number, anything with ``None``)
is simply false, so no event can make a rule raise.
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Callable, Iterable
from typing import Any

import regex

from sessionpush.dsl import tree
from sessionpush.dsl.regex import MATCH_SECONDS, MAX_SUBJECT, pattern_problem
from sessionpush.engine.calendar import local_minutes
from sessionpush.engine.links import link_scheme
from sessionpush.engine.rules import (
    LANG_KEY,
    CompiledAction,
    CompiledGoal,
    CompiledLimit,
    CompiledRule,
    CompiledStep,
    CompiledVariant,
    Getter,
    Pred,
    QuietWindow,
    RuleSet,
    TemplatePart,
    TextParts,
)

log = logging.getLogger("sessionpush.engine")

__all__ = ["compile_expr", "compile_path", "compile_rule", "compile_rules"]

_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def path_key(path: tree.Path) -> str:
    """The canonical text of a path, used as its key in a snapshot."""
    if path.root == "last":
        return ".".join((f"last({path.event_name})", *path.parts))
    if path.root == "bound":
        return ".".join((f"as({path.event_name})", *path.parts))
    if path.root == "session" and path.parts == ("count",):
        return f"session.count({path.event_name})"
    return ".".join((path.root, *path.parts))


def _dig(value: Any, parts: tuple[str, ...]) -> Any:
    for part in parts:
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def compile_path(path: tree.Path) -> Getter:
    """A function reading the path's value from an event and its session."""
    parts = path.parts
    if path.root == "bound":
        bound = path.event_name or ""
        return lambda props, session: _dig(session.bound.get(bound), parts)
    if path.root == "session":
        return _session_field(path)
    head, rest = parts[0], parts[1:]
    if path.root == "event":
        if not rest:
            return lambda props, session: props.get(head)
        return lambda props, session: _dig(props.get(head), rest)
    if path.root == "user":
        return lambda props, session: _dig(session.user_attributes, parts)
    if path.root == "device":
        return lambda props, session: _dig(session.device, parts)
    name = path.event_name
    assert name is not None
    return lambda props, session: _dig(session.last.get(name), parts)


def _session_field(path: tree.Path) -> Getter:
    name = path.parts[0]
    if name == "count":
        event = path.event_name or ""
        return lambda props, session: session.tally.get(event, 0)
    if name == "events":
        return lambda props, session: session.events
    if name == "duration":
        return lambda props, session: session.duration
    if name == "clock":
        return lambda props, session: local_minutes(
            session.last_at, str(session.device.get("timezone") or "UTC")
        )
    # The checker rejects other fields; this keeps the compiler total.
    return lambda props, session: None


def _snapshot_path(path: tree.Path) -> Getter:
    """A path read at send time: the profile as it is now, the rest as it
    was at the trigger (the session may be over)."""
    if path.root == "user":
        return compile_path(path)
    key = path_key(path)
    return lambda props, session: props.get(key)


def has_key(event: str) -> str:
    """The snapshot key of ``session has E``."""
    return f"session has {event}"


PathCompiler = Callable[[tree.Path], Getter]


def _value(
    node: tree.Path | tree.Literal, path: PathCompiler
) -> tuple[Getter | None, Any]:
    if isinstance(node, tree.Literal):
        return None, node.value
    return path(node), None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _same_kind(a: Any, b: Any) -> bool:
    # bool is an int in Python; in rules, true is not 1.
    if _is_number(a):
        return _is_number(b)
    return type(a) is type(b)


def _equal(a: Any, b: Any) -> bool:
    return a == b and (a is None or _same_kind(a, b))


def _compare(node: tree.Compare, path: PathCompiler) -> Pred:
    if node.op in ("==", "!="):
        negate = node.op == "!="

        def test(a: Any, b: Any) -> bool:
            return _equal(a, b) != negate

    else:
        order = _ORDER[node.op]

        def test(a: Any, b: Any) -> bool:
            if a is None or b is None or not _same_kind(a, b):
                return False
            try:
                return bool(order(a, b))
            except TypeError:
                return False

    return _binary(node.left, node.right, test, path)


def _binary(
    left: tree.Path | tree.Literal,
    right: tree.Path | tree.Literal,
    test: Callable[[Any, Any], bool],
    path: PathCompiler,
) -> Pred:
    left_get, left_const = _value(left, path)
    right_get, right_const = _value(right, path)

    if left_get is not None and right_get is None:
        return lambda props, session: test(left_get(props, session), right_const)
    if left_get is None and right_get is not None:
        return lambda props, session: test(left_const, right_get(props, session))
    if left_get is not None and right_get is not None:
        return lambda props, session: test(
            left_get(props, session), right_get(props, session)
        )
    constant = test(left_const, right_const)
    return lambda props, session: constant


def _member(value: Any, options: Any) -> bool:
    if not isinstance(options, list | tuple):
        return False
    return any(_equal(value, option) for option in options)


def _in_list(node: tree.InList, path: PathCompiler) -> Pred:
    negated = node.negated
    if isinstance(node.options, tree.ListExpr):
        options = [item.value for item in node.options.items]
        right: tree.Path | tree.Literal = tree.Literal(None)

        def test(value: Any, _unused: Any) -> bool:
            return _member(value, options) != negated

    else:
        right = node.options

        def test(value: Any, _unused: Any) -> bool:
            return _member(value, _unused) != negated

    return _binary(node.operand, right, test, path)


def _contains(haystack: Any, needle: Any) -> bool:
    if isinstance(haystack, str):
        return isinstance(needle, str) and needle in haystack
    return _member(needle, haystack)


def _starts_with(text: Any, prefix: Any) -> bool:
    return isinstance(text, str) and isinstance(prefix, str) and text.startswith(prefix)


def _text_test(node: tree.TextTest, path: PathCompiler) -> Pred:
    if node.op == "contains":
        return _binary(node.left, node.right, _contains, path)
    if node.op == "starts with":
        return _binary(node.left, node.right, _starts_with, path)
    pattern = str(node.right.value) if isinstance(node.right, tree.Literal) else ""
    if pattern_problem(pattern) is not None:
        # The checker refuses such patterns; never run one that slipped by.
        return lambda props, session: False
    search = regex.compile(pattern, regex.VERSION0).search

    def matches(text: Any, _: Any) -> bool:
        if not isinstance(text, str):
            return False
        try:
            return search(text[:MAX_SUBJECT], timeout=MATCH_SECONDS) is not None
        except TimeoutError:
            # A pattern the shape check let through can still be slow
            # (a*a*a*b is cubic); past the bound the value does not match.
            log.warning("pattern %.60r gave up after %s s", pattern, MATCH_SECONDS)
            return False

    return _binary(node.left, tree.Literal(None), matches, path)


def _truthy(get: Getter) -> Pred:
    return lambda props, session: bool(get(props, session))


def compile_expr(node: tree.Expr, path: PathCompiler = compile_path) -> Pred:
    """A predicate over ``(props, session)`` for a condition.

    Args:
        node: The condition.
        path: How paths are read; the default reads the event and the live
            session.
    """
    if isinstance(node, tree.Compare):
        return _compare(node, path)
    if isinstance(node, tree.InList):
        return _in_list(node, path)
    if isinstance(node, tree.TextTest):
        return _text_test(node, path)
    if isinstance(node, tree.Exists):
        get = path(node.operand)
        return lambda props, session: get(props, session) is not None
    if isinstance(node, tree.And):
        left, right = compile_expr(node.left, path), compile_expr(node.right, path)
        return lambda props, session: left(props, session) and right(props, session)
    if isinstance(node, tree.Or):
        left, right = compile_expr(node.left, path), compile_expr(node.right, path)
        return lambda props, session: left(props, session) or right(props, session)
    if isinstance(node, tree.Not):
        operand = compile_expr(node.operand, path)
        return lambda props, session: not operand(props, session)
    if isinstance(node, tree.SessionHas):
        name = node.event
        if path is _snapshot_path:
            key = has_key(name)
            return lambda props, session: bool(props.get(key))
        return lambda props, session: name in session.seen
    if isinstance(node, tree.Path):
        return _truthy(path(node))
    constant = bool(node.value)
    return lambda props, session: constant


def _walk(node: Any) -> Iterable[Any]:
    """Every node under ``node`` (conditions and templates)."""
    yield node
    if isinstance(node, tree.And | tree.Or):
        yield from _walk(node.left)
        yield from _walk(node.right)
    elif isinstance(node, tree.Not):
        yield from _walk(node.operand)
    elif isinstance(node, tree.Compare):
        yield from _walk(node.left)
        yield from _walk(node.right)
    elif isinstance(node, tree.InList):
        yield from _walk(node.operand)
        yield from _walk(node.options)
    elif isinstance(node, tree.TextTest):
        yield from _walk(node.left)
        yield from _walk(node.right)
    elif isinstance(node, tree.Exists):
        yield node.operand
    elif isinstance(node, tree.Localised):
        for _, template in node.entries:
            yield from _walk(template)
    elif isinstance(node, tree.Template):
        for part in node.parts:
            if isinstance(part, tree.Placeholder):
                yield part.path


def _template(template: tree.Template) -> tuple[TemplatePart, ...]:
    parts: list[TemplatePart] = []
    for part in template.parts:
        if isinstance(part, str):
            parts.append(part)
        else:
            filters = tuple(
                (f.name, tuple(arg.value for arg in f.args)) for f in part.filters
            )
            parts.append((path_key(part.path), filters))
    return tuple(parts)


def _text_parts(text: tree.Text) -> TextParts:
    if isinstance(text, tree.Template):
        return _template(text)
    return tuple((lang, _template(template)) for lang, template in text.entries)


def _action(action: tree.Action) -> CompiledAction:
    if isinstance(action, tree.WebhookAction):
        return CompiledAction("webhook", webhook=action.name)
    texts: list[tuple[str, tree.Text | None]] = [
        ("title", action.title),
        ("body", action.body),
        ("link", action.link),
        ("image", action.image),
    ]
    if isinstance(action, tree.PushAction):
        texts.append(("collapse", action.collapse))
    fields = tuple((name, _text_parts(text)) for name, text in texts if text)
    localised = frozenset(
        name for name, text in texts if isinstance(text, tree.Localised)
    )
    data = tuple((key, _template(value)) for key, value in action.data)
    if isinstance(action, tree.PushAction):
        return CompiledAction(
            "push",
            fields,
            ttl=action.ttl,
            urgency=action.urgency,
            data=data,
            localised=localised,
        )
    return CompiledAction(
        "inapp", fields, data=data, localised=localised, else_push=action.else_push
    )


def _link_schemes(actions: list[tree.Action]) -> tuple[tuple[str, int, int], ...]:
    found = []
    for action in actions:
        if isinstance(action, tree.WebhookAction):
            continue
        for link in (action.link, action.image):
            head = link.parts[0] if link is not None and link.parts else None
            scheme = link_scheme(head) if isinstance(head, str) else None
            if link is not None and scheme is not None:
                found.append((scheme, link.span.line, link.span.column))
    return tuple(found)


def _texts(action: tree.Action) -> list[tree.Text]:
    if isinstance(action, tree.WebhookAction):
        return []
    found: list[tree.Text | None] = [
        action.title,
        action.body,
        action.link,
        action.image,
        *(value for _, value in action.data),
    ]
    if isinstance(action, tree.PushAction):
        found.append(action.collapse)
    return [text for text in found if text is not None]


def _trigger_fields(trigger: tree.Trigger) -> tuple[str, dict[str, Any], list[Any]]:
    """The rule kind, its trigger's compiled fields, and its conditions."""
    fields: dict[str, Any]
    if isinstance(trigger, tree.EventTrigger):
        fields = {
            "event": trigger.event,
            "where": _maybe(trigger.where),
            "binding": trigger.binding,
        }
        return "event", fields, [trigger.where]
    if isinstance(trigger, tree.SequenceTrigger | tree.AbsenceTrigger):
        first = trigger.first
        steps = (
            CompiledStep(first.event, _maybe(first.where), 0.0, first.binding),
            *(
                CompiledStep(s.event, _maybe(s.where), s.within, s.binding)
                for s in trigger.steps
            ),
        )
        conditions = [first.where, *(s.where for s in trigger.steps)]
        fields = {"event": first.event, "where": steps[0].where, "steps": steps}
        if isinstance(trigger, tree.SequenceTrigger):
            return "sequence", fields, conditions
        fields.update(
            absent=trigger.absent,
            absent_where=_maybe(trigger.absent_where),
            absent_binding=trigger.absent_binding,
            within=trigger.within,
        )
        return "absence", fields, [*conditions, trigger.absent_where]
    if isinstance(trigger, tree.CountTrigger):
        match = trigger.event
        fields = {
            "event": match.event,
            "where": _maybe(match.where),
            "binding": match.binding,
            "count": trigger.count,
            "within": trigger.within,
        }
        return "count", fields, [match.where]
    if isinstance(trigger, tree.IdleTrigger):
        fields = {"where": _maybe(trigger.where), "idle": trigger.seconds}
        return "idle", fields, [trigger.where]
    kind = (
        "session_start"
        if isinstance(trigger, tree.SessionStartTrigger)
        else "session_end"
    )
    return kind, {"where": _maybe(trigger.where)}, [trigger.where]


def compile_rule(rule: tree.Rule, source: str = "") -> CompiledRule:
    """Compile one checked rule."""
    kind, kwargs, conditions = _trigger_fields(rule.trigger)
    conditions += [u.where for u in rule.unless]
    if rule.goal is not None:
        conditions.append(rule.goal.where)
    if rule.condition is not None:
        conditions.append(rule.condition)

    actions = [rule.action] if rule.action is not None else []
    actions += [variant.action for variant in rule.variants]
    texts = [text for action in actions for text in _texts(action)]
    nodes = [n for c in conditions if c is not None for n in _walk(c)]
    nodes += [n for text in texts for n in _walk(text)]
    captured = {
        path_key(n): compile_path(n)
        for text in texts
        for n in _walk(text)
        if isinstance(n, tree.Path)
    }
    guard = guard_at_send = None
    if rule.condition is not None:
        guard = compile_expr(rule.condition)
        guard_at_send = compile_expr(rule.condition, _snapshot_path)
        for node in _walk(rule.condition):
            if isinstance(node, tree.Path) and node.root != "user":
                captured[path_key(node)] = compile_path(node)
            elif isinstance(node, tree.SessionHas):
                captured[has_key(node.event)] = _has_getter(node.event)
    if any(isinstance(text, tree.Localised) for text in texts):
        captured[LANG_KEY] = lambda props, session: session.device.get("lang")

    compiled = [_action(action) for action in actions]
    quiet = rule.quiet
    goal = rule.goal
    return CompiledRule(
        name=rule.name,
        kind=kind,  # type: ignore[arg-type]
        action=compiled[0],
        title=rule.title,
        wait=rule.wait.seconds if rule.wait else None,
        wait_after_end=bool(rule.wait and rule.wait.after_session_end),
        unless=tuple((u.event, _maybe(u.where)) for u in rule.unless),
        limits=tuple(
            CompiledLimit(lim.count, lim.per, lim.window) for lim in rule.limits
        ),
        captures=tuple(sorted(captured.items())),
        needs_seen=frozenset(n.event for n in nodes if isinstance(n, tree.SessionHas)),
        needs_last=frozenset(
            n.event_name
            for n in nodes
            if isinstance(n, tree.Path) and n.root == "last" and n.event_name
        ),
        needs_tally=frozenset(
            n.event_name
            for n in nodes
            if isinstance(n, tree.Path)
            and n.root == "session"
            and n.parts == ("count",)
            and n.event_name
        ),
        source=source,
        guard=guard,
        guard_at_send=guard_at_send,
        at=rule.at.minutes if rule.at else None,
        quiet=None
        if quiet is None
        else QuietWindow(quiet.start, quiet.end, quiet.drop),
        holdout=rule.holdout,
        variants=tuple(
            CompiledVariant(variant.name, variant.percent, action)
            for variant, action in zip(
                rule.variants,
                compiled[len(compiled) - len(rule.variants) :],
                strict=True,
            )
        ),
        goal=None
        if goal is None
        else CompiledGoal(goal.event, _maybe(goal.where), goal.within),
        priority=rule.priority,
        links=_link_schemes(actions),
        **kwargs,
    )


def _has_getter(event: str) -> Getter:
    return lambda props, session: event in session.seen


def _maybe(node: tree.Expr | None) -> Pred | None:
    return None if node is None else compile_expr(node)


def compile_rules(files: Iterable[tree.RuleFile], version: str = "") -> RuleSet:
    """Compile checked rule files into one rule set."""
    return RuleSet(
        (compile_rule(rule, source=f.path) for f in files for rule in f.rules),
        version=version,
    )
