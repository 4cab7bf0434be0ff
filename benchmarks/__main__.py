"""Every benchmark in one run: ``python -m benchmarks``.

Runs, in this order, each against its baseline in the same run:

1. the matcher over the REES46 events with 10, 100 and 1,000 rules, beside
   the naive loop, ``rule-engine`` and ``durable_rules``
   (:mod:`benchmarks.peers`);
2. the gateway under load from separate processes, beside a bare
   websockets server and beside the same engine served by the websockets
   library (:mod:`benchmarks.gateway`), with latencies and idle memory;
3. timers and delivery (:mod:`benchmarks.timers`,
   :mod:`benchmarks.delivery`) in child processes, their output kept.

Prints one table with every target and whether it was met, and writes
everything to ``benchmarks/results.json`` (``--out``). ``--quick`` runs
everything at a tiny scale, to check that the harness works; its numbers
mean nothing. All traffic stays on 127.0.0.1; every server and worker is
a child process stopped at the end of its phase.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from benchmarks import gateway, peers

ROOT = Path(__file__).resolve().parents[1]

#: Child benchmarks: (name, module, arguments, arguments with --quick).
CHILDREN = (
    (
        "timers",
        "benchmarks.timers",
        ["--deadlines", "1000000", "--timers", "3000"],
        ["--deadlines", "2000", "--timers", "100"],
    ),
    (
        "delivery",
        "benchmarks.delivery",
        ["--messages", "1000", "--repeat", "1", "--apns-requests", "300"],
        ["--messages", "20", "--repeat", "1", "--apns-requests", "10"],
    ),
)


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "load_average_at_start": os.getloadavg(),
    }


def run_child(module: str, args: list[str], timeout: float) -> str:
    """A benchmark in a child process; its output, or why it failed."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", module, *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"{module}: stopped after {timeout:.0f} s"
    out = done.stdout
    if done.returncode != 0:
        out += f"\n{module} failed ({done.returncode}):\n{done.stderr[-2000:]}"
    return out


def _number(text: str, pattern: str) -> float | None:
    found = re.search(pattern, text)
    return None if found is None else float(found.group(1).replace(",", ""))


Row = tuple[str, str, str, bool | None]


def targets(results: dict[str, Any]) -> list[Row]:
    """(what, measured, target, met) for each target of issue 9."""
    rows: list[Row] = []
    engine = {row["rules"]: row for row in results["engine"]}
    gw = results["gateway"]

    def rate(key: str) -> float:
        value = gw[key]["events_per_cpu_s"]
        return float(value) if value is not None else float("nan")

    ratio = rate("single/sessionpush") / rate("single/baseline")
    rows.append(
        (
            "gateway, 1 event/frame: sessionpush vs bare websockets, ev/CPU-s",
            f"{rate('single/sessionpush'):,.0f} vs {rate('single/baseline'):,.0f}"
            f" = {ratio:.0%}",
            ">= 85%",
            ratio >= 0.85,
        )
    )
    for kind in ("sessionpush", "baseline"):
        batched = rate(f"batch/{kind}")
        rows.append(
            (
                f"gateway, batched frames, {kind}, ev/CPU-s",
                f"{batched:,.0f}",
                ">= 100,000" if kind != "baseline" else "-",
                batched >= 100_000 if kind != "baseline" else None,
            )
        )
    for key, label in (
        ("idle-plain/sessionpush", "idle socket, compression off"),
        ("idle-plain/baseline", "  bare websockets server"),
        ("idle-deflate/sessionpush", "idle socket, compression on"),
    ):
        run = gw[key]
        per = run["rss_per_connection"] or float("nan")
        limit = key == "idle-plain/sessionpush"
        rows.append(
            (
                f"{label}, KiB ({run['connections']:,} held)",
                f"{per / 1024:.1f}",
                "<= 16" if limit else "-",
                per <= 16 * 1024 if limit else None,
            )
        )
    for key, label in (
        ("single/sessionpush", "full load"),
        ("half/sessionpush", "half load"),
    ):
        run = gw[key]
        rows.append(
            (
                f"event to ack, ms p50/p99, {label}",
                f"{_ms(run['ack_ms_p50'])} / {_ms(run['ack_ms_p99'])}",
                "-",
                None,
            )
        )
        rows.append(
            (
                f"event to in-app message, ms p50/p99, {label}",
                f"{_ms(run['message_ms_p50'])} / {_ms(run['message_ms_p99'])}",
                "-",
                None,
            )
        )
        outbox = run["end_to_outbox_ms"] or {}
        rows.append(
            (
                f"session end to outbox line, ms p50/p99, {label}",
                f"{_ms(outbox.get('p50'))} / {_ms(outbox.get('p99'))}"
                f" ({outbox.get('lines', 0)} of {outbox.get('probes', 0)})",
                "-",
                None,
            )
        )
    hundred = engine[100]
    rows.append(
        (
            "matcher, 100 rules, REES46 ev/s (one core)",
            f"{hundred['sessionpush']:,.0f}",
            ">= 500,000",
            hundred["sessionpush"] >= 500_000,
        )
    )
    flat = engine[1000]["sessionpush"] / engine[10]["sessionpush"]
    rows.append(
        (
            "matcher, 1,000 rules vs 10 (flat)",
            f"{flat:.0%}",
            ">= 80%",
            flat >= 0.8,
        )
    )
    # A peer that is not installed (the ``bench`` extra) shows as "-".
    for peer in ("naive", "rule-engine", "durable_rules"):
        value = hundred[peer]
        rows.append(
            (
                f"  100 rules: sessionpush / {peer}",
                "-" if not value else f"{hundred['sessionpush'] / value:,.1f}x",
                "-",
                None,
            )
        )
    timers = results["children"].get("timers", "")
    both = _number(timers, r"schedule\+cancel\s+([\d.,]+)")
    memory = _number(timers, r"memory\s+([\d,]+) bytes per pending \(target")
    redis = _number(timers, r"durable timers \(Redis\)[\s\S]*?fire[^\d]*([\d,]+) /s")
    rows.append(_row("in-session deadline, schedule+cancel µs", both, "< 1", 1, "<"))
    rows.append(_row("in-session deadline, bytes", memory, "<= 150", 150, "<="))
    rows.append(_row("Redis timer fires/s", redis, ">= 20,000", 20_000, ">="))
    return rows


