"""The embedded store: one SQLite file, the default for a single process.

A file store runs in WAL mode (readers never block the one writer, and a
commit is one append to the log) with ``synchronous=NORMAL``: in WAL mode
that can lose the last commits on a power cut but never corrupts the file,
which is the trade SQLite itself recommends for WAL. ``":memory:"`` gives a
private, throw-away database for replays and tests.

The methods are ``async`` to match :class:`~sessionpush.store.base.Store` but
call :mod:`sqlite3` directly on the event loop thread, with one connection
per store. Every call is a local, indexed, sub-millisecond statement, so a
thread hop per call would cost more than it saves. The exception is lock
contention with *another* process writing the same file: a call then waits
up to ``busy_timeout`` seconds, blocking the loop. Several processes should
share state through the Redis store instead.

Because no method awaits between its first and last statement, calls from
concurrent tasks never interleave inside a transaction. Every write runs in
``BEGIN IMMEDIATE``: the write lock is taken before the first read, so a
read-then-write step (``cap_take``, ``set_user_attributes``) is atomic
across connections and processes, and SQLite's busy handler, not an
``SQLITE_BUSY`` error, decides who waits.

The schema version lives in ``PRAGMA user_version``. :meth:`SQLiteStore.open`
creates the tables in a new file, migrates an older one step by step, and
refuses a file written by a newer sessionpush.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import msgspec

from sessionpush.store.base import (
    Claim,
    Decision,
    DeliveryOutcome,
    Device,
    ErasureReport,
    GoalEvent,
    PendingTimer,
    SentMessage,
    StoredRules,
    Subscription,
    UserProfile,
    send_key_prefix,
    user_cap_prefix,
)
from sessionpush.store.errors import StoreError

__all__ = ["SCHEMA_VERSION", "SQLiteStore"]

logger = logging.getLogger("sessionpush.store")


def _where(**equal: str | None) -> tuple[str, list[str]]:
    """A WHERE clause testing each given column for equality, and its
    parameters; columns given as None are not tested."""
    used = {column: value for column, value in equal.items() if value is not None}
    if not used:
        return "", []
    tests = " AND ".join(f"{column} = ?" for column in used)
    return f" WHERE {tests}", list(used.values())


SCHEMA_VERSION = 4
"""The newest schema this code knows; ``open()`` refuses anything newer."""

# UPSERT (ON CONFLICT ... DO UPDATE) arrived in SQLite 3.24.0; RETURNING in
# 3.35.0. Older libraries than 3.35 are still shipped by some distributions
# (Debian 11 has 3.34.1), so RETURNING is used when present and replaced by
# a SELECT then DELETE inside the same IMMEDIATE transaction otherwise.
_MIN_SQLITE = (3, 24, 0)
_HAS_RETURNING = sqlite3.sqlite_version_info >= (3, 35, 0)

# _MIGRATIONS[n] takes a database from schema version n to n + 1.
#
# Rows that are listed back in insertion order (timers, subscriptions,
# decisions) carry an explicit INTEGER PRIMARY KEY: the implicit rowid of a
# table without one may be renumbered by VACUUM, which would reorder them.
# So ``timer_id`` is UNIQUE rather than the primary key; it is looked up
# through that index exactly as it would be through a primary key.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """
        CREATE TABLE users (
            app TEXT NOT NULL,
            user TEXT NOT NULL,
            attributes TEXT NOT NULL DEFAULT '{}',
            timezone TEXT NOT NULL DEFAULT 'UTC',
            consent INTEGER NOT NULL DEFAULT 1,
            PRIMARY KEY (app, user)
        )
        """,
        """
        CREATE TABLE devices (
            app TEXT NOT NULL,
            user TEXT NOT NULL,
            device_id TEXT NOT NULL,
            platform TEXT NOT NULL,
            timezone TEXT NOT NULL,
            lang TEXT,
            app_version TEXT,
            last_seen REAL NOT NULL,
            PRIMARY KEY (app, user, device_id)
        )
        """,
        """
        CREATE TABLE subscriptions (
            id INTEGER PRIMARY KEY,
            app TEXT NOT NULL,
            user TEXT NOT NULL,
            device_id TEXT NOT NULL,
            channel TEXT NOT NULL,
            data TEXT NOT NULL,
            created_at REAL NOT NULL,
            UNIQUE (app, user, device_id, channel)
        )
        """,
        """
        CREATE TABLE cap_events (
            key TEXT NOT NULL,
            at REAL NOT NULL
        )
        """,
        "CREATE INDEX cap_events_key_at ON cap_events (key, at)",
        """
        CREATE TABLE suppressions (
            app TEXT NOT NULL,
            user TEXT NOT NULL,
            rule TEXT NOT NULL,
            at REAL NOT NULL,
            PRIMARY KEY (app, user, rule)
        )
        """,
        """
        CREATE TABLE timers (
            seq INTEGER PRIMARY KEY,
            timer_id TEXT NOT NULL UNIQUE,
            app TEXT NOT NULL,
            user TEXT NOT NULL,
            session TEXT NOT NULL,
            rule TEXT NOT NULL,
            due REAL NOT NULL,
            triggered_at REAL NOT NULL,
            context TEXT NOT NULL
        )
        """,
        "CREATE INDEX timers_due ON timers (due, seq)",
        "CREATE INDEX timers_user_rule ON timers (app, user, rule)",
        """
        CREATE TABLE decisions (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            app TEXT NOT NULL,
            rule TEXT NOT NULL,
            user TEXT NOT NULL,
            session TEXT NOT NULL,
            decision TEXT NOT NULL,
            reason TEXT NOT NULL,
            at REAL NOT NULL,
            channel TEXT NOT NULL,
            triggered_at REAL NOT NULL,
            message TEXT
        )
        """,
        "CREATE INDEX decisions_app_user ON decisions (app, user)",
    ),
    (
        # Delivery: disabled subscriptions stay (with why) so that an
        # operator can see them; idempotency keys, sent messages (for click
        # redirects) and the outcome log.
        "ALTER TABLE subscriptions ADD COLUMN disabled TEXT",
        """
        CREATE TABLE send_keys (
            key TEXT PRIMARY KEY,
            message_id TEXT NOT NULL,
            at REAL NOT NULL
        )
        """,
        """
        CREATE TABLE messages (
            id TEXT PRIMARY KEY,
            app TEXT NOT NULL,
            user TEXT NOT NULL,
            rule TEXT NOT NULL,
            channel TEXT NOT NULL,
            at REAL NOT NULL,
            link TEXT
        )
        """,
        """
        CREATE TABLE outcomes (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            message_id TEXT NOT NULL,
            app TEXT NOT NULL,
            user TEXT NOT NULL,
            rule TEXT NOT NULL,
            channel TEXT NOT NULL,
            outcome TEXT NOT NULL,
            at REAL NOT NULL,
            device_id TEXT,
            reason TEXT NOT NULL,
            retry_at REAL
        )
        """,
        "CREATE INDEX outcomes_message ON outcomes (message_id)",
    ),
    (
        # Claims with a lease and a fencing token (claim_due, finish), a
        # send id per cap slot so that a timer fired again keeps its slot,
        # and the rule sets saved through PUT /v1/rules.
        "ALTER TABLE timers ADD COLUMN claim_token INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE timers ADD COLUMN lease_until REAL",
        "ALTER TABLE cap_events ADD COLUMN send_id TEXT",
        "CREATE INDEX cap_events_send ON cap_events (send_id, key)",
        """
        CREATE TABLE rulesets (
            version INTEGER PRIMARY KEY,
            source TEXT NOT NULL,
            saved_at REAL NOT NULL
        )
        """,
    ),
    (
        # Goal events, for conversion reports.
        """
        CREATE TABLE goals (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            app TEXT NOT NULL,
            rule TEXT NOT NULL,
            user TEXT NOT NULL,
            session TEXT NOT NULL,
            at REAL NOT NULL
        )
        """,
        "CREATE INDEX goals_app_rule ON goals (app, rule, user, at)",
    ),
)
assert len(_MIGRATIONS) == SCHEMA_VERSION  # a bug in this file, not user input

_TIMER_COLUMNS = "seq, timer_id, app, user, session, rule, due, triggered_at, context"
_OUTCOME_COLUMNS = (
    "message_id, app, user, rule, channel, outcome, at, device_id, reason, retry_at"
)
_DECISION_COLUMNS = (
    "app, rule, user, session, decision, reason, at, channel, triggered_at, message"
)


class SQLiteStore:
    """The :class:`~sessionpush.store.base.Store` in one SQLite file.

    Args:
        path: The database file, created if missing, or ``":memory:"`` for
            a private in-memory database that is lost on :meth:`close`.
        busy_timeout: How many seconds a write waits for another connection
            to the same file to release its lock before failing with
            :class:`StoreError`.

    Create it, ``await store.open()``, use it, ``await store.close()``.
    Any method but :meth:`open` and :meth:`close` on a store that is not
    open raises :class:`StoreError`.
    """

    # Every call runs on the event loop and returns without waiting.
    inline = True

    def __init__(self, path: str, *, busy_timeout: float = 5.0) -> None:
        self._path = path
        self._busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None
        # One SQLite store serves one process, so "every process hears of a
        # new rule set" is every watcher in this one.
        self._rule_watchers: set[asyncio.Queue[int]] = set()

    @property
    def path(self) -> str:
        """The database file, or ``":memory:"``."""
        return self._path

    def __repr__(self) -> str:
        state = "open" if self._conn is not None else "closed"
        return f"SQLiteStore({self._path!r}, {state})"

    # lifecycle

    async def open(self) -> None:
        """Connect, then create, migrate or check the schema.

        Opening an open store does nothing.

        Raises:
            StoreError: The file cannot be opened, is not a sessionpush
                store, or was written by a newer sessionpush.
        """
        if self._conn is not None:
            return
        if sqlite3.sqlite_version_info < _MIN_SQLITE:
            raise StoreError(
                f"the SQLite store needs SQLite >= 3.24.0, but Python is linked "
                f"with {sqlite3.sqlite_version}; use a newer Python build"
            )
        try:
            conn = sqlite3.connect(
                self._path, timeout=self._busy_timeout, isolation_level=None
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open SQLite store {self._path!r}: {exc}") from exc

        try:
            self._configure(conn)
            self._migrate(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        logger.info(
            "opened SQLite store %r (schema version %d)", self._path, SCHEMA_VERSION
        )

    async def close(self) -> None:
        """Close the connection; closing a closed store does nothing."""
        if self._conn is None:
            return
        conn, self._conn = self._conn, None
        try:
            conn.close()
        except sqlite3.Error as exc:
            raise StoreError(
                f"cannot close SQLite store {self._path!r}: {exc}"
            ) from exc

    def _configure(self, conn: sqlite3.Connection) -> None:
        try:
            # An in-memory database answers "memory" and keeps it: fine.
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA busy_timeout={int(self._busy_timeout * 1000)}")
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"{self._path!r} is not a usable SQLite database ({exc}); point "
                f"the store at a sessionpush database or a new file"
            ) from exc

    def _migrate(self, conn: sqlite3.Connection) -> None:
        try:
            # IMMEDIATE so that two processes opening a new file at once
            # create the schema once: the second waits, then sees version 1.
            conn.execute("BEGIN IMMEDIATE")
            try:
                version = self._check_version(conn)
                for step in range(version, SCHEMA_VERSION):
                    for statement in _MIGRATIONS[step]:
                        conn.execute(statement)
                    logger.info(
                        "SQLite store %r: schema version %d -> %d",
                        self._path,
                        step,
                        step + 1,
                    )
                # PRAGMA does not take parameters; the value is our constant.
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                conn.execute("COMMIT")
            except BaseException:
                conn.rollback()
                raise
        except sqlite3.Error as exc:
            raise StoreError(
                f"cannot prepare the schema of SQLite store {self._path!r}: {exc}"
            ) from exc

    def _check_version(self, conn: sqlite3.Connection) -> int:
        version: int = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"SQLite store {self._path!r} has schema version {version}, but "
                f"this sessionpush knows versions up to {SCHEMA_VERSION}: it was "
                f"written by a newer sessionpush; upgrade sessionpush or use "
                f"another file"
            )
        if version == 0:
            tables = conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
            ).fetchall()
            if tables:
                names = ", ".join(sorted(row[0] for row in tables))
                raise StoreError(
                    f"{self._path!r} holds tables ({names}) but no sessionpush "
                    f"schema version: it is not a sessionpush store; point the "
                    f"store at a sessionpush database or a new file"
                )
        return version

    # plumbing

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(
                f"SQLite store {self._path!r} is not open: await store.open() "
                f"first (and do not use it after close())"
            )
        return self._conn

    @contextmanager
    def _write(self, action: str) -> Iterator[sqlite3.Connection]:
        """One write transaction, holding the write lock from its start."""
        conn = self._connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                conn.rollback()
                raise
        except sqlite3.Error as exc:
            raise StoreError(
                f"SQLite store {self._path!r}: cannot {action}: {exc}"
            ) from exc

    def _read(self, action: str, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        conn = self._connection()
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(
                f"SQLite store {self._path!r}: cannot {action}: {exc}"
            ) from exc

    # users, devices, consent, subscriptions

    async def upsert_device(self, device: Device) -> None:
        """Remember a device and make its time zone the user's.

        The user's row is created, with default consent and no attributes,
        if this is the user's first device.
        """
        with self._write("save a device") as conn:
            conn.execute(
                """
                INSERT INTO devices (app, user, device_id, platform, timezone,
                                     lang, app_version, last_seen)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (app, user, device_id) DO UPDATE SET
                    platform = excluded.platform,
                    timezone = excluded.timezone,
                    lang = excluded.lang,
                    app_version = excluded.app_version,
                    last_seen = excluded.last_seen
                """,
                (
                    device.app,
                    device.user,
                    device.device_id,
                    device.platform,
                    device.timezone,
                    device.lang,
                    device.app_version,
                    device.last_seen,
                ),
            )
            conn.execute(
                """
                INSERT INTO users (app, user, timezone) VALUES (?, ?, ?)
                ON CONFLICT (app, user) DO UPDATE SET timezone = excluded.timezone
                """,
                (device.app, device.user, device.timezone),
            )

    async def get_user(self, app: str, user: str) -> UserProfile:
        """The user's profile; an unknown user gets the defaults.

        The defaults are no attributes, ``UTC`` and consent granted.
        """
        rows = self._read(
            "read a user",
            "SELECT attributes, timezone, consent FROM users"
            " WHERE app = ? AND user = ?",
            (app, user),
        )
        if not rows:
            return UserProfile(app=app, user=user)
        attributes, timezone, consent = rows[0]
        return UserProfile(
            app=app,
            user=user,
            attributes=_decode_object(attributes),
            timezone=timezone,
            consent=bool(consent),
        )

    async def set_user_attributes(
        self, app: str, user: str, attributes: dict[str, Any]
    ) -> None:
        """Merge ``attributes`` into the profile, one level deep.

        A key given here replaces the stored value of that key, whatever it
        was (a nested object is replaced, not merged); other keys stay. A
        ``None`` value is stored as ``None``, not treated as a deletion.
        """
        with self._write("save user attributes") as conn:
            row = conn.execute(
                "SELECT attributes FROM users WHERE app = ? AND user = ?",
                (app, user),
            ).fetchone()
            merged = _decode_object(row[0]) if row is not None else {}
            merged.update(attributes)
            conn.execute(
                """
                INSERT INTO users (app, user, attributes) VALUES (?, ?, ?)
                ON CONFLICT (app, user) DO UPDATE SET
                    attributes = excluded.attributes
                """,
                (app, user, _encode(merged, "user attributes")),
            )

    async def set_consent(self, app: str, user: str, granted: bool) -> None:
        """Record whether the user agrees to receive pushes."""
        with self._write("save consent") as conn:
            conn.execute(
                """
                INSERT INTO users (app, user, consent) VALUES (?, ?, ?)
                ON CONFLICT (app, user) DO UPDATE SET consent = excluded.consent
                """,
                (app, user, int(granted)),
            )

    async def add_subscription(self, subscription: Subscription) -> None:
        """Add or replace the subscription of one device on one channel.

        A replaced subscription keeps its place in :meth:`subscriptions`.
        """
        data = _encode(subscription.data, "subscription data")
        with self._write("save a subscription") as conn:
            conn.execute(
                """
                INSERT INTO subscriptions (app, user, device_id, channel, data,
                                           created_at)
                VALUES (?, ?, ?, ?, ?, ?)
                ON CONFLICT (app, user, device_id, channel) DO UPDATE SET
                    data = excluded.data,
                    created_at = excluded.created_at,
                    disabled = NULL
                """,
                (
                    subscription.app,
                    subscription.user,
                    subscription.device_id,
                    subscription.channel,
                    data,
                    subscription.created_at,
                ),
            )

    async def subscriptions(self, app: str, user: str) -> list[Subscription]:
        """The user's enabled subscriptions, in the order first added."""
        rows = self._read(
            "read subscriptions",
            "SELECT device_id, channel, data, created_at FROM subscriptions"
            " WHERE app = ? AND user = ? AND disabled IS NULL ORDER BY id",
            (app, user),
        )
        return [_subscription(app, user, row) for row in rows]

    async def disabled_subscriptions(
        self, app: str, user: str
    ) -> list[tuple[Subscription, str]]:
        """The user's disabled subscriptions with the reason, oldest first."""
        rows = self._read(
            "read subscriptions",
            "SELECT device_id, channel, data, created_at, disabled"
            " FROM subscriptions WHERE app = ? AND user = ?"
            " AND disabled IS NOT NULL ORDER BY id",
            (app, user),
        )
        return [(_subscription(app, user, row[:4]), row[4]) for row in rows]

    async def remove_subscription(
        self, app: str, user: str, device_id: str, channel: str, address: str
    ) -> bool:
        """Delete the subscription if its endpoint or token is ``address``."""
        with self._write("remove a subscription") as conn:
            row = _subscription_row(conn, app, user, device_id, channel)
            if row is None or _address(row[1]) != address:
                return False
            conn.execute("DELETE FROM subscriptions WHERE id = ?", (row[0],))
            return True

    async def disable_subscription(
        self,
        app: str,
        user: str,
        device_id: str,
        channel: str,
        address: str,
        reason: str,
        registered_before: float | None = None,
    ) -> bool:
        """Disable the subscription if it still has ``address`` and, with
        ``registered_before``, was registered at or before that time."""
        with self._write("disable a subscription") as conn:
            row = _subscription_row(conn, app, user, device_id, channel)
            if row is None or _address(row[1]) != address:
                return False
            if registered_before is not None and row[2] > registered_before:
                return False
            conn.execute(
                "UPDATE subscriptions SET disabled = ? WHERE id = ?", (reason, row[0])
            )
            return True

    # caps

    async def cap_count(self, key: str, since: float) -> int:
        """How many sends were counted under ``key`` at or after ``since``."""
        rows = self._read(
            "count a cap",
            "SELECT count(*) FROM cap_events WHERE key = ? AND at >= ?",
            (key, since),
        )
        count: int = rows[0][0]
        return count

    async def cap_take(self, key: str, limit: int, since: float, now: float) -> bool:
        """Count one send at ``now`` under ``key`` if fewer than ``limit``
        were counted at or after ``since``.

        Check and count are one transaction holding the write lock, so two
        callers racing for the last slot, even from two processes, get one
        ``True`` and one ``False``. Events of ``key`` older than ``since``
        are deleted on the way, which keeps the table bounded; so one key
        must always be used with the same window (a key shared by an hourly
        and a daily cap would lose the daily count).

        Returns:
            Whether the send was counted, that is, whether it may go out.
        """
        return await self.cap_take_all([(key, limit, since)], now) is None

    async def cap_take_all(
        self,
        caps: Sequence[tuple[str, int, float]],
        now: float,
        send_id: str | None = None,
    ) -> int | None:
        """Count one send under every ``(key, limit, since)`` or under none.

        A rule with two limits must not use up a slot of the first when the
        second is full, so all are checked and counted in one transaction.

        Returns:
            ``None`` when every cap had room and was counted, else the index
            of the first cap that was full (nothing is counted then).
        """
        with self._write("take cap slots") as conn:
            if (
                send_id is not None
                and caps
                and all(
                    conn.execute(
                        "SELECT 1 FROM cap_events WHERE send_id = ? AND key = ?",
                        (send_id, key),
                    ).fetchone()
                    for key, _, _ in caps
                )
            ):
                return None
            for index, (key, limit, since) in enumerate(caps):
                conn.execute(
                    "DELETE FROM cap_events WHERE key = ? AND at < ?", (key, since)
                )
                (count,) = conn.execute(
                    "SELECT count(*) FROM cap_events WHERE key = ? AND at >= ?",
                    (key, since),
                ).fetchone()
                if count >= limit:
                    return index
            conn.executemany(
                "INSERT INTO cap_events (key, at, send_id) VALUES (?, ?, ?)",
                [(key, now, send_id) for key, _, _ in caps],
            )
            return None

    # suppression (``unless``)

    async def mark_suppressed(self, app: str, user: str, rule: str, at: float) -> None:
        """Record that an ``unless`` event of ``rule`` arrived at ``at``.

        Only the latest time is kept: a mark older than the stored one (a
        late or replayed event) does not move it back.
        """
        with self._write("save a suppression") as conn:
            conn.execute(
                """
                INSERT INTO suppressions (app, user, rule, at) VALUES (?, ?, ?, ?)
                ON CONFLICT (app, user, rule) DO UPDATE SET
                    at = max(at, excluded.at)
                """,
                (app, user, rule, at),
            )

    async def suppressed_at(self, app: str, user: str, rule: str) -> float | None:
        """When the latest ``unless`` event of ``rule`` arrived, if ever."""
        rows = self._read(
            "read a suppression",
            "SELECT at FROM suppressions WHERE app = ? AND user = ? AND rule = ?",
            (app, user, rule),
        )
        if not rows:
            return None
        at: float = rows[0][0]
        return at

    # timers

    async def add_timer(self, timer: PendingTimer) -> None:
        """Save a pending timer.

        A timer whose ``timer_id`` is already pending replaces it and keeps
        its place among timers due at the same time.
        """
        context = _encode(timer.context, "timer context")
        with self._write("save a timer") as conn:
            conn.execute(
                """
                INSERT INTO timers (timer_id, app, user, session, rule, due,
                                    triggered_at, context)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (timer_id) DO UPDATE SET
                    app = excluded.app,
                    user = excluded.user,
                    session = excluded.session,
                    rule = excluded.rule,
                    due = excluded.due,
                    triggered_at = excluded.triggered_at,
                    context = excluded.context
                """,
                (
                    timer.timer_id,
                    timer.app,
                    timer.user,
                    timer.session,
                    timer.rule,
                    timer.due,
                    timer.triggered_at,
                    context,
                ),
            )

    async def cancel_timers(
        self, app: str, user: str, rule: str, triggered_before: float
    ) -> list[PendingTimer]:
        """Remove and return the user's pending timers of ``rule`` that were
        triggered at or before ``triggered_before``.

        Returns:
            The removed timers, earliest due first, as :meth:`pending_timers`
            would have listed them.
        """
        where = "app = ? AND user = ? AND rule = ? AND triggered_at <= ?"
        params = (app, user, rule, triggered_before)
        with self._write("cancel timers") as conn:
            rows = _delete_returning(conn, "timers", where, params, _TIMER_COLUMNS)
        return _timers(rows)

    async def claim_timer(self, timer_id: str) -> PendingTimer | None:
        """Take a timer for firing: it is removed and returned once; a
        cancelled or already claimed timer returns ``None``."""
        with self._write("claim a timer") as conn:
            rows = _delete_returning(
                conn, "timers", "timer_id = ?", (timer_id,), _TIMER_COLUMNS
            )
        timers = _timers(rows)
        return timers[0] if timers else None

    async def pending_timers(self) -> list[PendingTimer]:
        """Every pending timer, earliest due first, then in the order added."""
        rows = self._read(
            "list timers",
            f"SELECT {_TIMER_COLUMNS} FROM timers ORDER BY due, seq",
        )
        return _timers(rows)

    # delivery

    async def claim_send(self, key: str, message_id: str, at: float) -> str | None:
        """Claim ``key`` for ``message_id``; the earlier owner's id if taken."""
        with self._write("claim an idempotency key") as conn:
            row = conn.execute(
                "SELECT message_id FROM send_keys WHERE key = ?", (key,)
            ).fetchone()
            if row is not None:
                owner: str = row[0]
                return owner
            conn.execute(
                "INSERT INTO send_keys (key, message_id, at) VALUES (?, ?, ?)",
                (key, message_id, at),
            )
            return None

    async def record_message(self, message: SentMessage) -> None:
        """Keep a sent message (its link answers ``GET /r/{id}``)."""
        with self._write("record a message") as conn:
            conn.execute(
                "INSERT OR REPLACE INTO messages (id, app, user, rule, channel, at,"
                " link) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    message.id,
                    message.app,
                    message.user,
                    message.rule,
                    message.channel,
                    message.at,
                    message.link,
                ),
            )

    async def sent_message(self, message_id: str) -> SentMessage | None:
        rows = self._read(
            "read a message",
            "SELECT id, app, user, rule, channel, at, link FROM messages WHERE id = ?",
            (message_id,),
        )
        if not rows:
            return None
        row = rows[0]
        return SentMessage(
            id=row[0],
            app=row[1],
            user=row[2],
            rule=row[3],
            channel=row[4],
            at=row[5],
            link=row[6],
        )

    async def record_outcome(self, outcome: DeliveryOutcome) -> None:
        """Append one delivery outcome."""
        with self._write("record an outcome") as conn:
            conn.execute(
                f"INSERT INTO outcomes ({_OUTCOME_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    outcome.message_id,
                    outcome.app,
                    outcome.user,
                    outcome.rule,
                    outcome.channel,
                    outcome.outcome,
                    outcome.at,
                    outcome.device_id,
                    outcome.reason,
                    outcome.retry_at,
                ),
            )

    async def outcomes(
        self, message_id: str | None = None, app: str | None = None
    ) -> list[DeliveryOutcome]:
        """Recorded outcomes, oldest first, of one message or one app."""
        where, params = _where(message_id=message_id, app=app)
        rows = self._read(
            "list outcomes",
            f"SELECT {_OUTCOME_COLUMNS} FROM outcomes{where} ORDER BY id",
            params,
        )
        return [
            DeliveryOutcome(
                message_id=row[0],
                app=row[1],
                user=row[2],
                rule=row[3],
                channel=row[4],
                outcome=row[5],
                at=row[6],
                device_id=row[7],
                reason=row[8],
                retry_at=row[9],
            )
            for row in rows
        ]

    async def claim_due(self, now: float, limit: int, lease: float) -> list[Claim]:
        """Take up to ``limit`` timers due at ``now``, earliest first, for
        ``lease`` seconds; a claimed timer whose lease ran out is due again.
        """
        with self._write("claim due timers") as conn:
            rows = conn.execute(
                f"SELECT {_TIMER_COLUMNS}, claim_token FROM timers"
                " WHERE due <= ? AND (lease_until IS NULL OR lease_until <= ?)"
                " ORDER BY due, seq LIMIT ?",
                (now, now, limit),
            ).fetchall()
            lease_until = now + lease
            conn.executemany(
                "UPDATE timers SET claim_token = ?, lease_until = ? WHERE seq = ?",
                [(row[-1] + 1, lease_until, row[0]) for row in rows],
            )
        return [
            Claim(timer=timer, token=row[-1] + 1, lease_until=lease_until)
            for timer, row in zip(_timers([r[:-1] for r in rows]), rows, strict=True)
        ]

    async def holds(self, claim: Claim) -> bool:
        """Whether ``claim`` is still the timer's newest claim."""
        rows = self._read(
            "check a claim",
            "SELECT 1 FROM timers WHERE timer_id = ? AND claim_token = ?",
            (claim.timer.timer_id, claim.token),
        )
        return bool(rows)

    async def finish(self, claim: Claim) -> bool:
        """Remove a claimed timer if ``claim`` still holds it; see
        :meth:`~sessionpush.store.base.Store.finish`."""
        with self._write("finish a timer") as conn:
            cursor = conn.execute(
                "DELETE FROM timers WHERE timer_id = ? AND claim_token = ?",
                (claim.timer.timer_id, claim.token),
            )
            return cursor.rowcount == 1

    async def finish_many(self, claims: Sequence[Claim]) -> list[bool]:
        """:meth:`finish` each claim in one transaction (one fsync)."""
        with self._write("finish timers") as conn:
            return [
                conn.execute(
                    "DELETE FROM timers WHERE timer_id = ? AND claim_token = ?",
                    (claim.timer.timer_id, claim.token),
                ).rowcount
                == 1
                for claim in claims
            ]

    # rule sets

    async def save_rules(self, source: str, now: float) -> int:
        """Store a checked rule set under the next version number."""
        with self._write("save a rule set") as conn:
            (latest,) = conn.execute(
                "SELECT coalesce(max(version), 0) FROM rulesets"
            ).fetchone()
            version: int = latest + 1
            conn.execute(
                "INSERT INTO rulesets (version, source, saved_at) VALUES (?, ?, ?)",
                (version, source, now),
            )
        for queue in self._rule_watchers:
            queue.put_nowait(version)
        return version

    async def load_rules(self) -> StoredRules | None:
        """The latest saved rule set, if any."""
        rows = self._read(
            "read the rule set",
            "SELECT version, source, saved_at FROM rulesets"
            " ORDER BY version DESC LIMIT 1",
        )
        if not rows:
            return None
        version, source, saved_at = rows[0]
        return StoredRules(version=version, source=source, saved_at=saved_at)

    async def rule_versions(self) -> AsyncIterator[int]:
        """``0``, then the versions saved from now on by this store object."""
        queue: asyncio.Queue[int] = asyncio.Queue()
        self._rule_watchers.add(queue)
        try:
            yield 0
            while True:
                yield await queue.get()
        finally:
            self._rule_watchers.discard(queue)

    # decisions

    async def record_decision(self, decision: Decision) -> None:
        """Append one decision to the outcome log."""
        message = (
            None
            if decision.message is None
            else _encode(decision.message, "decision message")
        )
        with self._write("record a decision") as conn:
            conn.execute(
                f"INSERT INTO decisions ({_DECISION_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    decision.app,
                    decision.rule,
                    decision.user,
                    decision.session,
                    decision.decision,
                    decision.reason,
                    decision.at,
                    decision.channel,
                    decision.triggered_at,
                    message,
                ),
            )

    async def decisions(
        self, app: str | None = None, user: str | None = None
    ) -> list[Decision]:
        """Recorded decisions in the order they were made.

        Args:
            app: Only this app's decisions, if given.
            user: Only decisions about users with this id, if given; without
                ``app`` that matches the id in every app.
        """
        where, params = _where(app=app, user=user)
        rows = self._read(
            "list decisions",
            f"SELECT {_DECISION_COLUMNS} FROM decisions{where} ORDER BY id",
            params,
        )
        return [
            Decision(
                app=row[0],
                rule=row[1],
                user=row[2],
                session=row[3],
                decision=row[4],
                reason=row[5],
                at=row[6],
                channel=row[7],
                triggered_at=row[8],
                message=None if row[9] is None else _decode_object(row[9]),
            )
            for row in rows
        ]

    # goals

    async def record_goal(self, goal: GoalEvent) -> None:
        """Append one goal event (a conversion candidate) of one rule."""
        with self._write("record a goal") as conn:
            conn.execute(
                "INSERT INTO goals (app, rule, user, session, at)"
                " VALUES (?, ?, ?, ?, ?)",
                (goal.app, goal.rule, goal.user, goal.session, goal.at),
            )

    async def goals(
        self, app: str | None = None, rule: str | None = None
    ) -> list[GoalEvent]:
        """Recorded goal events in the order they happened."""
        where, params = _where(app=app, rule=rule)
        rows = self._read(
            "list goals",
            f"SELECT app, rule, user, session, at FROM goals{where} ORDER BY id",
            params,
        )
        return [
            GoalEvent(app=row[0], rule=row[1], user=row[2], session=row[3], at=row[4])
            for row in rows
        ]

    # erasure

    async def erase_user(self, app: str, user: str) -> ErasureReport:
        """Remove everything kept about one user in one transaction; see
        :meth:`sessionpush.store.base.Store.erase_user`."""
        who = (app, user)
        removed: dict[str, int] = {}
        with self._write("erase a user") as conn:

            def delete(kind: str, sql: str, params: Sequence[Any] = who) -> None:
                removed[kind] = (
                    removed.get(kind, 0) + conn.execute(sql, params).rowcount
                )

            delete(
                "send_keys",
                "DELETE FROM send_keys WHERE message_id IN"
                " (SELECT id FROM messages WHERE app = ? AND user = ?)",
            )
            prefix = send_key_prefix(app, user)
            delete(
                "send_keys",
                "DELETE FROM send_keys WHERE substr(key, 1, ?) = ?",
                (len(prefix), prefix),
            )
            # Every cap key of a user, per-session ones too, starts with it.
            prefix = user_cap_prefix(app, user)
            delete(
                "caps",
                "DELETE FROM cap_events WHERE substr(key, 1, ?) = ?",
                (len(prefix), prefix),
            )
            for kind, table in (
                ("profile", "users"),
                ("devices", "devices"),
                ("subscriptions", "subscriptions"),
                ("timers", "timers"),
                ("suppressions", "suppressions"),
                ("decisions", "decisions"),
                ("messages", "messages"),
                ("outcomes", "outcomes"),
                ("goals", "goals"),
            ):
                delete(kind, f"DELETE FROM {table} WHERE app = ? AND user = ?")
        # The user id stays out of the log: it is what was just erased.
        logger.info("erased a user of app %s: %d rows", app, sum(removed.values()))
        return ErasureReport(app=app, user=user, removed=removed)


