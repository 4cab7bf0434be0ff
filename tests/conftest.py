"""Shared fixtures: where the shared real data sets live, and a private
redis-server and Redis Cluster for the Redis store."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.exceptions import RedisError

from tests.redis_server import RedisClusterServers, RedisServer

# The data sets are not ours to ship (see ../shared/data/README.md), so they
# stay beside the project and the tests read them in place.
_DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared data directory; SESSIONPUSH_DATA overrides the default."""
    path = Path(os.environ.get("SESSIONPUSH_DATA", _DEFAULT_DATA)).resolve()
    if not path.is_dir():
        pytest.fail(f"real data sets not found at {path}: set SESSIONPUSH_DATA")
    return path


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server on a free port for the whole run.

    Fails (never skips) when redis-server is missing: the Redis store is
    part of the product and CI installs the server.
    """
    try:
        server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RedisClusterServers]:
    """One Redis Cluster of three primaries on free ports for the whole run
    (about two seconds to start); tests empty it before use.

    Fails (never skips) when redis-server or redis-cli is missing, as
    :func:`redis_server` does.
    """
    try:
        cluster = RedisClusterServers(tmp_path_factory.mktemp("cluster")).start()
    except (RuntimeError, OSError, subprocess.SubprocessError, RedisError) as exc:
        pytest.fail(f"cannot start a Redis Cluster: {exc}")
    yield cluster
    cluster.stop()
