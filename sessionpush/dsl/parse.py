"""From ``.rules`` text to the typed syntax tree of :mod:`sessionpush.dsl.tree`.

The grammar lives in ``sessionpush/grammar/rules.lark``; Lark parses it
(LALR, contextual lexer) and this module maps Lark's tree to ours, with the
span of every node. Text fields are templates: their ``{path | filter: arg}``
placeholders are parsed here too, from the grammar's ``placeholder`` start
symbol, and their spans point into the file, inside the quotes.

This is the boundary with Lark: whatever the input, the only exception that
leaves :func:`parse_text` is :class:`~sessionpush.dsl.errors.RulesError`,
worded for a rule author (``expected a duration like 10m or 24h, came
'10'``), never in terminal names.
"""

from __future__ import annotations

import bisect
import difflib
import functools
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from decimal import Decimal
from importlib import resources
from typing import Any, NoReturn

from lark import Lark, Token, Tree
from lark.exceptions import (
    LarkError,
    UnexpectedInput,
    UnexpectedToken,
)
from lark.lexer import PatternStr

from sessionpush.dsl import tree as t
from sessionpush.dsl.check import ClauseKind, check_action_fields, check_clauses
from sessionpush.dsl.errors import Diagnostic, RulesError

__all__ = ["MAX_BYTES", "MAX_NESTING", "parse_text", "parse_with_diagnostics"]

MAX_BYTES = 1024 * 1024
"""The largest rule file accepted. A thousand rules fit in a fifth of it;
past it a file is a mistake (a data file named ``.rules``), and refusing it
up front keeps ``check`` and server start-up fast whatever is thrown at it."""

MAX_NESTING = 64
"""How deeply ``and``, ``or`` and ``not`` may nest in one condition.

Far beyond what a person writes, and far below Python's recursion limit,
which every later walk over the tree (checker, compiler) would hit first.
"""

# Integers must fit the 64-bit columns of the stores; longer digit strings
# are refused before int() sees them (it refuses beyond 4300 digits itself).
_MAX_INT = 2**63 - 1
_MAX_DIGITS = 40

_UNITS = {
    "ms": Decimal("0.001"),
    "s": Decimal(1),
    "m": Decimal(60),
    "h": Decimal(3600),
    "d": Decimal(86400),
}
_DURATION = re.compile(r"(-?[0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)")

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'"}
_HEX4 = re.compile(r"[0-9A-Fa-f]{4}")
_KNOWN_ESCAPES = r"\n \t \r \\ \" \' \uXXXX"

# How terminals read in an error message, and in which order they are listed:
# clause keywords first, in the order rules are usually written.
_WORDING = {
    "$END": "the end of the file",
    "NAME": "a name",
    "STRING": 'a string in quotes like "Hello"',
    "NUMBER": "a number",
    "INT": "a whole number like 3",
    "DURATION": "a duration like 10m or 24h",
    "CLOCK": "a time of day like 08:30",
    "PERCENT": "a share like 10%",
    "COMP_OP": "a comparison (==, !=, <, <=, >, >=)",
}
_ORDER = [
    *("rule", "when", "wait", "at", "unless", "if", "limit", "quiet"),
    *("holdout", "variant", "goal", "priority", "push", "inapp", "webhook"),
    *("title", "body", "link", "image", "ttl", "urgency", "collapse", "data"),
    *("where", "as", "then", "no", "within", "times", "idle", "starts"),
    *("after", "ends", "end", "per", "day", "hours", "drop", "else"),
    *("and", "or", "not", "in", "contains", "starts", "matches", "exists", "has"),
    *(_WORDING[name] for name in ("COMP_OP", "NAME", "INT", "NUMBER")),
    *(_WORDING[name] for name in ("DURATION", "CLOCK", "PERCENT", "STRING")),
    *("event", "user", "device", "session", "last", "true", "false", "null"),
]
_CLAUSE_WORDS = ("when", "wait", "unless", "limit", "push", "inapp", "webhook")
_CLAUSE_KINDS: dict[str, ClauseKind] = {
    "when_event": "trigger",
    "when_count": "trigger",
    "when_idle": "trigger",
    "when_session_start": "trigger",
    "when_session_end": "trigger",
    "push": "action",
    "inapp": "action",
    "webhook": "action",
    "variant": "variant",
    "wait": "wait",
    "at": "at",
    "unless": "unless",
    "if_": "if",
    "limit_session": "limit",
    "limit_user": "limit",
    "limit_day": "limit",
    "quiet": "quiet",
    "holdout": "holdout",
    "goal": "goal",
    "priority": "priority",
}
_WORD_CHARS = re.compile(r"[A-Za-z0-9_.\-]+")


