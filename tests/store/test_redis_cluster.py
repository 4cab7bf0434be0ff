"""The Redis store on a real Redis Cluster of three primaries: state spreads
over the nodes, every step still works, erasure reaches every node, and rule
sets announced through one node reach a watcher on another.

The contract suites run on the cluster too (the ``redis-cluster`` store);
these tests check what only a cluster can get wrong, reading each node
directly, past the cluster client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis

from sessionpush.engine.rules import CompiledLimit as Limit
from sessionpush.store import StoreError, open_store
from sessionpush.store.redis import RedisStore
from tests.redis_server import RedisClusterServers
from tests.store.records import timer
from tests.store.test_store_contract_erasure import remember

USERS = [f"user-{i}" for i in range(40)]


@pytest.fixture
def cluster(redis_cluster: RedisClusterServers) -> Iterator[RedisClusterServers]:
    redis_cluster.flush()
    yield redis_cluster


@pytest.fixture
async def store(cluster: RedisClusterServers) -> AsyncIterator[RedisStore]:
    opened = RedisStore(cluster.url)
    await opened.open()
    yield opened
    await opened.close()


def _seeded_by(cluster: RedisClusterServers, node: int) -> RedisStore:
    """A store that knows one node only and learns the rest from it."""
    return RedisStore(f"redis+cluster://127.0.0.1:{cluster.ports[node]}")


def _dump(port: int) -> list[str]:
    """Every key of one node with each field, member or stream entry, as
    ``key: part`` strings."""
    found = []
    with redis.Redis(port=port) as client:
        for key in client.scan_iter(count=1000):
            kind = client.type(key).decode()
            parts: list[Any]
            if kind == "string":
                parts = [client.get(key)]
            elif kind == "hash":
                parts = [k + b"=" + v for k, v in client.hgetall(key).items()]
            elif kind == "zset":
                parts = client.zrange(key, 0, -1)
            elif kind == "stream":
                parts = [fields[b"d"] for _, fields in client.xrange(key)]
            else:
                raise AssertionError(f"{key!r} is a {kind}; the store makes none")
            found += [f"{key.decode()}: {part.decode()}" for part in parts]
    return found


async def test_many_users_state_lands_on_every_node_and_reads_back(
    store: RedisStore, cluster: RedisClusterServers
) -> None:
    for user in USERS:
        await store.set_user_attributes("shop", user, {"tier": "gold"})
        await store.add_timer(timer(f"t-{user}", user=user, due=time.time() - 1))
        cap = Limit(count=1, per="session", window=None).key("shop", user, "s", "r")
        assert await store.cap_take_all([(cap, 1, float("-inf"))], 1.0) is None

    by_node = cluster.keys_by_node()

    # Users, caps and timer shards each hash to their own slots: a store
    # that sent everything to one node (or one slot) would leave two empty.
    assert all(len(keys) >= 10 for keys in by_node.values()), {
        port: len(keys) for port, keys in by_node.items()
    }
    profiles = [
        port
        for port, keys in by_node.items()
        for key in keys
        if key.endswith(b":attrs")
    ]
    assert len(set(profiles)) == 3
    for user in USERS:
        assert (await store.get_user("shop", user)).attributes == {"tier": "gold"}


async def test_timers_of_every_shard_are_claimed_and_settled_once_across_nodes(
    store: RedisStore, cluster: RedisClusterServers
) -> None:
    for user in USERS:
        await store.add_timer(timer(f"t-{user}", user=user, due=time.time() - 1))
    shards = {store.keys.shard_of("shop", user) for user in USERS}
    queues = [store.keys.timer_queue(shard).due.encode() for shard in shards]
    owners = {
        port
        for port, keys in cluster.keys_by_node().items()
        for key in keys
        if key in queues
    }

    claims = await store.claim_due(time.time(), 1000, 30.0)
    settled = await store.finish_many(claims)
    again = await store.finish_many(claims)

    assert len(owners) == 3  # the eight shards' queues are on every node
    assert sorted(c.timer.timer_id for c in claims) == sorted(
        f"t-{user}" for user in USERS
    )
    assert settled == [True] * len(USERS)
    assert again == [False] * len(USERS)
    assert await store.pending_timers() == []


def _fail_one_queue(store: RedisStore, script: str) -> set[str]:
    """Make ``script`` fail, as a node down would, on the timer queue of the
    first user; the users whose timers are in that queue."""
    down = store.keys.shard_of("shop", USERS[0])
    due = store.keys.timer_queue(down).due
    run = store._scripts[script]

    async def flaky(keys: list[Any], args: list[Any], **kwargs: Any) -> Any:
        if keys[0] == due:
            raise redis.exceptions.ConnectionError("node down")
        return await run(keys=keys, args=args, **kwargs)

    store._scripts[script] = flaky
    return {user for user in USERS if store.keys.shard_of("shop", user) == down}


async def test_a_claim_keeps_the_timers_of_healthy_nodes_when_one_node_fails(
    store: RedisStore, caplog: pytest.LogCaptureFixture
) -> None:
    for user in USERS:
        await store.add_timer(timer(f"t-{user}", user=user, due=time.time() - 1))
    behind = _fail_one_queue(store, "CLAIM_DUE")

    claims = await store.claim_due(time.time(), 1000, 30.0)

    assert behind
    assert {c.timer.user for c in claims} == set(USERS) - behind
    assert "cannot claim due timers on 1 of 8 timer shards" in caplog.text


async def test_a_settle_answers_false_for_the_timers_of_a_failed_node_only(
    store: RedisStore,
) -> None:
    for user in USERS:
        await store.add_timer(timer(f"t-{user}", user=user, due=time.time() - 1))
    claims = await store.claim_due(time.time(), 1000, 30.0)
    behind = _fail_one_queue(store, "FINISH_MANY")

    settled = await store.finish_many(claims)

    unsettled = {c.timer.user for c, ok in zip(claims, settled, strict=True) if not ok}
    assert unsettled == behind
    assert len(unsettled) < len(USERS)


async def test_a_claim_with_every_node_failing_is_a_store_error(
    store: RedisStore,
) -> None:
    async def down(**kwargs: Any) -> Any:
        raise redis.exceptions.ConnectionError("node down")

    store._scripts["CLAIM_DUE"] = down

    with pytest.raises(StoreError, match="cannot claim due timers: node down"):
        await store.claim_due(time.time(), 10, 30.0)


def _node_id(port: int) -> str:
    with redis.Redis(port=port) as client:
        node_id: str = client.execute_command("CLUSTER", "MYID").decode()
    return node_id


def _owner(cluster: RedisClusterServers, key: str) -> int:
    """The port of the node serving ``key``'s slot."""
    with redis.Redis(port=cluster.ports[0]) as client:
        slot = client.execute_command("CLUSTER", "KEYSLOT", key)
        for start, end, (_, port, *_), *_ in client.execute_command("CLUSTER", "SLOTS"):
            if start <= slot <= end:
                return int(port)
    raise AssertionError(f"no node serves {key}")


