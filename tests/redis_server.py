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

__all__ = ["RedisClusterServers", "RedisServer", "free_cluster_port", "free_port"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def free_cluster_port() -> int:
    """A free port whose cluster bus port (10,000 higher, as Redis Cluster
    takes it) is free too; so at most 55,535."""
    for _ in range(200):
        port = free_port()
        if port > 55535:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free pair of ports for a Redis Cluster node")


class RedisServer:
    """``redis-server`` in ``directory``; ``aof`` turns on the append-only
    file with an fsync every second, as docs/deploy.md recommends;
    ``cluster`` starts a node of a Redis Cluster (see
    :class:`RedisClusterServers`)."""

    def __init__(
        self, directory: Path, *, aof: bool = False, cluster: bool = False
    ) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(
                "redis-server is not installed; the Redis store tests need it: "
                "apt-get install -y redis-server (.ci/run does this)"
            )
        self.binary = binary
        self.directory = directory
        self.aof = aof
        self.cluster = cluster
        self.port = free_cluster_port() if cluster else free_port()
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
        if self.cluster:
            # nodes.conf goes to --dir, one per node.
            args += ["--cluster-enabled", "yes", "--cluster-node-timeout", "5000"]
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


class RedisClusterServers:
    """``count`` redis-server processes joined into one Redis Cluster, each
    a primary with its share of the 16,384 slots (no replicas: the tests
    exercise slot routing, not failover)."""

    def __init__(self, directory: Path, count: int = 3) -> None:
        self.directory = directory
        self.nodes = [
            RedisServer(directory / f"node-{i}", cluster=True) for i in range(count)
        ]

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    @property
    def url(self) -> str:
        """The store URL naming every node, as an operator would."""
        seeds = ",".join(f"127.0.0.1:{port}" for port in self.ports)
        return f"redis+cluster://{seeds}"

    def start(self) -> RedisClusterServers:
        cli = shutil.which("redis-cli")
        if cli is None:
            raise RuntimeError(
                "redis-cli is not installed; the Redis Cluster tests need it to "
                "create the cluster: apt-get install -y redis-tools (.ci/run "
                "does this)"
            )
        try:
            for node in self.nodes:
                node.start()
            created = subprocess.run(
                [
                    cli,
                    "--cluster",
                    "create",
                    *(f"127.0.0.1:{port}" for port in self.ports),
                    "--cluster-replicas",
                    "0",
                    "--cluster-yes",
                ],
                capture_output=True,
                text=True,
                timeout=30,
            )
            if created.returncode != 0:
                raise RuntimeError(
                    f"redis-cli --cluster create failed:\n{created.stdout}"
                    f"{created.stderr}"
                )
            self._wait_until_ok()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_ok(self) -> None:
        """Until every node says ``cluster_state:ok`` and has a live bus link
        to every other: ``--cluster create`` returns once the slots are
        assigned, before the nodes agree, and a PUBLISH sent over a link
        still connecting reaches the other nodes' subscribers late (a test
        would hear another test's rule set)."""
        deadline = time.monotonic() + 20
        for port in self.ports:
            with redis.Redis(port=port, decode_responses=True) as client:
                while not self._ready(client):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"cluster node {port} never got ready")
                    time.sleep(0.05)

    def _ready(self, client: redis.Redis) -> bool:
        if client.execute_command("CLUSTER", "INFO").find("cluster_state:ok") < 0:
            return False
        lines = client.execute_command("CLUSTER", "NODES").splitlines()
        return len(lines) == len(self.nodes) and all(
            line.split()[7] == "connected" for line in lines
        )

    def flush(self) -> None:
        """Empty every node, so a test starts from a clean keyspace."""
        for port in self.ports:
            with redis.Redis(port=port) as client:
                client.flushall()

    def keys_by_node(self) -> dict[int, list[bytes]]:
        """Every key on each node, by port."""
        found = {}
        for port in self.ports:
            with redis.Redis(port=port) as client:
                found[port] = list(client.scan_iter(count=1000))
        return found

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
