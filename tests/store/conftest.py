"""Fixtures for the store tests: opened stores of every kind."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis

from sessionpush.store.base import Store
from sessionpush.store.redis import RedisStore
from sessionpush.store.sqlite import SQLiteStore
from tests.redis_server import RedisServer


@pytest.fixture(params=["sqlite-memory", "sqlite-file", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """An open, empty store; every contract test runs on each kind."""
    opened: Store
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        with redis.Redis(port=server.port) as client:
            client.flushdb()
        # Three shards, not one, so that a test spanning users spans shards.
        opened = RedisStore(f"{server.url}?shards=3")
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