def _row(label: str, value: float | None, target: str, limit: float, op: str) -> Row:
    if value is None:
        return (label, "n/a", target, None)
    met = (
        value < limit if op == "<" else value <= limit if op == "<=" else value >= limit
    )
    return (label, f"{value:,.2f}" if value < 10 else f"{value:,.0f}", target, met)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def print_table(rows: list[Row]) -> None:
    width = max(len(row[0]) for row in rows)
    print(f"\n{'what':<{width}}  {'measured':>26}  {'target':>10}  met")
    for what, measured, target, met in rows:
        mark = "-" if met is None else "yes" if met else "NO"
        print(f"{what:<{width}}  {measured:>26}  {target:>10}  {mark}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    gateway.add_arguments(parser)
    parser.add_argument("--quick", action="store_true", help="tiny scale")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results.json"
    )
    parser.add_argument("--engine-repeat", type=int, default=3)
    args = parser.parse_args(argv)
    if args.quick:
        args.connections, args.idle, args.idle_deflate = 40, 40, 20
        args.events_limit, args.rounds, args.repeat, args.probes = 600, 1, 1, 5

    started = time.monotonic()
    results: dict[str, Any] = {
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "arguments": {k: str(v) for k, v in vars(args).items()},
    }
    print("engine: matcher against the naive loop and published engines", flush=True)
    engine = peers.measure(
        repeat=1 if args.quick else args.engine_repeat,
        budget=0.05 if args.quick else 0.5,
        events_limit=300 if args.quick else 0,
    )
    peers.print_table(engine)
    results["engine"] = engine
    print("\ngateway: each phase on its own server, load from child processes")
    results["gateway"] = gateway.measure(args)
    results["children"] = {}
    for name, module, full, quick in CHILDREN:
        print(f"\n{name}: python -m {module} {' '.join(quick if args.quick else full)}")
        out = run_child(module, quick if args.quick else full, timeout=240)
        print(out.rstrip())
        results["children"][name] = out
    rows = targets(results)
    print_table(rows)
    results["targets"] = [
        {"what": what, "measured": measured, "target": target, "met": met}
        for what, measured, target, met in rows
    ]
    results["seconds"] = time.monotonic() - started
    args.out.write_bytes(msgspec.json.format(msgspec.json.encode(results)))
    print(f"\n{results['seconds']:.0f} s; results written to {args.out}")


if __name__ == "__main__":
    main()
