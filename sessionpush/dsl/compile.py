"""Compile the syntax tree into the engine's matchers.

Conditions become nested closures over ``(props, session)``: no tree walk
and no dispatch on node types happens while events are matched. Every
comparison is total: a missing property is ``None``, and comparing values
of types that do not order (a string with a number, anything with ``None``)
is simply false, so no event can make a rule raise.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable
from typing import Any

from sessionpush.dsl import tree
from sessionpush.engine.rules import (
    CompiledAction,
    CompiledLimit,
    CompiledRule,
    Getter,
    Pred,
    RuleSet,
    TemplatePart,
)
from sessionpush.engine.session import Session

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
    head, rest = parts[0], parts[1:]
    if path.root == "event":
        if not rest:
            return lambda props, session: props.get(head)
        return lambda props, session: _dig(props.get(head), rest)
    if path.root == "user":
        return lambda props, session: _dig(session.user_attributes, parts)
    if path.root == "device":
        return lambda props, session: _dig(session.device, parts)
    if path.root == "last":
        name = path.event_name
        assert name is not None
        return lambda props, session: _dig(session.last.get(name), parts)
    return _session_field(head)


def _session_field(name: str) -> Getter:
    if name == "events":
        return lambda props, session: session.events
    if name == "duration":
        return lambda props, session: session.duration
    # The checker rejects other fields; this keeps the compiler total.
    return lambda props, session: None


def _value(node: tree.Path | tree.Literal) -> tuple[Getter | None, Any]:
    if isinstance(node, tree.Literal):
        return None, node.value
    return compile_path(node), None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _same_kind(a: Any, b: Any) -> bool:
    # bool is an int in Python; in rules, true is not 1.
    if _is_number(a):
        return _is_number(b)
    return type(a) is type(b)


def _equal(a: Any, b: Any) -> bool:
    return a == b and (a is None or _same_kind(a, b))


def _compare(node: tree.Compare) -> Pred:
    left_get, left_const = _value(node.left)
    right_get, right_const = _value(node.right)
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


def _in_list(node: tree.InList) -> Pred:
    get = compile_path(node.operand)
    options = [item.value for item in node.options.items]
    negated = node.negated

    def test(props: dict[str, Any], session: Session) -> bool:
        value = get(props, session)
        found = any(_equal(value, option) for option in options)
        return found != negated

    return test


def _truthy(get: Getter) -> Pred:
    return lambda props, session: bool(get(props, session))


def compile_expr(node: tree.Expr) -> Pred:
    """A predicate over ``(props, session)`` for a condition."""
    if isinstance(node, tree.Compare):
        return _compare(node)
    if isinstance(node, tree.InList):
        return _in_list(node)
    if isinstance(node, tree.And):
        left, right = compile_expr(node.left), compile_expr(node.right)
        return lambda props, session: left(props, session) and right(props, session)
    if isinstance(node, tree.Or):
        left, right = compile_expr(node.left), compile_expr(node.right)
        return lambda props, session: left(props, session) or right(props, session)
    if isinstance(node, tree.Not):
        operand = compile_expr(node.operand)
        return lambda props, session: not operand(props, session)
    if isinstance(node, tree.SessionHas):
        name = node.event
        return lambda props, session: name in session.seen
    if isinstance(node, tree.Path):
        return _truthy(compile_path(node))
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


def _action(action: tree.Action) -> CompiledAction:
    fields = [("title", action.title), ("body", action.body), ("link", action.link)]
    compiled = tuple(
        (name, _template(template)) for name, template in fields if template is not None
    )
    if isinstance(action, tree.PushAction):
        return CompiledAction("push", compiled, ttl=action.ttl)
    return CompiledAction("inapp", compiled)


def compile_rule(rule: tree.Rule, source: str = "") -> CompiledRule:
    """Compile one checked rule."""
    trigger = rule.trigger
    conditions: list[tree.Expr | None] = [u.where for u in rule.unless]
    kwargs: dict[str, Any] = {}
    if isinstance(trigger, tree.EventTrigger):
        kind = "event"
        kwargs.update(event=trigger.event, where=_maybe(trigger.where))
        conditions.append(trigger.where)
    elif isinstance(trigger, tree.AbsenceTrigger):
        kind = "absence"
        kwargs.update(
            event=trigger.first.event,
            where=_maybe(trigger.first.where),
            absent=trigger.absent,
            absent_where=_maybe(trigger.absent_where),
            within=trigger.within,
        )
        conditions += [trigger.first.where, trigger.absent_where]
    else:
        kind = "session_end"
        kwargs.update(where=_maybe(trigger.where))
        conditions.append(trigger.where)

    templates = [
        t for t in (rule.action.title, rule.action.body, rule.action.link) if t
    ]
    nodes = [n for c in conditions if c is not None for n in _walk(c)]
    nodes += [n for t in templates for n in _walk(t)]
    template_paths = {
        path_key(n): n for t in templates for n in _walk(t) if isinstance(n, tree.Path)
    }
    return CompiledRule(
        name=rule.name,
        kind=kind,  # type: ignore[arg-type]
        action=_action(rule.action),
        title=rule.title,
        wait=rule.wait.seconds if rule.wait else None,
        wait_after_end=bool(rule.wait and rule.wait.after_session_end),
        unless=tuple((u.event, _maybe(u.where)) for u in rule.unless),
        limits=tuple(
            CompiledLimit(lim.count, lim.per, lim.window) for lim in rule.limits
        ),
        captures=tuple(
            (key, compile_path(path)) for key, path in sorted(template_paths.items())
        ),
        needs_seen=frozenset(n.event for n in nodes if isinstance(n, tree.SessionHas)),
        needs_last=frozenset(
            n.event_name
            for n in nodes
            if isinstance(n, tree.Path) and n.root == "last" and n.event_name
        ),
        source=source,
        **kwargs,
    )


def _maybe(node: tree.Expr | None) -> Pred | None:
    return None if node is None else compile_expr(node)


def compile_rules(files: Iterable[tree.RuleFile], version: str = "") -> RuleSet:
    """Compile checked rule files into one rule set."""
    return RuleSet(
        (compile_rule(rule, source=f.path) for f in files for rule in f.rules),
        version=version,
    )
