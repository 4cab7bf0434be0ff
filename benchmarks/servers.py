"""The two servers the gateway benchmark measures, each run in a child process.

- ``sessionpush``: the real gateway (``create_app``) under uvicorn, set up
  exactly as ``sessionpush serve`` sets it up (``server_config``: the
  session socket on the websockets Sans-I/O layer, 64 KiB frames, no
  compression unless asked) on uvloop, with the example rules and the
  benchmark's two probe rules (:data:`PROBE_RULES`).
- ``baseline``: the stack's own limit, a bare ``websockets`` server on the
  same event loop (uvloop) that decodes each frame with msgspec into the
  same structs and answers only what a client waits for: ``welcome`` to
  ``hello``, ``ack`` to events and batches, a close to ``end``.

Both listen on 127.0.0.1 only. The parent starts them with
:func:`start_server` and stops them with :meth:`ServerProcess.stop`; a
server also stops by itself after ``--lifetime`` seconds, so that nothing
outlives a crashed harness.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import msgspec

ROOT = Path(__file__).resolve().parents[1]

#: Rules added to the examples so that latencies can be seen from outside:
#: an in-app message on ``bench_probe`` (event to ``message``) and a push,
#: with no wait, at the end of a session that had one (session end to
#: outbox line). Only the probe sessions send ``bench_probe``; the replayed
#: load meets the example rules alone, since the index by event name keeps
#: these two from costing anything on other events.
PROBE_RULES = """\
rule bench_probe_inapp {
    when bench_probe
    inapp { title "Probe" }
}

rule bench_end_push {
    when session ends where session has bench_probe
    push { title "Probe ended" }
}
"""

HOST = "127.0.0.1"


def free_port() -> int:
    """A port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def raise_open_files() -> int:
    """Raise the soft limit of open files to the hard one; returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


class ServerProcess:
    """A server in its own process group, stopped whatever happens."""

    def __init__(self, kind: str, port: int, proc: subprocess.Popen[bytes]) -> None:
        self.kind = kind
        self.port = port
        self.proc = proc

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def start_server(
    kind: str, workdir: Path, *, deflate: bool = False, lifetime: float = 300.0
) -> ServerProcess:
    """Start a server on a free loopback port; return once it accepts."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "benchmarks.servers",
        kind,
        "--port",
        str(port),
        "--dir",
        str(workdir),
        "--lifetime",
        str(lifetime),
    ]
    if deflate:
        command.append("--deflate")
    proc = subprocess.Popen(command, cwd=ROOT, start_new_session=True)
    server = ServerProcess(kind, port, proc)
    deadline = time.monotonic() + 30
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{kind} server exited with {proc.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{kind} server did not start in 30 s")
            with contextlib.suppress(OSError):
                socket.create_connection((HOST, port), timeout=1).close()
                return server
            time.sleep(0.1)
    except BaseException:
        server.stop()
        raise


# -- the servers, in the child process -------------------------------------


def _serve_sessionpush(port: int, workdir: Path, deflate: bool) -> None:
    import uvicorn

    from sessionpush.gateway.app import Settings, create_app
    from sessionpush.gateway.apps import dev_config
    from sessionpush.gateway.limits import Limits
    from sessionpush.gateway.shutdown import server_config

    rules = workdir / "probe.rules"
    rules.write_text(PROBE_RULES)
    # Development mode (no tokens, as the baseline has none), with the
    # default limits but for the rate limit, which load replay would hit.
    gateway = dev_config(
        Limits(
            frames_per_second=1e9,
            frame_burst=10**9,
            connections_per_ip=100_000,
            compression=deflate,
        )
    )
    settings = Settings(
        rules=(str(ROOT / "examples" / "rules"), str(rules)),
        store=str(workdir / "bench.db"),
        outbox=str(workdir / "outbox.jsonl"),
        gateway=gateway,
    )
    # What ``sessionpush serve`` runs (cli._serve), the loop named so that
    # both servers surely run on uvloop.
    config = server_config(create_app(settings), gateway, HOST, port)
    config.loop = "uvloop"
    config.backlog = 4096
    config.log_level = "warning"
    uvicorn.Server(config).run()


async def _baseline(port: int, deflate: bool, stop: asyncio.Future[None]) -> None:
    from websockets.asyncio.server import ServerConnection, serve

    from sessionpush.gateway.protocol import (
        End,
        Event,
        Hello,
        ProtocolError,
        decode_batch,
        decode_frame,
        is_batch,
    )

    encode = msgspec.json.Encoder().encode

    async def handler(ws: ServerConnection) -> None:
        async for data in ws:
            try:
                if is_batch(data):
                    events = decode_batch(data)
                    top = max(
                        (e.seq for e in events if e.seq is not None), default=None
                    )
                    await ws.send(encode({"type": "ack", "seq": top}).decode())
                    continue
                frame = decode_frame(data)
            except ProtocolError as exc:
                await ws.send(encode({"type": "error", "code": exc.code}).decode())
                continue
            if isinstance(frame, Event):
                await ws.send(encode({"type": "ack", "seq": frame.seq}).decode())
            elif isinstance(frame, Hello):
                welcome = {"type": "welcome", "session": os.urandom(16).hex()}
                await ws.send(encode(welcome).decode())
            elif isinstance(frame, End):
                await ws.close(1000)

    async with serve(
        handler,
        HOST,
        port,
        max_size=64 * 1024,
        compression="deflate" if deflate else None,
        ping_interval=30,
        ping_timeout=30,
        backlog=4096,
    ):
        await stop


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="a benchmark server")
    parser.add_argument("kind", choices=("sessionpush", "baseline"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--deflate", action="store_true")
    parser.add_argument("--lifetime", type=float, default=300.0)
    args = parser.parse_args(argv)
    raise_open_files()
    # The bound on a server's life: the parent stops it long before this.
    signal.alarm(max(1, int(args.lifetime)))
    if args.kind == "sessionpush":
        _serve_sessionpush(args.port, args.dir, args.deflate)
        return

    import uvloop

    async def run() -> None:
        loop = asyncio.get_running_loop()
        stop: asyncio.Future[None] = loop.create_future()
        loop.add_signal_handler(signal.SIGTERM, stop.set_result, None)
        await _baseline(args.port, args.deflate, stop)

    uvloop.run(run())


if __name__ == "__main__":
    main()
