"""Fixtures for the store tests: opened stores, in memory and on disk."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sessionpush.store.sqlite import SQLiteStore


@pytest.fixture(params=["memory", "file"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[SQLiteStore]:
    """An open store; every behaviour test runs in memory and on a file."""
    path = ":memory:" if request.param == "memory" else str(tmp_path / "state.db")
    opened = SQLiteStore(path)
    await opened.open()
    yield opened
    await opened.close()


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    """Where a file store lives for tests that open it more than once."""
    return str(tmp_path / "state.db")