def _delete_returning(
    conn: sqlite3.Connection,
    table: str,
    where: str,
    params: Sequence[Any],
    columns: str,
) -> list[Any]:
    """Delete the matching rows and return them; the caller holds the write
    lock, so the fallback's SELECT and DELETE see the same rows."""
    if _HAS_RETURNING:
        # Every RETURNING row must be fetched before COMMIT: SQLite finishes
        # the DELETE only once the statement has been stepped to its end.
        return conn.execute(
            f"DELETE FROM {table} WHERE {where} RETURNING {columns}", params
        ).fetchall()
    rows = conn.execute(f"SELECT {columns} FROM {table} WHERE {where}", params)
    found = rows.fetchall()
    conn.execute(f"DELETE FROM {table} WHERE {where}", params)
    return found


def _subscription(app: str, user: str, row: Sequence[Any]) -> Subscription:
    device_id, channel, data, created_at = row
    return Subscription(
        app=app,
        user=user,
        device_id=device_id,
        channel=channel,
        data=_decode_object(data),
        created_at=created_at,
    )


def _subscription_row(
    conn: sqlite3.Connection, app: str, user: str, device_id: str, channel: str
) -> Any:
    """``(id, data, created_at)`` of one subscription, or None."""
    return conn.execute(
        "SELECT id, data, created_at FROM subscriptions"
        " WHERE app = ? AND user = ? AND device_id = ? AND channel = ?",
        (app, user, device_id, channel),
    ).fetchone()


def _address(data: str) -> str:
    decoded = _decode_object(data)
    return str(decoded.get("endpoint") or decoded.get("token") or "")


def _timers(rows: list[Any]) -> list[PendingTimer]:
    """Timers from ``_TIMER_COLUMNS`` rows, sorted by (due, seq)."""
    rows = sorted(rows, key=lambda row: (row[6], row[0]))
    return [
        PendingTimer(
            timer_id=row[1],
            app=row[2],
            user=row[3],
            session=row[4],
            rule=row[5],
            due=row[6],
            triggered_at=row[7],
            context=_decode_object(row[8]),
        )
        for row in rows
    ]


def _encode(value: dict[str, Any], what: str) -> str:
    try:
        return msgspec.json.encode(value).decode()
    except (TypeError, msgspec.EncodeError) as exc:
        raise StoreError(f"{what} cannot be stored as JSON: {exc}") from exc


def _decode_object(text: str) -> dict[str, Any]:
    return msgspec.json.decode(text, type=dict[str, Any])