class _NamesEverywhere:
    """A no-op post-lexer that makes every contextual lexer state know NAME.

    Without it, a state that takes only keywords would lex ``whenever`` as
    the keyword ``when`` followed by ``ever``. With NAME always present, Lark
    matches the whole word and only then decides whether it is a keyword.
    """

    always_accept = ("NAME",)

    def process(self, stream: Iterable[Token]) -> Iterable[Token]:
        return stream


@functools.cache
def _parser() -> Lark:
    grammar = resources.files("sessionpush.grammar").joinpath("rules.lark")
    return Lark(
        grammar.read_text(encoding="utf-8"),
        parser="lalr",
        lexer="contextual",
        start=["start", "placeholder"],
        propagate_positions=True,
        maybe_placeholders=True,
        postlex=_NamesEverywhere(),
    )


@functools.cache
def _terminal_words() -> dict[str, str]:
    words = {}
    for terminal in _parser().terminals:
        if isinstance(terminal.pattern, PatternStr):
            value = terminal.pattern.value
            words[terminal.name] = value if value.isalpha() else f"'{value}'"
    return words


def parse_text(text: str, path: str = "<string>") -> t.RuleFile:
    """Parse the text of one rule file.

    Args:
        text: The whole file.
        path: The file's name, used in the diagnostics.

    Returns:
        The rules of the file, in the order they were written.

    Raises:
        RulesError: The text does not parse, or a rule's clauses do not
            make a rule (no trigger, two actions, ...). Holds every such
            problem the parser could find.
    """
    rule_file, diagnostics = parse_with_diagnostics(text, path)
    if diagnostics:
        raise RulesError(diagnostics)
    return rule_file


def parse_with_diagnostics(
    text: str, path: str = "<string>"
) -> tuple[t.RuleFile, list[Diagnostic]]:
    """Parse as much of a rule file as makes sense, and say what does not.

    A syntax error stops the parse: Lark cannot resume after one. A rule
    whose clauses are wrong (two triggers, a push without a title) is
    reported and left out, and the other rules are still returned, so that
    the checker can look at them in the same run.

    Args:
        text: The whole file.
        path: The file's name, used in the diagnostics.

    Returns:
        The rules that could be built, and the diagnostics, with their
        source lines, of everything that could not.
    """
    if len(text) > MAX_BYTES or len(text.encode("utf-8", "replace")) > MAX_BYTES:
        size = len(text.encode("utf-8", "replace"))
        message = (
            f"this file is {size:,} bytes; a rule file holds at most {MAX_BYTES:,}"
        )
        hint = "split the rules over several files in one directory"
        return t.RuleFile(path, ()), [Diagnostic(path, 0, 0, 0, message, hint)]
    source = _Source(text, path)
    try:
        try:
            lark_tree = _parser().parse(text, start="start")
        except UnexpectedInput as exc:
            raise _Failure([_Converter(source).syntax_error(exc, text)]) from exc
        except LarkError as exc:
            # Lark raises nothing else on bad input today; should it start
            # to, the author still gets a located error instead of a crash.
            raise _Failure([source.diagnostic(0, 1, f"cannot parse: {exc}")]) from exc
        return _Converter(source).rule_file(lark_tree)
    except _Failure as failure:
        return t.RuleFile(path, ()), failure.diagnostics
    except RecursionError:
        # MAX_NESTING keeps our own walks shallow; this is the last guard, for
        # a shape of input no test foresaw.
        message = "the file nests too deeply to parse"
        diagnostic = source.diagnostic(0, 1, message, "split it into simpler rules")
        return t.RuleFile(path, ()), [diagnostic]


