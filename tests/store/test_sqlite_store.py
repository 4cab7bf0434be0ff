"""What only the SQLite store does: its file, its schema, its SQL paths."""

from __future__ import annotations

import inspect
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from sessionpush.dsl import load_ruleset
from sessionpush.replay import run as replay_run
from sessionpush.replay.formats import load_events
from sessionpush.store import sqlite as sqlite_module
from sessionpush.store.base import Device, Store
from sessionpush.store.errors import StoreError
from sessionpush.store.sqlite import SQLiteStore
from tests.store.records import timer


@pytest.fixture(params=["sqlite-memory", "sqlite-file"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[SQLiteStore]:
    """An open, empty SQLite store: the SQL paths here are SQLite's only."""
    path = ":memory:" if request.param == "sqlite-memory" else str(tmp_path / "s.db")
    opened = SQLiteStore(path)
    await opened.open()
    yield opened
    await opened.close()


@pytest.fixture(params=[True, False], ids=["returning", "select-delete"])
def returning(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run a test with DELETE ... RETURNING and with the fallback for SQLite
    older than 3.35, whichever library this Python is linked with."""
    monkeypatch.setattr(sqlite_module, "_HAS_RETURNING", request.param)


def test_the_sqlite_store_satisfies_the_store_protocol() -> None:
    store: Store = SQLiteStore(":memory:")  # mypy checks the assignment
    assert isinstance(store, SQLiteStore)


async def test_a_device_seen_again_replaces_its_stored_fields(db_path: str) -> None:
    store = SQLiteStore(db_path)
    await store.open()
    await store.upsert_device(
        Device(
            app="shop",
            user="u1",
            device_id="d1",
            platform="web",
            timezone="UTC",
            lang="en",
            app_version="1.0",
            last_seen=10.0,
        )
    )
    await store.upsert_device(
        Device(
            app="shop",
            user="u1",
            device_id="d1",
            platform="ios",
            timezone="Europe/Oslo",
            lang=None,
            app_version="2.0",
            last_seen=20.0,
        )
    )
    await store.close()

    # The Store interface has no way to list devices; read the table itself.
    conn = sqlite3.connect(db_path)
    try:
        rows = conn.execute(
            "SELECT app, user, device_id, platform, timezone, lang, app_version,"
            " last_seen FROM devices"
        ).fetchall()
    finally:
        conn.close()
    assert rows == [("shop", "u1", "d1", "ios", "Europe/Oslo", None, "2.0", 20.0)]


@pytest.mark.usefixtures("returning")
async def test_a_timer_is_claimed_once(store: SQLiteStore) -> None:
    t = timer("t1", context={"cart": ["sku-1"]})
    await store.add_timer(t)

    assert await store.claim_timer("t1") == t
    assert await store.claim_timer("t1") is None
    assert await store.pending_timers() == []


@pytest.mark.usefixtures("returning")
async def test_claiming_an_unknown_timer_returns_none(store: SQLiteStore) -> None:
    await store.add_timer(timer("t1"))

    assert await store.claim_timer("nope") is None
    assert len(await store.pending_timers()) == 1


@pytest.mark.usefixtures("returning")
async def test_cancel_removes_the_rule_timers_triggered_at_or_before_the_time(
    store: SQLiteStore,
) -> None:
    before = timer("before", triggered_at=50.0, due=900.0)
    at_the_time = timer("at", triggered_at=100.0, due=800.0)
    after = timer("after", triggered_at=150.0)
    other_rule = timer("other-rule", rule="winback", triggered_at=50.0)
    other_user = timer("other-user", user="u2", triggered_at=50.0)
    other_app = timer("other-app", app="blog", triggered_at=50.0)
    for t in (before, at_the_time, after, other_rule, other_user, other_app):
        await store.add_timer(t)

    cancelled = await store.cancel_timers("shop", "u1", "cart", 100.0)

    assert cancelled == [at_the_time, before]  # earliest due first
    remaining = {t.timer_id for t in await store.pending_timers()}
    assert remaining == {"after", "other-rule", "other-user", "other-app"}


@pytest.mark.usefixtures("returning")
async def test_a_cancelled_timer_cannot_be_claimed(store: SQLiteStore) -> None:
    await store.add_timer(timer("t1"))
    await store.cancel_timers("shop", "u1", "cart", 1e12)

    assert await store.claim_timer("t1") is None


@pytest.mark.usefixtures("returning")
async def test_cancelling_when_nothing_matches_returns_an_empty_list(
    store: SQLiteStore,
) -> None:
    await store.add_timer(timer("t1", triggered_at=200.0))

    assert await store.cancel_timers("shop", "u1", "cart", 100.0) == []
    assert len(await store.pending_timers()) == 1


async def test_a_store_that_was_never_opened_says_to_open_it() -> None:
    store = SQLiteStore(":memory:")

    with pytest.raises(StoreError, match=r"not open: await store\.open\(\) first"):
        await store.get_user("shop", "u1")


async def test_a_closed_store_refuses_to_work() -> None:
    store = SQLiteStore(":memory:")
    await store.open()
    await store.close()

    with pytest.raises(StoreError, match="not open"):
        await store.add_timer(timer("t1"))


async def test_opening_and_closing_twice_is_harmless(db_path: str) -> None:
    store = SQLiteStore(db_path)
    await store.open()
    await store.add_timer(timer("t1"))
    await store.open()

    assert len(await store.pending_timers()) == 1
    await store.close()
    await store.close()


async def test_a_file_store_runs_in_wal_mode_with_the_current_schema_version(
    db_path: str,
) -> None:
    store = SQLiteStore(db_path)
    await store.open()
    await store.close()

    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("PRAGMA user_version").fetchone() == (
            sqlite_module.SCHEMA_VERSION,
        )
    finally:
        conn.close()


async def test_a_schema_version_newer_than_the_code_is_refused(db_path: str) -> None:
    store = SQLiteStore(db_path)
    await store.open()
    await store.close()
    conn = sqlite3.connect(db_path)
    conn.execute(f"PRAGMA user_version={sqlite_module.SCHEMA_VERSION + 1}")
    conn.close()

    newer = SQLiteStore(db_path)
    with pytest.raises(StoreError) as caught:
        await newer.open()

    text = str(caught.value)
    assert f"schema version {sqlite_module.SCHEMA_VERSION + 1}" in text
    assert f"knows versions up to {sqlite_module.SCHEMA_VERSION}" in text
    assert "upgrade sessionpush" in text
    with pytest.raises(StoreError, match="not open"):
        await newer.pending_timers()


async def test_a_database_of_another_program_is_refused(db_path: str) -> None:
    conn = sqlite3.connect(db_path)
    conn.execute("CREATE TABLE invoices (id INTEGER)")
    conn.close()

    with pytest.raises(
        StoreError, match=r"holds tables \(invoices\).*not a sessionpush"
    ):
        await SQLiteStore(db_path).open()


async def test_a_file_that_is_not_a_database_is_refused(db_path: str) -> None:
    with open(db_path, "wb") as garbage:
        garbage.write(b"this is a text file, not SQLite\n" * 200)

    with pytest.raises(StoreError, match="not a usable SQLite database") as caught:
        await SQLiteStore(db_path).open()
    assert isinstance(caught.value.__cause__, sqlite3.DatabaseError)


async def test_a_memory_store_starts_empty_after_reopening() -> None:
    store = SQLiteStore(":memory:")
    await store.open()
    await store.add_timer(timer("t1"))
    await store.close()

    await store.open()
    assert await store.pending_timers() == []
    await store.close()


async def test_a_version_1_file_migrates_and_keeps_its_subscriptions(
    db_path: str,
) -> None:
    conn = sqlite3.connect(db_path)
    for statement in sqlite_module._MIGRATIONS[0]:
        conn.execute(statement)
    conn.execute(
        "INSERT INTO subscriptions (app, user, device_id, channel, data, created_at)"
        " VALUES ('shop', 'u1', 'iphone-15', 'apns', '{\"token\":\"a3f1\"}', 1.0)"
    )
    conn.execute("PRAGMA user_version=1")
    conn.commit()
    conn.close()

    store = SQLiteStore(db_path)
    await store.open()
    try:
        (kept,) = await store.subscriptions("shop", "u1")
        assert kept.address == "a3f1"
        assert await store.claim_send("k", "m1", 1.0) is None
    finally:
        await store.close()


class _InlineOnly:
    """The store, with every coroutine method driven by hand: a call that
    would wait fails the test instead."""

    def __init__(self, path: str) -> None:
        self.store = SQLiteStore(path)
        self.calls: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.store, name)
        if not inspect.iscoroutinefunction(method):
            return method

        async def call(*args: Any, **kwargs: Any) -> Any:
            coro = method(*args, **kwargs)
            try:
                coro.send(None)
            except StopIteration as done:
                self.calls.add(name)
                return done.value
            coro.close()
            raise AssertionError(f"SQLiteStore.{name} waited on something")

        return call


async def test_no_call_of_the_engine_waits_so_frames_can_be_handled_inline(
    monkeypatch: pytest.MonkeyPatch, data_dir: Path
) -> None:
    # The gateway handles frames without a task when store.inline is True
    # (gateway/eager.py); this replays real sessions through the engine
    # with the example rules to hold SQLiteStore to that.
    made: list[_InlineOnly] = []

    def inline_only(path: str) -> _InlineOnly:
        made.append(_InlineOnly(path))
        return made[-1]

    monkeypatch.setattr(replay_run, "SQLiteStore", inline_only)
    rules = load_ruleset([str(Path(__file__).parents[2] / "examples" / "rules")])
    events = load_events(data_dir / "rees46-2019oct-head.csv", "rees46")
    decisions = await replay_run.replay_in_process(rules, events)
    assert SQLiteStore.inline is True
    assert len(decisions) > 0
    # The engine's whole path was exercised: sessions, sends and timers.
    assert {"upsert_device", "record_decision", "add_timer"} <= made[0].calls
