"""Properties of the parser, over inputs nobody would write by hand.

Whatever the text, only RulesError comes out. And for random syntax trees of
the core language, writing them as rule text and parsing that text gives the
same tree back: the grammar, the escapes, the precedence of and/or/not and
the template syntax agree with each other.
"""

from __future__ import annotations

from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sessionpush.dsl import tree as t
from sessionpush.dsl.errors import RulesError
from sessionpush.dsl.parse import parse_text

KEYWORDS = [
    *("rule", "when", "where", "then", "no", "within", "session", "ends"),
    *("wait", "after", "end", "unless", "limit", "per", "user", "push"),
    *("inapp", "title", "body", "link", "ttl", "and", "or", "not", "in"),
    *("has", "event", "device", "last", "true", "false", "null"),
    *("as", "times", "idle", "starts", "at", "if", "day", "quiet", "hours"),
    *("drop", "holdout", "variant", "goal", "priority", "webhook", "else"),
    *("image", "urgency", "collapse", "data", "contains", "with", "matches"),
    *("exists", "count"),
]

PUNCTUATION = [
    *("{", "}", "(", ")", "[", "]", ",", ".", ":", "|"),
    *("==", "!=", "<", "<=", ">", ">=", "=", "#", '"', "'", "\\"),
]


def never_raises_anything_but_rules_error(text: str) -> None:
    try:
        parse_text(text, "fuzz.rules")
    except RulesError as error:
        # Every diagnostic renders, so that the CLI can print it.
        assert error.render()


# -- any input ----------------------------------------------------------------------


@given(st.text())
def test_random_text_raises_only_rules_error(text: str) -> None:
    never_raises_anything_but_rules_error(text)


@given(st.binary(), st.sampled_from(["utf-8", "latin-1", "utf-16"]))
def test_random_bytes_decoded_raise_only_rules_error(data: bytes, codec: str) -> None:
    never_raises_anything_but_rules_error(data.decode(codec, errors="replace"))


TOKENS = st.one_of(
    st.sampled_from(KEYWORDS),
    st.sampled_from(PUNCTUATION),
    st.sampled_from(["view", "cart", "x", "10m", "-5s", "1.5h", "0", "-3", "2.5"]),
    st.sampled_from(['"a"', "'b'", '"{x | upper}"', '"{"', '"}"', '"\\q"', "\n"]),
)


@given(st.lists(TOKENS, max_size=60), st.sampled_from([" ", "", "\n"]))
def test_token_soups_raise_only_rules_error(tokens: list[str], glue: str) -> None:
    never_raises_anything_but_rules_error(glue.join(tokens))


@given(st.lists(TOKENS, max_size=40))
def test_token_soups_inside_a_rule_raise_only_rules_error(tokens: list[str]) -> None:
    never_raises_anything_but_rules_error(
        "rule r { when view where " + " ".join(tokens) + ' push { title "a" } }'
    )


@settings(deadline=None)
@given(st.integers(0, 3000), st.sampled_from(["not ", "(", "x and ", "[", "{"]))
def test_deep_nesting_raises_only_rules_error(depth: int, opener: str) -> None:
    never_raises_anything_but_rules_error(
        f"rule r {{ when view where {opener * depth}x push {{ title 'a' }} }}"
    )


# -- writing trees back as text ------------------------------------------------------

_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def write_string(value: str, quote: str = '"') -> str:
    escaped = (
        value.replace("\\", "\\\\")
        .replace(quote, "\\" + quote)
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
    )
    return quote + escaped + quote


def write_duration(seconds: float) -> str:
    exact = Decimal(repr(seconds))
    sign, size = ("-" if exact < 0 else ""), abs(exact)
    for unit, factor in _UNITS:
        if size >= factor and size % factor == 0:
            return f"{sign}{size // factor}{unit}"
    if size == size.to_integral_value():
        return f"{sign}{size}s"
    return f"{sign}{(size * 1000).normalize():f}ms"


