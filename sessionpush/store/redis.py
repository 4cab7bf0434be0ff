"""The shared store: state in Redis, so that several gateway processes act
as one.

Built on ``redis.asyncio`` (redis-py): a plain client for one Redis, or
its ``RedisCluster`` client for a Redis Cluster. Each read-then-write step
is one Lua script (:mod:`sessionpush.store.redis_scripts`), atomic for
every process at once; the key layout (:mod:`sessionpush.store.redis_keys`)
keeps the keys of each step, and of each ``MULTI``, in one hash slot, as
Redis Cluster requires. Steps over several slots (a claim over every timer
shard, an erasure) go slot by slot, to whichever node holds each.

Timers wait in sorted sets scored by due time. :meth:`RedisStore.claim_due`
compares due times with the server's ``TIME``, so processes with skewed
clocks agree on what is due, and re-scores each timer it takes to the end
of its lease: a process that dies holding a claim leaves the timer due
again for the others once the lease runs out, and no visibility timeout
limits how far ahead a timer may be. :meth:`RedisStore.finish` is the
fence: it settles a timer for the newest claimant only, once, and leaves an
idempotency key behind.

Decisions, delivery outcomes and goal events go to one Redis Stream each
(``XADD``), in the order processes record them.

:meth:`RedisStore.erase_user` finds what a user left behind by key
pattern (``SCAN``), by reading the streams, and by message id; it erases
each hash slot in one script, but not all slots at once (see
``docs/deploy.md``, Known limitations).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple, TypeVar
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException, RedisError

from sessionpush.store import redis_scripts as lua
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
from sessionpush.store.redis_keys import Keys, TimerQueue, hash_tag, starting_with

__all__ = ["RedisStore"]

logger = logging.getLogger("sessionpush.store")

_T = TypeVar("_T")
_Client = aioredis.Redis | RedisCluster
# What redis-py raises: RedisClusterException is not a RedisError (a slot
# no node covers, a cluster none of the seeds can describe).
_REDIS_ERRORS = (RedisError, RedisClusterException)
_CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")

_US = "\x1f"
# How many stream entries one XRANGE reads while listing a log.
_PAGE = 1000
# A settled timer's idempotency key outlives any lease and any retry.
_SENT_TTL = 7 * 24 * 3600
# How long a cluster store's rule watcher goes without an announcement
# before it has the latest rule set loaded anyway (see rule_versions).
_CLUSTER_RECHECK = 10.0
# A per-session cap has no window; a session never lasts this long.
_SESSION_CAP_TTL = 30 * 24 * 3600

_timer_decoder = msgspec.json.Decoder(PendingTimer)
_decision_decoder = msgspec.json.Decoder(Decision)
_device_decoder = msgspec.json.Decoder(Device)
_subscription_decoder = msgspec.json.Decoder(Subscription)
_message_decoder = msgspec.json.Decoder(SentMessage)
_outcome_decoder = msgspec.json.Decoder(DeliveryOutcome)
_goal_decoder = msgspec.json.Decoder(GoalEvent)
_any_decoder = msgspec.json.Decoder()


class _Owned(msgspec.Struct):
    """The fields that say whose a stored record is; the rest is skipped."""

    app: str
    user: str


_owned_decoder = msgspec.json.Decoder(_Owned)
_Logged = Decision | DeliveryOutcome | GoalEvent
# The kinds of ErasureReport.removed, in the order the SQLite store counts.
_ERASED_KINDS = (
    "send_keys",
    "caps",
    "profile",
    "devices",
    "subscriptions",
    "timers",
    "suppressions",
    "decisions",
    "messages",
    "outcomes",
    "goals",
)
# The user's keys in their own slot, in the order ERASE_KEYS reports them.
_USER_KEYS = (
    "profile",
    "attrs",
    "devices",
    "subs",
    "suborder",
    "subseq",
    "suboff",
    "supp",
)


class _Seeds(NamedTuple):
    """Where a Redis Cluster is first asked for its map of slots and nodes."""

    nodes: list[tuple[str, int]]
    username: str | None
    password: str | None
    tls: bool


class RedisStore:
    """The :class:`~sessionpush.store.base.Store` in Redis or a Redis Cluster.

    Args:
        url: ``redis://[:PASSWORD@]HOST:PORT/DB`` (or ``rediss://``) for one
            Redis; ``redis+cluster://[[USER]:PASSWORD@]HOST:PORT[,HOST:PORT
            ...][/0]`` (or ``rediss+cluster://``) for a Redis Cluster, named
            by one or more of its nodes (the client learns the others from
            them). Both take optional query settings of our own:
            ``prefix`` (default ``sp``) starts every key, so deployments can
            share a Redis; ``shards`` (default 8) is how many timer queues
            spread over a cluster. Every process of one deployment must use
            the same values.

    Create it, ``await store.open()``, use it, ``await store.close()``.
    """

    inline = False

    def __init__(self, url: str) -> None:
        self._url, prefix, shards = _split_url(url)
        self._seeds = _cluster_seeds(url)
        self.keys = Keys(prefix, shards)
        self._client: _Client | None = None
        self._scripts: dict[str, Any] = {}

    @property
    def cluster(self) -> bool:
        """Whether the URL names a Redis Cluster."""
        return self._seeds is not None

    def __repr__(self) -> str:
        state = "open" if self._client is not None else "closed"
        return f"RedisStore({_where(self._url)!r}, {state})"

    # lifecycle

    async def open(self) -> None:
        """Connect and check that Redis answers; opening twice does nothing.

        Raises:
            StoreError: Redis cannot be reached or refuses the credentials.
        """
        if self._client is not None:
            return
        client: _Client
        if self._seeds is None:
            client = aioredis.Redis.from_url(self._url, decode_responses=False)
        else:
            client = RedisCluster(
                startup_nodes=[
                    ClusterNode(host, port) for host, port in self._seeds.nodes
                ],
                username=self._seeds.username,
                password=self._seeds.password,
                ssl=self._seeds.tls,
                decode_responses=False,
            )
        try:
            if isinstance(client, RedisCluster):
                # Reads the slot map and checks every slot has a node.
                await client.initialize()
            await client.ping()
        except _REDIS_ERRORS as exc:
            await client.aclose()
            what = "the Redis Cluster" if self._seeds else "Redis"
            raise StoreError(
                f"cannot reach {what} at {_where(self._url)}: {exc}; start "
                f"redis-server there or fix the --store URL"
            ) from exc
        self._scripts = {
            name: client.register_script(getattr(lua, name)) for name in lua.__all__
        }
        self._client = client
        logger.info(
            "opened %s store %s (prefix %r, %d timer shards)",
            "Redis Cluster" if self._seeds else "Redis",
            _where(self._url),
            self.keys.prefix,
            self.keys.shards,
        )

    async def close(self) -> None:
        """Close the connections; closing a closed store does nothing."""
        if self._client is None:
            return
        client, self._client = self._client, None
        await client.aclose()

    # plumbing

    def _redis(self) -> _Client:
        if self._client is None:
            raise StoreError(
                f"Redis store {_where(self._url)} is not open: await "
                f"store.open() first (and do not use it after close())"
            )
        return self._client

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except _REDIS_ERRORS as exc:
            raise StoreError(
                f"Redis store {_where(self._url)}: cannot {action}: {exc}; check "
                f"that redis-server runs and has memory left"
            ) from exc

    async def _run(
        self,
        action: str,
        script: str,
        keys: Sequence[str | bytes],
        args: Sequence[Any],
    ) -> Any:
        self._redis()
        with self._errors(action):
            return await self._scripts[script](keys=keys, args=args)

    async def _run_each(
        self,
        action: str,
        script: str,
        calls: Sequence[tuple[Sequence[str | bytes], Sequence[Any]]],
    ) -> list[Any]:
        """``script`` once per (keys, args), all in one round trip; the
        replies in order. Each call's keys are of one slot, the calls' of
        many (one call per timer shard).

        On a cluster a call whose node fails (down, failing over, its slot
        migrating) gets ``None`` and a warning, and the others keep their
        replies: the timers a claim took on healthy nodes are fired now
        rather than left leased. Only when every call fails is it an error.
        """
        client = self._redis()
        run = self._scripts[script]
        if isinstance(client, RedisCluster):
            # A cluster pipeline neither loads a script a node lacks nor
            # retries on NOSCRIPT; concurrent calls reach every node at once
            # all the same, and each call loads its script where it is
            # missing (a new primary after a failover).
            replies: list[Any] = await asyncio.gather(
                *(run(keys=keys, args=args) for keys, args in calls),
                return_exceptions=True,
            )
            failed = [r for r in replies if isinstance(r, BaseException)]
            for reply in failed:
                if not isinstance(reply, _REDIS_ERRORS):
                    raise reply
            if failed and len(failed) == len(replies):
                with self._errors(action):
                    raise failed[0]
            if failed:
                logger.warning(
                    "Redis Cluster %s: cannot %s on %d of %d timer shards: %s",
                    _where(self._url),
                    action,
                    len(failed),
                    len(replies),
                    failed[0],
                )
            return [None if isinstance(r, BaseException) else r for r in replies]
        with self._errors(action):
            pipe = client.pipeline(transaction=False)
            for keys, args in calls:
                # Queues the EVALSHA on the pipeline (and the script load
                # it may need); nothing is sent before execute().
                await run(keys=keys, args=args, client=pipe)
            replies = await pipe.execute()
        return list(replies)

    # users, devices, consent, subscriptions

    async def upsert_device(self, device: Device) -> None:
        """Remember a device and make its time zone the user's."""
        keys = self.keys
        pipe = self._redis().pipeline(transaction=True)
        pipe.hset(
            keys.user(device.app, device.user, "devices"),
            device.device_id,
            msgspec.json.encode(device),
        )
        pipe.hset(
            keys.user(device.app, device.user, "profile"), "timezone", device.timezone
        )
        with self._errors("save a device"):
            await pipe.execute()

    async def get_user(self, app: str, user: str) -> UserProfile:
        """The user's profile; an unknown user gets the defaults."""
        pipe = self._redis().pipeline(transaction=False)
        pipe.hgetall(self.keys.user(app, user, "profile"))
        pipe.hgetall(self.keys.user(app, user, "attrs"))
        with self._errors("read a user"):
            profile, attrs = await pipe.execute()
        return UserProfile(
            app=app,
            user=user,
            attributes={k.decode(): _any_decoder.decode(v) for k, v in attrs.items()},
            timezone=profile.get(b"timezone", b"UTC").decode(),
            consent=profile.get(b"consent", b"1") == b"1",
        )

    async def set_user_attributes(
        self, app: str, user: str, attributes: dict[str, Any]
    ) -> None:
        """Merge ``attributes`` into the profile, one level deep.

        Each attribute is one field of a hash, so a merge is one ``HSET``:
        atomic without a script, and two processes merging different keys
        keep both.
        """
        if not attributes:
            return
        fields = {
            key: _encode(value, "user attributes") for key, value in attributes.items()
        }
        with self._errors("save user attributes"):
            await self._redis().hset(
                self.keys.user(app, user, "attrs"),
                mapping=fields,  # type: ignore[arg-type]
            )

    async def set_consent(self, app: str, user: str, granted: bool) -> None:
        with self._errors("save consent"):
            await self._redis().hset(
                self.keys.user(app, user, "profile"), "consent", "1" if granted else "0"
            )

    async def add_subscription(self, subscription: Subscription) -> None:
        """Add or replace the subscription of one device on one channel.

        A replaced subscription keeps its place in :meth:`subscriptions`,
        and a disabled one is enabled again.
        """
        app, user = subscription.app, subscription.user
        await self._run(
            "save a subscription",
            "ADD_SUBSCRIPTION",
            [
                self.keys.user(app, user, "subs"),
                self.keys.user(app, user, "suborder"),
                self.keys.user(app, user, "subseq"),
                self.keys.user(app, user, "suboff"),
            ],
            [
                _subscription_field(subscription.device_id, subscription.channel),
                _encode(subscription, "subscription data"),
            ],
        )

    async def subscriptions(self, app: str, user: str) -> list[Subscription]:
        """The user's enabled subscriptions, in the order first added."""
        return [
            sub
            for sub, reason in await self._all_subscriptions(app, user)
            if reason is None
        ]

    async def disabled_subscriptions(
        self, app: str, user: str
    ) -> list[tuple[Subscription, str]]:
        """The user's disabled subscriptions with the reason, oldest first."""
        return [
            (sub, reason)
            for sub, reason in await self._all_subscriptions(app, user)
            if reason is not None
        ]

    async def _all_subscriptions(
        self, app: str, user: str
    ) -> list[tuple[Subscription, str | None]]:
        """Every subscription in the order first added, with the reason it
        was disabled or ``None``."""
        # MULTI, not a plain pipeline: the three keys are read as of one
        # instant, so a subscription enabled meanwhile is not listed with
        # its old reason.
        pipe = self._redis().pipeline(transaction=True)
        pipe.zrange(self.keys.user(app, user, "suborder"), 0, -1)
        pipe.hgetall(self.keys.user(app, user, "subs"))
        pipe.hgetall(self.keys.user(app, user, "suboff"))
        with self._errors("read subscriptions"):
            order, subs, off = await pipe.execute()
        return [
            (
                _subscription_decoder.decode(subs[field]),
                off[field].decode() if field in off else None,
            )
            for field in order
            if field in subs
        ]

    async def remove_subscription(
        self, app: str, user: str, device_id: str, channel: str, address: str
    ) -> bool:
        """Delete the subscription if its endpoint or token is ``address``."""
        removed = await self._run(
            "remove a subscription",
            "REMOVE_SUBSCRIPTION",
            [
                self.keys.user(app, user, "subs"),
                self.keys.user(app, user, "suborder"),
                self.keys.user(app, user, "suboff"),
            ],
            [_subscription_field(device_id, channel), address],
        )
        return bool(removed)

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
        disabled = await self._run(
            "disable a subscription",
            "DISABLE_SUBSCRIPTION",
            [
                self.keys.user(app, user, "subs"),
                self.keys.user(app, user, "suboff"),
            ],
            [
                _subscription_field(device_id, channel),
                address,
                reason,
                "" if registered_before is None else repr(registered_before),
            ],
        )
        return bool(disabled)

    # caps

    async def cap_count(self, key: str, since: float) -> int:
        """How many sends were counted under ``key`` at or after ``since``."""
        with self._errors("count a cap"):
            count: int = await self._redis().zcount(
                self.keys.cap(key), repr(since), "+inf"
            )
        return count

    async def cap_take(self, key: str, limit: int, since: float, now: float) -> bool:
        """Count one send under ``key`` if fewer than ``limit`` since
        ``since``; one atomic step for every process."""
        return await self.cap_take_all([(key, limit, since)], now) is None

    async def cap_take_all(
        self,
        caps: Sequence[tuple[str, int, float]],
        now: float,
        send_id: str | None = None,
    ) -> int | None:
        """Count one send under every cap or under none, in one script.

        Each counted send is a member of the cap's sorted set scored by its
        time; the member is ``send_id`` when given, so a send counted once
        is recognised when its timer is fired again. Events older than the
        window are dropped on the way and the key expires with its window.

        Raises:
            StoreError: On a Redis Cluster, the caps are not all of one user
                (their keys do not all start with the same
                ``APP<US>u<US>USER``, as the engine's do), so no one script
                can take them.
        """
        if not caps:
            return None
        args: list[Any] = [repr(now), send_id or uuid.uuid4().hex, int(bool(send_id))]
        for _, limit, since in caps:
            ttl = (
                _SESSION_CAP_TTL
                if math.isinf(since)
                else max(1, math.ceil(now - since)) + 60
            )
            args += [limit, repr(since), ttl]
        keys = [self.keys.cap(key) for key, _, _ in caps]
        if self._seeds is not None:
            self._one_user(keys)
        full: int = await self._run("take cap slots", "CAP_TAKE_ALL", keys, args)
        return None if full < 0 else full

    def _one_user(self, cap_keys: list[str]) -> None:
        """Refuse, on a cluster, caps of several users (several slots)."""
        owners = {hash_tag(key.encode()) for key in cap_keys}
        if len(owners) > 1:
            # The keys name users, which stay out of messages and logs.
            raise StoreError(
                f"the {len(cap_keys)} caps of one send are of {len(owners)} "
                f"different users; on a Redis Cluster the caps of one send "
                f"must be one user's (as the engine's are), to be taken in "
                f"one script"
            )

    # suppression

    async def mark_suppressed(self, app: str, user: str, rule: str, at: float) -> None:
        await self._run(
            "save a suppression",
            "MARK_SUPPRESSED",
            [self.keys.user(app, user, "supp")],
            [rule, repr(at)],
        )

    async def suppressed_at(self, app: str, user: str, rule: str) -> float | None:
        with self._errors("read a suppression"):
            value = await self._redis().hget(self.keys.user(app, user, "supp"), rule)
        return None if value is None else float(value)

    # timers

    def _queue(self, app: str, user: str) -> TimerQueue:
        return self.keys.timer_queue(self.keys.shard_of(app, user))

    def _queues(self) -> list[TimerQueue]:
        return [self.keys.timer_queue(n) for n in range(self.keys.shards)]

    async def add_timer(self, timer: PendingTimer) -> None:
        """Save a pending timer; the same id again replaces it in place."""
        queue = self._queue(timer.app, timer.user)
        await self._run(
            "save a timer",
            "ADD_TIMER",
            [
                queue.due,
                queue.data,
                queue.seqs,
                queue.seq,
                queue.by_rule(timer.app, timer.user, timer.rule),
            ],
            [
                timer.timer_id,
                repr(timer.due),
                repr(timer.triggered_at),
                _encode(timer, "timer context"),
            ],
        )

    async def cancel_timers(
        self, app: str, user: str, rule: str, triggered_before: float
    ) -> list[PendingTimer]:
        """Remove and return the user's timers of ``rule`` triggered at or
        before ``triggered_before``, claimed or not, for every process."""
        queue = self._queue(app, user)
        found = await self._run(
            "cancel timers",
            "CANCEL_TIMERS",
            [
                queue.by_rule(app, user, rule),
                queue.due,
                queue.data,
                queue.tokens,
                queue.seqs,
            ],
            [repr(triggered_before)],
        )
        pairs = [(found[i], int(found[i + 1] or 0)) for i in range(0, len(found), 2)]
        return _in_order(pairs)

    async def claim_timer(self, timer_id: str) -> PendingTimer | None:
        """Take a timer by id and remove it; ``None`` if it is gone.

        The id does not say which shard holds the timer, so each is asked:
        this is the single-process path of a virtual clock, not the hot one.
        """
        for queue in self._queues():
            data = await self._run(
                "claim a timer",
                "CLAIM_TIMER",
                [queue.due, queue.data, queue.tokens, queue.seqs],
                [timer_id],
            )
            if data:
                timer = _timer_decoder.decode(data)
                with self._errors("claim a timer"):
                    await self._redis().zrem(
                        queue.by_rule(timer.app, timer.user, timer.rule), timer_id
                    )
                return timer
        return None

    async def pending_timers(self) -> list[PendingTimer]:
        """Every pending timer, claimed or not, earliest due first."""
        pipe = self._redis().pipeline(transaction=False)
        for queue in self._queues():
            pipe.hgetall(queue.data)
            pipe.hgetall(queue.seqs)
        with self._errors("list timers"):
            replies = await pipe.execute()
        pairs = []
        for data, seqs in zip(replies[::2], replies[1::2], strict=True):
            pairs += [(raw, int(seqs.get(tid, 0))) for tid, raw in data.items()]
        return _in_order(pairs)

    # delivery

    async def claim_send(self, key: str, message_id: str, at: float) -> str | None:
        """Claim ``key`` for ``message_id``; the earlier owner's id if taken.

        The key never expires, as in the SQLite store: a trigger replayed
        any time later is still recognised.
        """
        owner: bytes | None = await self._run(
            "claim an idempotency key",
            "CLAIM_SEND",
            [self.keys.send(key)],
            [message_id, repr(at)],
        )
        return None if owner is None else owner.decode()

    async def record_message(self, message: SentMessage) -> None:
        """Keep a sent message (its link answers ``GET /r/{id}``); the same
        id again replaces it."""
        with self._errors("record a message"):
            await self._redis().set(
                self.keys.message(message.id), _encode(message, "message")
            )

    async def sent_message(self, message_id: str) -> SentMessage | None:
        with self._errors("read a message"):
            raw = await self._redis().get(self.keys.message(message_id))
        return None if raw is None else _message_decoder.decode(raw)

    async def record_outcome(self, outcome: DeliveryOutcome) -> None:
        """Append one delivery outcome to the outcome stream."""
        payload = _encode(outcome, "delivery outcome")
        with self._errors("record an outcome"):
            await self._redis().xadd(self.keys.outcomes, {"d": payload})

    async def outcomes(
        self, message_id: str | None = None, app: str | None = None
    ) -> list[DeliveryOutcome]:
        """Recorded outcomes, of one message or one app, in the order the
        stream received them."""
        return await self._read_log(
            "list outcomes",
            self.keys.outcomes,
            _outcome_decoder.decode,
            lambda item: (
                (message_id is None or item.message_id == message_id)
                and (app is None or item.app == app)
            ),
        )

    async def claim_due(self, now: float, limit: int, lease: float) -> list[Claim]:
        """Take up to ``limit`` due timers for ``lease`` seconds.

        ``now`` is ignored: due times are compared with Redis ``TIME`` so
        that every process agrees. The shards are asked in one round trip,
        each for its share of ``limit``, so a claim never holds more timers
        than the caller will fire before the lease runs out.
        """
        queues = self._queues()
        share = max(1, -(-limit // len(queues)))
        replies = await self._run_each(
            "claim due timers",
            "CLAIM_DUE",
            [
                (
                    [queue.due, queue.data, queue.tokens, queue.seqs],
                    [share, repr(lease)],
                )
                for queue in queues
            ],
        )
        claims: list[tuple[float, int, Claim]] = []
        for reply in replies:
            if reply is None:
                continue  # that shard's node failed; its timers wait
            lease_until = float(reply[0])
            for i in range(1, len(reply), 4):
                timer = _timer_decoder.decode(reply[i + 1])
                token = int(reply[i + 2])
                claim = Claim(timer=timer, token=token, lease_until=lease_until)
                claims.append((timer.due, int(reply[i + 3]), claim))
        claims.sort(key=lambda item: item[:2])
        return [claim for _, _, claim in claims]

    async def holds(self, claim: Claim) -> bool:
        """Whether ``claim`` is still the timer's newest, unsettled claim."""
        timer = claim.timer
        queue = self._queue(timer.app, timer.user)
        pipe = self._redis().pipeline(transaction=False)
        pipe.hget(queue.tokens, timer.timer_id)
        pipe.exists(queue.sent(timer.timer_id))
        with self._errors("check a claim"):
            token, sent = await pipe.execute()
        return token == str(claim.token).encode() and not sent

    async def finish(self, claim: Claim) -> bool:
        """Settle the claimed timer for its newest claimant, once."""
        timer = claim.timer
        queue = self._queue(timer.app, timer.user)
        done = await self._run(
            "finish a timer",
            "FINISH",
            [
                queue.due,
                queue.data,
                queue.tokens,
                queue.seqs,
                queue.sent(timer.timer_id),
                queue.by_rule(timer.app, timer.user, timer.rule),
            ],
            [timer.timer_id, str(claim.token), _SENT_TTL],
        )
        return bool(done)

    async def finish_many(self, claims: Sequence[Claim]) -> list[bool]:
        """Settle each claim as :meth:`finish` would: one ``FINISH_MANY``
        script per timer shard, all shards in one pipelined round trip."""
        by_shard: dict[str, tuple[TimerQueue, list[int]]] = {}
        for index, claim in enumerate(claims):
            queue = self._queue(claim.timer.app, claim.timer.user)
            by_shard.setdefault(queue.due, (queue, []))[1].append(index)
        calls: list[tuple[list[str | bytes], list[Any]]] = []
        for queue, indexes in by_shard.values():
            keys: list[str | bytes] = [queue.due, queue.data, queue.tokens, queue.seqs]
            args: list[Any] = [_SENT_TTL]
            for index in indexes:
                timer = claims[index].timer
                keys += [
                    queue.sent(timer.timer_id),
                    queue.by_rule(timer.app, timer.user, timer.rule),
                ]
                args += [timer.timer_id, str(claims[index].token)]
            calls.append((keys, args))
        replies = await self._run_each("finish timers", "FINISH_MANY", calls)
        done = [False] * len(claims)
        for (_, indexes), reply in zip(by_shard.values(), replies, strict=True):
            if reply is None:
                # Unsettled, as after a crash: claimed again after the
                # lease, and sent again with the same message id.
                continue
            for index, answer in zip(indexes, reply, strict=True):
                done[index] = bool(answer)
        return done

    # rule sets

    async def save_rules(self, source: str, now: float) -> int:
        """Store a checked rule set, bump its version and tell every process."""
        version: int = await self._run(
            "save a rule set",
            "SAVE_RULES",
            [self.keys.rules],
            [source, repr(now), self.keys.rules_channel],
        )
        return version

    async def load_rules(self) -> StoredRules | None:
        with self._errors("read the rule set"):
            found: dict[bytes, bytes] = await self._redis().hgetall(  # type: ignore[assignment]
                self.keys.rules
            )
        if b"source" not in found:
            return None
        return StoredRules(
            version=int(found[b"version"]),
            source=found[b"source"].decode(),
            saved_at=float(found[b"saved_at"]),
        )

    async def rule_versions(self) -> AsyncIterator[int]:
        """``0`` once subscribed, then each version announced on the rule
        channel (pub/sub).

        A message published while this process was disconnected is lost
        by pub/sub; callers load the latest after each ``0``. On a Redis
        Cluster the announcement crosses the cluster bus from the node that
        saved the rule set to the one this process listens on, which may
        drop it while a bus link reconnects, with this process's own
        connection up; so a cluster store also yields ``0`` after
        ``_CLUSTER_RECHECK`` seconds without one, and a lost announcement
        delays a rule set by at most that.
        """
        recheck = _CLUSTER_RECHECK if self._seeds is not None else None
        pubsub = self._redis().pubsub(ignore_subscribe_messages=True)
        try:
            with self._errors("watch rule sets"):
                await pubsub.subscribe(self.keys.rules_channel)
            yield 0
            checked = time.monotonic()
            while True:
                with self._errors("watch rule sets"):
                    message = await pubsub.get_message(timeout=recheck)
                if message is not None and message["type"] == "message":
                    checked = time.monotonic()
                    yield int(message["data"])
                elif recheck is not None and time.monotonic() - checked >= recheck:
                    checked = time.monotonic()
                    yield 0
                elif message is None:
                    await asyncio.sleep(0)
        finally:
            await pubsub.aclose()

    # decisions

    async def record_decision(self, decision: Decision) -> None:
        """Append one decision to the outcome stream."""
        payload = _encode(decision, "decision message")
        with self._errors("record a decision"):
            await self._redis().xadd(self.keys.decisions, {"d": payload})

    async def decisions(
        self, app: str | None = None, user: str | None = None
    ) -> list[Decision]:
        """Recorded decisions in the order the stream received them."""
        return await self._read_log(
            "list decisions",
            self.keys.decisions,
            _decision_decoder.decode,
            lambda item: (
                (app is None or item.app == app) and (user is None or item.user == user)
            ),
        )

    # goals

    async def record_goal(self, goal: GoalEvent) -> None:
        """Append one goal event to the goal stream."""
        payload = _encode(goal, "goal event")
        with self._errors("record a goal"):
            await self._redis().xadd(self.keys.goals, {"d": payload})

    async def goals(
        self, app: str | None = None, rule: str | None = None
    ) -> list[GoalEvent]:
        """Recorded goal events in the order the stream received them."""
        return await self._read_log(
            "list goals",
            self.keys.goals,
            _goal_decoder.decode,
            lambda item: (
                (app is None or item.app == app) and (rule is None or item.rule == rule)
            ),
        )

    async def _read_log(
        self,
        action: str,
        stream: str,
        decode: Callable[[bytes], _T],
        wanted: Callable[[_T], bool],
    ) -> list[_T]:
        """Every entry of ``stream`` that is ``wanted``, oldest first.

        The stream is read whole, a page at a time, and filtered here: the
        logs are for reports and tests, not for the path of a send.
        """
        entries, _ = await self._find_in_log(action, stream, decode, wanted)
        return [item for _, item in entries]

    async def _find_in_log(
        self,
        action: str,
        stream: str,
        decode: Callable[[bytes], _T],
        wanted: Callable[[_T], bool],
        after: str = "-",
    ) -> tuple[list[tuple[bytes, _T]], str]:
        """The ``wanted`` entries of ``stream`` with their ids, and where the
        reading stopped (the ``after`` of a later read of what came since)."""
        found: list[tuple[bytes, _T]] = []
        start = after
        client = self._redis()
        while True:
            with self._errors(action):
                batch: Any = await client.xrange(stream, start, "+", _PAGE)
            for entry_id, fields in batch:
                item = decode(fields[b"d"])
                if wanted(item):
                    found.append((entry_id, item))
            if batch:
                start = "(" + batch[-1][0].decode()
            if len(batch) < _PAGE:
                return found, start

    # erasure

    async def erase_user(self, app: str, user: str) -> ErasureReport:
        """Remove everything kept about one user; see
        :meth:`sessionpush.store.base.Store.erase_user`.

        The cost is O(size of the three streams) plus a ``SCAN`` of the
        keyspace per key pattern: the streams are read whole (they are not
        indexed by user), and a sent message is found by its id only, so
        the ids come from the user's idempotency keys and outcomes. Erasure
        is rare and admin-only; nothing on the path of a send pays for it.

        Each hash slot (the user's, the user's caps, the user's timer
        shard, each message) is erased in one script, but the slots one
        after another. The streams, which name the user's messages, go
        last, so that an erasure cut short and run again still
        finds what is left.
        """
        keys = self.keys

        def theirs(item: _Logged) -> bool:
            return item.app == app and item.user == user

        logs: dict[str, tuple[str, Callable[[bytes], _Logged]]] = {
            "decisions": (keys.decisions, _decision_decoder.decode),
            "outcomes": (keys.outcomes, _outcome_decoder.decode),
            "goals": (keys.goals, _goal_decoder.decode),
        }
        entries: dict[str, list[bytes]] = {}
        read_to: dict[str, str] = {}
        message_ids: set[str] = set()
        for kind, (stream, decode) in logs.items():
            found, read_to[kind] = await self._find_in_log(
                "erase a user", stream, decode, theirs
            )
            entries[kind] = [entry_id for entry_id, _ in found]
            for _, item in found:
                if isinstance(item, DeliveryOutcome):
                    message_ids.add(item.message_id)

        # Every send of the user claimed a key in their slot first
        # (transports.queue), naming its message: the messages of sends
        # without an outcome are found too.
        user_sends = await self._scan(
            starting_with(keys.send(send_key_prefix(app, user)))
        )
        other_sends = await self._scan(keys.other_sends())
        owners = await self._send_owners(user_sends + other_sends)
        message_ids.update(owner for owner in owners[: len(user_sends)] if owner)
        removed = dict.fromkeys(_ERASED_KINDS, 0)

        owned = await self._erase_messages(app, user, sorted(message_ids))
        removed["messages"] = len(owned)
        # Keys in a slot of their own go with the message they claimed, as
        # in the SQLite store; each is one key, so DEL is atomic enough.
        foreign = [
            key
            for key, owner in zip(other_sends, owners[len(user_sends) :], strict=True)
            if owner in owned
        ]
        removed["send_keys"] += await self._delete_each(foreign)

        removed["timers"], _ = await self._erase_timers(app, user, message_ids)
        removed["caps"] = await self._erase_caps(app, user)

        # The user's own slot last but the streams: one script, so a reader
        # sees the profile, subscriptions and idempotency keys whole or gone.
        own: list[str | bytes] = [keys.user(app, user, what) for what in _USER_KEYS]
        sizes = await self._run("erase a user", "ERASE_KEYS", [*own, *user_sends], [])
        found_in = dict(zip(_USER_KEYS, sizes, strict=False))
        removed["profile"] = int(bool(found_in["profile"] or found_in["attrs"]))
        removed["devices"] = found_in["devices"]
        removed["subscriptions"] = found_in["subs"]
        removed["suppressions"] = found_in["supp"]
        removed["send_keys"] += sum(1 for size in sizes[len(own) :] if size)

        for kind, (stream, decode) in logs.items():
            # What was appended while the rest went (an outcome of a
            # delivery still in flight) goes too.
            late, _ = await self._find_in_log(
                "erase a user", stream, decode, theirs, after=read_to[kind]
            )
            ids = entries[kind] + [entry_id for entry_id, _ in late]
            removed[kind] = await self._delete_entries(stream, ids)
        # The user id stays out of the log: it is what was just erased.
        logger.info(
            "erased a user of app %s: %d keys and entries",
            app,
            sum(removed.values()),
        )
        return ErasureReport(app=app, user=user, removed=removed)

    async def _erase_timers(
        self, app: str, user: str, message_ids: set[str]
    ) -> tuple[int, set[str]]:
        """Erase the user's timers from their shard in one script; how many
        were pending, and their sessions."""
        queue = self._queue(app, user)
        indexes = await self._scan(starting_with(queue.by_rule(app, user, "")))
        timer_keys: list[str | bytes] = [
            queue.due,
            queue.data,
            queue.tokens,
            queue.seqs,
            *indexes,
        ]
        # A timer's message has the timer's id, so the idempotency key its
        # settling left is named by a message id.
        timer_keys += [queue.sent(mid) for mid in sorted(message_ids)]
        erased = await self._run(
            "erase a user's timers",
            "ERASE_TIMERS",
            timer_keys,
            [app, user, len(indexes)],
        )
        return int(erased[0]), {session.decode() for session in erased[1:]}

    async def _erase_caps(self, app: str, user: str) -> int:
        """Erase the user's caps, one script per slot; how many counted
        sends went.

        Every cap key of a user, per-session ones too, starts with the
        prefix of ``store.base``; the keys are grouped by the slot they are
        in, so one script never spans two slots.
        """
        caps = set(
            await self._scan(starting_with(self.keys.cap(user_cap_prefix(app, user))))
        )
        by_slot: dict[bytes, list[str | bytes]] = {}
        for key in sorted(caps):
            by_slot.setdefault(hash_tag(key), []).append(key)
        counted = 0
        for slot_keys in by_slot.values():
            sizes = await self._run("erase a user's caps", "ERASE_KEYS", slot_keys, [])
            counted += sum(sizes)
        return counted

    async def _scan(self, pattern: str) -> list[bytes]:
        """Every key matching ``pattern``, by ``SCAN`` in pages (never
        ``KEYS``, which would block the server for the whole keyspace)."""
        with self._errors("look for a user's keys"):
            return [
                key async for key in self._redis().scan_iter(match=pattern, count=_PAGE)
            ]

    async def _send_owners(self, send_keys: list[bytes]) -> list[str]:
        """The message id each idempotency key names ('' when gone)."""
        pipe = self._redis().pipeline(transaction=False)
        for key in send_keys:
            pipe.hget(key, "message_id")
        with self._errors("read idempotency keys"):
            owners = await pipe.execute() if send_keys else []
        return [owner.decode() if owner else "" for owner in owners]

    async def _erase_messages(
        self, app: str, user: str, message_ids: list[str]
    ) -> set[str]:
        """Delete those of the messages that are the user's; their ids.

        Each message is a slot of its own; a message is written once, so
        reading it and deleting it in two steps races with nothing.
        """
        client = self._redis()
        pipe = client.pipeline(transaction=False)
        for message_id in message_ids:
            pipe.get(self.keys.message(message_id))
        with self._errors("read a user's messages"):
            stored = await pipe.execute() if message_ids else []
        owned = set()
        for message_id, raw in zip(message_ids, stored, strict=True):
            if raw is None:
                continue
            who = _owned_decoder.decode(raw)
            if (who.app, who.user) == (app, user):
                owned.add(message_id)
        await self._delete_each([self.keys.message(mid) for mid in sorted(owned)])
        return owned

    async def _delete_each(self, keys: Sequence[str | bytes]) -> int:
        """Delete keys of different slots, one command each; how many were
        there."""
        if not keys:
            return 0
        pipe = self._redis().pipeline(transaction=False)
        for key in keys:
            pipe.delete(key)
        with self._errors("erase a user"):
            deleted = await pipe.execute()
        return sum(deleted)

    async def _delete_entries(self, stream: str, entry_ids: list[bytes]) -> int:
        """``XDEL`` the entries, a page at a time; how many were there."""
        deleted = 0
        client = self._redis()
        for start in range(0, len(entry_ids), _PAGE):
            with self._errors("erase a user's log entries"):
                deleted += await client.xdel(stream, *entry_ids[start : start + _PAGE])
        return deleted


def _subscription_field(device_id: str, channel: str) -> str:
    """A subscription's field in the user's subscription hashes."""
    return f"{device_id}{_US}{channel}"


def _in_order(pairs: list[tuple[bytes, int]]) -> list[PendingTimer]:
    """Timers from (JSON, seq) pairs, earliest due first, then as added."""
    timers = [(_timer_decoder.decode(raw), seq) for raw, seq in pairs]
    timers.sort(key=lambda item: (item[0].due, item[1]))
    return [timer for timer, _ in timers]


def _encode(value: Any, what: str) -> bytes:
    try:
        return msgspec.json.encode(value)
    except (TypeError, msgspec.EncodeError) as exc:
        raise StoreError(f"{what} cannot be stored as JSON: {exc}") from exc


def _split_url(url: str) -> tuple[str, str, int]:
    """The URL for redis-py, and our own settings taken out of its query."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    prefix = query.pop("prefix", "sp")
    shards_text = query.pop("shards", "8")
    try:
        shards = int(shards_text)
    except ValueError:
        shards = 0
    if shards < 1:
        raise StoreError(
            f"the Redis store URL has shards={shards_text!r}; expected a whole "
            f"number of timer queues of at least 1, the same in every process"
        )
    if not prefix:
        raise StoreError("the Redis store URL has an empty prefix; leave it out")
    rest = urlunsplit(parts._replace(query=urlencode(query)))
    return rest, prefix, shards


def _cluster_seeds(url: str) -> _Seeds | None:
    """The nodes and credentials of a ``redis+cluster://`` URL; ``None``
    for any other URL.

    ``urlsplit`` reads the comma-separated hosts as one netloc (its
    ``port`` would fail on them), so they are split here.
    """
    scheme = url.partition("://")[0].lower()
    if scheme not in _CLUSTER_SCHEMES:
        return None
    expected = (
        "expected redis+cluster://[[USER]:PASSWORD@]HOST:PORT[,HOST:PORT...]"
        "[/0][?prefix=sp&shards=8]"
    )
    parts = urlsplit(url)
    if parts.path not in ("", "/", "/0"):
        raise StoreError(
            f"the Redis Cluster store URL names database {parts.path[1:]!r}; a "
            f"cluster has database 0 only: leave the path out ({expected})"
        )
    extra = sorted(name for name, _ in parse_qsl(parts.query))
    extra = [name for name in extra if name not in ("prefix", "shards")]
    if extra:
        raise StoreError(
            f"the Redis Cluster store URL has unknown settings {extra}; it takes "
            f"prefix and shards only ({expected})"
        )
    userinfo, _, hosts = parts.netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    nodes: list[tuple[str, int]] = []
    for seed in hosts.split(","):
        host, _, port = seed.rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise StoreError(
                f"the Redis Cluster store URL has node {seed!r}; every node is "
                f"HOST:PORT ({expected})"
            )
        nodes.append((host, int(port)))
    return _Seeds(
        nodes=nodes,
        username=unquote(username) or None,
        password=unquote(password) or None,
        tls=scheme == "rediss+cluster",
    )


def _where(url: str) -> str:
    """Host, port and database for messages, never the password."""
    parts = urlsplit(url)
    if parts.scheme.lower() in _CLUSTER_SCHEMES:
        return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
    host = parts.hostname or "localhost"
    port = parts.port or 6379
    return f"{parts.scheme}://{host}:{port}{parts.path or '/0'}"
