"""Canonical formatting: a syntax tree written back as rule text.

``sessionpush fmt`` rewrites rule files in one layout, so that a diff shows
what changed in meaning and not who indented how. The layout: one clause a
line, four spaces of indentation, clauses in a fixed order (trigger, timing,
policy, action), a blank line between rules, and conditions with only the
parentheses their meaning needs.

Two promises, both tested with generated trees: parsing the output gives
back the tree (``parse(fmt(tree)) == tree``), and formatting formatted text
changes nothing. Comments are kept: a comment between rules stays before
the rule that follows it, a comment at the end of a one-line clause stays at
its end, and any other comment inside a rule moves onto its own line above
the clause it was in or before.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from decimal import Decimal

from sessionpush.dsl import tree as t
from sessionpush.dsl.parse import parse_text

__all__ = ["format_expr", "format_file", "format_rule", "format_text"]

_INDENT = "    "

# Words a bare path may not start with: the parser would read them as the
# keyword. Such paths are written with their root, like ``event.user``.
_RESERVED = frozenset(
    (
        *("rule", "when", "where", "as", "then", "no", "within", "times", "idle"),
        *("session", "starts", "ends", "wait", "after", "end", "at", "unless"),
        *("if", "limit", "per", "user", "day", "quiet", "hours", "drop"),
        *("holdout", "variant", "goal", "priority", "push", "inapp", "else"),
        *("webhook", "title", "body", "link", "image", "ttl", "urgency"),
        *("collapse", "data", "and", "or", "not", "in", "contains", "with"),
        *("matches", "exists", "has", "event", "device", "last", "count"),
        *("true", "false", "null"),
    )
)

# The names bound with ``as`` in the rule being written: a plain event path
# that starts with one must keep its ``event.`` root.
_BOUND: ContextVar[frozenset[str]] = ContextVar("bound", default=frozenset())

# Binding strength of the condition operators, loosest first.
_OR, _AND, _NOT, _ATOM = range(4)


def format_text(text: str, path: str = "<string>") -> str:
    """Format the text of one rule file, keeping its comments.

    Raises:
        RulesError: The text does not parse; nothing is formatted then.
    """
    rule_file = parse_text(text, path)
    return format_file(rule_file, _comments(text))


@dataclass(frozen=True, slots=True)
class _Comment:
    line: int
    text: str
    alone: bool  # nothing but blanks before it on its line
    gap: bool = False  # a blank line comes before it


def format_file(rule_file: t.RuleFile, comments: list[_Comment] | None = None) -> str:
    """Write a parsed file back in canonical form, ending in one line break."""
    pending = list(comments or [])
    blocks: list[str] = []
    for rule in rule_file.rules:
        before = [c for c in pending if c.line < rule.span.line]
        inside = [c for c in pending if rule.span.line <= c.line <= rule.span.end_line]
        pending = [c for c in pending if c.line > rule.span.end_line]
        blocks.append(_block(before) + format_rule(rule, inside))
    tail = _block(pending)
    if not blocks:
        return tail
    return "\n".join(blocks) + ("\n" + tail if tail else "")


def _block(comments: list[_Comment]) -> str:
    # Paragraphs of comments keep the blank lines between them.
    lines = [
        ("\n" if c.gap and i else "") + c.text + "\n" for i, c in enumerate(comments)
    ]
    return "".join(lines)


def format_rule(rule: t.Rule, comments: list[_Comment] | None = None) -> str:
    """One rule in canonical form, with a line break after its ``}``."""
    head = f"rule {rule.name}"
    if rule.title is not None:
        head += " " + _string(rule.title)
    token = _BOUND.set(_bound_names(rule.trigger))
    try:
        clauses = list(_clauses(rule))
    finally:
        _BOUND.reset(token)
    placed: dict[int, list[str]] = {}
    trailing: dict[int, str] = {}
    after: list[str] = []
    for comment in comments or []:
        index = _clause_for(clauses, comment.line)
        if index is None:
            after.append(comment.text)
            continue
        span, lines = clauses[index]
        one_line = len(lines) == 1 and comment.line == span.line
        if one_line and not comment.alone and index not in trailing:
            trailing[index] = comment.text
            continue
        placed.setdefault(index, []).append(comment.text)

    out = [head + " {"]
    for index, (_, lines) in enumerate(clauses):
        out.extend(_INDENT + text for text in placed.get(index, []))
        body = [_INDENT + line for line in lines]
        if index in trailing:
            body[0] += "  " + trailing[index]
        out.extend(body)
    out.extend(_INDENT + text for text in after)
    out.append("}")
    return "\n".join(out) + "\n"


def _clause_for(clauses: list[tuple[t.Span, list[str]]], line: int) -> int | None:
    # The clause the comment sits in, else the first one after it.
    for index, (span, _) in enumerate(clauses):
        if span.line <= line <= span.end_line and span.line > 0:
            return index
    later = [i for i, (span, _) in enumerate(clauses) if span.line > line]
    return min(later, key=lambda i: clauses[i][0].line) if later else None


def _clauses(rule: t.Rule) -> Iterator[tuple[t.Span, list[str]]]:
    yield rule.trigger.span, _trigger(rule.trigger)
    if rule.wait is not None:
        text = f"wait {_duration(rule.wait.seconds)}"
        if rule.wait.after_session_end:
            text += " after session end"
        yield rule.wait.span, [text]
    if rule.at is not None:
        yield rule.at.span, [f"at {_clock(rule.at.minutes)}"]
    for unless in rule.unless:
        yield unless.span, ["unless " + _match(unless.event, None, unless.where)]
    if rule.condition is not None:
        yield rule.condition.span, ["if " + format_expr(rule.condition)]
    for limit in rule.limits:
        yield limit.span, [_limit(limit)]
    if rule.quiet is not None:
        quiet = rule.quiet
        text = f"quiet hours {_clock(quiet.start)}-{_clock(quiet.end)}"
        yield quiet.span, [text + (" drop" if quiet.drop else "")]
    nowhere = t.Span(0, 0, 0, 0)
    if rule.holdout is not None:
        yield nowhere, [f"holdout {_percent(rule.holdout)}"]
    if rule.goal is not None:
        goal = rule.goal
        text = "goal " + _match(goal.event, None, goal.where)
        yield goal.span, [f"{text} within {_duration(goal.within)}"]
    if rule.priority:
        yield nowhere, [f"priority {rule.priority}"]
    if rule.action is not None:
        yield rule.action.span, _action(rule.action)
    for variant in rule.variants:
        lines = _action(variant.action)
        head = f"variant {variant.name} {_percent(variant.percent)} {{"
        yield variant.span, [head, *(_INDENT + line for line in lines), "}"]


def _bound_names(trigger: t.Trigger) -> frozenset[str]:
    names: list[str | None] = []
    if isinstance(trigger, t.EventTrigger):
        names.append(trigger.binding)
    elif isinstance(trigger, t.CountTrigger):
        names.append(trigger.event.binding)
    elif isinstance(trigger, t.SequenceTrigger | t.AbsenceTrigger):
        names.append(trigger.first.binding)
        names.extend(step.binding for step in trigger.steps)
        if isinstance(trigger, t.AbsenceTrigger):
            names.append(trigger.absent_binding)
    return frozenset(name for name in names if name is not None)


# -- triggers and clauses -----------------------------------------------------


def _match(event: str, binding: str | None, where: t.Expr | None) -> str:
    text = event
    if binding is not None:
        text += f" as {binding}"
    if where is not None:
        text += " where " + format_expr(where)
    return text


def _trigger(trigger: t.Trigger) -> list[str]:
    if isinstance(trigger, t.SessionEndTrigger | t.SessionStartTrigger):
        word = "ends" if isinstance(trigger, t.SessionEndTrigger) else "starts"
        text = f"when session {word}"
        return [text + _where(trigger.where)]
    if isinstance(trigger, t.IdleTrigger):
        return [f"when idle {_duration(trigger.seconds)}" + _where(trigger.where)]
    if isinstance(trigger, t.CountTrigger):
        first = trigger.event
        match = _match(first.event, first.binding, first.where)
        return [
            f"when {trigger.count} times {match} within {_duration(trigger.within)}"
        ]
    first = trigger.first if not isinstance(trigger, t.EventTrigger) else trigger
    lines = ["when " + _match(first.event, first.binding, first.where)]
    steps = () if isinstance(trigger, t.EventTrigger) else trigger.steps
    for step in steps:
        match = _match(step.event, step.binding, step.where)
        lines.append(f"{_INDENT}then {match} within {_duration(step.within)}")
    if isinstance(trigger, t.AbsenceTrigger):
        match = _match(trigger.absent, trigger.absent_binding, trigger.absent_where)
        lines.append(f"{_INDENT}then no {match} within {_duration(trigger.within)}")
    return lines


def _where(where: t.Expr | None) -> str:
    return "" if where is None else " where " + format_expr(where)


def _limit(limit: t.Limit) -> str:
    if limit.per == "session":
        return f"limit {limit.count} per session"
    if limit.per == "day":
        return f"limit {limit.count} per user per day"
    if limit.window is None:
        return f"limit {limit.count} per user"
    return f"limit {limit.count} per user per {_duration(limit.window)}"


def _action(action: t.Action) -> list[str]:
    if isinstance(action, t.WebhookAction):
        return [f"webhook {_string(action.name)}"]
    word = "push" if isinstance(action, t.PushAction) else "inapp"
    fields: list[str] = [f"title {_text(action.title)}"]
    if action.body is not None:
        fields.append(f"body {_text(action.body)}")
    if action.link is not None:
        fields.append(f"link {_template(action.link)}")
    if action.image is not None:
        fields.append(f"image {_template(action.image)}")
    if isinstance(action, t.PushAction):
        if action.ttl is not None:
            fields.append(f"ttl {_duration(action.ttl)}")
        if action.urgency is not None:
            fields.append(f"urgency {action.urgency}")
        if action.collapse is not None:
            fields.append(f"collapse {_template(action.collapse)}")
    if action.data:
        entries = ", ".join(f"{key}: {_template(value)}" for key, value in action.data)
        fields.append(f"data {{ {entries} }}")
    tail = (
        " else push" if isinstance(action, t.InappAction) and action.else_push else ""
    )
    return [f"{word} {{", *(_INDENT + field for field in fields), "}" + tail]


# -- text ---------------------------------------------------------------------------


def _text(text: t.Text) -> str:
    if isinstance(text, t.Template):
        return _template(text)
    entries = " ".join(f"{lang} {_template(value)}" for lang, value in text.entries)
    return f"{{ {entries} }}"


def _template(template: t.Template) -> str:
    # The template is written as the text it decodes to, then quoted: the
    # parser unquotes first and finds the placeholders in what is left.
    chunks: list[str] = []
    for part in template.parts:
        if isinstance(part, str):
            chunks.append(part.replace("{", "{{").replace("}", "}}"))
        else:
            chunks.append("{" + _placeholder(part) + "}")
    return _string("".join(chunks))


def _placeholder(placeholder: t.Placeholder) -> str:
    text = _path(placeholder.path, in_template=True)
    for used in placeholder.filters:
        text += f" | {used.name}"
        if used.args:
            args = ", ".join(_literal(arg, quote="'") for arg in used.args)
            text += f": {args}"
    return text


_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _string(value: str, quote: str = '"') -> str:
    out = [quote]
    for char in value:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif char == quote:
            out.append("\\" + char)
        elif not char.isprintable() and ord(char) <= 0xFFFF:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    out.append(quote)
    return "".join(out)


# -- conditions ---------------------------------------------------------------------


def format_expr(expr: t.Expr) -> str:
    """A condition in canonical form, with only the parentheses it needs."""
    return _expr(expr, _OR)


def _expr(expr: t.Expr, context: int) -> str:
    if isinstance(expr, t.Or):
        text = f"{_expr(expr.left, _OR)} or {_expr(expr.right, _AND)}"
        strength = _OR
    elif isinstance(expr, t.And):
        text = f"{_expr(expr.left, _AND)} and {_expr(expr.right, _NOT)}"
        strength = _AND
    elif isinstance(expr, t.Not):
        text = f"not {_expr(expr.operand, _NOT)}"
        strength = _NOT
    else:
        return _atom(expr)
    return f"({text})" if strength < context else text


def _atom(expr: t.Expr) -> str:
    if isinstance(expr, t.Compare):
        return f"{_operand(expr.left)} {expr.op} {_operand(expr.right)}"
    if isinstance(expr, t.InList):
        word = "not in" if expr.negated else "in"
        options = expr.options
        right = _list(options) if isinstance(options, t.ListExpr) else _path(options)
        return f"{_operand(expr.operand)} {word} {right}"
    if isinstance(expr, t.TextTest):
        return f"{_operand(expr.left)} {expr.op} {_operand(expr.right)}"
    if isinstance(expr, t.Exists):
        return f"{_path(expr.operand)} exists"
    if isinstance(expr, t.SessionHas):
        return f"session has {expr.event}"
    if isinstance(expr, t.Path | t.Literal):
        return _operand(expr)
    raise TypeError(f"not a condition atom: {expr!r}")


def _operand(node: t.Path | t.Literal) -> str:
    return _path(node) if isinstance(node, t.Path) else _literal(node)


def _list(items: t.ListExpr) -> str:
    return "[" + ", ".join(_literal(item) for item in items.items) + "]"


def _path(path: t.Path, in_template: bool = False) -> str:
    if path.root == "bound":
        return ".".join((str(path.event_name), *path.parts))
    if path.root == "last":
        return ".".join((f"last({path.event_name})", *path.parts))
    if path.root == "session" and path.parts == ("count",):
        return f"session.count({path.event_name})"
    head = path.parts[0]
    if path.root == "event" and head not in _RESERVED and head not in _BOUND.get():
        return ".".join(path.parts)
    return ".".join((path.root, *path.parts))


def _literal(literal: t.Literal, quote: str = '"') -> str:
    value = literal.value
    if literal.is_duration and isinstance(value, int | float):
        return _duration(float(value))
    if literal.is_clock and isinstance(value, int):
        return _clock(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return _string(value, quote)
    if isinstance(value, float):
        text = format(Decimal(repr(value)), "f")
        return text if "." in text else text + ".0"
    return str(value)


def _duration(seconds: float) -> str:
    # Exact, unlike format_duration (which rounds for messages): the text
    # must parse back to the very same number of seconds.
    exact = Decimal(repr(seconds))
    sign, size = ("-" if exact < 0 else ""), abs(exact)
    for unit, factor in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if size >= factor and size % factor == 0:
            return f"{sign}{size // factor}{unit}"
    if (size * 1000) == (size * 1000).to_integral_value() and size:
        return f"{sign}{(size * 1000).normalize():f}ms"
    return f"{sign}{size.normalize():f}s"


def _clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _percent(value: float) -> str:
    text = format(Decimal(repr(value)).normalize(), "f")
    return f"{text}%"


# -- comments -----------------------------------------------------------------------


def _comments(text: str) -> list[_Comment]:
    """Every ``# ...`` outside a string, with its line."""
    found: list[_Comment] = []
    previous = ""
    for number, line in enumerate(text.split("\n"), start=1):
        gap = not previous.strip()
        previous = line
        quote = ""
        index = 0
        while index < len(line):
            char = line[index]
            if quote:
                if char == "\\":
                    index += 1
                elif char == quote:
                    quote = ""
            elif char in "\"'":
                quote = char
            elif char == "#":
                body = line[index:].rstrip()
                alone = not line[:index].strip()
                found.append(_Comment(number, body, alone, gap and alone))
                break
            index += 1
    return found