def write_literal(literal: t.Literal, quote: str = '"') -> str:
    value = literal.value
    if literal.is_duration:
        assert isinstance(value, float)
        return write_duration(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return write_string(value, quote)
    return repr(value)


def write_path(path: t.Path, bare: bool) -> str:
    if path.root == "last":
        head = [f"last({path.event_name})"]
    elif path.root == "event" and bare:
        head = []
    else:
        head = [path.root]
    return ".".join([*head, *path.parts])


def write_expr(expr: t.Expr, level: int = 0) -> str:
    """Text for an expression; level 0 is inside `or`, 1 `and`, 2 `not`."""
    if isinstance(expr, t.Or):
        text = f"{write_expr(expr.left, 0)} or {write_expr(expr.right, 1)}"
        return f"({text})" if level > 0 else text
    if isinstance(expr, t.And):
        text = f"{write_expr(expr.left, 1)} and {write_expr(expr.right, 2)}"
        return f"({text})" if level > 1 else text
    if isinstance(expr, t.Not):
        return f"not {write_expr(expr.operand, 2)}"
    if isinstance(expr, t.Compare):
        return f"{write_operand(expr.left)} {expr.op} {write_operand(expr.right)}"
    if isinstance(expr, t.InList):
        items = ", ".join(write_literal(item) for item in expr.options.items)
        keyword = "not in" if expr.negated else "in"
        return f"{write_operand(expr.operand)} {keyword} [{items}]"
    if isinstance(expr, t.SessionHas):
        return f"session has {expr.event}"
    return write_operand(expr)


def write_operand(operand: t.Path | t.Literal) -> str:
    if isinstance(operand, t.Literal):
        return write_literal(operand)
    # Alternate both spellings of event paths: `price` and `event.price`.
    return write_path(operand, bare=len(operand.parts) % 2 == 1)


def write_template(template: t.Template) -> str:
    out = []
    for part in template.parts:
        if isinstance(part, str):
            out.append(part.replace("{", "{{").replace("}", "}}"))
            continue
        pieces = [write_path(part.path, bare=True)]
        for used in part.filters:
            args = ", ".join(write_literal(arg, quote="'") for arg in used.args)
            pieces.append(f"{used.name}: {args}" if args else used.name)
        out.append("{" + " | ".join(pieces) + "}")
    return write_string("".join(out))


def write_match(event: str, where: t.Expr | None) -> str:
    return event if where is None else f"{event} where {write_expr(where)}"


def write_trigger(trigger: t.Trigger) -> str:
    if isinstance(trigger, t.SessionEndTrigger):
        return "when " + write_match("session ends", trigger.where)
    if isinstance(trigger, t.EventTrigger):
        return "when " + write_match(trigger.event, trigger.where)
    first = write_match(trigger.first.event, trigger.first.where)
    absent = write_match(trigger.absent, trigger.absent_where)
    return f"when {first} then no {absent} within {write_duration(trigger.within)}"


def write_action(action: t.Action) -> str:
    fields = [f"title {write_template(action.title)}"]
    if action.body is not None:
        fields.append(f"body {write_template(action.body)}")
    if action.link is not None:
        fields.append(f"link {write_template(action.link)}")
    if isinstance(action, t.PushAction):
        if action.ttl is not None:
            fields.append(f"ttl {write_duration(action.ttl)}")
        return "push { " + " ".join(fields) + " }"
    return "inapp { " + " ".join(fields) + " }"


def write_clauses(rule: t.Rule) -> list[str]:
    clauses = [write_trigger(rule.trigger), write_action(rule.action)]
    if rule.wait is not None:
        after = " after session end" if rule.wait.after_session_end else ""
        clauses.append(f"wait {write_duration(rule.wait.seconds)}{after}")
    clauses.extend(
        f"unless {write_match(unless.event, unless.where)}" for unless in rule.unless
    )
    for limit in rule.limits:
        if limit.per == "session":
            clauses.append(f"limit {limit.count} per session")
        elif limit.window is None:
            clauses.append(f"limit {limit.count} per user")
        else:
            clauses.append(
                f"limit {limit.count} per user per {write_duration(limit.window)}"
            )
    return clauses


def write_rule(rule: t.Rule, order: list[int]) -> str:
    clauses = write_clauses(rule)
    # Unless and limit clauses keep their relative order: it is the order of
    # the tuples in the tree.
    fixed = {i for i, c in enumerate(clauses) if c.startswith(("unless", "limit"))}
    movable = [clauses[i] for i in sorted(set(range(len(clauses))) - fixed)]
    moved = [movable[i % len(movable)] for i in order if i < len(movable)]
    moved = list(dict.fromkeys(moved)) + [c for c in movable if c not in moved]
    body = "\n    ".join([*moved, *(clauses[i] for i in sorted(fixed))])
    title = "" if rule.title is None else f" {write_string(rule.title)}"
    return f"rule {rule.name}{title} {{\n    {body}\n}}"


# -- random trees ---------------------------------------------------------------------

names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,7}", fullmatch=True).filter(
    lambda name: name not in KEYWORDS
)
# After a dot only a name can come, so keywords are names there.
parts = st.lists(st.one_of(names, st.sampled_from(KEYWORDS)), min_size=1, max_size=3)
texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)


@st.composite
def durations(draw: st.DrawFn, positive: bool = False) -> float:
    count = draw(st.integers(0 if positive else -1000, 10**6))
    if positive:
        count += 1
    unit = draw(st.sampled_from([Decimal("0.001"), *(Decimal(f) for _, f in _UNITS)]))
    return float(Decimal(count) * unit)


