"""open_store turns a setting into a store, and the package's public names."""

from __future__ import annotations

from pathlib import Path

import pytest

import sessionpush.store
from sessionpush.store import StoreError, open_store
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


@pytest.mark.parametrize("url", ["redis://localhost:6379/0", "rediss://cache:6380"])
def test_a_redis_url_says_the_redis_store_is_not_available_yet(url: str) -> None:
    with pytest.raises(StoreError, match="Redis store is not available yet"):
        open_store(url)


def test_an_unknown_scheme_names_the_value_and_the_accepted_forms() -> None:
    with pytest.raises(StoreError) as caught:
        open_store("postgres://db/sessionpush")

    text = str(caught.value)
    assert "'postgres://db/sessionpush'" in text
    assert "sqlite:///relative/path.db" in text
    assert "':memory:'" in text


def test_a_password_in_a_refused_url_is_not_repeated() -> None:
    with pytest.raises(StoreError) as caught:
        open_store("redis://admin:hunter2@localhost:6379")

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
        "Decision",
        "DeliveryOutcome",
        "Device",
        "ErasureReport",
        "PendingTimer",
        "SentMessage",
        "Store",
        "StoreError",
        "Subscription",
        "UserProfile",
        "open_store",
    ]
    for name in sessionpush.store.__all__:
        assert hasattr(sessionpush.store, name)
