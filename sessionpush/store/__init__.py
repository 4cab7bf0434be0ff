"""Durable state: the :class:`Store` interface, its records and a factory.

:func:`open_store` turns the ``--store`` setting into a store object::

    store = open_store("sqlite:///var/lib/sessionpush/state.db")
    await store.open()
"""

from __future__ import annotations

from urllib.parse import urlsplit

from sessionpush.store.base import (
    Decision,
    DeliveryOutcome,
    Device,
    ErasureReport,
    PendingTimer,
    SentMessage,
    Store,
    Subscription,
    UserProfile,
)
from sessionpush.store.errors import StoreError
from sessionpush.store.sqlite import SQLiteStore

__all__ = [
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

_ACCEPTED = (
    "a file path, 'sqlite:///relative/path.db', 'sqlite:////absolute/path.db', "
    "':memory:' or 'sqlite://:memory:'"
)


def open_store(url: str) -> Store:
    """The store a URL or path names, not yet opened.

    Args:
        url: One of

            - a plain file path (``state.db``, ``/var/lib/sp/state.db``) or
              ``:memory:``;
            - ``sqlite:///PATH``, where ``PATH`` is everything after the
              third slash, so ``sqlite:///state.db`` is relative and
              ``sqlite:////var/lib/sp/state.db`` absolute (as SQLAlchemy
              reads them);
            - ``sqlite://:memory:`` (or ``sqlite:///:memory:``).

    Returns:
        The store; call ``await store.open()`` before using it.

    Raises:
        StoreError: The URL names the Redis store, which is not available
            yet, or is none of the accepted forms.
    """
    if "://" not in url:
        if not url:
            raise StoreError(f"the store URL is empty; expected {_ACCEPTED}")
        return SQLiteStore(url)

    scheme, _, rest = url.partition("://")
    scheme = scheme.lower()
    if scheme == "sqlite":
        path = rest.removeprefix("/") if rest != ":memory:" else rest
        if not path:
            raise StoreError(
                f"the store URL {url!r} names no database file; expected {_ACCEPTED}"
            )
        return SQLiteStore(path)
    if scheme in ("redis", "rediss"):
        raise StoreError(
            f"the Redis store is not available yet ({_redact(url)!r}); use the "
            f"embedded SQLite store: {_ACCEPTED}"
        )
    raise StoreError(
        f"unknown store {_redact(url)!r}: the store is {_ACCEPTED} "
        f"(a Redis store will come later)"
    )


def _redact(url: str) -> str:
    """The URL with its password hidden, since it ends up in logs."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url
    if not password:
        return url
    netloc = parts.netloc.replace(f":{password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
