"""open_store turns a setting into a store, and the package's public names."""

from __future__ import annotations

from pathlib import Path

import pytest

import sessionpush.store
from sessionpush.store import StoreError, open_store
from sessionpush.store.redis import RedisStore
from sessionpush.store.sqlite import SQLiteStore


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("state.db", "state.db"),
        ("/var/lib/sessionpush/state.db", "/var/lib/sessionpush/state.db"),
        (":memory:", ":memory:"),
        ("sqlite:///state.db", "state.db"),
        ("sqlite:///data/state.db", "data/state.db"),
        ("sqlite:////var/lib/sessionpush/state.db", "/var/lib/sessionpush/state.db"),
        ("sqlite://:memory:", ":memory:"),
        ("sqlite:///:memory:", ":memory:"),
        ("SQLite:///state.db", "state.db"),
    ],
)
def test_a_path_or_sqlite_url_gives_an_sqlite_store_on_that_path(
    url: str, path: str
) -> None:
    store = open_store(url)

    assert isinstance(store, SQLiteStore)
    assert store.path == path


async def test_the_store_open_store_returns_works_once_opened(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    await store.open()
    await store.set_consent("shop", "u1", False)
    await store.close()

    assert (tmp_path / "state.db").exists()


@pytest.mark.parametrize(
    ("url", "prefix", "shards"),
    [
        ("redis://127.0.0.1:6390/0", "sp", 8),
        ("rediss://127.0.0.1:6391", "sp", 8),
        ("redis://127.0.0.1:6390/2?prefix=shop&shards=16", "shop", 16),
    ],
)
def test_a_redis_url_gives_a_redis_store_with_its_prefix_and_shards(
    url: str, prefix: str, shards: int
) -> None:
    store = open_store(url)

    assert isinstance(store, RedisStore)
    assert (store.keys.prefix, store.keys.shards) == (prefix, shards)


@pytest.mark.parametrize("shards", ["0", "-2", "many"])
def test_a_redis_url_with_a_bad_shard_count_says_what_it_expects(shards: str) -> None:
    with pytest.raises(StoreError, match="expected a whole number of timer queues"):
        open_store(f"redis://127.0.0.1:6390/0?shards={shards}")


async def test_an_unreachable_redis_is_refused_with_where_and_how_to_fix() -> None:
    from tests.e2e.servers import free_port

    store = open_store(f"redis://:secret@127.0.0.1:{free_port()}/0")

    with pytest.raises(StoreError, match="cannot reach Redis at redis://127") as caught:
        await store.open()
    assert "start redis-server" in str(caught.value)
    assert "secret" not in str(caught.value)


def test_an_unknown_scheme_names_the_value_and_the_accepted_forms() -> None:
    with pytest.raises(StoreError) as caught:
        open_store("postgres://db/sessionpush")

    text = str(caught.value)
    assert "'postgres://db/sessionpush'" in text
    assert "sqlite:///relative/path.db" in text
    assert "':memory:'" in text


def test_a_password_in_a_refused_url_is_not_repeated() -> None:
    with pytest.raises(StoreError) as caught:
        open_store("memcached://admin:hunter2@localhost:6379")

    assert "hunter2" not in str(caught.value)
    assert "admin:***@localhost" in str(caught.value)


@pytest.mark.parametrize("url", ["", "sqlite://", "sqlite:///"])
def test_a_setting_without_a_database_is_refused(url: str) -> None:
    with pytest.raises(StoreError, match="expected a file path"):
        open_store(url)


def test_the_package_exports_the_interface_the_factory_the_error_and_the_records() -> (
    None
):
    assert sorted(sessionpush.store.__all__) == [
        "Claim",
        "Decision",
        "DeliveryOutcome",
        "Device",
        "ErasureReport",
        "GoalEvent",
        "PendingTimer",
        "SentMessage",
        "Store",
        "StoreError",
        "StoredRules",
        "Subscription",
        "UserProfile",
        "open_store",
    ]
    for name in sessionpush.store.__all__:
        assert hasattr(sessionpush.store, name)
