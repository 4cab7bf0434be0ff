"""The engine's matcher against a naive loop and two published rule engines.

The same rules, over the same 4,999 real REES46 events, with 10, 100 and
1,000 rules in total (the example rules plus rules about events the data
never holds):

- *sessionpush*: ``RuleSet.on_event``, indexed by event name;
- *naive*: the same compiled rules, every rule evaluated on every event
  (``benchmarks.engine.NaiveRuleSet``);
- *rule-engine* (PyPI ``rule-engine``): each rule's event condition as one
  expression (``name == "view" and price != null and price > 500``), every
  expression matched against every event, which is how that library is used;
- *durable_rules* (PyPI ``durable_rules``), if it imports: the same
  conditions as one ruleset, each event posted to it (up to
  :data:`DURABLE_MAX_RULES` rules).

The published engines only see the event-level condition of each rule (no
sessions, sequences or absence windows), so they do less than ours: the
ratio flatters them. Each peer is measured for about ``budget`` seconds a
round; rounds are interleaved, durable_rules last (its threads stay).
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from benchmarks.engine import DATA, ROOT, measure_matcher, rule_set
from sessionpush.dsl import load_ruleset
from sessionpush.replay.formats import RecordedEvent, load_events

#: The event-level conditions of examples/rules/shop.rules, in the peers'
#: terms: the trigger of pricey_view_no_cart and big_purchase_thanks, and
#: the events cart_recovery records (``session has cart``, ``purchase``).
EXAMPLE_CONDITIONS = (
    ("view", "price", ">", 500),
    ("purchase", "price", ">=", 300),
    ("cart", None, None, None),
)


def conditions(total: int) -> list[tuple[str, str | None, str | None, float | None]]:
    padding = [(f"other_event_{n}", "price", ">", n) for n in range(total - 3)]
    return [*EXAMPLE_CONDITIONS, *padding]


def _bounded(
    step: Callable[[dict[str, Any]], None], events: list[Any], budget: float
) -> float:
    """Events per second of ``step``, over whole passes for about ``budget`` s."""
    done = 0
    started = time.perf_counter()
    while True:
        for event in events:
            step(event)
            done += 1
            if done % 64 == 0 and time.perf_counter() - started > budget:
                return done / (time.perf_counter() - started)


def rule_engine_rate(
    total: int, events: list[dict[str, Any]], budget: float
) -> float | None:
    try:
        import rule_engine
    except ImportError:
        return None

    context = rule_engine.Context(default_value=None)
    rules = []
    for name, field, op, value in conditions(total):
        text = f'name == "{name}"'
        if field is not None:
            text += f" and {field} != null and {field} {op} {value}"
        rules.append(rule_engine.Rule(text, context=context))

    def step(event: dict[str, Any]) -> None:
        for rule in rules:
            rule.matches(event)

    return _bounded(step, events, budget)


#: Above this many rules durable_rules 2.0.28 never answers its first
#: ``post`` here (600 rules: no answer in 30 s, inside its C core, where no
#: timeout reaches), so larger sets are not tried.
DURABLE_MAX_RULES = 400


def durable_rate(
    total: int, events: list[dict[str, Any]], budget: float
) -> float | None:
    if total > DURABLE_MAX_RULES:
        return None
    try:
        from durable.engine import MessageNotHandledException
        from durable.lang import m, post, ruleset, when_all
    except ImportError:
        return None

    name = f"sessionpush_bench_{total}_{time.monotonic_ns()}"
    with ruleset(name):
        for event_name, field, op, value in conditions(total):
            test = m.name == event_name
            if field is not None:
                compare = getattr(m, field)
                test = test & (compare > value if op == ">" else compare >= value)
            when_all(test)(lambda c: None)

    def step(event: dict[str, Any]) -> None:
        # durable_rules raises for an event that no rule takes.
        with contextlib.suppress(MessageNotHandledException):
            post(name, event)

    return _bounded(step, events, budget)


def measure(
    repeat: int = 3, budget: float = 0.5, events_limit: int = 0
) -> list[dict[str, Any]]:
    """Events per second of each, per rule count; medians of ``repeat``."""
    recorded: list[RecordedEvent] = load_events(
        DATA / "rees46-2019oct-head.csv", "rees46"
    )
    if events_limit:
        recorded = recorded[:events_limit]
    plain = [
        {"name": e.name, **{k: v for k, v in e.props.items() if v is not None}}
        for e in recorded
    ]
    base = load_ruleset([str(ROOT / "examples" / "rules")])
    totals = (10, 100, 1000)
    sets = {
        total: (
            rule_set(base, total - len(base), naive=False),
            rule_set(base, total - len(base), naive=True),
        )
        for total in totals
    }
    runs: dict[tuple[int, str], list[float]] = defaultdict(list)
    # Interleaved: every rule count in every round, so drift hits all.
    for _ in range(repeat):
        for total, (indexed, naive) in sets.items():
            runs[total, "sessionpush"].append(measure_matcher(indexed, recorded))
            runs[total, "naive"].append(measure_matcher(naive, recorded))
            peer = rule_engine_rate(total, plain, budget)
            if peer is not None:
                runs[total, "rule-engine"].append(peer)
    # Last: durable_rules leaves threads of its own running in the process,
    # which take the GIL now and then and would slow whatever runs after.
    for _ in range(repeat):
        for total in totals:
            rate = durable_rate(total, plain, budget)
            if rate is not None:
                runs[total, "durable_rules"].append(rate)
    rows = []
    for total in totals:
        row: dict[str, Any] = {"rules": total}
        for key in ("sessionpush", "naive", "rule-engine", "durable_rules"):
            rates = runs[total, key]
            row[key] = statistics.median(rates) if rates else None
        rows.append(row)
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    print("matcher alone, REES46 events per second (one core)")
    head = f"{'rules':>6} {'sessionpush':>12} {'naive':>10} {'rule-engine':>12}"
    print(head + f" {'durable_rules':>14}")
    for row in rows:
        durable = row["durable_rules"]
        print(
            f"{row['rules']:>6} {row['sessionpush']:>12,.0f} {row['naive']:>10,.0f} "
            + (
                f"{row['rule-engine']:>12,.0f} "
                if row["rule-engine"]
                else f"{'-':>12} "
            )
            + (f"{durable:>14,.0f}" if durable else f"{'-':>14}")
        )


if __name__ == "__main__":
    print_table(measure())