@st.composite
def decimals(draw: st.DrawFn) -> float:
    whole = draw(st.integers(-(10**9), 10**9))
    fraction = draw(st.from_regex(r"[0-9]{1,4}", fullmatch=True))
    sign = "-" if whole < 0 else ""
    return float(f"{sign}{abs(whole)}.{fraction}")


literals = st.one_of(
    st.builds(t.Literal, texts),
    st.builds(t.Literal, st.integers(-(2**63), 2**63 - 1)),
    st.builds(t.Literal, decimals()),
    st.builds(t.Literal, st.sampled_from([True, False, None])),
    st.builds(t.Literal, durations(), st.just(True)),
)

paths = st.one_of(
    st.builds(t.Path, st.just("event"), parts.map(tuple)),
    st.builds(t.Path, st.sampled_from(["user", "device", "session"]), parts.map(tuple)),
    st.builds(t.Path, st.just("last"), parts.map(tuple), names),
)
# A bare path starts with a name, never a keyword.
paths = paths.filter(lambda p: p.root != "event" or p.parts[0] not in KEYWORDS)
# After "session." the word count starts session.count(E), never a field.
paths = paths.filter(lambda p: p.root != "session" or p.parts[0] != "count")
operands = st.one_of(paths, literals)

atoms = st.one_of(
    st.builds(
        t.Compare,
        st.sampled_from(["==", "!=", "<", "<=", ">", ">="]),
        operands,
        operands,
    ),
    st.builds(
        t.InList,
        paths,
        st.builds(t.ListExpr, st.lists(literals, max_size=3).map(tuple)),
        st.booleans(),
    ),
    st.builds(t.SessionHas, names),
    operands,
)
exprs = st.recursive(
    atoms,
    lambda inner: st.one_of(
        st.builds(t.And, inner, inner),
        st.builds(t.Or, inner, inner),
        st.builds(t.Not, inner),
    ),
    max_leaves=8,
)
maybe_exprs = st.none() | exprs

filters = st.builds(t.Filter, names, st.lists(literals, max_size=2).map(tuple))
placeholders = st.builds(t.Placeholder, paths, st.lists(filters, max_size=3).map(tuple))


def normalise(items: list[str | t.Placeholder]) -> tuple[str | t.Placeholder, ...]:
    # The parser joins adjacent text and drops empty text: so must the tree.
    out: list[str | t.Placeholder] = []
    for item in items:
        if isinstance(item, str):
            if not item:
                continue
            if out and isinstance(out[-1], str):
                out[-1] += item
                continue
        out.append(item)
    return tuple(out)


templates = st.builds(
    t.Template, st.lists(texts | placeholders, max_size=4).map(normalise)
)
maybe_templates = st.none() | templates

triggers = st.one_of(
    st.builds(t.EventTrigger, names, maybe_exprs),
    st.builds(t.SessionEndTrigger, maybe_exprs),
    st.builds(
        t.AbsenceTrigger,
        st.builds(t.EventTrigger, names, maybe_exprs),
        names,
        maybe_exprs,
        durations(),
    ),
)
actions = st.one_of(
    st.builds(
        t.PushAction,
        templates,
        maybe_templates,
        maybe_templates,
        st.none() | durations(),
    ),
    st.builds(t.InappAction, templates, maybe_templates, maybe_templates),
)
limits = st.one_of(
    st.builds(t.Limit, st.integers(-5, 10**6), st.just("session")),
    st.builds(
        t.Limit, st.integers(-5, 10**6), st.just("user"), st.none() | durations()
    ),
)
rules = st.builds(
    t.Rule,
    name=names,
    trigger=triggers,
    action=actions,
    title=st.none() | texts,
    wait=st.none() | st.builds(t.Wait, durations(), st.booleans()),
    unless=st.lists(st.builds(t.Unless, names, maybe_exprs), max_size=2).map(tuple),
    limits=st.lists(limits, max_size=2).map(tuple),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rule=rules, order=st.permutations(range(3)))
def test_generated_rules_parse_back_to_their_tree(
    rule: t.Rule, order: list[int]
) -> None:
    text = write_rule(rule, order)
    assert parse_text(text, "gen.rules").rules == (rule,), text


@settings(max_examples=100, deadline=None)
@given(st.lists(rules, max_size=3))
def test_generated_files_parse_back_rule_by_rule(generated: list[t.Rule]) -> None:
    text = "\n\n# between rules\n".join(
        write_rule(rule, [0, 1, 2]) for rule in generated
    )
    assert parse_text(text).rules == tuple(generated)
