"""Gateway throughput, latency and memory, against a bare websockets server.

Each phase starts one server in a child process (``benchmarks.servers``)
on a free 127.0.0.1 port and ``--workers`` load generator processes
(``benchmarks.loadgen``) that connect, say ``hello`` and then replay the
real sessions. The server's CPU time is read from /proc (Linux only) between the moment
every socket is open and the moment every ack is in, so connecting is not
counted. The baseline and sessionpush phases alternate, so that drift on a
shared machine hits both; medians over ``--repeat`` are reported.

Phases:

- ``single``: one event per frame, full load, ``--connections`` sockets;
  with probe sessions that time session end to outbox line.
- ``batch``: ``--batch`` events per frame, full load.
- ``half``: sessionpush only, one event per frame offered at half of the
  rate its ``single`` phase reached, with the same probes.
- ``idle``: ``--idle`` sockets held open after ``hello``; resident memory
  per socket, compression off and on.

Run: ``python -m benchmarks.gateway`` (see ``--help``); the suite
``python -m benchmarks`` runs it with the others.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks.loadgen import WorkerPlan, worker_main
from benchmarks.servers import ServerProcess, raise_open_files, start_server

#: The servers compared in each throughput phase (``benchmarks.servers``).
KINDS = ("baseline", "sessionpush")

#: Seconds a phase may take from the workers' start to their last result.
PHASE_LIMIT = 180.0


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _cpu(server: ServerProcess) -> float:
    """User plus system CPU seconds of the server (Linux: /proc)."""
    stat = Path(f"/proc/{server.pid}/stat").read_text()
    # proc(5): fields 14 and 15, counted after the parenthesised name.
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss(server: ServerProcess) -> int:
    """Resident memory of the server in bytes (Linux: /proc)."""
    for line in Path(f"/proc/{server.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {server.pid}")


def run_phase(
    kind: str, plan: WorkerPlan, workers: int, workdir: Path, deflate: bool = False
) -> dict[str, Any]:
    """One server, ``workers`` load processes; the phase's measurements."""
    began = time.monotonic()
    context = multiprocessing.get_context("spawn")
    # A fresh store and outbox for every phase, so that phases compare.
    workdir = Path(tempfile.mkdtemp(dir=workdir))
    server = start_server(kind, workdir, deflate=deflate, lifetime=PHASE_LIMIT + 60)
    procs: list[Any] = []
    pipes: list[Any] = []
    tail = OutboxTail(workdir / "outbox.jsonl")
    try:
        time.sleep(0.5)
        rss_before = _rss(server)
        tail.start()
        for n in range(workers):
            ours, theirs = context.Pipe()
            worker_plan = replace(plan, port=server.port, worker=n, n_workers=workers)
            proc = context.Process(target=worker_main, args=(worker_plan, theirs))
            proc.start()
            procs.append(proc)
            pipes.append(ours)
        deadline = time.monotonic() + PHASE_LIMIT
        ready = [_receive(pipe, deadline) for pipe in pipes]
        connected = sum(r[1] for r in ready if r[0] == "ready")
        time.sleep(0.5)
        rss_after = _rss(server)
        cpu_before = _cpu(server)
        for pipe in pipes:
            pipe.send("go")
        results = [_receive(pipe, deadline)[1] for pipe in pipes]
        cpu = _cpu(server) - cpu_before
        # The last probe's push may still be on its way to the file.
        time.sleep(0.2)
    finally:
        tail.stop.set()
        if tail.is_alive():
            tail.join(5)
        for proc in procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        server.stop()
    events = sum(r["events"] for r in results)
    seconds = max(r["seconds"] for r in results) or float("nan")
    acks = [ms for r in results for ms in r["ack_ms"]]
    messages = [ms for r in results for ms in r["message_ms"]]
    probes = [end for r in results for end in r["probe_ends"]]
    return {
        "server": kind,
        "mode": plan.mode,
        "connections": connected,
        "failed": sum(r["failed"] for r in results),
        "events": events,
        "frames": sum(r["frames"] for r in results),
        "seconds": seconds,
        "server_cpu_s": cpu,
        "events_per_s": events / seconds,
        "events_per_cpu_s": events / cpu if cpu > 0 else None,
        "ack_ms_p50": _percentile(acks, 0.5),
        "ack_ms_p99": _percentile(acks, 0.99),
        "message_ms_p50": _percentile(messages, 0.5),
        "message_ms_p99": _percentile(messages, 0.99),
        "end_to_outbox_ms": _outbox_latency(tail, probes),
        "rss_per_connection": (rss_after - rss_before) / connected
        if connected
        else None,
        "errors": [e for r in results for e in r["errors"]][:5],
        "phase_s": time.monotonic() - began,
    }


def _receive(pipe: Any, deadline: float) -> Any:
    if not pipe.poll(max(0.0, deadline - time.monotonic())):
        raise RuntimeError("a load worker did not answer in time")
    return pipe.recv()


