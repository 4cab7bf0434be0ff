"""Decisions as JSON lines and as a per-rule summary table."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

from sessionpush.engine.clock import iso, parse_iso
from sessionpush.store.base import Decision

__all__ = ["decision_from_record", "decision_record", "summary_table"]


def decision_record(decision: Decision) -> dict[str, Any]:
    """The public JSON form of a decision (times as ISO-8601 UTC)."""
    record: dict[str, Any] = {
        "rule": decision.rule,
        "user": decision.user,
        "session": decision.session,
        "decision": decision.decision,
        "reason": decision.reason,
        "at": iso(decision.at),
        "channel": decision.channel,
        "triggered_at": iso(decision.triggered_at),
        "app": decision.app,
    }
    if decision.message is not None:
        record["message"] = decision.message
    return record


def decision_from_record(record: dict[str, Any]) -> Decision:
    """The decision a :func:`decision_record` was made from."""
    message = record.get("message")
    return Decision(
        app=str(record["app"]),
        rule=str(record["rule"]),
        user=str(record["user"]),
        session=str(record["session"]),
        decision=str(record["decision"]),
        reason=str(record["reason"]),
        at=parse_iso(str(record["at"])),
        channel=str(record["channel"]),
        triggered_at=parse_iso(str(record["triggered_at"])),
        message=message if isinstance(message, dict) else None,
    )


def summary_table(outcomes: Iterable[tuple[str, str]], rules: Iterable[str]) -> str:
    """One row per rule: decisions in all, sent, and each kind of skip.

    ``outcomes`` are ``(rule, decision)`` pairs; ``rules`` lists the rule
    names in order, so that a rule that never triggered still gets its row.
    """
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for rule, decision in outcomes:
        counts[rule][decision] += 1
    names = list(dict.fromkeys([*rules, *counts]))
    kinds = sorted({kind for c in counts.values() for kind in c} - {"sent"})
    header = ["rule", "decisions", "sent", *kinds]
    rows = [header]
    for name in names:
        c = counts.get(name, Counter())
        rows.append(
            [name, str(sum(c.values())), str(c["sent"]), *(str(c[k]) for k in kinds)]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for n, row in enumerate(rows):
        cells = [
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
