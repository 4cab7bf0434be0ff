"""A report as text: a plain table for pipes, a rich one for terminals.

Two tables: the funnel of every rule (and of each variant under it), and
the comparison of every arm with the rule's holdout. Rates and lifts are
shown in percent and percentage points (pp); the JSON form keeps the exact
fractions.
"""

from __future__ import annotations

from typing import IO

import msgspec

from sessionpush.report.outcomes import SKIP_KINDS, Funnel, Report
from sessionpush.report.stats import Comparison

__all__ = [
    "SKIP_LABELS",
    "funnel_rows",
    "lift_rows",
    "plain_text",
    "print_rich",
    "report_json",
]

#: Column headings of the kinds of skip.
SKIP_LABELS = {
    "no_consent": "no consent",
    "unreachable": "unreachable",
    "suppressed": "cancelled",
    "capped": "capped",
    "quiet": "quiet dropped",
    "unmet": "if unmet",
    "held_out": "held out",
    "dropped": "rule gone",
}

_COUNTS = ("sent", "delivered", "failed", "opened", "clicked", "converted")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _pp(value: float) -> str:
    return f"{value * 100:+.1f}"


def funnel_rows(report: Report) -> list[list[str]]:
    """The funnel table, heading first; skip columns only where used."""
    used = [
        kind
        for kind in SKIP_KINDS
        if any(r.funnel.skipped.get(kind) for r in report.rules)
    ]
    extra = sorted(
        {k for r in report.rules for k, n in r.funnel.skipped.items() if n}
        - set(SKIP_KINDS)
    )
    deferred = any(r.funnel.deferred for r in report.rules)
    header = [
        "rule",
        "triggered",
        *(SKIP_LABELS.get(k, k) for k in [*used, *extra]),
        *(["quiet deferred"] if deferred else []),
        *_COUNTS,
    ]

    def row(name: str, funnel: Funnel, whole: bool) -> list[str]:
        def count(value: int) -> str:
            return str(value) if whole else ""

        return [
            name,
            count(funnel.triggered),
            *(count(funnel.skipped.get(k, 0)) for k in [*used, *extra]),
            *([count(funnel.deferred)] if deferred else []),
            *(str(getattr(funnel, c)) for c in _COUNTS),
        ]

    rows = [header]
    for rule in report.rules:
        rows.append(row(rule.rule, rule.funnel, True))
        for name, funnel in rule.variants.items():
            rows.append(row(f"  variant {name}", funnel, False))
    return rows


def lift_rows(report: Report) -> list[list[str]]:
    """The comparison table, heading first; empty without comparisons."""
    header = [
        "rule",
        "arm",
        "goal",
        "treated",
        "holdout",
        "lift (pp)",
        "95% CI (pp)",
        "relative",
        "p",
    ]
    rows = [header]
    for rule in report.rules:
        for c in rule.comparisons:
            rows.append([rule.rule, c.arm, rule.goal or "", *_comparison_cells(c)])
    return rows if len(rows) > 1 else []


def _comparison_cells(c: Comparison) -> list[str]:
    treated = f"{c.treated_converted}/{c.treated} {_pct(c.treated_rate)}"
    holdout = f"{c.holdout_converted}/{c.holdout} {_pct(c.holdout_rate)}"
    if c.lift is None or c.ci_low is None or c.ci_high is None:
        return [treated, holdout, "-", "-", "-", "-"]
    relative = "-" if c.relative_lift is None else f"{c.relative_lift * 100:+.0f}%"
    p = "-" if c.p_value is None else f"{c.p_value:.3g}"
    return [
        treated,
        holdout,
        _pp(c.lift),
        f"[{_pp(c.ci_low)}, {_pp(c.ci_high)}]",
        relative,
        p,
    ]


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
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


def plain_text(report: Report) -> str:
    """Both tables as aligned plain text, for pipes and files."""
    parts = [_table(funnel_rows(report))]
    lifts = lift_rows(report)
    if lifts:
        parts.append(_table(lifts))
    else:
        parts.append("no rule has both a goal and a holdout: no lift to show")
    if report.rules_version:
        parts.append(f"rule set version {report.rules_version}")
    return "\n\n".join(parts)


def print_rich(report: Report, file: IO[str], width: int | None = None) -> None:
    """Both tables with rich's formatting, for a terminal (of its own width
    unless ``width`` is given)."""
    from rich.console import Console
    from rich.table import Table

    console = Console(file=file, width=width)
    for title, rows in (
        ("Outcomes per rule", funnel_rows(report)),
        ("Lift against the holdout", lift_rows(report)),
    ):
        if not rows:
            continue
        table = Table(title=title, title_justify="left")
        for i, heading in enumerate(rows[0]):
            table.add_column(heading, justify="left" if i == 0 else "right")
        for row in rows[1:]:
            table.add_row(*row)
        console.print(table)
    if report.rules_version:
        console.print(f"rule set version {report.rules_version}")


def report_json(report: Report) -> bytes:
    """The report as JSON, with exact fractions."""
    return msgspec.json.encode(report)
