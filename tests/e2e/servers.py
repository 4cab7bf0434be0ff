"""Start ``sessionpush serve`` as a real subprocess on a free loopback port."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.redis_server import free_port

__all__ = ["Served", "free_port", "serve", "start_serve"]


class Served:
    """One running ``sessionpush serve`` process."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.process = process
        self.port = port
        self.log = log

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        """SIGKILL: no shutdown, no cleanup, claims left as they are."""
        self.process.kill()
        self.process.wait()


def start_serve(*args: str, cwd: Path) -> Served:
    """Start ``sessionpush serve ARGS`` and wait until it answers /healthz."""
    port = free_port()
    log_path = cwd / "serve.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "sessionpush", "serve", "--port", str(port), *args],
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    served = Served(process, port, log_path)
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise RuntimeError(
                f"serve exited with {process.returncode}:\n" + log_path.read_text()
            )
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return served
        except OSError:
            if time.monotonic() > deadline:
                served.stop()
                raise
            time.sleep(0.1)


@contextmanager
def serve(*args: str, cwd: Path) -> Iterator[int]:
    """Run ``sessionpush serve ARGS`` until the block ends; yields the port."""
    served = start_serve(*args, cwd=cwd)
    try:
        yield served.port
    finally:
        served.stop()
