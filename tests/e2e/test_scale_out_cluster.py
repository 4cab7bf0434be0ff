"""Real gateway processes on a real Redis Cluster behave as one, as they do
on one Redis (tests/e2e/test_scale_out.py): rule sets put on one are served
by the other, and post-session timers spread over the nodes fire exactly
once though a gateway is killed mid-way."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import pytest
import redis

from tests.e2e.test_scale_out import (
    _drive,
    _gateways,
    _pushed,
    _wait_for,
    rules_put_across,
)
from tests.redis_server import RedisClusterServers


@pytest.fixture
def cluster(redis_cluster: RedisClusterServers) -> RedisClusterServers:
    redis_cluster.flush()
    return redis_cluster


def _timer_counts(cluster: RedisClusterServers) -> tuple[int, int, int]:
    """Pending timers, settled timers, and how many nodes hold either."""
    pending = settled = 0
    nodes = set()
    for port in cluster.ports:
        with redis.Redis(port=port) as client:
            for key in client.scan_iter(match="sp:{t:*}:*", count=1000):
                nodes.add(port)
                if key.endswith(b":data"):
                    pending += client.hlen(key)
                elif b":sent:" in key:
                    settled += 1
    return pending, settled, len(nodes)


def test_rules_put_on_one_gateway_reach_the_other_through_the_cluster(
    tmp_path: Path, cluster: RedisClusterServers
) -> None:
    """Each gateway names a different node: the announcement crosses the
    cluster bus."""
    urls = [f"redis+cluster://127.0.0.1:{port}" for port in cluster.ports[:2]]
    took, outbox = rules_put_across(tmp_path, urls)
    assert took < 1.0
    assert len(outbox.read_bytes().splitlines()) == 1


def test_timers_on_every_node_fire_once_each_though_one_of_three_gateways_is_killed(
    tmp_path: Path, cluster: RedisClusterServers
) -> None:
    with _gateways(tmp_path, cluster.url, 3, "2s") as (served, outbox):
        sessions = asyncio.run(_drive([s.port for s in served], 300))
        deadline = time.monotonic() + 15
        # A gateway closes an ended session's socket before writing its
        # timer: wait until every timer is pending or out.
        while _timer_counts(cluster)[0] + len(set(_pushed(outbox))) < 300:
            assert time.monotonic() < deadline, "the timers were not all written"
            time.sleep(0.02)
        _, _, nodes = _timer_counts(cluster)
        while not _pushed(outbox) and time.monotonic() < deadline + 15:
            time.sleep(0.01)
        served[0].kill()  # mid-way: it may hold claimed, unsent timers
        fired_before_kill = len(_pushed(outbox))

        pushed = _wait_for(outbox, 300, 30)
        pending, settled, _ = _timer_counts(cluster)

    assert 0 < fired_before_kill < 300
    assert nodes == 3  # the eight timer queues are on all three nodes
    assert (pending, settled) == (0, 300)
    # every timer, exactly one line: none lost, none written twice
    assert Counter(pushed) == Counter(sessions)
    assert len(set(sessions)) == 300