class OutboxTail(threading.Thread):
    """Notes when each line of the outbox appears, polling every millisecond.

    Polling, not the line's own ``at``: that is stamped before the store is
    asked about the send, and only to the millisecond.
    """

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.seen: dict[str, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        import msgspec

        offset = 0
        while not self.stop.wait(0.001):
            with contextlib.suppress(FileNotFoundError):
                with self.path.open("rb") as handle:
                    handle.seek(offset)
                    chunk = handle.read()
                now = time.time()
                end = chunk.rfind(b"\n") + 1
                offset += end
                for line in chunk[:end].splitlines():
                    record = msgspec.json.decode(line)
                    if record.get("rule") == "bench_end_push":
                        self.seen[record["session"]] = now


def _outbox_latency(
    tail: OutboxTail, probes: list[tuple[str, float]]
) -> dict[str, Any] | None:
    """Session end (the ``end`` frame leaving the client) to the outbox line
    of its post-session push, in ms."""
    if not probes:
        return None
    delays = [
        (tail.seen[session] - ended) * 1000.0
        for session, ended in probes
        if session in tail.seen
    ]
    return {
        "probes": len(probes),
        "lines": len(delays),
        "p50": _percentile(delays, 0.5),
        "p99": _percentile(delays, 0.99),
    }


def _median(runs: list[dict[str, Any]], key: str) -> Any:
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians of the numeric measurements of repeated runs of one phase."""
    out: dict[str, Any] = dict(runs[-1])
    for key, value in runs[-1].items():
        if isinstance(value, float | int) and not isinstance(value, bool):
            out[key] = _median(runs, key)
    outbox = [
        o
        for o in (r["end_to_outbox_ms"] for r in runs)
        if o is not None and o["p50"] is not None
    ]
    if outbox:
        out["end_to_outbox_ms"] = {
            "probes": sum(o["probes"] for o in outbox),
            "lines": sum(o["lines"] for o in outbox),
            "p50": statistics.median(o["p50"] for o in outbox),
            "p99": statistics.median(o["p99"] for o in outbox),
        }
    out["runs"] = len(runs)
    return out


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Every phase; returns the results by phase name."""
    raise_open_files()
    base = WorkerPlan(
        port=0,
        worker=0,
        n_workers=1,
        connections=args.connections,
        window=args.window,
        max_seconds=args.max_seconds,
        events_limit=args.events_limit,
    )
    plans = {
        "single": replace(base, mode="single", probes=args.probes),
        "batch": replace(base, mode="batch", batch=args.batch, rounds=args.rounds),
    }
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="sessionpush-bench-") as tmp:
        workdir = Path(tmp)
        for name, plan in plans.items():
            runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
            for repeat in range(args.repeat):
                for kind in KINDS if repeat % 2 == 0 else KINDS[::-1]:
                    run = run_phase(kind, plan, args.workers, workdir)
                    _report(name, run)
                    runs[kind].append(run)
            for kind, kind_runs in runs.items():
                results[f"{name}/{kind}"] = summarize(kind_runs)
        # Half the events at half the rate: as long as the full-load phase.
        full = results["single/sessionpush"]
        half = replace(
            plans["single"],
            rate=full["events_per_s"] / 2,
            events_limit=max(1, int(full["events"]) // 2),
        )
        run = run_phase("sessionpush", half, args.workers, workdir)
        _report("half", run)
        results["half/sessionpush"] = summarize([run])
        idle = replace(base, mode="idle", connections=args.idle)
        for kind, deflate, count in (
            ("baseline", False, args.idle),
            ("sessionpush", False, args.idle),
            ("sessionpush", True, args.idle_deflate),
        ):
            plan = replace(idle, connections=count, deflate=deflate)
            run = run_phase(kind, plan, args.workers, workdir, deflate=deflate)
            _report("idle", run)
            label = "deflate" if deflate else "plain"
            results[f"idle-{label}/{kind}"] = run
    return results


def _report(phase: str, run: dict[str, Any]) -> None:
    rate = run["events_per_cpu_s"]
    per = run["rss_per_connection"]
    print(
        f"  {phase:<7} {run['server']:<14} {run['connections']:>6} sockets "
        f"{run['events']:>8} events "
        + (f"{rate:>10,.0f} ev/CPU-s " if rate else "")
        + (f"{per / 1024:>6.1f} KiB/socket" if run["mode"] == "idle" and per else "")
        + f" ({run['phase_s']:.0f} s)"
        + (f" errors: {run['errors']}" if run["errors"] else ""),
        flush=True,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--window", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--probes", type=int, default=100)
    parser.add_argument("--idle", type=int, default=19_900)
    parser.add_argument("--idle-deflate", type=int, default=5_000)
    parser.add_argument("--max-seconds", type=float, default=60.0)
    parser.add_argument(
        "--events-limit", type=int, default=0, help="replay only the first N events"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        results = measure(args)
        for key, value in results.items():
            print(key, {k: v for k, v in value.items() if k != "errors"})


if __name__ == "__main__":
    main()
