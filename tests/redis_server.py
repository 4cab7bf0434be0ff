"""A private redis-server on a free loopback port, for tests and benchmarks.

Never the Redis an operator runs on 6379: each server gets its own port and
its own directory, and is stopped by the process that started it.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis

__all__ = ["RedisServer", "free_port"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """``redis-server`` in ``directory``; ``aof`` turns on the append-only
    file with an fsync every second, as docs/deploy.md recommends."""

    def __init__(self, directory: Path, *, aof: bool = False) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(
                "redis-server is not installed; the Redis store tests need it: "
                "apt-get install -y redis-server (.ci/run does this)"
            )
        self.binary = binary
        self.directory = directory
        self.aof = aof
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.directory),
            "--save",
            "",
            "--appendonly",
            "yes" if self.aof else "no",
            "--appendfsync",
            "everysec",
            "--logfile",
            str(self.directory / "redis.log"),
        ]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        try:
            while True:
                if self.process.poll() is not None:
                    log = (self.directory / "redis.log").read_text()
                    raise RuntimeError(f"redis-server exited:\n{log}")
                try:
                    if client.ping():
                        # Loading an AOF answers LOADING until done.
                        return self
                except redis.exceptions.RedisError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def kill(self) -> None:
        """SIGKILL: no shutdown save, no last fsync."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None
