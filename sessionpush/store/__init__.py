"""Durable state: the :class:`Store` interface, its records and a factory.

:func:`open_store` turns the ``--store`` setting into a store object::

    store = open_store("sqlite:///var/lib/sessionpush/state.db")
    store = open_store("redis://127.0.0.1:6379/0")
    store = open_store("redis+cluster://10.0.0.1:7000,10.0.0.2:7000")
    await store.open()
"""

from __future__ import annotations

from urllib.parse import urlsplit

from sessionpush.store.base import (
    Claim,
    Decision,
    DeliveryOutcome,
    Device,
    ErasureReport,
    GoalEvent,
    PendingTimer,
    SentMessage,
    Store,
    StoredRules,
    Subscription,
    UserProfile,
)
from sessionpush.store.errors import StoreError
from sessionpush.store.sqlite import SQLiteStore

__all__ = [
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

_ACCEPTED = (
    "a file path, 'sqlite:///relative/path.db', 'sqlite:////absolute/path.db', "
    "':memory:' or 'sqlite://:memory:'; or 'redis://HOST:PORT/DB' (one Redis) "
    "or 'redis+cluster://HOST:PORT[,HOST:PORT...]' (a Redis Cluster) to share "
    "state between processes"
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
            - ``sqlite://:memory:`` (or ``sqlite:///:memory:``);
            - ``redis://[:PASSWORD@]HOST:PORT/DB`` or ``rediss://...`` (TLS),
              with optional ``?prefix=sp&shards=8``: the shared store of
              several gateway processes (:class:`RedisStore`) on one Redis;
            - ``redis+cluster://[[USER]:PASSWORD@]HOST:PORT[,HOST:PORT...]``
              or ``rediss+cluster://...`` (TLS), with the same optional
              query: the same store on a Redis Cluster. Name one node or
              several (any that answers gives the client the map of the
              others); the path is empty or ``/0``, the only database of a
              cluster. Use at least as many ``shards`` as primaries.

    Returns:
        The store; call ``await store.open()`` before using it.

    Raises:
        StoreError: The URL is none of the accepted forms, or a Redis one
            with a bad setting (``shards``, a cluster node, a database other
            than 0 on a cluster).
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
    if scheme in ("redis", "rediss", "redis+cluster", "rediss+cluster"):
        from sessionpush.store.redis import RedisStore

        return RedisStore(url)
    raise StoreError(f"unknown store {_redact(url)!r}: the store is {_ACCEPTED}")


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