class _Failure(Exception):
    """Internal: diagnostics that stop the conversion of a rule or a file."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        super().__init__(diagnostics)
        self.diagnostics = diagnostics


class _Source:
    """The text of a file, and the way from offsets to lines and columns."""

    def __init__(self, text: str, path: str) -> None:
        self.text = text
        self.path = path
        # Lark counts lines by "\n" alone; so must we, or spans drift.
        self.line_starts = [0, *(m.end() for m in re.finditer("\n", text))]

    def position(self, offset: int) -> tuple[int, int]:
        offset = max(0, min(offset, len(self.text)))
        line = bisect.bisect_right(self.line_starts, offset)
        return line, offset - self.line_starts[line - 1] + 1

    def span(self, start: int, end: int) -> t.Span:
        line, column = self.position(start)
        end_line, end_column = self.position(max(end, start))
        return t.Span(line, column, end_line, end_column)

    def line_text(self, line: int) -> str:
        start = self.line_starts[line - 1]
        end = self.text.find("\n", start)
        return self.text[start : end if end >= 0 else len(self.text)]

    def diagnostic(
        self, start: int, end: int, message: str, hint: str | None = None
    ) -> Diagnostic:
        span = self.span(start, max(end, start + 1))
        end_column = span.end_column if span.end_line == span.line else 0
        return Diagnostic(
            self.path,
            span.line,
            span.column,
            end_column,
            message,
            hint,
            self.line_text(span.line),
        )


def _kids(node: Tree[Token]) -> list[Any]:
    # The grammar fixes each node's shape (maybe_placeholders puts None for
    # an absent optional), so children are unpacked by position, untyped.
    return list(node.children)


def _children(node: Tree[Token]) -> list[Any]:
    return [child for child in node.children if child is not None]


class _Converter:
    """Maps one Lark tree (of the file, or of one placeholder) to our nodes.

    ``to_abs`` turns an offset in the text Lark parsed into an offset in the
    file: the identity for the file, and for a placeholder a lookup through
    the decoded string it was cut from, so that escapes inside the string
    do not shift the columns.
    """

    def __init__(
        self,
        source: _Source,
        to_abs: Callable[[int], int] | None = None,
    ) -> None:
        self.source = source
        self.to_abs: Callable[[int], int] = to_abs or (lambda offset: offset)
        self.in_placeholder = to_abs is not None
        self.bindings: frozenset[str] = frozenset()

    # -- positions and errors -------------------------------------------------

    def bounds(self, item: Tree[Token] | Token) -> tuple[int, int]:
        if isinstance(item, Token):
            start, end = item.start_pos or 0, item.end_pos or 0
        else:
            start, end = item.meta.start_pos, item.meta.end_pos
        return self.to_abs(start), self.to_abs(end)

    def span(self, item: Tree[Token] | Token) -> t.Span:
        return self.source.span(*self.bounds(item))

    def fail(
        self, item: Tree[Token] | Token, message: str, hint: str | None = None
    ) -> NoReturn:
        start, end = self.bounds(item)
        raise _Failure([self.source.diagnostic(start, end, message, hint)])

    def syntax_error(self, exc: UnexpectedInput, parsed: str) -> Diagnostic:
        """Words for a Lark error: what was expected, what came, a hint.

        Args:
            exc: What Lark raised.
            parsed: The text Lark was given: the file, or a placeholder.
        """
        expected = self._expected(exc)
        if isinstance(exc, UnexpectedToken):
            token = exc.token
            if token.type == "$END":
                # Lark places the end at the last token: point just past it.
                start = self.to_abs(token.end_pos or 0)
                end = start + 1
                came = self._end_words()
            else:
                start, end = self.bounds(token)
                came = f"'{_shorten(str(token))}'"
            message = f"{_expected_words(expected, self._end_words())}, came {came}"
            hint = _syntax_hint(expected, token.type, str(token))
            return self.source.diagnostic(start, end, message, hint)

        offset = getattr(exc, "pos_in_stream", None) or 0
        char = parsed[offset] if offset < len(parsed) else ""
        start = self.to_abs(offset)
        if char in ("'", '"'):
            message = "this string is not closed"
            hint = (
                f"end it with {char} on the same line; "
                "write \\n for a line break inside a string"
            )
            return self.source.diagnostic(start, start + 1, message, hint)

        word = _WORD_CHARS.match(parsed, offset)
        came = word.group() if word else char
        end = self.to_abs(offset + max(len(came), 1))
        if came == "=" and "COMP_OP" in expected:
            # Only a comparison could have been meant; the other words that
            # could come here (and, or, a new clause) are noise.
            expected = {"COMP_OP"}
        message = (
            f"{_expected_words(expected, self._end_words())}, came '{_shorten(came)}'"
        )
        return self.source.diagnostic(start, end, message, _character_hint(came))

    def _end_words(self) -> str:
        if self.in_placeholder:
            return "the end of the placeholder"
        return "the end of the file"

    @staticmethod
    def _expected(exc: UnexpectedInput) -> set[str]:
        # Ask the parser which terminals would really advance it. The LALR
        # table alone over-promises: its states are shared between contexts
        # (a path in a condition and in a placeholder), and so are their
        # lookaheads. The lexer's list would also hold NAME, lexed everywhere.
        interactive: Any = getattr(exc, "interactive_parser", None)
        try:
            accepted = set(interactive.accepts())
        except (AttributeError, LarkError):
            accepted = set(getattr(exc, "expected", None) or ())
        return {name for name in accepted if name.isupper()}

    # -- the file and its rules -----------------------------------------------

    def rule_file(self, node: Tree[Token]) -> tuple[t.RuleFile, list[Diagnostic]]:
        rules: list[t.Rule] = []
        diagnostics: list[Diagnostic] = []
        for child in _children(node):
            try:
                rule, problems = self.rule(child)
            except _Failure as failure:
                diagnostics.extend(failure.diagnostics)
                continue
            diagnostics.extend(problems)
            if rule is not None:
                rules.append(rule)
        return t.RuleFile(self.source.path, tuple(rules)), diagnostics

    def rule(self, node: Tree[Token]) -> tuple[t.Rule | None, list[Diagnostic]]:
        name_token, title_token, *clauses = _kids(node)
        name = str(name_token)
        title = None if title_token is None else self.string(title_token)
        # Names bound with `as` are read as `c.price` anywhere in the rule,
        # also in clauses written before the trigger: collect them first.
        self.bindings = _bindings(clauses)

        found: dict[str, list[Any]] = {}
        kinds: list[tuple[ClauseKind, t.Span]] = []
        problems: list[Diagnostic] = []
        for clause in clauses:
            kind = _CLAUSE_KINDS[clause.data]
            span = self.span(clause)
            kinds.append((kind, span))
            if kind in ("action", "variant"):
                action, action_problems = self.clause_action(clause)
                problems.extend(action_problems)
                if action is not None:
                    found.setdefault(kind, []).append(action)
                continue
            found.setdefault(kind, []).append(self.clause(clause))

        span = self.span(node)
        problems.extend(check_clauses(self.source.path, name, span, kinds))
        problems = [self._with_line(d) for d in problems]
        actions = found.get("action", [])
        variants = tuple(found.get("variant", []))
        if problems or len(found.get("trigger", [])) != 1:
            return None, problems
        if len(actions) + (1 if variants else 0) != 1:
            return None, problems

        def one(kind: str) -> Any:
            values = found.get(kind)
            return values[0] if values else None

        holdout = one("holdout")
        rule = t.Rule(
            name=name,
            trigger=found["trigger"][0],
            action=actions[0] if actions else None,
            title=title,
            wait=one("wait"),
            unless=tuple(found.get("unless", [])),
            limits=tuple(found.get("limit", [])),
            span=span,
            at=one("at"),
            condition=one("if"),
            quiet=one("quiet"),
            holdout=holdout,
            variants=variants,
            goal=one("goal"),
            priority=one("priority") or 0,
        )
        return rule, []

    def _with_line(self, diagnostic: Diagnostic) -> Diagnostic:
        if diagnostic.source_line is not None or diagnostic.line <= 0:
            return diagnostic
        return replace(diagnostic, source_line=self.source.line_text(diagnostic.line))

    # -- clauses ----------------------------------------------------------------

    def clause(self, node: Tree[Token]) -> Any:
        kind = node.data
        span = self.span(node)
        kids = _kids(node)
        if kind.startswith("when_"):
            return self.trigger(node)
        if kind == "wait":
            return self.wait(node)
        if kind == "at":
            return t.At(self.clock(kids[0]), span)
        if kind == "unless":
            match = self.event_match(kids[0], bindable=False)
            return t.Unless(match.event, match.where, span)
        if kind == "if_":
            return self.expr(kids[0])
        if kind == "quiet":
            start, end, drop = kids
            return t.QuietHours(
                self.clock(start), self.clock(end), drop is not None, span
            )
        if kind == "holdout":
            return self.percent(kids[0])
        if kind == "goal":
            match = self.event_match(kids[0], bindable=False)
            return t.Goal(match.event, self.duration(kids[1]), match.where, span)
        if kind == "priority":
            return self.integer(kids[0])
        return self.limit(node)

    def trigger(self, node: Tree[Token]) -> t.Trigger:
        span = self.span(node)
        kids = _kids(node)
        kind = node.data
        if kind in ("when_session_end", "when_session_start", "when_idle"):
            where = None if kids[-1] is None else self.expr(kids[-1])
            if kind == "when_session_end":
                return t.SessionEndTrigger(where=where, span=span)
            if kind == "when_session_start":
                return t.SessionStartTrigger(where=where, span=span)
            return t.IdleTrigger(self.duration(kids[1]), where, span)
        if kind == "when_count":
            count, match_node, within = kids
            return t.CountTrigger(
                self.integer(count),
                self.event_match(match_node),
                self.duration(within),
                span,
            )

        first_node, *step_nodes = kids
        first = self.event_match(first_node)
        steps: list[t.Step] = []
        for index, step_node in enumerate(step_nodes):
            no, match_node, within = _kids(step_node)
            match = self.event_match(match_node)
            if no is None:
                steps.append(
                    t.Step(
                        match.event,
                        self.duration(within),
                        match.where,
                        match.binding,
                        self.span(step_node),
                    )
                )
                continue
            if index != len(step_nodes) - 1:
                self.fail(
                    step_node,
                    "'then no' must be the last step of a trigger",
                    "nothing can follow an absence: end the trigger with it",
                )
            return t.AbsenceTrigger(
                first=first,
                absent=match.event,
                absent_where=match.where,
                within=self.duration(within),
                span=span,
                steps=tuple(steps),
                absent_binding=match.binding,
            )
        if steps:
            return t.SequenceTrigger(first, tuple(steps), span)
        return replace(first, span=span)

    def event_match(self, node: Tree[Token], bindable: bool = True) -> t.EventTrigger:
        name, binding, where = _kids(node)
        if binding is not None and not bindable:
            self.fail(
                binding,
                f"'as {binding}' binds nothing here",
                "name events with 'as' in the 'when' clause only",
            )
        return t.EventTrigger(
            event=str(name),
            where=None if where is None else self.expr(where),
            span=self.span(node),
            binding=None if binding is None else str(binding),
        )

    def wait(self, node: Tree[Token]) -> t.Wait:
        duration, after, _ = _kids(node)
        return t.Wait(
            seconds=self.duration(duration),
            after_session_end=after is not None,
            span=self.span(node),
        )

    def limit(self, node: Tree[Token]) -> t.Limit:
        count = self.integer(_kids(node)[0])
        span = self.span(node)
        if node.data == "limit_session":
            return t.Limit(count=count, per="session", span=span)
        if node.data == "limit_day":
            return t.Limit(count=count, per="day", span=span)
        window = _kids(node)[2]
        return t.Limit(
            count=count,
            per="user",
            window=None if window is None else self.duration(window),
            span=span,
        )

    def clause_action(
        self, node: Tree[Token]
    ) -> tuple[t.Action | t.Variant | None, list[Diagnostic]]:
        if node.data != "variant":
            return self.action(node)
        name, percent, action_node = _kids(node)
        action, problems = self.action(action_node)
        if action is None:
            return None, problems
        variant = t.Variant(str(name), self.percent(percent), action, self.span(node))
        return variant, problems

    def action(self, node: Tree[Token]) -> tuple[t.Action | None, list[Diagnostic]]:
        span = self.span(node)
        if node.data == "webhook":
            return t.WebhookAction(self.string(_kids(node)[0]), span), []
        seen: list[tuple[str, t.Span]] = []
        values: dict[str, Any] = {}
        fields = _children(node)
        else_push = False
        if node.data == "inapp" and fields and isinstance(fields[-1], Token):
            else_push = True
            fields = fields[:-1]
        for field in fields:
            key, *rest = field.children
            seen.append((str(key), self.span(field)))
            if str(key) in values:
                continue
            values[str(key)] = self.field_value(key, rest)

        problems = check_action_fields(self.source.path, node.data, span, seen)
        if problems:
            return None, problems
        if node.data == "push":
            push = t.PushAction(
                title=values["title"],
                body=values.get("body"),
                link=values.get("link"),
                ttl=values.get("ttl"),
                span=span,
                image=values.get("image"),
                urgency=values.get("urgency"),
                collapse=values.get("collapse"),
                data=values.get("data", ()),
            )
            return push, []
        inapp = t.InappAction(
            title=values["title"],
            body=values.get("body"),
            link=values.get("link"),
            span=span,
            image=values.get("image"),
            data=values.get("data", ()),
            else_push=else_push,
        )
        return inapp, []

    def field_value(self, key: Token, rest: list[Any]) -> Any:
        kind = key.type
        if kind == "TTL":
            return self.duration(rest[0])
        if kind == "URGENCY":
            return str(rest[0])
        if kind == "DATA":
            entries = [entry for entry in rest if entry is not None]
            pairs: dict[str, t.Template] = {}
            for entry in entries:
                data_key, value = entry.children
                if str(data_key) in pairs:
                    self.fail(
                        data_key,
                        f"data has a second '{data_key}'",
                        "each key comes at most once; keep one",
                    )
                pairs[str(data_key)] = self.template(value)
            return tuple(pairs.items())
        value = rest[0]
        if isinstance(value, Tree):
            return self.localised(value)
        return self.template(value)

    def localised(self, node: Tree[Token]) -> t.Localised:
        kids = _kids(node)
        entries: list[tuple[str, t.Template]] = []
        seen: set[str] = set()
        for lang, text in zip(kids[::2], kids[1::2], strict=True):
            key = str(lang)
            if key.lower() in seen:
                self.fail(
                    lang,
                    f"the language '{key}' comes twice",
                    "give each language one text",
                )
            seen.add(key.lower())
            entries.append((key, self.template(text)))
        return t.Localised(tuple(entries), self.span(node))

    def clock(self, token: Token) -> int:
        hours, minutes = (int(part) for part in str(token).split(":"))
        if hours > 23 or minutes > 59:
            self.fail(
                token,
                f"'{token}' is not a time of day",
                "write a time from 00:00 to 23:59, like 08:30",
            )
        return hours * 60 + minutes

    def percent(self, token: Token) -> float:
        text = str(token)[:-1]
        value = float(text) if len(text) <= _MAX_DIGITS else math.inf
        if not 0 <= value <= 100:
            self.fail(
                token,
                f"'{_shorten(str(token))}' is not a share between 0% and 100%",
                "like: holdout 10%",
            )
        return value

    # -- conditions ---------------------------------------------------------------

    def expr(self, node: Tree[Token] | Token, depth: int = 1) -> t.Expr:
        if depth > MAX_NESTING:
            self.fail(
                node,
                f"this condition nests more than {MAX_NESTING} levels of "
                "and, or and not",
                "split it into simpler conditions or several rules",
            )
        if not isinstance(node, Tree):
            self.fail(node, f"expected a condition, came '{_shorten(str(node))}'")

        span = self.span(node)
        kind = node.data
        if kind == "or_":
            left, right = _kids(node)
            return t.Or(self.expr(left, depth + 1), self.expr(right, depth + 1), span)
        if kind == "and_":
            left, right = _kids(node)
            return t.And(self.expr(left, depth + 1), self.expr(right, depth + 1), span)
        if kind == "not_":
            return t.Not(self.expr(_kids(node)[0], depth + 1), span)
        if kind == "compare":
            left, op, right = _kids(node)
            return t.Compare(
                _compare_op(str(op)), self.operand(left), self.operand(right), span
            )
        if kind in ("in_list", "not_in_list"):
            operand, options = _kids(node)
            return t.InList(
                operand=self.operand(operand),
                options=(
                    self.list_expr(options)
                    if options.data == "list"
                    else self.path(options)
                ),
                negated=kind == "not_in_list",
                span=span,
            )
        if kind in ("contains", "starts_with"):
            left, right = _kids(node)
            text_op: t.TextOp = "contains" if kind == "contains" else "starts with"
            return t.TextTest(text_op, self.operand(left), self.operand(right), span)
        if kind == "matches":
            left, pattern = _kids(node)
            literal = t.Literal(self.string(pattern), span=self.span(pattern))
            return t.TextTest("matches", self.operand(left), literal, span)
        if kind == "exists":
            return t.Exists(self.path(_kids(node)[0]), span)
        if kind == "session_has":
            return t.SessionHas(str(_kids(node)[1]), span)
        return self.operand(node)

    def operand(self, node: Tree[Token]) -> t.Path | t.Literal:
        if node.data == "literal":
            return self.literal(node)
        return self.path(node)

    def path(self, node: Tree[Token]) -> t.Path:
        names = [str(child) for child in _kids(node)]
        span = self.span(node)
        if node.data == "bare_path":
            if names[0] in self.bindings:
                return t.Path("bound", tuple(names[1:]), names[0], span)
            return t.Path("event", tuple(names), span=span)
        if node.data == "session_count":
            return t.Path("session", ("count",), event_name=names[1], span=span)
        if node.data == "last_path":
            return t.Path("last", tuple(names[1:]), event_name=names[0], span=span)
        root = _path_root(names[0])
        return t.Path(root, tuple(names[1:]), span=span)

    def list_expr(self, node: Tree[Token]) -> t.ListExpr:
        items = tuple(self.literal(child) for child in _children(node))
        return t.ListExpr(items, self.span(node))

    def literal(self, node: Tree[Token]) -> t.Literal:
        token: Token = _kids(node)[0]
        span = self.span(node)
        kind = token.type
        if kind == "STRING":
            return t.Literal(self.string(token), span=span)
        if kind == "DURATION":
            return t.Literal(self.duration(token), is_duration=True, span=span)
        if kind == "CLOCK":
            return t.Literal(self.clock(token), is_clock=True, span=span)
        if kind == "NUMBER":
            if "." in token:
                return t.Literal(self.decimal(token), span=span)
            return t.Literal(self.integer(token), span=span)
        return t.Literal({"TRUE": True, "FALSE": False}.get(kind), span=span)

    # -- numbers and durations ----------------------------------------------------

    def integer(self, token: Token) -> int:
        if len(token) <= _MAX_DIGITS:
            value = int(token)
            if -_MAX_INT - 1 <= value <= _MAX_INT:
                return value
        self.fail(
            token,
            f"the number '{_shorten(str(token))}' is too large",
            "whole numbers must lie between -9223372036854775808 and "
            "9223372036854775807",
        )

    def decimal(self, token: Token) -> float:
        value = float(token) if len(token) <= _MAX_DIGITS else math.inf
        if not math.isfinite(value):
            self.fail(token, f"the number '{_shorten(str(token))}' is too large")
        return value

    def duration(self, token: Token) -> float:
        match = _DURATION.fullmatch(str(token))
        if match is None or len(match.group(1)) > _MAX_DIGITS:
            self.fail(
                token,
                f"the duration '{_shorten(str(token))}' is too long",
                "write it in a larger unit, like 7d",
            )
        number, unit = match.groups()
        # Decimal arithmetic, so that 1.1m is 66.0 seconds and not
        # 66.00000000000001.
        return float(Decimal(number) * _UNITS[unit])

    # -- strings and templates ----------------------------------------------------

    def string(self, token: Token) -> str:
        text, _ = self.unescape(token)
        return text

    def unescape(self, token: Token) -> tuple[str, list[int]]:
        """Decode a quoted string; also map each decoded char to its offset.

        Returns:
            The text, and for each of its characters (plus one past the end)
            the offset in the file where it was written.
        """
        raw = str(token)[1:-1]
        base = (token.start_pos or 0) + 1
        chars: list[str] = []
        offsets: list[int] = []
        i = 0
        while i < len(raw):
            offsets.append(self.to_abs(base + i))
            if raw[i] != "\\":
                chars.append(raw[i])
                i += 1
                continue
            code = raw[i + 1]
            if code in _ESCAPES:
                chars.append(_ESCAPES[code])
                i += 2
            elif code == "u" and _HEX4.fullmatch(raw, i + 2, i + 6):
                value = int(raw[i + 2 : i + 6], 16)
                if 0xD800 <= value <= 0xDFFF:
                    self._bad_escape(base + i, 6, "is half of a character")
                chars.append(chr(value))
                i += 6
            else:
                self._bad_escape(base + i, 2, "is not an escape")
        offsets.append(self.to_abs(base + len(raw)))
        return "".join(chars), offsets

    def _bad_escape(self, offset: int, width: int, why: str) -> NoReturn:
        start, end = self.to_abs(offset), self.to_abs(offset + width)
        text = self.source.text[start:end]
        message = f"'{text}' in this string {why}"
        hint = f"write \\\\ for a backslash; the escapes are {_KNOWN_ESCAPES}"
        raise _Failure([self.source.diagnostic(start, end, message, hint)])

    def template(self, token: Token) -> t.Template:
        text, offsets = self.unescape(token)
        parts: list[str | t.Placeholder] = []
        buffer: list[str] = []
        i = 0
        while i < len(text):
            char = text[i]
            if text.startswith(("{{", "}}"), i):
                buffer.append(char)
                i += 2
            elif char == "{":
                close = _closing_brace(text, i + 1)
                if close < 0:
                    message = "this placeholder is not closed"
                    hint = "end it with '}', or write '{{' for a literal brace"
                    diagnostic = self.source.diagnostic(
                        offsets[i], offsets[i + 1], message, hint
                    )
                    raise _Failure([diagnostic])
                if buffer:
                    parts.append("".join(buffer))
                    buffer = []
                parts.append(self.placeholder(text, i, close, offsets))
                i = close + 1
            elif char == "}":
                message = "a '}' closes no placeholder"
                hint = "write '}}' for a literal brace"
                diagnostic = self.source.diagnostic(
                    offsets[i], offsets[i + 1], message, hint
                )
                raise _Failure([diagnostic])
            else:
                buffer.append(char)
                i += 1
        if buffer:
            parts.append("".join(buffer))
        return t.Template(tuple(parts), self.span(token))

    def placeholder(
        self, text: str, open_at: int, close_at: int, offsets: Sequence[int]
    ) -> t.Placeholder:
        content = text[open_at + 1 : close_at]
        base = open_at + 1
        # Lark may point one past the content (at its end): that is the "}".
        inner = _Converter(
            self.source, lambda offset: offsets[min(base + offset, close_at)]
        )
        inner.bindings = self.bindings
        try:
            node = _parser().parse(content, start="placeholder")
        except UnexpectedInput as exc:
            raise _Failure([inner.syntax_error(exc, content)]) from exc

        path_node, *filter_nodes = _kids(node)
        filters = tuple(inner.filter(child) for child in filter_nodes)
        span = self.source.span(offsets[open_at], offsets[close_at + 1])
        return t.Placeholder(inner.path(path_node), filters, span)

    def filter(self, node: Tree[Token]) -> t.Filter:
        name, *args = _children(node)
        literals = tuple(self.literal(arg) for arg in args)
        # From the name on, without the "|": errors underline the name.
        span = self.source.span(self.bounds(name)[0], self.bounds(node)[1])
        return t.Filter(str(name), literals, span)


def _bindings(clauses: list[Any]) -> frozenset[str]:
    names: set[str] = set()
    for clause in clauses:
        if isinstance(clause, Tree) and clause.data.startswith("when_"):
            for match in clause.find_data("event_match"):
                binding = match.children[1]
                if binding is not None:
                    names.add(str(binding))
    return frozenset(names)


def _closing_brace(text: str, start: int) -> int:
    """The index of the ``}`` that ends a placeholder, skipping quoted args."""
    quote = ""
    i = start
    while i < len(text):
        char = text[i]
        if quote:
            if char == "\\":
                i += 1
            elif char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char == "}":
            return i
        i += 1
    return -1


def _path_root(word: str) -> t.PathRoot:
    if word == "user":
        return "user"
    if word == "device":
        return "device"
    if word == "session":
        return "session"
    return "event"


def _compare_op(op: str) -> t.CompareOp:
    for known in ("==", "!=", "<", "<=", ">", ">="):
        if op == known:
            return known
    raise ValueError(f"the grammar let through an unknown operator {op!r}")


def _shorten(text: str, limit: int = 30) -> str:
    # Control characters and stray bytes are shown escaped, not raw.
    if not text.isprintable():
        text = text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _words(expected: Iterable[str], end_words: str) -> list[str]:
    names = _terminal_words()
    words = set()
    for terminal in expected:
        if terminal == "$END":
            words.add(end_words)
        else:
            words.add(_WORDING.get(terminal) or names.get(terminal) or terminal)

    def order(word: str) -> tuple[int, str]:
        if word in _ORDER:
            return (_ORDER.index(word), word)
        return (len(_ORDER) + (1 if word.startswith("the end") else 0), word)

    return sorted(words, key=order)


# Where many words of one kind could come, the list names the kind and a
# few examples: after a condition, fourteen clause keywords and nine
# operators may all follow, and a list of thirty words hides the one that
# matters. (label, members, how many of them make a group)
_GROUPS = (
    (
        "a clause (when, wait, push, ...)",
        frozenset(
            (
                *("when", "wait", "at", "unless", "if", "limit", "quiet"),
                *("holdout", "variant", "goal", "priority", "push", "inapp"),
                "webhook",
            )
        ),
        4,
    ),
    (
        "an operator (==, <, in, contains, and, or, ...)",
        frozenset(
            (
                *("and", "or", "not", "in", "contains", "starts", "matches"),
                *("exists", _WORDING["COMP_OP"]),
            )
        ),
        4,
    ),
    (
        "a value or a path (3, 'text', 10m, price, user.plan, ...)",
        frozenset(
            _WORDING[name]
            for name in ("NAME", "INT", "NUMBER", "DURATION", "CLOCK", "STRING")
        )
        | {"event", "user", "device", "session", "last", "true", "false", "null"},
        4,
    ),
)


def _grouped(words: list[str]) -> list[str]:
    out: list[str] = []
    for word in words:
        for label, members, least in _GROUPS:
            if label.startswith("a value") and _WORDING["NUMBER"] not in words:
                continue  # a placeholder takes paths only: list them
            if word in members and len(members.intersection(words)) >= least:
                if label not in out:
                    out.append(label)
                break
        else:
            # "starts" opens "starts with", or ends "session starts" (where
            # "ends" may come too).
            if word == "starts" and "ends" not in words:
                word = "starts with"
            out.append(word)
    return out


def _expected_words(expected: Iterable[str], end_words: str) -> str:
    words = _grouped(_words(expected, end_words))
    if not words:
        return "unexpected input"
    if len(words) == 1:
        return f"expected {words[0]}"
    return "expected one of: " + ", ".join(words)


def _syntax_hint(expected: set[str], came_type: str, came: str) -> str | None:
    if "DURATION" in expected and came_type in ("NUMBER", "INT"):
        return f"add a unit (ms, s, m, h or d), for example {came}m"
    if "INT" in expected and came_type in ("NUMBER", "DURATION"):
        return "a count is a whole number, like 1 or 3"
    keywords = [w for w in _words(expected, "") if w.isalpha()]
    close = difflib.get_close_matches(came, keywords, n=1, cutoff=0.6)
    if close and came not in keywords:
        return f"did you mean '{close[0]}'?"
    if came_type == "$END" and "RBRACE" in expected:
        return "a '{' is not closed: end it with '}'"
    if came in _SYMBOL_WORDS and _SYMBOL_WORDS[came] in keywords:
        return _character_hint(came)
    if came_type == "NAME" and {"and", "or"} <= set(keywords):
        return "join two conditions with 'and' or 'or'"
    if came_type == "NAME" and set(_CLAUSE_WORDS) <= set(keywords):
        return (
            "a rule holds a trigger (when), an action (push, inapp or "
            "webhook, or variants of them) and optionally wait, at, unless, "
            "if, limit, quiet hours, holdout, goal and priority clauses"
        )
    return None


_SYMBOL_WORDS = {"&": "and", "|": "or", "!": "not"}


def _character_hint(came: str) -> str | None:
    if came == "=":
        return "compare with '==', not '='"
    if came in _SYMBOL_WORDS:
        return f"write '{_SYMBOL_WORDS[came]}' instead of '{came}'" + (
            "; for 'not equal', write '!='" if came == "!" else ""
        )
    if came[:1].isdigit():
        return (
            "a number stands alone, and a duration is a number and a unit "
            "(ms, s, m, h or d), like 10m"
        )
    return None