def _start_moving(cluster: RedisClusterServers, key: str, to: int) -> list[bytes]:
    """Begin migrating ``key``'s slot to the node on port ``to`` and move
    ``key`` alone (as ``redis-cli --cluster reshard`` moves keys in
    batches); the keys of the slot still to move."""
    source = _owner(cluster, key)
    with (
        redis.Redis(port=source) as src,
        redis.Redis(port=to) as dst,
    ):
        slot = src.execute_command("CLUSTER", "KEYSLOT", key)
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", _node_id(source))
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", _node_id(to))
        src.execute_command("MIGRATE", "127.0.0.1", to, key, 0, 5000)
        left: list[bytes] = src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 1000)
    return left


def _finish_moving(
    cluster: RedisClusterServers, key: str, source: int, to: int, left: list[bytes]
) -> None:
    with redis.Redis(port=source) as src:
        slot = src.execute_command("CLUSTER", "KEYSLOT", key)
        if left:
            src.execute_command("MIGRATE", "127.0.0.1", to, "", 0, 5000, "KEYS", *left)
    for port in cluster.ports:
        with redis.Redis(port=port) as client:
            client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", _node_id(to))


async def test_a_timer_queue_whose_slot_migrates_fires_on_its_new_node(
    store: RedisStore, cluster: RedisClusterServers, caplog: pytest.LogCaptureFixture
) -> None:
    """While the queue is split between two nodes its scripts answer
    TRYAGAIN and the other queues go on; once moved, the queue's timers are
    claimed and settled on the node that took it (which ran none of the
    store's scripts before: it loads them on NOSCRIPT)."""
    for user in USERS:
        await store.add_timer(timer(f"t-{user}", user=user, due=time.time() - 1))
    shard = store.keys.shard_of("shop", USERS[0])
    queue = store.keys.timer_queue(shard)
    moving = {u for u in USERS if store.keys.shard_of("shop", u) == shard}
    source = _owner(cluster, queue.due)
    to = next(port for port in cluster.ports if port != source)
    for port in cluster.ports:
        with redis.Redis(port=port) as client:
            client.script_flush()
    try:
        left = _start_moving(cluster, queue.due, to)

        during = await store.claim_due(time.time(), 1000, 30.0)
        _finish_moving(cluster, queue.due, source, to, left)
        after = await store.claim_due(time.time(), 1000, 30.0)
        settled = await store.finish_many(after)
    finally:
        # The cluster is shared by the whole run: the slot goes back.
        cluster.flush()
        if _owner(cluster, queue.due) != source:
            _finish_moving(cluster, queue.due, to, source, [])
        for port in (source, to):
            with redis.Redis(port=port) as client:
                slot = client.execute_command("CLUSTER", "KEYSLOT", queue.due)
                client.execute_command("CLUSTER", "SETSLOT", slot, "STABLE")

    assert {c.timer.user for c in during} == set(USERS) - moving
    assert "cannot claim due timers on 1 of 8 timer shards" in caplog.text
    assert {c.timer.user for c in after} == moving
    assert all(settled)


