"""The formatter: canonical text that parses back to the same tree.

Generated trees of the whole language (every trigger, policy clause and
action) are written by ``format_file``; parsing that text must give the
tree back, and formatting the text again must change nothing.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sessionpush.dsl import tree as t
from sessionpush.dsl.format import format_file, format_text
from sessionpush.dsl.parse import parse_text
from tests.dsl.test_dsl_properties import (
    durations,
    maybe_exprs,
    maybe_templates,
    names,
    operands,
    paths,
    rules,
    templates,
    texts,
)

positive = durations(positive=True)
clocks = st.integers(0, 23 * 60 + 59)
percents = st.integers(0, 200).map(lambda half: half / 2)

steps = st.builds(t.Step, names, positive, maybe_exprs, st.none() | names)
first_events = st.builds(t.EventTrigger, names, maybe_exprs, binding=st.none() | names)
triggers = st.one_of(
    first_events,
    st.builds(
        t.SequenceTrigger,
        first_events,
        st.lists(steps, min_size=1, max_size=3).map(tuple),
    ),
    st.builds(
        t.AbsenceTrigger,
        first_events,
        names,
        maybe_exprs,
        positive,
        steps=st.lists(steps, max_size=2).map(tuple),
        absent_binding=st.none() | names,
    ),
    st.builds(t.CountTrigger, st.integers(1, 50), first_events, positive),
    st.builds(t.IdleTrigger, positive, maybe_exprs),
    st.builds(t.SessionStartTrigger, maybe_exprs),
    st.builds(t.SessionEndTrigger, maybe_exprs),
)
localised = st.builds(
    t.Localised,
    st.dictionaries(
        st.sampled_from(["en", "de", "fr", "pt_BR"]), templates, min_size=1
    ).map(lambda d: tuple(d.items())),
)
text_fields = templates | localised
data = st.dictionaries(names, templates, max_size=3).map(lambda d: tuple(d.items()))
actions = st.one_of(
    st.builds(
        t.PushAction,
        text_fields,
        st.none() | text_fields,
        maybe_templates,
        st.none() | positive,
        image=maybe_templates,
        urgency=st.none() | st.sampled_from(["low", "high", "very_low"]),
        collapse=maybe_templates,
        data=data,
    ),
    st.builds(
        t.InappAction,
        text_fields,
        st.none() | text_fields,
        maybe_templates,
        image=maybe_templates,
        data=data,
        else_push=st.booleans(),
    ),
    st.builds(t.WebhookAction, texts),
)
more_atoms = st.one_of(
    st.builds(
        t.TextTest, st.sampled_from(["contains", "starts with"]), operands, operands
    ),
    st.builds(t.TextTest, st.just("matches"), operands, st.builds(t.Literal, texts)),
    st.builds(t.Exists, paths),
    st.builds(t.InList, operands, paths, st.booleans()),
    st.builds(t.Literal, clocks, is_clock=st.just(True)),
    st.builds(t.Path, st.just("session"), st.just(("count",)), names),
)


full_rules = st.builds(
    t.Rule,
    name=names,
    trigger=triggers,
    action=st.none() | actions,
    title=st.none() | texts,
    wait=st.none() | st.builds(t.Wait, positive, st.booleans()),
    unless=st.lists(st.builds(t.Unless, names, maybe_exprs), max_size=2).map(tuple),
    limits=st.lists(
        st.one_of(
            st.builds(t.Limit, st.integers(1, 9), st.just("session")),
            st.builds(t.Limit, st.integers(1, 9), st.just("day")),
            st.builds(t.Limit, st.integers(1, 9), st.just("user"), positive),
        ),
        max_size=2,
    ).map(tuple),
    at=st.none() | st.builds(t.At, clocks),
    condition=st.none() | more_atoms | maybe_exprs,
    quiet=st.none() | st.builds(t.QuietHours, clocks, clocks, st.booleans()),
    holdout=st.none() | percents,
    variants=st.lists(
        st.builds(t.Variant, names, percents, actions), min_size=1, max_size=3
    ).map(tuple),
    goal=st.none() | st.builds(t.Goal, names, positive, maybe_exprs),
    priority=st.integers(-5, 5),
).map(
    # A rule has an action or variants, never both; and `wait` or `at`.
    lambda rule: t.Rule(
        **{
            **{f: getattr(rule, f) for f in rule.__dataclass_fields__},
            "variants": () if rule.action is not None else rule.variants,
            "at": None if rule.wait is not None else rule.at,
        }
    )
)


def roundtrip(rule_file: t.RuleFile) -> str:
    text = format_file(rule_file)
    assert parse_text(text, "fmt.rules").rules == rule_file.rules, text
    assert format_text(text) == text
    return text


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(full_rules)
def test_a_formatted_rule_of_the_whole_language_parses_back_to_its_tree(
    rule: t.Rule,
) -> None:
    roundtrip(t.RuleFile("gen.rules", (rule,)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(rules, max_size=3))
def test_formatted_core_rules_parse_back_and_format_to_the_same_text(
    generated: list[t.Rule],
) -> None:
    roundtrip(t.RuleFile("gen.rules", tuple(generated)))


def test_comments_stay_before_their_rule_and_at_the_end_of_one_line_clauses() -> None:
    text = (
        "# shop rules\n\n# the cart\nrule r {\n  when cart   # a cart\n"
        '  push { title "a" }\n}\n# the end\n'
    )
    assert format_text(text) == (
        "# shop rules\n\n# the cart\nrule r {\n    when cart  # a cart\n"
        '    push {\n        title "a"\n    }\n}\n\n# the end\n'
    )


def test_formatting_the_example_rules_twice_changes_nothing() -> None:
    with open("examples/rules/shop.rules", encoding="utf-8") as handle:
        once = format_text(handle.read())
    assert format_text(once) == once
