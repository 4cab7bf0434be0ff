"""Events per second of the engine alone, against a naive baseline.

Replays the REES46 sample (real events) through the example rules, with the
engine driven in process exactly as ``sessionpush replay`` drives it, twice
in the same run: once with the indexed rule set, once with a baseline that
evaluates every rule on every event. A second table pads the rule set with
rules about events that never occur, to show that the indexed cost stays
flat while the baseline's grows.

Run: ``python -m benchmarks.engine`` (``--repeat N`` for more runs; the
median is printed). Absolute numbers drift on shared machines: read the
ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sessionpush.dsl import load_ruleset
from sessionpush.dsl.check import check_files
from sessionpush.dsl.compile import compile_rules
from sessionpush.dsl.parse import parse_text
from sessionpush.engine.rules import CompiledRule, Match, RuleSet
from sessionpush.engine.session import Session
from sessionpush.replay.formats import RecordedEvent, load_events
from sessionpush.replay.run import replay_in_process

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SESSIONPUSH_DATA", ROOT.parent / "shared" / "data"))


class NaiveRuleSet(RuleSet):
    """The baseline: every rule looks at every event, no index."""

    def on_event(
        self, session: Session, name: str, props: dict[str, Any], now: float
    ) -> Sequence[Match]:
        session.events += 1
        session.last_at = now
        matches: list[Match] = []
        for rule in self.rules:
            if (
                rule.kind == "absence"
                and rule.absent == name
                and rule.index in session.absence
                and (rule.absent_where is None or rule.absent_where(props, session))
            ):
                del session.absence[rule.index]
            if rule.event != name:
                continue
            if rule.where is not None and not rule.where(props, session):
                continue
            if rule.kind == "event":
                matches.append((rule, None, {}))
            elif rule.index not in session.absence:
                due = now + rule.within
                session.absence[rule.index] = due
                matches.append((rule, due, {}))
        for rule in self.rules:
            if name in rule.needs_seen:
                session.seen.add(name)
            if name in rule.needs_last:
                session.last[name] = props
        return matches


def padding(count: int) -> list[CompiledRule]:
    """Rules about events the data never holds (each its own name)."""
    text = "\n".join(
        f"rule other_{n} {{ when other_event_{n} where price > {n} "
        f'push {{ title "t{n}" }} }}'
        for n in range(count)
    )
    return compile_rules([parse_text(text, "padding.rules")]).rules


def rule_set(base: RuleSet, extra: int, naive: bool) -> RuleSet:
    # Copies: a RuleSet numbers the rules it is given.
    rules = [dataclasses.replace(r) for r in (*base.rules, *padding(extra))]
    cls = NaiveRuleSet if naive else RuleSet
    return cls(rules, version=base.version)


def measure(rules: RuleSet, events: list[RecordedEvent]) -> float:
    """Events per second through the whole in-process engine."""
    started = time.perf_counter()
    asyncio.run(replay_in_process(rules, events))
    return len(events) / (time.perf_counter() - started)


def measure_matcher(rules: RuleSet, events: list[RecordedEvent]) -> float:
    """Events per second through the matcher alone (no store, no sends)."""
    sessions = {
        e.session: Session("a", e.user, e.session, e.ts, {}, {}) for e in events
    }
    pairs = [(sessions[e.session], e.name, e.props, e.ts) for e in events]
    on_event = rules.on_event
    started = time.perf_counter()
    for _ in range(20):
        for session, name, props, ts in pairs:
            on_event(session, name, props, ts)
    return 20 * len(pairs) / (time.perf_counter() - started)


def compile_time(count: int) -> float:
    """Seconds to parse, check and compile ``count`` varied rules."""
    shapes = (
        'rule r{n} {{ when view where price > {n} push {{ title "t{n}" }} }}',
        "rule r{n} {{ when view as v then cart where price > v.price within 5m "
        'limit 1 per session push {{ title "{{v.brand | upper}}" }} }}',
        "rule r{n} {{ when 2 times search where results == 0 within 5m "
        'quiet hours 22:00-08:00 inapp {{ title "n{n}" }} else push }}',
        "rule r{n} {{ when session ends where session has cart wait 10m "
        'unless purchase holdout 10% variant a 50% {{ push {{ title "a" }} }} '
        'variant b 50% {{ push {{ title "b" }} }} }}',
    )
    text = "\n".join(shapes[n % len(shapes)].format(n=n) for n in range(count))
    started = time.perf_counter()
    files = [parse_text(text, "bench.rules")]
    problems = check_files(files)
    compile_rules(files)
    elapsed = time.perf_counter() - started
    assert not problems, problems[0].render()
    return elapsed


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rules", default=str(ROOT / "examples" / "rules"))
    args = parser.parse_args(argv)

    events = load_events(DATA / "rees46-2019oct-head.csv", "rees46")
    base = load_ruleset([args.rules])
    print(f"{len(events)} REES46 events, median of {args.repeat} runs")
    for title, bench in (
        ("whole engine (replay in process, SQLite in memory)", measure),
        ("matcher alone (RuleSet.on_event)", measure_matcher),
    ):
        print(f"\n{title}")
        print(f"{'rules':>6} {'indexed ev/s':>14} {'naive ev/s':>12} {'ratio':>7}")
        for extra in (0, 100, 1000):
            indexed = rule_set(base, extra, naive=False)
            naive = rule_set(base, extra, naive=True)
            fast, slow = [], []
            for _ in range(args.repeat):
                # Interleaved, so that drift on a shared machine hits both.
                fast.append(bench(indexed, events))
                slow.append(bench(naive, events))
            f, s = statistics.median(fast), statistics.median(slow)
            print(f"{len(indexed):>6} {f:>14,.0f} {s:>12,.0f} {f / s:>6.2f}x")

    seconds = statistics.median(compile_time(1000) for _ in range(args.repeat))
    print(f"\ncompile (parse, check, compile) of 1,000 rules: {seconds:.2f} s")
    print("\nper-event cost of the matcher, most rules naming other events")
    print(f"{'rules':>6} {'us/event':>10}")
    for total in (10, 100, 1000):
        rules = rule_set(base, total - len(base), naive=False)
        rates = [measure_matcher(rules, events) for _ in range(args.repeat)]
        print(f"{len(rules):>6} {1e6 / statistics.median(rates):>10.2f}")


if __name__ == "__main__":
    main()
