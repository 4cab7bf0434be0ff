"""Fixtures for the store tests: opened stores of every kind."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis

from sessionpush.store.base import Store
from sessionpush.store.redis import RedisStore
from sessionpush.store.sqlite import SQLiteStore
from tests.redis_server import RedisClusterServers, RedisServer

_CLUSTER_PREFIXES = itertools.count()


@pytest.fixture(params=["sqlite-memory", "sqlite-file", "redis", "redis-cluster"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """An open, empty store; every contract test runs on each kind."""
    opened: Store
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        with redis.Redis(port=server.port) as client:
            client.flushdb()
        # Three shards, not one, so that a test spanning users spans shards.
        opened = RedisStore(f"{server.url}?shards=3")
    elif request.param == "redis-cluster":
        cluster: RedisClusterServers = request.getfixturevalue("redis_cluster")
        cluster.flush()
        # Three shards on three primaries: {t:0}, {t:1} and {t:2} hash to
        # slots 6341, 2276 and 14471 (the prefix is outside the tag), one in
        # each third redis-cli gives a node, so a test's timers span nodes.
        # A prefix of its own per test: a rule-set announcement of the test
        # before may still be crossing the cluster bus, and must not reach
        # this test's watcher.
        prefix = f"sp{next(_CLUSTER_PREFIXES)}"
        opened = RedisStore(f"{cluster.url}?shards=3&prefix={prefix}")
    elif request.param == "sqlite-memory":
        opened = SQLiteStore(":memory:")
    else:
        opened = SQLiteStore(str(tmp_path / "state.db"))
    await opened.open()
    yield opened
    await opened.close()


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    """Where a file store lives for tests that open it more than once."""
    return str(tmp_path / "state.db")