async def test_erasing_a_user_leaves_nothing_of_them_on_any_node(
    store: RedisStore, cluster: RedisClusterServers
) -> None:
    for user in ("alice", "bob", "carol", "dave", "erin"):
        await remember(store, "shop", user, f"sess-{user}")
    for claim in await store.claim_due(time.time(), 100, 60.0):
        if claim.timer.timer_id.startswith("settled-"):
            assert await store.finish(claim)
    before = {port: _dump(port) for port in cluster.ports}
    holding_alice = [
        port for port, records in before.items() if any("alice" in r for r in records)
    ]

    await store.erase_user("shop", "alice")

    after = {port: _dump(port) for port in cluster.ports}
    assert len(holding_alice) == 3  # her slots were on every node
    for port in cluster.ports:
        assert [r for r in after[port] if "alice" in r] == [], port
        assert [r for r in after[port] if "bob" in r] == [
            r for r in before[port] if "bob" in r
        ]


async def test_a_rule_set_saved_through_one_node_reaches_a_watcher_seeded_by_another(
    cluster: RedisClusterServers,
) -> None:
    saver, watcher = _seeded_by(cluster, 0), _seeded_by(cluster, 2)
    await saver.open()
    await watcher.open()
    versions = watcher.rule_versions()
    try:
        assert await asyncio.wait_for(anext(versions), 5) == 0

        version = await saver.save_rules("rule x {}", 1.0)

        assert await asyncio.wait_for(anext(versions), 5) == version
        loaded = await watcher.load_rules()
        assert loaded is not None and loaded.source == "rule x {}"
    finally:
        await versions.aclose()  # type: ignore[attr-defined]
        await saver.close()
        await watcher.close()


async def test_a_cluster_watcher_looks_again_when_no_announcement_comes(
    store: RedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cluster bus may drop an announcement; a quiet watcher yields 0,
    "load the latest", every so often."""
    monkeypatch.setattr("sessionpush.store.redis._CLUSTER_RECHECK", 0.2)
    versions = store.rule_versions()
    try:
        assert await asyncio.wait_for(anext(versions), 5) == 0
        started = time.monotonic()

        assert await asyncio.wait_for(anext(versions), 5) == 0

        assert 0.15 < time.monotonic() - started < 2
    finally:
        await versions.aclose()  # type: ignore[attr-defined]


async def test_caps_of_two_users_in_one_send_are_refused_on_a_cluster(
    store: RedisStore,
) -> None:
    caps = [
        (Limit(count=1, per="day", window=None).key("shop", user, "s", "r"), 1, 0.0)
        for user in ("alice", "bob")
    ]

    with pytest.raises(StoreError, match="are of 2 different users"):
        await store.cap_take_all(caps, 1.0)


def test_a_cluster_url_names_its_nodes_credentials_and_settings() -> None:
    store = open_store(
        "rediss+cluster://ops:p%40ss@10.0.0.1:7000,[::1]:7001/0?prefix=shop&shards=6"
    )

    assert isinstance(store, RedisStore) and store.cluster
    assert (store.keys.prefix, store.keys.shards) == ("shop", 6)
    assert store._seeds is not None
    assert store._seeds.nodes == [("10.0.0.1", 7000), ("::1", 7001)]
    assert (store._seeds.username, store._seeds.password) == ("ops", "p@ss")
    assert store._seeds.tls
    assert "p@ss" not in repr(store) and "p%40ss" not in repr(store)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+cluster://10.0.0.1:7000/2", "a cluster has database 0 only"),
        ("redis+cluster://10.0.0.1", "every node is HOST:PORT"),
        ("redis+cluster://10.0.0.1:7000,:7001", "every node is HOST:PORT"),
        ("redis+cluster://10.0.0.1:7000,10.0.0.2:port", "every node is HOST:PORT"),
        ("redis+cluster://10.0.0.1:99999", "every node is HOST:PORT"),
        ("redis+cluster://", "every node is HOST:PORT"),
        ("redis+cluster://h:1?db=1", "takes prefix and shards only"),
        ("redis+cluster://h:1?shards=0", "expected a whole number of timer queues"),
    ],
)
def test_a_bad_cluster_url_says_what_it_expects(url: str, message: str) -> None:
    with pytest.raises(StoreError, match=message) as caught:
        open_store(url)

    if "every node" in message or "database" in message:
        assert "redis+cluster://[[USER]:PASSWORD@]HOST:PORT" in str(caught.value)


async def test_an_unreachable_cluster_is_refused_with_where_and_how_to_fix() -> None:
    from tests.redis_server import free_port

    store = open_store(f"redis+cluster://:secret@127.0.0.1:{free_port()}")

    with pytest.raises(StoreError, match="cannot reach the Redis Cluster") as caught:
        await store.open()
    assert "start redis-server" in str(caught.value)
    assert "secret" not in str(caught.value)
